//! A call held in memory, for the benches: one publisher and `n`
//! subscribers, each a client peer connection on the same stack, connected
//! to one media loop (ICE, DTLS, SRTP) by handing datagrams across without a
//! socket. Once it is up, [`Call::packet`] makes the publisher's next SRTP
//! datagram and [`Call::forward`] runs the loop's whole receive → fan-out →
//! send step on it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use crate::events::EngineEvent;
use crate::harness::{Loop, ENGINE};
use crate::peer::{Kind, Peer, PeerEvent, PeerSetup, Rtp, SenderId};
use crate::MediaError;

struct Member {
    id: Uuid,
    peer: Peer,
    addr: SocketAddr,
    connected: bool,
}

/// A call of one publisher and its subscribers on one media loop.
pub struct Call {
    lp: Loop,
    publisher: Member,
    subscribers: Vec<Member>,
    sender: SenderId,
    mime_type: String,
    kind: Kind,
    ssrc: u32,
    seq: u16,
}

fn address(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 20_000 + i))
}

impl Call {
    /// Sets the call up and connects everyone; fails if that takes more than 10 s.
    pub fn new(subscribers: usize, kind: Kind) -> Result<Call, MediaError> {
        let now = Instant::now();
        let mut lp = Loop::new();
        let call = Uuid::new_v4();
        let mut publisher = Member {
            id: Uuid::new_v4(),
            peer: Peer::new(&PeerSetup::client(address(0)), now)?,
            addr: address(0),
            connected: false,
        };
        lp.join(call, publisher.id)?;
        let codec = crate::client::codec(kind);
        let ssrc = rand::random();
        let sender = publisher
            .peer
            .add_sender(kind, &codec, ssrc, None, "bench", "bench-track")?;
        let offer = publisher
            .peer
            .offer(now)?
            .ok_or_else(|| MediaError::Conflict("an offer is already out".into()))?;
        let answer = lp.publish(publisher.id, offer)?;
        publisher.peer.accept_answer(answer, now)?;
        let mut members = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let addr = address(1 + i as u16);
            let member = Member {
                id: Uuid::new_v4(),
                peer: Peer::new(&PeerSetup::client(addr), now)?,
                addr,
                connected: false,
            };
            lp.join(call, member.id)?;
            members.push(member);
        }
        let mut call = Call {
            lp,
            publisher,
            subscribers: members,
            sender,
            mime_type: codec.mime_type,
            kind,
            ssrc,
            seq: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(call.publisher.connected && call.subscribers.iter().all(|m| m.connected)) {
            if Instant::now() > deadline {
                return Err(MediaError::Stack("the call did not connect in 10 s".into()));
            }
            // The track opens with the publisher's first packets.
            if call.publisher.connected {
                let datagram = call.packet(&[0; 20]);
                call.lp.datagram(datagram, call.publisher.addr);
            }
            call.exchange()?;
        }
        // Let the last answers and keyframe requests settle.
        for _ in 0..10 {
            call.exchange()?;
        }
        Ok(call)
    }

    /// Hands every waiting datagram across, runs timers, answers offers.
    fn exchange(&mut self) -> Result<(), MediaError> {
        let now = Instant::now();
        for member in std::iter::once(&mut self.publisher).chain(self.subscribers.iter_mut()) {
            if member.peer.poll_timeout().is_some_and(|t| t <= now) {
                member.peer.handle_timeout(now)?;
            }
            while let Some((to, datagram)) = member.peer.poll_transmit() {
                if to == ENGINE {
                    self.lp.datagram_at(now, datagram, member.addr);
                }
            }
            while let Some(event) = member.peer.poll_event() {
                if matches!(event, PeerEvent::Connected) {
                    member.connected = true;
                }
            }
        }
        self.lp.timeouts(now);
        for (to, datagram) in self.lp.take_outbox() {
            let member = std::iter::once(&mut self.publisher)
                .chain(self.subscribers.iter_mut())
                .find(|m| m.addr == to);
            if let Some(member) = member {
                // Refusals (a packet before the keys are in) are the stack's business.
                let _ = member.peer.handle_datagram(datagram, ENGINE, now);
            }
        }
        for event in self.lp.events() {
            if let EngineEvent::SubscriberOffer {
                participant, sdp, ..
            } = event
            {
                if let Some(member) = self.subscribers.iter_mut().find(|m| m.id == participant) {
                    let answer = member.peer.answer(sdp, now)?;
                    self.lp.subscriber_answer(participant, answer)?;
                }
            }
        }
        Ok(())
    }

    /// The publisher's next packet as it leaves its connection: SRTP, ready
    /// for the loop.
    pub fn packet(&mut self, payload: &[u8]) -> BytesMut {
        self.seq = self.seq.wrapping_add(1);
        let rtp = Rtp {
            ssrc: self.ssrc,
            seq: self.seq,
            ts: u32::from(self.seq).wrapping_mul(960),
            marker: false,
            payload_type: 0,
            payload: Bytes::copy_from_slice(payload),
            // Browsers put a level in every audio packet (RFC 6464).
            audio_level: (self.kind == Kind::Audio).then_some(30),
            layer: 0,
        };
        let now = Instant::now();
        let _ = self
            .publisher
            .peer
            .send_rtp(self.sender, &rtp, &self.mime_type, now);
        let mut out = BytesMut::new();
        while let Some((to, datagram)) = self.publisher.peer.poll_transmit() {
            if to == ENGINE && out.is_empty() {
                out = datagram;
            }
        }
        out
    }

    /// One packet through the loop: demux, SRTP decryption, fan-out, SRTP
    /// encryption for each subscriber. Returns the datagrams to send.
    /// Never inlined, so that callgrind can count what it does (see
    /// `benches/examples/forward_copies.rs`).
    #[inline(never)]
    pub fn forward(&mut self, datagram: BytesMut) -> usize {
        // The clock is read once per packet, as the engine reads it once per batch.
        self.lp
            .datagram_at(Instant::now(), datagram, self.publisher.addr);
        self.lp.drop_outbox()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_reaches_every_subscriber_of_a_call_in_memory() {
        let mut call = Call::new(3, Kind::Video).expect("the call connects");
        let datagram = call.packet(&[7; 1200]);
        assert!(datagram.len() > 1200, "an SRTP packet");
        assert_eq!(call.forward(datagram), 3, "one datagram per subscriber");
    }
}
