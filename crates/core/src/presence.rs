//! Presence: online, away or offline per user, over all their connections.
//!
//! Each gateway connection reports itself here and heartbeats; a user's
//! status is the highest of their live connections' (online > away), offline
//! when none is live. A connection whose heartbeats stop (its node died)
//! lapses after the TTL, and the sweep announces the user offline. A change of
//! a user's status is published on the bus to the rooms they are in.
//!
//! On one node the connections live in memory; with Redis, in one sorted set
//! per user (member `connection|status`, score the expiry in ms) plus a set of
//! users with live connections, so every node sees every connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Bus, BusEvent, PresenceStatus};
use crate::store::Store;

/// How long a connection counts as live without a heartbeat.
/// Connections renew every 10 s and the sweep runs every 10 s, so a dead
/// node's users are announced offline within a minute of its death.
pub const DEFAULT_TTL: Duration = Duration::from_secs(45);

type Local = Arc<Mutex<HashMap<Uuid, HashMap<Uuid, (PresenceStatus, i64)>>>>;

#[derive(Clone)]
enum Backend {
    Local(Local),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

/// The presence tracker.
#[derive(Clone)]
pub struct Presence {
    backend: Backend,
    store: Store,
    bus: Bus,
    ttl: Duration,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn status_name(s: PresenceStatus) -> &'static str {
    match s {
        PresenceStatus::Online => "online",
        PresenceStatus::Away => "away",
        PresenceStatus::Offline => "offline",
    }
}

fn redis_err(e: redis::RedisError) -> CoreError {
    tracing::warn!(error = %e, "presence in Redis");
    CoreError::Unavailable("presence is unavailable while Redis is out of reach".into())
}

impl Presence {
    /// Presence of this process only.
    pub fn local(store: Store, bus: Bus, ttl: Duration) -> Self {
        Presence {
            backend: Backend::Local(Arc::default()),
            store,
            bus,
            ttl,
        }
    }

