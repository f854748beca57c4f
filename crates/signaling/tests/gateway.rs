//! The gateway with a real WebSocket client on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;

fn status_of(err: WsError) -> u16 {
    refusal(err).0
}

/// The status and error code of a refused upgrade.
fn refusal(err: WsError) -> (u16, String) {
    match err {
        WsError::Http(res) => {
            let body: Value = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            (
                res.status().as_u16(),
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn the_upgrade_needs_a_valid_token_and_an_allowed_origin() {
    let server =
        TestServer::with(|c| c.allowed_origins = vec!["https://chat.example.org".into()]).await;
    let ada = server.user("ada").await;

    let err = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap_err();
    assert_eq!(refusal(err), (401, "unauthorized".into()), "no token");
    let err = tokio_tungstenite::connect_async(format!("{}?access_token=garbage", server.url()))
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 401, "a bad token");

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?access_token={}", server.url(), ada.token))
            .await
            .expect("the query form works");
    let _ = ws.close(None).await;

    let with_origin = |origin: &str| {
        let mut req = format!("{}?access_token={}", server.url(), ada.token)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
        req
    };
    let err = tokio_tungstenite::connect_async(with_origin("https://evil.example.com"))
        .await
        .unwrap_err();
    assert_eq!(refusal(err), (403, "origin_not_allowed".into()));
    tokio_tungstenite::connect_async(with_origin("https://chat.example.org"))
        .await
        .expect("an allowed origin");
    let own = format!("http://{}", server.addr);
    tokio_tungstenite::connect_async(with_origin(&own))
        .await
        .expect("the server's own origin");

    // A plain HTTP request is not an upgrade.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req = format!(
            "GET /v1/ws?access_token={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            ada.token, server.addr
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"not_websocket\""), "{answer}");
    }

    // A second session of the same user, about to be logged out.
    let second = server
        .core
        .auth
        .login(
            "ada@example.org",
            "a perfectly fine passphrase",
            &roost_core::auth::ClientInfo::default(),
        )
        .await
        .unwrap()
        .tokens
        .access_token;
    let (mut open, _) = server.join(&ada, json!({})).await;
    let second_actor = server.core.auth.authenticate(&second).await.unwrap();
    server.core.auth.logout(&second_actor).await.unwrap();
    let err = tokio_tungstenite::connect_async(format!("{}?access_token={second}", server.url()))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(err),
        (401, "session_revoked".into()),
        "a revoked session cannot connect"
    );
    let nack = open
        .request(json!({"type": "auth.refresh", "access_token": second}))
        .await;
    assert_eq!(
        nack["code"], "session_revoked",
        "nor renew a socket: {nack}"
    );
}

#[tokio::test]
async fn requests_need_hello_and_bad_frames_keep_the_connection() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let room = server.room(&ada, &[]).await;
    let mut c = server.connect(&ada).await;
    let res = c
        .request(
            json!({"type": "message.send", "room_id": room, "body": "hi", "client_msg_id": "x"}),
        )
        .await;
    assert_eq!(res["type"], "nack");
    assert_eq!(res["code"], "hello_required");

    let welcome = c.request(json!({"type": "hello"})).await;
    assert_eq!(welcome["type"], "ack");
    assert_eq!(welcome["result"]["user_id"], ada.id.as_str());
    assert_eq!(welcome["result"]["heartbeat_interval_ms"], 15000);
    assert_eq!(welcome["result"]["rooms"][0]["room_id"], room.as_str());
    assert_eq!(
        c.request(json!({"type": "hello"})).await["code"],
        "already_started"
    );

    c.send_raw("this is not json").await;
    let f = c.next().await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("malformed_frame"))
    );
    c.send_raw(r#"{"type":"message.send"}"#).await;
    assert_eq!(c.next().await["type"], "error", "no id: an error frame");
    let res = c.request(json!({"type": "warp.drive"})).await;
    assert_eq!(
        (res["type"].as_str(), res["code"].as_str()),
        (Some("nack"), Some("invalid_frame"))
    );
    let res = c.request(json!({"type": "message.send", "room_id": "not-a-uuid", "body": "x", "client_msg_id": "y"})).await;
    assert_eq!(res["code"], "invalid_frame");
    c.ws.send_binary().await;
    assert_eq!(c.next().await["code"], "binary_not_supported");
    let pong = c.request(json!({"type": "ping"})).await;
    assert_eq!(
        pong["type"], "pong",
        "the connection is still open and answering"
    );

    for (frame, code) in [
        (
            json!({"type": "message.send", "room_id": room, "body": "", "client_msg_id": "a"}),
            "validation_failed",
        ),
        (
            json!({"type": "message.send", "room_id": "00000000-0000-7000-8000-000000000000", "body": "x", "client_msg_id": "b"}),
            "not_found",
        ),
        (
            json!({"type": "message.edit", "room_id": room, "message_id": "00000000-0000-7000-8000-000000000000", "body": "x"}),
            "not_found",
        ),
        (
            json!({"type": "presence.set", "status": "offline"}),
            "validation_failed",
        ),
        (
            json!({"type": "auth.refresh", "access_token": "junk"}),
            "unauthorized",
        ),
    ] {
        let res = c.request(frame.clone()).await;
        assert_eq!(
            (res["type"].as_str(), res["code"].as_str()),
            (Some("nack"), Some(code)),
            "{frame}: {res}"
        );
    }
}

