//! One WebRTC peer connection, on webrtc-rs's sans-IO `rtc` core. This is
//! the only module that touches `rtc`: the rest of the engine sees datagrams
//! in and out, plain events, and packets as [`Rtp`] values, so another stack
//! would replace this file alone.
//!
//! Roost's side is ICE-lite with one host candidate per advertised address
//! (the engine's shared UDP port) and ICE credentials the engine chooses, so
//! the demux can name the peer of a binding request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet,
    ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket,
    TwccReceiverBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::retransmit::{RetransmitLimits, Retransmits};
use crate::MediaError;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

/// A codec as negotiated: what a subscriber's sender must be offered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
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
}

/// The one-byte audio-level extension's body for `level` (the V bit
/// clear), without an allocation for each packet and subscriber.
fn audio_level_bytes(level: u8) -> Bytes {
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

/// Codecs offered beside a track's own (mime type, clock rate, channels,
/// fmtp); the stack gives each the payload type it registered.
const OTHER_AUDIO_CODECS: &[(&str, u32, u16, &str)] = &[
    ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1"),
    ("audio/G722", 8_000, 0, ""),
    ("audio/PCMU", 8_000, 0, ""),
    ("audio/PCMA", 8_000, 0, ""),
];
const OTHER_VIDEO_CODECS: &[(&str, u32, u16, &str)] = &[
    ("video/VP8", 90_000, 0, ""),
    (
        "video/H264",
        90_000,
        0,
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    ),
    ("video/VP9", 90_000, 0, "profile-id=0"),
    ("video/AV1", 90_000, 0, AV1_FMTP),
];

/// The codecs a connection negotiates: webrtc-rs's default set, with the
/// payload types browsers use too, except that AV1 carries its own fmtp
/// parameter (`profile`, from the AV1 RTP specification) where the default
/// gives it VP9's (`profile-id`). Audio: mime type, clock rate, channels,
/// fmtp, payload type.
const AUDIO_CODECS: &[(&str, u32, u16, &str, u8)] = &[
    ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111),
    ("audio/G722", 8_000, 0, "", 9),
    ("audio/PCMU", 8_000, 0, "", 0),
    ("audio/PCMA", 8_000, 0, "", 8),
];
/// Video, at 90 kHz: mime type, fmtp, payload type, and the payload type
/// of its retransmission stream (RFC 4588).
const VIDEO_CODECS: &[(&str, &str, u8, u8)] = &[
    ("video/VP8", "", 96, 97),
    ("video/VP9", "profile-id=0", 98, 99),
    ("video/VP9", "profile-id=1", 100, 101),
    (
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        102,
        103,
    ),
    (
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
        127,
        104,
    ),
    (
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        125,
        105,
    ),
    (
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
        108,
        109,
    ),
    (
        "video/H264",
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032",
        123,
        124,
    ),
    ("video/AV1", AV1_FMTP, 41, 106),
    ("video/H265", "", 126, 107),
];
/// AV1's profile 0 (Main), the one every AV1 decoder takes.
const AV1_FMTP: &str = "profile=0";

fn register_codecs(media: &mut MediaEngine) -> Result<(), MediaError> {
    let codec = |mime_type: &str, clock_rate, channels, fmtp: &str, feedback: &[(&str, &str)]| {
        RTCRtpCodec {
            mime_type: mime_type.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: feedback
                .iter()
                .map(
                    |&(typ, parameter)| rtc::rtp_transceiver::rtp_sender::RTCPFeedback {
                        typ: typ.to_owned(),
                        parameter: parameter.to_owned(),
                    },
                )
                .collect(),
        }
    };
    for &(mime_type, clock_rate, channels, fmtp, payload_type) in AUDIO_CODECS {
        let rtp_codec = codec(mime_type, clock_rate, channels, fmtp, &[]);
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec,
                    payload_type,
                },
                RtpCodecKind::Audio,
            )
            .map_err(stack)?;
    }
    let feedback = [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ];
    for &(mime_type, fmtp, payload_type, rtx) in VIDEO_CODECS {
        let rtp_codec = codec(mime_type, 90_000, 0, fmtp, &feedback);
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec,
                    payload_type,
                },
                RtpCodecKind::Video,
            )
            .map_err(stack)?;
        let apt = format!("apt={payload_type}");
        let rtp_codec = codec("video/rtx", 90_000, 0, &apt, &[]);
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec,
                    payload_type: rtx,
                },
                RtpCodecKind::Video,
            )
            .map_err(stack)?;
    }
    Ok(())
}

/// The header extension carrying audio levels.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// The RTP header extension that names a packet's media section (RFC 8843).
/// Every packet the engine sends carries it where negotiated, so that a
/// receiver with several sections of one kind in a BUNDLE (one per sender)
/// needs no payload type or SSRC guesswork to tell them apart.
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

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

/// Which side of a connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The engine: ICE-lite with the engine's credentials, DTLS server when answering.
    Server,
    /// A client (tests, the load tool): full ICE.
    Client,
}

/// Which way media flows on a connection. Each interceptor an outgoing or
/// incoming packet walks through costs time on the hot path, so a
/// connection carries only those of its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Media both ways (clients).
    Both,
    /// Sends only (the engine's subscriber connections): answering NACKs
    /// with retransmissions, sender reports.
    Sends,
    /// Receives only (the engine's publisher connections): NACKs for lost
    /// packets, receiver reports, transport-wide congestion feedback.
    Receives,
}

