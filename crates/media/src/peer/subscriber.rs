//! The transport of a subscriber connection, owned by Roost (ADR 0020,
//! steps 1 to 3): the engine sends, the client receives. One datagram
//! path in each direction, demultiplexed by its first byte (RFC 7983):
//! - STUN: the client's checks, answered at once as an ICE-lite agent
//!   does ([`super::ice_lite`]); the client's latest nomination is where
//!   media goes, and any check or record it sends keeps it alive;
//! - DTLS: the handshake ([`super::dtls_srtp`]), then SRTP and SRTCP keys;
//! - SRTCP: the client's reception reports (the round trip), NACKs (resent
//!   from a history of the stream's packets, within the budget of
//!   [`crate::retransmit`]) and keyframe requests (to the engine).
//!
//! Media goes out through [`super::rtp_writer::RtpWriter`]: the header is
//! written here, the payload copied once into a buffer the transport keeps,
//! and SRTP protects it with the header already parsed. The history keeps
//! the forwarded payload itself (shared with every other subscriber's), not
//! a copy, and only for streams whose answer kept NACK.
//!
//! Nothing here reads a clock or touches a socket: datagrams and time come
//! in; datagrams to send, events and the next deadline come out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::congestion::{Congestion, PADDING_MAX};
use super::dtls_srtp::Identity;
pub use super::link::RemoteSide;
use super::link::{Inbound, Link, LinkEvent, LinkSetup};
use super::rtcp::{self, Feedback, SentCounts, WallClock};
use super::rtp_writer::{Extras, RtpWriter, StreamHeader};
use crate::munger::{Rewritten, Vp8Patch};
use crate::retransmit::{RetransmitLimits, Retransmits};
use crate::vp8;
use crate::MediaError;

/// How a subscriber transport is set up.
#[derive(Debug, Clone)]
pub struct SubscriberSetup {
    /// This side's ICE credentials, from the offer, and how long the
    /// client may stay silent.
    pub link: LinkSetup,
    pub retransmit_limits: RetransmitLimits,
    /// Packets kept per stream for NACKs (a power of two).
    pub retransmit_history: u16,
    /// How often sender reports go out.
    pub report_interval: Duration,
    /// The wall clock's NTP time, anchored when the engine started.
    pub clock: WallClock,
}

/// The client's side as a test reads it from the stack's own client's
/// answer to a hand-written offer: its fingerprint, and the role its
/// `a=setup` leaves this side (the offer says `actpass`: this client
/// answers `passive`, browsers `active`).
#[cfg(test)]
pub(crate) fn remote_side_of(answer: &str) -> RemoteSide {
    use super::dtls_srtp::DtlsRole;
    let fingerprint = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
        .expect("the answer's fingerprint")
        .trim()
        .to_owned();
    let role = if answer.contains("a=setup:passive") {
        DtlsRole::Client
    } else {
        DtlsRole::Server
    };
    RemoteSide { fingerprint, role }
}

/// What happened on the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// The handshake is done: media flows.
    Connected,
    /// Nothing heard from the client for the setup's `silence`, or its
    /// handshake failed.
    Failed,
    /// The client asked for a keyframe of stream `media_ssrc`.
    KeyframeRequested { media_ssrc: u32 },
}

/// A packet kept for NACKs: its numbers, and the payload it shares with
/// every other copy of it.
#[derive(Debug, Clone, Default)]
struct Kept {
    seq: u16,
    ts: u32,
    marker: bool,
    audio_level: Option<u8>,
    payload: Option<Bytes>,
    /// The picture numbers written into the payload when it went out.
    vp8: Option<Vp8Patch>,
    sent: Option<Instant>,
}

/// How long a sent packet's payload is kept for NACKs. A resend later than
/// this comes long after the receiver's jitter buffer has given up on it
/// (mediasoup keeps video for 1 to 2 s); the history's length bounds the
/// packets kept at high rates, this bounds the memory they pin at low
/// ones: the payload is the publisher's, shared by every subscriber's
/// history, and held as long as any keeps it.
const HISTORY_AGE: Duration = Duration::from_secs(3);

/// The most padding packets one turn of a probe sends: with the pacing of
/// 5 ms, probes up to 24 Mbit/s keep their rate.
const PADDING_BURST: usize = 40;

/// A stream to send, as negotiated.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    pub ssrc: u32,
    /// The RTP clock rate of its codec.
    pub clock_rate: u32,
    /// Its payload type and header-extension ids.
    pub header: StreamHeader,
    /// Whether the client NACKs it: only then are its packets kept.
    pub nack: bool,
    /// Where the answer kept RTX (RFC 4588): resends go on their own stream.
    pub rtx: Option<RtxSetup>,
}

/// A stream's retransmission stream: its SSRC and payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxSetup {
    pub ssrc: u32,
    pub payload_type: u8,
}

