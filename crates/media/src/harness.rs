//! One media loop driven without a socket: datagrams in through the same
//! demux as the receive loop's, the loop's outputs gathered after every
//! input, time passed in. The loop sees only this harness's clock, which moves when
//! the caller says ([`Loop::advance`], [`Loop::timeouts`], [`Loop::datagram_at`]).
//! The fuzz target and the benches run the engine this way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::demux::Demux;
use crate::events::{EngineEvent, EngineStats};
use crate::peer::dtls_srtp::Identity;
use crate::peer::rtcp::WallClock;
use crate::sfu::{Input, Output, PeerKey, Route, Sfu};
use crate::MediaError;

/// The address the loop's peers answer from.
pub const ENGINE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);

/// The seed of the loop's random choices (ufrags, SSRCs): a run replays.
const SEED: u64 = 0x5EED;

/// A word or a packet one loop of a call has for another, as the engine
/// would carry it: hand it to [`Loop::hand`] of the loop numbered `to`.
pub struct Handoff {
    pub to: usize,
    input: Input,
}

/// A media loop and the demux in front of it.
pub struct Loop {
    sfu: Sfu,
    index: usize,
    /// What the loop has for other loops, until taken.
    handoffs: Vec<Handoff>,
    demux: Demux<PeerKey>,
    /// Datagrams the loop sent, until taken.
    outbox: Vec<(SocketAddr, BytesMut)>,
    events: Vec<EngineEvent>,
    /// The ICE ufrags of the loop's peers.
    ufrags: Vec<String>,
    now: Instant,
    /// Datagrams the demux found no peer for.
    unrouted: u64,
    next_placement: u64,
}

impl Loop {
    pub fn new() -> Loop {
        Loop::numbered(0, Instant::now())
    }

    /// The loop numbered `index` of several, starting at `now`: loops that
    /// share a call must share a clock.
    pub fn numbered(index: usize, now: Instant) -> Loop {
        let identity = Identity::generate().expect("a certificate");
        // The wall clock's time is a fixed one: 2026-12-04T00:00:00Z.
        let clock = WallClock::new(now, Duration::from_secs(1_796_342_400));
        let sfu = Sfu::new(
            index,
            now,
            vec![ENGINE],
            &EngineConfig::default(),
            SEED,
            identity,
            clock,
        );
        Loop {
            sfu,
            index,
            handoffs: Vec::new(),
            demux: Demux::new(8),
            outbox: Vec::new(),
            events: Vec::new(),
            ufrags: Vec::new(),
            now,
            unrouted: 0,
            next_placement: 0,
        }
    }

    /// Takes what the loop handed back.
    fn drain(&mut self) {
        while let Some(output) = self.sfu.poll_output() {
            match output {
                Output::Transmit { to, datagram } => self.outbox.push((to, datagram)),
                Output::Event(event) => self.events.push(event),
                Output::Route(Route::Add { ufrag, key }) => {
                    self.demux.add(&ufrag, key);
                    self.ufrags.push(ufrag);
                }
                Output::Route(Route::Remove { ufrag, key }) => {
                    self.demux.remove(&ufrag, key);
                    self.ufrags.retain(|u| *u != ufrag);
                }
                Output::Route(Route::Forget { ufrag, key }) => {
                    self.demux.forget_ufrag(&ufrag, key);
                    self.ufrags.retain(|u| *u != ufrag);
                }
                Output::Route(Route::Learn { from, key }) => self.demux.learn(from, key),
                // The harness places nobody.
                Output::Unplaced { .. } => {}
                Output::Relay { to, relay } => self.handoffs.push(Handoff {
                    to,
                    input: Input::Relay(relay),
                }),
                Output::RelayRtp { to, key, packet } => self.handoffs.push(Handoff {
                    to,
                    input: Input::Relayed {
                        from: self.index,
                        key,
                        packet,
                    },
                }),
            }
        }
    }

    pub fn join(&mut self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        self.next_placement += 1;
        let joined = self
            .sfu
            .join(self.now, call, participant, self.next_placement);
        self.drain();
        joined
    }

    /// Answers a participant's offer of its sending connection.
    pub fn publish(&mut self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        let answer = self.sfu.publish(self.now, participant, offer);
        self.drain();
        answer
    }