trait SendBinary {
    async fn send_binary(&mut self);
}

impl SendBinary
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn send_binary(&mut self) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn messages_reach_every_member_once_with_sequence_numbers() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;

    let ack = a.request(json!({"type": "message.send", "room_id": room, "body": "hello bob", "client_msg_id": "m1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["result"]["created"], true);
    let id = ack["result"]["message"]["id"].clone();
    let seq = ack["result"]["message"]["seq"].as_u64().unwrap();

    let got = b.next_of("message.new").await;
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["body"], "hello bob");
    assert_eq!(got["room_id"], room.as_str());
    assert_eq!(got["seq"].as_u64(), Some(seq));
    assert_eq!(
        a.next_of("message.new").await["message"]["id"],
        id,
        "the sender's other views see it too"
    );

    // The same client_msg_id over REST (the same service) returns the same message, and nothing new is sent.
    let actor = server.actor(&ada).await;
    let (again, created) = server
        .core
        .chat
        .send(
            &actor,
            room.parse().unwrap(),
            roost_core::chat::Outgoing {
                body: "dup".into(),
                client_msg_id: "m1".into(),
                reply_to: None,
                attachments: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(json!(again.id), id);
    let ack = a
        .request(
            json!({"type": "message.send", "room_id": room, "body": "dup", "client_msg_id": "m1"}),
        )
        .await;
    assert_eq!(ack["result"]["created"], false);
    assert_eq!(ack["result"]["message"]["id"], id);
    let extra = b.drain(Duration::from_millis(300)).await;
    assert!(
        extra.iter().all(|f| f["type"] != "message.new"),
        "a duplicate send delivers nothing: {extra:?}"
    );

    let msg_id = id.as_str().unwrap();
    let ack = a.request(json!({"type": "message.edit", "room_id": room, "message_id": msg_id, "body": "hello, bob"})).await;
    assert_eq!(ack["type"], "ack");
    let upd = b.next_of("message.updated").await;
    assert_eq!(upd["message"]["body"], "hello, bob");
    assert_eq!(upd["seq"].as_u64(), Some(seq + 1));
    let ack = b
        .request(json!({"type": "message.delete", "room_id": room, "message_id": msg_id}))
        .await;
    assert_eq!(ack["code"], "forbidden", "bob may not delete ada's message");
    a.request(json!({"type": "message.delete", "room_id": room, "message_id": msg_id}))
        .await;
    let del = b.next_of("message.deleted").await;
    assert!(del["message"]["body"].is_null());
}

#[tokio::test]
async fn attachments_sent_over_the_socket_arrive_with_their_files() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    let actor = server.actor(&ada).await;
    let file = server
        .core
        .files
        .upload(
            &actor,
            roost_core::files::Upload {
                name: "minutes.txt".into(),
                declared_type: Some("text/plain".into()),
                declared_len: None,
            },
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                b"we met",
            ))]),
        )
        .await
        .unwrap();

    let ack = a
        .request(json!({"type": "message.send", "room_id": room, "client_msg_id": "f1", "attachments": [file.id]}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["result"]["message"]["kind"], "file");
    let got = b.next_of("message.new").await;
    let att = &got["message"]["attachments"][0];
    assert_eq!(att["name"], "minutes.txt");
    assert_eq!(att["size"], 6);
    assert_eq!(att["url"], format!("/v1/files/{}", file.id));

    // Someone else's file is refused on the field, and the connection stays.
    let nack = b
        .request(json!({"type": "message.send", "room_id": room, "client_msg_id": "f2", "attachments": [file.id]}))
        .await;
    assert_eq!(nack["type"], "nack");
    assert_eq!(nack["code"], "validation_failed");
    let ok = b
        .request(json!({"type": "message.send", "room_id": room, "body": "still here", "client_msg_id": "f3"}))
        .await;
    assert_eq!(ok["type"], "ack");
}

