//! The SFU: one UDP socket shared by every peer, a loop that owns the peers,
//! and the forwarding between them.
//!
//! Each participant has two peer connections, after the pattern of LiveKit:
//! a *publisher* connection that the client offers (its microphone and
//! camera) and a *subscriber* connection that the engine offers (everyone
//! else's tracks). Each side only ever offers on its own connection, so the
//! two never offer at once: glare cannot happen.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::demux::Demux;
use crate::forwarder::DownTrack;
use crate::peer::{Codec, Kind, Mode, Peer, PeerEvent, PeerSetup, Rtp, SenderId, TrackId};
use crate::MediaError;

/// Where the engine listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The one UDP address every peer shares.
    pub listen: SocketAddr,
    /// Addresses put in answers and offers as host candidates (a public or
    /// NAT 1:1 address). Empty: the listening address, which must then be a
    /// specific one.
    pub advertised_ips: Vec<IpAddr>,
    /// Keyframe requests forwarded to a publisher per track, at most one per this interval.
    pub keyframe_interval: Duration,
    /// A peer silent this long counts as disconnected, and after
    /// `peer_failed` more as gone: it leaves the call.
    pub peer_disconnected: Duration,
    pub peer_failed: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7882)),
            advertised_ips: Vec::new(),
            keyframe_interval: Duration::from_millis(500),
            peer_disconnected: Duration::from_secs(5),
            peer_failed: Duration::from_secs(10),
        }
    }
}

/// What the engine tells signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// The engine offers the participant's subscriber connection (new or
    /// changed tracks); answer with [`Engine::subscriber_answer`].
    SubscriberOffer { participant: Uuid, sdp: String },
    /// A participant started sending a track.
    TrackPublished { participant: Uuid, kind: Kind },
    /// A participant's media connection failed or closed.
    Disconnected { participant: Uuid },
    /// Who is speaking in a call now, loudest first, with a loudness from 0
    /// (silence) to 127; sent when the set changes, at most every 250 ms.
    Speaking {
        call: Uuid,
        speakers: Vec<(Uuid, u8)>,
    },
}

/// How often the speakers of each call are looked at.
const SPEAKING_EVERY: Duration = Duration::from_millis(250);
/// Loudness (127 minus the RFC 6464 level in -dBov) from which someone speaks: -60 dBov.
const SPEAKING_LOUDNESS: u8 = 67;
/// How long a level counts after it arrived.
const LEVEL_FRESH: Duration = Duration::from_millis(500);

/// Counters of the engine, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub participants: usize,
    pub peers: usize,
    pub tracks: usize,
    pub packets_in: u64,
    pub packets_forwarded: u64,
    pub datagrams_dropped: u64,
    pub keyframe_requests: u64,
}

enum Command {
    Join {
        call: Uuid,
        participant: Uuid,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Publish {
        participant: Uuid,
        offer: String,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    SubscriberAnswer {
        participant: Uuid,
        answer: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Leave {
        participant: Uuid,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
}

/// A handle on a running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
}

impl Engine {
    /// Binds the socket and starts the engine's loop on the current runtime.
    pub async fn start(
        config: EngineConfig,
    ) -> Result<(Engine, mpsc::UnboundedReceiver<EngineEvent>), MediaError> {
        let socket = UdpSocket::bind(config.listen).await?;
        let local = socket.local_addr()?;
        let ips = if config.advertised_ips.is_empty() {
            if local.ip().is_unspecified() {
                return Err(MediaError::Config(
                    "listening on every interface needs advertised addresses".into(),
                ));
            }
            vec![local.ip()]
        } else {
            config.advertised_ips.clone()
        };
        let advertised: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, local.port()))
            .collect();
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let state = Sfu {
            // The address peers see as ours: the first advertised one.
            local: advertised[0],
            advertised,
            keyframe_interval: config.keyframe_interval,
            ice_timeouts: (config.peer_disconnected, config.peer_failed),
            demux: Demux::new(8),
            peers: HashMap::new(),
            next_peer: 0,
            participants: HashMap::new(),
            calls: HashMap::new(),
            tracks: HashMap::new(),
            outbox: Vec::new(),
            events,
            stats: EngineStats::default(),
            speakers: HashMap::new(),
        };
        tokio::spawn(run(socket, rx, state));
        Ok((Engine { commands, local }, events_rx))
    }

    /// The socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)
    }

