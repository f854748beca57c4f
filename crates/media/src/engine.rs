//! The engine: one UDP socket shared by every peer, a receive loop that
//! routes each datagram to the media loop owning its peer, and a small fixed
//! number of media loops (about one per core), each owning the peers of the
//! calls placed on it.
//!
//! Every call lives on one media loop, so forwarding a packet from a
//! publisher to its subscribers never leaves the loop: no lock, no task and
//! no channel hop between receiving a packet and sending its copies. The only
//! hop is the receive loop handing a datagram to its loop, which costs one
//! queue push and no allocation (datagrams are cut from a shared buffer).
//!
//! Each participant has two peer connections, after the pattern of LiveKit:
//! a *publisher* connection that the client offers (its microphone and
//! camera) and a *subscriber* connection that the engine offers (everyone
//! else's tracks). Each side only ever offers on its own connection, so the
//! two never offer at once: glare cannot happen.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::demux::Demux;
use crate::peer::Kind;
use crate::sfu::{Command, Inbound, PeerKey, RouteUpdate, Sfu};
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
    /// Media loops; each owns the calls placed on it. 0: one per core.
    pub loops: usize,
    /// Datagrams queued for one media loop before the receive loop drops
    /// more (UDP semantics: a loop that falls behind loses, never blocks).
    pub loop_queue: usize,
    /// The socket's send and receive buffers, in bytes (the kernel caps them).
    pub socket_buffer: usize,
    /// Packets kept per forwarded video stream to resend on a subscriber's
    /// NACK: a power of two from 64 to 32,768.
    pub retransmit_history: u16,
    /// How often a packet is resent to one subscriber, and how much of its
    /// stream's rate retransmissions may add (see [`crate::retransmit`]).
    pub retransmit_limits: crate::RetransmitLimits,
    /// Keyframe requests forwarded to a publisher per track, at most one per this interval.
    pub keyframe_interval: Duration,
    /// A peer silent this long counts as disconnected, and after
    /// `peer_failed` more as gone: it leaves the call.
    pub peer_disconnected: Duration,
    pub peer_failed: Duration,
}

impl EngineConfig {
    /// Whether `packets` is a history the NACK responder can keep: a power
    /// of two from 64 to 32,768 (anything else would silently keep none).
    pub fn retransmit_history_valid(packets: u16) -> bool {
        (64..=32_768).contains(&packets) && packets.is_power_of_two()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7882)),
            advertised_ips: Vec::new(),
            loops: 0,
            loop_queue: 4096,
            socket_buffer: 4 << 20,
            retransmit_history: 512,
            retransmit_limits: crate::RetransmitLimits::default(),
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
    /// changed tracks); answer with [`Engine::subscriber_answer`]. `tracks`
    /// says whose each offered media section is.
    SubscriberOffer {
        participant: Uuid,
        sdp: String,
        tracks: Vec<OfferedTrack>,
    },
    /// `subscriber` can now play `publisher`'s track of `kind`: its
    /// connection is up and the first keyframe (for audio, the first packet)
    /// went out to it. Sent once per subscription.
    Receiving {
        call: Uuid,
        subscriber: Uuid,
        publisher: Uuid,
        kind: Kind,
        source: Source,
    },
    /// A participant's media connection failed or closed.
    Disconnected { participant: Uuid },
    /// Who is speaking in a call now, loudest first, with a loudness from 0
    /// (silence) to 127; sent when the set changes, at most every 250 ms.
    Speaking {
        call: Uuid,
        speakers: Vec<(Uuid, u8)>,
    },
}

/// What a published track carries, as its publisher declared it (or as its
/// kind suggests: audio is the microphone, video the camera).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Microphone,
    Camera,
    Screen,
    ScreenAudio,
}

impl Source {
    /// The source a track of `kind` has when its publisher says nothing.
    pub fn default_for(kind: Kind) -> Source {
        match kind {
            Kind::Audio => Source::Microphone,
            Kind::Video => Source::Camera,
        }
    }
}

