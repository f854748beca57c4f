//! What a connection does to SDP beside the stack: the candidates in every
//! media section, simulcast cut to one encoding, the checks on an answer,
//! the codecs each section took, and the tracks each section carries.

use std::collections::HashMap;

use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};

use crate::MediaError;

/// Who the remote side of a connection is, as its SDP says: what an answer
/// from another connection would not repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteIdentity {
    ufrag: String,
    pwd: String,
    /// `sha-256 AB:CD:...`, the hash name in lower case and the value in upper.
    fingerprint: String,
}

/// Repeats the first media section's candidates in every media section that
/// has none. `rtc` writes them into the first section only, which is enough
/// for browsers (the sections are bundled) but not for every stack: aiortc
/// keeps the candidates of the last section of each transport it bundles.
pub(super) fn candidates_in_every_section(sdp: &str) -> String {
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
/// take. The stack's peer answered publishers this way before Roost wrote
/// the answers itself ([`super::answer`] keeps the same encoding); the
/// tests compare the two.
#[cfg(test)]
pub(super) fn one_encoding(sdp: &str) -> String {
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
pub(super) fn sdp_value<'a>(sdp: &'a str, key: &str) -> Option<&'a str> {
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
pub(super) fn check_answer(
    offer: &str,
    answer: &str,
    established: Option<&RemoteIdentity>,
    ice_restart: bool,
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
        let same = identity.ufrag == established.ufrag && identity.pwd == established.pwd;
        if !same && !ice_restart {
            return Err(mismatch(
                "the answer's ICE credentials are not the connection's, and no ICE restart was offered",
            ));
        }
    }
    Ok(identity)
}

/// A codec of a media section as the SDP gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SdpCodec {
    payload_type: u8,
    /// `video/H264`
    mime_type: String,
    clock_rate: u32,
    channels: u16,
    fmtp: String,
}

impl SdpCodec {
    pub(super) fn parameters(&self) -> RTCRtpCodecParameters {
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
pub(super) fn codecs_by_ssrc(offer: &str, answer: &str) -> HashMap<u32, Vec<SdpCodec>> {
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

/// The media sections of an SDP that carry a track: each one's `a=mid` and
/// the track id of its `a=msid` (the second part). An SDP the stack does not
/// parse has none.
pub(crate) fn msid_tracks(sdp: &str) -> Vec<(String, String)> {
    let mut reader = std::io::Cursor::new(sdp.as_bytes());
    let Ok(session) = rtc::sdp::SessionDescription::unmarshal(&mut reader) else {
        return Vec::new();
    };
    session
        .media_descriptions
        .iter()
        .filter_map(|media| {
            let mid = media.attribute("mid").flatten()?.trim();
            let msid = media.attribute("msid").flatten()?;
            let track = msid.split_whitespace().nth(1)?;
            Some((mid.to_owned(), track.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::peer::{Kind, Peer, PeerSetup};

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
        // The stack's peer, answering the offer cut to one encoding, takes
        // that one encoding.
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
        let mut engine =
            Peer::new(&PeerSetup::client("127.0.0.1:7882".parse().unwrap()), now).unwrap();
        let answer = engine.answer(one_encoding(&offer), now).unwrap();
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
        let first = check_answer(
            &offer,
            &answer_sdp(&["0", "1"], "alice", "aa:bb"),
            None,
            false,
        )
        .expect("a matching answer");
        assert_eq!(first.fingerprint, "sha-256 AA:BB");
        // The same connection answers again: the same credentials and certificate.
        let again = check_answer(
            &offer,
            &answer_sdp(&["0", "1"], "alice", "AA:BB"),
            Some(&first),
            false,
        );
        assert_eq!(again.unwrap(), first);
        let refused =
            |answer: &str, established| match check_answer(&offer, answer, established, false) {
                Err(MediaError::Mismatch(why)) => why,
                other => panic!("{answer} was not refused: {other:?}"),
            };
        // After an ICE restart the credentials change, never the certificate.
        let restarted = check_answer(
            &offer,
            &answer_sdp(&["0", "1"], "alice2", "aa:bb"),
            Some(&first),
            true,
        );
        assert!(restarted.is_ok());
        assert!(check_answer(
            &offer,
            &answer_sdp(&["0", "1"], "bob", "cc:dd"),
            Some(&first),
            true
        )
        .is_err());
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

    #[test]
    fn each_section_names_its_mid_and_track() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:s a-1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v-1\r\na=mid:1\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n";
        assert_eq!(
            msid_tracks(sdp),
            vec![
                ("0".to_owned(), "a-1".to_owned()),
                ("1".to_owned(), "v-1".to_owned())
            ]
        );
        // A stream id alone names no track.
        let stream_only = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=msid:only-stream\n";
        assert!(msid_tracks(stream_only).is_empty());
        // Not an SDP: no session, origin or timing.
        assert!(msid_tracks("m=audio\na=msid:only-stream").is_empty());
        // An offer as the stack writes it.
        let now = Instant::now();
        let mut peer = Peer::new(&PeerSetup::client("127.0.0.1:9".parse().unwrap()), now).unwrap();
        let codec = crate::client::codec(Kind::Audio);
        peer.add_sender(Kind::Audio, &codec, 1234, None, "s", "t")
            .unwrap();
        let offer = peer.offer(now).unwrap().unwrap();
        let tracks = msid_tracks(&offer);
        assert_eq!(tracks.len(), 1, "{offer}");
        assert_eq!(tracks[0].1, "t");
        assert!(offer.contains(&format!("a=mid:{}", tracks[0].0)));
    }
}
