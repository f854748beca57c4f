//! A peer slot's connection: a publisher's on the stack's
//! `RTCPeerConnection` ([`Peer`]), a subscriber's on the transport Roost
//! owns ([`SubscriberPeer`], ADR 0020). What the loop does to every peer
//! alike (datagrams, timers, events) goes through here.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use crate::peer::{Peer, PeerEvent, SubscriberPeer};
use crate::MediaError;

pub(crate) enum Conn {
    Publisher(Box<Peer>),
    Subscriber(Box<SubscriberPeer>),
}

impl Conn {
    pub(crate) fn publisher(&mut self) -> Option<&mut Peer> {
        match self {
            Conn::Publisher(p) => Some(p),
            Conn::Subscriber(_) => None,
        }
    }

    pub(crate) fn subscriber(&mut self) -> Option<&mut SubscriberPeer> {
        match self {
            Conn::Subscriber(s) => Some(s),
            Conn::Publisher(_) => None,
        }
    }

    pub(crate) fn handle_datagram(
        &mut self,
        datagram: BytesMut,
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), MediaError> {
        match self {
            Conn::Publisher(p) => p.handle_datagram(datagram, from, now),
            Conn::Subscriber(s) => {
                s.handle_datagram(datagram, from, now);
                Ok(())
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), MediaError> {
        match self {
            Conn::Publisher(p) => p.handle_timeout(now),
            Conn::Subscriber(s) => {
                s.handle_timeout(now);
                Ok(())
            }
        }
    }

    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        match self {
            Conn::Publisher(p) => p.poll_timeout(),
            Conn::Subscriber(s) => s.poll_timeout(),
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        match self {
            Conn::Publisher(p) => p.poll_transmit(),
            Conn::Subscriber(s) => s.poll_transmit(),
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<PeerEvent> {
        match self {
            Conn::Publisher(p) => p.poll_event(),
            Conn::Subscriber(s) => s.poll_event(),
        }
    }

    pub(crate) fn close(&mut self) {
        match self {
            Conn::Publisher(p) => p.close(),
            Conn::Subscriber(s) => s.close(),
        }
    }
}
