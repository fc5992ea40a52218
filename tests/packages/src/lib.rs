//! Helpers shared by the package tests (`tests/files.rs`, `tests/clean_root.rs`).
//!
//! The tests run the distribution's own checkers (desktop-file-validate, appstreamcli,
//! systemd-analyze, lintian) and tools (mmdebstrap, apt, chroot) on the files in `packaging/`
//! and on the packages `packaging/build.sh` makes. Test support only: failures panic with what
//! went wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (where `packaging/` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// `packaging/<rel>` in the workspace.
pub fn packaging(rel: &str) -> PathBuf {
    workspace_root().join("packaging").join(rel)
}

/// Whether `tool` is on `PATH`; prints a skip notice naming `tests/bootstrap.sh` when not.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        // CI runs tests/bootstrap.sh first: a tool missing there is a broken set-up, and a
        // skipped check would pass without checking anything.
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed, and CI must run this check (tests/bootstrap.sh installs it)"
        );
        println!("skipped: {tool} is not installed (tests/bootstrap.sh installs it)");
    }
    found
}

/// What a checker said: its exit status and everything it printed.
#[derive(Debug)]
pub struct Checked {
    /// The command line, for messages.
    pub command: String,
    /// Whether it exited with 0.
    pub success: bool,
    /// Standard output and standard error, in that order.
    pub text: String,
    /// Standard output alone.
    pub stdout: String,
}

/// Runs `command` to completion and collects what it said.
pub fn check(command: &mut Command) -> Checked {
    let line = format!("{command:?}");
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let mut text = stdout.clone();
    text.push_str(&String::from_utf8_lossy(&stderr));
    Checked {
        command: line,
        success: status.success(),
        text,
        stdout,
    }
}

/// The host's systemd unit directory, which holds the targets every service is ordered after.
pub fn host_unit_dir() -> PathBuf {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("sysinit.target").is_file())
        .expect("the host has systemd's units (apt-get install systemd)")
}

/// The targets our unit refers to, directly or through systemd's default dependencies of a
/// service, which `systemd-analyze verify --root` must find in the root it checks.
pub const TARGETS_FOR_VERIFY: &[&str] = &[
    "sysinit.target",
    "basic.target",
    "shutdown.target",
    "network-online.target",
    "multi-user.target",
];

/// Runs `systemd-analyze verify` for the instance `instance` of the template unit that is
/// installed under `root` (whose `/usr/bin/tahoe-updates-server` must exist: verify checks the
/// command), after copying the host's [`TARGETS_FOR_VERIFY`] into `root/etc/systemd/system`.
/// Man pages are not looked up (`--man=no`): `man` would search the host, not `root`.
pub fn verify_unit(root: &Path, instance: &str) -> Checked {
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("a unit folder in the root");
    let host = host_unit_dir();
    for target in TARGETS_FOR_VERIFY {
        std::fs::copy(host.join(target), units.join(target))
            .unwrap_or_else(|e| panic!("cannot copy {target} from {}: {e}", host.display()));
    }
    check(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(format!("--root={}", root.display()))
            .arg(format!("tahoe-updates-server@{instance}.service")),
    )
}

/// The man pages a unit file names in `Documentation=man:NAME(SECTION)` lines, as file names
/// (`NAME.SECTION`).
pub fn documented_man_pages(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .filter_map(|uri| uri.strip_prefix("man:"))
        .filter_map(|page| {
            let (name, section) = page.strip_suffix(')')?.split_once('(')?;
            Some(format!("{name}.{section}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_are_read_from_documentation_lines() {
        let unit = "[Unit]\nDocumentation=man:a(1) man:b-c(8)\nDocumentation=file:/x\n";
        assert_eq!(documented_man_pages(unit), ["a.1", "b-c.8"]);
    }
}
