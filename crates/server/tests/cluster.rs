//! Two `roost serve` processes sharing PostgreSQL and Redis serve one room.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server as Node, Socket as Ws};
use serde_json::{json, Value};

/// A node of the cluster: `roost serve` on `database_url` and `redis_url`,
/// its Redis keys under `prefix`.
fn start_node(database_url: &str, redis_url: &str, prefix: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::serve(&dir.keep());
    cmd.args(["--database-url", database_url, "--redis-url", redis_url])
        .env("ROOST_REDIS_PREFIX", prefix)
        .env("ROOST_SHUTDOWN_DRAIN_SECS", "0")
        .env(
            "ROOST_JWT_SECRET",
            "one secret shared by every node of the cluster",
        )
        .stderr(Stdio::null());
    Node::spawned(cmd)
}

/// A user registered through `node`, in a room owned by the first one.
async fn setup(node: &Node) -> (String, String, String) {
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for name in ["ada", "bob"] {
        let (_, res) = node.register(name).await;
        tokens.push(res["access_token"].as_str().unwrap().to_owned());
        ids.push(res["user"]["id"].as_str().unwrap().to_owned());
    }
    let (_, room) = node
        .post("/v1/rooms", Some(&tokens[0]), json!({"name": "shared"}))
        .await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    node.post(
        &format!("/v1/rooms/{room_id}/members"),
        Some(&tokens[0]),
        json!({"user_id": ids[1]}),
    )
    .await;
    (tokens[0].clone(), tokens[1].clone(), room_id)
}

/// A key prefix of this test alone, so tests share the machine's Redis.
fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("roost-e2e-{}-{nanos:x}:", std::process::id())
}

/// Two nodes over one database and one Redis; ada on the first and bob on
/// the second, in one room.
struct TwoNodes {
    a: Node,
    b: Node,
    ada: String,
    room: String,
    on_a: Ws,
    on_b: Ws,
}

