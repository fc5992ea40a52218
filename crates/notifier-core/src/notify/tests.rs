use super::*;
use crate::notify::desktop::classify_error;
use time::macros::time;

fn note(cap: &str, added: &[&str]) -> ChangeNote {
    ChangeNote {
        cap_id: cap.to_owned(),
        label: "Team Docs".to_owned(),
        summary: format!("Team Docs: added {}", added.join(", ")),
        body: String::new(),
        added: added.iter().map(|s| (*s).to_owned()).collect(),
        modified: Vec::new(),
        removed: Vec::new(),
        target: Some(format!("change:{}", added.join(","))),
        early: false,
    }
}

const NOON: Time = time!(12:00);

fn news(summary: &str, urgency: Urgency) -> Notification {
    Notification {
        summary: summary.into(),
        body: String::new(),
        urgency,
        target: None,
        replace_key: None,
    }
}

const TEN: [&str; 10] = [
    "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "g.txt", "h.txt", "i.txt", "j.txt",
];

#[test]
fn markup_in_a_summary_cannot_restyle_the_notification() {
    assert_eq!(
        neutralize_markup("Docs: added </b><u>x</u> & more"),
        "Docs: added \u{2039}/b\u{203A}\u{2039}u\u{203A}x\u{2039}/u\u{203A} \u{FF06} more"
    );
    assert_eq!(escape_markup("a <b> & c"), "a &lt;b&gt; &amp; c");
}

#[test]
fn a_single_change_is_shown_at_once_and_its_window_ends_silently() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    let out = p.on_change(note("a", &["x.txt"]), t0, NOON);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].summary, "Team Docs: added x.txt");
    assert_eq!(out[0].target.as_deref(), Some("change:x.txt"));
    assert_eq!(out[0].urgency, Urgency::Normal);
    assert_eq!(out[0].replace_key.as_deref(), Some("cap:a"));
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(2)));
    assert!(p.poll(t0 + Duration::from_millis(1999), NOON).is_empty());
    assert!(p.poll(t0 + Duration::from_secs(2), NOON).is_empty());
    assert_eq!(p.next_deadline(), None);
    // The window is over: the next change is shown at once again.
    let out = p.on_change(note("a", &["y.txt"]), t0 + Duration::from_secs(3), NOON);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].summary, "Team Docs: added y.txt");
}

#[test]
fn a_burst_is_the_first_change_at_once_then_one_coalesced_replacement() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    let mut at_once = Vec::new();
    for (i, name) in TEN.iter().enumerate() {
        let now = t0 + Duration::from_millis(100 * i as u64);
        at_once.extend(p.on_change(note("docs", &[name]), now, NOON));
    }
    // Another cap's change is separate, and shown at once too.
    at_once.extend(p.on_change(note("other", &["z"]), t0 + Duration::from_millis(50), NOON));
    let summaries: Vec<&str> = at_once.iter().map(|n| n.summary.as_str()).collect();
    assert_eq!(
        summaries,
        ["Team Docs: added a.txt", "Team Docs: added z"],
        "only each cap's first change is shown at once"
    );
    // "other" had one change: its window ends 2 s after it, silently.
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(2050)));
    assert!(p.poll(t0 + Duration::from_millis(2050), NOON).is_empty());
    let last = t0 + Duration::from_millis(900);
    assert_eq!(p.next_deadline(), Some(last + Duration::from_secs(2)));
    assert!(p.poll(last + Duration::from_millis(1999), NOON).is_empty());
    let out = p.poll(last + Duration::from_secs(2), NOON);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].summary,
        "Team Docs: 10 changes — added a.txt, b.txt, 8 more"
    );
    assert_eq!(out[0].replace_key, at_once[0].replace_key);
    assert_eq!(out[0].target.as_deref(), Some("change:j.txt"), "the newest");
    assert_eq!(out[0].body.lines().count(), 10);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn a_burst_that_never_pauses_is_still_reported() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    let mut shown = Vec::new();
    for i in 0..30u64 {
        let now = t0 + Duration::from_secs(i) / 2;
        shown.extend(p.poll(now, NOON));
        shown.extend(p.on_change(note("docs", &[&format!("f{i}")]), now, NOON));
    }
    let summaries: Vec<&str> = shown.iter().map(|n| n.summary.as_str()).collect();
    // f0 at once; at 10 s the window (f0..f19) ends as it reaches the longest delay, and
    // f20 opens the next one.
    assert_eq!(summaries.len(), 3, "{summaries:?}");
    assert_eq!(summaries[0], "Team Docs: added f0");
    assert!(
        summaries[1].starts_with("Team Docs: 20 changes — added f0, f1, 18 more"),
        "{summaries:?}"
    );
    assert_eq!(summaries[2], "Team Docs: added f20");
    let rest = p.flush(NOON);
    assert_eq!(rest.len(), 1);
    assert!(
        rest[0]
            .summary
            .starts_with("Team Docs: 10 changes — added f20, f21, 8 more"),
        "{}",
        rest[0].summary
    );
}