#[tokio::test]
async fn typing_and_read_receipts_reach_the_room() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    assert_eq!(
        a.request(json!({"type": "typing.start", "room_id": room}))
            .await["type"],
        "ack"
    );
    let t = b.next_of("typing").await;
    assert_eq!(t["user_id"], ada.id.as_str());
    assert!(t["expires_in_ms"].as_u64().unwrap() >= 1000);
    assert!(t.get("seq").is_none(), "typing is not logged");
    // Keystrokes renew the indicator, but the room hears of it at most every 2 s.
    for _ in 0..5 {
        a.request(json!({"type": "typing.start", "room_id": room}))
            .await;
    }
    let more = b.drain(Duration::from_millis(500)).await;
    assert!(
        more.iter().all(|f| f["type"] != "typing"),
        "typing is throttled: {more:?}"
    );

    let id = a.post_message(&room, "read me", "r").await;
    let ack = b
        .request(json!({"type": "read", "room_id": room, "message_id": id}))
        .await;
    assert_eq!(ack["result"]["moved"], true);
    let r = a.next_of("message.read").await;
    assert_eq!(r["user_id"], bob.id.as_str());
    assert_eq!(r["message_id"], id.as_str());
}

#[tokio::test]
async fn joining_and_kicking_change_what_a_session_receives_at_once() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, welcome) = server.join(&bob, json!({})).await;
    assert_eq!(welcome["rooms"].as_array().unwrap().len(), 0);

    let actor = server.actor(&ada).await;
    server
        .core
        .rooms
        .add_member(&actor, room.parse().unwrap(), bob.id.parse().unwrap())
        .await
        .unwrap();
    let joined = b.next_of("room.member_joined").await;
    assert_eq!(joined["member"]["user"]["id"], bob.id.as_str());
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "welcome", "client_msg_id": "w"}),
    )
    .await;
    let text = loop {
        let m = b.next_of("message.new").await;
        if m["message"]["kind"] == "text" {
            break m;
        }
    };
    assert_eq!(
        text["message"]["body"], "welcome",
        "the new member hears the room at once"
    );

    server
        .core
        .rooms
        .kick(&actor, room.parse().unwrap(), bob.id.parse().unwrap())
        .await
        .unwrap();
    let left = b.next_of("room.member_left").await;
    assert_eq!(left["reason"], "kicked");
    assert_eq!(left["by"], ada.id.as_str());
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "secret", "client_msg_id": "s"}),
    )
    .await;
    a.request(json!({"type": "typing.start", "room_id": room}))
        .await;
    let after = b.drain(Duration::from_millis(500)).await;
    assert!(
        after.is_empty(),
        "a kicked member receives nothing more: {after:?}"
    );
}