    /// Adds a participant to a call; the others' tracks will be offered to it.
    pub async fn join(&self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        self.ask(|reply| Command::Join {
            call,
            participant,
            reply,
        })
        .await?
    }

    /// Answers the participant's offer of its publisher connection.
    pub async fn publish(&self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        self.ask(|reply| Command::Publish {
            participant,
            offer,
            reply,
        })
        .await?
    }

    /// Takes the participant's answer to a [`EngineEvent::SubscriberOffer`].
    pub async fn subscriber_answer(
        &self,
        participant: Uuid,
        answer: String,
    ) -> Result<(), MediaError> {
        self.ask(|reply| Command::SubscriberAnswer {
            participant,
            answer,
            reply,
        })
        .await?
    }

    /// Removes a participant and its tracks at once.
    pub fn leave(&self, participant: Uuid) {
        let _ = self.commands.send(Command::Leave { participant });
    }

    pub async fn stats(&self) -> Result<EngineStats, MediaError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

type PeerKey = u64;

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
}

struct Participant {
    call: Uuid,
    publisher: Option<PeerKey>,
    subscriber: PeerKey,
    /// The subscriber connection changed while an offer was out: offer again.
    renegotiate: bool,
    /// What this participant receives, by the published track it comes from.
    down: HashMap<TrackKey, Down>,
}

struct Down {
    sender: SenderId,
    track: DownTrack,
    mime_type: String,
}

/// A published track: its publisher and `rtc`'s id for it.
type TrackKey = (Uuid, TrackId);

struct Published {
    kind: Kind,
    codec: Codec,
    subscribers: Vec<Uuid>,
    last_keyframe_request: Option<Instant>,
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

struct Sfu {
    local: SocketAddr,
    advertised: Vec<SocketAddr>,
    keyframe_interval: Duration,
    ice_timeouts: (Duration, Duration),
    demux: Demux<PeerKey>,
    peers: HashMap<PeerKey, PeerSlot>,
    next_peer: PeerKey,
    participants: HashMap<Uuid, Participant>,
    calls: HashMap<Uuid, HashSet<Uuid>>,
    tracks: HashMap<TrackKey, Published>,
    /// Datagrams to send, filled while handling input, emptied by the loop.
    outbox: Vec<(SocketAddr, BytesMut)>,
    events: mpsc::UnboundedSender<EngineEvent>,
    stats: EngineStats,
    /// The speakers last announced, per call.
    speakers: HashMap<Uuid, Vec<Uuid>>,
}

async fn run(socket: UdpSocket, mut commands: mpsc::UnboundedReceiver<Command>, mut sfu: Sfu) {
    let mut buf = vec![0u8; 2048];
    let mut speaking = tokio::time::interval(SPEAKING_EVERY);
    speaking.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        for (to, datagram) in sfu.outbox.drain(..) {
            if let Err(e) = socket.send_to(&datagram, to).await {
                tracing::debug!(error = %e, %to, "sending a datagram failed");
            }
        }
        let deadline = sfu
            .next_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => sfu.command(c),
                None => break,
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => sfu.datagram(&buf[..n], from),
                Err(e) => tracing::debug!(error = %e, "receiving a datagram failed"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => sfu.timeouts(Instant::now()),
            _ = speaking.tick() => sfu.announce_speakers(Instant::now()),
        }
    }
    for slot in sfu.peers.values_mut() {
        slot.peer.close();
    }
}

