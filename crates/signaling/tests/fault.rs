//! Clients send while their connections drop and come back at random; at the
//! end every acknowledged message reached every member exactly once and in
//! order, through the live stream or resume. On one node and on two.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, TestServer, User};
use serde_json::{json, Value};

const MEMBERS: usize = 5;
const MESSAGES_EACH: usize = 16;
/// Drops per member over the run, at random points.
const DROP_EVERY: u64 = 4;

struct Member {
    user: User,
    /// Messages seen, in the order received: (seq, id).
    seen: Vec<(u64, String)>,
    last_seq: u64,
    acked: Vec<String>,
}

/// A tiny deterministic generator (xorshift), seeded per member.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn connect(nodes: &[Arc<TestServer>], rng: &mut Rng, m: &Member, room: &str) -> Client {
    let node = &nodes[(rng.next() % nodes.len() as u64) as usize];
    node.join(&m.user, json!({ room: m.last_seq })).await.0
}

/// Takes one frame into the member's record; returns it.
fn record(m: &mut Member, f: &Value) {
    if f["type"] == "message.new" && f["message"]["kind"] == "text" {
        let seq = f["seq"].as_u64().unwrap();
        assert!(
            seq > m.last_seq,
            "{}: seq {seq} after {} (duplicate or out of order)",
            m.user.id,
            m.last_seq
        );
        m.seen
            .push((seq, f["message"]["id"].as_str().unwrap().to_owned()));
    }
    if let Some(seq) = f["seq"].as_u64() {
        assert!(
            seq > m.last_seq,
            "{}: event seq {seq} after {}",
            m.user.id,
            m.last_seq
        );
        m.last_seq = seq;
    }
}

async fn run_member(
    nodes: Vec<Arc<TestServer>>,
    mut m: Member,
    room: String,
    seed: u64,
    total: usize,
) -> Member {
    let mut rng = Rng(seed);
    let mut c = connect(&nodes, &mut rng, &m, &room).await;
    for i in 0..MESSAGES_EACH {
        let cid = format!("{}-{i}", m.user.id);
        loop {
            if rng.next() % DROP_EVERY == 0 {
                drop(c); // the network goes away mid-conversation
                c = connect(&nodes, &mut rng, &m, &room).await;
            }
            let id = format!("s{i}-{}", rng.next() % 1000);
            let frame = json!({"type": "message.send", "id": id, "room_id": room, "body": format!("m{i}"), "client_msg_id": cid});
            c.send_raw(&frame.to_string()).await;
            if rng.next() % DROP_EVERY == 0 {
                // The network goes away with the request in flight: it may or may not
                // have been stored, its answer is lost, and the client retries.
                drop(c);
                c = connect(&nodes, &mut rng, &m, &room).await;
                continue;
            }
            // Read until this request's answer; a drop here means: retry with the same client_msg_id.
            let answered = loop {
                match c.next_within(Duration::from_secs(5)).await {
                    Some(f) if f["id"] == json!(id) => break Some(f),
                    Some(f) => record(&mut m, &f),
                    None => break None,
                }
            };
            if let Some(f) = answered.filter(|f| f["type"] == "ack") {
                m.acked
                    .push(f["result"]["message"]["id"].as_str().unwrap().to_owned());
                break;
            }
        }
    }
    // Catch up until every member's messages are here, reconnecting now and then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.seen.len() < total && Instant::now() < deadline {
        if rng.next() % 3 == 0 {
            drop(c);
            c = connect(&nodes, &mut rng, &m, &room).await;
        }
        if let Some(f) = c.next_within(Duration::from_millis(300)).await {
            record(&mut m, &f);
        }
    }
    m
}

async fn fault_run(nodes: Vec<Arc<TestServer>>) {
    let first = &nodes[0];
    let mut users = Vec::new();
    for i in 0..MEMBERS {
        users.push(first.user(&format!("member{i}")).await);
    }
    let others: Vec<&User> = users[1..].iter().collect();
    let room = first.room(&users[0], &others).await;
    let total = MEMBERS * MESSAGES_EACH;
    let mut tasks = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let m = Member {
            user: user.clone(),
            seen: Vec::new(),
            last_seq: 0,
            acked: Vec::new(),
        };
        tasks.push(tokio::spawn(run_member(
            nodes.clone(),
            m,
            room.clone(),
            0x9E37_79B9 + i as u64 * 7919,
            total,
        )));
    }
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.expect("a member task panicked"));
    }
    let acked: HashSet<String> = members
        .iter()
        .flat_map(|m| m.acked.iter().cloned())
        .collect();
    assert_eq!(acked.len(), total, "every message was acknowledged once");
    let reference: BTreeMap<u64, String> = members[0].seen.iter().cloned().collect();
    for m in &members {
        let ids: Vec<&String> = m.seen.iter().map(|(_, id)| id).collect();
        let unique: HashSet<&String> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{} received a message twice",
            m.user.id
        );
        assert_eq!(
            unique.len(),
            total,
            "{} received {} of {total} messages",
            m.user.id,
            unique.len()
        );
        assert!(unique.iter().all(|id| acked.contains(*id)));
        let order: BTreeMap<u64, String> = m.seen.iter().cloned().collect();
        assert_eq!(
            order, reference,
            "every member saw the same messages at the same places"
        );
    }
}

#[tokio::test]
async fn no_message_is_lost_or_doubled_on_one_node() {
    let node = Arc::new(TestServer::with(|c| c.requests_per_sec = 1000).await);
    fault_run(vec![node]).await;
}

#[tokio::test]
async fn no_message_is_lost_or_doubled_across_two_nodes() {
    let (a, b) = TestServer::pair().await;
    fault_run(vec![Arc::new(a), Arc::new(b)]).await;
}
