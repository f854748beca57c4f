//! The answers to the stack's own client, to offers as Chromium, Firefox,
//! aiortc and GStreamer write them, and to hostile ones.

use std::collections::BTreeSet;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::peer::sdp::msid_tracks;
use crate::peer::{Peer, PeerSetup};

const FINGERPRINT: &str = "E3:DE:71:2A:FF:D9:EB:C7:63:2A:96:41:E9:53:9A:7F:\
                           BF:B4:55:E7:D4:CA:27:90:54:DF:93:9A:4B:5C:9D:15";
const UFRAG: &str = "engineufrag00000";
const PWD: &str = "enginepassword00000000000000000a";

fn session() -> AnswerSession {
    AnswerSession {
        id: 42 | (1 << 63),
        version: 3,
        ufrag: UFRAG.into(),
        pwd: PWD.into(),
        fingerprint: FINGERPRINT.into(),
        candidates: vec![
            "203.0.113.7:7882".parse().unwrap(),
            "[2001:db8::7]:7882".parse().unwrap(),
        ],
    }
}

fn answered(offer: &str) -> PublisherAnswer {
    answer(offer, &session()).unwrap_or_else(|e| panic!("{e}\n{offer}"))
}

fn parse(sdp: &str) -> SessionDescription {
    SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).expect("an SDP")
}

/// An SDP written one line a row, indented: each line trimmed and ended
/// with CRLF.
fn crlf(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect()
}

fn pts(section: &ReceivedSection) -> Vec<u8> {
    section.codecs.iter().map(|(pt, _)| *pt).collect()
}

fn mime(section: &ReceivedSection, pt: u8) -> &str {
    let codec = section.codecs.iter().find(|(p, _)| *p == pt);
    codec.map_or("", |(_, c)| c.mime_type.as_str())
}

/// The stack's own client with an Opus and a VP8 sender (with RTX).
fn client_and_offer() -> (Peer, String) {
    let now = Instant::now();
    let setup = PeerSetup::client("127.0.0.1:40000".parse().unwrap());
    let mut client = Peer::new(&setup, now).unwrap();
    let audio = crate::client::codec(Kind::Audio);
    let video = crate::client::codec(Kind::Video);
    client
        .add_sender(Kind::Audio, &audio, 1000, None, "cam", "mic-1")
        .unwrap();
    client
        .add_sender(Kind::Video, &video, 2000, Some(2001), "cam", "camera-1")
        .unwrap();
    let offer = client.offer(now).unwrap().unwrap();
    (client, offer)
}

#[test]
fn the_stacks_own_client_takes_the_answer() {
    let (mut client, offer) = client_and_offer();
    let answer = answered(&offer);
    client
        .accept_answer(answer.sdp.clone(), Instant::now())
        .unwrap_or_else(|e| panic!("the client refused the answer: {e}\n{}", answer.sdp));

    // The client's side of the transport, as its offer gives it.
    let theirs = crate::peer::sdp::sdp_value(&offer, "a=fingerprint:sha-256 ").unwrap();
    assert_eq!(answer.fingerprint, theirs.to_ascii_uppercase());
    assert_eq!(
        Some(answer.ufrag.as_str()),
        crate::peer::sdp::sdp_value(&offer, "a=ice-ufrag:")
    );
    assert_eq!(
        Some(answer.pwd.as_str()),
        crate::peer::sdp::sdp_value(&offer, "a=ice-pwd:")
    );
    // It offered actpass: the engine waits for its ClientHello.
    assert_eq!(answer.role, DtlsRole::Server);

    let [audio, video] = &answer.sections[..] else {
        panic!("two sections: {:?}", answer.sections);
    };
    assert_eq!((audio.mid.as_str(), audio.kind), ("0", Some(Kind::Audio)));
    assert_eq!((video.mid.as_str(), video.kind), ("1", Some(Kind::Video)));
    assert!(audio.receiving && video.receiving);
    assert_eq!(
        (audio.track.as_str(), video.track.as_str()),
        ("mic-1", "camera-1")
    );
    // The client offers every codec of its kind, its own first.
    assert_eq!(audio.codecs[0], (111, crate::client::codec(Kind::Audio)));
    assert_eq!(pts(audio), [111, 9, 0, 8]);
    assert_eq!(video.codecs[0], (96, crate::client::codec(Kind::Video)));
    assert_eq!(pts(video), [96, 125, 98, 41]);
    assert_eq!(mime(video, 125), "video/H264");
    assert_eq!(video.rtx, [(97, 96), (99, 98), (105, 125), (106, 41)]);
    assert!(audio.rtx.is_empty());
    assert_eq!(audio.ssrcs, [(1000, None)]);
    assert_eq!(video.ssrcs, [(2000, Some(2001))]);
    assert_eq!(
        audio.extensions,
        Extensions {
            mid: Some(2),
            audio_level: Some(1),
            transport_cc: Some(5),
            ..Default::default()
        }
    );
    assert_eq!(
        video.extensions,
        Extensions {
            mid: Some(2),
            rid: Some(3),
            repaired_rid: Some(4),
            audio_level: None,
            transport_cc: Some(5),
        }
    );
    assert!(video.nack && video.pli && video.fir && video.transport_cc);
    assert!(!audio.nack && !audio.pli && !audio.fir && audio.transport_cc);
    assert!(audio.rids.is_empty() && video.rids.is_empty());

    // What the client read: this side's transport, in every section.
    let sdp = parse(&answer.sdp);
    assert_eq!((sdp.origin.session_id, sdp.origin.session_version), (42, 3));
    assert!(sdp.has_attribute("ice-lite"));
    assert_eq!(
        sdp.attribute("group").map(String::as_str),
        Some("BUNDLE 0 1")
    );
    let fingerprint = sdp.attribute("fingerprint").unwrap();
    assert_eq!(fingerprint, &format!("sha-256 {FINGERPRINT}"));
    for m in &sdp.media_descriptions {
        assert_eq!(m.media_name.port.value, 9);
        assert_eq!(m.attribute("setup"), Some(Some("passive")));
        assert_eq!(m.attribute("ice-ufrag"), Some(Some(UFRAG)));
        assert_eq!(m.attribute("ice-pwd"), Some(Some(PWD)));
        assert!(m.has_attribute("rtcp-mux") && m.has_attribute("recvonly"));
        assert!(m.has_attribute("end-of-candidates"));
        let candidates: Vec<_> = m
            .attributes
            .iter()
            .filter(|a| a.is_ice_candidate())
            .filter_map(|a| a.value.as_deref())
            .collect();
        assert_eq!(candidates.len(), 2, "{candidates:?}");
        assert!(candidates[0].ends_with("203.0.113.7 7882 typ host"));
        assert!(candidates[1].ends_with("2001:db8::7 7882 typ host"));
    }
}