#[test]
fn a_due_window_is_reported_before_the_next_change() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    p.on_change(note("d", &["a"]), t0, NOON);
    p.on_change(note("d", &["b"]), t0 + Duration::from_millis(100), NOON);
    // Nobody polled at the deadline (2.1 s); a change at 5 s first ends the old window.
    let out = p.on_change(note("d", &["c"]), t0 + Duration::from_secs(5), NOON);
    let summaries: Vec<&str> = out.iter().map(|n| n.summary.as_str()).collect();
    assert_eq!(
        summaries,
        ["Team Docs: 2 changes — added a, b", "Team Docs: added c"]
    );
}

#[test]
fn mixed_and_file_bursts() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    let mut n = note("d", &["new.txt"]);
    n.removed = vec!["old.txt".into(), "older.txt".into()];
    p.on_change(n, t0, NOON);
    p.on_change(
        note("d", &["new.txt"]),
        t0 + Duration::from_millis(10),
        NOON,
    );
    let out = p.poll(t0 + Duration::from_secs(3), NOON);
    assert_eq!(
        out[0].summary,
        "Team Docs: 2 changes — added new.txt, removed old.txt, 1 more"
    );

    let file = |size: &str| ChangeNote {
        cap_id: "f".into(),
        label: "Notes".into(),
        summary: format!("Notes: changed, now {size}"),
        body: String::new(),
        added: vec![],
        modified: vec![],
        removed: vec![],
        target: None,
        early: false,
    };
    let first = p.on_change(file("1.0 kB"), t0, NOON);
    assert_eq!(first[0].summary, "Notes: changed, now 1.0 kB");
    p.on_change(file("2.0 kB"), t0 + Duration::from_millis(500), NOON);
    p.on_change(file("3.0 kB"), t0 + Duration::from_millis(900), NOON);
    let out = p.poll(t0 + Duration::from_secs(3), NOON);
    assert_eq!(
        out[0].summary,
        "Notes: 3 changes — latest: changed, now 3.0 kB"
    );
    assert_eq!(out[0].replace_key.as_deref(), Some("cap:f"));
}

#[test]
fn muted_caps_and_news_only_drop_changes() {
    let t0 = Instant::now();
    let mut config = PolicyConfig::default();
    config.muted_caps.insert("muted".into());
    let mut p = NotificationPolicy::new(config.clone());
    assert!(p.on_change(note("muted", &["x"]), t0, NOON).is_empty());
    assert_eq!(p.on_change(note("loud", &["y"]), t0, NOON).len(), 1);
    p.on_change(note("loud", &["y2"]), t0, NOON);

    // Muting a cap mid-burst drops its pending coalesced notification.
    config.muted_caps.insert("loud".into());
    p.set_config(config.clone());
    assert_eq!(p.next_deadline(), None);
    assert!(p.flush(NOON).is_empty());

    config.muted_caps.clear();
    config.news_only = true;
    p.set_config(config);
    assert!(p.on_change(note("loud", &["y"]), t0, NOON).is_empty());
    assert_eq!(p.next_deadline(), None);
    let n = news("Grid: maintenance", Urgency::Normal);
    assert_eq!(p.on_news(n.clone(), NOON), Some(n));
}