/// How a peer connection is set up.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    pub mode: Mode,
    pub flow: Flow,
    /// ICE credentials of this side (servers); the ufrag names the peer in the demux.
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
    /// A client's side: full ICE with credentials of its own, sending from `local`.
    pub fn client(local: SocketAddr) -> PeerSetup {
        PeerSetup {
            mode: Mode::Client,
            flow: Flow::Both,
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
    /// On the engine's (ICE-lite) side, where the client is and whether it
    /// is still there; see [`Presence`].
    presence: Option<Presence>,
    /// On the engine's side, the client's checks as a lite agent answers
    /// them; see [`LiteChecks`].
    lite: Option<LiteChecks>,
    /// Datagrams taken from the stack, ready to go, with the stack's time.
    outgoing: VecDeque<(SocketAddr, BytesMut, Instant)>,
    /// The remote side's ICE credentials and DTLS fingerprint, once an
    /// answer to this side's offer was taken: later answers must carry the same.
    remote_identity: Option<RemoteIdentity>,
}

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
struct LiteChecks {
    /// The client's last check not yet answered: from where, its transaction id, the datagram.
    pending: Option<(SocketAddr, [u8; 12], BytesMut)>,
    /// Checks that came before the client's credentials.
    early: Vec<(SocketAddr, BytesMut)>,
}

/// Checks kept until the client's credentials arrive: a few retransmissions
/// of one or two candidate pairs.
const MAX_EARLY_CHECKS: usize = 8;
const STUN_BINDING_REQUEST: u16 = 0x0001;

/// Who the remote side of a connection is, as its SDP says: what an answer
/// from another connection would not repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteIdentity {
    ufrag: String,
    pwd: String,
    /// `sha-256 AB:CD:...`, the hash name in lower case and the value in upper.
    fingerprint: String,
}

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
struct Presence {
    /// A nominating request seen but not yet answered: its source and transaction id.
    nominating: Option<(SocketAddr, [u8; 12])>,
    /// The address the client last nominated, once answered.
    nominated: Option<SocketAddr>,
    /// Addresses the agent has answered binding requests from (a few).
    answered: Vec<SocketAddr>,
    heard: Instant,
    silence: std::time::Duration,
    gone: bool,
}

/// Addresses remembered per peer: its candidate pairs, a handful.
const MAX_ANSWERED: usize = 8;
const STUN_BINDING_SUCCESS: u16 = 0x0101;
const STUN_ATTR_USE_CANDIDATE: u16 = 0x0025;
const STUN_ATTR_USERNAME: u16 = 0x0006;

impl Presence {
    /// When the client counts as gone, if it has ever been reached.
    fn deadline(&self) -> Option<Instant> {
        (!self.gone && !self.answered.is_empty()).then(|| self.heard + self.silence)
    }

