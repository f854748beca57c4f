//! Room events and the bus that carries them to every gateway session.
//!
//! A sequenced event (messages, membership, settings) is written to the room's
//! log in the same transaction as the change, then published. Ephemeral events
//! (typing, read receipts, presence) are only published. A session that misses
//! a sequenced event, however it happened, fills the gap from the log.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{CallStatus, Member, MemberRole, Message, PublicUser, Room};
use crate::store::convert::{hydrate, parse_id, room_from_row, time};
use crate::store::{EventKind, EventRow, Store};

/// Why someone left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Kicked,
}

/// Presence of a user over all their connections.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Offline,
    Away,
    Online,
}

/// What happened in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum RoomEventBody {
    #[serde(rename = "message.new")]
    MessageNew { message: Message },
    #[serde(rename = "message.updated")]
    MessageUpdated { message: Message },
    /// The message is now a tombstone.
    #[serde(rename = "message.deleted")]
    MessageDeleted { message: Message },
    #[serde(rename = "room.member_joined")]
    MemberJoined { member: Member },
    #[serde(rename = "room.member_left")]
    MemberLeft {
        user_id: Uuid,
        reason: LeaveReason,
        by: Option<Uuid>,
    },
    #[serde(rename = "room.updated")]
    RoomUpdated { room: Room },
    /// The room is gone; nothing more will come from it.
    #[serde(rename = "room.deleted")]
    RoomDeleted {},
    /// A member's read marker moved forward (not sequenced).
    #[serde(rename = "message.read")]
    MessageRead {
        user_id: Uuid,
        message_id: Uuid,
        message_seq: u64,
    },
    /// A member is typing; the indicator expires by itself (not sequenced).
    #[serde(rename = "typing")]
    Typing { user_id: Uuid, expires_in_ms: u64 },
    /// The room's call started, changed size or ended (not sequenced; the
    /// chat's `call_started` and `call_ended` system messages are).
    #[serde(rename = "call.state")]
    CallState {
        call_id: Uuid,
        state: CallStatus,
        participants: u32,
    },
}

/// An event of one room. `seq` is the room's sequence number, present on
/// events that are logged and replayed; typing and read receipts have none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomEvent {
    pub room_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(flatten)]
    pub body: RoomEventBody,
}

/// What travels on the bus.
// Each event is allocated once and shared behind an `Arc`: the room
// variant's size costs nothing per subscriber.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    Room(RoomEvent),
    /// A user's presence changed; it goes to sessions in `room_ids`.
    Presence {
        user_id: Uuid,
        status: PresenceStatus,
        room_ids: Vec<Uuid>,
    },
    /// Sessions ended: one (`session_id`) or all of a user's (`None`); their sockets close.
    SessionsRevoked {
        user_id: Uuid,
        session_id: Option<Uuid>,
    },
    /// Events may have been missed (this node lost Redis for a while): every
    /// connection re-reads its rooms' logs. Never leaves the node.
    Resync,
}

/// Publishes events after the change that caused them committed.
#[derive(Clone)]
pub struct Publisher {
    pub bus: Bus,
    pub log: EventLog,
}

impl Publisher {
    /// Loads the logged events `seqs` of a room and publishes them. A failure
    /// here loses nothing: sessions notice the gap and read the log.
    pub async fn sequenced(&self, room_id: Uuid, seqs: &[i64]) {
        let (Some(&from), Some(&to)) = (seqs.iter().min(), seqs.iter().max()) else {
            return;
        };
        match self
            .log
            .load(room_id, from.max(0) as u64, to.max(0) as u64)
            .await
        {
            Ok(events) => {
                for e in events {
                    self.bus.publish(BusEvent::Room(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %room_id, "publishing logged events failed; sessions will catch up")
            }
        }
    }

    /// Publishes an event that is not logged.
    pub fn ephemeral(&self, room_id: Uuid, body: RoomEventBody) {
        self.bus.publish(BusEvent::Room(RoomEvent {
            room_id,
            seq: None,
            body,
        }));
    }
}

/// Publishes bus events to every subscriber of this process.
///
/// The in-process channel is the delivery path on one node; with Redis
/// configured, a relay also publishes there and feeds other nodes' events in.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Arc<BusEvent>>,
    relay: Option<Arc<dyn Relay>>,
}

/// Carries events to other nodes.
pub trait Relay: Send + Sync {
    /// Sends an event published on this node to the others; must not block.
    fn forward(&self, event: &BusEvent);
}

impl Bus {
    /// A bus of this process only. `capacity` bounds how far a slow subscriber may lag.
    pub fn in_process(capacity: usize) -> Bus {
        let (local, _) = broadcast::channel(capacity.max(16));
        Bus { local, relay: None }
    }