struct Rtx {
    ssrc: u32,
    /// Its own sequence numbers (RFC 4588 §4).
    seq: u16,
    writer: RtpWriter,
}

struct Stream {
    writer: RtpWriter,
    counts: SentCounts,
    /// Indexed by sequence number; empty when the answer kept no NACK.
    history: Vec<Kept>,
    /// The next packet of the history to let go of once it is older than
    /// [`HISTORY_AGE`].
    expire: Option<u16>,
    rtx: Option<Rtx>,
}

/// Counts of what the transport did, for the engine's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub sent: u64,
    pub resent: u64,
    /// Padding packets sent to probe for bandwidth.
    pub padding: u64,
    /// Datagrams dropped: from an address no check came from, failing
    /// SRTCP, or of a kind a subscriber does not send.
    pub dropped: u64,
}

/// One subscriber connection's transport.
pub struct SubscriberTransport {
    setup: SubscriberSetup,
    link: Link,
    streams: Vec<Stream>,
    retransmits: Retransmits,
    next_report: Option<Instant>,
    /// The buffer each packet is written into before SRTP.
    buf: Vec<u8>,
    feedback: Vec<Feedback>,
    /// The send-side estimate, from the client's congestion feedback.
    congestion: Congestion,
    events: VecDeque<SubscriberEvent>,
    stats: SubscriberStats,
}

impl SubscriberTransport {
    /// A transport presenting `identity`, waiting for the client's checks.
    pub fn new(setup: SubscriberSetup, identity: &Identity) -> SubscriberTransport {
        let retransmits = Retransmits::new(setup.retransmit_limits, setup.retransmit_history);
        SubscriberTransport {
            link: Link::new(setup.link.clone(), identity),
            setup,
            streams: Vec::new(),
            retransmits,
            next_report: None,
            buf: Vec::with_capacity(1_500),
            feedback: Vec::new(),
            congestion: Congestion::new(),
            events: VecDeque::new(),
            stats: SubscriberStats::default(),
        }
    }

    /// The client's answer arrived: its certificate and the DTLS role. A
    /// second call (a renegotiation) changes nothing: the handshake stands.
    pub fn set_remote(&mut self, remote: &RemoteSide, now: Instant) -> Result<(), MediaError> {
        let set = self.link.set_remote(remote, now);
        self.link_events(now);
        set
    }