#[test]
fn quiet_hours_hold_back_all_but_critical() {
    let quiet = QuietHours {
        start: time!(22:00),
        end: time!(07:00),
    };
    assert!(quiet.contains(time!(23:30)));
    assert!(quiet.contains(time!(00:00)));
    assert!(quiet.contains(time!(06:59)));
    assert!(!quiet.contains(time!(07:00)));
    assert!(!quiet.contains(time!(12:00)));
    let day = QuietHours {
        start: time!(12:00),
        end: time!(13:00),
    };
    assert!(day.contains(time!(12:30)) && !day.contains(time!(13:30)));

    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig {
        quiet_hours: Some(quiet),
        ..PolicyConfig::default()
    });
    assert!(p.on_change(note("a", &["x"]), t0, time!(23:00)).is_empty());
    p.on_change(note("a", &["y"]), t0, time!(23:00));
    assert!(p.poll(t0 + Duration::from_secs(5), time!(23:00)).is_empty());
    let later = t0 + Duration::from_secs(10);
    assert_eq!(p.on_change(note("a", &["x"]), later, time!(08:00)).len(), 1);
    // A burst that began in quiet hours and ends after them is shown when it ends.
    let t1 = t0 + Duration::from_secs(20);
    assert!(p.on_change(note("b", &["x"]), t1, time!(06:59)).is_empty());
    p.on_change(note("b", &["y"]), t1, time!(06:59));
    assert_eq!(p.poll(t1 + Duration::from_secs(5), time!(07:00)).len(), 1);

    assert_eq!(
        p.on_news(news("Grid: outage", Urgency::Normal), time!(23:00)),
        None
    );
    assert!(p
        .on_news(news("Grid: outage", Urgency::Critical), time!(23:00))
        .is_some());
}

#[test]
fn severity_to_urgency() {
    assert_eq!(Urgency::from(Severity::Info), Urgency::Normal);
    assert_eq!(Urgency::from(Severity::Warning), Urgency::Normal);
    assert_eq!(Urgency::from(Severity::Critical), Urgency::Critical);
}

#[test]
fn recording_sink_keeps_sanitized_notifications() {
    let sink = RecordingSink::new();
    let id = sink
        .deliver(&Notification {
            summary: "Docs: added\nURI:DIR2:abc:def\u{202E}".into(),
            body: "see /uri/URI:DIR2:abc:def/x and pb://x@y/z".into(),
            urgency: Urgency::Low,
            target: Some("change:1".into()),
            replace_key: None,
        })
        .unwrap();
    assert_eq!(id, DeliveredId(1));
    let got = sink.take();
    assert_eq!(got[0].summary, "Docs: added <cap>");
    assert_eq!(got[0].body, "see /uri/<cap> and <nurl>");
    assert!(sink.delivered().is_empty());
}

#[test]
fn recording_sink_replaces_by_key() {
    let sink = RecordingSink::new();
    let keyed = |summary: &str, key: Option<&str>| Notification {
        summary: summary.into(),
        body: String::new(),
        urgency: Urgency::Normal,
        target: None,
        replace_key: key.map(str::to_owned),
    };
    let a = sink
        .deliver(&keyed("Docs: added a", Some("cap:1")))
        .unwrap();
    let b = sink
        .deliver(&keyed("Notes: changed", Some("cap:2")))
        .unwrap();
    let news = sink.deliver(&keyed("Grid: news", None)).unwrap();
    let a2 = sink
        .deliver(&keyed("Docs: 2 changes — added a, b", Some("cap:1")))
        .unwrap();
    assert_eq!(a, a2);
    assert_ne!(a, b);
    assert_ne!(b, news);
    assert_eq!(sink.shown().len(), 3);
    let replaced = sink.replacements();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].summary, "Docs: 2 changes — added a, b");
    let screen: Vec<String> = sink.on_screen().into_iter().map(|n| n.summary).collect();
    assert_eq!(
        screen,
        [
            "Docs: 2 changes — added a, b",
            "Notes: changed",
            "Grid: news"
        ]
    );
    assert_eq!(sink.records()[3].id, a);
    assert!(sink.records()[3].replaced);
}