    fn inbound(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
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
    fn outbound(&mut self, datagram: &[u8], to: SocketAddr, now: Instant) -> SocketAddr {
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
fn transaction_id(datagram: &[u8]) -> Option<[u8; 12]> {
    datagram.get(8..20)?.try_into().ok()
}

impl Peer {
    /// A peer connection with Roost's codecs and interceptors (NACK within
    /// the retransmission budget, reports, and delivery of keyframe requests
    /// to the engine).
    pub fn new(setup: &PeerSetup, now: Instant) -> Result<Peer, MediaError> {
        let mut media = MediaEngine::default();
        register_codecs(&mut media)?;
        media
            .register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(stack)?;
        // Video's is registered with the default set below; audio needs its own.
        media
            .register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                    uri: MID_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(stack)?;
        // The default set registers the header extensions the SDP offers
        // (video's feedback is the codec table's own); the chain itself holds
        // only what this flow needs.
        register_default_interceptors(Registry::new(), &mut media).map_err(stack)?;
        let registry = interceptors(setup);
        let (disconnected, failed) = setup.ice_timeouts;
        let keepalive = (disconnected / 3).max(std::time::Duration::from_millis(200));
        let settings = match setup.mode {
            // The agent's own liveness is off: `Presence` judges it.
            Mode::Server => SettingEngineBuilder::new()
                .with_ice_timeouts(
                    Some(std::time::Duration::ZERO),
                    Some(std::time::Duration::ZERO),
                    Some(keepalive),
                )
                .with_lite(true)
                .with_ice_credentials(setup.ufrag.clone(), setup.pwd.clone())
                .with_answering_dtls_role(RTCDtlsRole::Server)
                .build(),
            Mode::Client => SettingEngineBuilder::new()
                .with_ice_timeouts(Some(disconnected), Some(failed), Some(keepalive))
                .build(),
        };
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
            presence: (setup.mode == Mode::Server).then(|| Presence {
                nominating: None,
                nominated: None,
                answered: Vec::new(),
                heard: now,
                silence: setup.ice_timeouts.0 + setup.ice_timeouts.1,
                gone: false,
            }),
            lite: (setup.mode == Mode::Server).then(LiteChecks::default),
            outgoing: VecDeque::new(),
            remote_identity: None,
        })
    }

    /// Answers the remote side's offer.
    pub fn answer(&mut self, offer_sdp: String, now: Instant) -> Result<String, MediaError> {
        let offer_sdp = if self.lite.is_some() {
            one_encoding(&offer_sdp)
        } else {
            offer_sdp
        };
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(sdp)?;
        self.pc.set_remote_description(now, offer).map_err(sdp)?;
        let answer = self.pc.create_answer(None).map_err(sdp)?;
        self.pc.set_local_description(now, answer).map_err(sdp)?;
        let answered = self.mids_of_senders();
        self.sender_mids.extend(answered);
        self.local_sdp()
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
        let identity = check_answer(&offer.sdp, &answer_sdp, self.remote_identity.as_ref())?;
        self.pc.set_remote_description(now, answer).map_err(sdp)?;
        self.remote_identity = Some(identity);
        self.awaiting_answer = false;
        self.sender_mids.extend(self.offered_mids.drain());
        self.replay_early_checks(now);
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

    /// Gives each sender the codecs, with their payload types, that the
    /// answer accepted in its own media section. The stack otherwise keeps
    /// the numbers of the first section that negotiated a codec, and checks
    /// every packet against them.
    fn send_as_answered(&mut self, answered: &HashMap<u32, Vec<SdpCodec>>) {
        let senders: Vec<(SenderId, u32)> = self.senders.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, ssrc) in senders {
            let Some(codecs) = answered.get(&ssrc) else {
                continue;
            };
            let codecs: Vec<RTCRtpCodecParameters> =
                codecs.iter().map(SdpCodec::parameters).collect();
            if let Some(mut transceiver) = self.transceiver_of(id) {
                if let Err(e) = transceiver.set_codec_preferences(codecs) {
                    tracing::debug!(error = %e, ssrc, "keeping a sender's codecs");
                }
            }
        }
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

    /// Lists every codec of the kind the other side takes in the track's
    /// media section, the track's own first. Otherwise the first answer
    /// would settle the connection on the codecs of the first tracks
    /// (VP8, say), and a later track in another codec (H264 from another
    /// publisher) could not be offered at all. After negotiation only codecs
    /// the other side accepted are kept.
    fn offer_every_codec(&mut self, id: SenderId, kind: RtpCodecKind, first: &Codec) {
        let Some(mut transceiver) = self.transceiver_of(id) else {
            return;
        };
        let own = RTCRtpCodec {
            mime_type: first.mime_type.clone(),
            clock_rate: first.clock_rate,
            channels: first.channels,
            sdp_fmtp_line: first.fmtp.clone(),
            rtcp_feedback: vec![],
        };
        let mut preferences = vec![RTCRtpCodecParameters {
            rtp_codec: own,
            payload_type: 0,
        }];
        let others = match kind {
            RtpCodecKind::Audio => OTHER_AUDIO_CODECS,
            _ => OTHER_VIDEO_CODECS,
        };
        for &(mime_type, clock_rate, channels, fmtp) in others {
            if mime_type.eq_ignore_ascii_case(&first.mime_type) {
                continue;
            }
            let mut candidate = preferences.clone();
            candidate.push(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime_type.to_owned(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: fmtp.to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 0,
            });
            // Refused when the other side did not take this codec earlier.
            if transceiver.set_codec_preferences(candidate.clone()).is_ok() {
                preferences = candidate;
            }
        }
        let _ = transceiver.set_codec_preferences(preferences);
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
        if let Some(lite) = &mut self.lite {
            if crate::demux::binding_request_attr(&datagram, STUN_ATTR_USERNAME).is_some() {
                if self.pc.remote_description().is_none() {
                    if lite.early.len() == MAX_EARLY_CHECKS {
                        lite.early.remove(0);
                    }
                    lite.early.push((from, datagram));
                    return Ok(());
                }
                if let Some(txid) = transaction_id(&datagram) {
                    lite.pending = Some((from, txid, datagram.clone()));
                }
            }
        }
        if let Some(presence) = &mut self.presence {
            presence.inbound(&datagram, from, now);
        }
        self.read(datagram, from, now)?;
        if self.lite.is_some() {
            // Answers leave in the step the check came in (see `LiteChecks`).
            while let Some(out) = self.next_write() {
                self.outgoing.push_back(out);
            }
        }
        self.drain();
        Ok(())
    }

    /// Hands checks that came before the client's credentials to the agent.
    fn replay_early_checks(&mut self, now: Instant) {
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

    /// The stack's next datagram and where it goes. On the engine's side,
    /// the agent's own checks are answered here instead (see `LiteChecks`).
    fn next_write(&mut self) -> Option<(SocketAddr, BytesMut, Instant)> {
        loop {
            let m = self.pc.poll_write()?;
            let (to, datagram, now) = (m.transport.peer_addr, m.message, m.now);
            let Some(lite) = &mut self.lite else {
                return Some((to, datagram, now));
            };
            let ty = datagram.get(..2).map(|t| u16::from_be_bytes([t[0], t[1]]));
            if crate::demux::classify(&datagram) == crate::demux::Kind::Stun
                && ty == Some(STUN_BINDING_REQUEST)
            {
                let retry = lite
                    .pending
                    .take_if(|(from, _, _)| *from == to)
                    .map(|(_, _, check)| check);
                self.answer_own_check(&datagram, to, now);
                if let Some(check) = retry {
                    if let Err(e) = self.read(check, to, now) {
                        tracing::trace!(error = %e, %to, "a retried check was refused");
                    }
                }
                continue;
            }
            if ty == Some(STUN_BINDING_SUCCESS)
                && lite
                    .pending
                    .as_ref()
                    .is_some_and(|(_, txid, _)| transaction_id(&datagram) == Some(*txid))
            {
                lite.pending = None;
            }
            return Some((to, datagram, now));
        }
    }

    /// Answers a check the agent meant to send to `to` as the client would:
    /// a binding success with the client's password.
    fn answer_own_check(&mut self, request: &[u8], to: SocketAddr, now: Instant) {
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

    /// Lets timers run (retransmissions, reports, ICE keepalives).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MediaError> {
        self.pc.handle_timeout(now).map_err(stack)?;
        self.drain();
        if let Some(presence) = &mut self.presence {
            if presence.deadline().is_some_and(|d| now > d) {
                presence.gone = true;
                self.events.push_back(PeerEvent::Failed);
            }
        }
        Ok(())
    }

    /// When the peer next needs [`Peer::handle_timeout`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let stack = self.pc.poll_timeout();
        let silence = self
            .presence
            .as_ref()
            .and_then(Presence::deadline)
            .map(|d| d + std::time::Duration::from_millis(1));
        match (stack, silence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        let (to, datagram, now) = match self.outgoing.pop_front() {
            Some(out) => out,
            None => self.next_write()?,
        };
        let to = match &mut self.presence {
            Some(presence) => presence.outbound(&datagram, to, now),
            None => to,
        };
        Some((to, datagram))
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
                    let audio_level = self
                        .level_ids
                        .get(&track)
                        .and_then(|id| p.header.get_extension(*id))
                        .and_then(|ext| ext.first().map(|b| b & 0x7f));
                    self.events.push_back(PeerEvent::Rtp {
                        track,
                        packet: Rtp {
                            ssrc: p.header.ssrc,
                            seq: p.header.sequence_number,
                            ts: p.header.timestamp,
                            marker: p.header.marker,
                            payload_type: p.header.payload_type,
                            payload: p.payload,
                            audio_level,
                        },
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

/// Repeats the first media section's candidates in every media section that
/// has none. `rtc` writes them into the first section only, which is enough
/// for browsers (the sections are bundled) but not for every stack: aiortc
/// keeps the candidates of the last section of each transport it bundles.
fn candidates_in_every_section(sdp: &str) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = sdp.lines().collect();
    let first_media = lines.iter().position(|l| l.starts_with("m="));
    let Some(first_media) = first_media else {
        return sdp.to_owned();
    };
    let section_end = lines[first_media + 1..]
        .iter()
        .position(|l| l.starts_with("m="))
        .map_or(lines.len(), |i| first_media + 1 + i);
    let candidates: Vec<&str> = lines[first_media..section_end]
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=candidate:") || *l == "a=end-of-candidates")
        .collect();
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() * 2);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        let has = section.iter().any(|l| l.starts_with("a=candidate:"));
        for l in section.drain(..) {
            out.push_str(l);
            out.push_str(eol);
        }
        if is_media && !has {
            for c in &candidates {
                out.push_str(c);
                out.push_str(eol);
            }
        }
    };
    for l in lines {
        if l.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(l);
    }
    flush(&mut section, &mut out);
    out
}

/// An offer whose simulcast (RFC 8853) is cut to one encoding per media
/// section: of `a=simulcast:send`'s list only the last stream is kept (the
/// largest, as browsers and SDKs list them smallest first: q, h, f), with
/// its `a=rid` line, and the other `a=rid` lines go. The answer then accepts
/// that one, and the browser sends it alone under its rid. Removing the
/// simulcast lines altogether would leave the section with neither rids nor
/// SSRCs (browsers write no `a=ssrc` for simulcast), which the stack cannot
/// take. The engine forwards a track as one stream; until it picks layers per
/// subscriber, more encodings would only cost the publisher's uplink.
fn one_encoding(sdp: &str) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len());
    // Section by section: the rid its a=simulcast keeps.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.lines() {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        sections
            .last_mut()
            .expect("one section at least")
            .push(line);
    }
    for lines in sections {
        let kept = lines.iter().find_map(|l| {
            let list = l.strip_prefix("a=simulcast:send")?.trim();
            let last = list.split_whitespace().next()?.split(';').next_back()?;
            Some(last.split(',').next()?.trim_start_matches('~').to_owned())
        });
        for line in lines {
            if let Some(rid) = &kept {
                if line.starts_with("a=simulcast:") {
                    out.push_str("a=simulcast:send ");
                    out.push_str(rid);
                    out.push_str(eol);
                    continue;
                }
                if let Some(rest) = line.strip_prefix("a=rid:") {
                    if rest.split_whitespace().next() != Some(rid.as_str()) {
                        continue;
                    }
                }
            }
            out.push_str(line);
            out.push_str(eol);
        }
    }
    out
}

/// The value of the first line of an SDP that starts with `key` (`a=ice-pwd:`).
fn sdp_value<'a>(sdp: &'a str, key: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Checks an answer against the offer it answers and, once the connection
/// has a remote side, against that side: it must name the offer's media
/// sections in the offer's order and carry ICE credentials and a DTLS
/// fingerprint, the ones already in use if there are any (the engine never
/// restarts ICE, and a DTLS association keeps its certificate). Returns who
/// the answer says the remote side is.
fn check_answer(
    offer: &str,
    answer: &str,
    established: Option<&RemoteIdentity>,
) -> Result<RemoteIdentity, MediaError> {
    let mismatch = |why: &str| MediaError::Mismatch(why.to_owned());
    let mids = |sdp: &str| -> Vec<Option<String>> {
        media_sections(sdp).into_iter().map(|s| s.mid).collect()
    };
    let (offered, answered) = (mids(offer), mids(answer));
    if offered.len() != answered.len() {
        return Err(MediaError::Mismatch(format!(
            "the offer has {} media sections, the answer {}",
            offered.len(),
            answered.len()
        )));
    }
    if offered != answered {
        return Err(mismatch(
            "the answer's media sections are not the offer's (a=mid)",
        ));
    }
    let ufrag = sdp_value(answer, "a=ice-ufrag:").ok_or_else(|| mismatch("no a=ice-ufrag"))?;
    let pwd = sdp_value(answer, "a=ice-pwd:").ok_or_else(|| mismatch("no a=ice-pwd"))?;
    let fingerprint = sdp_value(answer, "a=fingerprint:")
        .and_then(|f| {
            let (hash, value) = f.split_once(' ')?;
            Some(format!(
                "{} {}",
                hash.to_ascii_lowercase(),
                value.trim().to_ascii_uppercase()
            ))
        })
        .ok_or_else(|| mismatch("no a=fingerprint"))?;
    let identity = RemoteIdentity {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
        fingerprint,
    };
    if let Some(established) = established {
        if identity.fingerprint != established.fingerprint {
            return Err(mismatch(
                "the answer's DTLS fingerprint is not the connection's: it comes from another connection",
            ));
        }
        if identity.ufrag != established.ufrag || identity.pwd != established.pwd {
            return Err(mismatch(
                "the answer's ICE credentials are not the connection's, and no ICE restart was offered",
            ));
        }
    }
    Ok(identity)
}

/// The interceptor chain of a connection: Roost's keyframe requests and
/// retransmission budget, and webrtc-rs's interceptors of the connection's
/// direction only.
fn interceptors(setup: &PeerSetup) -> Registry {
    let mut registry = Registry::new().with(Slot::from(14_000), KeyframeRequests::default());
    if setup.flow != Flow::Receives {
        registry = registry
            .with(
                Slot::from(RETRANSMIT_BUDGET_SLOT),
                RetransmitBudget::new(setup.retransmit_limits, setup.retransmit_history),
            )
            .with(
                Slot::NackResponder,
                NackResponderBuilder::new()
                    .with_size(setup.retransmit_history)
                    .build(),
            )
            .with(Slot::SenderReport, SenderReportBuilder::new().build());
    }
    if setup.flow != Flow::Sends {
        registry = registry
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build());
    }
    registry
}

