//! WebRTC connections, on webrtc-rs's sans-IO crates. This module and its
//! parts are the only code that touches the stack: the rest of the engine
//! sees datagrams in and out, plain events, and packets as [`Rtp`] values,
//! so another stack would replace this directory alone.
//!
//! The engine's side of every connection is the transport Roost owns (ADR
//! 0020), ICE-lite with one host candidate per advertised address (the
//! engine's shared UDP port) and ICE credentials the engine chooses, so the
//! demux can name the peer of a binding request:
//! - [`link`]: ICE-lite checks, the client's nomination, DTLS-SRTP
//!   ([`dtls_srtp`], [`ice_lite`]) and silence, for both directions;
//! - [`publisher`] and `publisher_peer`: a publisher's connection, the
//!   answers to its offers ([`answer`]) and the feedback it owes the client
//!   (`reception`: receiver reports, NACKs, congestion feedback);
//! - [`subscriber`] and `subscriber_peer`: a subscriber's connection, its
//!   offers ([`offer`]), its headers ([`rtp_writer`]) and RTCP ([`rtcp`]).
//!
//! [`Peer`] is a whole connection on the stack's `RTCPeerConnection`: the
//! client of the tests and the load tool. Its parts:
//! - `sdp`: what it does to SDP beside the stack (candidates in every
//!   section, the checks on an answer, the codecs each section took, the
//!   tracks each section carries);
//! - `codecs`: the media engine (codecs, header extensions; the tables the
//!   owned offers and answers use too), what a sender is offered and the
//!   payload types it sends with;
//! - `interceptors`: its interceptor chain, with Roost's own (keyframe
//!   requests, the retransmission budget).

pub mod answer;
mod codecs;
pub mod congestion;
pub mod dtls_srtp;
pub mod ice_lite;
mod interceptors;
pub mod link;
pub mod offer;
pub mod publisher;
mod publisher_peer;
mod reception;
pub mod rtcp;
pub mod rtp_writer;
mod sdp;
pub mod subscriber;
mod subscriber_peer;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use self::codecs::media_engine;
use self::interceptors::interceptors;
use self::sdp::{
    candidates_in_every_section, check_answer, codecs_by_ssrc, sdp_value, RemoteIdentity,
};
use crate::retransmit::RetransmitLimits;
use crate::MediaError;
pub use codecs::{Codec, AUDIO_LEVEL_URI, MID_URI};
pub use publisher_peer::PublisherPeer;
pub(crate) use sdp::msid_tracks;
pub use subscriber_peer::SubscriberPeer;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

/// An RTP packet as the engine forwards it.
#[derive(Debug, Clone)]
pub struct Rtp {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub payload: Bytes,
    /// The audio level (RFC 6464) in -dBov, 0 (loudest) to 127 (silence),
    /// when the sender put one in.
    pub audio_level: Option<u8>,
    /// The simulcast layer it belongs to (0, the smallest, without
    /// simulcast).
    pub layer: u8,
}

impl Rtp {
    /// A received packet as the engine forwards it, its audio level read
    /// from extension `level_id` where one was negotiated.
    pub(crate) fn received(p: rtc::rtp::Packet, level_id: Option<u8>) -> Rtp {
        let audio_level = level_id
            .and_then(|id| p.header.get_extension(id))
            .and_then(|ext| ext.first().map(|b| b & 0x7f));
        Rtp {
            ssrc: p.header.ssrc,
            seq: p.header.sequence_number,
            ts: p.header.timestamp,
            marker: p.header.marker,
            payload_type: p.header.payload_type,
            payload: p.payload,
            audio_level,
            layer: 0,
        }
    }
}

/// The one-byte audio-level extension's body for `level` (the V bit
/// clear), without an allocation for each packet and subscriber.
pub(crate) fn audio_level_bytes(level: u8) -> Bytes {
    static LEVELS: [u8; 128] = {
        let mut all = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            all[i] = i as u8;
            i += 1;
        }
        all
    };
    let level = usize::from(level & 0x7f);
    Bytes::from_static(&LEVELS[level..=level])
}