/// A fingerprint of 32 hex pairs made of `byte`.
fn fingerprint(byte: &str) -> String {
    vec![byte; 32].join(":")
}

/// Chromium 13x's offer of a camera and a microphone (`sendonly`
/// transceivers), with `video_tail` at the end of its video section:
/// its SSRC lines, or its rids and simulcast.
fn chromium(video_tail: &str) -> String {
    let fp = fingerprint("1B");
    crlf(&format!(
        "v=0
        o=- 4611731400430051336 2 IN IP4 127.0.0.1
        s=-
        t=0 0
        a=group:BUNDLE 0 1
        a=extmap-allow-mixed
        a=msid-semantic: WMS 8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
        c=IN IP4 0.0.0.0
        a=rtcp:9 IN IP4 0.0.0.0
        a=ice-ufrag:Yx3v
        a=ice-pwd:hZ0s7xq1Bq7a6bWf9yX2cD4e
        a=ice-options:trickle
        a=fingerprint:sha-256 {fp}
        a=setup:actpass
        a=mid:0
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
        a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
        a=sendonly
        a=msid:8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11 3f2a9b7e-61c4-4f0e-a2d8-5b9c1e7d3a60
        a=rtcp-mux
        a=rtcp-rsize
        a=rtpmap:111 opus/48000/2
        a=rtcp-fb:111 transport-cc
        a=fmtp:111 minptime=10;useinbandfec=1
        a=rtpmap:63 red/48000/2
        a=fmtp:63 111/111
        a=rtpmap:9 G722/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:13 CN/8000
        a=rtpmap:110 telephone-event/48000
        a=rtpmap:126 telephone-event/8000
        a=ssrc:3735928559 cname:Jq5mNp0dV2kYb3c8
        a=ssrc:3735928559 msid:8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11 3f2a9b7e-61c4-4f0e-a2d8-5b9c1e7d3a60
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114 115 116 117 118 39 40 45 46 98 99 100 101 119 120 123 124 125
        c=IN IP4 0.0.0.0
        a=rtcp:9 IN IP4 0.0.0.0
        a=ice-ufrag:Yx3v
        a=ice-pwd:hZ0s7xq1Bq7a6bWf9yX2cD4e
        a=ice-options:trickle
        a=fingerprint:sha-256 {fp}
        a=setup:actpass
        a=mid:1
        a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
        a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
        a=extmap:13 urn:3gpp:video-orientation
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
        a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
        a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
        a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
        a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
        a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
        a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
        a=sendonly
        a=msid:8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11 c41d2f6e-0b7a-4e59-9a3c-2d8f1b6e4c07
        a=rtcp-mux
        a=rtcp-rsize
        a=rtpmap:96 VP8/90000
        a=rtcp-fb:96 goog-remb
        a=rtcp-fb:96 transport-cc
        a=rtcp-fb:96 ccm fir
        a=rtcp-fb:96 nack
        a=rtcp-fb:96 nack pli
        a=rtpmap:97 rtx/90000
        a=fmtp:97 apt=96
        a=rtpmap:103 H264/90000
        a=rtcp-fb:103 goog-remb
        a=rtcp-fb:103 transport-cc
        a=rtcp-fb:103 ccm fir
        a=rtcp-fb:103 nack
        a=rtcp-fb:103 nack pli
        a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
        a=rtpmap:104 rtx/90000
        a=fmtp:104 apt=103
        a=rtpmap:107 H264/90000
        a=rtcp-fb:107 goog-remb
        a=rtcp-fb:107 transport-cc
        a=rtcp-fb:107 ccm fir
        a=rtcp-fb:107 nack
        a=rtcp-fb:107 nack pli
        a=fmtp:107 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
        a=rtpmap:108 rtx/90000
        a=fmtp:108 apt=107
        a=rtpmap:109 H264/90000
        a=rtcp-fb:109 goog-remb
        a=rtcp-fb:109 transport-cc
        a=rtcp-fb:109 ccm fir
        a=rtcp-fb:109 nack
        a=rtcp-fb:109 nack pli
        a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
        a=rtpmap:114 rtx/90000
        a=fmtp:114 apt=109
        a=rtpmap:115 H264/90000
        a=rtcp-fb:115 goog-remb
        a=rtcp-fb:115 transport-cc
        a=rtcp-fb:115 ccm fir
        a=rtcp-fb:115 nack
        a=rtcp-fb:115 nack pli
        a=fmtp:115 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
        a=rtpmap:116 rtx/90000
        a=fmtp:116 apt=115
        a=rtpmap:117 H264/90000
        a=rtcp-fb:117 goog-remb
        a=rtcp-fb:117 transport-cc
        a=rtcp-fb:117 ccm fir
        a=rtcp-fb:117 nack
        a=rtcp-fb:117 nack pli
        a=fmtp:117 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
        a=rtpmap:118 rtx/90000
        a=fmtp:118 apt=117
        a=rtpmap:39 H264/90000
        a=rtcp-fb:39 goog-remb
        a=rtcp-fb:39 transport-cc
        a=rtcp-fb:39 ccm fir
        a=rtcp-fb:39 nack
        a=rtcp-fb:39 nack pli
        a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f
        a=rtpmap:40 rtx/90000
        a=fmtp:40 apt=39
        a=rtpmap:45 AV1/90000
        a=rtcp-fb:45 goog-remb
        a=rtcp-fb:45 transport-cc
        a=rtcp-fb:45 ccm fir
        a=rtcp-fb:45 nack
        a=rtcp-fb:45 nack pli
        a=fmtp:45 level-idx=5;profile=0;tier=0
        a=rtpmap:46 rtx/90000
        a=fmtp:46 apt=45
        a=rtpmap:98 VP9/90000
        a=rtcp-fb:98 goog-remb
        a=rtcp-fb:98 transport-cc
        a=rtcp-fb:98 ccm fir
        a=rtcp-fb:98 nack
        a=rtcp-fb:98 nack pli
        a=fmtp:98 profile-id=0
        a=rtpmap:99 rtx/90000
        a=fmtp:99 apt=98
        a=rtpmap:100 VP9/90000
        a=rtcp-fb:100 goog-remb
        a=rtcp-fb:100 transport-cc
        a=rtcp-fb:100 ccm fir
        a=rtcp-fb:100 nack
        a=rtcp-fb:100 nack pli
        a=fmtp:100 profile-id=2
        a=rtpmap:101 rtx/90000
        a=fmtp:101 apt=100
        a=rtpmap:119 H264/90000
        a=rtcp-fb:119 goog-remb
        a=rtcp-fb:119 transport-cc
        a=rtcp-fb:119 ccm fir
        a=rtcp-fb:119 nack
        a=rtcp-fb:119 nack pli
        a=fmtp:119 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f
        a=rtpmap:120 rtx/90000
        a=fmtp:120 apt=119
        a=rtpmap:123 red/90000
        a=rtpmap:124 rtx/90000
        a=fmtp:124 apt=123
        a=rtpmap:125 ulpfec/90000
        {video_tail}"
    ))
}

