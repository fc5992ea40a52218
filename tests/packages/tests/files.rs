//! The packages' files, checked by the tools made for them, without building any package:
//! `desktop-file-validate` on the desktop entries, `appstreamcli validate` on the AppStream
//! metainfo, `systemd-analyze verify` on the service unit (for an instance, in a scratch root
//! holding the unit and the server), `sh -n` on the maintainer scripts. Each check skips with a
//! message when its tool is missing (`tests/bootstrap.sh` installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use package_tests::{check, documented_man_pages, have_tool, packaging, verify_unit};

const UNIT: &str = "tahoe-updates-server/tahoe-updates-server@.service";

#[test]
fn desktop_entries_are_valid() {
    if !have_tool("desktop-file-validate") {
        return;
    }
    for entry in [
        "tahoe-notifier/org.tahoe_lafs.Notifier.desktop",
        "tahoe-notifier/autostart.desktop",
    ] {
        let checked = check(Command::new("desktop-file-validate").arg(packaging(entry)));
        // It exits 0 after warnings and hints too: anything it says is a finding.
        assert!(
            checked.success && checked.text.trim().is_empty(),
            "{}: {}",
            checked.command,
            checked.text
        );
    }
}

#[test]
fn metainfo_is_valid() {
    if !have_tool("appstreamcli") {
        return;
    }
    let checked = check(
        Command::new("appstreamcli")
            .args(["validate", "--no-net"])
            .arg(packaging(
                "tahoe-notifier/org.tahoe_lafs.Notifier.metainfo.xml",
            )),
    );
    // Pedantic notes (an id with capitals, no release list) do not fail validation.
    assert!(checked.success, "{}: {}", checked.command, checked.text);
    println!("appstreamcli validate: {}", checked.text.trim());
}

#[test]
fn the_unit_verifies_for_an_instance() {
    if !have_tool("systemd-analyze") {
        return;
    }
    // A scratch root with what verify looks at: the unit where the package installs it and the
    // program its ExecStart names.
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(packaging(UNIT), units.join("tahoe-updates-server@.service")).unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    let server = local_grid::bins::workspace_binary("tahoe-updates-server");
    let installed = root.path().join("usr/bin/tahoe-updates-server");
    if std::fs::hard_link(&server, &installed).is_err() {
        std::fs::copy(&server, &installed).unwrap();
    }

    let checked = verify_unit(root.path(), "storage1");
    // verify exits 0 even after "Unknown key" or "Failed to parse": it must say nothing.
    assert!(
        checked.success && checked.text.trim().is_empty(),
        "{}: {}",
        checked.command,
        checked.text
    );

    // The man pages the unit points to are among those the server generates.
    let docs = tempfile::tempdir().unwrap();
    let generated = check(
        Command::new(&server)
            .args(["generate-docs", "--out"])
            .arg(docs.path()),
    );
    assert!(generated.success, "{}", generated.text);
    let unit = std::fs::read_to_string(packaging(UNIT)).unwrap();
    let pages = documented_man_pages(&unit);
    assert!(!pages.is_empty(), "the unit names no man page");
    for page in pages {
        assert!(
            docs.path().join("man").join(&page).is_file(),
            "the unit names {page}, which generate-docs does not write"
        );
    }
    assert!(packaging("tahoe-updates-server/README.Debian").is_file());
}

#[test]
fn the_unit_keeps_the_node_directory_read_only() {
    let unit = std::fs::read_to_string(packaging(UNIT)).unwrap();
    let settings: Vec<&str> = unit.lines().filter(|line| !line.starts_with('#')).collect();
    for setting in [
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "StateDirectory=tahoe-updates-server/%i",
        "EnvironmentFile=/etc/tahoe-updates-server/%i.conf",
    ] {
        assert!(settings.contains(&setting), "the unit lacks {setting}");
    }
    // Nothing may open a hole for writing, and the NURL goes to the state directory.
    assert!(!settings.iter().any(|l| l.starts_with("ReadWritePaths=")));
    let exec = settings
        .iter()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart line");
    assert!(
        exec.contains("--nurl-file %S/tahoe-updates-server/%i/"),
        "{exec}"
    );
}

#[test]
fn maintainer_scripts_are_executable_shell() {
    for script in ["postinst", "prerm", "postrm"] {
        let path = packaging(&format!("tahoe-updates-server/maintainer-scripts/{script}"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
        let checked = check(Command::new("sh").arg("-n").arg(&path));
        assert!(checked.success, "{script}: {}", checked.text);
    }
}