#[tokio::test]
async fn resume_sends_what_was_missed_in_order_then_the_live_stream() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, welcome) = server.join(&bob, json!({})).await;
    let mut last = welcome["rooms"][0]["last_seq"].as_u64().unwrap();
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "one", "client_msg_id": "1"}),
    )
    .await;
    last = last.max(b.next_of("message.new").await["seq"].as_u64().unwrap());
    drop(b);

    for i in 2..=4 {
        a.request(json!({"type": "message.send", "room_id": room, "body": format!("m{i}"), "client_msg_id": i.to_string()})).await;
    }
    let (mut b, _) = server.join(&bob, json!({ room.clone(): last })).await;
    let mut bodies = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let f = b.next_of("message.new").await;
        bodies.push(f["message"]["body"].as_str().unwrap().to_owned());
        seqs.push(f["seq"].as_u64().unwrap());
    }
    assert_eq!(bodies, ["m2", "m3", "m4"]);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "live", "client_msg_id": "5"}),
    )
    .await;
    let rest: Vec<String> = b
        .drain(Duration::from_millis(400))
        .await
        .iter()
        .filter(|f| f["type"] == "message.new")
        .map(|f| f["message"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest, ["live"], "then the live stream, with no duplicate");
}

#[tokio::test]
async fn a_resume_point_older_than_the_log_gets_a_reset() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let room = server.room(&ada, &[]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    for i in 0..3 {
        a.request(json!({"type": "message.send", "room_id": room, "body": "x", "client_msg_id": i.to_string()})).await;
    }
    let pruned = server
        .core
        .store
        .prune_events(i64::MAX, 1000)
        .await
        .unwrap();
    assert!(pruned >= 3);
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "after", "client_msg_id": "z"}),
    )
    .await;
    let (mut c, _) = server.join(&ada, json!({ room.clone(): 1 })).await;
    let reset = c.next_of("resume.reset").await;
    assert_eq!(reset["room_id"], room.as_str());
    assert!(reset["seq"].as_u64().unwrap() >= 6);
}

#[tokio::test]
async fn logout_and_disable_close_sockets_within_a_second() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let started = std::time::Instant::now();
    server
        .core
        .auth
        .logout(&server.actor(&ada).await)
        .await
        .unwrap();
    assert_eq!(a.closed().await, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(1));

    let root = server.user("root").await;
    server
        .core
        .store
        .set_role(&root.id, "super_admin", 0)
        .await
        .unwrap();
    let root_actor = server.actor(&root).await;
    let bob = server.user("bob").await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    let started = std::time::Instant::now();
    server
        .core
        .users
        .set_disabled(&root_actor, bob.id.parse().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(b.closed().await, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let server = TestServer::with(|c| c.max_frame_bytes = 4096).await;
    let ada = server.user("ada").await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    a.send_raw(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(8000)))
        .await;
    assert_eq!(a.closed().await, Some(1009));
}