/// One media section of an offer to a subscriber: whose track it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// The section's `a=mid`.
    pub mid: String,
    /// The participant who publishes it.
    pub publisher: Uuid,
    pub kind: Kind,
    pub source: Source,
}

/// Counters of the engine, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Media loops running.
    pub loops: usize,
    pub participants: usize,
    pub peers: usize,
    pub tracks: usize,
    pub packets_in: u64,
    pub packets_forwarded: u64,
    pub datagrams_dropped: u64,
    pub keyframe_requests: u64,
}

impl EngineStats {
    fn add(&mut self, other: &EngineStats) {
        self.participants += other.participants;
        self.peers += other.peers;
        self.tracks += other.tracks;
        self.packets_in += other.packets_in;
        self.packets_forwarded += other.packets_forwarded;
        self.datagrams_dropped += other.datagrams_dropped;
        self.keyframe_requests += other.keyframe_requests;
    }
}

/// Which media loop holds each call and participant. Touched when people
/// join and leave, never per packet.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// The loop of each call, and how many of its participants are in the engine.
    calls: HashMap<Uuid, (usize, usize)>,
    participants: HashMap<Uuid, Placed>,
    /// How many loops there are.
    loops: usize,
    /// Numbers placements, so a stale removal can be told from a current one.
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    at: usize,
    call: Uuid,
    id: u64,
}

impl Placement {
    fn new(loops: usize) -> Self {
        Placement {
            loops,
            ..Default::default()
        }
    }

    /// Participants on loop `at`.
    fn load(&self, at: usize) -> usize {
        self.calls
            .values()
            .filter(|(on, _)| *on == at)
            .map(|(_, count)| count)
            .sum()
    }

    /// Places a participant on its call's loop, or the call on the least
    /// loaded one; returns the loop and the placement's number.
    fn place(&mut self, call: Uuid, participant: Uuid) -> Result<(usize, u64), MediaError> {
        if self.participants.contains_key(&participant) {
            return Err(MediaError::Conflict("already in a call".into()));
        }
        let at = match self.calls.get_mut(&call) {
            Some((at, count)) => {
                *count += 1;
                *at
            }
            None => {
                let at = (0..self.loops).min_by_key(|&i| self.load(i)).unwrap_or(0);
                self.calls.insert(call, (at, 1));
                at
            }
        };
        self.next += 1;
        let id = self.next;
        self.participants
            .insert(participant, Placed { at, call, id });
        Ok((at, id))
    }

    fn loop_of(&self, participant: Uuid) -> Option<usize> {
        self.participants.get(&participant).map(|p| p.at)
    }

    /// Forgets the placement `id` of a participant, unless a newer one replaced it.
    pub(crate) fn remove_placed(&mut self, participant: Uuid, id: u64) {
        if self
            .participants
            .get(&participant)
            .is_some_and(|p| p.id == id)
        {
            self.remove(participant);
        }
    }

    /// Forgets a participant, and its call once the last one is gone;
    /// returns the loop it was on.
    pub(crate) fn remove(&mut self, participant: Uuid) -> Option<usize> {
        let Placed { at, call, .. } = self.participants.remove(&participant)?;
        if let Some((_, count)) = self.calls.get_mut(&call) {
            *count -= 1;
            if *count == 0 {
                self.calls.remove(&call);
            }
        }
        Some(at)
    }
}

/// The placement, shared by the handle and the loops.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPlacement(Arc<Mutex<Placement>>);

