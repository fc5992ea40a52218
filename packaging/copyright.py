#!/usr/bin/env python3
"""Writes a package's Debian copyright file (DEP-5), listing every crate linked into its binaries.

The binaries are statically linked Rust programs: what they contain besides the project's own
code is decided by Cargo.lock, so the list is taken from `cargo tree` when the package is built
rather than kept by hand. Crates under a copyleft licence are named per binary, with the licence
text (or, for licences Debian ships, a pointer to /usr/share/common-licenses).

Usage: copyright.py --out FILE --binary BIN=CARGO_PACKAGE [--binary ...]
Run from the workspace (cargo must be on PATH).
"""

import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = "https://example.invalid/tahoe-notifier"
CONTACT = "Tahoe Notifier developers <tahoe-notifier@example.invalid>"

MIT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."""

# Copyleft licences whose crates are named per binary, with where their text is.
COPYLEFT = {
    "EUPL-1.2": ("file", HERE / "licenses" / "EUPL-1.2"),
    "MPL-2.0": ("common", "/usr/share/common-licenses/MPL-2.0"),
    "LGPL-2.1": ("common", "/usr/share/common-licenses/LGPL-2.1"),
    "LGPL-3.0": ("common", "/usr/share/common-licenses/LGPL-3"),
    "GPL-2.0": ("common", "/usr/share/common-licenses/GPL-2"),
    "GPL-3.0": ("common", "/usr/share/common-licenses/GPL-3"),
}


def linked_crates(cargo_package):
    """(name, version, licence) of every crate linked into the package's binary.

    Normal dependencies only, without proc-macros (which run at build time and are not linked);
    the workspace's own crates (those with a local path) are the project's code.
    """
    output = subprocess.run(
        ["cargo", "tree", "--quiet", "-p", cargo_package, "-e", "normal,no-proc-macro",
         "--prefix", "none", "--format", "{p}|{l}", "--target", host_target()],
        check=True, capture_output=True, text=True,
    ).stdout
    crates = set()
    for line in output.splitlines():
        line = line.removesuffix(" (*)")
        if "|" not in line:
            continue
        package, licence = line.split("|", 1)
        words = package.split()
        if len(words) > 2 and words[2].startswith("(/"):
            continue
        crates.add((words[0], words[1].removeprefix("v"), licence.strip() or "unknown"))
    return crates


def host_target():
    for line in subprocess.run(["rustc", "-vV"], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        if line.startswith("host: "):
            return line.removeprefix("host: ")
    sys.exit("copyright.py: rustc -vV names no host target")


def copyright_years():
    """'FIRST-LAST' (or 'YEAR'): the years of the repository's first and last commits."""
    years = subprocess.run(["git", "log", "--format=%ad", "--date=format:%Y"], check=True,
                           capture_output=True, text=True, cwd=HERE).stdout.split()
    if not years:
        sys.exit("copyright.py: no commits to date the copyright by")
    first, last = years[-1], years[0]
    return first if first == last else f"{first}-{last}"


def field_text(text):
    """A DEP-5 multi-line field body: each line indented, empty lines as ' .'."""
    return "\n".join(f" {line}" if line.strip() else " ." for line in text.splitlines())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--binary", action="append", required=True, metavar="BIN=CARGO_PACKAGE")
    args = parser.parse_args()
    binaries = [b.split("=", 1) for b in args.binary]

    per_binary = {binary: linked_crates(package) for binary, package in binaries}
    every = sorted(set().union(*per_binary.values()))
    names = " and ".join(binary for binary, _ in binaries)

    notices = []
    used_copyleft = []
    for licence, (kind, where) in COPYLEFT.items():
        hits = [c for c in every if licence in c[2]]
        if not hits:
            continue
        used_copyleft.append((licence, kind, where))
        for name, version, crate_licence in hits:
            users = [b for b, crates in per_binary.items() if (name, version, crate_licence) in crates]
            notices.append(f"The {name} crate {version} ({crate_licence}, see below) is linked "
                           f"into {' and '.join(users)}.")

    comment = (
        f"{names}: statically linked Rust {'programs' if len(binaries) > 1 else 'program'}.\n"
        "Besides the project's own code (MIT or Apache-2.0) the binaries contain the crates listed\n"
        "here, each under its own licence, as resolved from Cargo.lock when this package\n"
        "was built.\n"
    )
    if notices:
        comment += "\n" + "\n".join(notices) + "\n"
    comment += "\nCrates linked into the binaries (name version: licence):\n"
    comment += "\n".join(f"  {name} {version}: {licence}" for name, version, licence in every)

    parts = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: Tahoe Notifier\n"
        f"Upstream-Contact: {CONTACT}\n"
        f"Source: {SOURCE}\n"
        f"Comment:\n{field_text(comment)}\n",
        f"Files: *\nCopyright: {copyright_years()} Tahoe Notifier developers\n"
        "License: MIT or Apache-2.0\n",
        f"License: MIT\n{field_text(MIT)}\n",
        "License: Apache-2.0\n On Debian systems, the complete text of the Apache License, "
        "Version 2.0\n can be found in /usr/share/common-licenses/Apache-2.0.\n",
    ]
    for licence, kind, where in used_copyleft:
        if kind == "common":
            parts.append(f"License: {licence}\n On Debian systems, the complete text of the "
                         f"{licence} licence\n can be found in {where}.\n")
        else:
            parts.append(f"License: {licence}\n{field_text(pathlib.Path(where).read_text())}\n")
    pathlib.Path(args.out).write_text("\n".join(parts))


if __name__ == "__main__":
    main()