    /// Adds a relay to other nodes.
    pub fn with_relay(mut self, relay: Arc<dyn Relay>) -> Bus {
        self.relay = Some(relay);
        self
    }

    /// Delivers to this node's subscribers and, through the relay, to other nodes.
    pub fn publish(&self, event: BusEvent) {
        if let Some(relay) = &self.relay {
            relay.forward(&event);
        }
        let _ = self.local.send(Arc::new(event));
    }

    /// Delivers an event that came from another node to this node's subscribers only.
    pub fn deliver_remote(&self, event: BusEvent) {
        let _ = self.local.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.local.subscribe()
    }
}

/// What a resume from a point in a room's log gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The events after the point, in order; `more` when the page was full.
    /// `read_to` is the last sequence number read, which may be past the last
    /// event shown (an event whose message is gone shows nothing).
    Events {
        events: Vec<RoomEvent>,
        more: bool,
        read_to: u64,
    },
    /// The point is older than the log keeps: reload the room; the log continues after `seq`.
    Reset { seq: u64 },
}

/// Reads the room event log and turns rows into events.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
}

impl EventLog {
    pub fn new(store: Store) -> Self {
        EventLog { store }
    }

    /// The events with the given sequence numbers, as they are now.
    pub async fn load(&self, room_id: Uuid, from: u64, to: u64) -> Result<Vec<RoomEvent>> {
        let rows = self
            .store
            .events_in(&room_id.to_string(), from as i64, to as i64)
            .await?;
        self.materialise(room_id, rows).await
    }

    /// Up to `limit` events after `after`, or a reset if `after` is older than the log keeps.
    pub async fn replay(&self, room_id: Uuid, after: u64, limit: u32) -> Result<Replay> {
        let id = room_id.to_string();
        let Some((last, oldest)) = self.store.event_bounds(&id).await? else {
            return Ok(Replay::Events {
                events: Vec::new(),
                more: false,
                read_to: after,
            });
        };
        let last = last.max(0) as u64;
        if after >= last {
            return Ok(Replay::Events {
                events: Vec::new(),
                more: false,
                read_to: after,
            });
        }
        // Events after `after` must all be kept: the first missing means a gap.
        let first_kept = oldest.map_or(last + 1, |o| o.max(0) as u64);
        if after + 1 < first_kept {
            return Ok(Replay::Reset { seq: last });
        }
        let rows = self
            .store
            .events_after(&id, after as i64, i64::from(limit))
            .await?;
        let more = rows.len() as u64 == u64::from(limit)
            && rows.last().is_some_and(|r| (r.seq as u64) < last);
        let read_to = rows.last().map_or(after, |r| r.seq.max(0) as u64);
        Ok(Replay::Events {
            events: self.materialise(room_id, rows).await?,
            more,
            read_to,
        })
    }

