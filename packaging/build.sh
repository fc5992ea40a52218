#!/usr/bin/env bash
# Builds the two Debian packages, tahoe-notifier and tahoe-updates-server, with cargo-deb:
#   1. release binaries of the tray app, the CLI and the updates server;
#   2. their man pages and shell completions, generated from the clap definitions by the
#      binaries themselves (hidden `generate-docs` subcommand), a changelog entry for the
#      workspace's version and a copyright file listing the crates linked in;
#   3. `cargo deb --no-build` for each package (metadata in src-tauri/Cargo.toml and
#      crates/updates-server/Cargo.toml), binaries stripped.
# Prints the paths and sizes of the .debs. Needs Rust, cargo-deb (`cargo install cargo-deb
# --locked`; tests/bootstrap.sh installs it), dpkg-dev (dpkg-shlibdeps) and python3, and the
# build dependencies tests/bootstrap.sh installs.
#
# Usage: packaging/build.sh [--out DIR]     (default DIR: $CARGO_TARGET_DIR/debian or target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

out=""
while (($#)); do
  case "$1" in
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

step() { echo "build.sh: $*"; }
fail() { echo "build.sh: $*" >&2; exit 1; }

command -v cargo >/dev/null || fail "cargo not found: install Rust from https://rustup.rs"
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb not found: cargo install cargo-deb --locked"
command -v dpkg-shlibdeps >/dev/null || fail "dpkg-shlibdeps not found: apt-get install dpkg-dev"
command -v python3 >/dev/null || fail "python3 not found"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
release="$target_dir/release"
out="${out:-$target_dir/debian}"
generated="$root/packaging/generated"

# The one version: the workspace's, which every crate inherits (version.workspace = true).
version="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
  python3 -c 'import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tahoe-notifier-app"))')" ||
  fail "cannot read the version from cargo metadata"
step "version $version (workspace Cargo.toml)"

started=$SECONDS
step "building release binaries (tahoe-notifier-app, tahoe-notifier, tahoe-updates-server)…"
cargo build --release --locked -p tahoe-notifier-app -p tahoe-notifier-tray -p tahoe-notifier-cli -p updates-server
step "built in $((SECONDS - started)) s"

for bin in tahoe-notifier-app tahoe-notifier tahoe-updates-server; do
  said="$("$release/$bin" --version)"
  [ "$said" = "$bin $version" ] || fail "$bin --version says \"$said\", not \"$bin $version\""
done

step "generating man pages and shell completions from the clap definitions…"
rm -rf "$generated"
"$release/tahoe-notifier" generate-docs --out "$generated/tahoe-notifier" >/dev/null
"$release/tahoe-updates-server" generate-docs --out "$generated/tahoe-updates-server" >/dev/null
for package in tahoe-notifier tahoe-updates-server; do
  step "  $package: $(find "$generated/$package/man" -name '*.1' | wc -l) man pages, bash/zsh/fish completions"
done

step "writing copyright files (crates linked into each binary, from cargo tree)…"
python3 packaging/copyright.py --out "$generated/tahoe-notifier/copyright" \
  --binary tahoe-notifier-app=tahoe-notifier-app --binary tahoe-notifier-tray=tahoe-notifier-tray \
  --binary tahoe-notifier=tahoe-notifier-cli
python3 packaging/copyright.py --out "$generated/tahoe-updates-server/copyright" \
  --binary tahoe-updates-server=updates-server

# A Debian changelog is required in a binary package; its one entry carries the workspace's
# version, so that no second copy of the version is kept by hand. Dated by the last commit
# (or SOURCE_DATE_EPOCH), so that two builds of one commit make the same file.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
date_rfc2822="$(LC_ALL=C date -u -R -d "@$epoch")"
for package in tahoe-notifier tahoe-updates-server; do
  cat >"$generated/$package/changelog" <<EOF
$package ($version-1) unstable; urgency=medium

  * Tahoe Notifier $version, packaged with cargo-deb by packaging/build.sh.

 -- Tahoe Notifier developers <tahoe-notifier@example.invalid>  $date_rfc2822
EOF
done

mkdir -p "$out"
step "packaging tahoe-notifier with cargo-deb…"
cargo deb -p tahoe-notifier-app --no-build --strip --output "$out"
step "packaging tahoe-updates-server with cargo-deb…"
cargo deb -p updates-server --no-build --strip --output "$out"

step "done in $((SECONDS - started)) s:"
for package in tahoe-notifier tahoe-updates-server; do
  deb="$(ls -t "$out/${package}_${version}-1_"*.deb | head -n 1)"
  installed_kib="$(dpkg-deb --field "$deb" Installed-Size)"
  printf '  %s  %s KiB (installed %s KiB)\n' "$deb" "$(( $(stat -c %s "$deb") / 1024 ))" "$installed_kib"
done
