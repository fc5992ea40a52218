use super::*;
use serde_json::json;

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

fn text(n: u8) -> String {
    si(n).to_base32()
}

fn v(body: serde_json::Value) -> String {
    let mut obj = body;
    obj[VERSION_FIELD] = json!(1);
    obj.to_string()
}

fn client_err(input: &str) -> MessageError {
    ClientMessage::parse(input).unwrap_err()
}

fn server_err(input: &str) -> MessageError {
    ServerMessage::parse(input).unwrap_err()
}

// ------------------------------------------------------------------ client messages

#[test]
fn subscribe_exact_json() {
    let msg = ClientMessage::subscribe([si(1), si(2)]);
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"subscribe":["{}","{}"]}}"#,
        text(1),
        text(2)
    );
    assert_eq!(msg.to_json(), expected);
    assert_eq!(ClientMessage::parse(&expected).unwrap(), msg);
}

#[test]
fn subscribe_with_maximum_delay() {
    let msg = ClientMessage::subscribe_batched([si(1)], Duration::from_millis(250));
    let json = msg.to_json();
    assert_eq!(
        json,
        format!(
            r#"{{"tahoe-mutable-notification-version":1,"subscribe":["{}"],"options":{{"maximum-delay":250}}}}"#,
            text(1)
        )
    );
    let ClientMessage::Subscribe(sub) = ClientMessage::parse(&json).unwrap() else {
        panic!("not a subscribe")
    };
    assert_eq!(sub.maximum_delay, Some(Duration::from_millis(250)));
}

#[test]
fn options_without_delay_and_unknown_options() {
    let input = v(json!({"subscribe": [text(1)], "options": {"colour": "blue"}}));
    let ClientMessage::Subscribe(sub) = ClientMessage::parse(&input).unwrap() else {
        panic!()
    };
    assert_eq!(sub.maximum_delay, None);
    let input = v(json!({"subscribe": [], "options": null}));
    assert!(ClientMessage::parse(&input).is_ok());
}

#[test]
fn bad_options() {
    let e = client_err(&v(json!({"subscribe": [], "options": "fast"})));
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    assert_eq!(
        e.to_string(),
        "malformed-message: options must be an object; it is a string"
    );
    let e = client_err(&v(
        json!({"subscribe": [], "options": {"maximum-delay": -5}}),
    ));
    assert_eq!(
        e.to_string(),
        "malformed-message: options.maximum-delay must be a whole, non-negative number of milliseconds; it is -5"
    );
    let e = client_err(&v(
        json!({"subscribe": [], "options": {"maximum-delay": "5"}}),
    ));
    assert_eq!(
        e.to_string(),
        "malformed-message: options.maximum-delay must be a whole, non-negative number of milliseconds; it is a string"
    );
}

#[test]
fn unsubscribe_exact_json() {
    let msg = ClientMessage::unsubscribe([si(3)]);
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"unsubscribe":["{}"]}}"#,
        text(3)
    );
    assert_eq!(msg.to_json(), expected);
    assert_eq!(ClientMessage::parse(&expected).unwrap(), msg);
}

#[test]
fn malformed_index_is_not_a_message_error() {
    let input = v(json!({"subscribe": [text(1), "nope", text(1)]}));
    let ClientMessage::Subscribe(sub) = ClientMessage::parse(&input).unwrap() else {
        panic!()
    };
    assert_eq!(
        sub.storage_indexes.len(),
        3,
        "duplicates are kept in the request"
    );
    assert_eq!(sub.storage_indexes[0].parsed, Ok(si(1)));
    assert_eq!(sub.storage_indexes[1].raw, "nope");
    assert_eq!(
        sub.storage_indexes[1].parsed,
        Err(StorageIndexError::WrongLength { found: 4 })
    );
    assert_eq!(sub.storage_indexes[2].storage_index(), Some(si(1)));
}

#[test]
fn unknown_fields_are_ignored() {
    let input = format!(
        r#"{{"future": {{"deep": [1,2,{{"x": null}}]}}, "tahoe-mutable-notification-version": 1, "subscribe": ["{}"], "status": 5, "zzz": "y"}}"#,
        text(1)
    );
    assert_eq!(
        ClientMessage::parse(&input).unwrap(),
        ClientMessage::subscribe([si(1)])
    );
    let input = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "update": "{}", "subscribe": 7, "new": true}}"#,
        text(1)
    );
    assert_eq!(
        ServerMessage::parse(&input).unwrap(),
        ServerMessage::Update(Update {
            storage_index: si(1),
            seqnum: None,
            proof: None,
            subscribers: None,
        })
    );
}