/// Chromium's video section without simulcast: one SSRC and its RTX.
const CHROMIUM_SSRCS: &str = "a=ssrc-group:FID 1111 2222
    a=ssrc:1111 cname:Jq5mNp0dV2kYb3c8
    a=ssrc:1111 msid:8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11 c41d2f6e-0b7a-4e59-9a3c-2d8f1b6e4c07
    a=ssrc:2222 cname:Jq5mNp0dV2kYb3c8
    a=ssrc:2222 msid:8d6e0c5c-3f3b-4bc2-9c7e-1d0b8d2f4a11 c41d2f6e-0b7a-4e59-9a3c-2d8f1b6e4c07";
/// Chromium's camera with three encodings: rids, and no SSRC lines.
const CHROMIUM_SIMULCAST: &str = "a=rid:q send
    a=rid:h send
    a=rid:f send
    a=simulcast:send q;h;f";

/// Firefox 13x's offer of a camera and a microphone: the fingerprint at
/// session level, its own extension ids, SSRC lines with a cname only.
fn firefox() -> String {
    let fp = fingerprint("A7");
    crlf(&format!(
        "v=0
        o=mozilla...THIS_IS_SDPARTA-135.0 6208203146297413523 0 IN IP4 0.0.0.0
        s=-
        t=0 0
        a=fingerprint:sha-256 {fp}
        a=group:BUNDLE 0 1
        a=ice-options:trickle
        a=msid-semantic:WMS *
        m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
        c=IN IP4 0.0.0.0
        a=sendonly
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
        a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
        a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
        a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
        a=fmtp:101 0-15
        a=ice-pwd:6b3a2f0e91c74d58a0e1f2b3c4d5e6f7
        a=ice-ufrag:9f8e7d6c
        a=mid:0
        a=msid:{{5c1a7f3e-2b9d-4e61-8f0a-3d7c9b1e5a24}} {{a8d4e2f1-6c3b-4a97-b5e0-1f9d7c3a6b82}}
        a=rtcp-mux
        a=rtpmap:109 opus/48000/2
        a=rtpmap:9 G722/8000/1
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000/1
        a=setup:actpass
        a=ssrc:2655508255 cname:{{e7b3a9d1-4f2c-4b86-9d0e-6a1c5f8b2e37}}
        m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 105 106 99 100 123 122 119
        c=IN IP4 0.0.0.0
        a=sendonly
        a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
        a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
        a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
        a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
        a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
        a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
        a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
        a=fmtp:105 profile-level-id=42001f;level-asymmetry-allowed=1;packetization-mode=1
        a=fmtp:99 profile=0;level-idx=5;tier=0
        a=fmtp:120 max-fs=12288;max-fr=60
        a=fmtp:124 apt=120
        a=fmtp:121 max-fs=12288;max-fr=60
        a=fmtp:125 apt=121
        a=fmtp:127 apt=126
        a=fmtp:98 apt=97
        a=fmtp:106 apt=105
        a=fmtp:100 apt=99
        a=fmtp:119 apt=122
        a=ice-pwd:6b3a2f0e91c74d58a0e1f2b3c4d5e6f7
        a=ice-ufrag:9f8e7d6c
        a=mid:1
        a=msid:{{5c1a7f3e-2b9d-4e61-8f0a-3d7c9b1e5a24}} {{0d6f2b8a-9e4c-4c15-a7b3-8e2f1d9c4a56}}
        a=rtcp-fb:120 nack
        a=rtcp-fb:120 nack pli
        a=rtcp-fb:120 ccm fir
        a=rtcp-fb:120 goog-remb
        a=rtcp-fb:120 transport-cc
        a=rtcp-fb:121 nack
        a=rtcp-fb:121 nack pli
        a=rtcp-fb:121 ccm fir
        a=rtcp-fb:121 goog-remb
        a=rtcp-fb:121 transport-cc
        a=rtcp-fb:126 nack
        a=rtcp-fb:126 nack pli
        a=rtcp-fb:126 ccm fir
        a=rtcp-fb:126 goog-remb
        a=rtcp-fb:126 transport-cc
        a=rtcp-fb:97 nack
        a=rtcp-fb:97 nack pli
        a=rtcp-fb:97 ccm fir
        a=rtcp-fb:97 goog-remb
        a=rtcp-fb:97 transport-cc
        a=rtcp-fb:105 nack
        a=rtcp-fb:105 nack pli
        a=rtcp-fb:105 ccm fir
        a=rtcp-fb:105 goog-remb
        a=rtcp-fb:105 transport-cc
        a=rtcp-fb:99 nack
        a=rtcp-fb:99 nack pli
        a=rtcp-fb:99 ccm fir
        a=rtcp-fb:99 goog-remb
        a=rtcp-fb:99 transport-cc
        a=rtcp-fb:123 nack
        a=rtcp-fb:123 nack pli
        a=rtcp-fb:123 ccm fir
        a=rtcp-fb:123 goog-remb
        a=rtcp-fb:123 transport-cc
        a=rtcp-mux
        a=rtcp-rsize
        a=rtpmap:120 VP8/90000
        a=rtpmap:124 rtx/90000
        a=rtpmap:121 VP9/90000
        a=rtpmap:125 rtx/90000
        a=rtpmap:126 H264/90000
        a=rtpmap:127 rtx/90000
        a=rtpmap:97 H264/90000
        a=rtpmap:98 rtx/90000
        a=rtpmap:105 H264/90000
        a=rtpmap:106 rtx/90000
        a=rtpmap:99 AV1/90000
        a=rtpmap:100 rtx/90000
        a=rtpmap:123 ulpfec/90000
        a=rtpmap:122 red/90000
        a=rtpmap:119 rtx/90000
        a=setup:actpass
        a=ssrc:1812473214 cname:{{e7b3a9d1-4f2c-4b86-9d0e-6a1c5f8b2e37}}
        a=ssrc:2413486290 cname:{{e7b3a9d1-4f2c-4b86-9d0e-6a1c5f8b2e37}}
        a=ssrc-group:FID 1812473214 2413486290"
    ))
}

