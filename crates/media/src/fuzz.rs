//! The engine's network entry point without a socket, for the fuzz target
//! (`crates/media/fuzz`) and the property test below: datagrams go through
//! the same demux and into the same media loop as on the wire (a
//! [`Loop`]), from known and unknown addresses, as STUN, DTLS, RTP, RTCP and
//! noise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use uuid::Uuid;

use crate::harness::Loop;
use crate::peer::{Kind, Peer, PeerSetup};

/// One media loop with a call of two: one has published audio and video
/// (its offer answered), the other only subscribes.
pub struct Harness {
    lp: Loop,
    call: Uuid,
}

impl Harness {
    pub fn new() -> Harness {
        let mut lp = Loop::new();
        let call = Uuid::new_v4();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        // Both are new to a fresh loop: joining cannot conflict.
        lp.join(call, alice)
            .expect("a fresh loop takes a participant");
        lp.join(call, bob)
            .expect("a fresh loop takes a participant");
        if let Some(offer) = client_offer() {
            let _ = lp.publish(alice, offer);
        }
        Harness { lp, call }
    }

    /// Adds someone to the call.
    pub fn join(&mut self, participant: Uuid) -> Result<(), crate::MediaError> {
        self.lp.join(self.call, participant)
    }

    /// Takes one datagram from `from` as the engine would.
    pub fn datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        self.lp.datagram(BytesMut::from(datagram), from);
        self.lp.take_outbox();
    }

    /// Lets the peers' timers run, `by` later than the last time.
    pub fn advance(&mut self, by: Duration) {
        self.lp.advance(by);
        self.lp.take_outbox();
    }

    /// The ICE ufrags of the peers still in the loop.
    pub fn ufrags(&self) -> &[String] {
        self.lp.ufrags()
    }

    /// Participants still in the call.
    pub fn participants(&self) -> usize {
        self.lp.participants()
    }

    /// Addresses the demux has learnt.
    pub fn addresses(&self) -> usize {
        self.lp.addresses()
    }

    /// Makes `from` an address of the peer with `ufrag`, as a binding
    /// request that passed its check would.
    pub fn learn(&mut self, ufrag: &str, from: SocketAddr) {
        self.lp.learn(ufrag, from);
    }

    /// Datagrams that reached no peer, and those a peer refused.
    pub fn dropped(&self) -> (u64, u64) {
        self.lp.dropped()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// An offer of audio and video from a client on the same stack.
fn client_offer() -> Option<String> {
    let local = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let mut peer = Peer::new(&PeerSetup::client(local), Instant::now()).ok()?;
    for (kind, codec) in [
        (Kind::Audio, crate::client::codec(Kind::Audio)),
        (Kind::Video, crate::client::codec(Kind::Video)),
    ] {
        peer.add_sender(
            kind,
            &codec,
            rand::random(),
            None,
            "fuzz",
            &format!("{kind:?}"),
        )
        .ok()?;
    }
    peer.offer(Instant::now()).ok().flatten()
}

/// A STUN binding request naming `ufrag`, with `tail` as the value of a
/// last attribute (its integrity is never valid).
pub fn binding_request(ufrag: &str, tail: &[u8]) -> Vec<u8> {
    let username = format!("{ufrag}:remote");
    let mut attrs = Vec::new();
    let tail = &tail[..tail.len().min(1024)];
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

/// Reads fuzz input as a run of datagrams: a control byte (which source
/// address, whether to wrap the bytes in a binding request for one of the
/// peers, whether to let time pass), a length, and the bytes.
pub fn datagrams(harness: &mut Harness, mut input: &[u8]) {
    while let [control, len, rest @ ..] = input {
        let len = (usize::from(*len) * 6).min(rest.len());
        let (body, tail) = rest.split_at(len);
        input = tail;
        let from = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(control & 0x07)));
        if control & 0x08 != 0 && !harness.ufrags().is_empty() {
            let i = usize::from(control >> 4) % harness.ufrags().len();
            let ufrag = harness.ufrags()[i].clone();
            harness.datagram(&binding_request(&ufrag, body), from);
            // Its integrity fails, so nothing is learnt; learn the address
            // all the same, so what follows from it reaches the peer.
            harness.learn(&ufrag, from);
        } else {
            harness.datagram(body, from);
        }
        if control & 0xF0 == 0xF0 {
            harness.advance(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn garbage_from_the_network_is_dropped_and_the_engine_goes_on() {
        let mut harness = Harness::new();
        assert_eq!(harness.ufrags().len(), 3, "two subscribers and a publisher");
        let ufrag = harness.ufrags()[0].clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let peer_addr = SocketAddr::from(([127, 0, 0, 1], 40_000));
        // A binding request whose integrity fails teaches the demux nothing.
        harness.datagram(&binding_request(&ufrag, b"x"), peer_addr);
        assert_eq!(harness.addresses(), 0, "a failed check learns no address");
        // One that passed would: later datagrams reach the peer.
        harness.learn(&ufrag, peer_addr);
        assert_eq!(harness.addresses(), 1);
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
                harness.datagram(&binding_request(&ufrag, &d), from);
            } else {
                harness.datagram(&d, from);
            }
            if i % 1000 == 0 {
                harness.advance(Duration::from_millis(1));
            }
        }
        let (unrouted, _) = harness.dropped();
        assert!(
            unrouted > 0,
            "datagrams from unknown addresses reach no peer"
        );
        assert_eq!(harness.participants(), 2, "both are still there");
        // And the loop still takes people in.
        harness.join(Uuid::new_v4()).expect("a third joins");
        assert_eq!(harness.participants(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn no_run_of_datagrams_panics_the_loop(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut harness = Harness::new();
            datagrams(&mut harness, &input);
        }
    }
}
