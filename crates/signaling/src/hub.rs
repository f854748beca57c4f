//! The hub routes bus events to the connections of this node: room events to
//! the connections of the room's members, presence to those who share a room,
//! revocations to the sessions they end. It never waits on a connection: a
//! connection whose queue is full is told to close as a slow consumer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use roost_core::events::{Bus, BusEvent, RoomEventBody};
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

use axum::extract::ws::Utf8Bytes;

use crate::protocol::{close, ServerFrame};

/// Why a connection must close: a close code and a reason.
pub type Closing = Option<(u16, String)>;

/// What the hub hands a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A room event, with its frame's JSON made once for every recipient.
    Room(Arc<BusEvent>, Utf8Bytes),
    /// A presence update, ready to send.
    Presence(Utf8Bytes),
    /// A frame for this connection alone (call signaling), ready to send.
    Direct(Utf8Bytes),
    /// Events may have been lost on the way here: check every room against the log.
    Resync,
}

struct Entry {
    user_id: Uuid,
    auth_session: Uuid,
    tx: mpsc::Sender<Outbound>,
    close: watch::Sender<Closing>,
    rooms: HashSet<Uuid>,
    /// Rooms left since registering, with the sequence number of the leaving
    /// (`u64::MAX` for a deleted room): a room list read before that must not
    /// re-add them.
    left: HashMap<Uuid, u64>,
}

#[derive(Default)]
struct State {
    next: u64,
    conns: HashMap<u64, Entry>,
    by_room: HashMap<Uuid, HashSet<u64>>,
    by_user: HashMap<Uuid, HashSet<u64>>,
}

/// A connection's handle in the hub.
pub type ConnKey = u64;

/// The router of one node.
#[derive(Default)]
pub struct Hub {
    state: Mutex<State>,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only map updates happen under the lock; a panic there cannot leave it inconsistent
        // in a way worse than dropping one event, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts routing the bus's events; runs until the bus closes.
    pub fn spawn(self: &Arc<Self>, bus: &Bus) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let mut rx = bus.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => hub.route(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "the hub fell behind the bus; connections resync from the log"
                        );
                        hub.each(|e| {
                            let _ = e.tx.try_send(Outbound::Resync);
                        });
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    pub fn register(
        &self,
        user_id: Uuid,
        auth_session: Uuid,
        tx: mpsc::Sender<Outbound>,
        close: watch::Sender<Closing>,
    ) -> ConnKey {
        let mut s = self.lock();
        s.next += 1;
        let key = s.next;
        s.conns.insert(
            key,
            Entry {
                user_id,
                auth_session,
                tx,
                close,
                rooms: HashSet::new(),
                left: HashMap::new(),
            },
        );
        s.by_user.entry(user_id).or_default().insert(key);
        key
    }

    /// Adds rooms read from the store after registering, except those left since.
    pub fn add_rooms(&self, key: ConnKey, rooms: impl IntoIterator<Item = Uuid>) {
        let mut s = self.lock();
        let State { conns, by_room, .. } = &mut *s;
        let Some(entry) = conns.get_mut(&key) else {
            return;
        };
        for room in rooms {
            if !entry.left.contains_key(&room) && entry.rooms.insert(room) {
                by_room.entry(room).or_default().insert(key);
            }
        }
    }

    /// Routes a room to a connection again, from a membership read from the
    /// store when the room's log stood at `as_of`; unless the connection saw
    /// the user leave after that. Returns whether the room is routed.
    pub fn follow(&self, key: ConnKey, room: Uuid, as_of: u64) -> bool {
        let mut s = self.lock();
        let State { conns, by_room, .. } = &mut *s;
        let Some(entry) = conns.get_mut(&key) else {
            return false;
        };
        if entry.left.get(&room).is_some_and(|&at| at > as_of) {
            return false;
        }
        entry.left.remove(&room);
        if entry.rooms.insert(room) {
            by_room.entry(room).or_default().insert(key);
        }
        true
    }

    /// Stops routing a room to a connection: the user left it at sequence `at`.
    pub fn remove_room(&self, key: ConnKey, room: Uuid, at: u64) {
        let mut s = self.lock();
        if let Some(entry) = s.conns.get_mut(&key) {
            entry.rooms.remove(&room);
            let seen = entry.left.entry(room).or_insert(at);
            *seen = (*seen).max(at);
        }
        if let Some(set) = s.by_room.get_mut(&room) {
            set.remove(&key);
            if set.is_empty() {
                s.by_room.remove(&room);
            }
        }
    }

    pub fn unregister(&self, key: ConnKey) {
        let mut s = self.lock();
        let Some(entry) = s.conns.remove(&key) else {
            return;
        };
        for room in entry.rooms {
            if let Some(set) = s.by_room.get_mut(&room) {
                set.remove(&key);
                if set.is_empty() {
                    s.by_room.remove(&room);
                }
            }
        }
        if let Some(set) = s.by_user.get_mut(&entry.user_id) {
            set.remove(&key);
            if set.is_empty() {
                s.by_user.remove(&entry.user_id);
            }
        }
    }

