//! The transport of a publisher connection, owned by Roost (ADR 0020, step
//! 6): the client sends, the engine receives. The [`Link`] answers checks,
//! does DTLS and opens SRTP; here the packets are placed in their media
//! section and handed to the engine, and the feedback a receiver owes its
//! sender goes out:
//! - a stream is placed by the SSRC the offer named, else by its `mid`
//!   header extension, else by a payload type only one section takes; in a
//!   section that takes simulcast, its rid says its layer (ADR 0025). A
//!   layer's first stream is the layer, and another SSRC in it is dropped;
//! - RTX packets (RFC 4588) are opened into the packet they repair;
//! - a packet that comes again (a browser probes its path by resending
//!   recent packets on RTX) goes on only once;
//! - NACKs for lost packets, receiver reports and transport-wide congestion
//!   feedback come from [`Reception`], which each packet updates in place;
//!   keyframe requests (PLI, or FIR where only that was negotiated) are
//!   written when the engine asks.
//!
//! Nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::shared::marshal::Unmarshal;

use super::answer::{ReceivedSection, MAX_LAYERS};
use super::dtls_srtp::Identity;
use super::link::{Inbound, Link, LinkEvent, LinkSetup, RemoteSide};
use super::reception::{Reception, StreamSetup};
use super::{Kind, PeerEvent, Rtp};
use crate::MediaError;

/// Streams a connection reads at most: one per section and its RTX, for
/// the sections an offer may have.
const MAX_STREAMS: usize = 64;

/// A stream placed in a section.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    section: usize,
    /// The simulcast layer it carries: its rid's place in the section's
    /// list; 0 without simulcast.
    layer: u8,
    /// Whether it carries retransmissions of the section's track.
    rtx: bool,
}

/// Each section's layers, once their first packets came: their SSRCs.
type Opened = [Option<u32>; MAX_LAYERS];

/// Counts of what the transport did, for the engine's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub received: u64,
    /// Packets repaired through RTX.
    pub repaired: u64,
    /// Packets that came again after their first copy (RTX padding that
    /// resends media, or a repair that came after the packet did): not
    /// forwarded.
    pub duplicates: u64,
    /// Datagrams and packets dropped: from an address no check came from,
    /// failing SRTP, in no section, or a second stream of a track.
    pub dropped: u64,
    pub keyframe_requests: u64,
}

/// One publisher connection's transport.
pub struct PublisherTransport {
    link: Link,
    sections: Vec<ReceivedSection>,
    streams: Vec<Stream>,
    /// The section's track, once its first packet came: its layers' SSRCs.
    opened: Vec<Opened>,
    /// The transport-wide sequence number's extension id: one for the
    /// whole bundle.
    transport_cc: Option<u8>,
    /// NACKs, receiver reports and transport-wide feedback.
    reception: Reception,
    /// The SSRC this side's feedback names as its sender.
    own_ssrc: u32,
    fir_seq: u8,
    /// Feedback due, kept to reuse its room.
    due: Vec<Box<dyn rtc::rtcp::packet::Packet>>,
    events: VecDeque<PeerEvent>,
    stats: PublisherStats,
}

impl PublisherTransport {
    /// A transport presenting `identity`, waiting for the client's checks.
    pub fn new(setup: LinkSetup, identity: &Identity, own_ssrc: u32) -> PublisherTransport {
        PublisherTransport {
            link: Link::new(setup, identity),
            sections: Vec::new(),
            streams: Vec::new(),
            opened: Vec::new(),
            transport_cc: None,
            reception: Reception::new(own_ssrc),
            own_ssrc,
            fir_seq: 0,
            due: Vec::new(),
            events: VecDeque::new(),
            stats: PublisherStats::default(),
        }
    }

