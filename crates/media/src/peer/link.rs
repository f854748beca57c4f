//! What every connection on the transport Roost owns does alike, whichever
//! way its media flows (ADR 0020): the client's ICE checks answered at once
//! as an ICE-lite agent does ([`super::ice_lite`]), the client's latest
//! nomination as the path media takes, the DTLS handshake
//! ([`super::dtls_srtp`]) and its SRTP keys, and silence as the end of the
//! connection. Datagrams come in demultiplexed by their first byte (RFC
//! 7983); SRTP and SRTCP from a client that passed its checks go back to
//! the transport, opened.
//!
//! Nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::dtls_srtp::{DtlsRole, DtlsSrtp, Identity, SRTP_PROFILES};
use super::ice_lite;
use crate::MediaError;

/// DTLS records kept that came before the client's SDP named its
/// certificate: its first flight and a retransmission or two.
const MAX_EARLY_RECORDS: usize = 8;
/// Addresses the client's checks were answered from (its candidate pairs).
const MAX_ANSWERED: usize = 8;

/// This side's ICE credentials and how long silence may last.
#[derive(Debug, Clone)]
pub struct LinkSetup {
    pub ufrag: String,
    pub pwd: String,
    /// With no check, record or packet from the client for this long, the
    /// connection counts as gone. Browsers send consent checks every few
    /// seconds (RFC 7675).
    pub silence: Duration,
}

/// The client's side as its SDP gives it.
#[derive(Debug, Clone)]
pub struct RemoteSide {
    /// Its certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    /// Which end of the DTLS handshake this side is.
    pub role: DtlsRole,
}

/// A datagram as the link hands it on.
#[derive(Debug)]
pub enum Inbound {
    /// A check, a DTLS record, or nothing to hand on.
    Taken,
    /// Refused: from an address no check came from, failing SRTP, or of
    /// no kind a connection takes.
    Dropped,
    /// An RTP packet, opened.
    Rtp(BytesMut),
    /// A compound RTCP packet, opened.
    Rtcp(BytesMut),
}

/// A change of the link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake is done: SRTP is keyed.
    Connected,
    /// Nothing heard from the client for the setup's `silence`, or its
    /// handshake failed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Connected,
    Failed,
}

/// One connection's ICE-lite side, DTLS-SRTP and liveness.
pub struct Link {
    setup: LinkSetup,
    /// This side's credentials from before an ICE restart, still taken
    /// until the client nominates a path checked with the new ones.
    previous: Option<(String, String)>,
    identity: Identity,
    dtls: Option<DtlsSrtp>,
    early: Vec<(SocketAddr, BytesMut)>,
    answered: Vec<SocketAddr>,
    nominated: Option<SocketAddr>,
    heard: Option<Instant>,
    phase: Phase,
    outgoing: VecDeque<(SocketAddr, BytesMut)>,
    events: VecDeque<LinkEvent>,
}

