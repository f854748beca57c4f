//! Several nodes through Redis: the bus relayed over pub/sub, a Redis
//! connection for shared state (presence), messages addressed to one node,
//! and leases that say which node holds something (a call).
//!
//! Each node publishes its bus events to one channel and delivers the events
//! other nodes published there. Redis is not the source of truth: events are
//! logged in the database first, so a node that misses some (Redis away, a
//! lagging subscriber) catches up from the log. When the subscription comes
//! back, every connection on the node re-reads its rooms' logs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Bus, BusEvent, Relay};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefixes every key and channel, so deployments (and tests) can share a server.
    pub prefix: String,
}

/// The Redis side of one node.
#[derive(Clone)]
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    node_id: Uuid,
    subscribed: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: Uuid,
    event: BusEvent,
}

/// Events waiting to be published before new ones are dropped (and recovered from the log).
const PUBLISH_QUEUE: usize = 16_384;

impl Cluster {
    /// Connects; fails when Redis does not answer at start-up.
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| CoreError::validation("redis_url", e.to_string()))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| CoreError::Internal("Redis did not answer within 5 s".into()))?
            .map_err(|e| CoreError::Internal(format!("connecting to Redis: {e}").into()))?;
        Ok(Cluster {
            client,
            conn,
            prefix: config.prefix.clone(),
            node_id: Uuid::new_v4(),
            subscribed: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Whether Redis answers a PING now and this node's subscription is live.
    pub async fn healthy(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping =
            tokio::time::timeout(Duration::from_secs(2), cmd.query_async::<String>(&mut conn))
                .await;
        matches!(ping, Ok(Ok(_))) && self.subscribed.load(Ordering::Relaxed)
    }

    /// Wires `bus` to the other nodes: starts the publisher and the subscriber.
    pub fn attach(&self, bus: Bus) -> Bus {
        let (tx, mut rx) = mpsc::channel::<String>(PUBLISH_QUEUE);
        let mut conn = self.conn.clone();
        let channel = self.channel();
        tokio::spawn(async move {
            while let Some(payload) = rx.recv().await {
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "publishing to Redis failed; other nodes catch up from the log");
                }
            }
        });
        let relay = RedisRelay {
            tx,
            origin: self.node_id,
            dropped: self.dropped.clone(),
        };
        let bus = bus.with_relay(Arc::new(relay));
        self.spawn_subscriber(bus.clone());
        bus
    }

    fn spawn_subscriber(&self, bus: Bus) {
        let client = self.client.clone();
        let channel = self.channel();
        let me = self.node_id;
        let subscribed = self.subscribed.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut first = true;
            loop {
                let pubsub = async {
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(ps)
                };
                match tokio::time::timeout(Duration::from_secs(5), pubsub).await {
                    Ok(Ok(ps)) => {
                        subscribed.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(100);
                        if !first {
                            tracing::info!(
                                "Redis subscription restored; connections catch up from the log"
                            );
                            bus.deliver_remote(BusEvent::Resync);
                        }
                        first = false;
                        let mut messages = ps.into_on_message();
                        while let Some(msg) = messages.next().await {
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            match serde_json::from_str::<Envelope>(&payload) {
                                Ok(env) if env.origin != me => bus.deliver_remote(env.event),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "an unreadable event on the Redis channel")
                                }
                            }
                        }
                        subscribed.store(false, Ordering::Relaxed);
                        tracing::warn!("the Redis subscription ended; serving local clients only until it returns");
                    }
                    Ok(Err(e)) => {
                        subscribed.store(false, Ordering::Relaxed);
                        tracing::debug!(error = %e, "subscribing to Redis failed");
                    }
                    Err(_) => subscribed.store(false, Ordering::Relaxed),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// How long a lease or a node's sign of life lasts unrenewed.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often holders renew their leases and nodes their sign of life.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Hands a lease to this node only if the holder is still the one named.
const TAKE_OVER: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else return false end";

/// Deletes a lease only if this node still holds it.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl Cluster {
    fn node_channel(&self, node: Uuid) -> String {
        format!("{}node:{node}", self.prefix)
    }

    fn lease_key(&self, name: &str) -> String {
        format!("{}lease:{name}", self.prefix)
    }

    fn alive_key(&self, node: Uuid) -> String {
        format!("{}alive:{node}", self.prefix)
    }

    /// Messages other nodes address to this one, in the order each sent
    /// them. Messages sent while the subscription is down are lost; callers
    /// answer them with timeouts.
    pub fn node_inbox(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = self.client.clone();
        let channel = self.node_channel(self.node_id);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let pubsub = async {
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(ps)
                };
                if let Ok(Ok(ps)) = tokio::time::timeout(Duration::from_secs(5), pubsub).await {
                    backoff = Duration::from_millis(100);
                    let mut messages = ps.into_on_message();
                    while let Some(msg) = messages.next().await {
                        if let Ok(payload) = msg.get_payload::<String>() {
                            if tx.send(payload).is_err() {
                                return;
                            }
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        rx
    }

    /// A sender of messages to other nodes; what one sender sends arrives in order.
    pub fn node_outbox(&self) -> NodeOutbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Uuid, String)>();
        let mut conn = self.conn.clone();
        let cluster = self.clone();
        tokio::spawn(async move {
            while let Some((node, payload)) = rx.recv().await {
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(cluster.node_channel(node))
                    .arg(payload)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, %node, "a message to another node was lost");
                }
            }
        });
        NodeOutbox { tx }
    }

    /// Takes the lease `name` for this node unless another node holds it;
    /// returns the holder.
    pub async fn claim(&self, name: &str) -> Result<Uuid> {
        let mut conn = self.conn.clone();
        let key = self.lease_key(name);
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(self.node_id.to_string())
                .arg("NX")
                .arg("PX")
                .arg(LEASE_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            if set.is_some() {
                return Ok(self.node_id);
            }
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            // Gone between the two commands: try again.
            if let Some(holder) = holder.and_then(|h| h.parse().ok()) {
                return Ok(holder);
            }
        }
        Err(CoreError::Internal("a lease kept changing hands".into()))
    }

    /// Takes the lease `name` from `holder`, a node that has stopped showing
    /// signs of life; returns the holder afterwards (someone else may have
    /// been quicker).
    pub async fn take_over(&self, name: &str, holder: Uuid) -> Result<Uuid> {
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("EVAL")
            .arg(TAKE_OVER)
            .arg(1)
            .arg(self.lease_key(name))
            .arg(holder.to_string())
            .arg(self.node_id.to_string())
            .arg(LEASE_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match taken {
            Some(_) => Ok(self.node_id),
            None => self.claim(name).await,
        }
    }

    /// Renews leases this node holds, and its own sign of life.
    pub async fn renew(&self, names: &[String]) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        let ttl = LEASE_TTL.as_millis() as u64;
        pipe.cmd("SET")
            .arg(self.alive_key(self.node_id))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore();
        for name in names {
            pipe.cmd("SET")
                .arg(self.lease_key(name))
                .arg(self.node_id.to_string())
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(redis_error)
    }

    /// Gives up a lease, if this node still holds it.
    pub async fn release(&self, name: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(self.lease_key(name))
            .arg(self.node_id.to_string())
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(redis_error)
    }

    /// Whether `node` has shown a sign of life within the lease time.
    pub async fn alive(&self, node: Uuid) -> Result<bool> {
        if node == self.node_id {
            return Ok(true);
        }
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(self.alive_key(node))
            .query_async::<bool>(&mut conn)
            .await
            .map_err(redis_error)
    }
}