/// aiortc's offer: `sendrecv` sections, credentials and candidates in
/// each, goog-remb, no mid extension on audio, Opus under 96.
fn aiortc() -> String {
    let fp = fingerprint("5E");
    crlf(&format!(
        "v=0
        o=- 3920000000 3920000000 IN IP4 0.0.0.0
        s=-
        t=0 0
        a=group:BUNDLE 0 1
        a=msid-semantic:WMS *
        m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8
        c=IN IP4 0.0.0.0
        a=sendrecv
        a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level
        a=mid:0
        a=msid:7a1e3c5b-9d2f-4b68-8e0a-1c3f5d7b9e20 e4b2d6f8-0a1c-4e35-b7d9-2f4a6c8e0b13
        a=rtcp:9 IN IP4 0.0.0.0
        a=rtcp-mux
        a=ssrc:1528195580 cname:2f8c4e6a-1b3d-4f57-9a0c-8e6d4b2f0a19
        a=rtpmap:96 opus/48000/2
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=candidate:0d4d5cf5 1 udp 2130706431 192.0.2.10 50601 typ host
        a=end-of-candidates
        a=ice-ufrag:Kq3J
        a=ice-pwd:T0n2vVqXb8yZc4aW6eR1dF
        a=fingerprint:sha-256 {fp}
        a=setup:actpass
        m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100 101 102
        c=IN IP4 0.0.0.0
        a=sendrecv
        a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
        a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
        a=mid:1
        a=msid:7a1e3c5b-9d2f-4b68-8e0a-1c3f5d7b9e20 9c7a5e3b-1d2f-4068-a4b6-c8e0f2a4b6d8
        a=rtcp:9 IN IP4 0.0.0.0
        a=rtcp-mux
        a=ssrc-group:FID 3406245127 2907318821
        a=ssrc:3406245127 cname:2f8c4e6a-1b3d-4f57-9a0c-8e6d4b2f0a19
        a=ssrc:2907318821 cname:2f8c4e6a-1b3d-4f57-9a0c-8e6d4b2f0a19
        a=rtpmap:97 VP8/90000
        a=rtcp-fb:97 nack
        a=rtcp-fb:97 nack pli
        a=rtcp-fb:97 goog-remb
        a=rtpmap:98 rtx/90000
        a=fmtp:98 apt=97
        a=rtpmap:99 H264/90000
        a=rtcp-fb:99 nack
        a=rtcp-fb:99 nack pli
        a=rtcp-fb:99 goog-remb
        a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
        a=rtpmap:100 rtx/90000
        a=fmtp:100 apt=99
        a=rtpmap:101 H264/90000
        a=rtcp-fb:101 nack
        a=rtcp-fb:101 nack pli
        a=rtcp-fb:101 goog-remb
        a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
        a=rtpmap:102 rtx/90000
        a=fmtp:102 apt=101
        a=candidate:0d4d5cf5 1 udp 2130706431 192.0.2.10 50601 typ host
        a=end-of-candidates
        a=ice-ufrag:Kq3J
        a=ice-pwd:T0n2vVqXb8yZc4aW6eR1dF
        a=fingerprint:sha-256 {fp}
        a=setup:actpass"
    ))
}

/// Each section's track is the one `msid_tracks` names for its mid.
fn assert_tracks_as_msid_tracks(offer: &str, answer: &PublisherAnswer) {
    let tracks = msid_tracks(offer);
    assert_eq!(tracks.len(), answer.sections.len(), "{tracks:?}");
    for (mid, track) in tracks {
        let section = answer.sections.iter().find(|s| s.mid == mid).unwrap();
        assert_eq!(section.track, track, "mid {mid}");
    }
}

/// GStreamer's webrtcbin (1.22), as it publishes in the stacks test:
/// Opus without a channel count, the video section bundle-only on port
/// 0, SSRCs and msid in `a=ssrc` lines, no mid header extension.
const GSTREAMER_OFFER: &str = "v=0\r\n\
    o=- 2494347459651906026 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
    a=ice-options:trickle\r\na=group:BUNDLE audio0 video1\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
    a=ice-ufrag:UV9eSKDBRZLrwSfb0Gc0ERvP1kdzaz3M\r\na=ice-pwd:NCn3+z+81t3b8Jf7aJJoBTc7C0a+mw2y\r\n\
    a=rtcp-mux\r\na=rtcp-rsize\r\na=sendonly\r\na=rtpmap:111 OPUS/48000\r\n\
    a=rtcp-fb:111 transport-cc\r\n\
    a=ssrc:676789341 msid:user2908620179@host-83e2072a webrtctransceiver0\r\n\
    a=ssrc:676789341 cname:user2908620179@host-83e2072a\r\na=mid:audio0\r\n\
    a=fingerprint:sha-256 55:DD:F2:50:91:36:A7:3D:CF:60:18:D6:54:EF:1C:E7:E6:6C:E7:1D:DA:F7:AD:AB:50:33:09:05:3A:ED:BB:BF\r\n\
    a=rtcp-mux-only\r\na=candidate:1 1 UDP 2015363327 10.250.9.1 45152 typ host\r\n\
    m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
    a=ice-ufrag:UV9eSKDBRZLrwSfb0Gc0ERvP1kdzaz3M\r\na=ice-pwd:NCn3+z+81t3b8Jf7aJJoBTc7C0a+mw2y\r\n\
    a=bundle-only\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
    a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 transport-cc\r\n\
    a=framerate:15\r\na=ssrc:625309562 msid:user2908620179@host-83e2072a webrtctransceiver1\r\n\
    a=ssrc:625309562 cname:user2908620179@host-83e2072a\r\na=mid:video1\r\n\
    a=fingerprint:sha-256 55:DD:F2:50:91:36:A7:3D:CF:60:18:D6:54:EF:1C:E7:E6:6C:E7:1D:DA:F7:AD:AB:50:33:09:05:3A:ED:BB:BF\r\n\
    a=rtcp-mux-only\r\n";