#[test]
fn errors_are_classified() {
    assert!(matches!(
        classify_error("org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.Notifications was not provided by any .service files"),
        NotifyError::NoDaemon(_)
    ));
    let e = NotifyError::NoDaemon("x".into());
    assert_eq!(
        e.to_string(),
        "no notification daemon on the session bus: x"
    );
    assert_eq!(escape_markup("<b>a&b</b>"), "&lt;b&gt;a&amp;b&lt;/b&gt;");
}

#[test]
fn notes_from_descriptions() {
    let d = ChangeDescription {
        summary: "Docs: added a, 1 more".into(),
        body: String::new(),
        details_json: serde_json::json!({"added": ["a", "b"], "removed": [], "modified": ["c"]}),
        while_away: false,
    };
    let n = ChangeNote::from_description("cap-1", "Docs", &d, Some("change:7".into()));
    assert_eq!(n.added, vec!["a", "b"]);
    assert_eq!(n.modified, vec!["c"]);
    assert!(n.removed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_runner_shows_the_first_change_at_once_and_replaces_it_with_the_burst() {
    let sink = Arc::new(RecordingSink::new());
    let (tx, rx) = mpsc::channel(16);
    let runner = tokio::spawn(run_policy(
        NotificationPolicy::new(PolicyConfig::default()),
        rx,
        sink.clone() as Arc<dyn NotificationSink>,
        UtcOffset::UTC,
    ));
    tx.send(PolicyInput::Change(note("d", &["a"])))
        .await
        .unwrap();
    // Delivery runs on the blocking pool: give it real time, not paused time.
    let mut waited = 0;
    while sink.delivered().is_empty() && waited < 500 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(2));
        waited += 1;
    }
    let started = tokio::time::Instant::now();
    assert_eq!(sink.shown().len(), 1, "shown at once");
    assert_eq!(started.elapsed(), Duration::ZERO, "no timer ran before it");
    for name in ["b", "c"] {
        tx.send(PolicyInput::Change(note("d", &[name])))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(tx);
    runner.await.unwrap();
    let records = sink.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].notification.summary, "Team Docs: added a");
    assert!(!records[0].replaced);
    assert_eq!(
        records[1].notification.summary,
        "Team Docs: 3 changes — added a, b, 1 more"
    );
    assert!(records[1].replaced);
    assert_eq!(records[1].id, records[0].id);
}

#[test]
fn do_not_disturb_holds_changes_and_sums_them_up_once_when_it_ends() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    assert_eq!(p.set_do_not_disturb(true), None);
    assert!(p.on_change(note("a", &["x.txt"]), t0, NOON).is_empty());
    assert!(p
        .on_change(note("b", &["y.txt"]), t0 + Duration::from_secs(10), NOON)
        .is_empty());
    assert!(p
        .on_news(news("G: Tonight", Urgency::Normal), NOON)
        .is_none());
    // Critical news is shown by default even now.
    assert!(p
        .on_news(news("G: Down now", Urgency::Critical), NOON)
        .is_some());
    let summary = p
        .set_do_not_disturb(false)
        .expect("one summary when it ends");
    assert_eq!(
        summary.summary,
        "2 changes and 1 news item while Do Not Disturb was on"
    );
    assert_eq!(summary.target.as_deref(), Some("activity"));
    // Said once: ending again, or a silence with nothing held, says nothing.
    assert_eq!(p.set_do_not_disturb(false), None);
    p.set_do_not_disturb(true);
    assert_eq!(p.set_do_not_disturb(false), None);
    // After it, changes show again.
    assert_eq!(
        p.on_change(note("c", &["z.txt"]), t0 + Duration::from_secs(60), NOON)
            .len(),
        1
    );
}

