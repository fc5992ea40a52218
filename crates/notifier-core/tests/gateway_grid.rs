//! The gateway client, change descriptions and news feed against a REAL Tahoe-LAFS grid on
//! loopback (`local-grid`; run `tests/bootstrap-python.sh` once for the venv).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use local_grid::{Format, Grid};
use notifier_core::describe::snapshot::{ChildKind, Snapshot};
use notifier_core::engine::details::describe_change;
use notifier_core::engine::seqnum::Change;
use notifier_core::history::History;
use notifier_core::net::gateway::{DirFormat, Gateway, GatewayError};
use notifier_core::news::feed::{self, NewsFeed};
use notifier_core::news::{NewsDraft, Severity};
use tahoe_caps::Cap;

fn grid() -> &'static Grid {
    local_grid::shared().expect("start the local grid (run tests/bootstrap-python.sh first)")
}

fn gateway() -> Gateway {
    Gateway::new(grid().gateway_url()).unwrap()
}

fn cap(text: &str) -> Cap {
    Cap::parse(text).unwrap()
}

/// A change as the seqnum tracker would report it (the numbers only go into the details).
fn change(cap: &Cap, seqnum: u64) -> Change {
    Change {
        storage_index: cap.storage_index().unwrap(),
        seqnum,
        previous: seqnum.checked_sub(1),
        while_away: false,
    }
}

fn children(s: &Snapshot) -> Vec<(String, ChildKind, Option<u64>)> {
    match s {
        Snapshot::Directory { children } => children
            .iter()
            .map(|(n, c)| (n.clone(), c.kind, c.size))
            .collect(),
        Snapshot::File { .. } => panic!("expected a directory"),
    }
}

#[tokio::test]
async fn lists_real_sdmf_and_mdmf_directories() {
    let g = gateway();
    for format in [Format::Sdmf, Format::Mdmf] {
        let dir = grid().create_mutable_dir(format).unwrap();
        grid().put_child(&dir, "hello.txt", b"hello").unwrap();
        grid().mkdir_child(&dir, "Photos", format).unwrap();
        let dir = cap(&dir);

        // Through the read-cap, as the notifier holds it.
        let listing = g.list(&dir.read_only()).await.unwrap();
        assert_eq!(
            children(&listing),
            vec![
                ("Photos".to_owned(), ChildKind::Directory, None),
                ("hello.txt".to_owned(), ChildKind::File, Some(5)),
            ],
            "{format:?}"
        );

        let child = g
            .child_cap(&dir.read_only(), "hello.txt")
            .await
            .unwrap()
            .unwrap();
        assert!(child.is_readonly());
        assert_eq!(g.read(&child, 1024).await.unwrap(), b"hello");
        assert!(matches!(
            g.read(&child, 3).await.unwrap_err(),
            GatewayError::TooLarge { .. }
        ));
        assert_eq!(g.child_cap(&dir, "missing").await.unwrap(), None);

        let caps = g.list_children_caps(&dir).await.unwrap();
        let names: Vec<&str> = caps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Photos", "hello.txt"]);
        assert!(caps[0].1.is_directory() && caps[0].1.is_readonly());
    }
}

#[tokio::test]
async fn writes_through_the_gateway() {
    let g = gateway();
    for format in [DirFormat::Sdmf, DirFormat::Mdmf] {
        let dir = g.create_dir(format).await.unwrap();
        assert!(dir.is_directory() && !dir.is_readonly());
        assert_eq!(
            dir.format(),
            match format {
                DirFormat::Sdmf => tahoe_caps::CapFormat::Sdmf,
                DirFormat::Mdmf => tahoe_caps::CapFormat::Mdmf,
            }
        );
        let sub = g.mkdir_child(&dir, "sub dir").await.unwrap();
        assert_eq!(sub.format(), dir.format());
        let file = g.put_child(&dir, "a b?.txt", b"contents").await.unwrap();
        assert_eq!(g.read(&file, 100).await.unwrap(), b"contents");
        g.put_file_at(&dir, &["sub dir", "deep.txt"], b"deep")
            .await
            .unwrap();
        let deep = g.child_cap(&sub, "deep.txt").await.unwrap().unwrap();
        assert_eq!(g.read(&deep, 100).await.unwrap(), b"deep");
        // The raw listing agrees with ours.
        let raw = grid().list_dir_json(&dir.to_string()).unwrap();
        assert!(raw[1]["children"]["a b?.txt"].is_array());
    }
}

