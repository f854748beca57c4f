//! Presence: online, away or offline per user, over all their connections.
//!
//! Each gateway connection reports itself here; a user's status is the
//! highest of their live connections' (online > away), offline when none is
//! live. A connection that stops heartbeating (its node died) lapses after
//! the TTL. A change of a user's status is published on the bus to the rooms
//! they are in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::Result;
use crate::events::{Bus, BusEvent, PresenceStatus};
use crate::store::Store;

/// How long a connection counts as live without a heartbeat.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Conn {
    status: PresenceStatus,
    seen: Instant,
}

/// The presence tracker of this process.
#[derive(Clone)]
pub struct Presence {
    conns: Arc<Mutex<HashMap<Uuid, HashMap<Uuid, Conn>>>>,
    store: Store,
    bus: Bus,
    ttl: Duration,
}

impl Presence {
    pub fn new(store: Store, bus: Bus, ttl: Duration) -> Self {
        Presence {
            conns: Arc::default(),
            store,
            bus,
            ttl,
        }
    }

    fn aggregate(
        conns: Option<&HashMap<Uuid, Conn>>,
        now: Instant,
        ttl: Duration,
    ) -> PresenceStatus {
        conns
            .into_iter()
            .flat_map(|c| c.values())
            .filter(|c| now.duration_since(c.seen) < ttl)
            .map(|c| c.status)
            .max()
            .unwrap_or(PresenceStatus::Offline)
    }

    /// Applies `change` to a user's connections and returns the status before and after.
    fn update(
        &self,
        user: Uuid,
        change: impl FnOnce(&mut HashMap<Uuid, Conn>),
    ) -> (PresenceStatus, PresenceStatus) {
        let now = Instant::now();
        // The lock guards plain map updates only; nothing waits while it is held.
        let mut all = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let before = Self::aggregate(all.get(&user), now, self.ttl);
        let entry = all.entry(user).or_default();
        change(entry);
        entry.retain(|_, c| now.duration_since(c.seen) < self.ttl);
        let after = Self::aggregate(Some(entry), now, self.ttl);
        if entry.is_empty() {
            all.remove(&user);
        }
        (before, after)
    }

    async fn announce(&self, user_id: Uuid, (before, after): (PresenceStatus, PresenceStatus)) {
        if before == after {
            return;
        }
        match self.store.room_ids_of_user(&user_id.to_string()).await {
            Ok(ids) => {
                let room_ids = ids
                    .iter()
                    .filter_map(|id| Uuid::parse_str(id).ok())
                    .collect();
                self.bus.publish(BusEvent::Presence {
                    user_id,
                    status: after,
                    room_ids,
                });
            }
            Err(e) => tracing::warn!(error = %e, %user_id, "presence change not announced"),
        }
    }

    /// A new connection, online.
    pub async fn connect(&self, user_id: Uuid, conn: Uuid) {
        let change = self.update(user_id, |c| {
            c.insert(
                conn,
                Conn {
                    status: PresenceStatus::Online,
                    seen: Instant::now(),
                },
            );
        });
        self.announce(user_id, change).await;
    }

    /// A connection says it is online or away.
    pub async fn set(&self, user_id: Uuid, conn: Uuid, status: PresenceStatus) {
        let change = self.update(user_id, |c| {
            c.insert(
                conn,
                Conn {
                    status,
                    seen: Instant::now(),
                },
            );
        });
        self.announce(user_id, change).await;
    }

    /// A connection is still there.
    pub fn heartbeat(&self, user_id: Uuid, conn: Uuid) {
        self.update(user_id, |c| {
            if let Some(entry) = c.get_mut(&conn) {
                entry.seen = Instant::now();
            }
        });
    }

    /// A connection ended.
    pub async fn disconnect(&self, user_id: Uuid, conn: Uuid) {
        let change = self.update(user_id, |c| {
            c.remove(&conn);
        });
        self.announce(user_id, change).await;
    }

    /// The statuses of some users.
    pub fn statuses(&self, users: &[Uuid]) -> HashMap<Uuid, PresenceStatus> {
        let now = Instant::now();
        let all = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        users
            .iter()
            .map(|u| (*u, Self::aggregate(all.get(u), now, self.ttl)))
            .collect()
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
        Ok(self.statuses(&visible))
    }

    /// Drops connections whose heartbeats stopped, announcing users who went offline.
    pub async fn sweep(&self) {
        let users: Vec<Uuid> = {
            let all = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            all.keys().copied().collect()
        };
        for user in users {
            let change = self.update(user, |_| {});
            self.announce(user, change).await;
        }
    }
}