async fn two_nodes() -> TwoNodes {
    let db = roost_core::store::testing::fresh_postgres_url().await;
    let redis =
        std::env::var("ROOST_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = prefix();
    let a = start_node(&db, &redis, &prefix);
    let b = start_node(&db, &redis, &prefix);
    let (ada, bob, room) = setup(&a).await;
    let on_a = a.socket(&ada).await;
    let on_b = b.socket(&bob).await;
    TwoNodes {
        a,
        b,
        ada,
        room,
        on_a,
        on_b,
    }
}

#[tokio::test]
async fn two_processes_serve_one_room_and_sigterm_sends_clients_elsewhere() {
    let TwoNodes {
        a,
        b,
        ada,
        room,
        mut on_a,
        mut on_b,
    } = two_nodes().await;
    assert_eq!(b.get("/readyz", None).await.1["redis"], "ok");

    on_a.send(json!({"type": "message.send", "id": "1", "room_id": room, "body": "from A", "client_msg_id": "a1"})).await;
    assert_eq!(
        on_b.next_text(Duration::from_secs(10)).await.as_deref(),
        Some("from A")
    );
    assert_eq!(
        on_a.next_text(Duration::from_secs(10)).await.as_deref(),
        Some("from A"),
        "the sender's echo"
    );
    on_b.send(json!({"type": "message.send", "id": "2", "room_id": room, "body": "from B", "client_msg_id": "b1"})).await;
    assert_eq!(
        on_a.next_text(Duration::from_secs(10)).await.as_deref(),
        Some("from B")
    );

    // REST and the socket are one path: a message posted over HTTP on A is live on B.
    let (_, posted) = a
        .post(
            &format!("/v1/rooms/{room}/messages"),
            Some(&ada),
            json!({"body": "over REST", "client_msg_id": "r1"}),
        )
        .await;
    assert_eq!(posted["body"], "over REST", "{posted}");
    loop {
        let text = on_b.next_text(Duration::from_secs(10)).await;
        match text.as_deref() {
            Some("over REST") => break,
            Some("from B") => continue, // bob's own echo
            other => panic!("expected the REST message on B, got {other:?}"),
        }
    }

    // Sends still in flight when B is told to stop: whatever B acknowledged is kept.
    for i in 0..20 {
        on_b.send(json!({"type": "message.send", "id": format!("t{i}"), "room_id": room, "body": format!("late {i}"), "client_msg_id": format!("late{i}")})).await;
    }
    assert_eq!(b.stop("-TERM").await, Some(0));
    let mut acked = Vec::new();
    loop {
        let f = on_b.next_of_any(&["ack", "reconnect"]).await;
        if f["type"] == "reconnect" {
            assert_eq!(f["reason"], "server shutting down");
            break;
        }
        if let Some(m) = f["result"]["message"].as_object() {
            acked.push(m["client_msg_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(on_b.next_of("<close>").await["code"], 1012);
    let (_, history) = a
        .get(&format!("/v1/rooms/{room}/messages?limit=100"), Some(&ada))
        .await;
    let stored: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(&id.as_str()),
            "{id} was acknowledged but is not stored"
        );
    }
}

/// A Redis of the test's own, so it can be stopped and started again.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { child, port }
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn without_redis_each_node_serves_its_own_and_catches_up_when_it_returns() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let redis = PrivateRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let db = roost_core::store::testing::fresh_postgres_url().await;
    let prefix = prefix();
    let a = start_node(&db, &url, &prefix);
    let b = start_node(&db, &url, &prefix);
    let (ada, bob, room) = setup(&a).await;
    let mut ada_a = a.socket(&ada).await;
    let mut bob_a = a.socket(&bob).await;
    let mut bob_b = b.socket(&bob).await;

    let port = redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.get("/readyz", None).await.1["status"] != "degraded" {
        assert!(
            Instant::now() < deadline,
            "readyz never reported the lost Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.get("/readyz", None).await.1["redis"], "unavailable");
    let (_, me) = a.get("/v1/auth/me", Some(&bob)).await;
    let bob_id = me["id"].as_str().unwrap().to_owned();
    let (status, body) = a
        .get(&format!("/v1/presence?user_ids={bob_id}"), Some(&ada))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "presence lives in Redis: a clear, retryable error while it is away"
    );

    ada_a.send(json!({"type": "message.send", "id": "1", "room_id": room, "body": "while Redis is away", "client_msg_id": "x"})).await;
    assert_eq!(
        bob_a.next_text(Duration::from_secs(5)).await.as_deref(),
        Some("while Redis is away"),
        "the node still serves its own clients"
    );
    assert_eq!(
        bob_b.next_text(Duration::from_millis(500)).await,
        None,
        "the other node cannot hear it yet"
    );

    let _redis = PrivateRedis::start(port);
    assert_eq!(
        bob_b.next_text(Duration::from_secs(15)).await.as_deref(),
        Some("while Redis is away"),
        "when Redis returns, the other node's clients catch up from the log"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.get("/readyz", None).await.1["status"] != "ready" {
        assert!(Instant::now() < deadline, "readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ada_a.send(json!({"type": "message.send", "id": "2", "room_id": room, "body": "and live again", "client_msg_id": "y"})).await;
    assert_eq!(
        bob_b.next_text(Duration::from_secs(10)).await.as_deref(),
        Some("and live again")
    );
}

/// The next frame of type `ty` within `wait`, skipping others.
async fn within(ws: &mut Ws, ty: &str, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Some(f) if f["type"] == ty => return f,
            Some(_) => continue,
            None => panic!("no {ty} within {wait:?}"),
        }
    }
}

async fn join_call(ws: &mut Ws, id: &str, room: &str) -> Value {
    ws.send(json!({"type": "call.join", "id": id, "room_id": room}))
        .await;
    let ack = ws.next_of_any(&["ack", "nack"]).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["result"].clone()
}

// A call lives on the node where it started (ADR 0007). The leases and
// signs of life behind it last 30 s, renewed every 10 s: a dead node is
// noticed within 40 s.
const NOTICED_WITHIN: Duration = Duration::from_secs(50);

/// Two nodes, and a call started by ada on the first and joined by bob from
/// the second; returns the room and both join answers.
async fn a_call_across_two_nodes() -> (Node, Node, Ws, Ws, String, Value, Value) {
    let TwoNodes {
        a,
        b,
        room,
        mut on_a,
        mut on_b,
        ..
    } = two_nodes().await;
    let first = join_call(&mut on_a, "j1", &room).await;
    let second = join_call(&mut on_b, "j2", &room).await;
    assert_eq!(first["call_id"], second["call_id"], "one call");
    (a, b, on_a, on_b, room, first, second)
}

#[tokio::test]
async fn a_dead_nodes_participants_leave_the_call_held_by_another() {
    let (_a, b, mut on_a, _on_b, _, _, second) = a_call_across_two_nodes().await;
    let joined = within(
        &mut on_a,
        "call.participant_joined",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        joined["participant"]["participant_id"],
        second["participant_id"]
    );

    // Node B dies without a word: its participant leaves the call on node A.
    drop(b);
    let left = within(&mut on_a, "call.participant_left", NOTICED_WITHIN).await;
    assert_eq!(left["participant_id"], second["participant_id"]);
}

#[tokio::test]
async fn a_call_whose_node_dies_ends_for_the_others() {
    let (a, _b, _on_a, mut on_b, room, first, _) = a_call_across_two_nodes().await;

    // Node A holds the call and dies. Until its sign of life lapses, bob's
    // call requests go to it and are refused as unavailable after 5 s.
    drop(a);
    on_b.send(json!({"type": "call.mute", "id": "m1", "call_id": first["call_id"], "kind": "audio", "muted": true}))
        .await;
    let refused = on_b.next_of_any(&["ack", "nack"]).await;
    assert_eq!(
        (refused["id"].as_str(), refused["code"].as_str()),
        (Some("m1"), Some("unavailable")),
        "{refused}"
    );
    // Then node B ends the call, and bob hears so.
    loop {
        let state = within(&mut on_b, "call.state", NOTICED_WITHIN).await;
        if state["state"] == "ended" {
            assert_eq!(state["call_id"], first["call_id"]);
            assert_eq!(state["room_id"], room.as_str());
            break;
        }
    }
    // A new call can start, now on node B.
    let again = join_call(&mut on_b, "j3", &room).await;
    assert_ne!(again["call_id"], first["call_id"]);
    assert_eq!(again["participants"], json!([]));
}
