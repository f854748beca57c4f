//! One WebSocket connection: reads requests, answers each with `ack` or
//! `nack`, and streams the rooms' events in order with no gap and no
//! duplicate, filling any gap from the room's log.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use roost_core::auth::Actor;
use roost_core::chat::Outgoing;
use roost_core::events::{BusEvent, PresenceStatus, Replay, RoomEvent, RoomEventBody};
use roost_core::CoreError;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::hub::{Closing, ConnKey, Outbound};
use crate::protocol::{self, close, ClientFrame, RoomCursor, ServerFrame, Welcome};
use crate::Gateway;

/// Events read from the log per query while resuming or filling a gap.
const REPLAY_PAGE: u32 = 500;
/// Typing events per room and connection are published at most this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);

/// Serves one connection until it closes.
pub async fn run(gw: Gateway, actor: Actor, socket: WebSocket) {
    let connection_id = Uuid::new_v4();
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(gw.config.outbound_queue);
    let mut writer = tokio::spawn(write_loop(sink, out_rx));
    let (hub_tx, mut hub_rx) = mpsc::channel(gw.config.outbound_queue);
    let (close_tx, mut close_rx) = watch::channel::<Closing>(None);
    let key = gw
        .hub
        .register(actor.user_id, actor.session_id, hub_tx, close_tx);
    gw.core.presence.connect(actor.user_id, connection_id).await;
    tracing::debug!(user_id = %actor.user_id, %connection_id, "socket opened");

    let burst = NonZeroU32::new(gw.config.request_burst.max(1)).expect("max(1) is never zero");
    let rate = NonZeroU32::new(gw.config.requests_per_sec.max(1)).expect("max(1) is never zero");
    let mut session = Session {
        gw: gw.clone(),
        actor,
        key,
        connection_id,
        out: out_tx,
        cursors: HashMap::new(),
        started: false,
        limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        violations: VecDeque::new(),
        typing_sent: HashMap::new(),
        last_seen: Instant::now(),
        status: PresenceStatus::Online,
    };
    let closing = session.serve(&mut stream, &mut hub_rx, &mut close_rx).await;

    if let Some((code, reason)) = closing {
        if code == close::SERVICE_RESTART {
            let _ = session.send(&ServerFrame::Reconnect {
                reason: reason.clone(),
            });
        }
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }));
        if session.out.try_send(frame).is_err() {
            // The queue is full: the client is not reading, so no close frame can reach it.
            writer.abort();
        }
    }
    drop(session);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    // Only now, with the last frames written, does the node stop counting this connection:
    // a shutting-down server waits for that before it exits.
    gw.hub.unregister(key);
    gw.core
        .presence
        .disconnect(actor.user_id, connection_id)
        .await;
    tracing::debug!(%connection_id, "socket closed");
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(msg) = rx.recv().await {
        let last = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || last {
            break;
        }
    }
    let _ = sink.close().await;
}

struct Session {
    gw: Gateway,
    actor: Actor,
    key: ConnKey,
    connection_id: Uuid,
    out: mpsc::Sender<Message>,
    /// Per room: the sequence number of the last event sent.
    cursors: HashMap<Uuid, u64>,
    started: bool,
    limiter: DefaultDirectRateLimiter,
    violations: VecDeque<Instant>,
    typing_sent: HashMap<Uuid, Instant>,
    last_seen: Instant,
    /// What this connection last said of its presence.
    status: PresenceStatus,
}

/// Why serving stopped early: close with this code.
type Stop = (u16, String);