#[test]
fn not_json_or_not_object() {
    let e = client_err("{not json");
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    assert!(
        e.to_string()
            .starts_with("malformed-message: not valid JSON: "),
        "{e}"
    );
    for (input, what) in [
        ("[1,2]", "an array"),
        ("\"x\"", "a string"),
        ("3", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        let e = client_err(input);
        assert_eq!(
            e.to_string(),
            format!("malformed-message: a message must be a JSON object; this is {what}")
        );
        assert_eq!(server_err(input).code(), ErrorCode::MalformedMessage);
    }
    assert_eq!(client_err("").code(), ErrorCode::MalformedMessage);
    assert_eq!(client_err("{} {}").code(), ErrorCode::MalformedMessage);
}

#[test]
fn version_errors() {
    let e = client_err(r#"{"subscribe": []}"#);
    assert_eq!(e.code(), ErrorCode::UnsupportedVersion);
    assert_eq!(
        e.to_string(),
        "unsupported-version: the message has no \"tahoe-mutable-notification-version\" field"
    );
    let e = client_err(r#"{"tahoe-mutable-notification-version": 2, "subscribe": []}"#);
    assert_eq!(
        e.to_string(),
        "unsupported-version: version 2 is not supported; this peer speaks version 1"
    );
    let e = client_err(r#"{"tahoe-mutable-notification-version": -1, "subscribe": []}"#);
    assert_eq!(
        e.to_string(),
        "unsupported-version: version -1 is not supported; this peer speaks version 1"
    );
    let e = client_err(r#"{"tahoe-mutable-notification-version": "1", "subscribe": []}"#);
    assert_eq!(
        e.to_string(),
        "unsupported-version: \"tahoe-mutable-notification-version\" must be the integer 1; it is a string"
    );
    let e = client_err(r#"{"tahoe-mutable-notification-version": 1.0, "subscribe": []}"#);
    assert_eq!(
        e.to_string(),
        "unsupported-version: \"tahoe-mutable-notification-version\" must be the integer 1; it is a non-integer number"
    );
    // The version is checked before the kind of message.
    let e = server_err(r#"{"tahoe-mutable-notification-version": 7}"#);
    assert_eq!(e.code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn unknown_message() {
    let e = client_err(r#"{"tahoe-mutable-notification-version": 1, "hello": []}"#);
    assert_eq!(e.code(), ErrorCode::UnknownMessage);
    assert_eq!(
        e.to_string(),
        "unknown-message: a client message must carry \"subscribe\" or \"unsubscribe\""
    );
    let e = server_err(r#"{"tahoe-mutable-notification-version": 1, "subscribe": []}"#);
    assert_eq!(
        e.to_string(),
        "unknown-message: a server message must carry \"status\", \"update\", \"updates\" or \"error\""
    );
}

#[test]
fn subscribe_shape_errors() {
    let e = client_err(&v(json!({"subscribe": "abc"})));
    assert_eq!(
        e.to_string(),
        "malformed-message: subscribe must be a list of storage-index strings; it is a string"
    );
    let e = client_err(&v(json!({"subscribe": [text(1), text(2), text(3), 4]})));
    assert_eq!(
        e.to_string(),
        "malformed-message: subscribe must be a list of storage-index strings; item 3 is a number"
    );
    let e = client_err(&v(json!({"unsubscribe": [null]})));
    assert_eq!(
        e.to_string(),
        "malformed-message: unsubscribe must be a list of storage-index strings; item 0 is null"
    );
    let e = client_err(&v(json!({"subscribe": [], "unsubscribe": []})));
    assert_eq!(
        e.to_string(),
        "malformed-message: a message carries \"subscribe\" or \"unsubscribe\", not both"
    );
    let e = client_err(
        r#"{"tahoe-mutable-notification-version": 1, "subscribe": [], "subscribe": []}"#,
    );
    assert_eq!(
        e.to_string(),
        "malformed-message: the field \"subscribe\" appears more than once"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    // Inside a field we read, serde_json's recursion limit (128) applies.
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "subscribe": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = client_err(&deep);
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    assert!(e.message().contains("recursion limit"), "{e}");
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "status": {}1{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let e = server_err(&deep);
    assert!(e.message().contains("recursion limit"), "{e}");
    // An unknown field is skipped by serde_json's iterative skipper (one byte of state per
    // level), so deep nesting there costs no stack and is simply ignored.
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "x": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(client_err(&deep).code(), ErrorCode::UnknownMessage);
    // Unbalanced nesting is still caught.
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "x": {}}}"#,
        "[".repeat(100_000)
    );
    assert_eq!(client_err(&deep).code(), ErrorCode::MalformedMessage);
}

#[test]
fn raw_text_survives_escaping() {
    let odd = "quo\"te\\back\nnl\u{1}ctl é ✓";
    let msg = ClientMessage::Subscribe(Subscribe {
        storage_indexes: vec![RequestedIndex::new(odd)],
        maximum_delay: None,
        proofs: None,
    });
    let json = msg.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["subscribe"][0], odd);
    assert_eq!(ClientMessage::parse(&json).unwrap(), msg);
}

// ------------------------------------------------------------------ server messages

#[test]
fn status_exact_json_in_order() {
    let mut status = Status::new();
    status.push(text(9), SubscriptionStatus::Subscribed);
    status.push(
        text(1),
        SubscriptionStatus::refused(
            ErrorCode::NotFound,
            "this server holds no share of that slot",
        ),
    );
    status.push(
        "bad",
        SubscriptionStatus::refused(
            ErrorCode::MalformedStorageIndex,
            "a storage index has 26 characters, this has 3",
        ),
    );
    status.push_seqnum(text(9), 7);
    let msg = ServerMessage::Status(status.clone());
    let json = msg.to_json();
    assert_eq!(
        json,
        format!(
            r#"{{"tahoe-mutable-notification-version":1,"status":{{"{a}":true,"{b}":"not-found: this server holds no share of that slot","bad":"malformed-storage-index: a storage index has 26 characters, this has 3"}},"seqnum":{{"{a}":7}}}}"#,
            a = text(9),
            b = text(1)
        )
    );
    let back = ServerMessage::parse(&json).unwrap();
    assert_eq!(back, msg, "order survives a round trip");
    let ServerMessage::Status(back) = back else {
        panic!()
    };
    assert_eq!(back.seqnum(&text(9)), Some(7));
    assert!(back.get(&text(9)).unwrap().is_subscribed());
}

#[test]
fn status_without_seqnum_omits_it() {
    let mut status = Status::new();
    status.push(text(1), SubscriptionStatus::Subscribed);
    let json = ServerMessage::Status(status).to_json();
    assert!(!json.contains("seqnum"));
    let empty = ServerMessage::Status(Status::new()).to_json();
    assert_eq!(
        empty,
        r#"{"tahoe-mutable-notification-version":1,"status":{}}"#
    );
}

#[test]
fn duplicate_keys_collapse() {
    let mut status = Status::new();
    status.push(
        text(1),
        SubscriptionStatus::refused(ErrorCode::Internal, "first"),
    );
    status.push(text(2), SubscriptionStatus::Subscribed);
    status.push(text(1), SubscriptionStatus::Subscribed);
    status.push_seqnum(text(1), 1);
    status.push_seqnum(text(1), 2);
    let json = ServerMessage::Status(status.clone()).to_json();
    assert_eq!(
        json,
        format!(
            r#"{{"tahoe-mutable-notification-version":1,"status":{{"{a}":true,"{b}":true}},"seqnum":{{"{a}":2}}}}"#,
            a = text(1),
            b = text(2)
        )
    );
    status.dedup();
    assert_eq!(status.entries.len(), 2);
    assert_eq!(status.seqnums, vec![(text(1), 2)]);
    // A peer that sends duplicate keys collapses the same way.
    let input = format!(
        r#"{{"tahoe-mutable-notification-version":1,"status":{{"{a}":"internal: x","{b}":true,"{a}":true}}}}"#,
        a = text(1),
        b = text(2)
    );
    let ServerMessage::Status(parsed) = ServerMessage::parse(&input).unwrap() else {
        panic!()
    };
    assert_eq!(
        parsed.entries,
        vec![
            (text(1), SubscriptionStatus::Subscribed),
            (text(2), SubscriptionStatus::Subscribed)
        ]
    );
}

#[test]
fn status_shape_errors() {
    let e = server_err(&v(json!({"status": []})));
    assert_eq!(
        e.to_string(),
        "malformed-message: status must be an object; it is an array"
    );
    let e = server_err(&v(json!({"status": {"abc": false}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: status entry \"abc\" must be true or an error string; it is a boolean"
    );
    let e = server_err(&v(json!({"status": {}, "seqnum": {"abc": "7"}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum entry \"abc\" must be a non-negative integer; it is a string"
    );
    let e = server_err(&v(json!({"status": {}, "seqnum": 7})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum of a status must be an object; it is a number"
    );
    let long = "x".repeat(1000);
    let e = server_err(&v(json!({"status": {long: 1}})));
    assert!(e.to_string().len() < 200, "quotes are cut short: {e}");
}

#[test]
fn refusal_strings_are_lenient() {
    let input = v(
        json!({"status": {"a": "future-code: something new", "b": "bare", "c": "not-mutable:nospace"}}),
    );
    let ServerMessage::Status(status) = ServerMessage::parse(&input).unwrap() else {
        panic!()
    };
    assert_eq!(
        status.get("a"),
        Some(&SubscriptionStatus::refused(
            ErrorCode::Other("future-code".into()),
            "something new"
        ))
    );
    assert_eq!(
        status.get("b"),
        Some(&SubscriptionStatus::refused(
            ErrorCode::Other("bare".into()),
            ""
        ))
    );
    assert_eq!(
        status.get("c"),
        Some(&SubscriptionStatus::refused(
            ErrorCode::NotMutable,
            "nospace"
        ))
    );
}

#[test]
fn update_exact_json() {
    let msg = ServerMessage::Update(Update {
        storage_index: si(5),
        seqnum: Some(8),
        proof: None,
        subscribers: None,
    });
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"update":"{}","seqnum":8}}"#,
        text(5)
    );
    assert_eq!(msg.to_json(), expected);
    assert_eq!(ServerMessage::parse(&expected).unwrap(), msg);
    // The proposal's form, without seqnum.
    let bare = ServerMessage::Update(Update {
        storage_index: si(5),
        seqnum: None,
        proof: None,
        subscribers: None,
    });
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"update":"{}"}}"#,
        text(5)
    );
    assert_eq!(bare.to_json(), expected);
    assert_eq!(ServerMessage::parse(&expected).unwrap(), bare);
}

#[test]
fn subscribers_travel_in_updates_statuses_and_batches() {
    let update = ServerMessage::Update(Update {
        storage_index: si(5),
        seqnum: Some(8),
        proof: None,
        subscribers: Some(4096),
    });
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"update":"{}","seqnum":8,"subscribers":4096}}"#,
        text(5)
    );
    assert_eq!(update.to_json(), expected);
    assert_eq!(ServerMessage::parse(&expected).unwrap(), update);

    let mut status = Status::new();
    status.push(text(1), SubscriptionStatus::Subscribed);
    status.push_seqnum(text(1), 3);
    status.push_subscribers(text(1), 512);
    let wire = ServerMessage::Status(status).to_json();
    assert!(wire.ends_with(&format!(r#","subscribers":{{"{}":512}}}}"#, text(1))));
    let ServerMessage::Status(parsed) = ServerMessage::parse(&wire).unwrap() else {
        panic!("a status");
    };
    assert_eq!(parsed.subscribers(&text(1)), Some(512));
    assert_eq!(parsed.subscribers(&text(2)), None);

    let batch = ServerMessage::Updates(BatchedUpdates {
        storage_indexes: vec![si(1), si(2)],
        seqnums: vec![(si(1), 4), (si(2), 9)],
        proofs: Vec::new(),
        subscribers: vec![(si(2), 64)],
    });
    assert_eq!(ServerMessage::parse(&batch.to_json()).unwrap(), batch);
}

#[test]
fn a_subscriber_count_of_the_wrong_shape_is_malformed() {
    let e = server_err(&v(json!({"update": text(5), "subscribers": "many"})));
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    assert!(e
        .message()
        .contains("subscribers of an update must be a non-negative integer"));
    let e = server_err(&v(json!({"update": text(5), "subscribers": -1})));
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    let e = server_err(&v(
        json!({"status": {text(1): true}, "subscribers": {text(1): 1.5}}),
    ));
    assert!(e.message().contains("subscribers entry"), "{}", e.message());
    let e = server_err(&v(
        json!({"updates": [text(1)], "subscribers": {"nope": 2}}),
    ));
    assert!(e.message().contains("subscribers key"), "{}", e.message());
}

#[test]
fn update_shape_errors() {
    let e = server_err(&v(json!({"update": 5})));
    assert_eq!(
        e.to_string(),
        "malformed-message: update must be a storage-index string; it is a number"
    );
    let e = server_err(&v(json!({"update": "abc"})));
    assert_eq!(
        e.to_string(),
        "malformed-message: update \"abc\" is not a storage index: a storage index has 26 characters, this has 3"
    );
    let e = server_err(&v(json!({"update": text(1), "seqnum": -3})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum of an update must be a non-negative integer; it is a negative or fractional number"
    );
    let e = server_err(&v(json!({"update": text(1), "seqnum": {}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum of an update must be a non-negative integer; it is an object"
    );
    let e = server_err(&v(json!({"update": text(1), "status": {}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: a server message carries one of \"status\", \"update\", \"updates\" or \"error\"; this one has \"status\", \"update\""
    );
}

#[test]
fn batched_updates_exact_json() {
    let msg = ServerMessage::Updates(BatchedUpdates {
        storage_indexes: vec![si(1), si(2)],
        seqnums: vec![(si(2), 9), (si(1), 3)],
        proofs: Vec::new(),
        subscribers: Vec::new(),
    });
    let expected = format!(
        r#"{{"tahoe-mutable-notification-version":1,"updates":["{a}","{b}"],"seqnum":{{"{b}":9,"{a}":3}}}}"#,
        a = text(1),
        b = text(2)
    );
    assert_eq!(msg.to_json(), expected);
    assert_eq!(ServerMessage::parse(&expected).unwrap(), msg);
    let bare = format!(
        r#"{{"tahoe-mutable-notification-version":1,"updates":["{}"]}}"#,
        text(1)
    );
    assert_eq!(
        ServerMessage::parse(&bare).unwrap(),
        ServerMessage::Updates(BatchedUpdates {
            storage_indexes: vec![si(1)],
            seqnums: vec![],
            proofs: Vec::new(),
            subscribers: Vec::new(),
        })
    );
}

#[test]
fn batched_updates_shape_errors() {
    let e = server_err(&v(json!({"updates": [text(1), 2]})));
    assert_eq!(
        e.to_string(),
        "malformed-message: updates must be a list of storage-index strings; item 1 is a number"
    );
    let e = server_err(&v(json!({"updates": [text(1), "zz"]})));
    assert_eq!(
        e.to_string(),
        "malformed-message: updates item 1 \"zz\" is not a storage index: a storage index has 26 characters, this has 2"
    );
    let e = server_err(&v(json!({"updates": [], "seqnum": {"zz": 1}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum key \"zz\" is not a storage index: a storage index has 26 characters, this has 2"
    );
    let e = server_err(&v(json!({"updates": [], "seqnum": [1]})));
    assert_eq!(
        e.to_string(),
        "malformed-message: seqnum of updates must be an object; it is an array"
    );
    let e = server_err(&v(json!({"updates": {}})));
    assert_eq!(
        e.to_string(),
        "malformed-message: updates must be a list of storage-index strings; it is an object"
    );
}

#[test]
fn error_message_exact_json() {
    let msg = ServerMessage::Error(ProtocolError::new(
        ErrorCode::UnknownMessage,
        "what is \"hello\"?",
    ));
    let expected =
        r#"{"tahoe-mutable-notification-version":1,"error":"unknown-message: what is \"hello\"?"}"#;
    assert_eq!(msg.to_json(), expected);
    assert_eq!(ServerMessage::parse(expected).unwrap(), msg);
    let e = server_err(&v(json!({"error": 1})));
    assert_eq!(
        e.to_string(),
        "malformed-message: error must be a string; it is a number"
    );
}

#[test]
fn message_error_becomes_an_error_message() {
    let e = client_err(&v(json!({"subscribe": [1]})));
    let reply = ServerMessage::from(e.clone());
    assert_eq!(
        reply.to_json(),
        r#"{"tahoe-mutable-notification-version":1,"error":"malformed-message: subscribe must be a list of storage-index strings; item 0 is a number"}"#
    );
    assert_eq!(e.to_protocol_error().to_string(), e.to_string());
    assert_eq!(ServerMessage::parse(&reply.to_json()).unwrap(), reply);
}

#[test]
fn every_error_code_round_trips() {
    let all = [
        (ErrorCode::MalformedStorageIndex, "malformed-storage-index"),
        (ErrorCode::NotFound, "not-found"),
        (ErrorCode::NotMutable, "not-mutable"),
        (ErrorCode::TooManySubscriptions, "too-many-subscriptions"),
        (ErrorCode::Internal, "internal"),
        (ErrorCode::MalformedMessage, "malformed-message"),
        (ErrorCode::UnsupportedVersion, "unsupported-version"),
        (ErrorCode::UnknownMessage, "unknown-message"),
        (ErrorCode::Other("shiny-new".into()), "shiny-new"),
    ];
    for (code, wire) in all {
        assert_eq!(code.as_str(), wire);
        assert_eq!(code.to_string(), wire);
        assert_eq!(ErrorCode::from_wire(wire), code);
        assert_eq!(wire.parse::<ErrorCode>(), Ok(code.clone()));
        let error = ProtocolError::new(code.clone(), "why");
        assert_eq!(error.to_wire(), format!("{wire}: why"));
        assert_eq!(ProtocolError::from_wire(&error.to_wire()), error);
    }
}

fn fixture_proof() -> crate::proof::SlotProof {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/shares/sdmf-dir.v2.sh0");
    crate::proof::SlotProof::from_share_file(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn subscribe_asks_for_proofs_in_its_options() {
    let si: StorageIndex = "3zuybt32gbkka6auscupso6swe".parse().unwrap();
    let wire = ClientMessage::subscribe_with_proofs([si], ProofRequest::WithKeys).to_json();
    assert_eq!(
        wire,
        r#"{"tahoe-mutable-notification-version":1,"subscribe":["3zuybt32gbkka6auscupso6swe"],"options":{"proofs":"with-keys"}}"#
    );
    let ClientMessage::Subscribe(parsed) = ClientMessage::parse(&wire).unwrap() else {
        panic!("not a subscribe")
    };
    assert_eq!(parsed.proofs, Some(ProofRequest::WithKeys));
    let err = ClientMessage::parse(
        r#"{"tahoe-mutable-notification-version":1,"subscribe":[],"options":{"proofs":"all"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedMessage);
    assert!(err.to_string().contains("with-keys"), "{err}");
}

#[test]
fn proofs_travel_in_status_and_updates_and_bad_ones_are_refused() {
    let proof = fixture_proof();
    let si: StorageIndex = "3zuybt32gbkka6auscupso6swe".parse().unwrap();
    let mut status = Status::new();
    status.push(si.to_base32(), SubscriptionStatus::Subscribed);
    status.push_seqnum(si.to_base32(), proof.prefix().seqnum());
    status.push_proof(si.to_base32(), proof.clone());
    let wire = ServerMessage::Status(status.clone()).to_json();
    assert!(
        wire.contains(r#""proofs":{"3zuybt32gbkka6auscupso6swe":{"prefix":""#),
        "{wire}"
    );
    assert_eq!(
        ServerMessage::parse(&wire).unwrap(),
        ServerMessage::Status(status)
    );

    let update = Update {
        storage_index: si,
        seqnum: Some(proof.prefix().seqnum()),
        proof: Some(proof.clone().without_key()),
        subscribers: None,
    };
    let wire = ServerMessage::Update(update.clone()).to_json();
    assert!(
        !wire.contains("\"key\""),
        "an update's proof leaves the key out: {wire}"
    );
    assert_eq!(
        ServerMessage::parse(&wire).unwrap(),
        ServerMessage::Update(update)
    );

    let broken = [
        (
            r#""proof":{"prefix":"!!","signature":"AA=="}"#,
            "not base64",
        ),
        (r#""proof":{"signature":"AA=="}"#, "has no prefix"),
        (r#""proof":"x""#, "must be an object"),
        (
            r#""proof":{"prefix":"AAAA","signature":"AA=="}"#,
            "not a slot proof",
        ),
    ];
    for (field, want) in broken {
        let text = format!(
            r#"{{"tahoe-mutable-notification-version":1,"update":"3zuybt32gbkka6auscupso6swe","seqnum":2,{field}}}"#
        );
        let err = ServerMessage::parse(&text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedMessage, "{field}");
        assert!(err.to_string().contains(want), "{err} should say {want}");
    }
    // A field longer than any key is refused before it is decoded.
    let huge = "A".repeat(1_000_000);
    let text = format!(
        r#"{{"tahoe-mutable-notification-version":1,"update":"3zuybt32gbkka6auscupso6swe","proof":{{"prefix":"AA==","signature":"AA==","key":"{huge}"}}}}"#
    );
    assert!(ServerMessage::parse(&text)
        .unwrap_err()
        .to_string()
        .contains("longer than any slot's"));
}