/// A codec of a media section as the SDP gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SdpCodec {
    payload_type: u8,
    /// `video/H264`
    mime_type: String,
    clock_rate: u32,
    channels: u16,
    fmtp: String,
}

impl SdpCodec {
    fn parameters(&self) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: self.mime_type.clone(),
                clock_rate: self.clock_rate,
                channels: self.channels,
                sdp_fmtp_line: self.fmtp.clone(),
                rtcp_feedback: vec![],
            },
            payload_type: self.payload_type,
        }
    }
}

/// Which codecs the answer gave each of our SSRCs: the offer says which
/// media section (mid) an SSRC is in, the answer which codecs that section
/// took, with their payload types. Each section has its own: the same codec
/// may have another number elsewhere (two H264 profiles in two sections,
/// say), and a packet sent with another section's number is dropped.
fn codecs_by_ssrc(offer: &str, answer: &str) -> HashMap<u32, Vec<SdpCodec>> {
    let answered: HashMap<String, Vec<SdpCodec>> = media_sections(answer)
        .into_iter()
        .filter_map(|s| Some((s.mid?, s.codecs)))
        .collect();
    let mut by_ssrc = HashMap::new();
    for section in media_sections(offer) {
        let Some(codecs) = section.mid.as_ref().and_then(|mid| answered.get(mid)) else {
            continue;
        };
        for ssrc in section.ssrcs {
            by_ssrc.insert(ssrc, codecs.clone());
        }
    }
    by_ssrc
}