impl Session {
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        hub_rx: &mut mpsc::Receiver<Outbound>,
        close_rx: &mut watch::Receiver<Closing>,
    ) -> Closing {
        let mut tick = tokio::time::interval(self.gw.heartbeat() / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ping = Instant::now();
        loop {
            let step: Result<(), Stop> = tokio::select! {
                biased;
                _ = close_rx.changed() => Err(close_rx.borrow().clone().unwrap_or((close::SESSION_ENDED, String::new()))),
                frame = stream.next() => match frame {
                    None | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(msg)) => self.on_frame(msg).await,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        if text.contains("too long") || text.contains("Space limit") || text.contains("size") {
                            Err((close::MESSAGE_TOO_BIG, "frame too large".into()))
                        } else {
                            return None;
                        }
                    }
                },
                Some(out) = hub_rx.recv() => self.on_outbound(out).await,
                _ = tick.tick() => {
                    let idle = Duration::from_millis(self.gw.config.idle_timeout_ms);
                    if self.last_seen.elapsed() > idle {
                        Err((close::HEARTBEAT_TIMEOUT, "no frame within the idle timeout".into()))
                    } else if chrono::Utc::now().timestamp() > self.actor.expires_at {
                        Err((close::SESSION_ENDED, "the access token expired; reconnect with a fresh one".into()))
                    } else {
                                                self.gw.core.presence.heartbeat(self.actor.user_id, self.connection_id, self.status).await;
                        if last_ping.elapsed() >= self.gw.heartbeat() {
                            last_ping = Instant::now();
                            self.push(Message::Ping(Default::default()))
                        } else {
                            Ok(())
                        }
                    }
                }
            };
            if let Err(stop) = step {
                return Some(stop);
            }
        }
    }

    /// Queues a frame for the writer; a full queue means the client stopped reading.
    fn push(&self, msg: Message) -> Result<(), Stop> {
        self.out
            .try_send(msg)
            .map_err(|_| (close::SLOW_CONSUMER, "too slow reading frames".into()))
    }

    fn send(&self, frame: &ServerFrame) -> Result<(), Stop> {
        let text = serde_json::to_string(frame).expect("server frames serialise");
        self.push(Message::Text(text.into()))
    }

    async fn on_frame(&mut self, msg: Message) -> Result<(), Stop> {
        self.last_seen = Instant::now();
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self.send(&ServerFrame::Error {
                    code: "binary_not_supported".into(),
                    message: "protocol v1 uses JSON text frames".into(),
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(()),
        };
        if self.limiter.check().is_err() {
            let now = Instant::now();
            let window = Duration::from_secs(self.gw.config.abuse_window_secs);
            self.violations.push_back(now);
            while self
                .violations
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                self.violations.pop_front();
            }
            if self.violations.len() as u32 >= self.gw.config.abuse_threshold {
                return Err((
                    close::POLICY_VIOLATION,
                    "request rate limit broken persistently".into(),
                ));
            }
            let id = protocol::parse(text.as_str())
                .map(|f| f.id().to_owned())
                .ok();
            return match id {
                Some(id) => self.send(&ServerFrame::Nack {
                    id,
                    code: "rate_limited".into(),
                    message: "too many requests on this connection".into(),
                }),
                None => Ok(()),
            };
        }
        match protocol::parse(text.as_str()) {
            Ok(frame) => self.on_request(frame).await,
            Err(answer) => self.send(&answer),
        }
    }

    async fn on_request(&mut self, frame: ClientFrame) -> Result<(), Stop> {
        let id = frame.id().to_owned();
        if !self.started && !matches!(frame, ClientFrame::Hello { .. } | ClientFrame::Ping { .. }) {
            return self.nack(&id, "hello_required", "send hello first");
        }
        let chat = self.gw.core.chat.clone();
        let actor = self.actor;
        let result: Result<serde_json::Value, CoreError> = match frame {
            ClientFrame::Ping { .. } => return self.send(&ServerFrame::Pong { id }),
            ClientFrame::Hello { resume, .. } => return self.hello(&id, resume).await,
            ClientFrame::MessageSend {
                room_id,
                body,
                client_msg_id,
                reply_to,
                ..
            } => chat
                .send(
                    &actor,
                    room_id,
                    Outgoing {
                        body,
                        client_msg_id,
                        reply_to,
                    },
                )
                .await
                .map(|(message, created)| json!({"message": message, "created": created})),
            ClientFrame::MessageEdit {
                room_id,
                message_id,
                body,
                ..
            } => chat
                .edit(&actor, room_id, message_id, &body)
                .await
                .map(|m| json!({"message": m})),
            ClientFrame::MessageDelete {
                room_id,
                message_id,
                ..
            } => chat
                .delete(&actor, room_id, message_id)
                .await
                .map(|m| json!({"message": m})),
            ClientFrame::Read {
                room_id,
                message_id,
                ..
            } => chat.mark_read(&actor, room_id, message_id).await.map(
                |(m, moved)| json!({"message_id": m.id, "message_seq": m.seq, "moved": moved}),
            ),
            ClientFrame::TypingStart { room_id, .. } => {
                let recent = self
                    .typing_sent
                    .get(&room_id)
                    .is_some_and(|t| t.elapsed() < TYPING_EVERY);
                if recent {
                    Ok(json!({}))
                } else {
                    let r = chat.typing(&actor, room_id).await.map(|_| json!({}));
                    if r.is_ok() {
                        self.typing_sent.insert(room_id, Instant::now());
                    }
                    r
                }
            }
            ClientFrame::PresenceSet { status, .. } => {
                if status == PresenceStatus::Offline {
                    Err(CoreError::validation("status", "must be online or away"))
                } else {
                    self.status = status;
                    self.gw
                        .core
                        .presence
                        .set(actor.user_id, self.connection_id, status)
                        .await;
                    Ok(json!({}))
                }
            }
            ClientFrame::AuthRefresh { access_token, .. } => {
                match self.gw.core.auth.authenticate(&access_token).await {
                    Ok(fresh)
                        if fresh.user_id == actor.user_id
                            && fresh.session_id == actor.session_id =>
                    {
                        self.actor = fresh;
                        Ok(json!({"expires_at": fresh.expires_at}))
                    }
                    Ok(_) => Err(CoreError::forbidden("the token belongs to another session")),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(result) => self.send(&ServerFrame::Ack { id, result }),
            Err(e) => {
                let message = if e.code() == "internal" {
                    tracing::error!(error = %e, "request failed");
                    "something went wrong on the server".to_owned()
                } else {
                    e.to_string()
                };
                self.nack(&id, e.code(), &message)
            }
        }
    }

    fn nack(&self, id: &str, code: &str, message: &str) -> Result<(), Stop> {
        self.send(&ServerFrame::Nack {
            id: id.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        })
    }

    /// Starts the stream: acknowledges with the user's rooms, replays what
    /// each resumed room missed, then lets live events through.
    async fn hello(
        &mut self,
        id: &str,
        resume: std::collections::BTreeMap<Uuid, u64>,
    ) -> Result<(), Stop> {
        if self.started {
            return self.nack(
                id,
                "already_started",
                "hello was already sent on this connection",
            );
        }
        let rooms = match self
            .gw
            .core
            .store
            .room_seqs_of_user(&self.actor.user_id.to_string())
            .await
        {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(error = %e, "loading rooms for hello failed");
                return self.nack(id, "internal", "something went wrong on the server");
            }
        };
        let rooms: Vec<RoomCursor> = rooms
            .into_iter()
            .filter_map(|(id, seq)| {
                Some(RoomCursor {
                    room_id: Uuid::parse_str(&id).ok()?,
                    last_seq: seq.max(0) as u64,
                })
            })
            .collect();
        self.gw
            .hub
            .add_rooms(self.key, rooms.iter().map(|r| r.room_id));
        for r in &rooms {
            self.cursors.insert(r.room_id, r.last_seq);
        }
        let welcome = Welcome {
            user_id: self.actor.user_id,
            connection_id: self.connection_id,
            heartbeat_interval_ms: self.gw.config.heartbeat_interval_ms,
            rooms,
        };
        self.send(&ServerFrame::Ack {
            id: id.to_owned(),
            result: serde_json::to_value(&welcome).unwrap_or_default(),
        })?;
        self.started = true;
        for (room, after) in resume {
            if let Some(cursor) = self.cursors.get_mut(&room) {
                *cursor = after;
                self.catch_up(room, u64::MAX).await?;
            }
        }
        Ok(())
    }

    /// Sends a room's logged events after its cursor, up to `until`.
    async fn catch_up(&mut self, room: Uuid, until: u64) -> Result<(), Stop> {
        loop {
            let Some(&after) = self.cursors.get(&room) else {
                return Ok(());
            };
            if after >= until {
                return Ok(());
            }
            match self.gw.core.events.replay(room, after, REPLAY_PAGE).await {
                Ok(Replay::Events { events, more }) => {
                    let got = !events.is_empty();
                    for e in events {
                        if e.seq.is_some_and(|s| s > until) {
                            return Ok(());
                        }
                        self.deliver(&e)?;
                    }
                    if !more || !got {
                        return Ok(());
                    }
                }
                Ok(Replay::Reset { seq }) => {
                    self.cursors.insert(room, seq);
                    return self.send(&ServerFrame::ResumeReset { room_id: room, seq });
                }
                Err(e) => {
                    tracing::warn!(error = %e, %room, "reading the room log failed; the next event retries");
                    return Ok(());
                }
            }
        }
    }

    /// Sends one event if it is the next of its room, and moves the cursor.
    fn deliver(&mut self, e: &RoomEvent) -> Result<(), Stop> {
        if let Some(seq) = e.seq {
            let cur = self.cursors.get(&e.room_id).copied();
            if cur.is_some_and(|c| seq <= c) {
                return Ok(());
            }
            self.cursors.insert(e.room_id, seq);
        }
        self.send(&ServerFrame::Event(Box::new(e.clone())))?;
        let gone = match &e.body {
            RoomEventBody::MemberLeft { user_id, .. } => *user_id == self.actor.user_id,
            RoomEventBody::RoomDeleted {} => true,
            _ => false,
        };
        if gone {
            self.cursors.remove(&e.room_id);
        }
        Ok(())
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<(), Stop> {
        if !self.started {
            // Before hello nothing is sent; hello reads the log from the right point.
            return Ok(());
        }
        match out {
            Outbound::Resync => {
                let rooms: Vec<Uuid> = self.cursors.keys().copied().collect();
                for room in rooms {
                    self.catch_up(room, u64::MAX).await?;
                }
                Ok(())
            }
            Outbound::Bus(event) => match &*event {
                BusEvent::Room(e) => self.on_room_event(e).await,
                BusEvent::Presence {
                    user_id, status, ..
                } => self.send(&ServerFrame::PresenceUpdate {
                    user_id: *user_id,
                    status: *status,
                }),
                BusEvent::SessionsRevoked { .. } | BusEvent::Resync => Ok(()),
            },
        }
    }

    async fn on_room_event(&mut self, e: &RoomEvent) -> Result<(), Stop> {
        let Some(seq) = e.seq else {
            return self.deliver(e);
        };
        match self.cursors.get(&e.room_id).copied() {
            // A room joined since hello: its stream starts here.
            None => {
                self.cursors.insert(e.room_id, seq.saturating_sub(1));
                self.deliver(e)
            }
            Some(c) if seq <= c => Ok(()),
            Some(c) if seq == c + 1 => self.deliver(e),
            // Something went missing on the way: read it from the log first.
            Some(_) => {
                self.catch_up(e.room_id, seq - 1).await?;
                self.deliver(e)
            }
        }
    }
}