#[test]
fn gstreamers_offer_is_answered_with_opus_as_two_channels() {
    let a = answered(GSTREAMER_OFFER);
    assert!(a.sdp.contains("a=group:BUNDLE audio0 video1"), "{}", a.sdp);
    let audio = &a.sections[0];
    assert!(audio.receiving, "Opus without a channel count is Opus");
    assert_eq!(audio.codecs.len(), 1);
    assert_eq!((audio.codecs[0].0, audio.codecs[0].1.channels), (111, 2));
    assert_eq!(audio.ssrcs, vec![(676_789_341, None)]);
    assert_eq!(audio.track, "webrtctransceiver0");
    let video = &a.sections[1];
    assert!(
        video.receiving,
        "bundle-only on port 0 is bundled, not stopped"
    );
    assert_eq!(video.ssrcs, vec![(625_309_562, None)]);
    assert_eq!(video.track, "webrtctransceiver1");
    assert!(video.pli && video.fir && video.transport_cc && !video.nack);
    // Every accepted section carries this side's credentials.
    let ufrags = a.sdp.matches("a=ice-ufrag:").count();
    assert_eq!(ufrags, 2, "{}", a.sdp);
}

#[test]
fn chromium_firefox_and_aiortc_offers_are_answered() {
    // Chromium, one encoding.
    let offer = chromium(CHROMIUM_SSRCS);
    let chromium_plain = answered(&offer);
    assert_eq!(chromium_plain.fingerprint, fingerprint("1B"));
    assert_eq!(
        (chromium_plain.ufrag.as_str(), chromium_plain.pwd.as_str()),
        ("Yx3v", "hZ0s7xq1Bq7a6bWf9yX2cD4e")
    );
    assert_eq!(chromium_plain.role, DtlsRole::Server);
    assert_tracks_as_msid_tracks(&offer, &chromium_plain);
    let [audio, video] = &chromium_plain.sections[..] else {
        panic!("{:?}", chromium_plain.sections);
    };
    assert!(audio.receiving && video.receiving);
    // Not red, CN or telephone-event: the engine forwards none of them.
    assert_eq!(pts(audio), [111, 9, 0, 8]);
    assert_eq!(mime(audio, 111), "audio/opus");
    assert_eq!(audio.ssrcs, [(3735928559, None)]);
    assert_eq!(audio.track, "3f2a9b7e-61c4-4f0e-a2d8-5b9c1e7d3a60");
    assert_eq!(
        audio.extensions,
        Extensions {
            audio_level: Some(1),
            transport_cc: Some(3),
            mid: Some(4),
            ..Default::default()
        }
    );
    assert!(audio.transport_cc && !audio.nack);
    // Not H.264's Main profile (4d), VP9's profile 2, red or ulpfec.
    assert_eq!(pts(video), [96, 103, 107, 109, 115, 45, 98, 119]);
    assert_eq!(mime(video, 96), "video/VP8");
    let h264 = &video.codecs[1].1;
    assert_eq!(h264.mime_type, "video/H264");
    assert!(h264.fmtp.contains("packetization-mode=1"), "{h264:?}");
    assert_eq!(
        video.rtx,
        [
            (97, 96),
            (104, 103),
            (108, 107),
            (114, 109),
            (116, 115),
            (46, 45),
            (99, 98),
            (120, 119)
        ]
    );
    assert_eq!(video.ssrcs, [(1111, Some(2222))]);
    assert!(video.rids.is_empty());
    assert_eq!(
        video.extensions,
        Extensions {
            transport_cc: Some(3),
            mid: Some(4),
            rid: Some(10),
            repaired_rid: Some(11),
            audio_level: None,
        }
    );
    assert!(video.nack && video.pli && video.fir && video.transport_cc);
    let sdp = &chromium_plain.sdp;
    assert!(
        !sdp.contains("goog-remb") && !sdp.contains("a=rid"),
        "{sdp}"
    );
    assert!(sdp.contains("a=extmap-allow-mixed\r\n"));
    assert!(sdp.contains("a=rtcp-fb:96 nack pli\r\n") && sdp.contains("a=fmtp:97 apt=96\r\n"));

    // Chromium with three encodings: each a layer, smallest first.
    let offer = chromium(CHROMIUM_SIMULCAST);
    let simulcast = answered(&offer);
    let video = &simulcast.sections[1];
    assert_eq!(video.rids, ["q", "h", "f"]);
    assert!(video.ssrcs.is_empty());
    assert_eq!(video.track, "c41d2f6e-0b7a-4e59-9a3c-2d8f1b6e4c07");
    assert!(
        simulcast
            .sdp
            .contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"),
        "{}",
        simulcast.sdp
    );
    // Alternatives and a paused stream: each stream's first choice.
    let alternatives =
        chromium("a=rid:a send\na=rid:b send\na=rid:c send\na=simulcast:send a;~b,c");
    assert_eq!(answered(&alternatives).sections[1].rids, ["a", "b"]);
    // Four streams: the largest three. A stream no a=rid sends is left out.
    let four = chromium(
        "a=rid:a send\na=rid:b send\na=rid:c send\na=rid:d send\na=simulcast:send a;b;c;d",
    );
    assert_eq!(answered(&four).sections[1].rids, ["b", "c", "d"]);
    let undeclared = chromium("a=rid:a send\na=rid:c recv\na=simulcast:send a;b;c");
    let undeclared = answered(&undeclared);
    assert_eq!(undeclared.sections[1].rids, ["a"]);
    assert!(undeclared.sdp.contains("a=simulcast:recv a\r\n"));

    // Firefox.
    let offer = firefox();
    let ff = answered(&offer);
    assert_eq!(ff.fingerprint, fingerprint("A7"));
    assert_eq!((ff.ufrag.as_str(), ff.role), ("9f8e7d6c", DtlsRole::Server));
    assert_tracks_as_msid_tracks(&offer, &ff);
    let [audio, video] = &ff.sections[..] else {
        panic!("{:?}", ff.sections);
    };
    assert_eq!(pts(audio), [109, 9, 0, 8]);
    assert_eq!(mime(audio, 109), "audio/opus");
    assert_eq!(audio.ssrcs, [(2655508255, None)]);
    assert_eq!(audio.track, "{a8d4e2f1-6c3b-4a97-b5e0-1f9d7c3a6b82}");
    // The CSRC levels are not Roost's, and Firefox only receives them.
    assert_eq!(
        audio.extensions,
        Extensions {
            audio_level: Some(1),
            mid: Some(3),
            ..Default::default()
        }
    );
    assert!(!audio.transport_cc);
    // 97 is H.264 without packetization-mode: RFC 6184's mode 0.
    assert_eq!(pts(video), [120, 121, 126, 97, 105, 99]);
    assert_eq!(
        [120, 121, 126, 97, 105, 99].map(|pt| mime(video, pt)),
        [
            "video/VP8",
            "video/VP9",
            "video/H264",
            "video/H264",
            "video/H264",
            "video/AV1"
        ]
    );
    assert_eq!(
        video.rtx,
        [
            (124, 120),
            (125, 121),
            (127, 126),
            (98, 97),
            (106, 105),
            (100, 99)
        ]
    );
    assert_eq!(video.ssrcs, [(1812473214, Some(2413486290))]);
    assert_eq!(
        video.extensions,
        Extensions {
            mid: Some(3),
            transport_cc: Some(7),
            ..Default::default()
        }
    );
    assert!(video.nack && video.pli && video.fir && video.transport_cc);
    assert!(!ff.sdp.contains("extmap-allow-mixed") && !ff.sdp.contains("goog-remb"));

    // aiortc.
    let offer = aiortc();
    let aio = answered(&offer);
    assert_eq!(aio.fingerprint, fingerprint("5E"));
    assert_eq!(
        (aio.ufrag.as_str(), aio.pwd.as_str()),
        ("Kq3J", "T0n2vVqXb8yZc4aW6eR1dF")
    );
    assert_tracks_as_msid_tracks(&offer, &aio);
    let [audio, video] = &aio.sections[..] else {
        panic!("{:?}", aio.sections);
    };
    assert!(audio.receiving && video.receiving);
    assert_eq!(pts(audio), [96, 0, 8]);
    assert_eq!(mime(audio, 96), "audio/opus");
    assert_eq!(audio.ssrcs, [(1528195580, None)]);
    assert_eq!(
        audio.extensions,
        Extensions {
            audio_level: Some(2),
            ..Default::default()
        }
    );
    assert_eq!(pts(video), [97, 99, 101]);
    assert_eq!(
        [97, 99, 101].map(|pt| mime(video, pt)),
        ["video/VP8", "video/H264", "video/H264"]
    );
    assert_eq!(video.rtx, [(98, 97), (100, 99), (102, 101)]);
    assert_eq!(video.ssrcs, [(3406245127, Some(2907318821))]);
    assert_eq!(video.track, "9c7a5e3b-1d2f-4068-a4b6-c8e0f2a4b6d8");
    assert_eq!(
        video.extensions,
        Extensions {
            mid: Some(1),
            ..Default::default()
        }
    );
    // goog-remb is not taken; nothing else offered is missing.
    assert!(video.nack && video.pli && !video.fir && !video.transport_cc);
    assert!(!aio.sdp.contains("goog-remb"));
    // Its sections send and receive; the engine only receives.
    assert_eq!(aio.sdp.matches("a=recvonly\r\n").count(), 2);
}