#[tokio::test]
async fn errors_name_the_operation_and_status_never_the_cap() {
    let g = gateway();
    // A well-formed cap of a slot no server holds.
    let absent = cap(
        "URI:DIR2-RO:ivvd5n2q4kbrsg3vvaxohw5jpe:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a",
    );
    let err = g.list(&absent).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GatewayError::Status { .. }), "{text}");
    assert!(
        text.starts_with(
            "cannot list a directory or file through the gateway: the gateway answered HTTP"
        ),
        "{text}"
    );
    assert!(!text.contains("ivvd5n2q4kbrsg3vvaxohw5jpe"), "{text}");
    assert!(!text.contains("URI:"), "{text}");
}

#[tokio::test]
async fn describe_change_says_what_changed_in_a_real_directory() {
    let g = gateway();
    let h = History::in_memory().unwrap();
    for format in [Format::Sdmf, Format::Mdmf] {
        let dir_text = grid().create_mutable_dir(format).unwrap();
        let dir = cap(&dir_text).read_only();
        let id = format!("cap-{format:?}").to_lowercase();
        grid().put_child(&dir_text, "first.txt", b"1").unwrap();

        let baseline =
            describe_change(Some(&g), &h, &id, "Team Docs", &dir, &change(&dir, 2)).await;
        assert_eq!(baseline.summary, "Team Docs: changed, now 1 item");

        grid()
            .put_child(&dir_text, "report.pdf", &[7u8; 2000])
            .unwrap();
        let added = describe_change(Some(&g), &h, &id, "Team Docs", &dir, &change(&dir, 3)).await;
        assert_eq!(added.summary, "Team Docs: added report.pdf", "{format:?}");
        assert_eq!(added.body, "Added: report.pdf");
        assert_eq!(added.details_json["added"][0], "report.pdf");

        grid().delete_child(&dir_text, "report.pdf").unwrap();
        let removed = describe_change(Some(&g), &h, &id, "Team Docs", &dir, &change(&dir, 4)).await;
        assert_eq!(removed.summary, "Team Docs: removed report.pdf");

        let mut away = change(&dir, 6);
        away.while_away = true;
        away.previous = Some(4);
        grid().put_child(&dir_text, "a.txt", b"a").unwrap();
        grid().put_child(&dir_text, "b.txt", b"b").unwrap();
        let d = describe_change(Some(&g), &h, &id, "Team Docs", &dir, &away).await;
        assert_eq!(
            d.summary,
            "Team Docs: added a.txt, 1 more (while you were away)"
        );
        assert!(d.while_away);
        assert!(!d.summary.contains("URI:") && !d.body.contains("URI:"));
        assert!(!d.details_json.to_string().contains("URI:"));
    }
}

#[tokio::test]
async fn mutable_file_overwrite_gives_the_new_size() {
    let g = gateway();
    let h = History::in_memory().unwrap();
    for format in [Format::Sdmf, Format::Mdmf] {
        let file_text = grid().create_mutable_file(format, &[b'x'; 100]).unwrap();
        let file = cap(&file_text).read_only();
        let id = format!("file-{format:?}").to_lowercase();
        let first = describe_change(Some(&g), &h, &id, "Notes", &file, &change(&file, 1)).await;
        assert_eq!(first.summary, "Notes: changed, now 100 bytes");

        grid()
            .overwrite_mutable_file(&file_text, &vec![b'y'; 12_345])
            .unwrap();
        let d = describe_change(Some(&g), &h, &id, "Notes", &file, &change(&file, 2)).await;
        assert_eq!(d.summary, "Notes: changed, now 12.3 kB", "{format:?}");
        assert_eq!(d.body, "Now 12.3 kB, was 100 bytes.");
        assert_eq!(d.details_json["size"], 12_345);
    }
}