impl Link {
    /// A link presenting `identity`, waiting for the client's checks.
    pub fn new(setup: LinkSetup, identity: &Identity) -> Link {
        Link {
            setup,
            previous: None,
            identity: identity.clone(),
            dtls: None,
            early: Vec::new(),
            answered: Vec::new(),
            nominated: None,
            heard: None,
            phase: Phase::Connecting,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The client's SDP arrived: its certificate and the DTLS role. A
    /// second call (a renegotiation) changes nothing: the handshake stands.
    pub fn set_remote(&mut self, remote: &RemoteSide, now: Instant) -> Result<(), MediaError> {
        if self.dtls.is_some() {
            return Ok(());
        }
        let dtls = DtlsSrtp::new(
            &self.identity,
            &remote.fingerprint,
            remote.role,
            &SRTP_PROFILES,
        )?;
        self.dtls = Some(dtls);
        for (from, record) in std::mem::take(&mut self.early) {
            self.dtls_record(now, from, record);
        }
        self.connect_if_client(now);
        Ok(())
    }

    /// As DTLS client, the handshake starts once the client has nominated
    /// a path: before that its ICE side may not take DTLS yet, and the
    /// first flight would wait for a resend.
    fn connect_if_client(&mut self, now: Instant) {
        let Some(to) = self.nominated else {
            return;
        };
        if let Some(dtls) = self.dtls.as_mut() {
            if dtls.role() == DtlsRole::Client && !dtls.started() {
                if dtls.connect(now, to).is_err() {
                    self.fail();
                }
                self.drain_dtls();
            }
        }
    }

    /// An ICE restart: this side's credentials change. Checks signed with
    /// the old ones are still answered, so media goes on over the old path
    /// until the client nominates one checked with the new; DTLS and SRTP
    /// go on as they were.
    pub fn restart(&mut self, ufrag: String, pwd: String) {
        let ufrag = std::mem::replace(&mut self.setup.ufrag, ufrag);
        let pwd = std::mem::replace(&mut self.setup.pwd, pwd);
        self.previous = Some((ufrag, pwd));
    }

    /// This side's ICE ufrag now.
    pub fn ufrag(&self) -> &str {
        &self.setup.ufrag
    }

    /// Stops the link: nothing more is sent or taken, and no event comes.
    pub fn close(&mut self) {
        self.phase = Phase::Failed;
        self.outgoing.clear();
        self.events.clear();
    }

    /// Whether media can flow.
    pub fn connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    pub fn failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Where media goes: the client's latest nomination, or before one the
    /// last address its checks came from.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.nominated.or_else(|| self.answered.last().copied())
    }

    /// The keyed DTLS-SRTP session and where media goes, once connected.
    pub fn secured(&mut self) -> Option<(SocketAddr, &mut DtlsSrtp)> {
        if self.phase != Phase::Connected {
            return None;
        }
        let to = self.destination()?;
        Some((to, self.dtls.as_mut()?))
    }

    /// Takes a datagram the engine's socket received from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: BytesMut,
    ) -> Inbound {
        if self.phase == Phase::Failed {
            return Inbound::Taken;
        }
        match datagram.first() {
            Some(0..=3) if ice_lite::is_stun(&datagram) => self.check(now, from, &datagram),
            Some(20..=63) if self.answered.contains(&from) => {
                self.heard = Some(now);
                if self.dtls.is_some() {
                    self.dtls_record(now, from, datagram)
                } else if self.early.len() < MAX_EARLY_RECORDS {
                    self.early.push((from, datagram));
                    Inbound::Taken
                } else {
                    Inbound::Dropped
                }
            }
            Some(128..=191) if self.answered.contains(&from) => {
                let Some(dtls) = self.dtls.as_mut().filter(|d| d.profile().is_some()) else {
                    return Inbound::Dropped;
                };
                // RTCP's packet types are 192 to 223 (RFC 5761 §4).
                let opened = if datagram.get(1).is_some_and(|pt| (192..=223).contains(pt)) {
                    dtls.unprotect_rtcp(&datagram).map(Inbound::Rtcp)
                } else {
                    dtls.unprotect_rtp(&datagram).map(Inbound::Rtp)
                };
                match opened {
                    Ok(inbound) => {
                        self.heard = Some(now);
                        inbound
                    }
                    Err(_) => Inbound::Dropped,
                }
            }
            _ => Inbound::Dropped,
        }
    }

    fn check(&mut self, now: Instant, from: SocketAddr, request: &[u8]) -> Inbound {
        let crypto = self.identity.crypto();
        let current = ice_lite::answer(request, from, &self.setup.ufrag, &self.setup.pwd, crypto);
        let checked = match (current, &self.previous) {
            (Some(checked), _) => {
                if checked.nominates {
                    self.previous = None;
                }
                checked
            }
            (None, Some((ufrag, pwd))) => match ice_lite::answer(request, from, ufrag, pwd, crypto)
            {
                Some(checked) => checked,
                None => return Inbound::Dropped,
            },
            (None, None) => return Inbound::Dropped,
        };
        self.heard = Some(now);
        if let Some(at) = self.answered.iter().position(|a| *a == from) {
            self.answered.remove(at);
        } else if self.answered.len() == MAX_ANSWERED {
            self.answered.remove(0);
        }
        self.answered.push(from);
        if checked.nominates {
            self.nominated = Some(from);
        }
        self.outgoing.push_back((from, checked.response));
        self.connect_if_client(now);
        Inbound::Taken
    }

