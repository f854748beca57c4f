//! The live side of calls on this node: who is in each room's call, from
//! which connection, the call's topology, mesh relaying, and the glue to the
//! media engine when the call goes through the server.
//!
//! A call is peer to peer (mesh) while it has at most `mesh_max`
//! participants; the next joiner moves it to the SFU, and it returns to mesh
//! only when it shrinks to `mesh_max - 1`, so it does not flap. After a move
//! to mesh, the server keeps forwarding for `sfu_grace` so the old path
//! carries media until the new one does. `mesh_max = 0` keeps every call on
//! the SFU.
//!
//! The record of each call (start, end, who and when) and the room's
//! `call.state` events are the core's [`roost_core::calls`].

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roost_core::model::Actor;
use roost_core::{Core, CoreError};
use roost_media::{Engine, EngineEvent, Kind, MediaError, Source, Subscription};
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::hub::{ConnKey, Hub};
use crate::nodes::{self, lease, Held, LocalCalls, NodeLink, NodeMessage, Relayed};
use crate::protocol::{
    CallJoined, CallParticipantInfo, CallRequest, MediaKind, ModerationAction, ServerFrame,
    SfuTrack, Speaker, Topology, TrackSource,
};

/// How calls are carried.
#[derive(Debug, Clone)]
pub struct CallsConfig {
    /// The largest call kept peer to peer.
    pub mesh_max: usize,
    /// How long the SFU keeps forwarding after a call returns to mesh.
    pub sfu_grace: Duration,
    /// How long a participant whose socket dropped (without closing) stays
    /// in its call, for a new socket of the same user to take it back with
    /// `call.resume`. Zero: it leaves at once.
    pub reconnect_grace: Duration,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            mesh_max: 4,
            sfu_grace: Duration::from_secs(10),
            reconnect_grace: Duration::from_secs(15),
        }
    }
}

/// The calls of this node.
pub struct CallHub {
    core: Core,
    hub: Arc<Hub>,
    engine: Option<Engine>,
    config: CallsConfig,
    state: Mutex<State>,
    /// With several nodes: calls held elsewhere, and this node's held for others.
    link: Option<Arc<NodeLink>>,
}

/// Where a participant's frames go: a connection of this node, or one of
/// another node that relays this call's signalling (ADR 0007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Local(ConnKey),
    Remote {
        node: Uuid,
        conn: Uuid,
    },
    /// The participant's socket dropped: its frames wait for `call.resume`
    /// (within the grace).
    Away(Uuid),
}

/// Frames kept for a participant whose socket dropped, at most; one more
/// and it leaves the call.
const MAX_HELD_FRAMES: usize = 1024;

#[derive(Default)]
struct State {
    by_room: HashMap<Uuid, LiveCall>,
    /// Each participant's room.
    rooms_of: HashMap<Uuid, Uuid>,
}

struct LiveCall {
    call_id: Uuid,
    topology: Topology,
    /// Bumped on every change of topology, so a delayed teardown of the SFU
    /// path knows whether it still applies.
    epoch: u64,
    participants: BTreeMap<Uuid, Participant>,
}

struct Participant {
    user_id: Uuid,
    key: Endpoint,
    audio_muted: bool,
    video_muted: bool,
    screen_sharing: bool,
    /// A moderator muted it, and the room does not let it unmute itself.
    audio_locked: bool,
    video_locked: bool,
    /// What a moderator stopped the SFU forwarding, until the participant
    /// unmutes it or shares again.
    stopped: Vec<Source>,
    /// The certificate of its last sending connection to the SFU: after
    /// the engine gave up on it, only a new connection comes back.
    certificate: Option<String>,
    /// While its socket is away: the frames that wait for it.
    held: Vec<ServerFrame>,
    /// More frames came while away than are kept: it cannot resume.
    overflowed: bool,
    /// Counts its departures, so that a grace's end knows whether it
    /// resumed meanwhile.
    away_count: u64,
    /// Whether the media engine has this participant.
    in_engine: bool,
    /// The engine gave up on its connections: it comes back with new ones
    /// only (`back_in_engine`), not with someone else's joining.
    lost: bool,
}

impl Participant {
    fn new(user_id: Uuid, key: Endpoint) -> Participant {
        Participant {
            user_id,
            key,
            audio_muted: false,
            video_muted: false,
            screen_sharing: false,
            audio_locked: false,
            video_locked: false,
            stopped: Vec::new(),
            certificate: None,
            held: Vec::new(),
            overflowed: false,
            away_count: 0,
            in_engine: false,
            lost: false,
        }
    }

    fn info(&self, participant_id: Uuid) -> CallParticipantInfo {
        CallParticipantInfo {
            participant_id,
            user_id: self.user_id,
            audio_muted: self.audio_muted,
            video_muted: self.video_muted,
            screen_sharing: self.screen_sharing,
            audio_locked: self.audio_locked,
            video_locked: self.video_locked,
        }
    }

    /// Lets go on what a moderator stopped of `sources`; whether it had.
    fn go_on(&mut self, sources: &[Source]) -> bool {
        let before = self.stopped.len();
        self.stopped.retain(|s| !sources.contains(s));
        self.stopped.len() != before
    }
}

/// The sources a kind of a participant's media stands for in a mute: all
/// its audio, or its camera.
fn sources_of(kind: MediaKind) -> &'static [Source] {
    match kind {
        MediaKind::Audio => &[Source::Microphone, Source::ScreenAudio],
        MediaKind::Video => &[Source::Camera],
    }
}

/// A screen share's sources.
const SCREEN: &[Source] = &[Source::Screen, Source::ScreenAudio];

/// Who to tell what, gathered under the lock and sent after it.
type Outbox = Vec<(Endpoint, ServerFrame)>;

/// The SHA-256 fingerprint of the certificate an SDP names, as written.
fn certificate_of(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| {
        let value = l.trim().strip_prefix("a=fingerprint:")?;
        let (hash, value) = value.split_once(' ')?;
        hash.eq_ignore_ascii_case("sha-256")
            .then(|| value.trim().to_ascii_uppercase())
    })
}

/// A participant of a live call on this node.
fn participant_mut(s: &mut State, participant: Uuid) -> Option<&mut Participant> {
    let room = *s.rooms_of.get(&participant)?;
    s.by_room.get_mut(&room)?.participants.get_mut(&participant)
}

