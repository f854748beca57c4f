//! One media loop: the peers of the calls placed on it, and forwarding
//! between them. Everything here runs on the loop's own task; the receive
//! loop hands it datagrams already routed to one of its peers, and it sends
//! on the shared socket itself.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::events::{EngineEvent, EngineStats, OfferedTrack, Source};
use crate::forwarder::DownTrack;
use crate::keyframe::starts_keyframe;
use crate::peer::{Codec, Flow, Kind, Mode, Peer, PeerEvent, PeerSetup, Rtp, SenderId, TrackId};
use crate::placement::SharedPlacement;
use crate::MediaError;

/// How often the speakers of each call are looked at.
const SPEAKING_EVERY: Duration = Duration::from_millis(250);
/// Loudness (127 minus the RFC 6464 level in -dBov) from which someone speaks: -60 dBov.
const SPEAKING_LOUDNESS: u8 = 67;
/// How long a level counts after it arrived.
const LEVEL_FRESH: Duration = Duration::from_millis(500);
/// The least time between two keyframe requests to one publisher that a
/// new subscriber's request may not be merged into: encoders ignore requests
/// that come too soon after the last (Chromium's allows one per 300 ms), so
/// a request that would come sooner is held until this has passed.
const KEYFRAME_SPACING: Duration = Duration::from_millis(350);