struct MediaSection {
    mid: Option<String>,
    ssrcs: Vec<u32>,
    /// In the order of the `m=` line.
    codecs: Vec<SdpCodec>,
}

fn media_sections(sdp: &str) -> Vec<MediaSection> {
    struct Building {
        section: MediaSection,
        kind: String,
        order: Vec<u8>,
        maps: HashMap<u8, (String, u32, u16)>,
        fmtps: HashMap<u8, String>,
    }
    fn finish(b: Building) -> MediaSection {
        let Building {
            mut section,
            kind,
            order,
            maps,
            mut fmtps,
        } = b;
        section.codecs = order
            .into_iter()
            .filter_map(|pt| {
                let (name, clock_rate, channels) = maps.get(&pt)?.clone();
                Some(SdpCodec {
                    payload_type: pt,
                    mime_type: format!("{kind}/{name}"),
                    clock_rate,
                    channels,
                    fmtp: fmtps.remove(&pt).unwrap_or_default(),
                })
            })
            .collect();
        section
    }
    let mut sections = Vec::new();
    let mut current: Option<Building> = None;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            sections.extend(current.take().map(finish));
            let mut fields = m.split(' ');
            current = Some(Building {
                section: MediaSection {
                    mid: None,
                    ssrcs: Vec::new(),
                    codecs: Vec::new(),
                },
                kind: fields.next().unwrap_or_default().to_owned(),
                order: fields.skip(2).filter_map(|pt| pt.parse().ok()).collect(),
                maps: HashMap::new(),
                fmtps: HashMap::new(),
            });
        } else if let Some(b) = current.as_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                b.section.mid = Some(mid.trim().to_owned());
            } else if let Some(ssrc) = line.strip_prefix("a=ssrc:") {
                if let Some(ssrc) = ssrc.split(' ').next().and_then(|s| s.parse().ok()) {
                    if !b.section.ssrcs.contains(&ssrc) {
                        b.section.ssrcs.push(ssrc);
                    }
                }
            } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
                // a=rtpmap:<pt> <name>/<clock rate>[/<channels>]
                let (pt, encoding) = map.split_once(' ').unwrap_or((map, ""));
                let mut parts = encoding.trim().split('/');
                let name = parts.next().unwrap_or_default().to_owned();
                let clock_rate = parts.next().and_then(|c| c.parse().ok());
                let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                if let (Ok(pt), Some(clock_rate), false) = (pt.parse(), clock_rate, name.is_empty())
                {
                    b.maps.insert(pt, (name, clock_rate, channels));
                }
            } else if let Some(fmtp) = line.strip_prefix("a=fmtp:") {
                if let Some((pt, params)) = fmtp.split_once(' ') {
                    if let Ok(pt) = pt.parse() {
                        b.fmtps.insert(pt, params.trim().to_owned());
                    }
                }
            }
        }
    }
    sections.extend(current.take().map(finish));
    sections
}