impl Sfu {
    fn command(&mut self, command: Command) {
        match command {
            Command::Join {
                call,
                participant,
                reply,
            } => {
                let _ = reply.send(self.join(call, participant));
            }
            Command::Publish {
                participant,
                offer,
                reply,
            } => {
                let _ = reply.send(self.publish(participant, offer));
            }
            Command::SubscriberAnswer {
                participant,
                answer,
                reply,
            } => {
                let _ = reply.send(self.subscriber_answer(participant, answer));
            }
            Command::Leave { participant } => self.leave(participant),
            Command::Stats { reply } => {
                let mut stats = self.stats;
                stats.participants = self.participants.len();
                stats.peers = self.peers.len();
                stats.tracks = self.tracks.len();
                let _ = reply.send(stats);
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
            ufrag: ufrag.clone(),
            pwd,
            local: self.local,
            advertised: self.advertised.clone(),
            ice_timeouts: self.ice_timeouts,
        };
        let peer = Peer::new(&setup, Instant::now())?;
        let key = self.next_peer;
        self.next_peer += 1;
        self.demux.add(&ufrag, key);
        self.peers.insert(
            key,
            PeerSlot {
                peer,
                ufrag,
                participant,
                role,
            },
        );
        Ok(key)
    }

    fn join(&mut self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        if self.participants.contains_key(&participant) {
            return Err(MediaError::Conflict("already in a call".into()));
        }
        let subscriber = self.new_peer(participant, Role::Subscriber)?;
        self.participants.insert(
            participant,
            Participant {
                call,
                publisher: None,
                subscriber,
                renegotiate: false,
                down: HashMap::new(),
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

    fn publish(&mut self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        let Some(p) = self.participants.get(&participant) else {
            return Err(MediaError::NotFound("participant"));
        };
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
        let answer = slot.peer.answer(offer, Instant::now())?;
        self.pump(key);
        Ok(answer)
    }

    fn subscriber_answer(&mut self, participant: Uuid, answer: String) -> Result<(), MediaError> {
        let Some(p) = self.participants.get(&participant) else {
            return Err(MediaError::NotFound("participant"));
        };
        let key = p.subscriber;
        let slot = self
            .peers
            .get_mut(&key)
            .ok_or(MediaError::NotFound("peer"))?;
        slot.peer.accept_answer(answer, Instant::now())?;
        self.pump(key);
        // New subscriptions start with a keyframe.
        let sources: Vec<TrackKey> = self
            .participants
            .get(&participant)
            .map(|p| p.down.keys().cloned().collect())
            .unwrap_or_default();
        for source in sources {
            self.request_keyframe(&source, true);
        }
        self.offer_if_needed(participant);
        Ok(())
    }

    fn leave(&mut self, participant: Uuid) {
        let Some(p) = self.participants.remove(&participant) else {
            return;
        };
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

    fn drop_peer(&mut self, key: PeerKey) {
        if let Some(mut slot) = self.peers.remove(&key) {
            slot.peer.close();
            while let Some((to, d)) = slot.peer.poll_transmit() {
                self.outbox.push((to, d));
            }
            self.demux.remove(&slot.ufrag, key);
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
        let stream = key.0.simple().to_string();
        let name = format!("{stream}-{}", key.1);
        match slot
            .peer
            .add_sender(track.kind, &track.codec, ssrc, &stream, &name)
        {
            Ok(sender) => {
                p.down.insert(
                    key.clone(),
                    Down {
                        sender,
                        track: DownTrack::new(ssrc, track.codec.clock_rate),
                        mime_type: track.codec.mime_type.clone(),
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
        match slot.peer.offer(Instant::now()) {
            Ok(Some(sdp)) => {
                p.renegotiate = false;
                let _ = self
                    .events
                    .send(EngineEvent::SubscriberOffer { participant, sdp });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %participant, "offering failed"),
        }
        self.pump(key);
    }

    fn datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(key) = self.demux.route(datagram, from) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        let Some(slot) = self.peers.get_mut(&key) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        if let Err(e) = slot.peer.handle_datagram(datagram, from, Instant::now()) {
            self.stats.datagrams_dropped += 1;
            tracing::trace!(error = %e, %from, "a datagram was refused");
        }
        self.pump(key);
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        self.peers
            .values_mut()
            .filter_map(|s| s.peer.poll_timeout())
            .min()
    }

    fn timeouts(&mut self, now: Instant) {
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
                    let key = (participant, track);
                    self.tracks.insert(
                        key.clone(),
                        Published {
                            kind,
                            codec,
                            subscribers: Vec::new(),
                            last_keyframe_request: None,
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
                    let _ = self
                        .events
                        .send(EngineEvent::TrackPublished { participant, kind });
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
                PeerEvent::Connected if role == Role::Subscriber => {
                    let sources: Vec<TrackKey> = self
                        .participants
                        .get(&participant)
                        .map(|p| p.down.keys().cloned().collect())
                        .unwrap_or_default();
                    for source in sources {
                        self.request_keyframe(&source, true);
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
        let now = Instant::now();
        if let (Some(level), Some(track)) = (packet.audio_level, self.tracks.get_mut(key)) {
            track.observe_level(level, now);
        }
        let Some(track) = self.tracks.get(key) else {
            return;
        };
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
                Ok(()) => self.stats.packets_forwarded += 1,
                Err(e) => tracing::trace!(error = %e, "forwarding a packet failed"),
            }
            while let Some(out) = slot.peer.poll_transmit() {
                self.outbox.push(out);
            }
        }
    }

    /// Asks a track's publisher for a keyframe, at most once per interval
    /// unless `force` (a new subscriber needs its first frame now).
    fn request_keyframe(&mut self, key: &TrackKey, force: bool) {
        let Some(track) = self.tracks.get_mut(key) else {
            return;
        };
        if track.kind != Kind::Video {
            return;
        }
        let now = Instant::now();
        if !force
            && track
                .last_keyframe_request
                .is_some_and(|at| now.duration_since(at) < self.keyframe_interval)
        {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn sfu() -> (Sfu, mpsc::UnboundedReceiver<EngineEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let local = SocketAddr::from(([127, 0, 0, 1], 7882));
        let sfu = Sfu {
            local,
            advertised: vec![local],
            keyframe_interval: Duration::from_millis(500),
            ice_timeouts: (Duration::from_secs(5), Duration::from_secs(10)),
            demux: Demux::new(8),
            peers: HashMap::new(),
            next_peer: 0,
            participants: HashMap::new(),
            calls: HashMap::new(),
            tracks: HashMap::new(),
            outbox: Vec::new(),
            events,
            stats: EngineStats::default(),
            speakers: HashMap::new(),
        };
        (sfu, rx)
    }

    /// A STUN binding request naming `ufrag`, with `tail` as its last attribute's value.
    fn binding_request(ufrag: &str, tail: &[u8]) -> Vec<u8> {
        let username = format!("{ufrag}:remote");
        let mut attrs = Vec::new();
        for (ty, value) in [(0x0006u16, username.as_bytes()), (0x8022, tail)] {
            attrs.extend_from_slice(&ty.to_be_bytes());
            attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
            attrs.extend_from_slice(value);
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[tokio::test]
    async fn garbage_from_the_network_is_dropped_and_the_engine_goes_on() {
        let (mut sfu, _events) = sfu();
        let call = Uuid::new_v4();
        let alice = Uuid::new_v4();
        sfu.join(call, alice).unwrap();
        let ufrag = sfu.peers.values().next().unwrap().ufrag.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let peer_addr = SocketAddr::from(([127, 0, 0, 1], 40_000));
        // The address is learnt from a binding request (its integrity fails; the route stays).
        sfu.datagram(&binding_request(&ufrag, b"x"), peer_addr);
        assert_eq!(sfu.demux.addresses(), 1, "later datagrams reach the peer");
        for i in 0..20_000u32 {
            let len = (rng.next_u32() % 1500) as usize;
            let mut d = vec![0u8; len];
            rng.fill_bytes(&mut d);
            // Every protocol class the demux knows, and the rest.
            if let Some(first) = d.first_mut() {
                *first = match i % 5 {
                    0 => *first % 4,
                    1 => 20 + *first % 44,
                    2 => 128 + *first % 64,
                    _ => *first,
                };
            }
            let from = if i % 3 == 0 {
                SocketAddr::from(([127, 0, 0, 1], 40_001 + (i % 50) as u16))
            } else {
                peer_addr
            };
            if i % 7 == 0 {
                sfu.datagram(&binding_request(&ufrag, &d), from);
            } else {
                sfu.datagram(&d, from);
            }
            if i % 1000 == 0 {
                sfu.timeouts(Instant::now());
            }
        }
        assert!(sfu.stats.datagrams_dropped > 0);
        assert_eq!(sfu.participants.len(), 1, "the participant is still there");
        // And it still negotiates.
        let bob = Uuid::new_v4();
        sfu.join(call, bob).unwrap();
        assert_eq!(sfu.calls[&call].len(), 2);
    }
}