    /// The client's offer was answered: its certificate, and what each
    /// section now takes. A track whose section no longer receives, or now
    /// carries another track, is closed; the others go on.
    pub fn configure(
        &mut self,
        remote: &RemoteSide,
        sections: Vec<ReceivedSection>,
        now: Instant,
    ) -> Result<(), MediaError> {
        self.link.set_remote(remote, now)?;
        for (i, old) in self.sections.iter().enumerate() {
            let kept = sections
                .get(i)
                .is_some_and(|new| new.receiving && new.mid == old.mid && new.track == old.track);
            if kept {
                continue;
            }
            if self
                .opened
                .get(i)
                .is_some_and(|o| o.iter().any(Option::is_some))
            {
                self.events.push_back(PeerEvent::TrackClosed {
                    track: old.track.clone(),
                });
            }
            self.opened[i] = Opened::default();
            let gone: Vec<Stream> = self
                .streams
                .iter()
                .filter(|s| s.section == i)
                .copied()
                .collect();
            for stream in gone {
                self.reception.unbind(stream.ssrc);
            }
            self.streams.retain(|s| s.section != i);
        }
        self.opened.resize(sections.len(), Opened::default());
        self.transport_cc = sections
            .iter()
            .filter(|s| s.receiving)
            .find_map(|s| s.extensions.transport_cc);
        self.sections = sections;
        self.link_events();
        Ok(())
    }

    /// Whether media flows.
    /// An ICE restart: this side's credentials change ([`Link::restart`]).
    pub fn restart_ice(&mut self, ufrag: String, pwd: String) {
        self.link.restart(ufrag, pwd);
    }

    pub fn connected(&self) -> bool {
        self.link.connected()
    }

    pub fn destination(&self) -> Option<SocketAddr> {
        self.link.destination()
    }

    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// Stops the transport: nothing more is sent or taken, and no event comes.
    pub fn close(&mut self) {
        self.link.close();
        self.events.clear();
    }

    fn link_events(&mut self) {
        while let Some(event) = self.link.poll_event() {
            self.events.push_back(match event {
                LinkEvent::Connected => PeerEvent::Connected,
                LinkEvent::Failed => PeerEvent::Failed,
            });
        }
    }