    /// What the link's state changes mean here: reports start with the
    /// connection, and the engine hears of both.
    fn link_events(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Connected => {
                    self.next_report = Some(now + self.setup.report_interval);
                    self.events.push_back(SubscriberEvent::Connected);
                }
                LinkEvent::Failed => self.events.push_back(SubscriberEvent::Failed),
            }
        }
    }

    /// A stream to send; one with the same SSRC is replaced.
    pub fn add_stream(&mut self, stream: StreamSetup) {
        self.remove_stream(stream.ssrc);
        let history = if stream.nack {
            self.retransmits.track(stream.ssrc);
            let size = usize::from(self.setup.retransmit_history.max(1)).next_power_of_two();
            vec![Kept::default(); size]
        } else {
            Vec::new()
        };
        let rtx = stream.rtx.filter(|_| stream.nack).map(|rtx| Rtx {
            ssrc: rtx.ssrc,
            seq: 0,
            writer: RtpWriter::new(StreamHeader {
                payload_type: rtx.payload_type,
                ..stream.header.clone()
            }),
        });
        self.streams.push(Stream {
            writer: RtpWriter::new(stream.header),
            counts: SentCounts::new(stream.ssrc, stream.clock_rate),
            history,
            expire: None,
            rtx,
        });
    }

    pub fn has_stream(&self, ssrc: u32) -> bool {
        self.streams.iter().any(|s| s.counts.ssrc == ssrc)
    }

    /// Stops the transport: nothing more is sent or taken, and no event comes.
    pub fn close(&mut self) {
        self.link.close();
        self.events.clear();
    }

    pub fn remove_stream(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.counts.ssrc != ssrc);
        self.retransmits.untrack(ssrc);
    }

    /// Whether media can flow.
    /// An ICE restart: this side's credentials change ([`Link::restart`]).
    pub fn restart_ice(&mut self, ufrag: String, pwd: String) {
        self.link.restart(ufrag, pwd);
    }

    pub fn connected(&self) -> bool {
        self.link.connected()
    }

    /// Where media goes: the client's latest nomination, or before one the
    /// last address its checks came from.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.link.destination()
    }

    /// The round trip measured from the client's reception reports.
    pub fn rtt(&self) -> Option<Duration> {
        self.retransmits.rtt()
    }

    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// Sends a forwarded packet on stream `numbers.ssrc`. Before the
    /// handshake is done, or for a stream not added, nothing is sent.
    pub fn send_rtp(
        &mut self,
        now: Instant,
        marker: bool,
        numbers: Rewritten,
        audio_level: Option<u8>,
        payload: &Bytes,
        vp8: Option<Vp8Patch>,
    ) -> Result<(), MediaError> {
        let Some(stream) = self
            .streams
            .iter_mut()
            .find(|s| s.counts.ssrc == numbers.ssrc)
        else {
            return Err(MediaError::NotNegotiated);
        };
        // Nothing to protect with yet: a subscriber that connects asks for
        // keyframes, so what it missed does not matter.
        let Some((to, dtls)) = self.link.secured() else {
            return Ok(());
        };
        // Each packet is numbered for the client's congestion feedback; its
        // size counted is the payload's and a header's.
        let transport_seq = stream.writer.transport_cc().then(|| {
            let size = payload.len() + 40;
            self.congestion.sent(now, numbers.ssrc, numbers.seq, size)
        });
        let extras = Extras {
            audio_level,
            transport_seq,
            abs_send_time: stream
                .writer
                .abs_send_time()
                .then(|| abs_send_time(self.setup.clock.ntp(now))),
        };
        let header = stream
            .writer
            .write(&mut self.buf, marker, numbers, extras, payload);
        if let Some(patch) = vp8 {
            patch_vp8(&mut self.buf, payload.len(), patch);
        }
        let protected = dtls.protect_rtp_with_header(&self.buf, header)?;
        stream.counts.sent(numbers.ts, payload.len(), now);
        if !stream.history.is_empty() {
            let mask = stream.history.len() - 1;
            stream.history[usize::from(numbers.seq) & mask] = Kept {
                seq: numbers.seq,
                ts: numbers.ts,
                marker,
                audio_level,
                payload: Some(payload.clone()),
                vp8,
                sent: Some(now),
            };
            // Each packet is let go of once, as the next ones are sent.
            let expire = stream.expire.get_or_insert(numbers.seq);
            for _ in 0..stream.history.len() {
                if *expire == numbers.seq {
                    break;
                }
                let kept = &mut stream.history[usize::from(*expire) & mask];
                if kept.seq == *expire && kept.payload.is_some() {
                    let age = kept.sent.map(|at| now.saturating_duration_since(at));
                    if age.is_some_and(|age| age <= HISTORY_AGE) {
                        break;
                    }
                    kept.payload = None;
                }
                *expire = expire.wrapping_add(1);
            }
            self.retransmits
                .sent(numbers.ssrc, numbers.seq, self.buf.len(), now);
        }
        self.stats.sent += 1;
        self.link.send(to, protected);
        Ok(())
    }

    /// The bandwidth towards the client, in bits per second, as its
    /// congestion feedback shows it; `None` before any came.
    pub fn estimate(&self) -> Option<u64> {
        self.congestion.estimate()
    }

    /// The allocator wants `wanted` bits per second towards the client: a
    /// probe for more starts where the estimate is short of it (see
    /// [`Congestion::want`]). Probes pad on an RTX stream, so a connection
    /// with none does not probe. True when one started.
    pub fn want(&mut self, now: Instant, wanted: u64) -> bool {
        self.streams.iter().any(|s| s.rtx.is_some()) && self.congestion.want(now, wanted)
    }

    /// Probes sent, and those that raised the estimate.
    pub fn probes(&self) -> (u64, u64) {
        self.congestion.probes()
    }

    /// Sends the padding a running probe is owed, on the RTX stream of the
    /// video stream that sent last (RFC 4588 lets an RTX stream carry
    /// padding alone; receivers count it in their congestion feedback and
    /// drop it). A turn sends at most [`PADDING_BURST`] packets.
    fn pad(&mut self, now: Instant) {
        let owed = self.congestion.padding(now);
        if owed == 0 || self.link.secured().is_none() {
            return;
        }
        let Some(stream) = self
            .streams
            .iter_mut()
            .filter(|s| s.rtx.is_some())
            .max_by_key(|s| s.counts.last.map(|(_, at)| at))
        else {
            return;
        };
        let ts = stream.counts.last.map_or(0, |(ts, _)| ts);
        let Some(rtx) = stream.rtx.as_mut() else {
            return;
        };
        let size = PADDING_MAX + 40;
        for _ in 0..owed.div_ceil(size).min(PADDING_BURST) {
            rtx.seq = rtx.seq.wrapping_add(1);
            let numbers = Rewritten {
                ssrc: rtx.ssrc,
                seq: rtx.seq,
                ts,
            };
            let transport_seq = rtx
                .writer
                .transport_cc()
                .then(|| self.congestion.sent(now, rtx.ssrc, rtx.seq, size));
            let extras = Extras {
                audio_level: None,
                transport_seq,
                abs_send_time: None,
            };
            let Some((to, dtls)) = self.link.secured() else {
                return;
            };
            let header = rtx.writer.write(&mut self.buf, false, numbers, extras, &[]);
            // The padding bit, and the padding: zeros, then its length.
            self.buf[0] |= 0x20;
            self.buf.resize(self.buf.len() + PADDING_MAX, 0);
            if let Some(last) = self.buf.last_mut() {
                *last = PADDING_MAX as u8;
            }
            let Ok(protected) = dtls.protect_rtp_with_header(&self.buf, header) else {
                return;
            };
            self.stats.padding += 1;
            self.link.send(to, protected);
        }
    }

    /// Takes a datagram the engine's socket received from `from` for this
    /// connection. What is not for it is dropped and counted.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: BytesMut) {
        match self.link.handle_datagram(now, from, datagram) {
            Inbound::Taken => {}
            Inbound::Rtcp(plain) => self.rtcp(now, &plain),
            // A subscriber sends no media.
            Inbound::Rtp(_) | Inbound::Dropped => self.stats.dropped += 1,
        }
        self.link_events(now);
    }

    fn rtcp(&mut self, now: Instant, plain: &[u8]) {
        let mut feedback = std::mem::take(&mut self.feedback);
        feedback.clear();
        // What parsed before a malformed packet still counts.
        let _ = rtcp::read(plain, &mut feedback);
        if let Some(twcc) = rtcp::transport_feedback(plain) {
            for f in &twcc {
                self.congestion.feedback(now, f);
            }
        }
        if let Some(bitrate) = rtcp::remb(plain) {
            self.congestion.remb(bitrate);
        }
        for f in &feedback {
            match *f {
                Feedback::Keyframe { media_ssrc } => {
                    if self.streams.iter().any(|s| s.counts.ssrc == media_ssrc) {
                        self.events
                            .push_back(SubscriberEvent::KeyframeRequested { media_ssrc });
                    }
                }
                Feedback::Nack {
                    media_ssrc,
                    first,
                    bitmap,
                } => {
                    for seq in Feedback::nacked(first, bitmap) {
                        self.resend(now, media_ssrc, seq);
                    }
                }
                Feedback::Report {
                    ssrc, lsr, dlsr, ..
                } => {
                    if self.streams.iter().any(|s| s.counts.ssrc == ssrc) {
                        self.retransmits.report_received(lsr, dlsr, now);
                    }
                }
            }
        }
        self.feedback = feedback;
    }

    /// Resends packet `seq` of `ssrc` if it is still kept and the budget allows.
    fn resend(&mut self, now: Instant, ssrc: u32, seq: u16) {
        let Some((to, dtls)) = self.link.secured() else {
            return;
        };
        let Some(stream) = self.streams.iter_mut().find(|s| s.counts.ssrc == ssrc) else {
            return;
        };
        if stream.history.is_empty() {
            return;
        }
        let mask = stream.history.len() - 1;
        let kept = &stream.history[usize::from(seq) & mask];
        let Some(payload) = kept.payload.as_ref().filter(|_| kept.seq == seq) else {
            return;
        };
        if !self.retransmits.allow(ssrc, seq, now) {
            return;
        }
        let header = match stream.rtx.as_mut() {
            // On the RTX stream: its own numbers, the original sequence
            // number first in the payload.
            Some(rtx) => {
                rtx.seq = rtx.seq.wrapping_add(1);
                let numbers = Rewritten {
                    ssrc: rtx.ssrc,
                    seq: rtx.seq,
                    ts: kept.ts,
                };
                let transport_seq = rtx.writer.transport_cc().then(|| {
                    self.congestion
                        .sent(now, rtx.ssrc, rtx.seq, payload.len() + 42)
                });
                let extras = Extras {
                    audio_level: kept.audio_level,
                    transport_seq,
                    abs_send_time: rtx
                        .writer
                        .abs_send_time()
                        .then(|| abs_send_time(self.setup.clock.ntp(now))),
                };
                let header = rtx
                    .writer
                    .write(&mut self.buf, kept.marker, numbers, extras, &[]);
                self.buf.extend_from_slice(&seq.to_be_bytes());
                self.buf.extend_from_slice(payload);
                if let Some(patch) = kept.vp8 {
                    patch_vp8(&mut self.buf, payload.len(), patch);
                }
                header
            }
            None => {
                let numbers = Rewritten {
                    ssrc,
                    seq,
                    ts: kept.ts,
                };
                let transport_seq = stream
                    .writer
                    .transport_cc()
                    .then(|| self.congestion.sent(now, ssrc, seq, payload.len() + 40));
                let extras = Extras {
                    audio_level: kept.audio_level,
                    transport_seq,
                    abs_send_time: stream
                        .writer
                        .abs_send_time()
                        .then(|| abs_send_time(self.setup.clock.ntp(now))),
                };
                let header =
                    stream
                        .writer
                        .write(&mut self.buf, kept.marker, numbers, extras, payload);
                if let Some(patch) = kept.vp8 {
                    patch_vp8(&mut self.buf, payload.len(), patch);
                }
                header
            }
        };
        if let Ok(protected) = dtls.protect_rtp_with_header(&self.buf, header) {
            self.stats.resent += 1;
            self.link.send(to, protected);
        }
    }

    /// The earliest of the link's timers and the next sender report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.link.failed() {
            return None;
        }
        [
            self.link.poll_timeout(),
            self.next_report,
            self.congestion.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.link_events(now);
        if self.link.failed() {
            return;
        }
        if self.next_report.is_some_and(|t| t <= now) {
            self.next_report = Some(now + self.setup.report_interval);
            self.report(now);
        }
        if self.congestion.poll_timeout().is_some_and(|t| t <= now) {
            self.pad(now);
            self.congestion.handle_timeout(now);
        }
    }

    /// Sends the streams' sender reports.
    fn report(&mut self, now: Instant) {
        let Some((to, dtls)) = self.link.secured() else {
            return;
        };
        let counts: Vec<SentCounts> = self.streams.iter().map(|s| s.counts).collect();
        let ntp = self.setup.clock.ntp(now);
        let Some(plain) = rtcp::sender_reports(&counts, ntp, now) else {
            return;
        };
        if let Ok(protected) = dtls.protect_rtcp(&plain) {
            self.retransmits.report_sent(ntp, now);
            self.link.send(to, protected);
        }
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.link.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<SubscriberEvent> {
        self.events.pop_front()
    }
}