impl SharedPlacement {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Placement> {
        // A panic while holding it leaves plain maps behind, still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on a running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    loops: Arc<[mpsc::UnboundedSender<Command>]>,
    placement: SharedPlacement,
    /// Datagrams the receive loop dropped (unknown sender, full loop queue).
    unrouted: Arc<AtomicU64>,
    local: SocketAddr,
}

impl Engine {
    /// Binds the socket and starts the receive loop and the media loops on
    /// the current runtime.
    pub async fn start(
        config: EngineConfig,
    ) -> Result<(Engine, mpsc::UnboundedReceiver<EngineEvent>), MediaError> {
        if !EngineConfig::retransmit_history_valid(config.retransmit_history) {
            return Err(MediaError::Config(format!(
                "the retransmission history must be a power of two from 64 to 32768, not {}",
                config.retransmit_history
            )));
        }
        if !config.retransmit_limits.valid() {
            return Err(MediaError::Config(format!(
                "retransmissions must be allowed 1 to 10 times per packet and 1 to 100 % of a \
                 stream, not {} times and {} %",
                config.retransmit_limits.attempts, config.retransmit_limits.share_percent
            )));
        }
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        crate::udp::size_buffers(&socket, config.socket_buffer);
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
        let loops = match config.loops {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let placement = SharedPlacement(Arc::new(Mutex::new(Placement::new(loops))));
        let (events, events_rx) = mpsc::unbounded_channel();
        let (routes, routes_rx) = mpsc::unbounded_channel();
        let mut commands = Vec::with_capacity(loops);
        let mut inbound = Vec::with_capacity(loops);
        for index in 0..loops {
            let (command_tx, command_rx) = mpsc::unbounded_channel();
            let (inbound_tx, inbound_rx) = mpsc::channel(config.loop_queue.max(16));
            let sfu = Sfu::new(
                index,
                advertised.clone(),
                &config,
                events.clone(),
                routes.clone(),
                placement.clone(),
            );
            tokio::spawn(crate::sfu::run(socket.clone(), command_rx, inbound_rx, sfu));
            commands.push(command_tx);
            inbound.push(inbound_tx);
        }
        drop(routes);
        let unrouted = Arc::new(AtomicU64::new(0));
        tokio::spawn(receive(socket, routes_rx, inbound, unrouted.clone()));
        Ok((
            Engine {
                loops: commands.into(),
                placement,
                unrouted,
                local,
            },
            events_rx,
        ))
    }

    /// The socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn ask<T>(
        &self,
        at: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.loops
            .get(at)
            .ok_or(MediaError::Stopped)?
            .send(make(tx))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)
    }

    fn loop_of(&self, participant: Uuid) -> Result<usize, MediaError> {
        self.placement
            .lock()
            .loop_of(participant)
            .ok_or(MediaError::NotFound("participant"))
    }

    /// Adds a participant to a call; the others' tracks will be offered to it.
    pub async fn join(&self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        let (at, placement) = self.placement.lock().place(call, participant)?;
        let joined = self
            .ask(at, |reply| Command::Join {
                call,
                participant,
                placement,
                reply,
            })
            .await
            .and_then(|r| r);
        if joined.is_err() {
            self.placement.lock().remove_placed(participant, placement);
        }
        joined
    }

    /// Answers the participant's offer of its publisher connection.
    pub async fn publish(&self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        self.publish_sources(participant, offer, Vec::new()).await
    }