/// A section of an answer as a client sees it.
#[derive(Debug, PartialEq)]
struct Seen {
    mid: Option<String>,
    accepted: bool,
    direction: Option<String>,
    formats: BTreeSet<String>,
    feedback: BTreeSet<String>,
    extmaps: BTreeSet<String>,
    rids: BTreeSet<String>,
}

fn seen(m: &MediaDescription) -> Seen {
    let values = |key: &str| -> BTreeSet<String> {
        m.attributes
            .iter()
            .filter(|a| a.key == key)
            .filter_map(|a| a.value.as_deref())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let directions = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let mut rids = values("rid");
    rids.extend(values("simulcast"));
    Seen {
        mid: m.attribute("mid").flatten().map(str::to_owned),
        accepted: m.media_name.port.value != 0,
        direction: m
            .attributes
            .iter()
            .find(|a| directions.contains(&a.key.as_str()))
            .map(|a| a.key.clone()),
        formats: m.media_name.formats.iter().cloned().collect(),
        feedback: values("rtcp-fb"),
        extmaps: values("extmap"),
        rids,
    }
}

#[test]
fn each_section_takes_what_todays_peer_takes() {
    let (_, stack) = client_and_offer();
    let offers = [
        ("the stack's client", stack),
        ("Chromium", chromium(CHROMIUM_SSRCS)),
        ("Chromium with simulcast", chromium(CHROMIUM_SIMULCAST)),
        (
            "Chromium with alternatives",
            chromium("a=rid:a send\na=rid:b send\na=rid:c send\na=simulcast:send a;~b,c"),
        ),
        ("Firefox", firefox()),
        ("aiortc", aiortc()),
        (
            "aiortc with an id that means two extensions",
            aiortc().replace(
                "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc",
                "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc",
            ),
        ),
    ];
    for (who, offer) in offers {
        // The stack's own peer, answering the same offer (a client's: no
        // ICE-lite).
        let setup = PeerSetup::client("127.0.0.1:7882".parse().unwrap());
        let now = Instant::now();
        let today = Peer::new(&setup, now)
            .unwrap()
            .answer(offer.clone(), now)
            .unwrap_or_else(|e| panic!("{who}: today's peer refused: {e}"));
        let today = parse(&today);
        let ours = parse(&answered(&offer).sdp);
        assert_eq!(
            ours.attribute("group"),
            today.attribute("group"),
            "{who}: a=group"
        );
        assert!(ours.has_attribute("ice-lite"), "{who}");
        assert_eq!(
            ours.has_attribute("extmap-allow-mixed"),
            today.has_attribute("extmap-allow-mixed"),
            "{who}: a=extmap-allow-mixed"
        );
        let offered = parse(&offer);
        assert_eq!(
            ours.media_descriptions.len(),
            today.media_descriptions.len()
        );
        for ((o, t), m) in ours
            .media_descriptions
            .iter()
            .zip(&today.media_descriptions)
            .zip(&offered.media_descriptions)
        {
            let (mut o, mut t) = (seen(o), seen(t));
            // Deliberately not taken: REMB, which the engine never sends,
            // and feedback on RTX payload types (the stack's client offers
            // NACK, PLI and transport-cc there; browsers offer none): a
            // NACK or PLI names the media SSRC, never the RTX one.
            t.feedback.retain(|f| !f.ends_with(" goog-remb"));
            let codecs = m.codecs();
            let is_rtx = |pt: &str| {
                let c = pt.parse().ok().and_then(|pt| codecs.get(&pt));
                c.is_some_and(|c| c.name.eq_ignore_ascii_case("rtx"))
            };
            t.feedback
                .retain(|f| !is_rtx(f.split(' ').next().unwrap_or("")));
            // Deliberately taken: H.264 without packetization-mode (Firefox's
            // 97, and its RTX), which RFC 6184 reads as mode 0, a mode of
            // Roost's; the stack wants the parameter written.
            let modeless = |pt: &str| {
                let c = pt.parse().ok().and_then(|pt| codecs.get(&pt));
                let apt = c.and_then(|c| c.fmtp.strip_prefix("apt="));
                let c = apt
                    .and_then(|a| a.parse().ok())
                    .and_then(|a| codecs.get(&a))
                    .or(c);
                c.is_some_and(|c| c.name == "H264" && !c.fmtp.contains("packetization-mode"))
            };
            let only_ours: Vec<String> = o.formats.difference(&t.formats).cloned().collect();
            assert!(
                only_ours.iter().all(|pt| modeless(pt)),
                "{who}: {only_ours:?}"
            );
            o.formats.retain(|pt| !modeless(pt));
            o.feedback
                .retain(|f| !modeless(f.split(' ').next().unwrap_or("")));
            // Deliberately other: of a stream with alternatives (`~b,c`),
            // Roost takes the first, unpaused; the stack takes each
            // alternative as a stream of its own and keeps the pause.
            if who == "Chromium with alternatives" && o.accepted && !o.rids.is_empty() {
                let ours: BTreeSet<String> =
                    ["a recv", "b recv", "recv a;b"].map(str::to_owned).into();
                assert_eq!(o.rids, ours, "{who}");
                o.rids = t.rids.clone();
            }
            assert_eq!(o, t, "{who}");
        }
    }
}

#[test]
fn the_dtls_role_follows_the_offers_setup() {
    let offer = chromium(CHROMIUM_SSRCS);
    let passive = answered(&offer.replace("a=setup:actpass", "a=setup:passive"));
    assert_eq!(passive.role, DtlsRole::Client);
    assert_eq!(passive.sdp.matches("a=setup:active\r\n").count(), 2);
    let active = answered(&offer.replace("a=setup:actpass", "a=setup:active"));
    assert_eq!(active.role, DtlsRole::Server);
    assert_eq!(active.sdp.matches("a=setup:passive\r\n").count(), 2);
}

#[test]
fn sections_without_roosts_codecs_or_media_are_rejected_and_the_rest_answered() {
    let fp = fingerprint("3C");
    let offer = crlf(&format!(
        "v=0
        o=- 1 1 IN IP4 0.0.0.0
        s=-
        t=0 0
        a=group:BUNDLE a v h d r
        a=fingerprint:sha-256 {fp}
        a=ice-ufrag:abcd
        a=ice-pwd:abcdefghijklmnopqrstuvwx
        a=setup:actpass
        m=audio 9 UDP/TLS/RTP/SAVPF 111
        a=mid:a
        a=sendonly
        a=msid:s mic
        a=rtpmap:111 opus/48000/2
        m=video 9 UDP/TLS/RTP/SAVPF 96 97
        a=mid:v
        a=sendonly
        a=msid:s cam
        a=rtpmap:96 VP8/90000
        a=rtpmap:97 rtx/90000
        a=fmtp:97 apt=96
        m=video 9 UDP/TLS/RTP/SAVPF 34 35
        a=mid:h
        a=sendonly
        a=msid:s old
        a=rtpmap:34 H263/90000
        a=rtpmap:35 rtx/90000
        a=fmtp:35 apt=34
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel
        a=mid:d
        a=sctp-port:5000
        m=audio 9 UDP/TLS/RTP/SAVPF 111
        a=mid:r
        a=recvonly
        a=rtpmap:111 opus/48000/2"
    ));
    let answer = answered(&offer);
    let got: Vec<_> = answer
        .sections
        .iter()
        .map(|s| {
            (
                s.mid.as_str(),
                s.kind,
                s.receiving,
                s.codecs.len(),
                s.rtx.len(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", Some(Kind::Audio), true, 1, 0),
            ("v", Some(Kind::Video), true, 1, 1),
            ("h", Some(Kind::Video), false, 0, 0),
            ("d", None, false, 0, 0),
            ("r", Some(Kind::Audio), false, 0, 0),
        ]
    );
    assert_eq!(answer.sections[2].track, "old");
    assert_eq!(answer.sections[3].track, "d");
    let sdp = parse(&answer.sdp);
    assert_eq!(
        sdp.attribute("group").map(String::as_str),
        Some("BUNDLE a v")
    );
    let lines: Vec<(String, isize, Option<&str>, bool)> = sdp
        .media_descriptions
        .iter()
        .map(|m| {
            (
                format!("{} {}", m.media_name.media, m.media_name.protos.join("/")),
                m.media_name.port.value,
                m.attribute("mid").flatten(),
                m.has_attribute("inactive"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("audio UDP/TLS/RTP/SAVPF".into(), 9, Some("a"), false),
            ("video UDP/TLS/RTP/SAVPF".into(), 9, Some("v"), false),
            ("video UDP/TLS/RTP/SAVPF".into(), 0, Some("h"), true),
            ("application UDP/DTLS/SCTP".into(), 0, Some("d"), true),
            ("audio UDP/TLS/RTP/SAVPF".into(), 0, Some("r"), true),
        ]
    );
    // A rejected section names no codec, candidate or credential of ours.
    for m in &sdp.media_descriptions[2..] {
        assert!(m
            .attributes
            .iter()
            .all(|a| a.key == "mid" || a.key == "inactive"));
    }
    assert!(answer
        .sdp
        .contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));

    // Nothing taken at all: an answer still, every section rejected and no group.
    let nothing = offer
        .replace("opus/48000/2", "L16/48000/2")
        .replace("VP8/90000", "H263/90000");
    let answer = answered(&nothing);
    assert!(answer.sections.iter().all(|s| !s.receiving));
    assert!(!answer.sdp.contains("a=group") && !answer.sdp.contains("a=candidate"));
}

#[test]
fn an_extension_id_means_one_extension_across_the_bundle() {
    // aiortc's ids, but audio level on 1, which video gives the mid.
    let offer = aiortc().replace(
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    );
    let answer = answered(&offer);
    let (audio, video) = (&answer.sections[0], &answer.sections[1]);
    assert_eq!(audio.extensions.audio_level, Some(1));
    // Taken first for audio level, id 1 is not also the mid: a packet's
    // mid could not be read before its section is known.
    assert_eq!(video.extensions, Extensions::default());
    let video_sdp = &answer.sdp[answer.sdp.find("m=video").unwrap()..];
    assert!(!video_sdp.contains("a=extmap:"), "{video_sdp}");
    // The same extension under the same id in every section is taken in each.
    let chromium = answered(&chromium(CHROMIUM_SSRCS));
    let mids: Vec<_> = chromium.sections.iter().map(|s| s.extensions.mid).collect();
    assert_eq!(mids, [Some(4), Some(4)]);
}

#[test]
fn hostile_offers_are_refused_with_a_reason() {
    let good = chromium(CHROMIUM_SSRCS);
    let without = |prefix: &str| -> String {
        good.lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\r\n"))
            .collect()
    };
    let long_track = "t".repeat(300);
    let cases = [
        (String::new(), "not a session description"),
        ("garbage".into(), "not a session description"),
        (
            "\u{0}v=0\r\n\u{fffd}\u{202e}o=\u{10ffff}\r\nm=\u{0}".into(),
            "not a session description",
        ),
        (good.chars().rev().collect(), "not a session description"),
        (
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".into(),
            "no media section",
        ),
        (without("a=fingerprint:"), "fingerprint"),
        (
            good.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-1 "),
            "fingerprint of sha-256",
        ),
        (
            good.replace("a=fingerprint:sha-256 1B:", "a=fingerprint:sha-256 zz:"),
            "not a SHA-256 fingerprint",
        ),
        (without("a=ice-ufrag:"), "ICE credentials (a=ice-ufrag)"),
        (without("a=ice-pwd:"), "ICE credentials (a=ice-pwd)"),
        (
            good.replace("a=ice-ufrag:Yx3v", "a=ice-ufrag:Y\u{7}x"),
            "ICE ufrag",
        ),
        (without("a=mid:1"), "has no a=mid"),
        (good.replace("a=mid:1", "a=mid:1 2"), "mid"),
        (
            good.replace("a=mid:1", &format!("a=mid:{}", "m".repeat(100))),
            "mid",
        ),
        (
            good.replace("a=mid:1", "a=mid:0"),
            "two media sections with mid 0",
        ),
        (
            good.replace("SAVPF 96 97", "SAVP 96 97"),
            "transport UDP/TLS/RTP/SAVP",
        ),
        (
            good.replace("UDP/TLS/RTP/SAVPF 111", "RTP/AVP 111"),
            "transport RTP/AVP",
        ),
        (
            good.replace("UDP/TLS/RTP/SAVPF 111", "TCP/TLS/RTP/SAVPF 111"),
            "transport TCP/TLS/RTP/SAVPF",
        ),
        (
            good.replace("a=setup:actpass", "a=setup:holdconn"),
            "a=setup",
        ),
        (
            good.replace("c41d2f6e-0b7a-4e59-9a3c-2d8f1b6e4c07", &long_track),
            "track id",
        ),
        (
            chromium("a=rid:q send\na=rid:h;x send\na=simulcast:send q;h;x/y"),
            "simulcast rid",
        ),
        (
            good.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0"),
            "bundle",
        ),
        (without("a=group:"), "bundle"),
    ];
    for (hostile, why) in cases {
        match answer(&hostile, &session()) {
            Err(MediaError::Sdp(e)) => assert!(e.contains(why), "{e} for\n{hostile:.3000}"),
            Err(e) => panic!("not an SDP error: {e}"),
            Ok(a) => panic!("taken: {:?}\n{hostile:.3000}", a.sections),
        }
    }

    // Twenty thousand sections, each of its own mid: answered, each rejected.
    let sections: String = (0..20_000u32)
        .map(|i| format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x{i}\r\n"))
        .collect();
    let many = answered(&format!("{good}{sections}"));
    assert_eq!(many.sections.len(), 20_002);
    assert!(many.sections[2..].iter().all(|s| !s.receiving));

    // Ten thousand SSRCs: the first ones are read, and no more.
    let many: String = (0..10_000u32)
        .map(|i| format!("a=ssrc:{} cname:x\r\n", 10_000 + i))
        .collect();
    let flood = answered(&format!("{good}{many}"));
    let video = &flood.sections[1];
    assert!(video.ssrcs.len() <= MAX_SSRCS, "{}", video.ssrcs.len());
    assert_eq!(video.ssrcs[0], (1111, Some(2222)));
    // An SSRC named only as the RTX of another is no primary of its own.
    assert!(video.ssrcs.iter().all(|(s, _)| *s != 2222));

    // What the engine gave wrong is its own error, not the client's.
    let mut bad = session();
    bad.ufrag.push_str("\r\na=ice-lite");
    assert!(matches!(answer(&good, &bad), Err(MediaError::Config(_))));
    let mut nowhere = session();
    nowhere.candidates.clear();
    assert!(matches!(
        answer(&good, &nowhere),
        Err(MediaError::Config(_))
    ));
}

/// Lines shaped like an offer's, to reach past the parser's first checks.
const LINE: &str = "(m=(audio|video|application) [0-9]{1,5} (UDP/TLS/RTP/SAVPF|UDP/DTLS/SCTP)( [0-9]{1,3}){0,3}|\
    a=(mid|msid|ice-ufrag|ice-pwd|setup|group|rtpmap|fmtp|rtcp-fb|extmap|fingerprint|ssrc|ssrc-group|rid|simulcast|sendonly|recvonly)(:[ -~]{0,40})?|\
    c=IN IP4 [0-9.]{1,15}|[a-z]=[ -~]{0,20})";

proptest! {
    #[test]
    fn answering_any_text_never_panics(text in any::<String>()) {
        let _ = answer(&text, &session());
    }

    #[test]
    fn an_offer_with_lines_changed_never_panics(
        changes in prop::collection::vec((any::<prop::sample::Index>(), LINE), 1..8)
    ) {
        let offer = chromium(CHROMIUM_SIMULCAST);
        let mut lines: Vec<String> = offer.lines().map(str::to_owned).collect();
        for (at, line) in changes {
            let at = at.index(lines.len());
            lines[at] = line;
        }
        let changed = lines.join("\r\n");
        // Whatever is answered parses again, and names each section once.
        if let Ok(a) = answer(&changed, &session()) {
            let sdp = parse(&a.sdp);
            prop_assert_eq!(sdp.media_descriptions.len(), a.sections.len());
        }
    }
}
