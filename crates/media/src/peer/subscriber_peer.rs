//! A subscriber connection on the transport Roost owns (ADR 0020, step 5):
//! the engine's offers ([`super::offer`]), the client's answers, and the
//! [`SubscriberTransport`] they configure. It offers what a [`super::Peer`]
//! on the engine's side offers for the same senders, and hands the engine
//! the same [`PeerEvent`]s, so the media loop treats both alike.
//!
//! A track's section keeps its `mid` for the connection's life: when the
//! track goes, the section stays, inactive, and a new track gets a new one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::dtls_srtp::Identity;
use super::offer::{read_answer, Answered, Offer, Section, Sender, Session};
use super::rtcp::WallClock;
use super::subscriber::{
    RemoteSide, RtxSetup, StreamSetup, SubscriberEvent, SubscriberSetup, SubscriberTransport,
};
use super::{Codec, Kind, PeerEvent, PeerSetup};
use crate::munger::{Rewritten, Vp8Patch};
use crate::MediaError;

/// How often sender reports go out on each connection.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// One subscriber connection: its offers, its answers and its transport.
pub struct SubscriberPeer {
    transport: SubscriberTransport,
    session: Session,
    /// The offer that awaits its answer.
    offered: Option<Offer>,
    /// Sections changed since the last offer.
    changed: bool,
    /// The client's ICE credentials and fingerprint, from its first answer:
    /// later answers must carry the same.
    remote: Option<(String, String, String)>,
    /// An ICE restart was offered, or is to be: the answer brings the
    /// client's new credentials.
    restarting: bool,
    /// The offer out carries the restart's credentials: its answer ends
    /// the restart, whatever the client answers with.
    restart_offered: bool,
    next_mid: u32,
}

impl SubscriberPeer {
    /// A connection with the ICE credentials, addresses and limits of
    /// `setup`, presenting `identity`; `session_id` goes into every offer.
    pub fn new(
        setup: &PeerSetup,
        identity: &Identity,
        clock: WallClock,
        session_id: u64,
    ) -> SubscriberPeer {
        let transport = SubscriberTransport::new(
            SubscriberSetup {
                link: setup.link(),
                retransmit_limits: setup.retransmit_limits,
                retransmit_history: setup.retransmit_history,
                report_interval: REPORT_INTERVAL,
                clock,
            },
            identity,
        );
        SubscriberPeer {
            transport,
            session: Session {
                // JSEP's session id has 63 bits.
                id: session_id >> 1,
                version: 0,
                ufrag: setup.ufrag.clone(),
                pwd: setup.pwd.clone(),
                fingerprint: identity.fingerprint().to_owned(),
                candidates: setup.advertised.clone(),
                sections: Vec::new(),
            },
            offered: None,
            changed: false,
            remote: None,
            restarting: false,
            restart_offered: false,
            next_mid: 0,
        }
    }

    /// A track to send, in a section of its own, offered with the next
    /// offer; it sends once the answer took it.
    pub fn add_sender(
        &mut self,
        kind: Kind,
        codec: &Codec,
        ssrc: u32,
        rtx_ssrc: Option<u32>,
        stream_id: &str,
        track_id: &str,
    ) {
        let mid = self.next_mid.to_string();
        self.next_mid += 1;
        self.session.sections.push(Section {
            mid,
            kind,
            sender: Some(Sender {
                ssrc,
                rtx_ssrc,
                stream_id: stream_id.to_owned(),
                track_id: track_id.to_owned(),
                cname: stream_id.to_owned(),
                codec: codec.clone(),
            }),
        });
        self.changed = true;
    }

    /// Stops sending the track of SSRC `ssrc` at once; its section goes
    /// inactive with the next offer.
    pub fn remove_sender(&mut self, ssrc: u32) {
        for section in &mut self.session.sections {
            if section.sender.as_ref().is_some_and(|s| s.ssrc == ssrc) {
                section.sender = None;
                self.changed = true;
            }
        }
        self.transport.remove_stream(ssrc);
    }

    /// Restarts ICE from this side: the next offer carries these
    /// credentials, and the client answers with new ones of its own.
    /// Until then the old ones are still taken. While a restart waits for
    /// its answer, another changes nothing (the client still checks with
    /// the credentials it has); returns whether this one restarts.
    pub fn restart_ice(&mut self, ufrag: String, pwd: String) -> bool {
        if self.restarting {
            return false;
        }
        self.session.ufrag = ufrag.clone();
        self.session.pwd = pwd.clone();
        self.transport.restart_ice(ufrag, pwd);
        self.restarting = true;
        self.changed = true;
        true
    }

    /// This side's ICE ufrag now: it names the connection in the demux.
    pub fn ufrag(&self) -> &str {
        &self.session.ufrag
    }

