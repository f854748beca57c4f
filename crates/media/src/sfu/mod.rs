//! One media loop's state: the peers of the calls placed on it, and
//! forwarding between them. It does no IO and reads no clock: every input
//! carries the time, and what it has to do comes back through
//! [`Sfu::poll_output`] (datagrams to send, events for signaling, route and
//! placement changes) and [`Sfu::poll_timeout`] (when to call it next). The
//! engine's task for the loop (`engine::run`) owns the socket, the channels
//! and the clock; the in-memory harness drives it the same way on a clock
//! of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
// The maps a forwarded packet looks up, once per copy: keys the engine
// chose (peer keys, participant ids) or few per call (track ids), so a fast
// hash over a DoS-resistant one.
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::events::{EngineEvent, EngineStats, OfferedTrack, Source, Subscription};
use crate::peer::dtls_srtp::Identity;
use crate::peer::rtcp::WallClock;
use crate::peer::{
    msid_tracks, Codec, Kind, PeerEvent, PeerSetup, PublisherPeer, Rtp, SubscriberPeer,
};
use crate::vp8::{self, IdMunger};
use crate::MediaError;

mod allocator;
mod conn;
mod down_track;
mod forwarder;
mod ids;
mod keyframe_requests;
mod speakers;
mod up_track;

use conn::Conn;
use down_track::DownTrack;
use ids::Role;
pub(crate) use ids::{PeerKey, TrackKey};
use speakers::{Speakers, SPEAKING_EVERY};
use up_track::UpTrack;

/// An input without a typed answer.
pub(crate) enum Input {
    /// A datagram the receive loop routed to one of the loop's peers.
    Datagram {
        key: PeerKey,
        from: SocketAddr,
        datagram: BytesMut,
    },
    /// A packet of a track published on loop `from`, for the call's
    /// participants here.
    Relayed {
        from: usize,
        key: Arc<TrackKey>,
        packet: Rtp,
    },
    /// A word from another loop of a call.
    Relay(Relay),
    /// A call's loops changed (see [`crate::placement`]).
    Spread {
        call: Uuid,
        generation: u64,
        loops: Vec<usize>,
    },
    /// The time given by [`Sfu::poll_timeout`] has come (or passed).
    Timeout,
    /// Participants leave at once.
    Leave(Vec<Uuid>),
    /// A moderator stopped the forwarding of publishers' tracks of these
    /// sources (`stopped`), or let it go on; this holds for tracks of those
    /// sources published later, until let go on.
    Stop {
        publishers: Vec<Uuid>,
        sources: Vec<Source>,
        stopped: bool,
    },
    /// The loop stops: every peer is closed.
    Shutdown,
}

/// What the loop hands back, in the order it arose.
#[derive(Debug)]
pub(crate) enum Output {
    /// A datagram to send.
    Transmit { to: SocketAddr, datagram: BytesMut },
    /// A word for another loop of a call, never to be lost.
    Relay { to: usize, relay: Relay },
    /// A packet for another loop of its call: lost, like a datagram, when
    /// that loop falls behind.
    RelayRtp {
        to: usize,
        key: Arc<TrackKey>,
        packet: Rtp,
    },
    /// Something for signaling.
    Event(EngineEvent),
    /// A peer the receive loop must route to this loop, or no longer.
    Route(Route),
    /// A participant has left on the loop's own account (its connection
    /// failed): its placement, unless a newer one replaced it, is free.
    Unplaced { participant: Uuid, placement: u64 },
}

/// What the loops of a call spread over tell each other (ADR 0021): each
/// track is published on one loop, its *home*, and mirrored on the others.
#[derive(Debug)]
pub(crate) enum Relay {
    /// A track was published on loop `from`, when it knew the call's loops
    /// as of `generation`.
    Opened {
        from: usize,
        generation: u64,
        call: Uuid,
        key: Arc<TrackKey>,
        kind: Kind,
        source: Source,
        codec: Codec,
        /// Its simulcast layers: 1 without.
        layers: u8,
    },
    /// The track is gone.
    Closed { key: Arc<TrackKey> },
    /// Someone here wants a keyframe of a layer of a track of the
    /// receiving loop.
    Keyframe {
        key: Arc<TrackKey>,
        layer: u8,
        force: bool,
    },
}

/// The other loops of a call spread beyond this one.
#[derive(Debug)]
struct Spread {
    /// The latest change heard.
    generation: u64,
    /// The change that brought this loop in: an `Opened` sent before it
    /// belongs to an earlier time the loop was in the call, and is stale.
    since: u64,
    others: Vec<usize>,
}

/// Which peers the loop owns, by their ICE ufrag.
#[derive(Debug)]
pub(crate) enum Route {
    Add {
        ufrag: String,
        key: PeerKey,
    },
    /// The peer is gone: its ufrag and every address it sent from.
    Remove {
        ufrag: String,
        key: PeerKey,
    },
    /// A ufrag of the peer from before its last two ICE restarts.
    Forget {
        ufrag: String,
        key: PeerKey,
    },
    /// A binding request from `from` passed the peer's integrity check:
    /// datagrams from there are the peer's ([`crate::demux::Demux::learn`]).
    Learn {
        from: SocketAddr,
        key: PeerKey,
    },
}

/// ICE credentials of the engine's side: a ufrag of 16 characters and a
/// password of 32.
fn credentials(rng: &mut StdRng) -> (String, String) {
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect()
    };
    (text(16), text(32))
}