    /// Answers a participant's offer, `sources` naming what some of its
    /// sections (by mid) carry.
    pub fn publish_sources(
        &mut self,
        participant: Uuid,
        offer: String,
        sources: &[(String, crate::Source)],
    ) -> Result<String, MediaError> {
        let answer = self
            .sfu
            .publish_sources(self.now, participant, offer, sources);
        self.drain();
        answer
    }

    /// Takes a participant's answer to the loop's offer.
    pub fn subscriber_answer(
        &mut self,
        participant: Uuid,
        answer: String,
    ) -> Result<(), MediaError> {
        let taken = self.sfu.subscriber_answer(self.now, participant, answer);
        self.drain();
        taken
    }

    /// Participants leave at once, as [`crate::Engine::leave_all`] has them.
    pub fn leave(&mut self, participants: Vec<Uuid>) {
        self.sfu.handle(self.now, Input::Leave(participants));
        self.drain();
    }

    /// Tells the loop that a call's loops are now `loops`, as the engine's
    /// placement would with its `generation`th change.
    pub fn spread(&mut self, call: Uuid, generation: u64, loops: Vec<usize>) {
        let input = Input::Spread {
            call,
            generation,
            loops,
        };
        self.sfu.handle(self.now, input);
        self.drain();
    }

    /// What the loop has for other loops since the last call.
    pub fn take_handoffs(&mut self) -> Vec<Handoff> {
        std::mem::take(&mut self.handoffs)
    }

    /// Takes what another loop handed over.
    pub fn hand(&mut self, handoff: Handoff) {
        self.sfu.handle(self.now, handoff.input);
        self.drain();
    }

    /// Takes one datagram from `from` as the engine would, at the loop's time.
    pub fn datagram(&mut self, datagram: BytesMut, from: SocketAddr) {
        self.datagram_at(self.now, datagram, from);
    }

    /// Takes one datagram at `now`, which becomes the loop's time if later.
    pub fn datagram_at(&mut self, now: Instant, datagram: BytesMut, from: SocketAddr) {
        self.now = self.now.max(now);
        match self.demux.route(&datagram, from) {
            Some(key) => {
                let input = Input::Datagram {
                    key,
                    from,
                    datagram,
                };
                self.sfu.handle(self.now, input);
                self.drain();
            }
            None => self.unrouted += 1,
        }
    }

    /// The loop's time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Lets the peers' timers run, `by` later than the last time.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.sfu.handle(self.now, Input::Timeout);
        self.drain();
    }

    /// Lets the peers' timers run at `now`, which becomes the loop's time if later.
    pub fn timeouts(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.sfu.handle(self.now, Input::Timeout);
        self.drain();
    }

    /// The datagrams the loop would send, and where.
    pub fn take_outbox(&mut self) -> Vec<(SocketAddr, BytesMut)> {
        std::mem::take(&mut self.outbox)
    }

    /// The number of datagrams waiting to be sent; forgets them.
    pub fn drop_outbox(&mut self) -> usize {
        let n = self.outbox.len();
        self.outbox.clear();
        n
    }

    /// What the loop told signaling since the last call.
    pub fn events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn ufrags(&self) -> &[String] {
        &self.ufrags
    }

    pub fn participants(&self) -> usize {
        self.sfu.participants()
    }

    /// Addresses the demux has learnt.
    pub fn addresses(&self) -> usize {
        self.demux.addresses()
    }

    /// Teaches the demux that `from` is the address of the peer with
    /// `ufrag`, as a binding request from there that passed the peer's
    /// check would: datagrams from it then reach the peer's connection.
    pub fn learn(&mut self, ufrag: &str, from: SocketAddr) {
        if let Some(key) = self.demux.peer_of(ufrag) {
            self.demux.learn(from, key);
        }
    }

    /// Datagrams that reached no peer, and those a peer refused.
    pub fn dropped(&self) -> (u64, u64) {
        (self.unrouted, self.sfu.stats().datagrams_dropped)
    }

    pub fn stats(&self) -> EngineStats {
        self.sfu.stats()
    }
}

impl Default for Loop {
    fn default() -> Self {
        Loop::new()
    }
}
