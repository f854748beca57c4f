//! The codecs and header extensions a connection negotiates: the media
//! engine every peer is built with, and how a sender is offered every codec
//! of its kind and then sends with the payload types its own section took.

use std::collections::HashMap;

use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};

use super::sdp::SdpCodec;
use super::{stack, Peer, SenderId};
use crate::MediaError;

/// A codec as negotiated: what a subscriber's sender must be offered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
}

/// Codecs offered beside a track's own (mime type, clock rate, channels,
/// fmtp); the stack gives each the payload type it registered.
pub(super) const OTHER_AUDIO_CODECS: &[(&str, u32, u16, &str)] = &[
    ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1"),
    ("audio/G722", 8_000, 0, ""),
    ("audio/PCMU", 8_000, 0, ""),
    ("audio/PCMA", 8_000, 0, ""),
];
pub(super) const OTHER_VIDEO_CODECS: &[(&str, u32, u16, &str)] = &[
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
pub(super) const AUDIO_CODECS: &[(&str, u32, u16, &str, u8)] = &[
    ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111),
    ("audio/G722", 8_000, 0, "", 9),
    ("audio/PCMU", 8_000, 0, "", 0),
    ("audio/PCMA", 8_000, 0, "", 8),
];
/// Video, at 90 kHz: mime type, fmtp, payload type, and the payload type
/// of its retransmission stream (RFC 4588).
pub(super) const VIDEO_CODECS: &[(&str, &str, u8, u8)] = &[
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
/// The RTCP feedback every video codec is registered with (type, parameter).
pub(super) const VIDEO_FEEDBACK: &[(&str, &str)] = &[
    ("goog-remb", ""),
    ("ccm", "fir"),
    ("nack", ""),
    ("nack", "pli"),
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
    for &(mime_type, fmtp, payload_type, rtx) in VIDEO_CODECS {
        let rtp_codec = codec(mime_type, 90_000, 0, fmtp, VIDEO_FEEDBACK);
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

/// The media engine of every connection: Roost's codecs, the header
/// extensions audio needs, and those of webrtc-rs's default set.
pub(super) fn media_engine() -> Result<MediaEngine, MediaError> {
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
    // (video's feedback is the codec table's own); the chain itself
    // (`interceptors`) holds only what the connection's flow needs.
    register_default_interceptors(Registry::new(), &mut media).map_err(stack)?;
    Ok(media)
}

impl Peer {
    /// Gives each sender the codecs, with their payload types, that the
    /// answer accepted in its own media section. The stack otherwise keeps
    /// the numbers of the first section that negotiated a codec, and checks
    /// every packet against them.
    pub(super) fn send_as_answered(&mut self, answered: &HashMap<u32, Vec<SdpCodec>>) {
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

    /// Lists every codec of the kind the other side takes in the track's
    /// media section, the track's own first. Otherwise the first answer
    /// would settle the connection on the codecs of the first tracks
    /// (VP8, say), and a later track in another codec (H264 from another
    /// publisher) could not be offered at all. After negotiation only codecs
    /// the other side accepted are kept.
    pub(super) fn offer_every_codec(&mut self, id: SenderId, kind: RtpCodecKind, first: &Codec) {
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
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::peer::{Kind, PeerSetup};

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
}