fn stack(e: rtc::shared::error::Error) -> MediaError {
    MediaError::Stack(e.to_string())
}

fn sdp(e: rtc::shared::error::Error) -> MediaError {
    MediaError::Sdp(e.to_string())
}

/// Marks inbound keyframe requests (PLI, FIR) for the engine; everything
/// else the interceptors handle themselves (NACKs are answered by the NACK
/// responder, reports feed the statistics).
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Where [`RetransmitBudget`] sits: between the wire and the NACK
/// responder, so a NACK reaches the responder only with what it may resend.
const RETRANSMIT_BUDGET_SLOT: usize = 3_900;

/// Bounds what a subscriber's NACKs make the connection resend (see
/// [`crate::retransmit`]): it sees every packet sent, as the NACK
/// responder's history does, learns the round trip from the receiver's
/// reports, and strips from each inbound NACK the sequence numbers that may
/// not be resent now. A NACK left with none goes no further.
struct RetransmitBudget {
    state: Retransmits,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RetransmitBudget {
    fn new(limits: RetransmitLimits, history: u16) -> RetransmitBudget {
        RetransmitBudget {
            state: Retransmits::new(limits, history),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// The part of `nack` that may be resent now, if any.
    fn admit(&mut self, nack: &TransportLayerNack, now: Instant) -> Option<TransportLayerNack> {
        let mut allowed = Vec::new();
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                if self.state.allow(nack.media_ssrc, seq, now) {
                    allowed.push(seq);
                }
            }
        }
        let refused = self.state.refused();
        if allowed.is_empty() {
            tracing::trace!(ssrc = nack.media_ssrc, refused, "a NACK refused whole");
            return None;
        }
        Some(TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&allowed),
        })
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmitBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            for p in packets.drain(..) {
                let any = p.as_any();
                if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    if let Some(admitted) = self.admit(nack, now) {
                        kept.push(Box::new(admitted));
                    }
                    continue;
                }
                let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports[..]
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports[..]
                } else {
                    &[]
                };
                for report in reports {
                    if self.state.tracks(report.ssrc) {
                        self.state
                            .report_received(report.last_sender_report, report.delay, now);
                    }
                }
                kept.push(p);
            }
            if kept.is_empty() {
                return Ok(());
            }
            *packets = kept;
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            // Retransmissions were counted when their NACK was admitted.
            Packet::Rtp(_) if msg.message.has(&Attribute::Retransmission) => {}
            Packet::Rtp(p) => {
                use rtc::shared::marshal::MarshalSize;
                let bytes = p.header.marshal_size() + p.payload.len();
                self.state
                    .sent(p.header.ssrc, p.header.sequence_number, bytes, msg.now);
            }
            Packet::Rtcp(packets) => {
                for sr in packets
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                {
                    self.state.report_sent(sr.ntp_time, msg.now);
                }
            }
            _ => {}
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RetransmitBudget {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        // The streams the NACK responder keeps a history for.
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack {
            self.state.track(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.state.untrack(info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flow_carries_only_its_own_interceptors() {
        let slots = |flow| {
            let setup = PeerSetup {
                flow,
                ..PeerSetup::client("127.0.0.1:9".parse().unwrap())
            };
            interceptors(&setup)
                .slots()
                .into_iter()
                .map(|(slot, _)| slot)
                .collect::<Vec<_>>()
        };
        let sending = [
            Slot::from(RETRANSMIT_BUDGET_SLOT),
            Slot::NackResponder,
            Slot::SenderReport,
        ];
        let receiving = [
            Slot::NackGenerator,
            Slot::ReceiverReport,
            Slot::TwccReceiver,
        ];
        let sends = slots(Flow::Sends);
        let receives = slots(Flow::Receives);
        let both = slots(Flow::Both);
        for slot in sending {
            assert!(sends.contains(&slot) && both.contains(&slot), "{slot:?}");
            assert!(!receives.contains(&slot), "{slot:?}");
        }
        for slot in receiving {
            assert!(receives.contains(&slot) && both.contains(&slot), "{slot:?}");
            assert!(!sends.contains(&slot), "{slot:?}");
        }
        // Keyframe requests reach the engine on every connection.
        for chain in [&sends, &receives, &both] {
            assert!(chain.contains(&Slot::from(14_000)));
        }
    }

    /// The fmtp parameters of `mime` (`AV1`) in an SDP, by its rtpmap's payload type.
    fn fmtp_of(sdp: &str, mime: &str) -> Option<String> {
        let pt = sdp.lines().find_map(|l| {
            let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec
                .starts_with(&format!("{mime}/"))
                .then(|| pt.to_owned())
        })?;
        let prefix = format!("a=fmtp:{pt} ");
        Some(
            sdp.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_default()
                .to_owned(),
        )
    }

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
    fn av1_is_offered_with_its_own_parameters_not_vp9s() {
        let now = Instant::now();
        let mut peer = Peer::new(&PeerSetup::client("127.0.0.1:9".parse().unwrap()), now).unwrap();
        let codec = crate::client::codec(Kind::Video);
        peer.add_sender(Kind::Video, &codec, 1234, Some(1235), "s", "t")
            .unwrap();
        let offer = peer.offer(now).unwrap().unwrap();
        let av1 = fmtp_of(&offer, "AV1").expect("AV1 is offered");
        assert!(!av1.contains("profile-id"), "a=fmtp for AV1: {av1}");
        assert_eq!(av1, AV1_FMTP);
        // VP9 keeps its own.
        assert_eq!(fmtp_of(&offer, "VP9").as_deref(), Some("profile-id=0"));

        // Nor in an answer to it.
        let mut answering =
            Peer::new(&PeerSetup::client("127.0.0.1:9".parse().unwrap()), now).unwrap();
        let answer = answering.answer(offer, now).unwrap();
        let av1 = fmtp_of(&answer, "AV1").expect("AV1 is answered");
        assert!(!av1.contains("profile-id"), "a=fmtp for AV1: {av1}");
    }

    #[test]
    fn audio_levels_keep_their_value_and_drop_the_voice_bit() {
        for level in 0..=127u8 {
            assert_eq!(&audio_level_bytes(level)[..], &[level]);
            assert_eq!(&audio_level_bytes(level | 0x80)[..], &[level]);
        }
    }

    /// The payload type of `mime_type` (`video/H264`) among a section's codecs.
    fn codec_payload_type(codecs: &[SdpCodec], mime_type: &str) -> Option<u8> {
        codecs
            .iter()
            .find(|c| c.mime_type.eq_ignore_ascii_case(mime_type))
            .map(|c| c.payload_type)
    }

    #[test]
    fn each_ssrc_sends_with_the_numbers_of_its_own_section() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 125 97\r\na=mid:0\r\n\
                     a=rtpmap:96 VP8/90000\r\na=rtpmap:125 H264/90000\r\na=rtpmap:97 rtx/90000\r\n\
                     a=ssrc-group:FID 11 12\r\na=ssrc:11 cname:x\r\na=ssrc:12 cname:x\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 102 96\r\na=mid:1\r\n\
                     a=rtpmap:102 H264/90000\r\na=rtpmap:96 VP8/90000\r\na=ssrc:21 cname:y\r\n";
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 125 97\r\na=mid:0\r\n\
                      a=rtpmap:96 VP8/90000\r\na=rtpmap:125 H264/90000\r\na=rtpmap:97 rtx/90000\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 102 96\r\na=mid:1\r\n\
                      a=rtpmap:102 H264/90000\r\na=rtpmap:96 VP8/90000\r\n";
        let by_ssrc = codecs_by_ssrc(offer, answer);
        assert_eq!(codec_payload_type(&by_ssrc[&11], "video/VP8"), Some(96));
        assert_eq!(codec_payload_type(&by_ssrc[&11], "video/H264"), Some(125));
        assert_eq!(codec_payload_type(&by_ssrc[&21], "video/H264"), Some(102));
        assert_eq!(codec_payload_type(&by_ssrc[&21], "video/AV1"), None);
        assert_eq!(by_ssrc[&21][0].mime_type, "video/H264");
        assert_eq!(by_ssrc[&21][0].clock_rate, 90_000);
        assert!(codecs_by_ssrc("garbage", "m=\r\na=rtpmap:x\r\n").is_empty());
        assert!(
            media_sections("m=\r\na=rtpmap:1 /\r\na=fmtp:\r\na=ssrc:\r\n")[0]
                .codecs
                .is_empty()
        );
    }

    #[test]
    fn every_media_section_carries_the_candidates() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP 111\r\na=mid:0\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n\
                   m=video 9 UDP 96\r\na=mid:1\r\na=sendrecv\r\n";
        let out = candidates_in_every_section(sdp);
        assert_eq!(out.matches("a=candidate:1 1 udp").count(), 2);
        let video = &out[out.find("m=video").unwrap()..];
        assert!(video.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n"));
        assert!(out.ends_with("\r\n") && !out.contains("\r\n\r\n"));
        assert_eq!(candidates_in_every_section("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn a_simulcast_offer_is_answered_as_one_encoding() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
                     a=rtpmap:96 VP8/90000\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\n\
                     a=simulcast:send q;h;f\r\n";
        let one = one_encoding(offer);
        assert!(
            one.ends_with("a=rtpmap:96 VP8/90000\r\na=rid:f send\r\na=simulcast:send f\r\n"),
            "the largest encoding alone: {one}"
        );
        assert!(
            !one.contains("a=rid:q") && !one.contains("a=rid:h"),
            "{one}"
        );
        assert!(!one.contains("\r\n\r\n"));
        // A list with alternatives and a paused stream: the last stream's first choice.
        let alt = one_encoding(
            "m=video 9 X 96\na=rid:a send\na=rid:b send\na=rid:c send\na=simulcast:send a;~b,c\n",
        );
        assert_eq!(alt, "m=video 9 X 96\na=rid:b send\na=simulcast:send b\n");
        // No simulcast: nothing changes.
        let plain = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\n";
        assert_eq!(one_encoding(plain), plain);
        // Answered by the engine's own side: the answer takes that one encoding.
        let setup = PeerSetup {
            mode: Mode::Server,
            flow: Flow::Receives,
            ufrag: "engineufrag0000".into(),
            pwd: "enginepassword000000000000000000".into(),
            ..PeerSetup::client("127.0.0.1:7882".parse().unwrap())
        };
        let now = Instant::now();
        let mut client =
            Peer::new(&PeerSetup::client("127.0.0.1:40000".parse().unwrap()), now).unwrap();
        client
            .add_sender(
                Kind::Video,
                &crate::client::codec(Kind::Video),
                1234,
                None,
                "s",
                "t",
            )
            .unwrap();
        let offer = client.offer(now).unwrap().unwrap();
        // As Chromium offers three encodings of a camera.
        let mid = offer.find("a=mid:").unwrap();
        let at = mid + offer[mid..].find("\r\n").unwrap() + 2;
        let offer = format!(
            "{}a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n{}",
            &offer[..at],
            &offer[at..]
        );
        let mut engine = Peer::new(&setup, now).unwrap();
        let answer = engine.answer(offer, now).unwrap();
        assert!(
            answer.contains("a=rid:f recv")
                && !answer.contains("a=rid:q")
                && !answer.contains("a=rid:h"),
            "{answer}"
        );
        let simulcast: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=simulcast:"))
            .collect();
        assert!(
            simulcast.iter().all(|l| *l == "a=simulcast:recv f"),
            "one stream in the answer's simulcast: {simulcast:?}"
        );
    }

    fn answer_sdp(mids: &[&str], ufrag: &str, fingerprint: &str) -> String {
        let mut sdp = format!(
            "v=0\r\na=fingerprint:sha-256 {fingerprint}\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:pwd-of-{ufrag}\r\n"
        );
        for mid in mids {
            sdp.push_str(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\n"
            ));
        }
        sdp
    }

    #[test]
    fn an_answer_must_answer_the_offer_from_the_same_connection() {
        let offer = answer_sdp(&["0", "1"], "server", "00:11");
        let first = check_answer(&offer, &answer_sdp(&["0", "1"], "alice", "aa:bb"), None)
            .expect("a matching answer");
        assert_eq!(first.fingerprint, "sha-256 AA:BB");
        // The same connection answers again: the same credentials and certificate.
        let again = check_answer(
            &offer,
            &answer_sdp(&["0", "1"], "alice", "AA:BB"),
            Some(&first),
        );
        assert_eq!(again.unwrap(), first);
        let refused = |answer: &str, established| match check_answer(&offer, answer, established) {
            Err(MediaError::Mismatch(why)) => why,
            other => panic!("{answer} was not refused: {other:?}"),
        };
        // Another connection: its own credentials and certificate.
        assert!(
            refused(&answer_sdp(&["0", "1"], "bob", "cc:dd"), Some(&first)).contains("fingerprint")
        );
        assert!(refused(&answer_sdp(&["0", "1"], "bob", "aa:bb"), Some(&first)).contains("ICE"));
        // Not an answer to this offer.
        assert!(refused(&answer_sdp(&["0"], "alice", "aa:bb"), None).contains("2"));
        assert!(refused(&answer_sdp(&["1", "0"], "alice", "aa:bb"), None).contains("mid"));
        let bare = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n";
        assert!(refused(bare, None).contains("ice-ufrag"));
        assert!(refused(
            &bare.replace("v=0\r\n", "v=0\r\na=ice-ufrag:x\r\na=ice-pwd:y\r\n"),
            None
        )
        .contains("fingerprint"));
    }
}