/// A frame for everyone in the call but `participant`.
fn to_others(call: &LiveCall, participant: Uuid, frame: &ServerFrame) -> Outbox {
    call.participants
        .iter()
        .filter(|(id, _)| **id != participant)
        .map(|(_, p)| (p.key, frame.clone()))
        .collect()
}

impl CallHub {
    /// Starts the hub; with an engine, its events (the server's offers) are
    /// relayed to the participants' connections.
    pub fn start(
        core: Core,
        hub: Arc<Hub>,
        media: Option<(Engine, mpsc::UnboundedReceiver<EngineEvent>)>,
        config: CallsConfig,
    ) -> Arc<CallHub> {
        let (engine, events) = match media {
            Some((engine, events)) => (Some(engine), Some(events)),
            None => (None, None),
        };
        let link = core
            .cluster
            .clone()
            .map(|c| Arc::new(NodeLink::new(c, hub.clone())));
        let calls = Arc::new(CallHub {
            core,
            hub,
            engine,
            config,
            state: Mutex::new(State::default()),
            link,
        });
        if let Some(link) = &calls.link {
            let inbox = link.cluster.node_inbox();
            tokio::spawn(nodes::listen(Arc::downgrade(&calls), inbox));
            tokio::spawn(nodes::sweep(Arc::downgrade(&calls)));
        }
        if let Some(mut events) = events {
            let weak = Arc::downgrade(&calls);
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    let Some(calls) = weak.upgrade() else { break };
                    calls.on_engine_event(event);
                }
            });
        }
        calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only map updates happen under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, outbox: Outbox) {
        for (to, frame) in outbox {
            self.deliver(to, frame);
        }
    }

    /// Sends a frame to a participant, on this node or through its own.
    fn deliver(&self, to: Endpoint, frame: ServerFrame) {
        match (to, &self.link) {
            (Endpoint::Local(key), _) => {
                self.hub.send_to(key, &frame);
            }
            (Endpoint::Remote { node, conn }, Some(link)) => {
                link.send(node, &NodeMessage::Frame { conn, frame })
            }
            (Endpoint::Remote { .. }, None) => {}
            (Endpoint::Away(participant), _) => self.hold(participant, frame),
        }
    }

    /// Keeps a frame for a participant whose socket is away, until it
    /// resumes; past [`MAX_HELD_FRAMES`] it cannot resume any more.
    fn hold(&self, participant: Uuid, frame: ServerFrame) {
        let now = {
            let mut s = self.lock();
            let Some(p) = participant_mut(&mut s, participant) else {
                return;
            };
            match p.key {
                Endpoint::Away(_) if p.held.len() < MAX_HELD_FRAMES => {
                    p.held.push(frame);
                    return;
                }
                Endpoint::Away(_) => {
                    p.overflowed = true;
                    return;
                }
                to => to,
            }
        };
        self.deliver(now, frame);
    }

    /// The topology a call of `count` participants should have, from `current`.
    fn topology_for(&self, current: Topology, count: usize) -> Topology {
        let mesh_max = self.config.mesh_max;
        if mesh_max == 0 || self.engine.is_none() {
            return if self.engine.is_some() {
                Topology::Sfu
            } else {
                Topology::Mesh
            };
        }
        match current {
            Topology::Mesh if count > mesh_max => Topology::Sfu,
            Topology::Sfu if count < mesh_max => Topology::Mesh,
            other => other,
        }
    }

    /// What `call.join` and `call.resume` are answered with.
    fn joined(
        &self,
        actor: &Actor,
        call_id: Uuid,
        participant: Uuid,
        topology: Topology,
        others: Vec<CallParticipantInfo>,
        max: u32,
    ) -> CallJoined {
        CallJoined {
            call_id,
            participant_id: participant,
            topology,
            ice_servers: self
                .core
                .turn
                .ice_config(actor.user_id, chrono::Utc::now())
                .ice_servers,
            participants: others,
            max_participants: max,
        }
    }

    /// The most participants of the room's call, checking that the actor
    /// may be in it (members only).
    async fn max_for(&self, actor: &Actor, room_id: Uuid) -> Result<u32, CoreError> {
        let admission = self.core.calls.admit(actor, room_id).await?;
        Ok(if self.engine.is_some() {
            admission.max_participants
        } else {
            // Without the media engine every call stays peer to peer.
            admission
                .max_participants
                .min(self.config.mesh_max.max(2) as u32)
        })
    }

    /// `call.join` from connection `participant` (registered in the hub as `key`).
    pub async fn join(
        self: &Arc<Self>,
        actor: &Actor,
        key: Endpoint,
        participant: Uuid,
        room_id: Uuid,
    ) -> Result<CallJoined, CoreError> {
        let max = self.max_for(actor, room_id).await?;
        if self.lock().rooms_of.contains_key(&participant) {
            return Err(CoreError::conflict(
                "already_in_call",
                "this connection is already in a call; leave it first",
            ));
        }
        let (call_id, _) = self.core.calls.start(room_id, actor.user_id).await?;

        let mut outbox = Outbox::new();
        let (joined, to_engine, count) = {
            let mut s = self.lock();
            let initial = self.topology_for(Topology::Mesh, 1);
            let call = s.by_room.entry(room_id).or_insert_with(|| LiveCall {
                call_id,
                topology: initial,
                epoch: 0,
                participants: BTreeMap::new(),
            });
            if call.participants.len() >= max as usize {
                return Err(CoreError::conflict(
                    "call_full",
                    format!("this call has its {max} participants"),
                ));
            }
            let call_id = call.call_id;
            let me = Participant::new(actor.user_id, key);
            let info = me.info(participant);
            let others: Vec<CallParticipantInfo> = call
                .participants
                .iter()
                .map(|(id, p)| p.info(*id))
                .collect();
            for p in call.participants.values() {
                outbox.push((
                    p.key,
                    ServerFrame::CallParticipantJoined {
                        call_id,
                        participant: info.clone(),
                    },
                ));
            }
            call.participants.insert(participant, me);
            let count = call.participants.len();
            let topology = self.topology_for(call.topology, count);
            let moved_to_sfu = topology == Topology::Sfu && call.topology != Topology::Sfu;
            if topology != call.topology {
                call.topology = topology;
                call.epoch += 1;
                for (id, p) in &call.participants {
                    if *id != participant {
                        outbox.push((p.key, ServerFrame::CallTopology { call_id, topology }));
                    }
                }
            }
            // On the SFU, everyone not yet in the engine goes in. On a move to
            // the SFU everyone starts afresh: connections the engine still
            // holds from the last time (a return within the grace period)
            // are let go first, as their clients closed them once the mesh
            // played, and clients open new ones on `call.topology`.
            let to_engine: Vec<(Uuid, bool, Vec<Source>)> = if topology == Topology::Sfu {
                call.participants
                    .iter_mut()
                    .filter(|(_, p)| moved_to_sfu || (!p.in_engine && !p.lost))
                    .map(|(id, p)| {
                        let renew = p.in_engine;
                        p.in_engine = true;
                        p.lost = false;
                        p.certificate = None;
                        (*id, renew, p.stopped.clone())
                    })
                    .collect()
            } else {
                Vec::new()
            };
            s.rooms_of.insert(participant, room_id);
            let joined = self.joined(actor, call_id, participant, topology, others, max);
            (joined, to_engine, count)
        };
        if let Some(engine) = &self.engine {
            let renew: Vec<Uuid> = to_engine
                .iter()
                .filter(|(_, renew, _)| *renew)
                .map(|(id, _, _)| *id)
                .collect();
            engine.leave_all(&renew);
            for (id, _, stopped) in to_engine {
                // What a moderator stopped in the mesh stays stopped here.
                if !stopped.is_empty() {
                    engine.stop_forwarding(id, &stopped, true);
                }
                if let Err(e) = engine.join(joined.call_id, id).await {
                    tracing::warn!(error = %e, participant = %id, "the media engine refused a participant");
                }
            }
        }
        self.send(outbox);
        if let Err(e) = self
            .core
            .calls
            .joined(
                room_id,
                joined.call_id,
                participant,
                actor.user_id,
                count as u32,
            )
            .await
        {
            tracing::warn!(error = %e, "recording a call joining failed");
        }
        Ok(joined)
    }

    /// A call request of connection `participant` (registered in the hub as
    /// `key`): handled here, or carried to the node that holds its call.
    pub async fn request(
        self: &Arc<Self>,
        actor: &Actor,
        key: ConnKey,
        participant: Uuid,
        request: CallRequest,
    ) -> Result<serde_json::Value, CoreError> {
        let Some(link) = self.link.clone() else {
            return self
                .handle(actor, Endpoint::Local(key), participant, request)
                .await;
        };
        if let Some(relayed) = link.relayed(participant) {
            if matches!(request, CallRequest::Resume { .. }) {
                return self
                    .resume_relayed(actor, key, participant, relayed, request)
                    .await;
            }
            let leaving = matches!(request, CallRequest::Leave { .. });
            let answer = link
                .request(relayed.holder, actor, participant, request)
                .await;
            if leaving && answer.is_ok() {
                link.forget(participant);
            }
            return answer;
        }
        let starting = match &request {
            CallRequest::Join { room_id } | CallRequest::Resume { room_id, .. } => Some(*room_id),
            _ => None,
        };
        if let Some(room_id) = starting {
            if let Some(holder) = self.holder_elsewhere(&link, room_id).await {
                // Set first: the holder's frames may arrive before its answer.
                link.set_relayed(
                    participant,
                    Relayed {
                        holder,
                        key,
                        call_id: None,
                        user_id: actor.user_id,
                    },
                );
                let answer = link.request(holder, actor, participant, request).await;
                match &answer {
                    Ok(joined) => {
                        let call_id = joined["call_id"].as_str().and_then(|c| c.parse().ok());
                        link.set_relayed(
                            participant,
                            Relayed {
                                holder,
                                key,
                                call_id,
                                user_id: actor.user_id,
                            },
                        );
                    }
                    Err(_) => {
                        link.forget(participant);
                    }
                }
                return answer;
            }
        }
        self.handle(actor, Endpoint::Local(key), participant, request)
            .await
    }

    /// `call.resume` of a participant this node relays already (its old
    /// socket here, not yet seen gone): the relay moves to the new socket
    /// first, as the holder sends what waited at once, and back where the
    /// holder refuses.
    async fn resume_relayed(
        &self,
        actor: &Actor,
        key: ConnKey,
        participant: Uuid,
        relayed: Relayed,
        request: CallRequest,
    ) -> Result<serde_json::Value, CoreError> {
        let Some(link) = &self.link else {
            return Err(CoreError::NotFound("call"));
        };
        if relayed.user_id != actor.user_id {
            return Err(CoreError::NotFound("call"));
        }
        link.set_relayed(participant, Relayed { key, ..relayed });
        let answer = link
            .request(relayed.holder, actor, participant, request)
            .await;
        if answer.is_err() {
            link.set_relayed(participant, relayed);
        }
        answer
    }

    /// The node holding the room's call, when it is another one. A call
    /// live here is held here; otherwise the lease says, and is taken when
    /// free. Without Redis every call is served where it is asked for.
    async fn holder_elsewhere(&self, link: &NodeLink, room_id: Uuid) -> Option<Uuid> {
        if self.lock().by_room.contains_key(&room_id) {
            return None;
        }
        let name = lease(room_id);
        let mut holder = link.cluster.claim(&name).await;
        if let Ok(h) = holder {
            if h != link.node() && matches!(link.cluster.alive(h).await, Ok(false)) {
                // Its node has stopped showing signs of life: the call starts again here.
                holder = link.cluster.take_over(&name, h).await;
            }
        }
        match holder {
            Ok(holder) => (holder != link.node()).then_some(holder),
            Err(e) => {
                tracing::warn!(error = %e, "no call lease from Redis; serving the call here");
                None
            }
        }
    }

    /// Runs a call request on this node, for a connection of its own or one
    /// of another node.
    async fn handle(
        self: &Arc<Self>,
        actor: &Actor,
        endpoint: Endpoint,
        me: Uuid,
        request: CallRequest,
    ) -> Result<serde_json::Value, CoreError> {
        match request {
            CallRequest::Join { room_id } => {
                let joined = self.join(actor, endpoint, me, room_id).await?;
                Ok(serde_json::to_value(joined).expect("protocol types serialise"))
            }
            CallRequest::Resume {
                room_id,
                call_id,
                participant_id,
            } => {
                if participant_id != me {
                    return Err(CoreError::NotFound("call"));
                }
                let joined = self.resume(actor, endpoint, me, room_id, call_id).await?;
                Ok(serde_json::to_value(joined).expect("protocol types serialise"))
            }
            CallRequest::Leave { call_id } => {
                if self.leave_checked(me, call_id).await {
                    Ok(json!({}))
                } else {
                    // Leaving a call one is not in is answered as not found.
                    Err(CoreError::NotFound("call"))
                }
            }
            CallRequest::Offer {
                call_id,
                to,
                sdp,
                sources,
            } => self
                .relay(
                    me,
                    call_id,
                    to,
                    ServerFrame::CallOfferRelayed {
                        call_id,
                        from: me,
                        sdp,
                        sources,
                    },
                )
                .map(|()| json!({})),
            CallRequest::Answer {
                call_id,
                to,
                sdp,
                sources,
            } => self
                .relay(
                    me,
                    call_id,
                    to,
                    ServerFrame::CallAnswerRelayed {
                        call_id,
                        from: me,
                        sdp,
                        sources,
                    },
                )
                .map(|()| json!({})),
            CallRequest::Ice {
                call_id,
                to,
                candidate,
            } => self
                .relay(
                    me,
                    call_id,
                    to,
                    ServerFrame::CallIceRelayed {
                        call_id,
                        from: me,
                        candidate,
                    },
                )
                .map(|()| json!({})),
            CallRequest::SfuOffer {
                call_id,
                sdp,
                sources,
            } => self
                .sfu_offer(me, call_id, sdp, sources)
                .await
                .map(|answer| json!({"type": "answer", "sdp": answer})),
            CallRequest::SfuAnswer { call_id, sdp } => {
                self.sfu_answer(me, call_id, sdp).await.map(|()| json!({}))
            }
            CallRequest::SfuIce { call_id, .. } => self.sfu_ice(me, call_id).map(|()| json!({})),
            CallRequest::SfuRestart { call_id } => {
                let engine = self.engine_for(me, call_id)?;
                engine
                    .restart_ice(me)
                    .await
                    .map_err(sdp_refused)
                    .map(|()| json!({}))
            }
            CallRequest::Mute {
                call_id,
                kind,
                muted,
            } => self.mute(me, call_id, kind, muted).map(|()| json!({})),
            CallRequest::Subscribe {
                call_id,
                participant_id,
                source,
                paused,
                max_width,
                max_height,
            } => {
                // A side left out is as large as it comes.
                let side = |v: Option<NonZeroU16>| v.map_or(u16::MAX, NonZeroU16::get);
                let max_size = (max_width.is_some() || max_height.is_some())
                    .then(|| (side(max_width), side(max_height)));
                let subscription = Subscription { paused, max_size };
                self.subscribe(me, call_id, participant_id, source, subscription)
                    .await
                    .map(|()| json!({}))
            }
            CallRequest::Share { call_id, sharing } => {
                self.share(me, call_id, sharing).map(|()| json!({}))
            }
            CallRequest::Moderate {
                call_id,
                participant_id,
                action,
            } => self
                .moderate(actor, me, call_id, participant_id, action)
                .await
                .map(|()| json!({})),
        }
    }

    /// A socket went away: its participant (its connection's, or the one
    /// it resumed) leaves its call, here or on the node holding it: at once
    /// where the client closed the socket, else after the reconnection
    /// grace unless a new socket resumes it (`call.resume`).
    pub async fn disconnect(self: &Arc<Self>, participant: Uuid, key: ConnKey, closed: bool) {
        let grace = !closed && !self.config.reconnect_grace.is_zero();
        if let Some(link) = &self.link {
            if let Some(relayed) = link.relayed(participant).filter(|r| r.key == key) {
                link.forget(participant);
                link.send(
                    relayed.holder,
                    &NodeMessage::Gone {
                        from: link.node(),
                        conn: participant,
                        grace,
                    },
                );
                return;
            }
        }
        self.gone_from(participant, Endpoint::Local(key), grace)
            .await;
    }

    /// A participant's socket at `from` went away: it leaves at once, or
    /// stays away for the grace. Nothing happens where another socket has
    /// resumed it meanwhile.
    async fn gone_from(self: &Arc<Self>, participant: Uuid, from: Endpoint, grace: bool) {
        let away = {
            let mut s = self.lock();
            let Some(p) = participant_mut(&mut s, participant) else {
                return;
            };
            if p.key != from {
                return;
            }
            grace.then(|| {
                p.key = Endpoint::Away(participant);
                p.away_count += 1;
                p.away_count
            })
        };
        let Some(count) = away else {
            self.leave(participant).await;
            return;
        };
        tracing::info!(%participant, "a participant's socket dropped; its place in the call waits for it");
        let calls = self.clone();
        let grace = self.config.reconnect_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let expired = {
                let mut s = calls.lock();
                participant_mut(&mut s, participant)
                    .is_some_and(|p| matches!(p.key, Endpoint::Away(_)) && p.away_count == count)
            };
            if expired {
                tracing::info!(%participant, "a participant did not come back within the grace");
                calls.leave(participant).await;
            }
        });
    }

    /// `call.resume`: a socket of the same user takes back a participant
    /// whose socket dropped (or which the server has not yet seen go), with
    /// its media connections, its mutes and its place; the frames kept
    /// meanwhile follow at once. Answered as `call.join`; `not_found` once
    /// the participant has left (the grace ran out, or too much waited).
    async fn resume(
        self: &Arc<Self>,
        actor: &Actor,
        endpoint: Endpoint,
        participant: Uuid,
        room_id: Uuid,
        call_id: Uuid,
    ) -> Result<CallJoined, CoreError> {
        let max = self.max_for(actor, room_id).await?;
        let joined = {
            let mut s = self.lock();
            let gone = || CoreError::NotFound("call");
            if s.rooms_of.get(&participant) != Some(&room_id) {
                return Err(gone());
            }
            let call = s
                .by_room
                .get_mut(&room_id)
                .filter(|c| c.call_id == call_id)
                .ok_or_else(gone)?;
            let topology = call.topology;
            let others = call
                .participants
                .iter()
                .filter(|(id, _)| **id != participant)
                .map(|(id, p)| p.info(*id))
                .collect();
            let p = call
                .participants
                .get_mut(&participant)
                .filter(|p| p.user_id == actor.user_id && !p.overflowed)
                .ok_or_else(gone)?;
            p.key = endpoint;
            p.away_count += 1;
            // What waited goes now, under the lock, ahead of anything newer.
            for frame in std::mem::take(&mut p.held) {
                self.deliver(endpoint, frame);
            }
            self.joined(actor, call_id, participant, topology, others, max)
        };
        tracing::info!(%participant, "a participant resumed its place in the call");
        Ok(joined)
    }

    /// `call.leave`, or the connection went away. Returns whether it was in a call.
    pub async fn leave(self: &Arc<Self>, participant: Uuid) -> bool {
        self.leave_as(participant, None).await
    }

    /// A participant leaves; `removed_by` names the moderator who removed it.
    async fn leave_as(self: &Arc<Self>, participant: Uuid, removed_by: Option<Uuid>) -> bool {
        let mut outbox = Outbox::new();
        let (room_id, call_id, was_in_engine, remaining, teardown) = {
            let mut s = self.lock();
            let Some(room_id) = s.rooms_of.remove(&participant) else {
                return false;
            };
            let Some(call) = s.by_room.get_mut(&room_id) else {
                return false;
            };
            let Some(me) = call.participants.remove(&participant) else {
                return false;
            };
            let call_id = call.call_id;
            for p in call.participants.values() {
                outbox.push((
                    p.key,
                    ServerFrame::CallParticipantLeft {
                        call_id,
                        participant_id: participant,
                        user_id: me.user_id,
                        removed_by,
                    },
                ));
            }
            let remaining = call.participants.len();
            let mut teardown = None;
            let topology = self.topology_for(call.topology, remaining);
            if remaining > 0 && topology != call.topology {
                call.topology = topology;
                call.epoch += 1;
                for p in call.participants.values() {
                    outbox.push((p.key, ServerFrame::CallTopology { call_id, topology }));
                }
                if topology == Topology::Mesh {
                    teardown = Some(call.epoch);
                }
            }
            if remaining == 0 {
                s.by_room.remove(&room_id);
            }
            (room_id, call_id, me.in_engine, remaining, teardown)
        };
        if remaining == 0 {
            if let Some(link) = &self.link {
                if let Err(e) = link.cluster.release(&lease(room_id)).await {
                    tracing::debug!(error = %e, "releasing a call's lease failed; it lapses");
                }
            }
        }
        if was_in_engine {
            if let Some(engine) = &self.engine {
                engine.leave(participant);
            }
        }
        self.send(outbox);
        if let Some(epoch) = teardown {
            let calls = self.clone();
            let grace = self.config.sfu_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                calls.leave_sfu(room_id, epoch);
            });
        }
        let recorded = async {
            self.core
                .calls
                .left(room_id, call_id, participant, remaining as u32)
                .await?;
            if remaining == 0 {
                self.core.calls.end(call_id).await?;
            }
            Ok::<_, CoreError>(())
        }
        .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "recording a call leaving failed");
        }
        true
    }

    /// `call.leave`: leaves if `call_id` is the participant's call.
    pub async fn leave_checked(self: &Arc<Self>, participant: Uuid, call_id: Uuid) -> bool {
        let in_it = {
            let s = self.lock();
            self.call_of(&s, participant, call_id).is_ok()
        };
        in_it && self.leave(participant).await
    }

    /// After a move back to mesh and its grace period: the engine lets go of
    /// the call, unless the call moved again meanwhile.
    fn leave_sfu(&self, room_id: Uuid, epoch: u64) {
        let ids: Vec<Uuid> = {
            let mut s = self.lock();
            let Some(call) = s.by_room.get_mut(&room_id) else {
                return;
            };
            if call.epoch != epoch || call.topology != Topology::Mesh {
                return;
            }
            call.participants
                .iter_mut()
                .filter(|(_, p)| p.in_engine)
                .map(|(id, p)| {
                    p.in_engine = false;
                    p.certificate = None;
                    *id
                })
                .collect()
        };
        if let Some(engine) = &self.engine {
            engine.leave_all(&ids);
        }
    }

    /// The call a participant is in, checked against the `call_id` it named.
    fn call_of(&self, s: &State, participant: Uuid, call_id: Uuid) -> Result<Uuid, CoreError> {
        let room = s
            .rooms_of
            .get(&participant)
            .ok_or(CoreError::NotFound("call"))?;
        match s.by_room.get(room) {
            Some(call) if call.call_id == call_id => Ok(*room),
            _ => Err(CoreError::NotFound("call")),
        }
    }

    /// Relays mesh signaling to another participant of the same call.
    pub fn relay(
        &self,
        from: Uuid,
        call_id: Uuid,
        to: Uuid,
        frame: ServerFrame,
    ) -> Result<(), CoreError> {
        let key = {
            let s = self.lock();
            let room = self.call_of(&s, from, call_id)?;
            let call = &s.by_room[&room];
            call.participants
                .get(&to)
                .filter(|_| to != from)
                .map(|p| p.key)
                .ok_or(CoreError::NotFound("participant"))?
        };
        self.deliver(key, frame);
        Ok(())
    }

    fn engine_for(&self, participant: Uuid, call_id: Uuid) -> Result<&Engine, CoreError> {
        let s = self.lock();
        let room = self.call_of(&s, participant, call_id)?;
        let in_engine = s.by_room[&room]
            .participants
            .get(&participant)
            .is_some_and(|p| p.in_engine);
        drop(s);
        match &self.engine {
            Some(engine) if in_engine => Ok(engine),
            _ => Err(CoreError::conflict(
                "not_on_sfu",
                "this call is peer to peer; use call.offer",
            )),
        }
    }

    /// `sfu.offer`: the engine answers the participant's sending connection.
    /// A participant of a call on the SFU whose connections the engine gave
    /// up on (silent too long) comes back in with new ones.
    pub async fn sfu_offer(
        &self,
        participant: Uuid,
        call_id: Uuid,
        sdp: String,
        sources: BTreeMap<String, TrackSource>,
    ) -> Result<String, CoreError> {
        let certificate = certificate_of(&sdp);
        self.back_in_engine(participant, call_id, certificate.as_deref())
            .await?;
        let engine = self.engine_for(participant, call_id)?;
        let sources = sources
            .into_iter()
            .map(|(mid, source)| (mid, source_to_media(source)))
            .collect();
        let answer = engine
            .publish_sources(participant, sdp, sources)
            .await
            .map_err(sdp_refused)?;
        if let Some(p) = participant_mut(&mut self.lock(), participant) {
            p.certificate = certificate;
        }
        Ok(answer)
    }

    /// Puts a participant of a call on the SFU back in the engine with new
    /// connections, and what moderators stopped of it: where the engine
    /// gave up on its connections, or where it offers from a new one (its
    /// `certificate` is another: the client made its connections anew, and
    /// the engine lets go of the old ones first). An offer of the connection
    /// the engine gave up on is refused `not_on_sfu`: the client makes new
    /// connections.
    async fn back_in_engine(
        &self,
        participant: Uuid,
        call_id: Uuid,
        certificate: Option<&str>,
    ) -> Result<(), CoreError> {
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let stopped = {
            let mut s = self.lock();
            let room = self.call_of(&s, participant, call_id)?;
            let call = s.by_room.get_mut(&room).expect("checked by call_of");
            if call.topology != Topology::Sfu {
                return Ok(());
            }
            let anew = |p: &Participant| {
                p.in_engine && p.certificate.is_some() && p.certificate.as_deref() != certificate
            };
            match call.participants.get_mut(&participant) {
                Some(p) if anew(p) => {
                    tracing::info!(%participant, "a participant's new connections replace its old ones");
                    engine.leave(participant);
                    p.stopped.clone()
                }
                Some(p) if !p.in_engine => {
                    if p.lost && p.certificate.is_some() && p.certificate.as_deref() == certificate
                    {
                        return Err(CoreError::conflict(
                            "not_on_sfu",
                            "the server gave up on this connection; make new ones",
                        ));
                    }
                    p.in_engine = true;
                    p.lost = false;
                    p.stopped.clone()
                }
                _ => return Ok(()),
            }
        };
        tracing::info!(%participant, "a participant comes back to the media engine with new connections");
        if !stopped.is_empty() {
            engine.stop_forwarding(participant, &stopped, true);
        }
        if let Err(e) = engine.join(call_id, participant).await {
            if let Some(p) = participant_mut(&mut self.lock(), participant) {
                p.in_engine = false;
            }
            return Err(sdp_refused(e));
        }
        Ok(())
    }

    /// `sfu.answer`: the participant's answer to the engine's offer.
    pub async fn sfu_answer(
        &self,
        participant: Uuid,
        call_id: Uuid,
        sdp: String,
    ) -> Result<(), CoreError> {
        let engine = self.engine_for(participant, call_id)?;
        engine
            .subscriber_answer(participant, sdp)
            .await
            .map_err(sdp_refused)
    }

    /// `sfu.ice`: checked, then nothing to do (the engine is ICE-lite).
    pub fn sfu_ice(&self, participant: Uuid, call_id: Uuid) -> Result<(), CoreError> {
        self.engine_for(participant, call_id).map(|_| ())
    }

    /// `call.subscribe`: what the participant receives of another's track
    /// on the SFU (paused, and the size it draws it at). The other must be
    /// in the call.
    pub async fn subscribe(
        &self,
        participant: Uuid,
        call_id: Uuid,
        publisher: Uuid,
        source: TrackSource,
        subscription: Subscription,
    ) -> Result<(), CoreError> {
        let engine = self.engine_for(participant, call_id)?;
        let known = {
            let s = self.lock();
            let room = self.call_of(&s, participant, call_id)?;
            s.by_room[&room].participants.contains_key(&publisher)
        };
        if !known || publisher == participant {
            return Err(CoreError::NotFound("participant"));
        }
        engine
            .set_subscription(
                participant,
                publisher,
                source_to_media(source),
                subscription,
            )
            .await
            .map_err(sdp_refused)
    }

    /// `call.mute`: the others hear of it. Unmuting what a moderator muted
    /// lets the SFU forward it again, unless the room locks that
    /// (`unmute_locked`).
    pub fn mute(
        &self,
        participant: Uuid,
        call_id: Uuid,
        kind: MediaKind,
        muted: bool,
    ) -> Result<(), CoreError> {
        let (outbox, go_on) = {
            let mut s = self.lock();
            let room = self.call_of(&s, participant, call_id)?;
            let call = s.by_room.get_mut(&room).expect("checked by call_of");
            let mut go_on = false;
            if let Some(me) = call.participants.get_mut(&participant) {
                let (now_muted, locked) = match kind {
                    MediaKind::Audio => (&mut me.audio_muted, me.audio_locked),
                    MediaKind::Video => (&mut me.video_muted, me.video_locked),
                };
                if !muted && locked {
                    return Err(CoreError::conflict(
                        "unmute_locked",
                        "a moderator muted this; the room lets you unmute once a moderator allows it",
                    ));
                }
                *now_muted = muted;
                // The engine holds what was stopped only while it has the participant.
                go_on = !muted && me.go_on(sources_of(kind)) && me.in_engine;
            }
            let frame = ServerFrame::CallMuted {
                call_id,
                participant_id: participant,
                kind,
                muted,
                by: None,
                locked: None,
            };
            (to_others(call, participant, &frame), go_on)
        };
        if go_on {
            if let Some(engine) = &self.engine {
                engine.stop_forwarding(participant, sources_of(kind), false);
            }
        }
        self.send(outbox);
        Ok(())
    }

    /// `call.share`: the others hear that the participant started or
    /// stopped sharing its screen. A share started after a moderator
    /// stopped one is forwarded.
    pub fn share(&self, participant: Uuid, call_id: Uuid, sharing: bool) -> Result<(), CoreError> {
        let (outbox, go_on) = {
            let mut s = self.lock();
            let room = self.call_of(&s, participant, call_id)?;
            let call = s.by_room.get_mut(&room).expect("checked by call_of");
            let mut go_on = false;
            if let Some(me) = call.participants.get_mut(&participant) {
                me.screen_sharing = sharing;
                go_on = sharing && me.go_on(SCREEN) && me.in_engine;
            }
            let frame = ServerFrame::CallShared {
                call_id,
                participant_id: participant,
                sharing,
                by: None,
            };
            (to_others(call, participant, &frame), go_on)
        };
        if go_on {
            if let Some(engine) = &self.engine {
                engine.stop_forwarding(participant, SCREEN, false);
            }
        }
        self.send(outbox);
        Ok(())
    }

    /// `call.moderate`: a moderator (checked by the core against the room)
    /// mutes another participant, lets it unmute itself, stops its screen
    /// share or removes it. What is muted or stopped, the SFU stops
    /// forwarding at once; everyone hears of it, the target too.
    pub async fn moderate(
        self: &Arc<Self>,
        actor: &Actor,
        me: Uuid,
        call_id: Uuid,
        target: Uuid,
        action: ModerationAction,
    ) -> Result<(), CoreError> {
        let (room_id, target_user) = {
            let s = self.lock();
            let room = self.call_of(&s, me, call_id)?;
            let user = s.by_room[&room]
                .participants
                .get(&target)
                .filter(|_| target != me)
                .map(|p| p.user_id)
                .ok_or(CoreError::NotFound("participant"))?;
            (room, user)
        };
        let moderation = self
            .core
            .calls
            .moderate(actor, room_id, target_user)
            .await?;
        let by = Some(actor.user_id);
        let mut stop: &[Source] = &[];
        let in_engine;
        let outbox = {
            let mut s = self.lock();
            let Some(call) = s.by_room.get_mut(&room_id).filter(|c| c.call_id == call_id) else {
                return Err(CoreError::NotFound("call"));
            };
            let Some(p) = call.participants.get_mut(&target) else {
                return Err(CoreError::NotFound("participant"));
            };
            in_engine = p.in_engine;
            let frame = match action {
                ModerationAction::MuteAudio | ModerationAction::MuteVideo => {
                    let kind = if action == ModerationAction::MuteAudio {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let locked = !moderation.self_unmute;
                    match kind {
                        MediaKind::Audio => (p.audio_muted, p.audio_locked) = (true, locked),
                        MediaKind::Video => (p.video_muted, p.video_locked) = (true, locked),
                    }
                    stop = sources_of(kind);
                    for source in stop {
                        if !p.stopped.contains(source) {
                            p.stopped.push(*source);
                        }
                    }
                    Some(ServerFrame::CallMuted {
                        call_id,
                        participant_id: target,
                        kind,
                        muted: true,
                        by,
                        locked: Some(locked),
                    })
                }
                ModerationAction::AllowAudio | ModerationAction::AllowVideo => {
                    let (kind, muted) = if action == ModerationAction::AllowAudio {
                        p.audio_locked = false;
                        (MediaKind::Audio, p.audio_muted)
                    } else {
                        p.video_locked = false;
                        (MediaKind::Video, p.video_muted)
                    };
                    Some(ServerFrame::CallMuted {
                        call_id,
                        participant_id: target,
                        kind,
                        muted,
                        by,
                        locked: Some(false),
                    })
                }
                ModerationAction::StopScreen => {
                    p.screen_sharing = false;
                    stop = SCREEN;
                    for source in stop {
                        if !p.stopped.contains(source) {
                            p.stopped.push(*source);
                        }
                    }
                    Some(ServerFrame::CallShared {
                        call_id,
                        participant_id: target,
                        sharing: false,
                        by,
                    })
                }
                ModerationAction::Remove => None,
            };
            match frame {
                Some(frame) => call
                    .participants
                    .values()
                    .map(|p| (p.key, frame.clone()))
                    .collect(),
                None => vec![(
                    p.key,
                    ServerFrame::CallRemoved {
                        call_id,
                        by: actor.user_id,
                    },
                )],
            }
        };
        // The engine learns it now where it has the participant, else
        // when it takes it in (`stopped` goes with it).
        if !stop.is_empty() && in_engine {
            if let Some(engine) = &self.engine {
                engine.stop_forwarding(target, stop, true);
            }
        }
        tracing::info!(%call_id, moderator = %actor.user_id, %target, ?action, "a moderator acted in a call");
        self.send(outbox);
        if action == ModerationAction::Remove {
            self.leave_as(target, Some(actor.user_id)).await;
        }
        Ok(())
    }

    /// Where a participant of a live call on this node is reached, and its call.
    fn locate(&self, participant: Uuid) -> Option<(Endpoint, Uuid)> {
        let s = self.lock();
        let call = s.by_room.get(s.rooms_of.get(&participant)?)?;
        Some((call.participants.get(&participant)?.key, call.call_id))
    }

    fn on_engine_event(&self, event: EngineEvent) {
        match event {
            EngineEvent::SubscriberOffer {
                participant,
                sdp,
                tracks,
            } => {
                if let Some((key, call_id)) = self.locate(participant) {
                    let tracks = tracks
                        .into_iter()
                        .map(|t| SfuTrack {
                            mid: t.mid,
                            participant_id: t.publisher,
                            kind: kind_from_media(t.kind),
                            source: source_from_media(t.source),
                        })
                        .collect();
                    self.deliver(
                        key,
                        ServerFrame::SfuOfferFromServer {
                            call_id,
                            sdp,
                            tracks,
                        },
                    );
                }
            }
            EngineEvent::Receiving {
                call,
                subscriber,
                publisher,
                kind,
                source,
            } => {
                // The publisher hears of it: it may now close its peer
                // connection with the subscriber, if one is left from the mesh.
                let target = self.locate(publisher).filter(|(_, c)| *c == call);
                if let Some((key, _)) = target {
                    self.deliver(
                        key,
                        ServerFrame::SfuReceiving {
                            call_id: call,
                            participant_id: subscriber,
                            kind: kind_from_media(kind),
                            source: source_from_media(source),
                        },
                    );
                }
            }
            EngineEvent::Layers {
                call,
                publisher,
                mid,
                active,
            } => {
                let target = self.locate(publisher).filter(|(_, c)| *c == call);
                if let Some((key, _)) = target {
                    self.deliver(
                        key,
                        ServerFrame::SfuLayers {
                            call_id: call,
                            mid,
                            active,
                        },
                    );
                }
            }
            EngineEvent::BandwidthHeld {
                call,
                subscriber,
                publisher,
                source,
                held,
            } => {
                let target = self.locate(subscriber).filter(|(_, c)| *c == call);
                if let Some((key, _)) = target {
                    self.deliver(
                        key,
                        ServerFrame::SfuHeld {
                            call_id: call,
                            participant_id: publisher,
                            source: source_from_media(source),
                            held,
                            reason: "bandwidth".into(),
                        },
                    );
                }
            }
            EngineEvent::Disconnected { participant } => {
                tracing::info!(%participant, "a participant's media connection to the server failed");
                let mut s = self.lock();
                if let Some(room) = s.rooms_of.get(&participant).copied() {
                    if let Some(p) = s
                        .by_room
                        .get_mut(&room)
                        .and_then(|c| c.participants.get_mut(&participant))
                    {
                        p.in_engine = false;
                        p.lost = true;
                    }
                }
            }
            EngineEvent::Speaking { call, speakers } => {
                let keys: Vec<Endpoint> = {
                    let s = self.lock();
                    s.by_room
                        .values()
                        .find(|c| c.call_id == call)
                        .map(|c| c.participants.values().map(|p| p.key).collect())
                        .unwrap_or_default()
                };
                let frame = ServerFrame::CallSpeaking {
                    call_id: call,
                    speakers: speakers
                        .into_iter()
                        .map(|(participant_id, level)| Speaker {
                            participant_id,
                            level,
                        })
                        .collect(),
                };
                for key in keys {
                    self.deliver(key, frame.clone());
                }
            }
        }
    }

    /// Whether a participant is in a call, held here or relayed to another node.
    pub fn in_call(&self, participant: Uuid) -> bool {
        self.lock().rooms_of.contains_key(&participant)
            || self
                .link
                .as_ref()
                .is_some_and(|l| l.relayed(participant).is_some())
    }

    /// Participants in calls on this node.
    pub fn participants(&self) -> usize {
        self.lock().rooms_of.len()
    }
}