    /// How many connections this node holds.
    /// Sends a frame to one connection; false if it is gone. A connection
    /// whose queue is full is closed as a slow consumer.
    pub fn send_to(&self, key: ConnKey, frame: &ServerFrame) -> bool {
        let s = self.lock();
        if !s.conns.contains_key(&key) {
            return false;
        }
        deliver(&s, key, Outbound::Direct(frame_text(frame)));
        true
    }

    /// Connections registered, including those writing their last frames.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Connections registered and not closing.
    pub fn open_connections(&self) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|e| e.close.borrow().is_none())
            .count()
    }

    /// Records why a connection is closing, if nothing has yet.
    pub fn mark_closing(&self, key: ConnKey, code: u16, reason: &str) {
        if let Some(entry) = self.lock().conns.get(&key) {
            entry.close.send_if_modified(|c| {
                let unset = c.is_none();
                if unset {
                    *c = Some((code, reason.to_owned()));
                }
                unset
            });
        }
    }

    /// Tells every connection to close with `code`.
    pub fn close_all(&self, code: u16, reason: &str) {
        self.each(|e| {
            e.close.send_replace(Some((code, reason.to_owned())));
        });
    }

    fn each(&self, f: impl Fn(&Entry)) {
        let s = self.lock();
        s.conns.values().for_each(f);
    }

    fn route(&self, event: Arc<BusEvent>) {
        let mut s = self.lock();
        match &*event {
            BusEvent::Room(e) => {
                let room = e.room_id;
                // A joiner's connections follow the room from this event on.
                if let RoomEventBody::MemberJoined { member } = &e.body {
                    let keys: Vec<u64> = s
                        .by_user
                        .get(&member.user.id)
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect();
                    for key in keys {
                        if let Some(entry) = s.conns.get_mut(&key) {
                            entry.left.remove(&room);
                            entry.rooms.insert(room);
                        }
                        s.by_room.entry(room).or_default().insert(key);
                    }
                }
                let targets: Vec<u64> = s
                    .by_room
                    .get(&room)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                if !targets.is_empty() {
                    let text = frame_text(&ServerFrame::Event(Box::new(e.clone())));
                    for key in &targets {
                        deliver(&s, *key, Outbound::Room(event.clone(), text.clone()));
                    }
                }
                // A leaver gets the event of their leaving, then nothing more of the room.
                let gone: Vec<u64> = match &e.body {
                    RoomEventBody::MemberLeft { user_id, .. } => s
                        .by_user
                        .get(user_id)
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect(),
                    RoomEventBody::RoomDeleted {} => targets,
                    _ => Vec::new(),
                };
                for key in gone {
                    if let Some(entry) = s.conns.get_mut(&key) {
                        entry.rooms.remove(&room);
                        let at = e.seq.unwrap_or(u64::MAX);
                        let seen = entry.left.entry(room).or_insert(at);
                        *seen = (*seen).max(at);
                    }
                    if let Some(set) = s.by_room.get_mut(&room) {
                        set.remove(&key);
                        if set.is_empty() {
                            s.by_room.remove(&room);
                        }
                    }
                }
            }
            BusEvent::Presence {
                user_id,
                status,
                room_ids,
            } => {
                let targets: HashSet<u64> = room_ids
                    .iter()
                    .filter_map(|r| s.by_room.get(r))
                    .flatten()
                    .copied()
                    .collect();
                if !targets.is_empty() {
                    let text = frame_text(&ServerFrame::PresenceUpdate {
                        user_id: *user_id,
                        status: *status,
                    });
                    for key in targets {
                        deliver(&s, key, Outbound::Presence(text.clone()));
                    }
                }
            }
            BusEvent::Resync => {
                for entry in s.conns.values() {
                    let _ = entry.tx.try_send(Outbound::Resync);
                }
            }
            BusEvent::SessionsRevoked {
                user_id,
                session_id,
            } => {
                for key in s.by_user.get(user_id).into_iter().flatten() {
                    if let Some(entry) = s.conns.get(key) {
                        if session_id.is_none_or(|sid| sid == entry.auth_session) {
                            entry
                                .close
                                .send_replace(Some((close::SESSION_ENDED, "session ended".into())));
                        }
                    }
                }
            }
        }
        drop(s);
    }
}

fn frame_text(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(frame).expect("server frames serialise"))
}

fn deliver(s: &State, key: u64, out: Outbound) {
    let Some(entry) = s.conns.get(&key) else {
        return;
    };
    if entry.tx.try_send(out).is_err() {
        entry.close.send_replace(Some((
            close::SLOW_CONSUMER,
            "too slow reading events".into(),
        )));
    }
}