    /// Presence shared by every node through Redis.
    pub fn redis(cluster: &crate::cluster::Cluster, store: Store, bus: Bus, ttl: Duration) -> Self {
        let backend = Backend::Redis {
            conn: cluster.connection(),
            prefix: cluster.prefix().to_owned(),
        };
        Presence {
            backend,
            store,
            bus,
            ttl,
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// A user's status now.
    async fn status(&self, user: Uuid) -> Result<PresenceStatus> {
        let now = now_ms();
        match &self.backend {
            Backend::Local(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                Ok(map
                    .get(&user)
                    .into_iter()
                    .flat_map(|c| c.values())
                    .filter(|(_, exp)| *exp > now)
                    .map(|(s, _)| *s)
                    .max()
                    .unwrap_or(PresenceStatus::Offline))
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(format!("{prefix}presence:{user}"))
                    .arg(now)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(members
                    .iter()
                    .filter_map(|m| match m.rsplit_once('|')?.1 {
                        "online" => Some(PresenceStatus::Online),
                        "away" => Some(PresenceStatus::Away),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(PresenceStatus::Offline))
            }
        }
    }

    /// Records (or refreshes) a connection's status, or removes it with `None`.
    async fn write(&self, user: Uuid, conn_id: Uuid, status: Option<PresenceStatus>) -> Result<()> {
        let exp = now_ms() + self.ttl_ms();
        match &self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let now = now_ms();
                let conns = map.entry(user).or_default();
                match status {
                    Some(s) => {
                        conns.insert(conn_id, (s, exp));
                    }
                    None => {
                        conns.remove(&conn_id);
                    }
                }
                conns.retain(|_, (_, e)| *e > now);
                if conns.is_empty() {
                    map.remove(&user);
                }
                Ok(())
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}presence:{user}");
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("ZREM")
                    .arg(&key)
                    .arg(format!("{conn_id}|online"))
                    .arg(format!("{conn_id}|away"))
                    .ignore();
                if let Some(s) = status {
                    pipe.cmd("ZADD")
                        .arg(&key)
                        .arg(exp)
                        .arg(format!("{conn_id}|{}", status_name(s)))
                        .ignore();
                    pipe.cmd("PEXPIRE")
                        .arg(&key)
                        .arg(self.ttl_ms() * 2)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(format!("{prefix}presence:users"))
                        .arg("GT")
                        .arg(exp)
                        .arg(user.to_string())
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
            }
        }
    }

    async fn change(&self, user: Uuid, conn_id: Uuid, status: Option<PresenceStatus>) {
        let result = async {
            let before = self.status(user).await?;
            self.write(user, conn_id, status).await?;
            let after = self.status(user).await?;
            Ok::<_, CoreError>((before, after))
        }
        .await;
        if let (Ok((_, PresenceStatus::Offline)), Backend::Redis { conn, prefix }) =
            (&result, &self.backend)
        {
            // Gone for good, not lapsed: the sweep has nothing left to announce.
            let mut conn = conn.clone();
            let _: redis::RedisResult<i64> = redis::cmd("ZREM")
                .arg(format!("{prefix}presence:users"))
                .arg(user.to_string())
                .query_async(&mut conn)
                .await;
        }
        match result {
            Ok((before, after)) if before != after => self.announce(user, after).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, %user, "presence not updated"),
        }
    }

    async fn announce(&self, user_id: Uuid, status: PresenceStatus) {
        match self.store.room_ids_of_user(&user_id.to_string()).await {
            Ok(ids) => {
                let room_ids = ids
                    .iter()
                    .filter_map(|id| Uuid::parse_str(id).ok())
                    .collect();
                self.bus.publish(BusEvent::Presence {
                    user_id,
                    status,
                    room_ids,
                });
            }
            Err(e) => tracing::warn!(error = %e, %user_id, "presence change not announced"),
        }
    }

    /// A new connection, online.
    pub async fn connect(&self, user_id: Uuid, conn: Uuid) {
        self.change(user_id, conn, Some(PresenceStatus::Online))
            .await;
    }

    /// A connection says it is online or away.
    pub async fn set(&self, user_id: Uuid, conn: Uuid, status: PresenceStatus) {
        self.change(user_id, conn, Some(status)).await;
    }

    /// A connection is still there, with this status.
    pub async fn heartbeat(&self, user_id: Uuid, conn: Uuid, status: PresenceStatus) {
        if let Err(e) = self.write(user_id, conn, Some(status)).await {
            tracing::debug!(error = %e, "presence heartbeat not recorded");
        }
    }

    /// A connection ended.
    pub async fn disconnect(&self, user_id: Uuid, conn: Uuid) {
        self.change(user_id, conn, None).await;
    }

    /// The statuses of some users.
    pub async fn statuses(&self, users: &[Uuid]) -> Result<HashMap<Uuid, PresenceStatus>> {
        let mut out = HashMap::with_capacity(users.len());
        for u in users {
            out.insert(*u, self.status(*u).await?);
        }
        Ok(out)
    }

    /// Statuses of `users` that share a room with `viewer`; others are left out.
    pub async fn visible_to(
        &self,
        viewer: Uuid,
        users: &[Uuid],
    ) -> Result<HashMap<Uuid, PresenceStatus>> {
        let ids: Vec<String> = users.iter().map(Uuid::to_string).collect();
        let mut visible: Vec<Uuid> = self
            .store
            .co_members(&viewer.to_string(), &ids)
            .await?
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        if users.contains(&viewer) {
            visible.push(viewer);
        }
        self.statuses(&visible).await
    }

    /// Drops connections whose heartbeats stopped and announces users who
    /// went offline that way. With Redis, one node wins each announcement.
    pub async fn sweep(&self) {
        let now = now_ms();
        match &self.backend {
            Backend::Local(map) => {
                let lapsed: Vec<Uuid> = {
                    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                    let mut lapsed = Vec::new();
                    map.retain(|user, conns| {
                        conns.retain(|_, (_, e)| *e > now);
                        if conns.is_empty() {
                            lapsed.push(*user);
                        }
                        !conns.is_empty()
                    });
                    lapsed
                };
                for user in lapsed {
                    self.announce(user, PresenceStatus::Offline).await;
                }
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let users_key = format!("{prefix}presence:users");
                let stale: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&users_key)
                    .arg("-inf")
                    .arg(now)
                    .query_async(&mut conn)
                    .await;
                let Ok(stale) = stale else { return };
                for user in stale {
                    let Ok(id) = Uuid::parse_str(&user) else {
                        continue;
                    };
                    let key = format!("{prefix}presence:{user}");
                    let _: redis::RedisResult<i64> = redis::cmd("ZREMRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(now)
                        .query_async(&mut conn)
                        .await;
                    if !matches!(self.status(id).await, Ok(PresenceStatus::Offline)) {
                        continue;
                    }
                    let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
                        .arg(&users_key)
                        .arg(&user)
                        .query_async(&mut conn)
                        .await;
                    if removed == Ok(1) {
                        self.announce(id, PresenceStatus::Offline).await;
                    }
                }
            }
        }
    }
}