struct PeerSlot {
    peer: Conn,
    /// Its ICE ufrags, the latest last: two after an ICE restart, as
    /// the client may still check with the old one.
    ufrags: Vec<String>,
    participant: Uuid,
    role: Role,
    /// DTLS and SRTP are up: what is sent now can be played.
    connected: bool,
    /// Its timer, as last asked; the loop's heap holds it.
    deadline: Option<Instant>,
    /// Touched since its timer was last asked: ask again.
    dirty: bool,
}

impl PeerSlot {
    /// Notes that the peer was handed something, so its timer may have moved.
    fn touch(&mut self, key: PeerKey, dirty: &mut Vec<PeerKey>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(key);
        }
    }
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
    down: FxHashMap<TrackKey, DownTrack>,
    /// What its published tracks carry, by their track id (the second part
    /// of the offer's `a=msid`), where it said, until the track opens.
    sources: HashMap<String, Source>,
    /// What it asked of tracks (paused, the size it draws them at), by
    /// publisher and source, kept for those published later.
    wishes: HashMap<(Uuid, Source), Subscription>,
}

/// The state of one media loop.
pub(crate) struct Sfu {
    /// Which loop this is, in the engine's words about calls' loops.
    index: usize,
    /// The calls spread over this loop and others.
    spread: HashMap<Uuid, Spread>,
    local: SocketAddr,
    advertised: Vec<SocketAddr>,
    keyframe_interval: Duration,
    /// Whether subscribers' video is fitted to their estimated bandwidth.
    allocate_bandwidth: bool,
    ice_timeouts: (Duration, Duration),
    retransmit_history: u16,
    retransmit_limits: crate::RetransmitLimits,
    /// The certificate every subscriber connection presents.
    identity: Identity,
    /// The wall clock's time, for sender reports.
    clock: WallClock,
    peers: FxHashMap<PeerKey, PeerSlot>,
    next_peer: PeerKey,
    participants: FxHashMap<Uuid, Participant>,
    calls: HashMap<Uuid, HashSet<Uuid>>,
    tracks: FxHashMap<TrackKey, UpTrack>,
    /// What moderators stopped: publishers' tracks of a source, forwarded
    /// to no one.
    stopped: HashSet<(Uuid, Source)>,
    /// Datagrams to send, in order, until polled.
    transmits: VecDeque<(SocketAddr, BytesMut)>,
    /// Everything else to hand back, in order, until polled.
    out: VecDeque<Output>,
    /// Ufrags, passwords and SSRCs; seeded by the caller, so that a run
    /// can be replayed.
    rng: StdRng,
    stats: EngineStats,
    /// The peers' timers, soonest first. An entry counts only while it
    /// equals its peer's `deadline`; others are dropped when they surface.
    deadlines: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    /// Peers touched since their timers were last asked.
    dirty: Vec<PeerKey>,
    speakers: Speakers,
    /// The time of the latest input: the loop reads no clock of its own.
    now: Instant,
    /// When speakers, and the layers subscribers receive, are next looked
    /// at (every [`SPEAKING_EVERY`]).
    next_speaking: Instant,
}

impl Sfu {
    /// A loop starting at `now`, whose random choices follow from `seed`;
    /// its subscriber connections present `identity`, and `clock` gives
    /// the wall clock's time.
    pub(crate) fn new(
        index: usize,
        now: Instant,
        advertised: Vec<SocketAddr>,
        config: &EngineConfig,
        seed: u64,
        identity: Identity,
        clock: WallClock,
    ) -> Sfu {
        Sfu {
            index,
            spread: HashMap::new(),
            // The address peers see as ours: the first advertised one.
            local: advertised[0],
            advertised,
            keyframe_interval: config.keyframe_interval,
            allocate_bandwidth: config.allocate_bandwidth,
            ice_timeouts: (config.peer_disconnected, config.peer_failed),
            retransmit_history: config.retransmit_history,
            retransmit_limits: config.retransmit_limits,
            identity,
            clock,
            peers: FxHashMap::default(),
            next_peer: 0,
            participants: FxHashMap::default(),
            calls: HashMap::new(),
            tracks: FxHashMap::default(),
            stopped: HashSet::new(),
            transmits: VecDeque::with_capacity(256),
            out: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            stats: EngineStats::default(),
            deadlines: BinaryHeap::new(),
            dirty: Vec::new(),
            speakers: Speakers::default(),
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

    /// The next thing to hand back: datagrams first, then the rest in
    /// order; `None` once all is taken. Call it after every input.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        if let Some((to, datagram)) = self.transmits.pop_front() {
            return Some(Output::Transmit { to, datagram });
        }
        self.out.pop_front()
    }