/// A track received from the remote side, by the id `rtc` gave it.
pub type TrackId = String;

/// A track this side sends.
pub type SenderId = RTCRtpSenderId;

/// What happened on a peer connection.
#[derive(Debug)]
pub enum PeerEvent {
    /// DTLS and SRTP are up: media flows.
    Connected,
    /// ICE or DTLS failed, or the connection closed.
    Failed,
    /// The remote side started sending a track.
    TrackOpened {
        track: TrackId,
        kind: Kind,
        codec: Codec,
        ssrc: u32,
        /// How many simulcast layers the track may carry: 1 without.
        layers: u8,
        /// Its media section, and its layers' rids, smallest first (none
        /// without simulcast).
        mid: String,
        rids: Vec<String>,
    },
    TrackClosed {
        track: TrackId,
    },
    Rtp {
        track: TrackId,
        packet: Rtp,
    },
    /// The remote side asked for a keyframe of one of this side's tracks.
    KeyframeRequested {
        media_ssrc: u32,
    },
}

/// How a peer connection is set up.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    /// ICE credentials of the engine's side; the ufrag names the peer in the demux.
    pub ufrag: String,
    pub pwd: String,
    /// The engine's socket address (what datagrams arrive on).
    pub local: SocketAddr,
    /// Addresses put in the SDP as host candidates (public or NAT 1:1 addresses).
    pub advertised: Vec<SocketAddr>,
    /// How long without a sign of life before the connection counts as
    /// disconnected, and then as failed.
    pub ice_timeouts: (std::time::Duration, std::time::Duration),
    /// Packets kept per sent video stream to answer NACKs from (a power
    /// of two, 64 to 32,768).
    pub retransmit_history: u16,
    /// How often and how much this side resends on the other's NACKs.
    pub retransmit_limits: RetransmitLimits,
}

impl PeerSetup {
    /// The engine's side of the link: its credentials, and silence for
    /// `peer_disconnected` and then `peer_failed` as the end.
    pub(crate) fn link(&self) -> link::LinkSetup {
        link::LinkSetup {
            ufrag: self.ufrag.clone(),
            pwd: self.pwd.clone(),
            silence: self.ice_timeouts.0 + self.ice_timeouts.1,
        }
    }

    /// A client's side: full ICE with credentials of its own, sending from `local`.
    pub fn client(local: SocketAddr) -> PeerSetup {
        PeerSetup {
            ufrag: String::new(),
            pwd: String::new(),
            local,
            advertised: vec![local],
            retransmit_history: 512,
            retransmit_limits: RetransmitLimits::default(),
            ice_timeouts: (
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(25),
            ),
        }
    }
}

/// One peer connection.
pub struct Peer {
    pc: RTCPeerConnection,
    local: SocketAddr,
    events: VecDeque<PeerEvent>,
    /// Remote tracks: receiver and media SSRC, for keyframe requests.
    receivers: HashMap<TrackId, (rtc::rtp_transceiver::RTCRtpReceiverId, u32)>,
    /// Our tracks' SSRC by sender.
    senders: HashMap<SenderId, u32>,
    /// Each sender's media section (`a=mid`), once the other side has the
    /// offer or answer that names it. Only these senders send: the other
    /// side places a packet whose SSRC and mid it does not know yet by guess
    /// (GStreamer on the first media section, for good), or drops it.
    sender_mids: HashMap<SenderId, Bytes>,
    /// The sections of the offer that awaits its answer, per sender.
    offered_mids: HashMap<SenderId, Bytes>,
    /// The negotiated id of the audio level extension, per remote track.
    level_ids: HashMap<TrackId, u8>,
    awaiting_answer: bool,
    /// Whether ICE and DTLS have completed once: until then there are no
    /// SRTP keys, and media for the remote side is dropped here.
    secured: bool,
    /// The remote side's ICE credentials and DTLS fingerprint, once an
    /// answer to this side's offer was taken: later answers must carry the same.
    remote_identity: Option<RemoteIdentity>,
    /// This side's ICE ufrag in its last offer answered: an offer with
    /// another restarts ICE.
    offered_ufrag: Option<String>,
}