/// What the engine's handle asks of a loop.
pub(crate) enum Command {
    Join {
        call: Uuid,
        participant: Uuid,
        /// Names this placement, so that leaving on its own (a failed
        /// connection) never forgets a newer one.
        placement: u64,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Publish {
        participant: Uuid,
        offer: String,
        sources: Vec<(String, Source)>,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    SubscriberAnswer {
        participant: Uuid,
        answer: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Leave {
        participants: Vec<Uuid>,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
}

/// A datagram routed to one of the loop's peers.
pub(crate) struct Inbound {
    pub key: PeerKey,
    pub from: SocketAddr,
    pub datagram: BytesMut,
}

/// Tells the receive loop which peers a loop owns, by their ICE ufrag.
pub(crate) enum RouteUpdate {
    Add {
        ufrag: String,
        at: usize,
        key: PeerKey,
    },
    Remove {
        ufrag: String,
        at: usize,
        key: PeerKey,
    },
}

/// A peer, unique within its loop.
pub(crate) type PeerKey = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Subscriber,
}

struct PeerSlot {
    peer: Peer,
    ufrag: String,
    participant: Uuid,
    role: Role,
    /// DTLS and SRTP are up: what is sent now can be played.
    connected: bool,
}

struct Participant {
    call: Uuid,
    /// The handle's placement of this participant.
    placement: u64,
    publisher: Option<PeerKey>,
    subscriber: PeerKey,
    /// The subscriber connection changed while an offer was out: offer again.
    renegotiate: bool,
    /// What this participant receives, by the published track it comes from.
    down: HashMap<TrackKey, Down>,
    /// What its published tracks carry, by their track id (the second part
    /// of the offer's `a=msid`), where it said, until the track opens.
    sources: HashMap<String, Source>,
}

struct Down {
    sender: SenderId,
    track: DownTrack,
    mime_type: String,
    /// The track id it is offered under (`a=msid`).
    name: String,
    /// Whether the subscriber was told it can play this track.
    playing: bool,
}

/// A published track: its publisher and `rtc`'s id for it.
type TrackKey = (Uuid, TrackId);

struct Published {
    kind: Kind,
    source: Source,
    codec: Codec,
    subscribers: Vec<Uuid>,
    last_keyframe_request: Option<Instant>,
    /// A new subscriber's keyframe request held back until
    /// [`KEYFRAME_SPACING`] after the last one.
    keyframe_due: Option<Instant>,
    /// Smoothed loudness of an audio track, and when a level last came.
    loudness: u8,
    level_at: Option<Instant>,
}

impl Published {
    /// Takes a level (RFC 6464, -dBov): rises at once, falls gently, so the
    /// pauses between words do not end a turn.
    fn observe_level(&mut self, level: u8, now: Instant) {
        let loud = 127 - level.min(127);
        self.loudness = if loud >= self.loudness {
            loud
        } else {
            self.loudness - (self.loudness - loud).div_ceil(16)
        };
        self.level_at = Some(now);
    }

    fn speaking(&self, now: Instant) -> Option<u8> {
        let fresh = self
            .level_at
            .is_some_and(|at| now.duration_since(at) < LEVEL_FRESH);
        (fresh && self.loudness >= SPEAKING_LOUDNESS).then_some(self.loudness)
    }
}

/// The state of one media loop.
pub(crate) struct Sfu {
    /// Which loop this is, in route updates.
    index: usize,
    local: SocketAddr,
    advertised: Vec<SocketAddr>,
    keyframe_interval: Duration,
    ice_timeouts: (Duration, Duration),
    retransmit_history: u16,
    retransmit_limits: crate::RetransmitLimits,
    peers: HashMap<PeerKey, PeerSlot>,
    next_peer: PeerKey,
    participants: HashMap<Uuid, Participant>,
    calls: HashMap<Uuid, HashSet<Uuid>>,
    tracks: HashMap<TrackKey, Published>,
    /// Datagrams to send, filled while handling input, emptied by the loop.
    outbox: Vec<(SocketAddr, BytesMut)>,
    events: mpsc::UnboundedSender<EngineEvent>,
    routes: mpsc::UnboundedSender<RouteUpdate>,
    placement: SharedPlacement,
    stats: EngineStats,
    /// The speakers last announced, per call.
    speakers: HashMap<Uuid, Vec<Uuid>>,
    /// The time of the latest input: the loop reads no clock of its own.
    now: Instant,
    /// When speakers are next looked at (every [`SPEAKING_EVERY`]).
    next_speaking: Instant,
}

/// Datagrams taken from the queue at once, between two flushes of the outbox.
const BATCH: usize = 64;

/// A media loop: commands from the handle, datagrams from the receive loop
/// and the loop's timers (the peers', keyframe requests held back, the
/// speakers' tick), until the handle is dropped.
pub(crate) async fn run(
    socket: Arc<UdpSocket>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut sfu: Sfu,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        crate::udp::send_all(&socket, &mut sfu.outbox).await;
        let deadline = sfu.next_timeout();
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => sfu.command(c, Instant::now()),
                None => break,
            },
            n = inbound.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                // One reading of the clock for the batch.
                let now = Instant::now();
                for Inbound { key, from, datagram } in batch.drain(..) {
                    sfu.datagram(now, key, datagram, from);
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => sfu.timeouts(Instant::now()),
        }
    }
    for key in sfu.peers.keys().copied().collect::<Vec<_>>() {
        sfu.drop_peer(key);
    }
    crate::udp::send_all(&socket, &mut sfu.outbox).await;
}

impl Sfu {
    pub(crate) fn new(
        index: usize,
        advertised: Vec<SocketAddr>,
        config: &EngineConfig,
        events: mpsc::UnboundedSender<EngineEvent>,
        routes: mpsc::UnboundedSender<RouteUpdate>,
        placement: SharedPlacement,
        now: Instant,
    ) -> Sfu {
        Sfu {
            index,
            // The address peers see as ours: the first advertised one.
            local: advertised[0],
            advertised,
            keyframe_interval: config.keyframe_interval,
            ice_timeouts: (config.peer_disconnected, config.peer_failed),
            retransmit_history: config.retransmit_history,
            retransmit_limits: config.retransmit_limits,
            peers: HashMap::new(),
            next_peer: 0,
            participants: HashMap::new(),
            calls: HashMap::new(),
            tracks: HashMap::new(),
            outbox: Vec::new(),
            events,
            routes,
            placement,
            stats: EngineStats::default(),
            speakers: HashMap::new(),
            now,
            next_speaking: now,
        }
    }

