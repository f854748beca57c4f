//! A publisher connection on the transport Roost owns (ADR 0020, step 6):
//! the client's offers, the answers Roost writes to them
//! ([`super::answer`]), and the [`PublisherTransport`] they configure. It
//! hands the engine the same [`PeerEvent`]s a [`super::Peer`] did, so the
//! media loop treats both alike.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use super::answer::{answer, AnswerSession};
use super::dtls_srtp::Identity;
use super::link::RemoteSide;
use super::publisher::{PublisherStats, PublisherTransport};
use super::{PeerEvent, PeerSetup};
use crate::MediaError;

/// One publisher connection: its answers and its transport.
pub struct PublisherPeer {
    transport: PublisherTransport,
    session: AnswerSession,
    /// The client's fingerprint, from its first offer: later offers must
    /// carry the same.
    remote: Option<String>,
    /// The client's ICE ufrag in its latest offer: another one is an ICE
    /// restart.
    remote_ufrag: Option<String>,
}

impl PublisherPeer {
    /// A connection with the ICE credentials, addresses and silence of
    /// `setup`, presenting `identity`; `session_id` goes into every answer
    /// and `own_ssrc` names this side in its feedback.
    pub fn new(
        setup: &PeerSetup,
        identity: &Identity,
        session_id: u64,
        own_ssrc: u32,
    ) -> PublisherPeer {
        PublisherPeer {
            transport: PublisherTransport::new(setup.link(), identity, own_ssrc),
            session: AnswerSession {
                // JSEP's session id has 63 bits.
                id: session_id >> 1,
                version: 0,
                ufrag: setup.ufrag.clone(),
                pwd: setup.pwd.clone(),
                fingerprint: identity.fingerprint().to_owned(),
                candidates: setup.advertised.clone(),
            },
            remote: None,
            remote_ufrag: None,
        }
    }

    /// Answers the client's offer. A later offer that names another
    /// certificate is refused, and the connection goes on as it was. A
    /// later offer with other ICE credentials restarts ICE: this side takes
    /// those `fresh` gives, and answers with them.
    pub fn answer(
        &mut self,
        offer: String,
        now: Instant,
        fresh: impl FnOnce() -> (String, String),
    ) -> Result<String, MediaError> {
        let mut session = AnswerSession {
            version: self.session.version + 1,
            ..self.session.clone()
        };
        let mut answered = answer(&offer, &session)?;
        let restart = self
            .remote_ufrag
            .as_ref()
            .is_some_and(|known| *known != answered.ufrag);
        if restart {
            (session.ufrag, session.pwd) = fresh();
            answered = answer(&offer, &session)?;
        }
        if let Some(known) = &self.remote {
            if !known.eq_ignore_ascii_case(&answered.fingerprint) {
                return Err(MediaError::Sdp(
                    "the offer names another certificate than the connection's".into(),
                ));
            }
        }
        let remote = RemoteSide {
            fingerprint: answered.fingerprint.clone(),
            role: answered.role,
        };
        self.transport.configure(&remote, answered.sections, now)?;
        if restart {
            self.transport
                .restart_ice(session.ufrag.clone(), session.pwd.clone());
        }
        self.session = session;
        self.remote = Some(answered.fingerprint);
        self.remote_ufrag = Some(answered.ufrag);
        Ok(answered.sdp)
    }

    /// This side's ICE ufrag now: it names the connection in the demux.
    pub fn ufrag(&self) -> &str {
        &self.session.ufrag
    }

    /// Asks the client for a keyframe of one of its tracks: of one layer,
    /// or of every layer.
    pub fn request_keyframe(&mut self, track: &str, layer: Option<u8>) -> Result<(), MediaError> {
        self.transport.request_keyframe(track, layer)
    }

    pub fn stats(&self) -> PublisherStats {
        self.transport.stats()
    }

    pub fn handle_datagram(&mut self, datagram: BytesMut, from: SocketAddr, now: Instant) {
        self.transport.handle_datagram(now, from, datagram);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.transport.handle_timeout(now);
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.transport.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.transport.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.transport.poll_event()
    }

    pub fn close(&mut self) {
        self.transport.close();
    }
}