    async fn materialise(&self, room_id: Uuid, rows: Vec<EventRow>) -> Result<Vec<RoomEvent>> {
        let ids: Vec<String> = rows.iter().filter_map(|r| r.message_id.clone()).collect();
        let messages = hydrate(
            &self.store,
            self.store
                .messages_by_id(&room_id.to_string(), &ids)
                .await?,
        )
        .await?;
        let mut room_cache: Option<Room> = None;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = Some(row.seq as u64);
            let data: serde_json::Value = row
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let Some(kind) = EventKind::from_column(&row.kind) else {
                tracing::warn!(kind = row.kind, "unknown event kind in the room log");
                continue;
            };
            let body = match kind {
                EventKind::MessageNew | EventKind::MessageUpdated | EventKind::MessageDeleted => {
                    let Some(m) = row
                        .message_id
                        .as_ref()
                        .and_then(|id| messages.iter().find(|m| m.id.to_string() == *id))
                    else {
                        // The message is gone (its room's retention removed it): nothing to show.
                        continue;
                    };
                    let message = m.clone();
                    match kind {
                        EventKind::MessageNew => RoomEventBody::MessageNew { message },
                        EventKind::MessageUpdated => RoomEventBody::MessageUpdated { message },
                        _ => RoomEventBody::MessageDeleted { message },
                    }
                }
                EventKind::MemberJoined => {
                    let Some(user_id) = row.user_id.as_deref() else {
                        continue;
                    };
                    let Some(user) = self.store.user_by_id(user_id).await? else {
                        continue;
                    };
                    let role: MemberRole = data["role"]
                        .as_str()
                        .unwrap_or("member")
                        .parse()
                        .unwrap_or(MemberRole::Member);
                    RoomEventBody::MemberJoined {
                        member: Member {
                            user: PublicUser {
                                id: parse_id(&user.id)?,
                                username: user.username,
                                display_name: user.display_name,
                                created_at: time(user.created_at),
                            },
                            role,
                            joined_at: time(row.created_at),
                            // A member who has just joined has read nothing.
                            last_read_seq: 0,
                        },
                    }
                }
                EventKind::MemberLeft => {
                    let Some(user_id) = row.user_id.as_deref() else {
                        continue;
                    };
                    let reason = if data["reason"].as_str() == Some("kicked") {
                        LeaveReason::Kicked
                    } else {
                        LeaveReason::Left
                    };
                    let by = data["by"].as_str().and_then(|b| Uuid::parse_str(b).ok());
                    RoomEventBody::MemberLeft {
                        user_id: parse_id(user_id)?,
                        reason,
                        by,
                    }
                }
                EventKind::RoomUpdated => {
                    if room_cache.is_none() {
                        let Some(row) = self.store.room(&room_id.to_string()).await? else {
                            continue;
                        };
                        room_cache = Some(room_from_row(row)?);
                    }
                    let Some(room) = room_cache.clone() else {
                        continue;
                    };
                    RoomEventBody::RoomUpdated { room }
                }
            };
            out.push(RoomEvent { room_id, seq, body });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_flat_with_their_type() {
        let e = RoomEvent {
            room_id: Uuid::nil(),
            seq: None,
            body: RoomEventBody::Typing {
                user_id: Uuid::nil(),
                expires_in_ms: 6000,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "typing");
        assert!(v.get("seq").is_none());
        assert_eq!(serde_json::from_value::<RoomEvent>(v).unwrap(), e);
    }

    #[test]
    fn each_logged_kind_is_stored_under_its_event_type() {
        let message: Message = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "room_id": Uuid::nil(), "seq": 1, "kind": "text",
            "sender_id": null, "client_msg_id": null, "body": "", "reply_to": null,
            "attachments": [], "created_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let member: Member = serde_json::from_value(serde_json::json!({
            "user": {"id": Uuid::nil(), "username": "ada", "display_name": "Ada",
                     "created_at": "2026-01-01T00:00:00Z"},
            "role": "member", "joined_at": "2026-01-01T00:00:00Z", "last_read_seq": 0,
        }))
        .unwrap();
        let room: Room = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "kind": "group", "name": "r", "topic": null, "visibility": "public",
            "created_by": null, "member_count": 1, "last_seq": 0,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        for kind in EventKind::ALL {
            let body = match kind {
                EventKind::MessageNew => RoomEventBody::MessageNew {
                    message: message.clone(),
                },
                EventKind::MessageUpdated => RoomEventBody::MessageUpdated {
                    message: message.clone(),
                },
                EventKind::MessageDeleted => RoomEventBody::MessageDeleted {
                    message: message.clone(),
                },
                EventKind::MemberJoined => RoomEventBody::MemberJoined {
                    member: member.clone(),
                },
                EventKind::MemberLeft => RoomEventBody::MemberLeft {
                    user_id: Uuid::nil(),
                    reason: LeaveReason::Left,
                    by: None,
                },
                EventKind::RoomUpdated => RoomEventBody::RoomUpdated { room: room.clone() },
            };
            let v = serde_json::to_value(&body).unwrap();
            assert_eq!(v["type"], kind.as_str(), "{kind:?}");
            assert_eq!(EventKind::from_column(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_column("message.read"), None);
    }

    #[tokio::test]
    async fn the_bus_delivers_to_every_subscriber() {
        let bus = Bus::in_process(16);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(BusEvent::SessionsRevoked {
            user_id: Uuid::nil(),
            session_id: None,
        });
        assert!(matches!(
            *a.recv().await.unwrap(),
            BusEvent::SessionsRevoked { .. }
        ));
        assert!(matches!(
            *b.recv().await.unwrap(),
            BusEvent::SessionsRevoked { .. }
        ));
    }
}