    /// The next offer, if the sections changed and no offer is out.
    pub fn offer(&mut self) -> Result<Option<String>, MediaError> {
        if !self.changed || self.offered.is_some() || self.session.sections.is_empty() {
            return Ok(None);
        }
        self.session.version += 1;
        let offer = Offer::new(&self.session)?;
        self.restart_offered = self.restarting;
        let sdp = offer.sdp.clone();
        self.offered = Some(offer);
        self.changed = false;
        Ok(Some(sdp))
    }

    pub fn awaiting_answer(&self) -> bool {
        self.offered.is_some()
    }

    /// Takes the client's answer to the offer that is out. A bad answer is
    /// an error and leaves the offer out, waiting for a good one.
    pub fn accept_answer(&mut self, sdp: String, now: Instant) -> Result<(), MediaError> {
        let Some(offer) = self.offered.as_ref() else {
            return Err(MediaError::Sdp("no offer is waiting for an answer".into()));
        };
        let answered = read_answer(&sdp, offer)?;
        let identity = (
            answered.ufrag.clone(),
            answered.pwd.clone(),
            answered.fingerprint.clone(),
        );
        match &self.remote {
            Some((_, _, fingerprint)) if *fingerprint != identity.2 => {
                return Err(MediaError::Mismatch(
                    "the answer's DTLS fingerprint is not the connection's: it comes from another connection".into(),
                ))
            }
            Some(known) if *known != identity && self.restart_offered => {
                // The client's side of the restart.
                self.remote = Some(identity);
            }
            Some(known) if *known != identity => {
                return Err(MediaError::Mismatch(
                    "the answer's ICE credentials are not the connection's, and no ICE restart was offered".into(),
                ))
            }
            Some(_) => {}
            None => {
                self.transport.set_remote(
                    &RemoteSide {
                        fingerprint: answered.fingerprint.clone(),
                        role: answered.role,
                    },
                    now,
                )?;
                self.remote = Some(identity);
            }
        }
        self.offered = None;
        if std::mem::take(&mut self.restart_offered) {
            self.restarting = false;
        }
        self.apply(&answered);
        Ok(())
    }

    /// Starts the streams the answer took; those it refused send nothing.
    fn apply(&mut self, answered: &Answered) {
        for (section, answer) in self.session.sections.iter().zip(&answered.sections) {
            let Some(sender) = &section.sender else {
                continue;
            };
            match (&answer.stream, answer.accepted) {
                (Some(header), true) if !self.transport.has_stream(sender.ssrc) => {
                    let rtx = sender
                        .rtx_ssrc
                        .zip(answer.rtx_payload_type)
                        .map(|(ssrc, payload_type)| RtxSetup { ssrc, payload_type });
                    self.transport.add_stream(StreamSetup {
                        ssrc: sender.ssrc,
                        clock_rate: sender.codec.clock_rate,
                        header: header.clone(),
                        nack: answer.nack,
                        rtx,
                    });
                }
                (Some(_), true) => {}
                _ => self.transport.remove_stream(sender.ssrc),
            }
        }
    }

    /// The bandwidth towards the client, in bits per second, from its
    /// congestion feedback; `None` before any came.
    pub fn estimate(&self) -> Option<u64> {
        self.transport.estimate()
    }

    /// The allocator wants `wanted` bits per second towards the client:
    /// true when a probe for it started ([`SubscriberTransport::want`]).
    pub fn want(&mut self, now: Instant, wanted: u64) -> bool {
        self.transport.want(now, wanted)
    }

    /// Sends a forwarded packet on stream `numbers.ssrc`, its VP8 picture
    /// numbers rewritten where `vp8` says.
    pub fn send_rtp(
        &mut self,
        now: Instant,
        marker: bool,
        numbers: Rewritten,
        audio_level: Option<u8>,
        payload: &Bytes,
        vp8: Option<Vp8Patch>,
    ) -> Result<(), MediaError> {
        self.transport
            .send_rtp(now, marker, numbers, audio_level, payload, vp8)
    }

    pub fn handle_datagram(&mut self, datagram: BytesMut, from: SocketAddr, now: Instant) {
        self.transport.handle_datagram(now, from, datagram);
    }

    /// Datagrams the transport dropped so far.
    pub fn dropped(&self) -> u64 {
        self.transport.stats().dropped
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.transport.handle_timeout(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transport.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.transport.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.transport.poll_event().map(|e| match e {
            SubscriberEvent::Connected => PeerEvent::Connected,
            SubscriberEvent::Failed => PeerEvent::Failed,
            SubscriberEvent::KeyframeRequested { media_ssrc } => {
                PeerEvent::KeyframeRequested { media_ssrc }
            }
        })
    }

    /// Stops the connection: nothing more is sent or taken.
    pub fn close(&mut self) {
        self.transport.close();
    }
}