/// What the cross-node code asks of this node's calls.
impl LocalCalls for CallHub {
    fn link(&self) -> Option<&Arc<NodeLink>> {
        self.link.as_ref()
    }

    async fn handle_remote(
        self: &Arc<Self>,
        actor: &Actor,
        node: Uuid,
        conn: Uuid,
        request: CallRequest,
    ) -> Result<serde_json::Value, CoreError> {
        self.handle(actor, Endpoint::Remote { node, conn }, conn, request)
            .await
    }

    async fn remove(self: &Arc<Self>, participant: Uuid) {
        self.leave(participant).await;
    }

    async fn gone(self: &Arc<Self>, participant: Uuid, node: Uuid, grace: bool) {
        let from = Endpoint::Remote {
            node,
            conn: participant,
        };
        self.gone_from(participant, from, grace).await;
    }

    fn held(&self) -> Held {
        let s = self.lock();
        Held {
            rooms: s.by_room.keys().copied().collect(),
            remote: s
                .by_room
                .values()
                .flat_map(|c| c.participants.iter())
                .filter_map(|(id, p)| match p.key {
                    Endpoint::Remote { node, .. } => Some((node, *id)),
                    Endpoint::Local(_) | Endpoint::Away(_) => None,
                })
                .collect(),
        }
    }

