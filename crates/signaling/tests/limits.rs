//! Slow readers, silent connections and expiring tokens.

mod common;

use std::time::Duration;

use common::{SilentClient, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_slowing_others() {
    let server = TestServer::with(|c| c.outbound_queue = 8).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let slow = server.user("slow").await;
    let room = server.room(&ada, &[&bob, &slow]).await;

    // The slow client has a tiny receive buffer and never reads after hello.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let req = format!("{}?access_token={}", server.url(), slow.token)
        .into_client_request()
        .unwrap();
    let (mut slow_ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    use futures_util::SinkExt;
    slow_ws
        .send(Message::Text(r#"{"type":"hello","id":"h"}"#.into()))
        .await
        .unwrap();

    let (mut b, _) = server.join(&bob, json!({})).await;
    assert_eq!(server.gateway.hub.connections(), 2);
    let actor = server.actor(&ada).await;
    let body = "x".repeat(3900);
    let mut sent = 0;
    let started = std::time::Instant::now();
    while server.gateway.hub.open_connections() > 1 && sent < 4000 {
        let out = roost_core::chat::Outgoing {
            body: body.clone(),
            client_msg_id: format!("f{sent}"),
            reply_to: None,
            attachments: Vec::new(),
        };
        server
            .core
            .chat
            .send(&actor, room.parse().unwrap(), out)
            .await
            .unwrap();
        sent += 1;
        // The fast reader keeps up with every message, whatever the slow one does.
        let f = b.next_of("message.new").await;
        assert_eq!(f["message"]["client_msg_id"], format!("f{}", sent - 1));
    }
    assert_eq!(
        server.gateway.hub.open_connections(),
        1,
        "the slow reader is being disconnected after {sent} messages"
    );
    assert!(started.elapsed() < Duration::from_secs(60));

    // What the slow client finds when it reads again: buffered frames, then why it was cut off.
    let mut ended_with = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), slow_ws.next()).await {
        match msg {
            Ok(Message::Close(frame)) => {
                ended_with = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(ended_with, Some(4008), "the slow reader is told why");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while server.gateway.hub.connections() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow reader is gone, the fast one stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        b.request(json!({"type": "ping"})).await["type"],
        "pong",
        "the fast reader is still served"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_but_a_responsive_one_stays() {
    let server = TestServer::with(|c| {
        c.heartbeat_interval_ms = 150;
        c.idle_timeout_ms = 600;
    })
    .await;
    let ada = server.user("ada").await;
    let (mut live, _) = server.join(&ada, json!({})).await;
    let opened = std::time::Instant::now();
    let mut silent = SilentClient::connect(&server, &ada).await;
    // The live client reads (and so answers the server's pings); the silent one does nothing.
    let _ = live.drain(Duration::from_millis(1500)).await;
    assert_eq!(live.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(
        server.gateway.hub.connections(),
        1,
        "the silent connection was closed"
    );
    assert_eq!(
        silent.close_code(Duration::from_secs(5)).await,
        Some(4009),
        "the silent client is told why"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "closed within the idle timeout, not long after"
    );
}

#[tokio::test]
async fn an_expiring_token_can_be_renewed_over_the_socket() {
    let server = TestServer::with_core(
        |core| core.auth.access_ttl = Duration::from_secs(3),
        |g| {
            g.heartbeat_interval_ms = 300;
            g.idle_timeout_ms = 10_000;
        },
    )
    .await;
    let ada = server.user("ada").await;
    let issued = std::time::Instant::now();
    let (mut renewed, _) = server.join(&ada, json!({})).await;
    let mut lapsing = SilentClient::connect(&server, &ada).await;
    let actor = server.actor(&ada).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A fresh token of the same session: what a client gets from POST /v1/auth/refresh.
    let fresh = server.core.auth.issue_access_token(&actor).unwrap();
    let ack = renewed
        .request(json!({"type": "auth.refresh", "access_token": fresh}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let other = server.user("bob").await;
    let ack = renewed
        .request(json!({"type": "auth.refresh", "access_token": other.token}))
        .await;
    assert_eq!(ack["code"], "forbidden", "another user's token is refused");
    assert_eq!(
        lapsing.close_code(Duration::from_secs(5)).await,
        Some(4001),
        "the unrenewed connection closes when its token expires"
    );
    assert_eq!(
        renewed.request(json!({"type": "ping"})).await["type"],
        "pong",
        "the renewed one lives on"
    );
    // Past its expiry (whole seconds) and the 5 s clock-skew leeway, the lapsed
    // token no longer opens a socket.
    tokio::time::sleep_until((issued + Duration::from_millis(9_500)).into()).await;
    let refused =
        tokio_tungstenite::connect_async(format!("{}?access_token={}", server.url(), ada.token))
            .await
            .unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status(), 401);
            let body: serde_json::Value =
                serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "token_expired");
        }
        other => panic!("expected 401 for an expired token, got {other}"),
    }
    // Nor renews one.
    let fresh = server.core.auth.issue_access_token(&actor).unwrap();
    let (mut later, _) = server
        .join(
            &common::User {
                id: ada.id.clone(),
                token: fresh,
            },
            json!({}),
        )
        .await;
    let nack = later
        .request(json!({"type": "auth.refresh", "access_token": ada.token}))
        .await;
    assert_eq!(nack["code"], "token_expired", "{nack}");
}

/// A client frame: FIN, `opcode`, masked with `mask` unless it is `None`.
fn client_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mut frame = vec![0x80 | opcode];
    match mask {
        Some(key) => {
            frame.push(0x80 | payload.len() as u8);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => {
            frame.push(payload.len() as u8);
            frame.extend_from_slice(payload);
        }
    }
    frame
}

#[tokio::test]
async fn a_connection_that_breaks_the_websocket_protocol_is_closed_with_the_code_that_says_how() {
    let server = TestServer::start().await;
    let ada = server.user("ada").await;
    let key = Some([0x37, 0xfa, 0x21, 0x3d]);
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "a text frame that is not UTF-8",
            client_frame(0x1, &[b'{', 0xff, 0xfe, b'}'], key),
            1007,
        ),
        ("a reserved data opcode", client_frame(0x3, b"x", key), 1002),
        (
            "a reserved control opcode",
            client_frame(0xb, b"", key),
            1002,
        ),
        (
            "an unmasked frame from the client",
            client_frame(0x1, br#"{"type":"ping","id":"1"}"#, None),
            1002,
        ),
        (
            "a reserved bit set",
            {
                let mut f = client_frame(0x1, br#"{"type":"ping","id":"1"}"#, key);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
    ];
    for (what, frame, code) in cases {
        let mut client = SilentClient::connect(&server, &ada).await;
        client.write(&frame).await;
        assert_eq!(
            client.close_code(Duration::from_secs(5)).await,
            Some(code),
            "{what}"
        );
    }
}
