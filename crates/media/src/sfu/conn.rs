//! A peer slot's connection, both on the transport Roost owns (ADR 0020):
//! a publisher's ([`PublisherPeer`]) or a subscriber's ([`SubscriberPeer`]). What the loop does to every peer
//! alike (datagrams, timers, events) goes through here.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use crate::peer::{PeerEvent, PublisherPeer, SubscriberPeer};

pub(crate) enum Conn {
    Publisher(Box<PublisherPeer>),
    Subscriber(Box<SubscriberPeer>),
}

impl Conn {
    pub(crate) fn publisher(&mut self) -> Option<&mut PublisherPeer> {
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

    /// Takes a datagram; false when the connection dropped it.
    pub(crate) fn handle_datagram(
        &mut self,
        datagram: BytesMut,
        from: SocketAddr,
        now: Instant,
    ) -> bool {
        match self {
            Conn::Publisher(p) => {
                let before = p.stats().dropped;
                p.handle_datagram(datagram, from, now);
                p.stats().dropped == before
            }
            Conn::Subscriber(s) => {
                let before = s.dropped();
                s.handle_datagram(datagram, from, now);
                s.dropped() == before
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Conn::Publisher(p) => p.handle_timeout(now),
            Conn::Subscriber(s) => s.handle_timeout(now),
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