impl Peer {
    /// A client's peer connection with Roost's codecs and interceptors
    /// (NACK within the retransmission budget, reports, transport-wide
    /// sequence numbers, and delivery of keyframe requests).
    pub fn new(setup: &PeerSetup, now: Instant) -> Result<Peer, MediaError> {
        let media = media_engine()?;
        let registry = interceptors(setup);
        let (disconnected, failed) = setup.ice_timeouts;
        let keepalive = (disconnected / 3).max(std::time::Duration::from_millis(200));
        let settings = SettingEngineBuilder::new()
            .with_ice_timeouts(Some(disconnected), Some(failed), Some(keepalive))
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(stack)?;
        for addr in &setup.advertised {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .map_err(stack)?;
            let init = RTCIceCandidate::from(&candidate).to_json().map_err(stack)?;
            pc.add_local_candidate(init).map_err(stack)?;
        }
        Ok(Peer {
            pc,
            local: setup.local,
            events: VecDeque::new(),
            receivers: HashMap::new(),
            senders: HashMap::new(),
            sender_mids: HashMap::new(),
            offered_mids: HashMap::new(),
            level_ids: HashMap::new(),
            awaiting_answer: false,
            secured: false,
            remote_identity: None,
            offered_ufrag: None,
        })
    }

    /// Answers the remote side's offer.
    pub fn answer(&mut self, offer_sdp: String, now: Instant) -> Result<String, MediaError> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(sdp)?;
        self.pc.set_remote_description(now, offer).map_err(sdp)?;
        let answer = self.pc.create_answer(None).map_err(sdp)?;
        self.pc.set_local_description(now, answer).map_err(sdp)?;
        let answered = self.mids_of_senders();
        self.sender_mids.extend(answered);
        self.local_sdp()
    }

    /// Restarts ICE with the next offer: new credentials of this side.
    pub fn restart_ice(&mut self) {
        self.pc.restart_ice();
    }

    /// Makes an offer of this side's tracks; `None` while an earlier offer
    /// awaits its answer (offer again after it).
    pub fn offer(&mut self, now: Instant) -> Result<Option<String>, MediaError> {
        if self.awaiting_answer {
            return Ok(None);
        }
        let offer = self.pc.create_offer(None).map_err(sdp)?;
        self.pc.set_local_description(now, offer).map_err(sdp)?;
        self.awaiting_answer = true;
        self.offered_mids = self.mids_of_senders();
        self.local_sdp().map(Some)
    }

    /// The media section of each sender that has one.
    fn mids_of_senders(&mut self) -> HashMap<SenderId, Bytes> {
        let senders: Vec<SenderId> = self.senders.keys().copied().collect();
        let mut mids = HashMap::new();
        for id in senders {
            if let Some(mid) = self.transceiver_of(id).and_then(|t| t.mid().clone()) {
                mids.insert(id, Bytes::from(mid));
            }
        }
        mids
    }

    /// Takes the answer to this side's offer.
    pub fn accept_answer(&mut self, answer_sdp: String, now: Instant) -> Result<(), MediaError> {
        if !self.awaiting_answer {
            return Err(MediaError::Sdp("no offer is waiting for an answer".into()));
        }
        let answer = RTCSessionDescription::answer(answer_sdp.clone()).map_err(sdp)?;
        let offer = self
            .pc
            .local_description()
            .ok_or_else(|| MediaError::Sdp("no local description".into()))?;
        // The stack would take another connection's credentials silently
        // and then refuse its checks and its certificate: no media, and no
        // word to the client.
        // An offer with new credentials of this side restarts ICE: the
        // answer brings new ones of the other side.
        let offered = sdp_value(&offer.sdp, "a=ice-ufrag:").map(str::to_owned);
        let restart = self.offered_ufrag.is_some() && self.offered_ufrag != offered;
        let identity = check_answer(
            &offer.sdp,
            &answer_sdp,
            self.remote_identity.as_ref(),
            restart,
        )?;
        self.offered_ufrag = offered;
        self.pc.set_remote_description(now, answer).map_err(sdp)?;
        self.remote_identity = Some(identity);
        self.awaiting_answer = false;
        self.sender_mids.extend(self.offered_mids.drain());
        let answered = self
            .pc
            .local_description()
            .map(|offer| codecs_by_ssrc(&offer.sdp, &answer_sdp))
            .unwrap_or_default();
        self.send_as_answered(&answered);
        Ok(())
    }

    pub fn awaiting_answer(&self) -> bool {
        self.awaiting_answer
    }

    fn local_sdp(&self) -> Result<String, MediaError> {
        self.pc
            .local_description()
            .map(|d| candidates_in_every_section(&d.sdp))
            .ok_or_else(|| MediaError::Sdp("no local description".into()))
    }

    /// Adds a track this side sends with its own SSRC, and with `rtx` a
    /// retransmission stream (RFC 4588) on that SSRC: where the other side
    /// negotiates RTX, resent packets go there instead of repeating the
    /// original stream's numbers.
    pub fn add_sender(
        &mut self,
        kind: Kind,
        codec: &Codec,
        ssrc: u32,
        rtx: Option<u32>,
        stream_id: &str,
        track_id: &str,
    ) -> Result<SenderId, MediaError> {
        let kind = match kind {
            Kind::Audio => RtpCodecKind::Audio,
            Kind::Video => RtpCodecKind::Video,
        };
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx: rtx.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: codec.mime_type.clone(),
                    clock_rate: codec.clock_rate,
                    channels: codec.channels,
                    sdp_fmtp_line: codec.fmtp.clone(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        let id = self.pc.add_track(track).map_err(stack)?;
        self.offer_every_codec(id, kind, codec);
        self.senders.insert(id, ssrc);
        Ok(id)
    }

    /// The transceiver that carries a sender.
    fn transceiver_of(
        &mut self,
        id: SenderId,
    ) -> Option<rtc::rtp_transceiver::RTCRtpTransceiver<'_>> {
        let transceivers: Vec<_> = self.pc.get_transceivers().collect();
        let t = transceivers.into_iter().find(|t| {
            self.pc
                .rtp_transceiver(*t)
                .is_some_and(|t| t.sender() == Some(id))
        })?;
        self.pc.rtp_transceiver(t)
    }

    /// Stops sending a track (takes effect with the next offer).
    pub fn remove_sender(&mut self, id: SenderId) -> Result<(), MediaError> {
        self.senders.remove(&id);
        self.sender_mids.remove(&id);
        self.offered_mids.remove(&id);
        self.pc.remove_track(id).map_err(stack)
    }

    /// Sends a packet on a track, with the payload type negotiated for its codec.
    pub fn send_rtp(
        &mut self,
        id: SenderId,
        packet: &Rtp,
        mime_type: &str,
        now: Instant,
    ) -> Result<(), MediaError> {
        if !self.sender_mids.contains_key(&id) {
            // Not playable yet: the engine asks for a keyframe once it is.
            return Err(MediaError::NotNegotiated);
        }
        if !self.secured {
            // Nothing to encrypt with yet; a subscriber that connects asks
            // for keyframes, so the media it missed does not matter.
            return Ok(());
        }
        let mut sender = self
            .pc
            .rtp_sender(id)
            .ok_or_else(|| MediaError::Stack("no such sender".into()))?;
        let parameters = &sender.get_parameters().rtp_parameters;
        // Once answered, the sender's codecs are its own section's (see
        // `send_as_answered`); before, what the stack would offer.
        let payload_type = parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
            .map(|c| c.payload_type)
            .ok_or_else(|| MediaError::Stack("codec not negotiated".into()))?;
        let extension = |uri: &str| {
            parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
        };
        let level_id = packet.audio_level.and_then(|_| extension(AUDIO_LEVEL_URI));
        let mid = extension(MID_URI).zip(self.sender_mids.get(&id));
        let mut header = rtc::rtp::header::Header {
            version: 2,
            marker: packet.marker,
            payload_type,
            sequence_number: packet.seq,
            timestamp: packet.ts,
            ssrc: packet.ssrc,
            ..Default::default()
        };
        if let (Some(id), Some(level)) = (level_id, packet.audio_level) {
            header.extension = true;
            header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            // Voice activity is left to the receiver, which reads the level.
            let _ = header.set_extension(id, audio_level_bytes(level));
        }
        if let Some((id, mid)) = mid {
            header.extension = true;
            header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            let _ = header.set_extension(id, mid.clone());
        }
        let out = rtc::rtp::Packet {
            header,
            payload: packet.payload.clone(),
        };
        sender.write_rtp(now, out).map_err(stack)
    }

    /// Asks the remote side for a keyframe of one of its tracks.
    pub fn request_keyframe(&mut self, track: &str, now: Instant) -> Result<(), MediaError> {
        let Some(&(receiver, media_ssrc)) = self.receivers.get(track) else {
            return Ok(());
        };
        let mut receiver = self
            .pc
            .rtp_receiver(receiver)
            .ok_or_else(|| MediaError::Stack("no such receiver".into()))?;
        receiver
            .write_rtcp(
                now,
                vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                })],
            )
            .map_err(stack)
    }

    /// Asks the sender of a remote track to send packets `seqs` again, in
    /// one NACK.
    pub fn nack(&mut self, track: &str, seqs: &[u16], now: Instant) -> Result<(), MediaError> {
        let Some(&(receiver, media_ssrc)) = self.receivers.get(track) else {
            return Err(MediaError::NotFound("track"));
        };
        let mut receiver = self
            .pc
            .rtp_receiver(receiver)
            .ok_or_else(|| MediaError::Stack("no such receiver".into()))?;
        let nack = TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(seqs),
        };
        receiver
            .write_rtcp(now, vec![Box::new(nack)])
            .map_err(stack)
    }

    /// Takes a datagram that arrived from `from`. An error means the
    /// datagram was bad; the connection goes on.
    pub fn handle_datagram(
        &mut self,
        datagram: BytesMut,
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), MediaError> {
        self.read(datagram, from, now)?;
        self.drain();
        Ok(())
    }

    fn read(
        &mut self,
        datagram: BytesMut,
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), MediaError> {
        self.pc
            .handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.local,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: datagram,
            })
            .map_err(stack)
    }

    /// Lets timers run (retransmissions, reports, ICE keepalives).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MediaError> {
        self.pc.handle_timeout(now).map_err(stack)?;
        self.drain();
        Ok(())
    }

    /// When the peer next needs [`Peer::handle_timeout`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        let m = self.pc.poll_write()?;
        Some((m.transport.peer_addr, m.message))
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.drain();
        self.events.pop_front()
    }

    pub fn close(&mut self) {
        let _ = self.pc.close();
    }

    /// Moves what `rtc` has for the application into plain events.
    fn drain(&mut self) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected => {
                        self.secured = true;
                        self.events.push_back(PeerEvent::Connected)
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.events.push_back(PeerEvent::Failed)
                    }
                    _ => {}
                },
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if self.receivers.contains_key(&init.track_id) {
                        // Another encoding of a track already open (see
                        // `one_encoding`): its packets are dropped below.
                        tracing::debug!(ssrc = init.ssrc, rid = ?init.rid, "a second stream on a track");
                        continue;
                    }
                    let Some(mut receiver) = self.pc.rtp_receiver(init.receiver_id) else {
                        continue;
                    };
                    let track = receiver.track();
                    let kind = match track.kind() {
                        RtpCodecKind::Audio => Kind::Audio,
                        _ => Kind::Video,
                    };
                    let codec = track.codec(init.ssrc).cloned().or_else(|| {
                        receiver
                            .get_parameters()
                            .rtp_parameters
                            .codecs
                            .first()
                            .map(|c| c.rtp_codec.clone())
                    });
                    let Some(codec) = codec else {
                        continue;
                    };
                    let level_id = receiver
                        .get_parameters()
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .find(|e| e.uri == AUDIO_LEVEL_URI)
                        .and_then(|e| u8::try_from(e.id).ok());
                    if let Some(id) = level_id {
                        self.level_ids.insert(init.track_id.clone(), id);
                    }
                    self.receivers
                        .insert(init.track_id.clone(), (init.receiver_id, init.ssrc));
                    self.events.push_back(PeerEvent::TrackOpened {
                        track: init.track_id,
                        kind,
                        codec: Codec {
                            mime_type: codec.mime_type,
                            clock_rate: codec.clock_rate,
                            channels: codec.channels,
                            fmtp: codec.sdp_fmtp_line,
                        },
                        ssrc: init.ssrc,
                        layers: 1,
                        mid: String::new(),
                        rids: Vec::new(),
                    });
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track)) => {
                    self.receivers.remove(&track);
                    self.events.push_back(PeerEvent::TrackClosed { track });
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(track, p) => {
                    // One stream per track: a second SSRC on it (another
                    // simulcast encoding) would reach subscribers mixed in
                    // with the first, as one stream of two sizes.
                    if self
                        .receivers
                        .get(&track)
                        .is_some_and(|&(_, ssrc)| ssrc != p.header.ssrc)
                    {
                        continue;
                    }
                    let level_id = self.level_ids.get(&track).copied();
                    self.events.push_back(PeerEvent::Rtp {
                        track,
                        packet: Rtp::received(p, level_id),
                    })
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in packets {
                        let any = p.as_any();
                        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            self.events.push_back(PeerEvent::KeyframeRequested {
                                media_ssrc: pli.media_ssrc,
                            });
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            for entry in &fir.fir {
                                self.events.push_back(PeerEvent::KeyframeRequested {
                                    media_ssrc: entry.ssrc,
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn stack(e: rtc::shared::error::Error) -> MediaError {
    MediaError::Stack(e.to_string())
}

fn sdp(e: rtc::shared::error::Error) -> MediaError {
    MediaError::Sdp(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_sends_only_once_the_other_side_has_its_media_section() {
        let now = Instant::now();
        let local = "127.0.0.1:9".parse().unwrap();
        let mut sending = Peer::new(&PeerSetup::client(local), now).unwrap();
        let mut receiving = Peer::new(&PeerSetup::client(local), now).unwrap();
        let codec = crate::client::codec(Kind::Audio);
        let packet = Rtp {
            ssrc: 4321,
            seq: 1,
            ts: 960,
            marker: false,
            payload_type: 111,
            payload: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            audio_level: None,
            layer: 0,
        };
        let first = sending
            .add_sender(Kind::Audio, &codec, 4321, None, "s", "a")
            .unwrap();
        // Neither before the offer nor while it waits for its answer: a
        // receiver that meets the SSRC first may tie it to another section.
        assert!(sending
            .send_rtp(first, &packet, &codec.mime_type, now)
            .is_err());
        let offer = sending.offer(now).unwrap().unwrap();
        assert!(sending
            .send_rtp(first, &packet, &codec.mime_type, now)
            .is_err());
        let answer = receiving.answer(offer, now).unwrap();
        sending.accept_answer(answer, now).unwrap();
        assert!(sending
            .send_rtp(first, &packet, &codec.mime_type, now)
            .is_ok());

        // A track added later waits for its own answer; the first goes on.
        let second = sending
            .add_sender(Kind::Audio, &codec, 8765, None, "s", "b")
            .unwrap();
        let offer = sending.offer(now).unwrap().unwrap();
        assert!(sending
            .send_rtp(second, &packet, &codec.mime_type, now)
            .is_err());
        assert!(sending
            .send_rtp(first, &packet, &codec.mime_type, now)
            .is_ok());
        let answer = receiving.answer(offer, now).unwrap();
        sending.accept_answer(answer, now).unwrap();
        assert!(sending
            .send_rtp(second, &packet, &codec.mime_type, now)
            .is_ok());
    }

    #[test]
    fn audio_levels_keep_their_value_and_drop_the_voice_bit() {
        for level in 0..=127u8 {
            assert_eq!(&audio_level_bytes(level)[..], &[level]);
            assert_eq!(&audio_level_bytes(level | 0x80)[..], &[level]);
        }
    }
}