    /// Answers the participant's offer of its publisher connection, with
    /// what its media sections carry (by `mid`); sections not named carry
    /// the default of their kind ([`Source::default_for`]).
    pub async fn publish_sources(
        &self,
        participant: Uuid,
        offer: String,
        sources: Vec<(String, Source)>,
    ) -> Result<String, MediaError> {
        let at = self.loop_of(participant)?;
        self.ask(at, |reply| Command::Publish {
            participant,
            offer,
            sources,
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
        let at = self.loop_of(participant)?;
        self.ask(at, |reply| Command::SubscriberAnswer {
            participant,
            answer,
            reply,
        })
        .await?
    }

    /// Removes a participant and its tracks at once. It may join again
    /// straight away, with new connections.
    pub fn leave(&self, participant: Uuid) {
        self.leave_all(&[participant]);
    }

    /// Removes participants and their tracks at once; those who stay are
    /// offered the change once, and none of those leaving is offered
    /// anything more.
    pub fn leave_all(&self, participants: &[Uuid]) {
        let mut by_loop: HashMap<usize, Vec<Uuid>> = HashMap::new();
        {
            let mut placement = self.placement.lock();
            for participant in participants {
                if let Some(at) = placement.remove(*participant) {
                    by_loop.entry(at).or_default().push(*participant);
                }
            }
        }
        for (at, participants) in by_loop {
            if let Some(commands) = self.loops.get(at) {
                let _ = commands.send(Command::Leave { participants });
            }
        }
    }

    /// The counters of every loop, summed.
    pub async fn stats(&self) -> Result<EngineStats, MediaError> {
        let mut total = EngineStats {
            loops: self.loops.len(),
            datagrams_dropped: self.unrouted.load(Ordering::Relaxed),
            ..Default::default()
        };
        for at in 0..self.loops.len() {
            let stats = self.ask(at, |reply| Command::Stats { reply }).await?;
            total.add(&stats);
        }
        Ok(total)
    }
}

/// Datagrams are received into one buffer and cut off it, so handing one to
/// its loop allocates nothing; the buffer is renewed when it runs short.
const RECEIVE_BUFFER: usize = 256 * 1024;
/// The largest datagram taken whole; longer ones are truncated by the
/// kernel and then refused by the stack (nothing in WebRTC is this long).
const MAX_DATAGRAM: usize = 2048;

/// The receive loop: reads the socket and hands each datagram to the loop
/// owning its peer. Route changes come first, so a peer is known before the
/// answer that lets its client send reaches signaling.
async fn receive(
    socket: Arc<UdpSocket>,
    mut routes: mpsc::UnboundedReceiver<RouteUpdate>,
    loops: Vec<mpsc::Sender<Inbound>>,
    unrouted: Arc<AtomicU64>,
) {
    let mut demux: Demux<(usize, PeerKey)> = Demux::new(8);
    let mut buf = BytesMut::with_capacity(RECEIVE_BUFFER);
    loop {
        if buf.capacity() < MAX_DATAGRAM {
            buf = BytesMut::with_capacity(RECEIVE_BUFFER);
        }
        tokio::select! {
            biased;
            update = routes.recv() => match update {
                Some(RouteUpdate::Add { ufrag, at, key }) => demux.add(&ufrag, (at, key)),
                Some(RouteUpdate::Remove { ufrag, at, key }) => demux.remove(&ufrag, (at, key)),
                // Every media loop has stopped.
                None => break,
            },
            received = socket.recv_buf_from(&mut buf) => {
                let Ok((_, from)) = received else {
                    buf.clear();
                    continue;
                };
                let datagram = buf.split();
                let Some((at, key)) = demux.route(&datagram, from) else {
                    unrouted.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let queued = loops
                    .get(at)
                    .is_some_and(|l| l.try_send(Inbound { key, from, datagram }).is_ok());
                if !queued {
                    unrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_histories_are_powers_of_two_in_range() {
        for ok in [64, 512, 32_768] {
            assert!(EngineConfig::retransmit_history_valid(ok), "{ok}");
        }
        for bad in [0, 32, 63, 100, 1000, 65_535] {
            assert!(!EngineConfig::retransmit_history_valid(bad), "{bad}");
        }
    }

    #[test]
    fn calls_go_to_the_least_loaded_loop_and_stay_whole() {
        let mut placement = Placement::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let people: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let first = placement.place(a, people[0]).unwrap().0;
        assert_eq!(placement.place(a, people[1]).unwrap().0, first);
        let (_, third) = placement.place(a, people[2]).unwrap();
        let second = placement.place(b, people[3]).unwrap().0;
        assert_ne!(first, second, "a new call goes to the idle loop");
        assert!(matches!(
            placement.place(b, people[0]),
            Err(MediaError::Conflict(_))
        ));
        // Left and placed again at once: the old placement's late removal changes nothing.
        placement.remove(people[2]);
        let (_, again) = placement.place(a, people[2]).unwrap();
        placement.remove_placed(people[2], third);
        assert_eq!(placement.loop_of(people[2]), Some(first));
        placement.remove_placed(people[2], again);
        assert_eq!(placement.loop_of(people[2]), None);
        for p in &people[..2] {
            placement.remove(*p);
        }
        assert!(
            !placement.calls.contains_key(&a),
            "an empty call is forgotten"
        );
        assert_eq!(placement.load(first), 0);
        let c = Uuid::new_v4();
        assert_eq!(placement.place(c, people[4]).unwrap().0, first);
    }
}
