//! One media loop driven without a socket: datagrams in through the same
//! demux as the receive loop's, datagrams out taken from the loop's outbox,
//! time passed in. The loop sees only this harness's clock, which moves when
//! the caller says ([`Loop::advance`], [`Loop::timeouts`], [`Loop::datagram_at`]).
//! The fuzz target and the benches run the engine this way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::demux::Demux;
use crate::events::{EngineEvent, EngineStats};
use crate::placement::SharedPlacement;
use crate::sfu::{PeerKey, RouteUpdate, Sfu};
use crate::MediaError;

/// The address the loop's peers answer from.
pub const ENGINE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);

/// A media loop and the demux in front of it.
pub struct Loop {
    sfu: Sfu,
    demux: Demux<(usize, PeerKey)>,
    routes: mpsc::UnboundedReceiver<RouteUpdate>,
    events: mpsc::UnboundedReceiver<EngineEvent>,
    /// The ICE ufrags of the loop's peers.
    ufrags: Vec<String>,
    now: Instant,
    /// Datagrams the demux found no peer for.
    unrouted: u64,
    next_placement: u64,
}

impl Loop {
    pub fn new() -> Loop {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (routes, routes_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let sfu = Sfu::new(
            0,
            vec![ENGINE],
            &EngineConfig::default(),
            events,
            routes,
            SharedPlacement::default(),
            now,
        );
        Loop {
            sfu,
            demux: Demux::new(8),
            routes: routes_rx,
            events: events_rx,
            ufrags: Vec::new(),
            now,
            unrouted: 0,
            next_placement: 0,
        }
    }

    fn apply_routes(&mut self) {
        while let Ok(update) = self.routes.try_recv() {
            match update {
                RouteUpdate::Add { ufrag, at, key } => {
                    self.demux.add(&ufrag, (at, key));
                    self.ufrags.push(ufrag);
                }
                RouteUpdate::Remove { ufrag, at, key } => {
                    self.demux.remove(&ufrag, (at, key));
                    self.ufrags.retain(|u| *u != ufrag);
                }
            }
        }
    }

    pub fn join(&mut self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        self.next_placement += 1;
        let joined = self
            .sfu
            .join(self.now, call, participant, self.next_placement);
        self.apply_routes();
        joined
    }

    /// Answers a participant's offer of its sending connection.
    pub fn publish(&mut self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        let answer = self.sfu.publish(self.now, participant, offer);
        self.apply_routes();
        answer
    }

    /// Takes a participant's answer to the loop's offer.
    pub fn subscriber_answer(
        &mut self,
        participant: Uuid,
        answer: String,
    ) -> Result<(), MediaError> {
        self.sfu.subscriber_answer(self.now, participant, answer)
    }

    /// Takes one datagram from `from` as the engine would, at the loop's time.
    pub fn datagram(&mut self, datagram: BytesMut, from: SocketAddr) {
        self.datagram_at(self.now, datagram, from);
    }

    /// Takes one datagram at `now`, which becomes the loop's time if later.
    pub fn datagram_at(&mut self, now: Instant, datagram: BytesMut, from: SocketAddr) {
        self.now = self.now.max(now);
        self.apply_routes();
        match self.demux.route(&datagram, from) {
            Some((_, key)) => self.sfu.datagram(self.now, key, datagram, from),
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
        self.sfu.timeouts(self.now);
    }

    /// Lets the peers' timers run at `now`, which becomes the loop's time if later.
    pub fn timeouts(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.sfu.timeouts(self.now);
    }

    /// The datagrams the loop would send, and where.
    pub fn take_outbox(&mut self) -> Vec<(SocketAddr, BytesMut)> {
        self.sfu.take_outbox()
    }

    /// The number of datagrams waiting to be sent; forgets them.
    pub fn drop_outbox(&mut self) -> usize {
        self.sfu.drop_outbox()
    }

    /// What the loop told signaling since the last call.
    pub fn events(&mut self) -> Vec<EngineEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
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