    /// Moves the loop's time to `now`; time never runs back, so a caller
    /// may pass an instant a little older than the last.
    fn at(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    pub(crate) fn take_outbox(&mut self) -> Vec<(SocketAddr, BytesMut)> {
        std::mem::take(&mut self.outbox)
    }

    /// Forgets what waits to be sent; returns how many datagrams it was.
    pub(crate) fn drop_outbox(&mut self) -> usize {
        let n = self.outbox.len();
        self.outbox.clear();
        n
    }

    pub(crate) fn participants(&self) -> usize {
        self.participants.len()
    }

    pub(crate) fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.participants = self.participants.len();
        stats.peers = self.peers.len();
        stats.tracks = self.tracks.len();
        stats
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Join {
                call,
                participant,
                placement,
                reply,
            } => {
                let _ = reply.send(self.join(now, call, participant, placement));
            }
            Command::Publish {
                participant,
                offer,
                sources,
                reply,
            } => {
                let _ = reply.send(self.publish_sources(now, participant, offer, &sources));
            }
            Command::SubscriberAnswer {
                participant,
                answer,
                reply,
            } => {
                let _ = reply.send(self.subscriber_answer(now, participant, answer));
            }
            Command::Leave { participants } => {
                self.at(now);
                self.leave_all(&participants)
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn new_peer(&mut self, participant: Uuid, role: Role) -> Result<PeerKey, MediaError> {
        let mut rng = rand::thread_rng();
        let ufrag: String = (0..16)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect();
        let pwd: String = (0..32)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect();
        let setup = PeerSetup {
            mode: Mode::Server,
            flow: match role {
                Role::Publisher => Flow::Receives,
                Role::Subscriber => Flow::Sends,
            },
            ufrag: ufrag.clone(),
            pwd,
            local: self.local,
            advertised: self.advertised.clone(),
            ice_timeouts: self.ice_timeouts,
            retransmit_history: self.retransmit_history,
            retransmit_limits: self.retransmit_limits,
        };
        let peer = Peer::new(&setup, self.now)?;
        let key = self.next_peer;
        self.next_peer += 1;
        let _ = self.routes.send(RouteUpdate::Add {
            ufrag: ufrag.clone(),
            at: self.index,
            key,
        });
        self.peers.insert(
            key,
            PeerSlot {
                peer,
                ufrag,
                participant,
                role,
                connected: false,
            },
        );
        Ok(key)
    }

    pub(crate) fn join(
        &mut self,
        now: Instant,
        call: Uuid,
        participant: Uuid,
        placement: u64,
    ) -> Result<(), MediaError> {
        self.at(now);
        if self.participants.contains_key(&participant) {
            return Err(MediaError::Conflict("already in a call".into()));
        }
        let subscriber = self.new_peer(participant, Role::Subscriber)?;
        self.participants.insert(
            participant,
            Participant {
                call,
                placement,
                publisher: None,
                subscriber,
                renegotiate: false,
                down: HashMap::new(),
                sources: HashMap::new(),
            },
        );
        self.calls.entry(call).or_default().insert(participant);
        let existing: Vec<TrackKey> = self
            .tracks
            .keys()
            .filter(|(publisher, _)| {
                self.participants
                    .get(publisher)
                    .is_some_and(|p| p.call == call)
            })
            .cloned()
            .collect();
        for key in existing {
            self.subscribe(participant, &key);
        }
        self.offer_if_needed(participant);
        Ok(())
    }

    pub(crate) fn publish(
        &mut self,
        now: Instant,
        participant: Uuid,
        offer: String,
    ) -> Result<String, MediaError> {
        self.publish_sources(now, participant, offer, &[])
    }

    /// Answers a publisher's offer; `sources` names what some of its
    /// sections (by mid) carry.
    pub(crate) fn publish_sources(
        &mut self,
        now: Instant,
        participant: Uuid,
        offer: String,
        sources: &[(String, Source)],
    ) -> Result<String, MediaError> {
        let now = self.at(now);
        let Some(p) = self.participants.get_mut(&participant) else {
            return Err(MediaError::NotFound("participant"));
        };
        if !sources.is_empty() {
            for (mid, track) in msid_tracks(&offer) {
                if let Some((_, source)) = sources.iter().find(|(m, _)| *m == mid) {
                    p.sources.insert(track, *source);
                }
            }
        }
        let key = match p.publisher {
            Some(key) => key,
            None => {
                let key = self.new_peer(participant, Role::Publisher)?;
                if let Some(p) = self.participants.get_mut(&participant) {
                    p.publisher = Some(key);
                }
                key
            }
        };
        let slot = self
            .peers
            .get_mut(&key)
            .ok_or(MediaError::NotFound("peer"))?;
        let answer = slot.peer.answer(offer, now)?;
        self.pump(key);
        Ok(answer)
    }

    pub(crate) fn subscriber_answer(
        &mut self,
        now: Instant,
        participant: Uuid,
        answer: String,
    ) -> Result<(), MediaError> {
        let now = self.at(now);
        let Some(p) = self.participants.get(&participant) else {
            return Err(MediaError::NotFound("participant"));
        };
        let key = p.subscriber;
        let slot = self
            .peers
            .get_mut(&key)
            .ok_or(MediaError::NotFound("peer"))?;
        slot.peer.accept_answer(answer, now)?;
        let connected = slot.connected;
        self.pump(key);
        // New subscriptions start with a keyframe; on a new connection, once
        // it is up (a keyframe sent before would be lost).
        if connected {
            self.keyframes_for(participant);
        }
        self.offer_if_needed(participant);
        Ok(())
    }

    fn leave(&mut self, participant: Uuid) {
        self.leave_all(&[participant]);
    }

    /// Removes participants and their tracks. All of them go before anyone
    /// is offered the change, so none of them is sent an offer for a
    /// connection that is about to close.
    fn leave_all(&mut self, participants: &[Uuid]) {
        let gone: Vec<(Uuid, Participant)> = participants
            .iter()
            .filter_map(|id| self.participants.remove(id).map(|p| (*id, p)))
            .collect();
        for (participant, p) in gone {
            self.placement
                .lock()
                .remove_placed(participant, p.placement);
            if let Some(members) = self.calls.get_mut(&p.call) {
                members.remove(&participant);
                if members.is_empty() {
                    self.calls.remove(&p.call);
                }
            }
            for key in [Some(p.subscriber), p.publisher].into_iter().flatten() {
                self.drop_peer(key);
            }
            // Its tracks leave every subscriber.
            let published: Vec<TrackKey> = self
                .tracks
                .keys()
                .filter(|(publisher, _)| *publisher == participant)
                .cloned()
                .collect();
            for key in published {
                self.unpublish(&key);
            }
            // And it leaves the subscriber lists of others' tracks.
            for track in self.tracks.values_mut() {
                track.subscribers.retain(|s| *s != participant);
            }
        }
    }

    fn drop_peer(&mut self, key: PeerKey) {
        if let Some(mut slot) = self.peers.remove(&key) {
            slot.peer.close();
            while let Some((to, d)) = slot.peer.poll_transmit() {
                self.outbox.push((to, d));
            }
            let _ = self.routes.send(RouteUpdate::Remove {
                ufrag: slot.ufrag,
                at: self.index,
                key,
            });
        }
    }

    fn unpublish(&mut self, key: &TrackKey) {
        let Some(track) = self.tracks.remove(key) else {
            return;
        };
        for subscriber in track.subscribers {
            let Some(p) = self.participants.get_mut(&subscriber) else {
                continue;
            };
            let Some(down) = p.down.remove(key) else {
                continue;
            };
            let sub = p.subscriber;
            if let Some(slot) = self.peers.get_mut(&sub) {
                let _ = slot.peer.remove_sender(down.sender);
            }
            self.offer_if_needed(subscriber);
        }
    }

    /// Adds a sender for a published track to a participant's subscriber
    /// connection (offered with the next offer).
    fn subscribe(&mut self, participant: Uuid, key: &TrackKey) {
        let Some(track) = self.tracks.get_mut(key) else {
            return;
        };
        let Some(p) = self.participants.get_mut(&participant) else {
            return;
        };
        if p.down.contains_key(key) || key.0 == participant {
            return;
        }
        let Some(slot) = self.peers.get_mut(&p.subscriber) else {
            return;
        };
        let ssrc: u32 = rand::thread_rng().gen();
        // Video is resent on its own stream where the subscriber negotiates RTX.
        let rtx = (track.kind == Kind::Video).then(|| rand::thread_rng().gen());
        let stream = key.0.simple().to_string();
        let name = format!("{stream}-{}", key.1);
        match slot
            .peer
            .add_sender(track.kind, &track.codec, ssrc, rtx, &stream, &name)
        {
            Ok(sender) => {
                p.down.insert(
                    key.clone(),
                    Down {
                        sender,
                        track: DownTrack::new(ssrc, track.codec.clock_rate),
                        mime_type: track.codec.mime_type.clone(),
                        name,
                        playing: false,
                    },
                );
                p.renegotiate = true;
                track.subscribers.push(participant);
            }
            Err(e) => tracing::warn!(error = %e, %participant, "adding a subscription failed"),
        }
    }

    /// Offers the participant's subscriber connection if it changed and no
    /// offer is out.
    fn offer_if_needed(&mut self, participant: Uuid) {
        let Some(p) = self.participants.get_mut(&participant) else {
            return;
        };
        if !p.renegotiate {
            return;
        }
        let key = p.subscriber;
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        if slot.peer.awaiting_answer() {
            return; // offered again once the answer is in
        }
        match slot.peer.offer(self.now) {
            Ok(Some(sdp)) => {
                p.renegotiate = false;
                let tracks = msid_tracks(&sdp)
                    .into_iter()
                    .filter_map(|(mid, name)| {
                        let (key, _) = p.down.iter().find(|(_, d)| d.name == name)?;
                        let published = self.tracks.get(key)?;
                        Some(OfferedTrack {
                            mid,
                            publisher: key.0,
                            kind: published.kind,
                            source: published.source,
                        })
                    })
                    .collect();
                let _ = self.events.send(EngineEvent::SubscriberOffer {
                    participant,
                    sdp,
                    tracks,
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %participant, "offering failed"),
        }
        self.pump(key);
    }

    pub(crate) fn datagram(
        &mut self,
        now: Instant,
        key: PeerKey,
        datagram: BytesMut,
        from: SocketAddr,
    ) {
        let now = self.at(now);
        let Some(slot) = self.peers.get_mut(&key) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        if let Err(e) = slot.peer.handle_datagram(datagram, from, now) {
            self.stats.datagrams_dropped += 1;
            tracing::trace!(error = %e, %from, "a datagram was refused");
        }
        self.pump(key);
    }

    /// The loop's next deadline: a peer's timer, a held keyframe request, or
    /// the speakers' tick, which always comes.
    fn next_timeout(&mut self) -> Instant {
        let keyframes = self.tracks.values().filter_map(|t| t.keyframe_due).min();
        self.peers
            .values_mut()
            .filter_map(|s| s.peer.poll_timeout())
            .chain(keyframes)
            .fold(self.next_speaking, Instant::min)
    }

    pub(crate) fn timeouts(&mut self, now: Instant) {
        let now = self.at(now);
        if now >= self.next_speaking {
            // A tick missed while the loop was busy is not made up for.
            self.next_speaking = now + SPEAKING_EVERY;
            self.announce_speakers(now);
        }
        let keyframes: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.keyframe_due.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keyframes {
            self.request_keyframe(&key, true);
        }
        let due: Vec<PeerKey> = self
            .peers
            .iter_mut()
            .filter_map(|(k, s)| s.peer.poll_timeout().filter(|t| *t <= now).map(|_| *k))
            .collect();
        for key in due {
            if let Some(slot) = self.peers.get_mut(&key) {
                if let Err(e) = slot.peer.handle_timeout(now) {
                    tracing::debug!(error = %e, "a peer's timer failed");
                }
            }
            self.pump(key);
        }
    }

    /// Sends what a peer has to send and acts on what it reported.
    fn pump(&mut self, key: PeerKey) {
        loop {
            let Some(slot) = self.peers.get_mut(&key) else {
                return;
            };
            while let Some(out) = slot.peer.poll_transmit() {
                self.outbox.push(out);
            }
            let Some(event) = slot.peer.poll_event() else {
                return;
            };
            let (participant, role) = (slot.participant, slot.role);
            match event {
                PeerEvent::Rtp { track, packet } => {
                    self.stats.packets_in += 1;
                    self.forward(&(participant, track), &packet);
                }
                PeerEvent::TrackOpened {
                    track, kind, codec, ..
                } if role == Role::Publisher => {
                    let source = self
                        .participants
                        .get_mut(&participant)
                        .and_then(|p| p.sources.remove(&track))
                        .unwrap_or(Source::default_for(kind));
                    let key = (participant, track);
                    self.tracks.insert(
                        key.clone(),
                        Published {
                            kind,
                            source,
                            codec,
                            subscribers: Vec::new(),
                            last_keyframe_request: None,
                            keyframe_due: None,
                            loudness: 0,
                            level_at: None,
                        },
                    );
                    let call = self.participants.get(&participant).map(|p| p.call);
                    let others: Vec<Uuid> = call
                        .and_then(|c| self.calls.get(&c))
                        .map(|m| m.iter().copied().filter(|m| *m != participant).collect())
                        .unwrap_or_default();
                    for other in others {
                        self.subscribe(other, &key);
                        self.offer_if_needed(other);
                    }
                }
                PeerEvent::TrackClosed { track } if role == Role::Publisher => {
                    self.unpublish(&(participant, track));
                }
                PeerEvent::KeyframeRequested { media_ssrc } if role == Role::Subscriber => {
                    let source = self.participants.get(&participant).and_then(|p| {
                        p.down
                            .iter()
                            .find(|(_, d)| d.track.ssrc() == media_ssrc)
                            .map(|(k, _)| k.clone())
                    });
                    if let Some(source) = source {
                        self.request_keyframe(&source, false);
                    }
                }
                PeerEvent::Connected => {
                    slot.connected = true;
                    if role == Role::Subscriber {
                        self.keyframes_for(participant);
                    }
                }
                PeerEvent::Failed => {
                    let _ = self.events.send(EngineEvent::Disconnected { participant });
                    self.leave(participant);
                    return;
                }
                _ => {}
            }
        }
    }

    /// Tells signaling who speaks in each call, when that changed.
    fn announce_speakers(&mut self, now: Instant) {
        let mut by_call: HashMap<Uuid, Vec<(Uuid, u8)>> = HashMap::new();
        for ((participant, _), track) in &self.tracks {
            let Some(call) = self.participants.get(participant).map(|p| p.call) else {
                continue;
            };
            let speakers = by_call.entry(call).or_default();
            if let Some(loudness) = track.speaking(now) {
                match speakers.iter_mut().find(|(p, _)| p == participant) {
                    Some(s) => s.1 = s.1.max(loudness),
                    None => speakers.push((*participant, loudness)),
                }
            }
        }
        self.speakers.retain(|call, _| by_call.contains_key(call));
        for (call, mut speakers) in by_call {
            speakers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut ids: Vec<Uuid> = speakers.iter().map(|s| s.0).collect();
            ids.sort();
            let last = self.speakers.entry(call).or_default();
            if *last != ids {
                *last = ids;
                let _ = self.events.send(EngineEvent::Speaking { call, speakers });
            }
        }
    }

    /// Sends a publisher's packet to every subscriber of the track.
    fn forward(&mut self, key: &TrackKey, packet: &Rtp) {
        let now = self.now;
        if let (Some(level), Some(track)) = (packet.audio_level, self.tracks.get_mut(key)) {
            track.observe_level(level, now);
        }
        let Some(track) = self.tracks.get(key) else {
            return;
        };
        // Read once, and only while someone waits for a first keyframe.
        let mut keyframe = None;
        for subscriber in &track.subscribers {
            let Some(p) = self.participants.get_mut(subscriber) else {
                continue;
            };
            let Some(down) = p.down.get_mut(key) else {
                continue;
            };
            let Some(slot) = self.peers.get_mut(&p.subscriber) else {
                continue;
            };
            let out = down.track.rewrite(packet.ssrc, packet.seq, packet.ts, now);
            let rewritten = Rtp {
                ssrc: out.ssrc,
                seq: out.seq,
                ts: out.ts,
                ..packet.clone()
            };
            match slot
                .peer
                .send_rtp(down.sender, &rewritten, &down.mime_type, now)
            {
                Ok(()) => {
                    self.stats.packets_forwarded += 1;
                    if !down.playing && slot.connected {
                        let playable = track.kind == Kind::Audio
                            || *keyframe.get_or_insert_with(|| {
                                starts_keyframe(&track.codec.mime_type, &packet.payload)
                            });
                        if playable {
                            down.playing = true;
                            let _ = self.events.send(EngineEvent::Receiving {
                                call: p.call,
                                subscriber: *subscriber,
                                publisher: key.0,
                                kind: track.kind,
                                source: track.source,
                            });
                        }
                    }
                }
                Err(e) => tracing::trace!(error = %e, "forwarding a packet failed"),
            }
            while let Some(out) = slot.peer.poll_transmit() {
                self.outbox.push(out);
            }
        }
    }

    /// Asks the publishers of everything a participant receives for a
    /// keyframe now, so its decoders start at once.
    fn keyframes_for(&mut self, participant: Uuid) {
        // Tracks it already plays need none: a re-offer that adds one track
        // asks for that track's keyframe, not for every publisher's.
        let sources: Vec<TrackKey> = self
            .participants
            .get(&participant)
            .map(|p| {
                p.down
                    .iter()
                    .filter(|(_, d)| !d.playing)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for source in sources {
            self.request_keyframe(&source, true);
        }
    }

    /// Asks a track's publisher for a keyframe, at most once per interval
    /// unless `force` (a new subscriber needs its first frame now). A forced
    /// request that would follow the last one too closely for the encoder to
    /// act on it waits until [`KEYFRAME_SPACING`] has passed.
    fn request_keyframe(&mut self, key: &TrackKey, force: bool) {
        let Some(track) = self.tracks.get_mut(key) else {
            return;
        };
        if track.kind != Kind::Video {
            return;
        }
        let now = self.now;
        let since_last = track.last_keyframe_request.map(|at| now.duration_since(at));
        if force {
            if let Some(since) = since_last.filter(|s| *s < KEYFRAME_SPACING) {
                let due = now + (KEYFRAME_SPACING - since);
                track.keyframe_due = Some(track.keyframe_due.map_or(due, |d| d.min(due)));
                return;
            }
        } else if since_last.is_some_and(|s| s < self.keyframe_interval)
            || track.keyframe_due.is_some()
        {
            return;
        }
        track.keyframe_due = None;
        track.last_keyframe_request = Some(now);
        let Some(publisher) = self.participants.get(&key.0).and_then(|p| p.publisher) else {
            return;
        };
        if let Some(slot) = self.peers.get_mut(&publisher) {
            match slot.peer.request_keyframe(&key.1, now) {
                Ok(()) => self.stats.keyframe_requests += 1,
                Err(e) => tracing::debug!(error = %e, "requesting a keyframe failed"),
            }
            while let Some(out) = slot.peer.poll_transmit() {
                self.outbox.push(out);
            }
        }
    }
}

/// The media sections of an SDP that carry a track: each one's `a=mid` and
/// the track id of its `a=msid` (the second part).
fn msid_tracks(sdp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut mid: Option<&str> = None;
    let mut track: Option<&str> = None;
    let mut flush = |mid: &mut Option<&str>, track: &mut Option<&str>| {
        if let (Some(m), Some(t)) = (mid.take(), track.take()) {
            out.push((m.to_owned(), t.to_owned()));
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            flush(&mut mid, &mut track);
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim());
        } else if let Some(ids) = line.strip_prefix("a=msid:") {
            track = ids.split_whitespace().nth(1);
        }
    }
    flush(&mut mid, &mut track);
    out
}

#[cfg(test)]
mod tests {
    use super::msid_tracks;

    #[test]
    fn each_section_names_its_mid_and_track() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=group:BUNDLE 0 1 2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:s a-1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v-1\r\na=mid:1\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n";
        assert_eq!(
            msid_tracks(sdp),
            vec![
                ("0".to_owned(), "a-1".to_owned()),
                ("1".to_owned(), "v-1".to_owned())
            ]
        );
        assert!(msid_tracks("m=audio\na=msid:only-stream").is_empty());
    }
}
