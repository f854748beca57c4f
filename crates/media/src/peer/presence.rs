//! The engine's ICE-lite side: answering the client's binding requests in
//! the step they arrive (and those that came before its answer), and
//! following where the client is and whether it is still there.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use super::sdp::sdp_value;
use super::Peer;

/// How the engine's side answers the client's connectivity checks.
///
/// An ICE-lite agent answers every check at once and sends none (RFC 8445
/// §2.5): a check the client sent proves the path, since the answer goes
/// back on it. `rtc`'s lite agent instead behaves as a full controlled one:
/// it answers a check with USE-CANDIDATE only on a pair that passed a check
/// of its own, and otherwise sends one and leaves the client's unanswered,
/// so a client that nominates at once (aiortc) waits for its retransmission,
/// about 500 ms. Its checks never leave the engine: each is answered here,
/// as the client would answer it, and the client's check that caused it is
/// handed to the agent again, now on a valid pair, so it is answered in the
/// same step.
///
/// A check that arrives before the client's answer (it starts checking as
/// soon as it has the engine's offer, while its answer is still on its way
/// through signaling) would be dropped for want of the client's credentials
/// and answered only on its retransmission; a few are kept and handed to
/// the agent once the answer is in.
#[derive(Debug, Default)]
pub(super) struct LiteChecks {
    /// The client's last check not yet answered: from where, its transaction id, the datagram.
    pub(super) pending: Option<(SocketAddr, [u8; 12], BytesMut)>,
    /// Checks that came before the client's credentials.
    pub(super) early: Vec<(SocketAddr, BytesMut)>,
}

/// Checks kept until the client's credentials arrive: a few retransmissions
/// of one or two candidate pairs.
pub(super) const MAX_EARLY_CHECKS: usize = 8;
pub(super) const STUN_BINDING_REQUEST: u16 = 0x0001;

/// Where an ICE-lite peer's client is, and whether it is still there.
///
/// `rtc`'s lite agent keeps the first pair the client nominates and judges
/// liveness by that pair alone. A browser with two working paths to the
/// server (two interfaces, or a NAT that rebinds) may nominate another pair
/// later and move its traffic there: the agent would then keep sending to
/// the old address and, hearing nothing on it, fail a connection that
/// works. So, as mediasoup does, the engine follows the client's latest
/// nomination: media and DTLS go to the address of the last binding request
/// with USE-CANDIDATE that the agent accepted (it answered it, so the
/// request passed its integrity check), and the connection counts as gone
/// only when no address the agent has answered has been heard from for
/// `silence`. A connection the client never reached is left to signaling,
/// as the agent left it.
#[derive(Debug)]
pub(super) struct Presence {
    /// A nominating request seen but not yet answered: its source and transaction id.
    nominating: Option<(SocketAddr, [u8; 12])>,
    /// The address the client last nominated, once answered.
    nominated: Option<SocketAddr>,
    /// Addresses the agent has answered binding requests from (a few).
    answered: Vec<SocketAddr>,
    heard: Instant,
    silence: std::time::Duration,
    pub(super) gone: bool,
}

/// Addresses remembered per peer: its candidate pairs, a handful.
const MAX_ANSWERED: usize = 8;
pub(super) const STUN_BINDING_SUCCESS: u16 = 0x0101;
const STUN_ATTR_USE_CANDIDATE: u16 = 0x0025;
pub(super) const STUN_ATTR_USERNAME: u16 = 0x0006;

impl Presence {
    /// A client not heard from yet, gone after `silence` without a sign of life.
    pub(super) fn new(now: Instant, silence: std::time::Duration) -> Presence {
        Presence {
            nominating: None,
            nominated: None,
            answered: Vec::new(),
            heard: now,
            silence,
            gone: false,
        }
    }

    /// When the client counts as gone, if it has ever been reached.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.gone && !self.answered.is_empty()).then(|| self.heard + self.silence)
    }

    pub(super) fn inbound(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        if self.answered.contains(&from) {
            self.heard = now;
        }
        if let Some(txid) = crate::demux::binding_request_attr(datagram, STUN_ATTR_USE_CANDIDATE)
            .and_then(|_| transaction_id(datagram))
        {
            self.nominating = Some((from, txid));
        }
    }

    /// Sees a datagram on its way out; returns where it should go.
    pub(super) fn outbound(&mut self, datagram: &[u8], to: SocketAddr, now: Instant) -> SocketAddr {
        if crate::demux::classify(datagram) != crate::demux::Kind::Stun {
            return self.nominated.unwrap_or(to);
        }
        let success = datagram.len() >= 20
            && u16::from_be_bytes([datagram[0], datagram[1]]) == STUN_BINDING_SUCCESS;
        if success {
            // The agent answers only requests that passed its integrity check.
            if !self.answered.contains(&to) {
                if self.answered.len() == MAX_ANSWERED {
                    self.answered.remove(0);
                }
                self.answered.push(to);
            }
            self.heard = now;
            if self
                .nominating
                .is_some_and(|(from, txid)| from == to && transaction_id(datagram) == Some(txid))
            {
                if self.nominated.is_some_and(|was| was != to) {
                    tracing::debug!(%to, "a client moved its media to another path");
                }
                self.nominated = Some(to);
                self.nominating = None;
            }
        }
        to
    }
}

/// A STUN message's transaction id.
pub(super) fn transaction_id(datagram: &[u8]) -> Option<[u8; 12]> {
    datagram.get(8..20)?.try_into().ok()
}

impl Peer {
    /// Hands checks that came before the client's credentials to the agent.
    pub(super) fn replay_early_checks(&mut self, now: Instant) {
        let early = self
            .lite
            .as_mut()
            .map(|lite| std::mem::take(&mut lite.early))
            .unwrap_or_default();
        for (from, datagram) in early {
            if let Err(e) = self.handle_datagram(datagram, from, now) {
                tracing::trace!(error = %e, %from, "an early check was refused");
            }
        }
    }

    /// Answers a check the agent meant to send to `to` as the client would:
    /// a binding success with the client's password.
    pub(super) fn answer_own_check(&mut self, request: &[u8], to: SocketAddr, now: Instant) {
        use rtc::stun::fingerprint::FINGERPRINT;
        use rtc::stun::integrity::MessageIntegrity;
        use rtc::stun::message::{Message, TransactionId, BINDING_SUCCESS};
        use rtc::stun::xoraddr::XorMappedAddress;
        let Some(pwd) = self.remote_identity_pwd() else {
            return;
        };
        let (Some(txid), Ok(provider)) = (transaction_id(request), rtc::crypto::default_provider())
        else {
            return;
        };
        let mut response = Message::new();
        let built = response.build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(TransactionId(txid)),
            Box::new(XorMappedAddress {
                ip: self.local.ip(),
                port: self.local.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                pwd,
                provider.crypto(),
            )),
            Box::new(FINGERPRINT),
        ]);
        if let Err(e) = built {
            tracing::debug!(error = %e, "answering the agent's own check");
            return;
        }
        if let Err(e) = self.read(BytesMut::from(&response.raw[..]), to, now) {
            tracing::trace!(error = %e, %to, "the agent refused the answer to its own check");
        }
    }

    /// The remote side's ICE password, from its description.
    fn remote_identity_pwd(&self) -> Option<String> {
        let remote = self.pc.remote_description()?;
        sdp_value(&remote.sdp, "a=ice-pwd:").map(str::to_owned)
    }
}