#[tokio::test]
async fn news_publish_refresh_once_and_upgrade() {
    let g = gateway();
    let h = History::in_memory().unwrap();
    let news_text = grid().create_mutable_dir(Format::Sdmf).unwrap();
    let news_rw = cap(&news_text);

    // Empty news directory: nothing, no upgrade, no v1 yet.
    let mut feed = NewsFeed::new("test-grid", news_rw.read_only());
    let empty = feed.refresh(&g, &h).await.unwrap();
    assert!(empty.new_messages.is_empty() && !empty.upgrade_required);
    assert_eq!(empty.v1_storage_index, None);

    let drafts = [
        NewsDraft {
            title: Some("Outage".into()),
            severity: Severity::Critical,
            expires: None,
            body: "Storage server 2 is down.".into(),
        },
        NewsDraft {
            title: Some("Back up".into()),
            severity: Severity::Critical,
            expires: None,
            body: "All servers are back.\nSorry!".into(),
        },
    ];
    let mut names = Vec::new();
    for draft in &drafts {
        names.push(feed::publish(&g, &news_rw, draft).await.unwrap());
    }
    assert!(names[0] < names[1], "{names:?}");

    let refresh = feed.refresh(&g, &h).await.unwrap();
    assert!(!refresh.upgrade_required);
    let got: Vec<(&str, Option<&str>, Severity, &str)> = refresh
        .new_messages
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.title.as_deref(),
                m.severity,
                m.body.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                names[0].as_str(),
                Some("Outage"),
                Severity::Critical,
                "Storage server 2 is down."
            ),
            (
                names[1].as_str(),
                Some("Back up"),
                Severity::Critical,
                "All servers are back.\nSorry!"
            ),
        ]
    );
    let v1 = g
        .child_cap(&news_rw, "v1")
        .await
        .unwrap()
        .expect("publish made v1");
    assert_eq!(refresh.v1_storage_index, v1.storage_index());
    assert_eq!(h.list_news(false, None).unwrap().len(), 2);

    // Each message is new once.
    let again = feed.refresh(&g, &h).await.unwrap();
    assert!(again.new_messages.is_empty());
    // A fresh feed (a restart) on the same history agrees.
    let mut restarted = NewsFeed::new("test-grid", news_rw.read_only());
    assert!(restarted
        .refresh(&g, &h)
        .await
        .unwrap()
        .new_messages
        .is_empty());

    // An expired message is stored but not new.
    let expired = NewsDraft {
        title: None,
        severity: Severity::Info,
        expires: Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1)),
        body: "Old news".into(),
    };
    feed::publish(&g, &news_rw, &expired).await.unwrap();
    let r = feed.refresh(&g, &h).await.unwrap();
    assert!(r.new_messages.is_empty());
    assert_eq!(r.expired_messages.len(), 1);
    assert_eq!(h.list_news(false, None).unwrap().len(), 3);

    // The operator moves to a format we do not read.
    grid().mkdir_child(&news_text, "v2", Format::Sdmf).unwrap();
    let r = feed.refresh(&g, &h).await.unwrap();
    assert!(r.upgrade_required);
    assert!(r.new_messages.is_empty());
}

#[tokio::test]
async fn news_directory_without_v1_but_with_something_else_needs_an_upgrade() {
    let g = gateway();
    let h = History::in_memory().unwrap();
    let news_text = grid().create_mutable_dir(Format::Mdmf).unwrap();
    grid().mkdir_child(&news_text, "v3", Format::Mdmf).unwrap();
    let mut feed = NewsFeed::new("g", cap(&news_text));
    let r = feed.refresh(&g, &h).await.unwrap();
    assert!(r.upgrade_required);
    assert_eq!(r.v1_storage_index, None);
}