/// An NTP time (32.32 fixed point) as the absolute send time's 24 bits:
/// 6 bits of seconds and 18 of fraction.
fn abs_send_time(ntp: u64) -> u32 {
    ((ntp >> 14) & 0x00FF_FFFF) as u32
}

/// Writes a VP8 payload's new picture numbers into a packet just written,
/// whose last `payload_len` bytes are the payload.
fn patch_vp8(packet: &mut [u8], payload_len: usize, patch: Vp8Patch) {
    let start = packet.len().saturating_sub(payload_len);
    vp8::rewrite(&mut packet[start..], patch.picture_id, patch.tl0_pic_idx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::nominating_request;
    use crate::peer::dtls_srtp::DtlsRole;
    use crate::peer::{Peer, PeerEvent, PeerSetup, Rtp};
    use proptest::prelude::*;

    const TRANSPORT_CC_URI: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    const SERVER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);
    const CLIENT: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);
    const UFRAG: &str = "roostsub";
    const PWD: &str = "roost-subscriber-password-0123";
    const SSRC: u32 = 0x5EED;
    const STEP: Duration = Duration::from_millis(10);

    fn setup(now: Instant) -> SubscriberSetup {
        SubscriberSetup {
            link: LinkSetup {
                ufrag: UFRAG.into(),
                pwd: PWD.into(),
                silence: Duration::from_secs(10),
            },
            retransmit_limits: RetransmitLimits::default(),
            retransmit_history: 512,
            report_interval: Duration::from_secs(1),
            clock: WallClock::new(now, Duration::from_secs(1_796_342_400)),
        }
    }

    const RTX_SSRC: u32 = 0x5EEE;

    /// An offer of one VP8 track that NACKs and PLIs, as the engine makes
    /// them, with RTX where `rtx`.
    fn offer(fingerprint: &str, rtx: bool) -> String {
        let (rtx_pt, rtx_lines) = if rtx {
            (
                " 97",
                format!(
                    "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
                     a=ssrc-group:FID {SSRC} {RTX_SSRC}\r\na=ssrc:{RTX_SSRC} cname:roost\r\n"
                ),
            )
        } else {
            ("", String::new())
        };
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             a=ice-lite\r\nm=video 7882 UDP/TLS/RTP/SAVPF 96{rtx_pt}\r\nc=IN IP4 127.0.0.1\r\n\
             a=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=ice-ufrag:{UFRAG}\r\n\
             a=ice-pwd:{PWD}\r\na=fingerprint:sha-256 {fingerprint}\r\na=setup:actpass\r\n\
             a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=extmap:3 {TRANSPORT_CC_URI}\r\n\
             a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
             a=rtcp-fb:96 transport-cc\r\n{rtx_lines}\
             a=msid:roost t0\r\na=ssrc:{SSRC} cname:roost\r\na=ssrc:{SSRC} msid:roost t0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\na=end-of-candidates\r\n"
        )
    }

    /// The engine's side and the stack's own client (`RTCPeerConnection`,
    /// full ICE), each advanced by the same clock; datagrams between them
    /// go through `deliver`, where a test can lose them.
    struct Call {
        now: Instant,
        sub: SubscriberTransport,
        client: Peer,
        received: Vec<Rtp>,
        track: Option<String>,
        events: Vec<SubscriberEvent>,
        seq: u16,
        /// Of the packets to the client: which the wire loses (by sequence
        /// number, once each).
        lose: Vec<u16>,
        /// Whether the client's datagrams reach the engine at all.
        client_heard: bool,
        /// Packets seen on the RTX stream, and those of them that are
        /// padding.
        on_rtx: usize,
        padded: usize,
    }

    impl Call {
        fn new() -> Call {
            Call::with_rtx(false)
        }

        fn with_rtx(rtx: bool) -> Call {
            Call::with(rtx, None)
        }

        /// With RTX, each packet numbered for the client's congestion
        /// feedback.
        fn with_feedback() -> Call {
            Call::with(true, Some(3))
        }

        fn with(rtx: bool, transport_cc: Option<u8>) -> Call {
            let now = Instant::now();
            let identity = Identity::generate().unwrap();
            let mut sub = SubscriberTransport::new(setup(now), &identity);
            let mut client = Peer::new(&PeerSetup::client(CLIENT), now).unwrap();
            let answer = client
                .answer(offer(identity.fingerprint(), rtx), now)
                .unwrap();
            sub.set_remote(&remote_side_of(&answer), now).unwrap();
            let header = StreamHeader {
                payload_type: 96,
                mid: Some((1, b"0".to_vec())),
                audio_level: None,
                transport_cc,
                abs_send_time: None,
            };
            sub.add_stream(StreamSetup {
                ssrc: SSRC,
                clock_rate: 90_000,
                header,
                nack: true,
                rtx: rtx.then_some(RtxSetup {
                    ssrc: RTX_SSRC,
                    payload_type: 97,
                }),
            });
            Call {
                now,
                sub,
                client,
                received: Vec::new(),
                track: None,
                events: Vec::new(),
                seq: 0,
                lose: Vec::new(),
                client_heard: true,
                on_rtx: 0,
                padded: 0,
            }
        }

        /// Moves the datagrams both ways, then the clock by one step.
        fn step(&mut self) {
            let now = self.now;
            while let Some((to, d)) = self.client.poll_transmit() {
                assert_eq!(to, SERVER, "the client sends to the offered candidate");
                if self.client_heard {
                    self.sub.handle_datagram(now, CLIENT, d);
                }
            }
            while let Some((to, d)) = self.sub.poll_transmit() {
                if to != CLIENT {
                    continue;
                }
                if d.len() > 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1]) {
                    let seq = u16::from_be_bytes([d[2], d[3]]);
                    if d[8..12] == RTX_SSRC.to_be_bytes() {
                        self.on_rtx += 1;
                        // The header is sent in the clear: its padding bit.
                        if d[0] & 0x20 != 0 {
                            self.padded += 1;
                        }
                    }
                    if let Some(at) = self.lose.iter().position(|s| *s == seq) {
                        self.lose.remove(at);
                        continue;
                    }
                }
                let _ = self.client.handle_datagram(d, SERVER, now);
            }
            while let Some(event) = self.client.poll_event() {
                if let PeerEvent::Rtp { packet, track } = event {
                    self.track = Some(track);
                    self.received.push(packet);
                }
            }
            while let Some(e) = self.sub.poll_event() {
                self.events.push(e);
            }
            self.now += STEP;
            if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
                self.client.handle_timeout(self.now).unwrap();
            }
            if self.sub.poll_timeout().is_some_and(|t| t <= self.now) {
                self.sub.handle_timeout(self.now);
            }
        }

        /// Sends the next packet of the stream, if connected.
        fn send(&mut self) {
            if !self.sub.connected() {
                return;
            }
            self.seq = self.seq.wrapping_add(1);
            let numbers = Rewritten {
                ssrc: SSRC,
                seq: self.seq,
                ts: u32::from(self.seq) * 3_000,
            };
            let mut payload = vec![0x10, 0, 0, 0];
            payload.extend_from_slice(&self.seq.to_be_bytes());
            payload.resize(1_100, 0x5A);
            self.sub
                .send_rtp(self.now, true, numbers, None, &Bytes::from(payload), None)
                .unwrap();
        }

        fn run(&mut self, steps: usize, send: bool) {
            for _ in 0..steps {
                if send {
                    self.send();
                }
                self.step();
            }
        }
    }

    #[test]
    fn the_stacks_client_connects_receives_every_packet_and_reports_the_round_trip() {
        let mut call = Call::new();
        call.run(300, true);
        assert_eq!(call.events.first(), Some(&SubscriberEvent::Connected));
        assert_eq!(call.sub.destination(), Some(CLIENT));
        assert!(call.received.len() > 250, "{} packets", call.received.len());
        for p in &call.received {
            assert_eq!(
                (p.ssrc, p.payload_type, p.ts),
                (SSRC, 96, u32::from(p.seq) * 3_000)
            );
            assert_eq!(&p.payload[4..6], &p.seq.to_be_bytes(), "its own payload");
            assert_eq!(p.payload.len(), 1_100);
        }
        // Sender reports went out each second, and the client's reception
        // reports answered them: the round trip is known (the wire here has
        // no delay, so it is the client's own rounding of the delay).
        let rtt = call
            .sub
            .rtt()
            .expect("a round trip from the client's reports");
        assert!(rtt < Duration::from_millis(50), "{rtt:?}");
        assert_eq!(call.sub.stats().dropped, 0);
    }

    #[test]
    fn a_probe_pads_on_the_rtx_stream_for_a_moment_at_the_rate_it_seeks() {
        let mut call = Call::with_feedback();
        // 2 s of media: 100 packets of 1,100 bytes a second.
        call.run(200, true);
        let estimate = call
            .sub
            .estimate()
            .expect("the client's congestion feedback gives an estimate");
        assert!(
            !call.sub.want(call.now, estimate),
            "no probe for what the estimate carries"
        );
        call.run(10, true);
        assert_eq!(call.padded, 0);
        assert!(call.sub.want(call.now, estimate * 3));
        call.run(100, true);
        let padding = call.sub.stats().padding;
        assert!(padding > 0, "the probe sent padding");
        assert_eq!(call.padded as u64, padding, "all of it on the RTX stream");
        assert_eq!(call.on_rtx, call.padded, "and nothing needed resending");
        // At most twice the estimate for 300 ms, media included.
        let bits = padding * (PADDING_MAX as u64 + 40) * 8;
        assert!(
            bits <= 2 * estimate * 3 / 10,
            "{padding} padding packets for an estimate of {estimate}"
        );
        // The client took the padding and lost none of the media.
        assert_eq!(call.received.len(), usize::from(call.seq));
        assert_eq!(call.sub.probes().0, 1);
        // It ended: no more padding while no probe is wanted.
        call.run(100, true);
        assert_eq!(call.sub.stats().padding, padding);
    }

    #[test]
    fn packets_lost_on_the_way_are_resent_on_the_clients_nacks() {
        let call = lost_packets_come_again(Call::new());
        assert_eq!(call.on_rtx, 0);
    }

    #[test]
    fn packets_lost_on_the_way_are_resent_on_the_rtx_stream_where_negotiated() {
        let call = lost_packets_come_again(Call::with_rtx(true));
        assert_eq!(call.on_rtx as u64, call.sub.stats().resent);
    }

    fn lost_packets_come_again(mut call: Call) -> Call {
        call.run(100, false);
        assert!(call.sub.connected());
        let first = call.seq + 1;
        call.lose = (0..10).map(|i| first + 5 + i * 13).collect();
        let lost = call.lose.clone();
        call.run(200, true);
        call.run(50, false);
        let got: std::collections::HashSet<u16> = call.received.iter().map(|p| p.seq).collect();
        assert!(call.lose.is_empty(), "every loss happened");
        for seq in lost {
            assert!(got.contains(&seq), "packet {seq} came again");
        }
        let resent = call.sub.stats().resent;
        assert!(
            (10..=30).contains(&resent),
            "{resent} resends for 10 losses"
        );
        call
    }

    #[test]
    fn a_nack_flood_is_answered_within_the_budget() {
        let mut call = Call::new();
        call.run(100, false);
        call.run(500, true);
        let track = call.track.clone().expect("the client's track");
        let sent_bytes = 500 * 1_120u64;
        let before = call.sub.stats().resent;
        // Every packet of the last five seconds, ten times over, at once.
        let seqs: Vec<u16> = (call.seq - 499..=call.seq).collect();
        for _ in 0..10 {
            call.client.nack(&track, &seqs, call.now).unwrap();
        }
        call.step();
        let resent = call.sub.stats().resent - before;
        // The share of the last second's bytes, plus the burst.
        let allowance = (sent_bytes / 5) * 30 / 100 + crate::retransmit::BURST;
        assert!(resent > 0);
        assert!(
            resent * 1_120 <= allowance + 1_120,
            "{resent} resends of 1,120 bytes over an allowance of {allowance}"
        );
    }

    /// At 100 packets a second, the history lets go of each payload three
    /// seconds after it was sent: a NACK for an older packet gets nothing.
    #[test]
    fn payloads_older_than_the_history_age_are_let_go() {
        let mut call = Call::new();
        call.run(100, false);
        let first = call.seq + 1;
        call.run(450, true);
        let kept = call.sub.streams[0]
            .history
            .iter()
            .filter(|k| k.payload.is_some())
            .count();
        assert!((300..=302).contains(&kept), "{kept} payloads kept");
        let track = call.track.clone().expect("the client's track");
        let before = call.sub.stats().resent;
        call.client
            .nack(&track, &[first, first + 10], call.now)
            .unwrap();
        call.step();
        assert_eq!(call.sub.stats().resent, before, "nothing to resend");
        call.client.nack(&track, &[call.seq - 5], call.now).unwrap();
        call.step();
        assert_eq!(
            call.sub.stats().resent,
            before + 1,
            "a recent one is resent"
        );
    }

    #[test]
    fn a_keyframe_request_reaches_the_engine_for_its_stream() {
        let mut call = Call::new();
        call.run(100, true);
        let track = call.track.clone().expect("the client's track");
        call.client.request_keyframe(&track, call.now).unwrap();
        call.step();
        assert!(call
            .events
            .contains(&SubscriberEvent::KeyframeRequested { media_ssrc: SSRC }));
    }

    #[test]
    fn a_client_that_falls_silent_fails_and_one_that_moves_is_followed() {
        let mut call = Call::new();
        call.run(100, true);
        // The client nominates a new path (another interface, a NAT that
        // rebinds): media follows it.
        let moved = SocketAddr::from(([127, 0, 0, 2], 50_001));
        let client_creds = (
            "someclient".to_owned(),
            "client-password-0123456789".to_owned(),
        );
        let check = nominating_request(&client_creds, &(UFRAG.into(), PWD.into())).unwrap();
        call.sub
            .handle_datagram(call.now, moved, BytesMut::from(&check[..]));
        assert_eq!(call.sub.destination(), Some(moved));
        let (to, response) = call.sub.poll_transmit().expect("the check is answered");
        assert_eq!((to, &response[..2]), (moved, &[0x01, 0x01][..]));
        call.send();
        assert_eq!(call.sub.poll_transmit().map(|(to, _)| to), Some(moved));
        // Then nothing more from it: after the silence it counts as gone,
        // and nothing is sent any more.
        call.client_heard = false;
        call.run(999, true);
        assert!(!call.events.contains(&SubscriberEvent::Failed));
        call.run(200, true);
        assert_eq!(call.events.last(), Some(&SubscriberEvent::Failed));
        assert!(call.sub.poll_timeout().is_none());
        call.send();
        assert!(call.sub.poll_transmit().is_none());
    }

    #[test]
    fn strangers_get_no_answer_and_no_media() {
        let now = Instant::now();
        let identity = Identity::generate().unwrap();
        let mut sub = SubscriberTransport::new(setup(now), &identity);
        let stranger = SocketAddr::from(([127, 0, 0, 3], 4_000));
        // A check signed with another password.
        let creds = ("x".to_owned(), "client-password-0123456789".to_owned());
        let forged = nominating_request(&creds, &(UFRAG.into(), "not-it-0123456789012".into()));
        sub.handle_datagram(now, stranger, BytesMut::from(&forged.unwrap()[..]));
        // DTLS and SRTCP from an address no check came from.
        sub.handle_datagram(now, stranger, BytesMut::from(&[22u8, 254, 253, 0, 0][..]));
        sub.handle_datagram(
            now,
            stranger,
            BytesMut::from(&[0x80u8, 200, 0, 1, 0, 0, 0, 0][..]),
        );
        assert!(sub.poll_transmit().is_none());
        assert_eq!(sub.stats().dropped, 3);
        assert_eq!(sub.destination(), None);
        assert!(sub.poll_timeout().is_none(), "no clock runs for strangers");
    }

    proptest! {
        /// Whatever arrives, from a client that passed its check, nothing
        /// panics and the transport sends at most one answer per datagram.
        #[test]
        fn any_datagram_is_taken_without_a_panic(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)
        ) {
            let now = Instant::now();
            let identity = Identity::generate().unwrap();
            let mut sub = SubscriberTransport::new(setup(now), &identity);
            sub.set_remote(&RemoteSide { fingerprint: "AA:BB".into(), role: DtlsRole::Server }, now).unwrap();
            let creds = ("c".to_owned(), "client-password-0123456789".to_owned());
            let check = nominating_request(&creds, &(UFRAG.into(), PWD.into())).unwrap();
            sub.handle_datagram(now, CLIENT, BytesMut::from(&check[..]));
            prop_assert!(sub.poll_transmit().is_some());
            for d in datagrams {
                let len = d.len();
                sub.handle_datagram(now, CLIENT, BytesMut::from(&d[..]));
                let mut out = 0;
                while let Some((_, sent)) = sub.poll_transmit() {
                    out += sent.len();
                }
                prop_assert!(out <= len.max(200) * 2, "{out} bytes out for {len} in");
            }
            sub.handle_timeout(now + Duration::from_secs(1));
        }
    }
}