    async fn end(&self, call_id: Uuid) -> Result<(), CoreError> {
        self.core.calls.end(call_id).await
    }
}

/// What a client hears when the media engine refuses its `sfu.offer` or
/// `sfu.answer`: `validation_failed` for a session description it cannot use;
/// `sdp_mismatch` for an answer that belongs to another offer or another
/// connection (the client answered with the wrong peer connection);
/// `media_conflict` or `not_negotiated` for a clash with the state of the
/// participant's media connections; `not_found` when the engine no longer
/// has the participant or its connection; `unavailable` when the engine has
/// stopped (the node is going down). The WebRTC stack, the socket and the
/// configuration failing are the server's fault: `internal`, with the detail
/// logged and never sent.
fn sdp_refused(e: MediaError) -> CoreError {
    match e {
        MediaError::Sdp(_) => CoreError::validation("sdp", e.to_string()),
        MediaError::Mismatch(_) => CoreError::conflict("sdp_mismatch", e.to_string()),
        MediaError::Conflict(_) => CoreError::conflict("media_conflict", e.to_string()),
        MediaError::NotNegotiated => CoreError::conflict("not_negotiated", e.to_string()),
        MediaError::NotFound(what) => CoreError::NotFound(what),
        MediaError::Stopped => CoreError::Unavailable(e.to_string().into()),
        MediaError::Stack(_) | MediaError::Config(_) | MediaError::Io(_) => {
            CoreError::Internal(e.to_string().into())
        }
    }
}

