//! One WebSocket connection: reads requests, answers each with `ack` or
//! `nack`, and streams the rooms' events in order with no gap and no
//! duplicate, filling any gap from the room's log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use roost_core::chat::Outgoing;
use roost_core::events::{BusEvent, PresenceStatus, Replay, RoomEvent, RoomEventBody};
use roost_core::model::Actor;
use roost_core::CoreError;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::hub::{Closing, ConnKey, Outbound};
use crate::protocol::{self, close, ClientFrame, RoomCursor, ServerFrame, Welcome};
use crate::Gateway;

/// Events read from the log per query while resuming or filling a gap.
const REPLAY_PAGE: u32 = 500;
/// How long an event that arrived ahead of its predecessor waits for it
/// before the gap is read from the log. Concurrent sends in one room commit
/// in sequence order but may reach the bus in another; the wait absorbs that
/// without a read per recipient.
const HOLD_FOR: Duration = Duration::from_millis(200);
/// The most events held back per room before the gap is read at once.
const HOLD_MAX: usize = 64;
/// How long the close frame of a connection cut off for not reading waits
/// for the client to read again, before the connection is dropped without it.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(10);
/// Typing events per room and connection are published at most this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);
/// How often a connection renews its presence (the TTL is 45 s).
const PRESENCE_EVERY: Duration = Duration::from_secs(10);
/// Frames read (and kept for later) while a request waits, say on the
/// database; past this the connection stops reading until the request ends.
const EARLY_MAX: usize = 32;

/// Serves one connection until it closes.
pub async fn run(gw: Gateway, actor: Actor, socket: WebSocket) {
    let connection_id = Uuid::new_v4();
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(gw.config.outbound_queue);
    let (last_tx, last_rx) = oneshot::channel::<Message>();
    let mut writer = tokio::spawn(write_loop(sink, out_rx, last_rx));
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
        held: HashMap::new(),
        started: false,
        limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        violations: VecDeque::new(),
        typing_sent: HashMap::new(),
        last_seen: Instant::now(),
        status: PresenceStatus::Online,
        call_participant: None,
        closed_by_client: false,
    };
    let closing = session.serve(&mut stream, &mut hub_rx, &mut close_rx).await;

    let mut grace = Duration::from_secs(2);
    if let Some((code, reason)) = closing {
        gw.hub.mark_closing(key, code, &reason);
        if code == close::SERVICE_RESTART {
            let _ = session.send(&ServerFrame::Reconnect {
                reason: reason.clone(),
            });
        }
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }));
        if code == close::SLOW_CONSUMER {
            // The client stopped reading. Should it read again, the close frame
            // comes right after the frame being written, ahead of the rest.
            let _ = last_tx.send(frame);
            grace = SLOW_CONSUMER_GRACE;
        } else if let Err(full) = session.out.try_send(frame) {
            // Queued behind frames the client is not reading: jump the queue.
            let _ = last_tx.send(full.into_inner());
            grace = SLOW_CONSUMER_GRACE;
        }
    }
    let (participant, closed_by_client) = (
        session.call_participant.unwrap_or(connection_id),
        session.closed_by_client,
    );
    drop(session);
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
    // Only now, with the last frames written, does the node stop counting this connection:
    // a shutting-down server waits for that before it exits.
    gw.hub.unregister(key);
    // A closed socket leaves its call at once; one that dropped is kept
    // for the reconnection grace, for a new socket to resume.
    gw.calls
        .disconnect(participant, key, closed_by_client)
        .await;
    gw.core
        .presence
        .disconnect(actor.user_id, connection_id)
        .await;
    tracing::debug!(%connection_id, "socket closed");
}

/// The code and message of a failed request's `nack`: what REST answers for
/// the same error, with internal detail logged rather than sent.
fn nack_of(e: &CoreError) -> (&'static str, String) {
    (e.code(), e.public_message().into_owned())
}

