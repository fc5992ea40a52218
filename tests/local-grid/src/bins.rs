//! The workspace's own binaries, for tests of another package.
//!
//! `env!("CARGO_BIN_EXE_…")` only names binaries of the test's own package. A test that runs
//! another package's program (the updates server beside a grid, the CLI from an engine test)
//! looks for it in the target directory the test itself was built into, and builds it there when
//! it is missing (a lone `cargo test -p …`). An environment variable named by
//! [`override_variable`] (e.g. `TAHOE_UPDATES_SERVER_BIN`) points at another build instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's binaries and the packages that build them.
const PACKAGES: &[(&str, &str)] = &[
    ("tahoe-updates-server", "updates-server"),
    ("tahoe-notifier", "tahoe-notifier-cli"),
    ("tahoe-notifier-app", "tahoe-notifier-app"),
    ("tahoe-notifier-tray", "tahoe-notifier-tray"),
];

/// The environment variable that overrides where `name` is taken from: `tahoe-updates-server`
/// → `TAHOE_UPDATES_SERVER_BIN`.
pub fn override_variable(name: &str) -> String {
    format!("{}_BIN", name.to_uppercase().replace('-', "_"))
}

/// The target directory's profile folder (`target/debug`) the running test was built into:
/// test binaries live in its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("a test binary lives in a folder");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps).to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The path of the workspace binary `name`, built into this test's target directory and
/// profile if it is not there yet.
///
/// # Panics
/// If `name` is not one of the workspace's binaries or cannot be built: a test set-up failure.
pub fn workspace_binary(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_variable(name)) {
        return PathBuf::from(path);
    }
    let path = profile_dir().join(name);
    if !path.exists() {
        build(name, &path);
    }
    path
}

fn build(name: &str, path: &Path) {
    let package = PACKAGES
        .iter()
        .find(|(bin, _)| *bin == name)
        .map(|(_, package)| *package)
        .unwrap_or_else(|| panic!("{name} is not a binary of this workspace"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--bin", name]);
    if path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "release")
    {
        command.arg("--release");
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo build for {name}: {e}"));
    assert!(
        status.success() && path.exists(),
        "cannot build {name} (expected at {})",
        path.display()
    );
}