fn kind_from_media(kind: Kind) -> MediaKind {
    match kind {
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
    }
}

fn source_from_media(source: Source) -> TrackSource {
    match source {
        Source::Microphone => TrackSource::Microphone,
        Source::Camera => TrackSource::Camera,
        Source::Screen => TrackSource::Screen,
        Source::ScreenAudio => TrackSource::ScreenAudio,
    }
}

fn source_to_media(source: TrackSource) -> Source {
    match source {
        TrackSource::Microphone => Source::Microphone,
        TrackSource::Camera => Source::Camera,
        TrackSource::Screen => Source::Screen,
        TrackSource::ScreenAudio => Source::ScreenAudio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_another_connection_is_refused_with_its_own_code() {
        let e = sdp_refused(MediaError::Mismatch("fingerprint".into()));
        assert_eq!(e.code(), "sdp_mismatch");
        assert!(e.to_string().contains("fingerprint"), "{e}");
        let e = sdp_refused(MediaError::Sdp("unparseable".into()));
        assert_eq!(e.code(), "validation_failed");
    }

    #[test]
    fn each_refusal_of_the_media_engine_has_the_code_a_client_can_act_on() {
        let io = std::io::Error::other("no buffer space");
        let cases = [
            (MediaError::Sdp("unparseable".into()), "validation_failed"),
            (MediaError::Mismatch("fingerprint".into()), "sdp_mismatch"),
            (
                MediaError::Conflict("an offer is already out".into()),
                "media_conflict",
            ),
            (MediaError::NotNegotiated, "not_negotiated"),
            (MediaError::NotFound("participant"), "not_found"),
            (MediaError::Stopped, "unavailable"),
            (MediaError::Stack("dtls".into()), "internal"),
            (MediaError::Config("no port".into()), "internal"),
            (MediaError::Io(io), "internal"),
        ];
        for (media, code) in cases {
            let shown = media.to_string();
            let e = sdp_refused(media);
            assert_eq!(e.code(), code, "{shown}");
            if code == "internal" {
                assert_eq!(
                    e.public_message(),
                    "something went wrong on the server",
                    "the detail of {shown} stays on the server"
                );
            } else {
                assert_eq!(e.public_message(), e.to_string(), "{shown}");
            }
        }
    }
}