#[test]
fn a_pause_holds_like_do_not_disturb_and_says_so() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    p.set_paused(true);
    assert!(p.on_change(note("a", &["x.txt"]), t0, NOON).is_empty());
    let summary = p.set_paused(false).unwrap();
    assert_eq!(summary.summary, "1 change while notifications were paused");
}

#[test]
fn each_kind_follows_its_own_alert_setting() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig {
        alerts: AlertSettings {
            changes: Alert::Never,
            news: Alert::Always,
            critical_news: Alert::FollowDnd,
        },
        ..PolicyConfig::default()
    });
    p.set_do_not_disturb(true);
    assert!(p.on_change(note("a", &["x.txt"]), t0, NOON).is_empty());
    assert!(p
        .on_news(news("G: Tonight", Urgency::Normal), NOON)
        .is_some());
    assert!(p
        .on_news(news("G: Down now", Urgency::Critical), NOON)
        .is_none());
    let summary = p.set_do_not_disturb(false).unwrap();
    assert_eq!(summary.summary, "1 news item while Do Not Disturb was on");
    // "Never" is never shown, even with nothing silencing it.
    assert!(p
        .on_change(note("b", &["y.txt"]), t0 + Duration::from_secs(60), NOON)
        .is_empty());
}

#[test]
fn an_early_notice_is_shown_at_once_and_replaced_by_the_described_change() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    let early = p.on_change(
        ChangeNote::early("a", "Grid News", Duration::from_secs(17)),
        t0,
        NOON,
    );
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].summary, "Grid News changed");
    assert!(early[0].body.contains("about 17 s"), "{}", early[0].body);
    assert_eq!(early[0].replace_key.as_deref(), Some("cap:a"));
    // It opens no window: the described change, 17 s later, is shown at once under the same
    // key (replacing the notice on the desktop), and is the only change its window counts.
    assert_eq!(p.next_deadline(), None);
    let t1 = t0 + Duration::from_secs(17);
    let described = p.on_change(note("a", &["x.txt"]), t1, NOON);
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].summary, "Team Docs: added x.txt");
    assert_eq!(described[0].replace_key.as_deref(), Some("cap:a"));
    assert!(p.poll(t1 + Duration::from_secs(2), NOON).is_empty());
}

#[test]
fn an_early_notice_adds_nothing_to_an_open_window_or_a_silence() {
    let t0 = Instant::now();
    let mut p = NotificationPolicy::new(PolicyConfig::default());
    assert_eq!(p.on_change(note("a", &["x.txt"]), t0, NOON).len(), 1);
    let early = ChangeNote::early("a", "Team Docs", Duration::from_secs(5));
    assert!(p
        .on_change(early.clone(), t0 + Duration::from_millis(500), NOON)
        .is_empty());
    // The window still holds one change: it ends silently.
    assert!(p.poll(t0 + Duration::from_secs(3), NOON).is_empty());

    // Held back during Do-Not-Disturb, and not counted: the described change is.
    assert_eq!(p.set_do_not_disturb(true), None);
    let t1 = t0 + Duration::from_secs(10);
    assert!(p.on_change(early, t1, NOON).is_empty());
    assert!(p
        .on_change(note("a", &["y.txt"]), t1 + Duration::from_secs(5), NOON)
        .is_empty());
    let summary = p.set_do_not_disturb(false).expect("a summary");
    assert!(
        summary.summary.starts_with("1 change "),
        "{}",
        summary.summary
    );
}