/// Writes queued frames in order; a frame on `last` jumps the queue and ends
/// the connection.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    last: oneshot::Receiver<Message>,
) {
    let mut last = Some(last);
    loop {
        let msg = tokio::select! {
            biased;
            frame = async { last.as_mut().expect("polled only while present").await }, if last.is_some() => match frame {
                Ok(frame) => frame,
                Err(_) => {
                    last = None;
                    continue;
                }
            },
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
        };
        let is_close = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || is_close {
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
    /// Per room: live events that arrived ahead of a gap, by sequence number.
    held: HashMap<Uuid, Held>,
    started: bool,
    limiter: DefaultDirectRateLimiter,
    violations: VecDeque<Instant>,
    typing_sent: HashMap<Uuid, Instant>,
    last_seen: Instant,
    /// What this connection last said of its presence.
    status: PresenceStatus,
    /// Its participant in a call: its own id, or the one it resumed.
    call_participant: Option<Uuid>,
    /// The client closed the socket (a close frame), rather than vanished.
    closed_by_client: bool,
}

/// Events of one room waiting for an earlier one.
struct Held {
    since: Instant,
    events: BTreeMap<u64, (RoomEvent, Option<Utf8Bytes>)>,
}

/// When the periodic checks last ran.
struct Clocks {
    /// How often the tick fires.
    every: Duration,
    idle: Duration,
    ping: Instant,
    presence: Instant,
    reconcile: Instant,
}

/// Why serving stopped early: close with this code.
type Stop = (u16, String);

/// What one read of the socket gave.
enum Read {
    Frame(Message),
    /// The client closed the connection on purpose: a close frame with
    /// 1000 (normal) or 1001 (going away, a closed page).
    Closed,
    /// The connection broke.
    End,
    /// The client broke the protocol: close with this code.
    Stop(Stop),
}

impl Read {
    fn from(frame: Option<Result<Message, axum::Error>>) -> Read {
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        use tokio_tungstenite::tungstenite::Error as WsError;
        let e = match frame {
            Some(Ok(Message::Close(Some(frame)))) if matches!(frame.code, 1000 | 1001) => {
                return Read::Closed
            }
            Some(Ok(Message::Close(_))) => return Read::End,
            None => return Read::End,
            Some(Ok(msg)) => return Read::Frame(msg),
            Some(Err(e)) => e.into_inner(),
        };
        match e.downcast_ref::<WsError>() {
            Some(WsError::Capacity(_)) => {
                Read::Stop((close::MESSAGE_TOO_BIG, "frame too large".into()))
            }
            Some(WsError::Utf8(_)) => Read::Stop((
                close::INVALID_PAYLOAD,
                "a text frame was not valid UTF-8".into(),
            )),
            // The peer went away mid-frame: nobody is left to tell.
            Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => Read::End,
            Some(WsError::Protocol(p)) => {
                Read::Stop((close::PROTOCOL_ERROR, format!("protocol error: {p}")))
            }
            _ => Read::End,
        }
    }
}

impl Session {
    async fn serve(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        hub_rx: &mut mpsc::Receiver<Outbound>,
        close_rx: &mut watch::Receiver<Closing>,
    ) -> Closing {
        let idle = Duration::from_millis(self.gw.config.idle_timeout_ms);
        let every = (self.gw.heartbeat() / 3)
            .min(idle / 10)
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut clocks = Clocks {
            every,
            idle,
            ping: Instant::now(),
            presence: Instant::now(),
            reconcile: Instant::now(),
        };
        // Frames read while a request waited, in order: handled before any newer one.
        let mut early: VecDeque<Read> = VecDeque::new();
        loop {
            let step: Result<(), Stop> = tokio::select! {
                biased;
                _ = close_rx.changed() => Err(close_rx.borrow().clone().unwrap_or((close::SESSION_ENDED, String::new()))),
                read = async {
                    match early.pop_front() {
                        Some(read) => read,
                        None => Read::from(stream.next().await),
                    }
                } => match read {
                    Read::End => return None,
                    Read::Closed => {
                        self.closed_by_client = true;
                        return None;
                    }
                    Read::Stop(stop) => Err(stop),
                    Read::Frame(msg) => self.on_frame_reading_on(msg, stream, &mut early).await,
                },
                Some(out) = hub_rx.recv() => self.on_outbound(out).await,
                _ = tokio::time::sleep_until(self.hold_deadline()), if !self.held.is_empty() => {
                    self.fill_overdue_gaps().await
                }
                _ = tick.tick() => self.on_tick(&mut clocks).await,
            };
            if let Err(stop) = step {
                return Some(stop);
            }
        }
    }

    /// The periodic checks: idleness, token expiry, presence renewal,
    /// reconciling with the store, and the server's pings.
    async fn on_tick(&mut self, clocks: &mut Clocks) -> Result<(), Stop> {
        // Checked a tick early, so a silent connection is closed within the timeout.
        if self.last_seen.elapsed() + clocks.every > clocks.idle {
            return Err((
                close::HEARTBEAT_TIMEOUT,
                "no frame within the idle timeout".into(),
            ));
        }
        if chrono::Utc::now().timestamp() > self.actor.expires_at {
            return Err((
                close::SESSION_ENDED,
                "the access token expired; reconnect with a fresh one".into(),
            ));
        }
        if clocks.presence.elapsed() >= PRESENCE_EVERY {
            clocks.presence = Instant::now();
            self.gw
                .core
                .presence
                .heartbeat(self.actor.user_id, self.connection_id, self.status)
                .await;
        }
        if self.started
            && clocks.reconcile.elapsed()
                >= Duration::from_millis(self.gw.config.reconcile_interval_ms)
        {
            clocks.reconcile = Instant::now();
            self.reconcile().await?;
        }
        if clocks.ping.elapsed() >= self.gw.heartbeat() {
            clocks.ping = Instant::now();
            self.push(Message::Ping(Default::default()))?;
        }
        Ok(())
    }

    /// Handles a frame while reading on: a request that waits (on the
    /// database, say) must not silence the connection, or the client's
    /// keepalive gives up on it. Pings read meanwhile are answered at once,
    /// the socket's own as well as `ping` requests; other frames wait in
    /// `early`, in order, for the request to end.
    async fn on_frame_reading_on(
        &mut self,
        msg: Message,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        early: &mut VecDeque<Read>,
    ) -> Result<(), Stop> {
        let out = self.out.clone();
        let mut seen = false;
        let result = {
            let work = self.on_frame(msg);
            tokio::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    result = &mut work => break result,
                    // Reading again also sends the pong the library queued for a ping.
                    frame = stream.next(), if early.len() < EARLY_MAX => match Read::from(frame) {
                        Read::Frame(Message::Ping(_) | Message::Pong(_)) => seen = true,
                        Read::Frame(Message::Text(text)) => {
                            if let Ok(ClientFrame::Ping { id }) = protocol::parse(text.as_str()) {
                                seen = true;
                                let pong = serde_json::to_string(&ServerFrame::Pong { id })
                                    .expect("server frames serialise");
                                // A full queue is a slow consumer, which the next push reports.
                                let _ = out.try_send(Message::Text(pong.into()));
                            } else {
                                early.push_back(Read::Frame(Message::Text(text)));
                            }
                        }
                        read => early.push_back(read),
                    },
                }
            }
        };
        if seen {
            self.last_seen = Instant::now();
        }
        result
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
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
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
            let id = text
                .as_ref()
                .and_then(|t| protocol::parse(t.as_str()).map(|f| f.id().to_owned()).ok());
            return match id {
                Some(id) => self.send(&ServerFrame::Nack {
                    id,
                    code: "rate_limited".into(),
                    message: "too many requests on this connection".into(),
                }),
                None => Ok(()),
            };
        }
        let Some(text) = text else {
            return self.send(&ServerFrame::Error {
                code: "binary_not_supported".into(),
                message: "protocol v1 uses JSON text frames".into(),
            });
        };
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
                attachments,
                ..
            } => chat
                .send(
                    &actor,
                    room_id,
                    Outgoing {
                        body,
                        client_msg_id,
                        reply_to,
                        attachments,
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
            ClientFrame::Call { request, .. } => self.on_call_request(request).await,
        };
        match result {
            Ok(result) => self.send(&ServerFrame::Ack { id, result }),
            Err(e) => {
                let (code, message) = nack_of(&e);
                self.nack(&id, code, &message)
            }
        }
    }

    /// The requests of calls, handed to the node's call hub.
    async fn on_call_request(
        &mut self,
        request: protocol::CallRequest,
    ) -> Result<serde_json::Value, CoreError> {
        let calls = self.gw.calls.clone();
        // A resumed place in a call is the old connection's participant.
        let (participant, resuming, joining) = match &request {
            protocol::CallRequest::Resume { participant_id, .. } => (*participant_id, true, false),
            protocol::CallRequest::Join { .. } => (self.connection_id, false, true),
            _ => (
                self.call_participant.unwrap_or(self.connection_id),
                false,
                false,
            ),
        };
        // One socket speaks for one participant: another join or resume
        // waits until it has left.
        if let Some(current) = self.call_participant.filter(|p| *p != participant) {
            if (resuming || joining) && calls.in_call(current) {
                return Err(CoreError::conflict(
                    "already_in_call",
                    "this connection is already in a call; leave it first",
                ));
            }
        }
        let answer = calls
            .request(&self.actor, self.key, participant, request)
            .await;
        if answer.is_ok() && (resuming || joining) {
            self.call_participant = Some(participant);
        }
        answer
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
        let rooms = match self.gw.core.rooms.cursors(&self.actor).await {
            Ok(rooms) => rooms,
            Err(e) => {
                let (code, message) = nack_of(&e);
                return self.nack(id, code, &message);
            }
        };
        let rooms: Vec<RoomCursor> = rooms
            .into_iter()
            .map(|(room_id, last_seq)| RoomCursor { room_id, last_seq })
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
                // A point beyond the room's end would silence the room on this connection.
                *cursor = after.min(*cursor);
                self.catch_up(room, u64::MAX).await?;
            }
        }
        Ok(())
    }

    /// Sends a room's logged events after its cursor, up to `until`. Waits for
    /// room in the client's queue rather than overflowing it: a long replay
    /// slows only this connection.
    async fn catch_up(&mut self, room: Uuid, until: u64) -> Result<(), Stop> {
        loop {
            let Some(&after) = self.cursors.get(&room) else {
                return Ok(());
            };
            if after >= until {
                return Ok(());
            }
            match self.gw.core.events.replay(room, after, REPLAY_PAGE).await {
                Ok(Replay::Events {
                    events,
                    more,
                    read_to,
                }) => {
                    for e in events {
                        if e.seq.is_some_and(|s| s > until) {
                            return Ok(());
                        }
                        if let Some(msg) = self.next_frame(&e, None) {
                            self.push_wait(msg).await?;
                        }
                    }
                    // Events that show nothing (their message is gone) are read past too.
                    if let Some(cursor) = self.cursors.get_mut(&room) {
                        *cursor = (*cursor).max(read_to.min(until));
                    }
                    if !more {
                        return Ok(());
                    }
                }
                Ok(Replay::Reset { seq }) => {
                    self.cursors.insert(room, seq);
                    return self.send(&ServerFrame::ResumeReset { room_id: room, seq });
                }
                Err(e) => {
                    // The cursor stays put: the reconcile tick or the next event reads again.
                    tracing::warn!(error = %e, %room, "reading the room log failed");
                    return Ok(());
                }
            }
        }
    }

    /// Queues a frame, waiting up to a while for room; a client that takes
    /// longer than that is a slow consumer.
    async fn push_wait(&self, msg: Message) -> Result<(), Stop> {
        match tokio::time::timeout(Duration::from_secs(10), self.out.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err((close::SLOW_CONSUMER, "too slow reading frames".into())),
        }
    }

    /// The frame for an event if it is the next of its room (moving the
    /// cursor), or `None` if it was already sent.
    fn next_frame(&mut self, e: &RoomEvent, text: Option<Utf8Bytes>) -> Option<Message> {
        if let Some(seq) = e.seq {
            let cur = self.cursors.get(&e.room_id).copied();
            if cur.is_some_and(|c| seq <= c) {
                return None;
            }
            self.cursors.insert(e.room_id, seq);
        }
        let text = text.unwrap_or_else(|| {
            Utf8Bytes::from(
                serde_json::to_string(&ServerFrame::Event(Box::new(e.clone())))
                    .expect("frames serialise"),
            )
        });
        let gone = match &e.body {
            RoomEventBody::MemberLeft { user_id, .. } => *user_id == self.actor.user_id,
            RoomEventBody::RoomDeleted {} => true,
            _ => false,
        };
        if gone {
            // Nothing more of this room reaches this connection.
            self.cursors.remove(&e.room_id);
            self.gw
                .hub
                .remove_room(self.key, e.room_id, e.seq.unwrap_or(u64::MAX));
        }
        Some(Message::Text(text))
    }

    /// Sends one live event if it is the next of its room.
    fn deliver(&mut self, e: &RoomEvent, text: Option<Utf8Bytes>) -> Result<(), Stop> {
        match self.next_frame(e, text) {
            Some(msg) => self.push(msg),
            None => Ok(()),
        }
    }

    /// Every so often, and whatever the bus did: the session is still valid,
    /// the rooms followed are the user's rooms, and nothing logged was missed.
    async fn reconcile(&mut self) -> Result<(), Stop> {
        match self.gw.core.auth.session_alive(&self.actor).await {
            Ok(true) => {}
            Ok(false) => return Err((close::SESSION_ENDED, "session ended".into())),
            Err(_) => return Ok(()),
        }
        let Ok(rooms) = self.gw.core.rooms.cursors(&self.actor).await else {
            return Ok(());
        };
        let now: HashMap<Uuid, u64> = rooms.into_iter().collect();
        let followed: Vec<Uuid> = self.cursors.keys().copied().collect();
        for room in followed {
            if !now.contains_key(&room) {
                self.cursors.remove(&room);
                self.gw.hub.remove_room(self.key, room, 0);
            }
        }
        for (room, last) in now {
            match self.cursors.get(&room).copied() {
                Some(c) if c < last => self.catch_up(room, last).await?,
                Some(_) => {}
                // Joined without this connection hearing of it: follow from here on.
                None => {
                    if self.gw.hub.follow(self.key, room, last) {
                        self.cursors.insert(room, last);
                    }
                }
            }
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
            Outbound::Room(event, text) => match &*event {
                BusEvent::Room(e) => self.on_room_event(e, Some(text)).await,
                _ => Ok(()),
            },
            Outbound::Presence(text) | Outbound::Direct(text) => self.push(Message::Text(text)),
        }
    }

    /// A live event; `text` is its frame, made once by the hub for every recipient.
    async fn on_room_event(&mut self, e: &RoomEvent, text: Option<Utf8Bytes>) -> Result<(), Stop> {
        let Some(seq) = e.seq else {
            // Typing and read receipts: only for rooms this connection follows.
            if self.cursors.contains_key(&e.room_id)
                || matches!(e.body, RoomEventBody::RoomDeleted {})
            {
                return self.deliver(e, text);
            }
            return Ok(());
        };
        let Some(c) = self.cursors.get(&e.room_id).copied() else {
            // A room not followed: start only with this user's own joining.
            let mine = matches!(&e.body, RoomEventBody::MemberJoined { member } if member.user.id == self.actor.user_id);
            if mine {
                self.cursors.insert(e.room_id, seq.saturating_sub(1));
                return self.deliver(e, text);
            }
            return Ok(());
        };
        if seq <= c {
            return Ok(());
        }
        if seq > c + 1 {
            // An earlier event is still on its way (or was lost): hold this one.
            let held = self.held.entry(e.room_id).or_insert_with(|| Held {
                since: Instant::now(),
                events: BTreeMap::new(),
            });
            held.events.insert(seq, (e.clone(), text));
            if held.events.len() >= HOLD_MAX {
                return self.fill_gap(e.room_id).await;
            }
            return Ok(());
        }
        self.deliver(e, text)?;
        self.release(e.room_id)
    }

    /// Sends the held events of a room that are now next in line, and drops
    /// those already sent.
    fn release(&mut self, room: Uuid) -> Result<(), Stop> {
        let Some(held) = self.held.get_mut(&room) else {
            return Ok(());
        };
        let mut ready = Vec::new();
        let mut next = match self.cursors.get(&room) {
            Some(c) => *c + 1,
            None => {
                self.held.remove(&room);
                return Ok(());
            }
        };
        while let Some(entry) = held.events.first_entry() {
            let seq = *entry.key();
            if seq < next {
                entry.remove();
            } else if seq == next {
                ready.push(entry.remove());
                next += 1;
            } else {
                break;
            }
        }
        if held.events.is_empty() {
            self.held.remove(&room);
        }
        for (e, text) in ready {
            self.deliver(&e, text)?;
        }
        Ok(())
    }

    /// Reads a room's gap from the log, then sends what was held behind it.
    async fn fill_gap(&mut self, room: Uuid) -> Result<(), Stop> {
        let last = self
            .held
            .get(&room)
            .and_then(|h| h.events.keys().next_back().copied());
        if let Some(last) = last {
            self.catch_up(room, last).await?;
        }
        self.release(room)?;
        if let Some(h) = self.held.get_mut(&room) {
            // The log could not be read: try again a while later, unless too much is waiting.
            if h.events.len() < HOLD_MAX * 4 {
                h.since = Instant::now();
            } else if let Some(h) = self.held.remove(&room) {
                for (_, (e, text)) in h.events {
                    self.deliver(&e, text)?;
                }
            }
        }
        Ok(())
    }

    fn hold_deadline(&self) -> tokio::time::Instant {
        let oldest = self
            .held
            .values()
            .map(|h| h.since)
            .min()
            .unwrap_or_else(Instant::now);
        (oldest + HOLD_FOR).into()
    }

    async fn fill_overdue_gaps(&mut self) -> Result<(), Stop> {
        let overdue: Vec<Uuid> = self
            .held
            .iter()
            .filter(|(_, h)| h.since.elapsed() >= HOLD_FOR)
            .map(|(room, _)| *room)
            .collect();
        for room in overdue {
            self.fill_gap(room).await?;
        }
        Ok(())
    }
}