    /// Takes an input at `now`.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) {
        let now = self.at(now);
        match input {
            Input::Datagram {
                key,
                from,
                datagram,
            } => self.datagram(key, datagram, from),
            Input::Relayed { from, key, packet } => {
                if self.tracks.get(&*key).is_some_and(|t| t.home == Some(from)) {
                    self.forward(&key, &packet);
                }
            }
            Input::Relay(relay) => self.relayed(relay),
            Input::Spread {
                call,
                generation,
                loops,
            } => self.spread(call, generation, loops),
            Input::Timeout => self.timeouts(now),
            Input::Leave(participants) => self.leave_all(&participants),
            Input::Stop {
                publishers,
                sources,
                stopped,
            } => {
                for publisher in publishers {
                    self.stop_forwarding(publisher, &sources, stopped);
                }
            }
            Input::Shutdown => {
                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                for key in keys {
                    self.drop_peer(key);
                }
            }
        }
    }

    pub(crate) fn participants(&self) -> usize {
        self.participants.len()
    }

    pub(crate) fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.participants = self.participants.len();
        stats.peers = self.peers.len();
        // Each track counts on its home loop alone.
        stats.tracks = self.tracks.values().filter(|t| t.home.is_none()).count();
        stats
    }

    fn new_peer(&mut self, participant: Uuid, role: Role) -> Result<PeerKey, MediaError> {
        let (ufrag, pwd) = credentials(&mut self.rng);
        let setup = PeerSetup {
            ufrag: ufrag.clone(),
            pwd,
            local: self.local,
            advertised: self.advertised.clone(),
            ice_timeouts: self.ice_timeouts,
            retransmit_history: self.retransmit_history,
            retransmit_limits: self.retransmit_limits,
        };
        let peer = match role {
            Role::Publisher => Conn::Publisher(Box::new(PublisherPeer::new(
                &setup,
                &self.identity,
                self.rng.gen(),
                self.rng.gen(),
            ))),
            Role::Subscriber => Conn::Subscriber(Box::new(SubscriberPeer::new(
                &setup,
                &self.identity,
                self.clock,
                self.rng.gen(),
            ))),
        };
        let key = self.next_peer;
        self.next_peer += 1;
        self.out.push_back(Output::Route(Route::Add {
            ufrag: ufrag.clone(),
            key,
        }));
        self.peers.insert(
            key,
            PeerSlot {
                peer,
                ufrags: vec![ufrag],
                participant,
                role,
                connected: false,
                deadline: None,
                dirty: true,
            },
        );
        self.dirty.push(key);
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
                down: FxHashMap::default(),
                sources: HashMap::new(),
                wishes: HashMap::new(),
            },
        );
        self.calls.entry(call).or_default().insert(participant);
        let existing: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.call == call)
            .map(|(k, _)| k.clone())
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
        let fresh = credentials(&mut self.rng);
        let slot = self
            .peers
            .get_mut(&key)
            .ok_or(MediaError::NotFound("peer"))?;
        let publisher = slot
            .peer
            .publisher()
            .ok_or(MediaError::NotFound("publisher connection"))?;
        let answer = publisher.answer(offer, now, || fresh)?;
        let ufrag = publisher.ufrag().to_owned();
        self.restarted(key, ufrag);
        self.pump(key);
        Ok(answer)
    }

    /// Restarts ICE on the participant's receiving connection, from this
    /// side (`sfu.restart`): its next offer carries new credentials, and
    /// the client answers with new ones, checking again from wherever it
    /// is now. The old credentials are taken until it nominates a new path.
    pub(crate) fn restart_ice(
        &mut self,
        now: Instant,
        participant: Uuid,
    ) -> Result<(), MediaError> {
        self.at(now);
        let key = self
            .participants
            .get(&participant)
            .ok_or(MediaError::NotFound("participant"))?
            .subscriber;
        let (ufrag, pwd) = credentials(&mut self.rng);
        let restarts = self
            .peers
            .get_mut(&key)
            .and_then(|slot| slot.peer.subscriber())
            .ok_or(MediaError::NotFound("subscriber connection"))?
            .restart_ice(ufrag.clone(), pwd);
        if restarts {
            self.restarted(key, ufrag);
        }
        if let Some(p) = self.participants.get_mut(&participant) {
            p.renegotiate = true;
        }
        self.offer_if_needed(participant);
        Ok(())
    }

    /// Routes a peer's new ufrag after an ICE restart (nothing when it has
    /// it already), forgetting the one from before the last restart.
    fn restarted(&mut self, key: PeerKey, ufrag: String) {
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        if slot.ufrags.last() == Some(&ufrag) {
            return;
        }
        tracing::debug!(participant = %slot.participant, "a connection restarts ICE");
        slot.ufrags.push(ufrag.clone());
        self.out.push_back(Output::Route(Route::Add { ufrag, key }));
        if slot.ufrags.len() > 2 {
            let ufrag = slot.ufrags.remove(0);
            self.out
                .push_back(Output::Route(Route::Forget { ufrag, key }));
        }
    }

    /// What the subscriber asks of `publisher`'s track of `source`
    /// (`call.subscribe`), kept for a track published later: paused or not,
    /// and the size it draws it at. A resumed video track starts again at a
    /// keyframe, asked for as a new subscriber's is; a simulcast track
    /// moves to the layer that fits.
    pub(crate) fn set_subscription(
        &mut self,
        now: Instant,
        subscriber: Uuid,
        publisher: Uuid,
        source: Source,
        subscription: Subscription,
    ) -> Result<(), MediaError> {
        self.at(now);
        let p = self
            .participants
            .get_mut(&subscriber)
            .ok_or(MediaError::NotFound("participant"))?;
        if subscription == Subscription::default() {
            p.wishes.remove(&(publisher, source));
        } else {
            p.wishes.insert((publisher, source), subscription);
        }
        let mut resumed = Vec::new();
        let mut sized = Vec::new();
        for (key, down) in &mut p.down {
            let of_source =
                key.0 == publisher && self.tracks.get(key).is_some_and(|t| t.source == source);
            if !of_source {
                continue;
            }
            if down.set_paused(subscription.paused) && !subscription.paused {
                resumed.push(key.clone());
            }
            if down.max != subscription.max_size {
                down.max = subscription.max_size;
                sized.push(key.clone());
            }
        }
        for key in sized {
            self.retarget(subscriber, &key);
        }
        for key in resumed {
            let layer = self
                .participants
                .get(&subscriber)
                .and_then(|p| p.down.get(&key))
                .map_or(0, |d| d.target);
            self.request_keyframe(&key, layer, true);
        }
        Ok(())
    }

    /// Stops forwarding `publisher`'s tracks of `sources` to everyone here,
    /// now and for those it publishes later, or lets it go on: a video track
    /// goes on at a keyframe, asked for at once.
    fn stop_forwarding(&mut self, publisher: Uuid, sources: &[Source], stopped: bool) {
        let mut changed = false;
        for &source in sources {
            changed |= if stopped {
                self.stopped.insert((publisher, source))
            } else {
                self.stopped.remove(&(publisher, source))
            };
        }
        if !changed {
            return;
        }
        let mut resumed = Vec::new();
        for p in self.participants.values_mut() {
            for (key, down) in &mut p.down {
                let of_source = key.0 == publisher
                    && self
                        .tracks
                        .get(key)
                        .is_some_and(|t| sources.contains(&t.source));
                if of_source && down.set_stopped(stopped) && !down.held() {
                    resumed.push((key.clone(), down.target));
                }
            }
        }
        tracing::debug!(%publisher, ?sources, stopped, "a moderator stops or lets go on a publisher's tracks");
        for (key, layer) in resumed {
            self.request_keyframe(&key, layer, true);
        }
    }

    /// Moves a subscriber's down-track of a simulcast track to the layer
    /// that fits what it asked, among those sending now; a move asks for a
    /// keyframe of the new layer, at which the switch happens.
    fn retarget(&mut self, subscriber: Uuid, key: &TrackKey) {
        let now = self.now;
        let Some(track) = self.tracks.get(key).filter(|t| t.simulcast()) else {
            return;
        };
        let Some(down) = self
            .participants
            .get_mut(&subscriber)
            .and_then(|p| p.down.get_mut(key))
        else {
            return;
        };
        let target = down.cap.unwrap_or_else(|| track.layer_for(down.max, now));
        if down.current.is_none_or(|c| target >= c) {
            down.shed = false;
        }
        if target == down.target {
            return;
        }
        tracing::debug!(%subscriber, track = %key.1, from = down.target, to = target, current = ?down.current, "a subscriber's layer changes");
        down.target = target;
        if down.current != Some(target) && !down.held() {
            self.request_keyframe(key, target, true);
        }
    }

    /// Looks again at the layer each subscriber of a simulcast track
    /// receives: a layer that stopped sending is left for one that sends, and
    /// one that came back (or whose size is now known) is taken. A video
    /// track still waiting for the keyframe of a switch or a resume asks
    /// for it again.
    fn retarget_all(&mut self) {
        let pairs: Vec<(Uuid, TrackKey)> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.kind == Kind::Video)
            .flat_map(|(k, t)| t.subscribers.iter().map(move |s| (*s, k.clone())))
            .collect();
        if self.allocate_bandwidth {
            let subscribers: Vec<Uuid> = self.participants.keys().copied().collect();
            for subscriber in subscribers {
                self.allocate_for(subscriber);
            }
        }
        for (subscriber, key) in pairs {
            self.retarget(subscriber, &key);
            // A switch still waiting for its keyframe (the request was lost,
            // or the encoder ignored it) asks again, once per interval.
            let waiting = self
                .participants
                .get(&subscriber)
                .and_then(|p| p.down.get(&key))
                .filter(|d| !d.held() && (d.resuming || d.current.is_some_and(|c| c != d.target)))
                .map(|d| d.target);
            if let Some(layer) = waiting {
                self.request_keyframe(&key, layer, false);
            }
        }
        self.steer_layers();
    }

    /// Shares a subscriber's bandwidth, as its connection's congestion
    /// feedback estimates it, among the video it receives (see
    /// [`allocator`]): each down-track's layer is capped by what it is
    /// granted, and one granted nothing is held until it fits again, and
    /// the subscriber told. Without an estimate, nothing is capped.
    fn allocate_for(&mut self, subscriber: Uuid) {
        let now = self.now;
        let Some(p) = self.participants.get_mut(&subscriber) else {
            return;
        };
        let estimate = self
            .peers
            .get_mut(&p.subscriber)
            .and_then(|s| s.peer.subscriber())
            .and_then(|s| s.estimate());
        let mut audio = 0;
        let speaking: HashSet<Uuid> = p
            .down
            .keys()
            .filter_map(|key| self.tracks.get(key))
            .filter(|t| t.kind == Kind::Audio && t.level.speaking(now).is_some())
            .map(|t| t.key.0)
            .collect();
        let mut wanted: Vec<(TrackKey, allocator::Want)> = Vec::new();
        for (key, down) in &p.down {
            let Some(track) = self.tracks.get(key) else {
                continue;
            };
            if down.paused {
                continue;
            }
            if track.kind == Kind::Audio {
                // A microphone that went quiet (muted, or sending nothing)
                // costs nothing.
                if track.sending(now).next().is_some() {
                    audio += track.layers[0].bitrate;
                }
                continue;
            }
            let mut layers: Vec<u8> = track.available(now).collect();
            if layers.is_empty() {
                layers = (0..track.layers.len() as u8).collect();
            }
            let want = allocator::Want {
                source: track.source,
                speaking: speaking.contains(&key.0),
                held: down.starved,
                layers: layers
                    .into_iter()
                    .map(|l| (l, track.layers[usize::from(l)].bitrate))
                    .collect(),
                best: track.layer_for(down.max, now),
                current: (!down.starved).then_some(down.target),
            };
            wanted.push((key.clone(), want));
        }
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        let wants: Vec<allocator::Want> = wanted.iter().map(|(_, w)| w.clone()).collect();
        let grants: Vec<Option<u8>> = match estimate {
            Some(estimate) => allocator::allocate(estimate, audio, &wants),
            None => wants.iter().map(|w| Some(w.best)).collect(),
        };
        let call = p.call;
        let mut told = Vec::new();
        let mut resumed = Vec::new();
        for ((key, _), grant) in wanted.iter().zip(grants) {
            let Some(down) = p.down.get_mut(key) else {
                continue;
            };
            down.cap = estimate.and(grant);
            // The layer it receives now takes more than the whole estimate
            // and is to go down: it stops at its next frame rather than go
            // on until the smaller layer's keyframe (see `DownTrack::shed`).
            // Short of that, the switch waits for the keyframe, so a slow
            // one costs no freeze.
            let current_rate = down.current.and_then(|c| {
                let track = self.tracks.get(key)?;
                Some((c, track.layers.get(usize::from(c))?.bitrate))
            });
            down.shed = match (grant, current_rate, estimate) {
                (Some(g), Some((c, rate)), Some(e)) => g < c && rate > e,
                _ => false,
            };
            if down.set_starved(grant.is_none()) {
                let source = self.tracks.get(key).map_or(Source::Camera, |t| t.source);
                told.push(EngineEvent::BandwidthHeld {
                    call,
                    subscriber,
                    publisher: key.0,
                    source,
                    held: grant.is_none(),
                });
                if grant.is_some() {
                    resumed.push((key.clone(), down.target));
                }
            }
        }
        if let Some(e) = estimate {
            tracing::trace!(%subscriber, estimate = e, audio, "the subscriber's bandwidth is shared");
            // Short of what the sizes call for: the connection probes for more.
            let wanted = allocator::wanted(audio, &wants);
            let key = p.subscriber;
            if let Some(slot) = self.peers.get_mut(&key) {
                if slot.peer.subscriber().is_some_and(|s| s.want(now, wanted)) {
                    tracing::debug!(%subscriber, estimate = e, wanted, "a probe for bandwidth starts");
                    slot.touch(key, &mut self.dirty);
                }
            }
        }
        for event in told {
            tracing::debug!(?event, "a track is held for bandwidth, or let go");
            self.out.push_back(Output::Event(event));
        }
        for (key, layer) in resumed {
            self.request_keyframe(&key, layer, true);
        }
    }

    /// Tells publishers which of their simulcast layers to send: those a
    /// subscriber here receives or moves to (see [`UpTrack::steer`]). A
    /// call spread over several loops keeps every layer on, as subscribers
    /// on the other loops are not counted here.
    fn steer_layers(&mut self) {
        let now = self.now;
        let mut told = Vec::new();
        for (key, track) in &mut self.tracks {
            if !track.simulcast() || track.home.is_some() || self.spread.contains_key(&track.call) {
                continue;
            }
            let mut wanted = 0u8;
            for subscriber in &track.subscribers {
                let down = self
                    .participants
                    .get(subscriber)
                    .and_then(|p| p.down.get(key))
                    .filter(|d| !d.held());
                if let Some(d) = down {
                    wanted |= 1 << d.target;
                    if let Some(current) = d.current {
                        wanted |= 1 << current;
                    }
                }
            }
            if let Some(active) = track.steer(wanted, now) {
                told.push(EngineEvent::Layers {
                    call: track.call,
                    publisher: key.0,
                    mid: track.mid.clone(),
                    active,
                });
            }
        }
        for event in told {
            tracing::debug!(?event, "a publisher's layers change");
            self.out.push_back(Output::Event(event));
        }
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
        slot.peer
            .subscriber()
            .ok_or(MediaError::NotFound("subscriber connection"))?
            .accept_answer(answer, now)?;
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
            self.out.push_back(Output::Unplaced {
                participant,
                placement: p.placement,
            });
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
                self.transmits.push_back((to, d));
            }
            let mut ufrags = slot.ufrags;
            let latest = ufrags.pop().unwrap_or_default();
            for ufrag in ufrags {
                self.out
                    .push_back(Output::Route(Route::Forget { ufrag, key }));
            }
            self.out
                .push_back(Output::Route(Route::Remove { ufrag: latest, key }));
        }
    }

    fn unpublish(&mut self, key: &TrackKey) {
        let Some(track) = self.tracks.remove(key) else {
            return;
        };
        if track.home.is_none() {
            for &to in self.spread.get(&track.call).map_or(&[][..], |s| &s.others) {
                let key = track.key.clone();
                self.out.push_back(Output::Relay {
                    to,
                    relay: Relay::Closed { key },
                });
            }
        }
        for subscriber in track.subscribers {
            let Some(p) = self.participants.get_mut(&subscriber) else {
                continue;
            };
            let Some(down) = p.down.remove(key) else {
                continue;
            };
            let sub = p.subscriber;
            if let Some(slot) = self.peers.get_mut(&sub) {
                if let Some(sub) = slot.peer.subscriber() {
                    sub.remove_sender(down.ssrc());
                }
                slot.touch(sub, &mut self.dirty);
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
        let Some(sub) = slot.peer.subscriber() else {
            return;
        };
        let ssrc: u32 = self.rng.gen();
        // Video is resent on its own stream where the subscriber negotiates RTX.
        let rtx = (track.kind == Kind::Video).then(|| self.rng.gen());
        let stream = key.0.simple().to_string();
        let name = format!("{stream}-{}", key.1);
        sub.add_sender(track.kind, &track.codec, ssrc, rtx, &stream, &name);
        slot.touch(p.subscriber, &mut self.dirty);
        let mut down = DownTrack::new(ssrc, &track.codec, name);
        let wish = p
            .wishes
            .get(&(key.0, track.source))
            .copied()
            .unwrap_or_default();
        down.paused = wish.paused;
        down.stopped = self.stopped.contains(&(key.0, track.source));
        down.max = wish.max_size;
        down.target = track.layer_for(wish.max_size, self.now);
        if track.simulcast() && track.vp8() {
            down.vp8 = Some(IdMunger::default());
        }
        p.down.insert(key.clone(), down);
        p.renegotiate = true;
        track.subscribers.push(participant);
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
        let Some(sub) = slot.peer.subscriber() else {
            return;
        };
        if sub.awaiting_answer() {
            return; // offered again once the answer is in
        }
        match sub.offer() {
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
                self.out
                    .push_back(Output::Event(EngineEvent::SubscriberOffer {
                        participant,
                        sdp,
                        tracks,
                    }));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %participant, "offering failed"),
        }
        self.pump(key);
    }

    fn datagram(&mut self, key: PeerKey, datagram: BytesMut, from: SocketAddr) {
        let now = self.now;
        let Some(slot) = self.peers.get_mut(&key) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        let check = datagram.first().is_some_and(|b| *b < 4);
        if !slot.peer.handle_datagram(datagram, from, now) {
            self.stats.datagrams_dropped += 1;
            tracing::trace!(%from, "a datagram was refused");
        } else if check {
            // Before the answer goes out, so the demux knows the address
            // by the time the client's next datagram comes from it.
            self.out
                .push_back(Output::Route(Route::Learn { from, key }));
        }
        self.pump(key);
    }

    /// When to give the loop [`Input::Timeout`]: a peer's timer, a held
    /// keyframe request, or the speakers' tick, which always comes. It asks
    /// the timers of the peers touched since the last time, so the caller
    /// asks once before it waits, not after every input.
    pub(crate) fn poll_timeout(&mut self) -> Instant {
        self.refresh_deadlines();
        while let Some(&Reverse((at, key))) = self.deadlines.peek() {
            if self.peers.get(&key).is_some_and(|s| s.deadline == Some(at)) {
                break;
            }
            self.deadlines.pop();
        }
        let peers = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let keyframes = self.tracks.values().filter_map(|t| t.keyframes.due()).min();
        peers
            .into_iter()
            .chain(keyframes)
            .fold(self.next_speaking, Instant::min)
    }

    /// Asks the timers of the peers touched since the last time. The rest
    /// cannot have moved: a peer's timer changes only when it is handed
    /// something.
    fn refresh_deadlines(&mut self) {
        // Entries a peer's newer timer replaced wait in the heap until they
        // surface; when they outnumber the peers, the heap is rebuilt from
        // the peers' timers, so it stays within a few entries per peer.
        if self.deadlines.len() > 4 * self.peers.len() + 64 {
            self.deadlines = self
                .peers
                .iter()
                .filter_map(|(key, slot)| slot.deadline.map(|at| Reverse((at, *key))))
                .collect();
        }
        for key in self.dirty.drain(..) {
            let Some(slot) = self.peers.get_mut(&key) else {
                continue;
            };
            slot.dirty = false;
            let next = slot.peer.poll_timeout();
            if next != slot.deadline {
                slot.deadline = next;
                if let Some(at) = next {
                    self.deadlines.push(Reverse((at, key)));
                }
            }
        }
    }

    fn timeouts(&mut self, now: Instant) {
        if now >= self.next_speaking {
            // A tick missed while the loop was busy is not made up for.
            self.next_speaking = now + SPEAKING_EVERY;
            self.announce_speakers(now);
            self.retarget_all();
        }
        let keyframes: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.keyframes.due().is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keyframes {
            self.request_keyframe(&key, None, true);
        }
        self.refresh_deadlines();
        let mut due = Vec::new();
        while let Some(&Reverse((at, key))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(slot) = self.peers.get_mut(&key).filter(|s| s.deadline == Some(at)) {
                slot.deadline = None;
                due.push(key);
            }
        }
        for key in due {
            if let Some(slot) = self.peers.get_mut(&key) {
                slot.peer.handle_timeout(now);
            }
            self.pump(key);
        }
    }

    /// Sends what a peer has to send and acts on what it reported.
    fn pump(&mut self, key: PeerKey) {
        if let Some(slot) = self.peers.get_mut(&key) {
            slot.touch(key, &mut self.dirty);
        }
        loop {
            let Some(slot) = self.peers.get_mut(&key) else {
                return;
            };
            while let Some(out) = slot.peer.poll_transmit() {
                self.transmits.push_back(out);
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
                    track,
                    kind,
                    codec,
                    layers,
                    mid,
                    rids,
                    ..
                } if role == Role::Publisher => {
                    let source = self
                        .participants
                        .get_mut(&participant)
                        .and_then(|p| p.sources.remove(&track))
                        // A source of the other kind is not taken: audio
                        // named `camera` would escape a moderator's mute.
                        .filter(|s| s.fits(kind))
                        .unwrap_or(Source::default_for(kind));
                    let Some(call) = self.participants.get(&participant).map(|p| p.call) else {
                        continue;
                    };
                    let key = Arc::new((participant, track));
                    let mut up = UpTrack::new(key.clone(), call, None, kind, source, codec, layers);
                    up.mid = mid;
                    up.rids = rids;
                    if let Some(spread) = self.spread.get(&call) {
                        for &to in &spread.others {
                            let relay = up.opened(self.index, spread.generation);
                            self.out.push_back(Output::Relay { to, relay });
                        }
                    }
                    self.tracks.insert((*key).clone(), up);
                    self.open_here(call, &key);
                }
                PeerEvent::TrackClosed { track } if role == Role::Publisher => {
                    self.unpublish(&(participant, track));
                }
                PeerEvent::KeyframeRequested { media_ssrc } if role == Role::Subscriber => {
                    let source = self.participants.get(&participant).and_then(|p| {
                        p.down
                            .iter()
                            .find(|(_, d)| d.ssrc() == media_ssrc)
                            .map(|(k, d)| (k.clone(), d.current.unwrap_or(d.target)))
                    });
                    if let Some((source, layer)) = source {
                        self.request_keyframe(&source, layer, false);
                    }
                }
                PeerEvent::Connected => {
                    slot.connected = true;
                    if role == Role::Subscriber {
                        self.keyframes_for(participant);
                    }
                }
                PeerEvent::Failed => {
                    self.out
                        .push_back(Output::Event(EngineEvent::Disconnected { participant }));
                    self.leave(participant);
                    return;
                }
                _ => {}
            }
        }
    }

    /// Offers a track to the participants of its call on this loop.
    fn open_here(&mut self, call: Uuid, key: &TrackKey) {
        let members: Vec<Uuid> = self
            .calls
            .get(&call)
            .map(|m| m.iter().copied().filter(|m| *m != key.0).collect())
            .unwrap_or_default();
        for member in members {
            self.subscribe(member, key);
            self.offer_if_needed(member);
        }
    }

    /// Takes a call's new set of loops: a loop that joined hears of every
    /// track published here, and the tracks of a loop that left go.
    fn spread(&mut self, call: Uuid, generation: u64, loops: Vec<usize>) {
        let here = self.index;
        // Whether it told who speaks until now: as the call's first loop,
        // or as its only one.
        let announced = match self.spread.get(&call) {
            Some(s) => s.others.iter().all(|&o| o > here),
            None => self.calls.contains_key(&call),
        };
        if loops.first().is_some_and(|&first| first == here) && !announced {
            // This loop now tells who speaks in the call.
            self.speakers.forget(call);
        }
        if !loops.contains(&here) {
            self.spread.remove(&call);
            self.drop_mirrors(call, |_| true);
            return;
        }
        let others: Vec<usize> = loops.into_iter().filter(|l| *l != here).collect();
        let before = match self.spread.get(&call) {
            Some(s) if s.generation >= generation => return,
            Some(s) => s.others.clone(),
            None => Vec::new(),
        };
        let since = self.spread.get(&call).map_or(generation, |s| s.since);
        let joined: Vec<usize> = others
            .iter()
            .copied()
            .filter(|l| !before.contains(l))
            .collect();
        for track in self.tracks.values() {
            if track.call == call && track.home.is_none() {
                for &to in &joined {
                    let relay = track.opened(here, generation);
                    self.out.push_back(Output::Relay { to, relay });
                }
            }
        }
        self.drop_mirrors(call, |home| !others.contains(&home));
        if others.is_empty() {
            self.spread.remove(&call);
        } else {
            self.spread.insert(
                call,
                Spread {
                    generation,
                    since,
                    others,
                },
            );
        }
    }

    /// Forgets the tracks of a call mirrored from the loops `gone` names.
    fn drop_mirrors(&mut self, call: Uuid, gone: impl Fn(usize) -> bool) {
        let mirrors: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.call == call && t.home.is_some_and(&gone))
            .map(|(k, _)| k.clone())
            .collect();
        for key in mirrors {
            self.unpublish(&key);
        }
    }

    /// Takes a word from another loop of a call.
    fn relayed(&mut self, relay: Relay) {
        match relay {
            Relay::Opened {
                from,
                generation,
                call,
                key,
                kind,
                source,
                codec,
                layers,
            } => {
                let current = self
                    .spread
                    .get(&call)
                    .is_some_and(|s| generation >= s.since && s.others.contains(&from));
                if !current {
                    return;
                }
                // A publisher back on another loop with the same track:
                // the new home's track replaces the old mirror.
                match self.tracks.get(&*key).map(|t| t.home) {
                    Some(Some(home)) if home != from => self.unpublish(&key),
                    Some(_) => return,
                    None => {}
                }
                let up = UpTrack::new(key.clone(), call, Some(from), kind, source, codec, layers);
                self.tracks.insert((*key).clone(), up);
                self.open_here(call, &key);
            }
            Relay::Closed { key } => {
                if self.tracks.get(&*key).is_some_and(|t| t.home.is_some()) {
                    self.unpublish(&key);
                }
            }
            Relay::Keyframe { key, layer, force } => {
                if self.tracks.get(&*key).is_some_and(|t| t.home.is_none()) {
                    self.request_keyframe(&key, layer, force);
                }
            }
        }
    }

    /// Tells signaling who speaks in each call, when that changed. Every
    /// loop of a call hears every track, so the first of them tells.
    fn announce_speakers(&mut self, now: Instant) {
        let (spread, here) = (&self.spread, self.index);
        let announces = |call: &Uuid| {
            spread
                .get(call)
                .is_none_or(|s| s.others.iter().all(|&o| o > here))
        };
        let stopped = &self.stopped;
        // A track a moderator stopped is heard by no one: silent, though
        // its call is still looked at, so its speaker's turn ends.
        let tracks = self.tracks.iter().filter_map(|((publisher, _), track)| {
            let heard = !stopped.contains(&(*publisher, track.source));
            let level = heard.then_some(&track.level);
            announces(&track.call).then_some((track.call, *publisher, level))
        });
        let events = self.speakers.tick(now, tracks);
        for event in events {
            self.out.push_back(Output::Event(event));
        }
    }

    /// Sends a publisher's packet to every subscriber of the track.
    fn forward(&mut self, key: &TrackKey, packet: &Rtp) {
        let now = self.now;
        let Some(track) = self.tracks.get_mut(key) else {
            return;
        };
        track.observe(packet, now);
        let track = &*track;
        // Read once, and only while someone waits for a packet to start at
        // (or, for VP8 simulcast, to rewrite).
        let mut playable = None;
        let mut descriptor = None;
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
            // Sending moves none of a subscriber's timers (its reports and
            // liveness follow the clock and what it receives), so the copy
            // leaves it untouched: with 1,000 subscribers, 1,000 timers
            // not asked again per packet. Debug builds check it.
            #[cfg(debug_assertions)]
            let timer = slot.peer.poll_timeout();
            let starts = || *playable.get_or_insert_with(|| track.starts_playback(packet));
            let read = || *descriptor.get_or_insert_with(|| vp8::descriptor(&packet.payload));
            let was = down.current;
            let decision = forwarder::decide(down, packet, slot.connected, starts, read, now);
            if down.current != was {
                tracing::debug!(%subscriber, track = %key.1, from = ?was, to = ?down.current, "a subscriber's layer switched");
            }
            let Some(rewrite) = decision.rewrite else {
                continue;
            };
            let Some(sub) = slot.peer.subscriber() else {
                continue;
            };
            match sub.send_rtp(
                now,
                packet.marker,
                rewrite,
                packet.audio_level,
                &packet.payload,
                decision.vp8,
            ) {
                Ok(()) => {
                    self.stats.packets_forwarded += 1;
                    if decision.starts_playing {
                        down.playing = true;
                        self.out.push_back(Output::Event(EngineEvent::Receiving {
                            call: p.call,
                            subscriber: *subscriber,
                            publisher: key.0,
                            kind: track.kind,
                            source: track.source,
                        }));
                    }
                }
                Err(e) => tracing::trace!(error = %e, "forwarding a packet failed"),
            }
            while let Some(out) = slot.peer.poll_transmit() {
                self.transmits.push_back(out);
            }
            #[cfg(debug_assertions)]
            debug_assert_eq!(
                slot.peer.poll_timeout(),
                timer,
                "sending moved a subscriber's timer"
            );
        }
        // Once to each other loop of the call, for its participants there.
        if track.home.is_none() {
            if let Some(spread) = self.spread.get(&track.call) {
                for &to in &spread.others {
                    self.stats.packets_relayed += 1;
                    self.out.push_back(Output::RelayRtp {
                        to,
                        key: track.key.clone(),
                        packet: packet.clone(),
                    });
                }
            }
        }
    }

    /// Asks the publishers of everything a participant receives for a
    /// keyframe now, so its decoders start at once.
    fn keyframes_for(&mut self, participant: Uuid) {
        // Tracks it already plays need none: a re-offer that adds one track
        // asks for that track's keyframe, not for every publisher's.
        let sources: Vec<(TrackKey, u8)> = self
            .participants
            .get(&participant)
            .map(|p| {
                p.down
                    .iter()
                    .filter(|(_, d)| !d.playing)
                    .map(|(k, d)| (k.clone(), d.target))
                    .collect()
            })
            .unwrap_or_default();
        for (source, layer) in sources {
            self.request_keyframe(&source, layer, true);
        }
    }

    /// Asks a track's publisher for a keyframe of one layer (`None`: those
    /// waiting), at most once per interval unless `force` (a new subscriber
    /// needs its first frame now, or one moves to this layer); see
    /// [`UpTrack::ask_keyframe`] and [`keyframe_requests`] for when a
    /// request waits or merges.
    fn request_keyframe(&mut self, key: &TrackKey, layer: impl Into<Option<u8>>, force: bool) {
        let Some(track) = self.tracks.get_mut(key) else {
            return;
        };
        if track.kind != Kind::Video {
            return;
        }
        let now = self.now;
        // A mirror passes a new subscriber's request on at once and merges
        // the others over the interval; its home spaces and merges them
        // again with its own, as one encoder's.
        if let Some(to) = track.home {
            let layers = if force {
                let asked = layer.into().map_or(0, |l| 1 << l);
                asked | std::mem::take(&mut track.keyframe_layers)
            } else {
                track.ask_keyframe(layer.into(), now, false, self.keyframe_interval)
            };
            for layer in (0..8).filter(|l| layers & (1 << l) != 0) {
                let key = track.key.clone();
                self.out.push_back(Output::Relay {
                    to,
                    relay: Relay::Keyframe { key, layer, force },
                });
            }
            return;
        }
        let layers = track.ask_keyframe(layer.into(), now, force, self.keyframe_interval);
        if layers == 0 {
            return;
        }
        tracing::debug!(track = %key.1, layers, force, "keyframes are asked for");
        let Some(publisher) = self.participants.get(&key.0).and_then(|p| p.publisher) else {
            return;
        };
        if let Some(slot) = self.peers.get_mut(&publisher) {
            slot.touch(publisher, &mut self.dirty);
            for layer in (0..8).filter(|l| layers & (1 << l) != 0) {
                let requested = match slot.peer.publisher() {
                    Some(peer) => peer.request_keyframe(&key.1, Some(layer)),
                    None => Err(MediaError::NotFound("publisher connection")),
                };
                match requested {
                    Ok(()) => self.stats.keyframe_requests += 1,
                    Err(e) => tracing::debug!(error = %e, "requesting a keyframe failed"),
                }
            }
            while let Some(out) = slot.peer.poll_transmit() {
                self.transmits.push_back(out);
            }
        }
    }
}