fn redis_error(e: redis::RedisError) -> CoreError {
    CoreError::Internal(format!("Redis: {e}").into())
}

/// Sends messages to other nodes, in order.
#[derive(Clone)]
pub struct NodeOutbox {
    tx: mpsc::UnboundedSender<(Uuid, String)>,
}

impl NodeOutbox {
    pub fn send(&self, node: Uuid, payload: String) {
        let _ = self.tx.send((node, payload));
    }
}

struct RedisRelay {
    tx: mpsc::Sender<String>,
    origin: Uuid,
    dropped: Arc<AtomicU64>,
}

impl Relay for RedisRelay {
    fn forward(&self, event: &BusEvent) {
        if matches!(event, BusEvent::Resync) {
            return;
        }
        let env = Envelope {
            origin: self.origin,
            event: event.clone(),
        };
        let Ok(payload) = serde_json::to_string(&env) else {
            return;
        };
        if self.tx.try_send(payload).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "the Redis publish queue is full; other nodes catch up from the log"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node(prefix: &str) -> Cluster {
        let url = std::env::var("ROOST_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        Cluster::connect(&ClusterConfig {
            url: url.clone(),
            prefix: prefix.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer: {e}"))
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_is_released_or_its_node_dies() {
        let prefix = format!("roost-test-{}:", Uuid::new_v4().simple());
        let (a, b) = (node(&prefix).await, node(&prefix).await);
        assert_eq!(a.claim("call:1").await.unwrap(), a.node_id());
        assert_eq!(b.claim("call:1").await.unwrap(), a.node_id(), "held by A");
        // A node with no sign of life yet counts as gone; one that renewed, as alive.
        assert!(!b.alive(a.node_id()).await.unwrap());
        a.renew(&["call:1".to_owned()]).await.unwrap();
        assert!(b.alive(a.node_id()).await.unwrap());
        // B cannot release A's lease, nor take it from a node other than its holder.
        b.release("call:1").await.unwrap();
        assert_eq!(b.claim("call:1").await.unwrap(), a.node_id());
        assert_eq!(
            b.take_over("call:1", Uuid::new_v4()).await.unwrap(),
            a.node_id()
        );
        // Taken from its named holder, it is B's.
        assert_eq!(
            b.take_over("call:1", a.node_id()).await.unwrap(),
            b.node_id()
        );
        assert_eq!(a.claim("call:1").await.unwrap(), b.node_id());
        b.release("call:1").await.unwrap();
        assert_eq!(a.claim("call:1").await.unwrap(), a.node_id(), "free again");
    }

    #[tokio::test]
    async fn messages_reach_the_node_they_are_addressed_to_in_order() {
        let prefix = format!("roost-test-{}:", Uuid::new_v4().simple());
        let (a, b) = (node(&prefix).await, node(&prefix).await);
        let mut inbox = b.node_inbox();
        let outbox = a.node_outbox();
        // The subscription takes a moment; send until the first arrives.
        let first = loop {
            outbox.send(b.node_id(), "ping".into());
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
            {
                break m;
            }
        };
        assert_eq!(first, "ping");
        for n in 0..100 {
            outbox.send(b.node_id(), n.to_string());
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            let m = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
                .await
                .expect("messages arrive")
                .unwrap();
            if m != "ping" {
                got.push(m.parse::<u32>().unwrap());
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