#[tokio::test]
async fn the_rate_limit_nacks_then_closes_on_sustained_abuse() {
    let server = TestServer::with(|c| {
        c.requests_per_sec = 1;
        c.request_burst = 3;
        c.abuse_threshold = 10;
    })
    .await;
    let ada = server.user("ada").await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            a.request(json!({"type": "ping"})).await["type"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(codes.contains(&"nack".to_owned()), "{codes:?}");
    let res = a.request(json!({"type": "ping"})).await;
    assert_eq!(res["code"], "rate_limited");
    for i in 0..20 {
        a.send_raw(&format!(r#"{{"type":"ping","id":"flood{i}"}}"#))
            .await;
    }
    assert_eq!(a.closed().await, Some(1008));
}

#[tokio::test]
async fn presence_follows_connections_and_reaches_roommates() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    // Ada may hear of her own arrival too; follow bob's.
    let bob_id = bob.id.clone();
    let next_of_bob = async |a: &mut common::Client| loop {
        let f = a.next_of("presence.update").await;
        if f["user_id"] == bob_id.as_str() {
            break f["status"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(next_of_bob(&mut a).await, "online");
    b.request(json!({"type": "presence.set", "status": "away"}))
        .await;
    assert_eq!(next_of_bob(&mut a).await, "away");
    let ids = [bob.id.parse().unwrap()];
    let seen = server
        .core
        .presence
        .visible_to(ada.id.parse().unwrap(), &ids)
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(seen[&ids[0]]).unwrap(), "away");
    drop(b);
    assert_eq!(next_of_bob(&mut a).await, "offline");
}

#[tokio::test]
async fn shutting_down_tells_clients_to_reconnect() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    server.gateway.shut_down();
    assert_eq!(
        a.next_of("reconnect").await["reason"],
        "server shutting down"
    );
    assert_eq!(a.closed().await, Some(1012));
}

#[tokio::test]
async fn settings_changes_deletion_and_the_remaining_nacks_over_the_socket() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let other = server.room(&ada, &[]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;

    let actor = server.actor(&ada).await;
    let patch = roost_core::rooms::RoomPatch {
        name: Some("Renamed".into()),
        ..Default::default()
    };
    server
        .core
        .rooms
        .update(&actor, room.parse().unwrap(), patch)
        .await
        .unwrap();
    let updated = b.next_of("room.updated").await;
    assert_eq!(updated["room"]["name"], "Renamed");
    assert!(updated["seq"].is_u64());
    let renamed = b.next_of("message.new").await;
    assert_eq!(renamed["message"]["data"]["event"], "room_renamed");

    let id = a.post_message(&room, "x", "k").await;
    let res = a
        .request(
            json!({"type": "message.send", "room_id": other, "body": "x", "client_msg_id": "k"}),
        )
        .await;
    assert_eq!(res["code"], "client_msg_id_reused");
    a.request(json!({"type": "message.delete", "room_id": room, "message_id": id}))
        .await;
    let res = a
        .request(json!({"type": "message.edit", "room_id": room, "message_id": id, "body": "back"}))
        .await;
    assert_eq!(res["code"], "message_deleted");

    server
        .core
        .rooms
        .delete(&actor, room.parse().unwrap())
        .await
        .unwrap();
    let deleted = b.next_of("room.deleted").await;
    assert_eq!(deleted["room_id"], room.as_str());
    assert!(deleted.get("seq").is_none());
    let res = b.request(json!({"type": "message.send", "room_id": room, "body": "anyone?", "client_msg_id": "z"})).await;
    assert_eq!(res["code"], "not_found");
}

#[tokio::test]
async fn an_event_lost_on_the_way_is_read_from_the_log_before_later_ones() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    // A message stored but never published, as when a node dies between commit and publish.
    let id = uuid::Uuid::now_v7().to_string();
    let sent = server
        .core
        .store
        .insert_message(&roost_core::store::NewMessage {
            id: &id,
            room_id: &room,
            sender_id: &ada.id,
            client_msg_id: "lost",
            kind: "text",
            body: Some("never published"),
            attachments: &[],
            reply_to: None,
            now: chrono::Utc::now().timestamp_millis(),
        })
        .await
        .unwrap();
    assert!(matches!(sent, roost_core::store::Sent::Created(_)));
    a.request(
        json!({"type": "message.send", "room_id": room, "body": "published", "client_msg_id": "p"}),
    )
    .await;
    let first = b.next_of("message.new").await;
    let second = b.next_of("message.new").await;
    assert_eq!(
        first["message"]["body"], "never published",
        "the gap is filled first"
    );
    assert_eq!(second["message"]["body"], "published");
    assert_eq!(
        second["seq"].as_u64().unwrap(),
        first["seq"].as_u64().unwrap() + 1
    );
}

#[tokio::test]
async fn events_published_out_of_order_are_delivered_in_order() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    let room_id: uuid::Uuid = room.parse().unwrap();
    let (before, _) = server
        .core
        .store
        .event_bounds(&room)
        .await
        .unwrap()
        .unwrap();
    let before = before as u64;
    // Two sends that committed in order but reach the bus the other way round,
    // as concurrent sends in one room can.
    for (i, body) in ["first", "second"].iter().enumerate() {
        server
            .core
            .store
            .insert_message(&roost_core::store::NewMessage {
                id: &uuid::Uuid::now_v7().to_string(),
                room_id: &room,
                sender_id: &ada.id,
                client_msg_id: &format!("c{i}"),
                kind: "text",
                body: Some(body),
                attachments: &[],
                reply_to: None,
                now: chrono::Utc::now().timestamp_millis(),
            })
            .await
            .unwrap();
    }
    let roost_core::events::Replay::Events { events, .. } = server
        .core
        .events
        .replay(room_id, before, 10)
        .await
        .unwrap()
    else {
        panic!("the log has the two events");
    };
    assert_eq!(events.len(), 2);
    for e in events.into_iter().rev() {
        server
            .core
            .bus
            .publish(roost_core::events::BusEvent::Room(e));
    }
    let first = b.next_of("message.new").await;
    let second = b.next_of("message.new").await;
    assert_eq!(first["message"]["body"], "first");
    assert_eq!(second["message"]["body"], "second");
    assert_eq!(
        second["seq"].as_u64().unwrap(),
        first["seq"].as_u64().unwrap() + 1
    );
    let rest = b.drain(Duration::from_millis(400)).await;
    assert!(
        rest.iter().all(|f| f["type"] != "message.new"),
        "nothing twice: {rest:?}"
    );
}

#[tokio::test]
async fn reconciling_with_the_store_recovers_what_the_bus_lost() {
    let server = TestServer::with(|c| c.reconcile_interval_ms = 300).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut b, _) = server.join(&bob, json!({})).await;
    // The last message of a quiet room, stored but never published: no later
    // event reveals the gap, the periodic check does.
    server
        .core
        .store
        .insert_message(&roost_core::store::NewMessage {
            id: &uuid::Uuid::now_v7().to_string(),
            room_id: &room,
            sender_id: &ada.id,
            client_msg_id: "quiet",
            kind: "text",
            body: Some("the last word"),
            attachments: &[],
            reply_to: None,
            now: chrono::Utc::now().timestamp_millis(),
        })
        .await
        .unwrap();
    let f = b.next_of("message.new").await;
    assert_eq!(f["message"]["body"], "the last word");

    // A revocation whose news never reached this node.
    let actor = server.actor(&bob).await;
    let revoked = server
        .core
        .store
        .revoke_session(
            &actor.session_id.to_string(),
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        .unwrap();
    assert!(revoked);
    assert_eq!(b.closed().await, Some(4001));
}

#[tokio::test]
async fn a_nul_in_a_message_is_refused_by_name_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let room = server.room(&ada, &[&bob]).await;
    let (mut a, _) = server.join(&ada, json!({})).await;
    let (mut b, _) = server.join(&bob, json!({})).await;

    // PostgreSQL cannot store U+0000 and SQLite can: both refuse it alike.
    for (body, cid, field) in [
        ("a\u{0}b", "n1", "body"),
        ("hello", "n\u{0}2", "client_msg_id"),
    ] {
        let res = a
            .request(json!({"type": "message.send", "room_id": room, "body": body, "client_msg_id": cid}))
            .await;
        assert_eq!(res["type"], "nack", "{res}");
        assert_eq!(res["code"], "validation_failed", "{res}");
        assert!(res["message"].as_str().unwrap().contains(field), "{res}");
    }
    let id = a.post_message(&room, "kept", "n3").await;
    let res = a
        .request(
            json!({"type": "message.edit", "room_id": room, "message_id": id, "body": "x\u{0}"}),
        )
        .await;
    assert_eq!(res["code"], "validation_failed", "{res}");
    assert!(res["message"].as_str().unwrap().contains("body"), "{res}");

    let seen = b.drain(Duration::from_millis(300)).await;
    let bodies: Vec<&Value> = seen
        .iter()
        .filter(|f| f["type"] == "message.new" || f["type"] == "message.updated")
        .map(|f| &f["message"]["body"])
        .collect();
    assert_eq!(
        bodies,
        [&json!("kept")],
        "only the clean message reached bob"
    );
    let actor = server.actor(&ada).await;
    let history = server
        .core
        .chat
        .history(&actor, room.parse().unwrap(), None, None, None)
        .await
        .unwrap();
    let texts: Vec<_> = history
        .items
        .iter()
        .filter_map(|m| m.body.as_deref())
        .collect();
    assert!(
        texts.contains(&"kept") && !texts.iter().any(|t| t.contains('\0')),
        "{texts:?}"
    );
}