    fn dtls_record(&mut self, now: Instant, from: SocketAddr, record: BytesMut) -> Inbound {
        let Some(dtls) = self.dtls.as_mut() else {
            return Inbound::Dropped;
        };
        let mut taken = Inbound::Taken;
        if let Err(e) = dtls.handle_datagram(now, from, record) {
            tracing::debug!(error = %e, %from, "a DTLS record was refused");
            // A record that does not fit the handshake (malformed, or a
            // certificate other than the SDP named) is dropped; the
            // handshake fails by its own timers or by silence.
            taken = Inbound::Dropped;
        }
        self.drain_dtls();
        let keyed = self.dtls.as_ref().is_some_and(|d| d.profile().is_some());
        if keyed && self.phase == Phase::Connecting {
            self.phase = Phase::Connected;
            self.events.push_back(LinkEvent::Connected);
        }
        taken
    }

    fn drain_dtls(&mut self) {
        if let Some(dtls) = self.dtls.as_mut() {
            // To the client's nominated path, where it has one.
            while let Some((to, d)) = dtls.poll_transmit() {
                self.outgoing.push_back((self.nominated.unwrap_or(to), d));
            }
        }
    }

    fn fail(&mut self) {
        if self.phase != Phase::Failed {
            self.phase = Phase::Failed;
            self.events.push_back(LinkEvent::Failed);
        }
    }

    /// The earliest of the handshake's resend and the moment the client
    /// would count as gone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Failed {
            return None;
        }
        let silence = self.heard.map(|h| h + self.setup.silence);
        let dtls = self.dtls.as_ref().and_then(|d| d.poll_timeout());
        [silence, dtls].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Failed {
            return;
        }
        if self.heard.is_some_and(|h| now >= h + self.setup.silence) {
            self.fail();
            return;
        }
        if let Some(dtls) = self.dtls.as_mut() {
            if dtls.poll_timeout().is_some_and(|t| t <= now) && dtls.handle_timeout(now).is_err() {
                self.fail();
            }
        }
        self.drain_dtls();
    }

    /// Queues a datagram the transport protected.
    pub fn send(&mut self, to: SocketAddr, datagram: BytesMut) {
        if self.phase != Phase::Failed {
            self.outgoing.push_back((to, datagram));
        }
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.outgoing.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::nominating_request;

    fn creds(ufrag: &str) -> (String, String) {
        (ufrag.to_owned(), format!("{ufrag}-password-0123456789"))
    }

    /// Whether a nominating check signed with `server` from `from` is answered.
    fn answered(link: &mut Link, server: &(String, String), from: SocketAddr) -> bool {
        let request = nominating_request(&creds("client"), server).unwrap();
        let taken = link.handle_datagram(Instant::now(), from, BytesMut::from(&request[..]));
        matches!(taken, Inbound::Taken) && link.poll_transmit().is_some_and(|(to, _)| to == from)
    }

    #[test]
    fn after_an_ice_restart_both_credentials_are_taken_until_the_new_are_nominated() {
        let (old, new) = (creds("before"), creds("after"));
        let mut link = Link::new(
            LinkSetup {
                ufrag: old.0.clone(),
                pwd: old.1.clone(),
                silence: Duration::from_secs(30),
            },
            &Identity::generate().unwrap(),
        );
        let (first, moved) = (
            SocketAddr::from(([127, 0, 0, 5], 40_000)),
            SocketAddr::from(([127, 0, 0, 6], 40_002)),
        );
        assert!(answered(&mut link, &old, first));
        assert!(!answered(&mut link, &new, first), "not before the restart");

        link.restart(new.0.clone(), new.1.clone());
        assert_eq!(link.ufrag(), "after");
        assert!(
            answered(&mut link, &old, first),
            "the old path is kept meanwhile"
        );
        assert_eq!(link.destination(), Some(first));
        assert!(answered(&mut link, &new, moved));
        assert_eq!(
            link.destination(),
            Some(moved),
            "media follows the new nomination"
        );
        assert!(
            !answered(&mut link, &old, first),
            "once a path with the new credentials is nominated, the old are refused"
        );
    }
}