    /// Takes a datagram the engine's socket received from `from` for this
    /// connection. What is not for it is dropped and counted.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: BytesMut) {
        match self.link.handle_datagram(now, from, datagram) {
            Inbound::Taken => {}
            Inbound::Rtp(plain) => self.rtp(now, plain.freeze()),
            Inbound::Rtcp(plain) => self.rtcp(now, plain.freeze()),
            Inbound::Dropped => self.stats.dropped += 1,
        }
        self.link_events();
        self.send_feedback(now);
    }

    fn rtp(&mut self, now: Instant, mut plain: Bytes) {
        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut plain) else {
            self.stats.dropped += 1;
            return;
        };
        // Every packet that carries a transport-wide number counts for the
        // congestion feedback, padding and streams not taken included: the
        // path carried them.
        let transport_seq = self
            .transport_cc
            .and_then(|id| packet.header.get_extension(id))
            .filter(|ext| ext.len() >= 2)
            .map(|ext| u16::from_be_bytes([ext[0], ext[1]]));
        if let Some(seq) = transport_seq {
            self.reception.transport_seq(now, packet.header.ssrc, seq);
        }
        let Some(stream) = self.place(now, &packet.header) else {
            self.stats.dropped += 1;
            return;
        };
        let packet = if stream.rtx {
            // Padding to probe the path carries no packet.
            let Ok(packet) = self.unwrap_rtx(&stream, packet) else {
                return;
            };
            self.stats.repaired += 1;
            packet
        } else {
            packet
        };
        self.stats.received += 1;
        let h = &packet.header;
        let new = self
            .reception
            .rtp(now, h.ssrc, h.sequence_number, h.timestamp, stream.rtx);
        if !new {
            // Its first copy went on already: a second would reach every
            // subscriber as a packet its SRTP refuses as replayed.
            self.stats.duplicates += 1;
            return;
        }
        let s = &self.sections[stream.section];
        let mut packet = Rtp::received(packet, s.extensions.audio_level);
        packet.layer = stream.layer;
        self.events.push_back(PeerEvent::Rtp {
            track: s.track.clone(),
            packet,
        });
    }

    /// The packet an RTX packet repairs: its original sequence number from
    /// the payload's first two bytes, the track's SSRC and payload type.
    /// An RTX packet with no payload is padding, given back as it is.
    fn unwrap_rtx(
        &self,
        stream: &Stream,
        mut packet: rtc::rtp::Packet,
    ) -> Result<rtc::rtp::Packet, rtc::rtp::Packet> {
        let section = &self.sections[stream.section];
        let primary = self
            .streams
            .iter()
            .find(|s| s.section == stream.section && s.layer == stream.layer && !s.rtx)
            .map(|s| s.ssrc);
        let apt = section
            .rtx
            .iter()
            .find(|(pt, _)| *pt == packet.header.payload_type)
            .map(|(_, apt)| *apt);
        let (Some(primary), Some(apt)) = (primary, apt) else {
            return Err(packet);
        };
        if packet.payload.len() < 2 {
            return Err(packet);
        }
        packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
        packet.header.ssrc = primary;
        packet.header.payload_type = apt;
        packet.payload = packet.payload.slice(2..);
        Ok(packet)
    }

    /// The stream of a packet's SSRC, placing a new one in its section.
    fn place(&mut self, now: Instant, header: &rtc::rtp::header::Header) -> Option<Stream> {
        if let Some(s) = self.streams.iter().find(|s| s.ssrc == header.ssrc) {
            return Some(*s);
        }
        if self.streams.len() >= MAX_STREAMS {
            return None;
        }
        let (section, layer, rtx) = self.section_of(header)?;
        let has_primary = self
            .streams
            .iter()
            .any(|s| s.section == section && s.layer == layer && !s.rtx);
        if rtx != has_primary {
            // RTX before its layer's first packet has nothing to repair;
            // a second stream of a layer would mix two encodings.
            return None;
        }
        let stream = Stream {
            ssrc: header.ssrc,
            section,
            layer,
            rtx,
        };
        self.streams.push(stream);
        if rtx {
            // Counted as the track's packets once opened.
            return Some(stream);
        }
        let s = &self.sections[section];
        let codec = s
            .codecs
            .iter()
            .find(|(pt, _)| *pt == header.payload_type)
            .or(s.codecs.first())
            .map(|(_, c)| c.clone());
        self.reception.bind(
            now,
            StreamSetup {
                ssrc: header.ssrc,
                clock_rate: codec.as_ref().map_or(90_000, |c| c.clock_rate),
                nack: s.nack && s.kind == Some(Kind::Video),
            },
        );
        if let (Some(kind), Some(codec)) = (s.kind, codec) {
            let opened = &mut self.opened[section];
            // The track opens with its first layer; the others join it.
            let first = opened.iter().all(Option::is_none);
            opened[usize::from(layer)] = Some(header.ssrc);
            if first {
                self.events.push_back(PeerEvent::TrackOpened {
                    track: s.track.clone(),
                    kind,
                    codec,
                    ssrc: header.ssrc,
                    layers: s.rids.len().max(1) as u8,
                    mid: s.mid.clone(),
                    rids: s.rids.clone(),
                });
            }
        }
        Some(stream)
    }

    /// The receiving section a new SSRC belongs to, its layer, and whether
    /// it is the section's RTX stream.
    fn section_of(&self, header: &rtc::rtp::header::Header) -> Option<(usize, u8, bool)> {
        let pt = header.payload_type;
        let rtx_of = |s: &ReceivedSection| s.rtx.iter().any(|(p, _)| *p == pt);
        let takes = |s: &ReceivedSection| s.codecs.iter().any(|(p, _)| *p == pt);
        // By its mid, where the packet names one.
        let mid_id = self.sections.iter().find_map(|s| s.extensions.mid);
        if let Some(mid) = mid_id.and_then(|id| header.get_extension(id)) {
            let (i, s) = self
                .sections
                .iter()
                .enumerate()
                .find(|(_, s)| s.receiving && s.mid.as_bytes() == &mid[..])?;
            let rtx = rtx_of(s);
            if !rtx && !takes(s) {
                return None;
            }
            return Some((i, Self::layer_of(s, header, rtx)?, rtx));
        }
        // Named in the offer.
        for (i, s) in self
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.receiving)
        {
            for (ssrc, rtx) in &s.ssrcs {
                if *ssrc == header.ssrc {
                    let layer = Self::layer_of(s, header, false)?;
                    return takes(s).then_some((i, layer, false));
                }
                if *rtx == Some(header.ssrc) {
                    let layer = Self::layer_of(s, header, true)?;
                    return rtx_of(s).then_some((i, layer, true));
                }
            }
        }
        // By a payload type only one section takes.
        let mut found = None;
        for (i, s) in self
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.receiving)
        {
            let rtx = rtx_of(s);
            if rtx || takes(s) {
                if found.is_some() {
                    return None;
                }
                found = Some((i, Self::layer_of(s, header, rtx)?, rtx));
            }
        }
        found
    }

    /// The layer a new stream of section `s` carries: where the section
    /// takes simulcast, the place of the rid the packet names (the repaired
    /// rid for RTX). A packet that names no rid is the only layer of a
    /// section with one, and unplaceable in a section with several.
    fn layer_of(s: &ReceivedSection, header: &rtc::rtp::header::Header, rtx: bool) -> Option<u8> {
        if s.rids.is_empty() {
            return Some(0);
        }
        let id = if rtx {
            s.extensions.repaired_rid
        } else {
            s.extensions.rid
        };
        match id.and_then(|id| header.get_extension(id)) {
            Some(named) => s
                .rids
                .iter()
                .position(|rid| rid.as_bytes() == &named[..])
                .map(|at| at as u8),
            None => (s.rids.len() == 1).then_some(0),
        }
    }

    fn rtcp(&mut self, now: Instant, mut plain: Bytes) {
        match rtc::rtcp::packet::unmarshal(&mut plain) {
            // Sender reports, for the receiver reports' round trip.
            Ok(packets) => {
                for p in &packets {
                    if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                        self.reception.sender_report(now, sr.ssrc, sr.ntp_time);
                    }
                }
            }
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// Sends the feedback due at `now`: NACKs, reports, congestion
    /// feedback, each in a packet of its own.
    fn send_feedback(&mut self, now: Instant) {
        if !self.link.connected() || self.reception.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.reception.feedback(now, &mut due);
        for packet in due.drain(..) {
            self.send_rtcp(std::slice::from_ref(&packet));
        }
        self.due = due;
    }

    fn send_rtcp(&mut self, packets: &[Box<dyn rtc::rtcp::packet::Packet>]) -> bool {
        if packets.is_empty() {
            return false;
        }
        let Some((to, dtls)) = self.link.secured() else {
            return false;
        };
        let Ok(plain) = rtc::rtcp::packet::marshal(packets) else {
            return false;
        };
        match dtls.protect_rtcp(&plain) {
            Ok(protected) => {
                self.link.send(to, protected);
                true
            }
            Err(_) => false,
        }
    }

    /// Asks the client for a keyframe of one layer of a track (of every
    /// layer that came, where `layer` is `None`): PLI, or FIR where the
    /// section negotiated only that.
    pub fn request_keyframe(&mut self, track: &str, layer: Option<u8>) -> Result<(), MediaError> {
        let Some((i, s)) = self
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.receiving && s.track == track)
        else {
            return Err(MediaError::NotFound("track"));
        };
        let fir = s.fir && !s.pli;
        let opened = self.opened[i];
        for (at, ssrc) in opened.iter().enumerate() {
            // Nothing came yet: its first frame is a keyframe.
            let Some(media_ssrc) = *ssrc else { continue };
            if layer.is_some_and(|l| usize::from(l) != at) {
                continue;
            }
            let request: Box<dyn rtc::rtcp::packet::Packet> = if fir {
                self.fir_seq = self.fir_seq.wrapping_add(1);
                Box::new(FullIntraRequest {
                    sender_ssrc: self.own_ssrc,
                    media_ssrc,
                    fir: vec![FirEntry {
                        ssrc: media_ssrc,
                        sequence_number: self.fir_seq,
                    }],
                })
            } else {
                Box::new(PictureLossIndication {
                    sender_ssrc: self.own_ssrc,
                    media_ssrc,
                })
            };
            if self.send_rtcp(&[request]) {
                self.stats.keyframe_requests += 1;
            }
        }
        Ok(())
    }

    /// The earliest of the link's timers and the feedback's.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.link.failed() {
            return None;
        }
        let feedback = self.link.connected().then(|| self.reception.poll_timeout());
        [self.link.poll_timeout(), feedback.flatten()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.link_events();
        self.send_feedback(now);
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.link.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::nominating_request;
    use crate::peer::answer::{answer, AnswerSession};
    use crate::peer::dtls_srtp::DtlsRole;
    use crate::peer::{Peer, PeerSetup, SenderId};
    use proptest::prelude::*;

    const SERVER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);
    const CLIENT: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);
    const UFRAG: &str = "roostpub";
    const PWD: &str = "roost-publisher-password-0123";
    const SSRC: u32 = 0x5EED;
    const RTX_SSRC: u32 = 0x5EEE;
    const STEP: Duration = Duration::from_millis(10);

    fn link() -> LinkSetup {
        LinkSetup {
            ufrag: UFRAG.into(),
            pwd: PWD.into(),
            silence: Duration::from_secs(10),
        }
    }

    fn session(identity: &Identity) -> AnswerSession {
        AnswerSession {
            id: 7,
            version: 1,
            ufrag: UFRAG.into(),
            pwd: PWD.into(),
            fingerprint: identity.fingerprint().to_owned(),
            candidates: vec![SERVER],
        }
    }

    /// The stack's own client (`RTCPeerConnection`, full ICE) publishing
    /// one VP8 track, and the engine's side answering it, each advanced by
    /// the same clock; datagrams between them go through `step`, where a
    /// test can lose them.
    struct Call {
        now: Instant,
        publisher: PublisherTransport,
        client: Peer,
        sender: SenderId,
        events: Vec<PeerEvent>,
        seq: u16,
        /// Of the client's packets: which the wire loses (by sequence
        /// number, once each, first transmissions only).
        lose: Vec<u16>,
        client_heard: bool,
        /// RTCP packet types the client received (visible in SRTCP).
        rtcp_types: Vec<u8>,
        keyframe_requests: usize,
    }

    impl Call {
        fn new(rtx: bool) -> Call {
            let now = Instant::now();
            let identity = Identity::generate().unwrap();
            let mut publisher = PublisherTransport::new(link(), &identity, 1);
            let mut client = Peer::new(&PeerSetup::client(CLIENT), now).unwrap();
            let codec = crate::client::codec(Kind::Video);
            let sender = client
                .add_sender(
                    Kind::Video,
                    &codec,
                    SSRC,
                    rtx.then_some(RTX_SSRC),
                    "s",
                    "cam",
                )
                .unwrap();
            let offer = client.offer(now).unwrap().unwrap();
            let answered = answer(&offer, &session(&identity)).unwrap();
            let remote = RemoteSide {
                fingerprint: answered.fingerprint.clone(),
                role: answered.role,
            };
            publisher
                .configure(&remote, answered.sections, now)
                .unwrap();
            client.accept_answer(answered.sdp, now).unwrap();
            Call {
                now,
                publisher,
                client,
                sender,
                events: Vec::new(),
                seq: 0,
                lose: Vec::new(),
                client_heard: true,
                rtcp_types: Vec::new(),
                keyframe_requests: 0,
            }
        }

        fn step(&mut self) {
            let now = self.now;
            while let Some((to, d)) = self.client.poll_transmit() {
                assert_eq!(to, SERVER, "the client sends to the answered candidate");
                if !self.client_heard {
                    continue;
                }
                let rtp = d.len() > 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1]);
                if rtp && d[8..12] == SSRC.to_be_bytes() {
                    let seq = u16::from_be_bytes([d[2], d[3]]);
                    if let Some(at) = self.lose.iter().position(|s| *s == seq) {
                        self.lose.remove(at);
                        continue;
                    }
                }
                self.publisher.handle_datagram(now, CLIENT, d);
            }
            while let Some((to, d)) = self.publisher.poll_transmit() {
                assert_eq!(to, CLIENT);
                if d.len() > 1 && (192..=223).contains(&d[1]) {
                    self.rtcp_types.push(d[1]);
                }
                let _ = self.client.handle_datagram(d, SERVER, now);
            }
            while let Some(event) = self.client.poll_event() {
                if let PeerEvent::KeyframeRequested { .. } = event {
                    self.keyframe_requests += 1;
                }
            }
            while let Some(e) = self.publisher.poll_event() {
                self.events.push(e);
            }
            self.now += STEP;
            if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
                self.client.handle_timeout(self.now).unwrap();
            }
            if self.publisher.poll_timeout().is_some_and(|t| t <= self.now) {
                self.publisher.handle_timeout(self.now);
            }
        }

        fn send(&mut self) {
            if !self.publisher.connected() {
                return;
            }
            self.seq = self.seq.wrapping_add(1);
            let mut payload = vec![0x10, 0, 0, 0];
            payload.extend_from_slice(&self.seq.to_be_bytes());
            payload.resize(1_100, 0x5A);
            let packet = Rtp {
                ssrc: SSRC,
                seq: self.seq,
                ts: u32::from(self.seq) * 3_000,
                marker: true,
                payload_type: 96,
                payload: Bytes::from(payload),
                audio_level: None,
                layer: 0,
            };
            self.client
                .send_rtp(self.sender, &packet, "video/VP8", self.now)
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

        fn received(&self) -> Vec<&Rtp> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    PeerEvent::Rtp { packet, .. } => Some(packet),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn the_stacks_client_connects_and_every_packet_arrives_on_its_track() {
        let mut call = Call::new(false);
        call.run(300, true);
        assert!(matches!(call.events.first(), Some(PeerEvent::Connected)));
        let opened: Vec<_> = call
            .events
            .iter()
            .filter_map(|e| match e {
                PeerEvent::TrackOpened {
                    track,
                    kind,
                    codec,
                    ssrc,
                    layers: 1,
                    ..
                } => Some((track.clone(), *kind, codec.mime_type.clone(), *ssrc)),
                _ => None,
            })
            .collect();
        assert_eq!(
            opened,
            vec![("cam".to_owned(), Kind::Video, "video/VP8".to_owned(), SSRC)]
        );
        let received = call.received();
        assert!(received.len() > 250, "{} packets", received.len());
        for p in &received {
            assert_eq!(
                (p.ssrc, p.payload_type, p.ts),
                (SSRC, 96, u32::from(p.seq) * 3_000)
            );
            assert_eq!(&p.payload[4..6], &p.seq.to_be_bytes(), "its own payload");
            assert_eq!(p.payload.len(), 1_100);
        }
        // Receiver reports (201) each second, and transport-wide
        // congestion feedback (205) several times a second.
        let reports = call.rtcp_types.iter().filter(|t| **t == 201).count();
        let feedback = call.rtcp_types.iter().filter(|t| **t == 205).count();
        assert!(
            (2..=4).contains(&reports),
            "{reports} receiver reports in 3 s"
        );
        assert!(feedback >= 10, "{feedback} feedback packets in 3 s");
        assert_eq!(call.publisher.stats().dropped, 0);
    }

    fn losses_repaired(mut call: Call) -> Call {
        call.run(100, false);
        assert!(call.publisher.connected());
        let first = call.seq + 1;
        call.lose = (0..10).map(|i| first + 5 + i * 13).collect();
        let lost = call.lose.clone();
        call.run(200, true);
        call.run(50, false);
        assert!(call.lose.is_empty(), "every loss happened");
        let got: std::collections::HashSet<u16> = call.received().iter().map(|p| p.seq).collect();
        for seq in lost {
            assert!(got.contains(&seq), "packet {seq} came again");
        }
        call
    }

    #[test]
    fn lost_packets_are_asked_for_and_come_again() {
        let call = losses_repaired(Call::new(false));
        // Without an RTX stream of its own the client resends on one the
        // stack adds.
        assert!(call.publisher.stats().repaired >= 10);
    }

    #[test]
    fn lost_packets_come_again_on_the_rtx_stream_and_are_opened() {
        let call = losses_repaired(Call::new(true));
        let repaired = call.publisher.stats().repaired;
        assert!(
            (10..=30).contains(&repaired),
            "{repaired} repairs for 10 losses"
        );
        // Repaired packets come with the track's own numbers and payload.
        for p in call.received() {
            assert_eq!((p.ssrc, p.payload_type), (SSRC, 96));
            assert_eq!(&p.payload[4..6], &p.seq.to_be_bytes());
        }
        // Each packet goes on once: a repair beyond the first is counted and
        // dropped.
        let seqs: Vec<u16> = call.received().iter().map(|p| p.seq).collect();
        let once: std::collections::HashSet<u16> = seqs.iter().copied().collect();
        assert_eq!(seqs.len(), once.len(), "no packet forwarded twice");
        assert_eq!(call.publisher.stats().duplicates, repaired - 10);
    }

    #[test]
    fn a_keyframe_request_reaches_the_client() {
        let mut call = Call::new(false);
        call.run(100, true);
        call.publisher.request_keyframe("cam", Some(0)).unwrap();
        call.step();
        assert_eq!(call.keyframe_requests, 1);
        assert_eq!(call.publisher.stats().keyframe_requests, 1);
        // Of a layer that never came: nothing to ask.
        call.publisher.request_keyframe("cam", Some(2)).unwrap();
        call.step();
        assert_eq!(call.keyframe_requests, 1);
        assert!(call.publisher.request_keyframe("nothing", None).is_err());
    }

    #[test]
    fn a_re_offer_without_the_track_closes_it() {
        let mut call = Call::new(false);
        call.run(50, true);
        let mut sections = call.publisher.sections.clone();
        sections[0].receiving = false;
        let remote = RemoteSide {
            fingerprint: "AA".into(),
            role: DtlsRole::Server,
        };
        call.publisher
            .configure(&remote, sections, call.now)
            .unwrap();
        call.step();
        assert!(call
            .events
            .iter()
            .any(|e| matches!(e, PeerEvent::TrackClosed { track } if track == "cam")));
        let before = call.received().len();
        call.run(20, true);
        assert_eq!(call.received().len(), before, "its packets are dropped");
    }

    #[test]
    fn a_client_that_falls_silent_fails() {
        let mut call = Call::new(false);
        call.run(100, true);
        call.client_heard = false;
        call.run(999, true);
        assert!(!call.events.iter().any(|e| matches!(e, PeerEvent::Failed)));
        call.run(200, true);
        assert!(matches!(call.events.last(), Some(PeerEvent::Failed)));
        assert!(call.publisher.poll_timeout().is_none());
    }

    fn section(mid: &str, pts: &[u8], rids: &[&str]) -> ReceivedSection {
        ReceivedSection {
            mid: mid.into(),
            kind: Some(Kind::Video),
            receiving: true,
            track: format!("t{mid}"),
            codecs: pts
                .iter()
                .map(|pt| (*pt, crate::client::codec(Kind::Video)))
                .collect(),
            rtx: pts.iter().map(|pt| (pt + 1, *pt)).collect(),
            rids: rids.iter().map(|r| (*r).to_owned()).collect(),
            extensions: crate::peer::answer::Extensions {
                mid: Some(1),
                rid: Some(2),
                repaired_rid: Some(3),
                ..Default::default()
            },
            nack: true,
            pli: true,
            ..Default::default()
        }
    }

    fn header(
        ssrc: u32,
        pt: u8,
        mid: Option<&str>,
        rid: Option<(u8, &str)>,
    ) -> rtc::rtp::header::Header {
        let mut h = rtc::rtp::header::Header {
            version: 2,
            ssrc,
            payload_type: pt,
            ..Default::default()
        };
        if let Some(mid) = mid {
            h.extension = true;
            h.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            h.set_extension(1, Bytes::copy_from_slice(mid.as_bytes()))
                .unwrap();
        }
        if let Some((id, rid)) = rid {
            h.extension = true;
            h.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            h.set_extension(id, Bytes::copy_from_slice(rid.as_bytes()))
                .unwrap();
        }
        h
    }

    #[test]
    fn streams_are_placed_by_mid_rid_and_payload_type_and_a_layer_takes_one() {
        let identity = Identity::generate().unwrap();
        let mut t = PublisherTransport::new(link(), &identity, 1);
        t.sections = vec![section("0", &[96], &["q", "f"]), section("1", &[102], &[])];
        t.opened = vec![Opened::default(); 2];
        let now = Instant::now();
        // RTX before its layer: nothing to repair yet.
        assert!(t
            .place(now, &header(10, 97, Some("0"), Some((3, "f"))))
            .is_none());
        // A rid the answer did not take, and none where there are two layers.
        assert!(t
            .place(now, &header(11, 96, Some("0"), Some((2, "h"))))
            .is_none());
        assert!(t.place(now, &header(18, 96, Some("0"), None)).is_none());
        let f = t
            .place(now, &header(12, 96, Some("0"), Some((2, "f"))))
            .unwrap();
        assert_eq!((f.section, f.layer, f.rtx), (0, 1, false));
        let q = t
            .place(now, &header(19, 96, Some("0"), Some((2, "q"))))
            .unwrap();
        assert_eq!((q.section, q.layer, q.rtx), (0, 0, false));
        let rtx = t
            .place(now, &header(13, 97, Some("0"), Some((3, "f"))))
            .unwrap();
        assert_eq!((rtx.section, rtx.layer, rtx.rtx), (0, 1, true));
        // A second stream of the same layer would mix two encodings.
        assert!(t
            .place(now, &header(14, 96, Some("0"), Some((2, "f"))))
            .is_none());
        // No mid: the payload type only section 1 takes.
        let by_pt = t.place(now, &header(15, 102, None, None)).unwrap();
        assert_eq!((by_pt.section, by_pt.layer), (1, 0));
        // A payload type no section takes, and a mid no section has.
        assert!(t.place(now, &header(16, 50, None, None)).is_none());
        assert!(t.place(now, &header(17, 96, Some("9"), None)).is_none());
        // Each track opens once, with its first layer, and says how many
        // it may have.
        let opened: Vec<(u32, u8)> = t
            .events
            .iter()
            .filter_map(|e| match e {
                PeerEvent::TrackOpened { ssrc, layers, .. } => Some((*ssrc, *layers)),
                _ => None,
            })
            .collect();
        assert_eq!(opened, vec![(12, 2), (15, 1)]);
        assert_eq!(t.opened[0], [Some(19), Some(12), None]);
        // A repaired packet of the full layer is opened into that layer.
        let mut packet = rtc::rtp::Packet {
            header: header(13, 97, None, None),
            payload: Bytes::from_static(&[0x01, 0x02, 0xAA]),
        };
        packet.header.sequence_number = 9;
        let repaired = t.unwrap_rtx(&rtx, packet).unwrap();
        assert_eq!(
            (repaired.header.ssrc, repaired.header.sequence_number),
            (12, 0x0102)
        );
    }

    #[test]
    fn strangers_get_no_answer() {
        let now = Instant::now();
        let identity = Identity::generate().unwrap();
        let mut t = PublisherTransport::new(link(), &identity, 1);
        let stranger = SocketAddr::from(([127, 0, 0, 3], 4_000));
        let creds = ("x".to_owned(), "client-password-0123456789".to_owned());
        let forged = nominating_request(&creds, &(UFRAG.into(), "not-it-0123456789012".into()));
        t.handle_datagram(now, stranger, BytesMut::from(&forged.unwrap()[..]));
        t.handle_datagram(now, stranger, BytesMut::from(&[22u8, 254, 253, 0, 0][..]));
        t.handle_datagram(
            now,
            stranger,
            BytesMut::from(&[0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..]),
        );
        assert!(t.poll_transmit().is_none());
        assert_eq!(t.stats().dropped, 3);
        assert!(t.poll_timeout().is_none(), "no clock runs for strangers");
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
            let mut t = PublisherTransport::new(link(), &identity, 1);
            t.configure(
                &RemoteSide { fingerprint: "AA:BB".into(), role: DtlsRole::Server },
                vec![section("0", &[96], &["q", "f"])],
                now,
            ).unwrap();
            let creds = ("c".to_owned(), "client-password-0123456789".to_owned());
            let check = nominating_request(&creds, &(UFRAG.into(), PWD.into())).unwrap();
            t.handle_datagram(now, CLIENT, BytesMut::from(&check[..]));
            prop_assert!(t.poll_transmit().is_some());
            for d in datagrams {
                let len = d.len();
                t.handle_datagram(now, CLIENT, BytesMut::from(&d[..]));
                let mut out = 0;
                while let Some((_, sent)) = t.poll_transmit() {
                    out += sent.len();
                }
                prop_assert!(out <= len.max(200) * 2, "{out} bytes out for {len} in");
            }
            t.handle_timeout(now + Duration::from_secs(1));
        }
    }
}
