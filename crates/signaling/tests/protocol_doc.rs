//! `docs/protocol.md` and `docs/protocol.schema.json` tell the truth about the code.

use std::collections::BTreeSet;

use roost_signaling::protocol::{self, ServerFrame};

const DOC: &str = include_str!("../../../docs/protocol.md");
const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/protocol.schema.json"
);

/// The ```json client / ```json server blocks of the document.
fn examples(kind: &str) -> Vec<serde_json::Value> {
    let fence = format!("```json {kind}\n");
    DOC.split(&fence)
        .skip(1)
        .map(|rest| {
            let block = rest.split("\n```").next().unwrap();
            serde_json::from_str(block)
                .unwrap_or_else(|e| panic!("example is not JSON ({e}):\n{block}"))
        })
        .collect()
}

#[test]
fn every_client_example_is_a_valid_request_and_every_request_has_one() {
    let mut seen = BTreeSet::new();
    for ex in examples("client") {
        let frame = protocol::parse(&ex.to_string())
            .unwrap_or_else(|e| panic!("{ex} does not parse: {e:?}"));
        seen.insert(ex["type"].as_str().unwrap().to_owned());
        assert_eq!(serde_json::to_value(&frame).unwrap()["type"], ex["type"]);
    }
    let all = [
        "hello",
        "message.send",
        "message.edit",
        "message.delete",
        "read",
        "typing.start",
        "presence.set",
        "auth.refresh",
        "ping",
        "call.join",
        "call.leave",
        "call.offer",
        "call.answer",
        "call.ice",
        "sfu.offer",
        "sfu.answer",
        "sfu.ice",
        "call.mute",
    ];
    for t in all {
        assert!(
            seen.contains(t),
            "docs/protocol.md has no example of the request {t}"
        );
    }
}

#[test]
fn every_server_example_is_a_valid_frame_and_every_frame_has_one() {
    let mut seen = BTreeSet::new();
    for ex in examples("server") {
        let frame: ServerFrame = serde_json::from_value(ex.clone())
            .unwrap_or_else(|e| panic!("{ex} is not a server frame: {e}"));
        let back = serde_json::to_value(&frame).unwrap();
        assert_eq!(back, ex, "the example differs from what the server sends");
        seen.insert(ex["type"].as_str().unwrap().to_owned());
    }
    let all = [
        "ack",
        "nack",
        "error",
        "pong",
        "resume.reset",
        "presence.update",
        "reconnect",
        "message.new",
        "message.updated",
        "message.deleted",
        "message.read",
        "typing",
        "room.member_joined",
        "room.member_left",
        "room.updated",
        "room.deleted",
        "call.state",
        "call.topology",
        "call.participant_joined",
        "call.participant_left",
        "call.offer",
        "call.answer",
        "call.ice",
        "sfu.offer",
        "sfu.receiving",
        "call.speaking",
        "call.mute",
    ];
    for t in all {
        assert!(
            seen.contains(t),
            "docs/protocol.md has no example of the server frame {t}"
        );
    }
}

#[test]
fn the_published_schema_is_generated_from_the_types() {
    let generated = serde_json::to_string_pretty(&protocol::schema()).unwrap() + "\n";
    if std::env::var_os("ROOST_UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).unwrap();
    }
    let published = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        published == generated,
        "docs/protocol.schema.json is out of date; run ROOST_UPDATE_SCHEMA=1 cargo test -p roost-signaling --test protocol_doc"
    );
}
