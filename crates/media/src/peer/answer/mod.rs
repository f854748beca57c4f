//! The answers Roost writes to a publisher's offers (ADR 0020, step 6):
//! the SDP of a connection on which the engine only receives, read and
//! written with `rtc-sdp`'s types. The offer gives what the transport
//! needs: the client's certificate fingerprint and the DTLS role, and for
//! each media section the payload types, header-extension ids, SSRCs and
//! rid its packets arrive with.
//!
//! The answer takes what the engine can forward and nothing more: each
//! audio or video section in which the client sends, with the codecs of
//! Roost's media engine (`codecs`) under the offer's payload types and
//! their RTX, the feedback the engine acts on, the header extensions the
//! transport reads, and of a simulcast offer up to three encodings, each
//! a layer of the track (ADR 0025). Every other
//! section is rejected, and the connection goes on without it. Everything
//! the offer gives that goes into the answer or the engine's state is
//! checked and bounded first, so no offer can break the SDP written or
//! grow state without bound. Nothing here reads a clock: the session id
//! and version come in.

use std::collections::HashSet;
use std::io::Cursor;
use std::net::SocketAddr;

use rtc::sdp::description::common::{Address, ConnectionInformation};
use rtc::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use rtc::sdp::description::session::{
    ATTR_KEY_CONNECTION_SETUP, ATTR_KEY_END_OF_CANDIDATES, ATTR_KEY_EXTMAP_ALLOW_MIXED,
    ATTR_KEY_EXT_MAP, ATTR_KEY_GROUP, ATTR_KEY_INACTIVE, ATTR_KEY_MID, ATTR_KEY_MSID,
    ATTR_KEY_RECV_ONLY, ATTR_KEY_RTCPMUX, ATTR_KEY_RTCPRSIZE, ATTR_KEY_SEND_ONLY,
    ATTR_KEY_SEND_RECV, ATTR_KEY_SSRC, ATTR_KEY_SSRC_GROUP,
};
use rtc::sdp::extmap::{SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI, TRANSPORT_CC_URI};
use rtc::sdp::SessionDescription;

use super::codecs::{AUDIO_CODECS, AUDIO_LEVEL_URI, MID_URI, VIDEO_CODECS};
use super::dtls_srtp::DtlsRole;
use super::offer::{codec, engine_side, host_candidate, is_rtx, media_type, same, token};
use super::{Codec, Kind};
use crate::MediaError;

/// This side of a publisher connection, as every answer of it says.
#[derive(Debug, Clone)]
pub struct AnswerSession {
    /// `o=`'s session id, the same in every answer of a connection (63 bits).
    pub id: u64,
    /// `o=`'s version: higher with each answer of the connection.
    pub version: u64,
    /// This side's ICE credentials (they name the connection in the demux).
    pub ufrag: String,
    pub pwd: String,
    /// This side's SHA-256 fingerprint, as `Identity::fingerprint` gives it.
    pub fingerprint: String,
    /// The engine's UDP port at each advertised address: host candidates.
    pub candidates: Vec<SocketAddr>,
}

/// An answer written, and what the transport reads packets with.
#[derive(Debug, Clone)]
pub struct PublisherAnswer {
    pub sdp: String,
    /// The client's SHA-256 fingerprint, upper-case hex pairs.
    pub fingerprint: String,
    /// This side's end of the DTLS handshake: the server, unless the offer
    /// said `a=setup:passive`.
    pub role: DtlsRole,
    /// The client's ICE credentials.
    pub ufrag: String,
    pub pwd: String,
    /// Every media section of the offer, in its order.
    pub sections: Vec<ReceivedSection>,
}

/// One media section of the offer as answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedSection {
    pub mid: String,
    /// `None` for a section that is not audio or video (rejected).
    pub kind: Option<Kind>,
    /// Whether the answer takes media here (`a=recvonly`): the offer sends
    /// in it and one of its codecs is Roost's.
    pub receiving: bool,
    /// The track it carries: `a=msid`'s track id, or where the offer names
    /// none, the mid.
    pub track: String,
    /// The codecs the answer accepted, under the offer's payload types, in
    /// the offer's order.
    pub codecs: Vec<(u8, Codec)>,
    /// The RTX payload types the answer accepted, with the payload type
    /// each repairs (`apt`).
    pub rtx: Vec<(u8, u8)>,
    /// The SSRCs the offer named (`a=ssrc`), each with its RTX SSRC
    /// (`a=ssrc-group:FID`).
    pub ssrcs: Vec<(u32, Option<u32>)>,
    /// Where the offer sends simulcast: the rids the answer accepts, one
    /// per layer, in the offer's order (smallest first, as clients list
    /// them). Empty without simulcast.
    pub rids: Vec<String>,
    /// Header-extension ids the answer accepted.
    pub extensions: Extensions,
    /// Feedback the answer accepted for the section's video codecs.
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
    pub transport_cc: bool,
}

/// The header extensions a publisher's packets may carry, by the id the
/// offer gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub audio_level: Option<u8>,
    pub transport_cc: Option<u8>,
}

/// Answers a publisher's `offer`. Errors say what the offer lacks or
/// carries that Roost cannot take.
pub fn answer(offer: &str, session: &AnswerSession) -> Result<PublisherAnswer, MediaError> {
    check_session(session)?;
    let sdp = SessionDescription::unmarshal(&mut Cursor::new(offer.as_bytes())).map_err(|e| {
        refused(format!(
            "the offer is not a session description ({})",
            excerpt(&e.to_string())
        ))
    })?;
    let media = &sdp.media_descriptions;
    if media.is_empty() {
        return Err(refused("the offer has no media section"));
    }
    // The transport's attributes: the first section that is not rejected
    // (the one a BUNDLE's transport is tagged with), then the session's.
    let first = media.iter().find(|m| !stopped(m)).unwrap_or(&media[0]);
    let transport = |key: &'static str| {
        first
            .attributes
            .iter()
            .chain(&sdp.attributes)
            .filter(move |a| a.key == key)
            .filter_map(|a| a.value.as_deref().map(str::trim))
    };
    let ufrag = transport("ice-ufrag")
        .next()
        .ok_or_else(|| refused("the offer has no ICE credentials (a=ice-ufrag)"))?;
    let pwd = transport("ice-pwd")
        .next()
        .ok_or_else(|| refused("the offer has no ICE credentials (a=ice-pwd)"))?;
    offered_token("ICE ufrag", ufrag, MAX_ID)?;
    offered_token("ICE password", pwd, MAX_ID)?;
    let fingerprint = transport("fingerprint")
        .find_map(|f| {
            let (hash, value) = f.split_once(' ')?;
            hash.eq_ignore_ascii_case("sha-256").then(|| value.trim())
        })
        .ok_or_else(|| refused("the offer has no certificate fingerprint of sha-256"))?;
    let hex = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if fingerprint.split(':').count() != 32 || !fingerprint.split(':').all(hex) {
        return Err(refused(
            "the offer's a=fingerprint is not a SHA-256 fingerprint",
        ));
    }
    // RFC 4145: an offer without a=setup is active.
    let (role, setup) = match transport(ATTR_KEY_CONNECTION_SETUP).next() {
        None | Some("actpass") | Some("active") => (DtlsRole::Server, "passive"),
        Some("passive") => (DtlsRole::Client, "active"),
        Some(_) => {
            return Err(refused(
                "the offer's a=setup is not actpass, active or passive",
            ))
        }
    };

    let mut read: Vec<SectionAnswer> = Vec::with_capacity(media.len());
    let mut ids: Vec<(u8, &'static str)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(media.len());
    for m in media {
        let section = read_section(m, &sdp, &mut ids)?;
        read.push(section);
    }
    for r in &read {
        if !seen.insert(&r.section.mid) {
            return Err(refused(format!(
                "the offer has two media sections with mid {}",
                r.section.mid
            )));
        }
    }
    let mids: Vec<&str> = read
        .iter()
        .filter(|r| r.section.receiving)
        .map(|r| r.section.mid.as_str())
        .collect();
    if mids.len() > 1 && !bundled(&sdp, &mids) {
        return Err(refused(
            "the offer does not bundle its media sections: Roost takes them on one transport",
        ));
    }

    let mut out = engine_side(session.id, session.version, &session.fingerprint);
    if sdp.has_attribute(ATTR_KEY_EXTMAP_ALLOW_MIXED) {
        out = out.with_property_attribute(ATTR_KEY_EXTMAP_ALLOW_MIXED.into());
    }
    // Where nothing is taken there is no transport, and no group to name.
    if !mids.is_empty() {
        out = out.with_value_attribute(ATTR_KEY_GROUP.into(), format!("BUNDLE {}", mids.join(" ")));
    }
    for (m, r) in media.iter().zip(&read) {
        let written = if r.section.receiving {
            receiving_media(r, session, setup)
        } else {
            rejected_media(m, &r.section.mid)
        };
        out = out.with_media(written);
    }
    Ok(PublisherAnswer {
        sdp: out.marshal(),
        fingerprint: fingerprint.to_ascii_uppercase(),
        role,
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
        sections: read.into_iter().map(|r| r.section).collect(),
    })
}

/// The one transport the answer takes media on.
const PROTO: &str = "UDP/TLS/RTP/SAVPF";
/// A mid goes into every packet (RFC 8843's header extension), in the
/// one-byte form's 16 bytes.
const MAX_MID: usize = 16;
/// ICE credentials and track ids: RFC 8830 says 64 characters for a track
/// id, but the engine's own are longer, and browsers take them.
const MAX_ID: usize = 256;
/// An `a=fmtp` the answer repeats.
const MAX_FMTP: usize = 256;
/// A rid goes into packets like a mid.
const MAX_RID: usize = 16;
/// The layers of a simulcast track the answer takes: the largest three
/// (clients send three at most: quarter, half and full size).
pub const MAX_LAYERS: usize = 3;
/// SSRCs (and FID groups) read per section; a camera or microphone has
/// one, with its RTX, or three with simulcast.
const MAX_SSRCS: usize = 16;
/// A transport or format of the offer's that a rejected section's `m=`
/// line repeats.
const MAX_PROTO: usize = 32;

fn refused(why: impl Into<String>) -> MediaError {
    MediaError::Sdp(why.into())
}

/// The start of a value from the offer, for an error message: the client
/// sent it, and a log line has no room for all of it.
fn excerpt(value: &str) -> String {
    const SHOWN: usize = 40;
    match value.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_owned(),
    }
}

/// Refuses a value of the offer that is empty, longer than `max` or not
/// visible ASCII.
fn offered_token(what: &str, value: &str, max: usize) -> Result<(), MediaError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refused(format!(
            "the offer's {what} {:?} is not 1 to {max} visible ASCII characters",
            excerpt(value)
        )));
    }
    Ok(())
}

/// What the engine gave: values that go into the answer as they are.
fn check_session(session: &AnswerSession) -> Result<(), MediaError> {
    if session.candidates.is_empty() {
        return Err(MediaError::Config("an answer needs candidates".into()));
    }
    token("ICE ufrag", &session.ufrag, MAX_ID)?;
    token("ICE password", &session.pwd, MAX_ID)?;
    token("fingerprint", &session.fingerprint, MAX_ID)
}

/// A section the offer itself stopped (port 0), unless it waits on the
/// BUNDLE's transport (`a=bundle-only`).
fn stopped(m: &MediaDescription) -> bool {
    m.media_name.port.value == 0 && !m.has_attribute("bundle-only")
}

/// Whether one of the offer's BUNDLE groups holds all of `mids`.
fn bundled(sdp: &SessionDescription, mids: &[&str]) -> bool {
    sdp.attributes
        .iter()
        .filter(|a| a.key == ATTR_KEY_GROUP)
        .filter_map(|a| a.value.as_deref()?.trim().strip_prefix("BUNDLE "))
        .any(|group| {
            let group: HashSet<&str> = group.split_whitespace().collect();
            mids.iter().all(|mid| group.contains(mid))
        })
}

/// What the answer says of one section of the offer: the public part, and
/// what the answer writes beside it.
struct SectionAnswer {
    section: ReceivedSection,
    /// Every payload type taken, in the offer's order: primaries with the
    /// feedback accepted for each, and RTX.
    formats: Vec<Taken>,
    /// The header extensions taken, in the offer's order.
    extmaps: Vec<(u8, &'static str)>,
    rtcp_rsize: bool,
    extmap_allow_mixed: bool,
}

/// A payload type the answer takes.
struct Taken {
    payload_type: u8,
    /// The name in `a=rtpmap` (`VP8`, `rtx`).
    name: &'static str,
    clock_rate: u32,
    channels: u16,
    fmtp: String,
    feedback: Vec<&'static str>,
}

/// The feedback the engine acts on, as `a=rtcp-fb` names it.
const NACK: &str = "nack";
const PLI: &str = "nack pli";
const FIR: &str = "ccm fir";
const TRANSPORT_CC: &str = "transport-cc";

/// What the offer says of a payload type in its `a=rtpmap`, `a=fmtp` and
/// `a=rtcp-fb` lines.
#[derive(Debug, Default, Clone)]
struct Format {
    payload_type: u8,
    /// `(name, clock rate, channels)`; `None` without a readable rtpmap.
    map: Option<(String, u32, u16)>,
    fmtp: Option<String>,
    feedback: Feedback,
}

#[derive(Debug, Default, Clone, Copy)]
struct Feedback {
    nack: bool,
    pli: bool,
    fir: bool,
    transport_cc: bool,
}

impl Feedback {
    fn or(self, other: Feedback) -> Feedback {
        Feedback {
            nack: self.nack || other.nack,
            pli: self.pli || other.pli,
            fir: self.fir || other.fir,
            transport_cc: self.transport_cc || other.transport_cc,
        }
    }

    /// The `a=rtcp-fb` values the answer writes for a codec of `kind`:
    /// NACK, PLI and FIR for video, transport-wide feedback for both.
    /// Never `goog-remb`: the engine sends no REMB.
    fn accepted(self, kind: Kind) -> Vec<&'static str> {
        let video = kind == Kind::Video;
        [
            (video && self.nack, NACK),
            (video && self.pli, PLI),
            (video && self.fir, FIR),
            (self.transport_cc, TRANSPORT_CC),
        ]
        .into_iter()
        .filter_map(|(taken, value)| taken.then_some(value))
        .collect()
    }
}

/// Reads one media section of the offer and decides its answer. `ids`:
/// the header-extension ids taken in the sections before it.
fn read_section(
    m: &MediaDescription,
    sdp: &SessionDescription,
    ids: &mut Vec<(u8, &'static str)>,
) -> Result<SectionAnswer, MediaError> {
    let mid = m
        .attribute(ATTR_KEY_MID)
        .flatten()
        .map(str::trim)
        .filter(|mid| !mid.is_empty())
        .ok_or_else(|| {
            refused(format!(
                "a media section of the offer ({}) has no a=mid",
                m.media_name.media
            ))
        })?;
    offered_token("mid", mid, MAX_MID)?;
    let proto = m.media_name.protos.join("/");
    offered_token("transport", &proto, MAX_PROTO)?;
    let kind = match m.media_name.media.as_str() {
        "audio" => Some(Kind::Audio),
        "video" => Some(Kind::Video),
        _ => None,
    };
    if kind.is_some() && !proto.eq_ignore_ascii_case(PROTO) {
        return Err(refused(format!(
            "the offer's media section {mid} uses the transport {proto}; Roost takes {PROTO} alone"
        )));
    }
    let track = track_id(m)?.unwrap_or(mid).to_owned();
    let mut read = SectionAnswer {
        section: ReceivedSection {
            mid: mid.to_owned(),
            kind,
            track,
            ..Default::default()
        },
        formats: Vec::new(),
        extmaps: Vec::new(),
        rtcp_rsize: m.has_attribute(ATTR_KEY_RTCPRSIZE),
        extmap_allow_mixed: m.has_attribute(ATTR_KEY_EXTMAP_ALLOW_MIXED),
    };
    let Some(kind) = kind else {
        return Ok(read);
    };
    if stopped(m) || !sends(m, sdp) {
        return Ok(read);
    }
    let formats = formats(m);
    let section = &mut read.section;
    let mut feedback = Feedback::default();
    for f in &formats {
        let Some(codec) = offered_codec(kind, f) else {
            continue;
        };
        let Some(name) = roost_codec(kind, &codec) else {
            continue;
        };
        let taken = f.feedback.accepted(kind);
        feedback = feedback.or(f.feedback);
        read.formats.push(Taken {
            payload_type: f.payload_type,
            name: name.split_once('/').map_or(name, |(_, n)| n),
            clock_rate: codec.clock_rate,
            channels: codec.channels,
            fmtp: codec.fmtp.clone(),
            feedback: taken,
        });
        section.codecs.push((
            f.payload_type,
            Codec {
                mime_type: name.to_owned(),
                ..codec
            },
        ));
    }
    if section.codecs.is_empty() {
        return Ok(read);
    }
    if kind == Kind::Video {
        // RTX of a codec taken, one per codec; placed where the offer put it.
        for f in &formats {
            let Some(apt) = rtx_of(f) else { continue };
            let taken = section.codecs.iter().any(|(pt, _)| *pt == apt);
            if taken && !section.rtx.iter().any(|(_, a)| *a == apt) {
                section.rtx.push((f.payload_type, apt));
            }
        }
        let order = |pt: u8| formats.iter().position(|f| f.payload_type == pt);
        for &(pt, apt) in &section.rtx {
            read.formats.push(Taken {
                payload_type: pt,
                name: "rtx",
                clock_rate: 90_000,
                channels: 0,
                fmtp: format!("apt={apt}"),
                feedback: Vec::new(),
            });
        }
        read.formats.sort_by_key(|t| order(t.payload_type));
    }
    let video = kind == Kind::Video;
    section.nack = video && feedback.nack;
    section.pli = video && feedback.pli;
    section.fir = video && feedback.fir;
    section.transport_cc = feedback.transport_cc;
    read.extmaps = extensions(m, kind, ids);
    for &(id, uri) in &read.extmaps {
        let e = &mut section.extensions;
        match uri {
            MID_URI => e.mid = Some(id),
            SDES_RTP_STREAM_ID_URI => e.rid = Some(id),
            SDES_REPAIR_RTP_STREAM_ID_URI => e.repaired_rid = Some(id),
            AUDIO_LEVEL_URI => e.audio_level = Some(id),
            TRANSPORT_CC_URI => e.transport_cc = Some(id),
            _ => {}
        }
    }
    section.rids = simulcast_rids(m)?;
    section.ssrcs = ssrcs(m);
    section.receiving = true;
    Ok(read)
}

/// Whether the offer sends in a section: its direction, else the
/// session's, else (RFC 3264) sendrecv.
fn sends(m: &MediaDescription, sdp: &SessionDescription) -> bool {
    let directions = [
        ATTR_KEY_SEND_RECV,
        ATTR_KEY_SEND_ONLY,
        ATTR_KEY_RECV_ONLY,
        ATTR_KEY_INACTIVE,
    ];
    let direction = m
        .attributes
        .iter()
        .chain(&sdp.attributes)
        .find(|a| directions.contains(&a.key.as_str()))
        .map_or(ATTR_KEY_SEND_RECV, |a| a.key.as_str());
    direction == ATTR_KEY_SEND_RECV || direction == ATTR_KEY_SEND_ONLY
}

/// The track a section carries, as `sdp::msid_tracks` reads it: the second
/// part of its first `a=msid`; else that of an `a=ssrc:<n> msid:` line.
/// `None` where it names none.
fn track_id(m: &MediaDescription) -> Result<Option<&str>, MediaError> {
    let msid = m
        .attribute(ATTR_KEY_MSID)
        .flatten()
        .and_then(|v| v.split_whitespace().nth(1));
    let track = msid.or_else(|| {
        m.attributes
            .iter()
            .filter(|a| a.key == ATTR_KEY_SSRC)
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let mut words = v.split_whitespace().skip(1);
                words.next()?.strip_prefix("msid:")?;
                words.next()
            })
    });
    if let Some(track) = track {
        offered_token("track id", track, MAX_ID)?;
    }
    Ok(track)
}

/// The payload types of a section's `m=` line, each once, in its order,
/// with what its attributes say of them. At most 128: RTP has no more.
fn formats(m: &MediaDescription) -> Vec<Format> {
    let mut index: [Option<usize>; 128] = [None; 128];
    let mut formats: Vec<Format> = Vec::new();
    for f in &m.media_name.formats {
        let Some(pt) = f.parse::<u8>().ok().filter(|pt| *pt < 128) else {
            continue;
        };
        let slot = &mut index[usize::from(pt)];
        if slot.is_none() {
            *slot = Some(formats.len());
            formats.push(Format {
                payload_type: pt,
                ..Default::default()
            });
        }
    }
    // `a=rtcp-fb:*` applies to every payload type.
    let mut every = Feedback::default();
    for a in &m.attributes {
        let Some(value) = a.value.as_deref() else {
            continue;
        };
        let (pt, rest) = value
            .trim()
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        let format = pt
            .parse::<u8>()
            .ok()
            .and_then(|pt| index.get(usize::from(pt)).copied().flatten())
            .map(|i| &mut formats[i]);
        match (a.key.as_str(), format) {
            ("rtpmap", Some(f)) if f.map.is_none() => f.map = rtpmap(rest),
            ("fmtp", Some(f)) if f.fmtp.is_none() => f.fmtp = Some(rest.to_owned()),
            ("rtcp-fb", Some(f)) => f.feedback = f.feedback.or(feedback(rest)),
            ("rtcp-fb", None) if pt == "*" => every = every.or(feedback(rest)),
            _ => {}
        }
    }
    for f in &mut formats {
        f.feedback = f.feedback.or(every);
    }
    formats
}

/// `<name>/<clock rate>[/<channels>]`.
fn rtpmap(value: &str) -> Option<(String, u32, u16)> {
    let mut parts = value.split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((name.to_owned(), clock_rate, channels))
}

/// The feedback of one `a=rtcp-fb` line (its part after the payload type).
fn feedback(value: &str) -> Feedback {
    let mut words = value.split_ascii_whitespace();
    let kind = (words.next(), words.next(), words.next());
    let mut f = Feedback::default();
    match kind {
        (Some("nack"), None, _) => f.nack = true,
        (Some("nack"), Some("pli"), None) => f.pli = true,
        (Some("ccm"), Some("fir"), None) => f.fir = true,
        (Some("transport-cc"), None, _) => f.transport_cc = true,
        _ => {}
    }
    f
}

/// A payload type as a codec of `kind`, where its rtpmap names one that is
/// not RTX and its fmtp is one the answer can repeat.
fn offered_codec(kind: Kind, f: &Format) -> Option<Codec> {
    let (name, clock_rate, channels) = f.map.as_ref()?;
    let fmtp = f.fmtp.as_deref().unwrap_or("");
    let printable = fmtp.bytes().all(|b| (b' '..=b'~').contains(&b));
    if fmtp.len() > MAX_FMTP || !printable {
        return None;
    }
    // Opus is two channels in RTP whatever it carries (RFC 7587 §7), and
    // GStreamer's rtpmap leaves the count out.
    let channels = if name.eq_ignore_ascii_case("opus") {
        2
    } else {
        *channels
    };
    let codec = codec(
        &format!("{}/{name}", media_type(kind)),
        *clock_rate,
        channels,
        fmtp,
    );
    (!is_rtx(&codec)).then_some(codec)
}

/// The mime type, as Roost's media engine spells it, of a codec of the
/// engine's that is the same codec and stream format as `offered`.
fn roost_codec(kind: Kind, offered: &Codec) -> Option<&'static str> {
    match kind {
        Kind::Audio => AUDIO_CODECS
            .iter()
            .find(|&&(mime, rate, channels, fmtp, _)| {
                same(&codec(mime, rate, channels, fmtp), offered)
            })
            .map(|c| c.0),
        Kind::Video => VIDEO_CODECS
            .iter()
            .find(|&&(mime, fmtp, _, _)| same(&codec(mime, 90_000, 0, fmtp), offered))
            .map(|c| c.0),
    }
}

/// The payload type an RTX payload type repairs (`apt`).
fn rtx_of(f: &Format) -> Option<u8> {
    let (name, clock_rate, _) = f.map.as_ref()?;
    if !name.eq_ignore_ascii_case("rtx") || *clock_rate != 90_000 {
        return None;
    }
    f.fmtp.as_deref()?.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("apt")
            .then(|| value.trim().parse().ok())?
    })
}

/// The header extensions a section takes, by the offer's ids: the mid,
/// for video the rid and repaired rid, for audio the level, and the
/// transport-wide sequence number. Each URI once and each id once; an id
/// beyond the one-byte form (1 to 14), or one the offer only receives,
/// is not taken. Nor is an id that an earlier section took for another
/// extension (`bundle`, to which the ids taken here are added): the
/// sections share one transport, which reads a packet's mid before it
/// knows the packet's section, so an id means one extension in all of
/// them (RFC 8843 §9.2).
fn extensions(
    m: &MediaDescription,
    kind: Kind,
    bundle: &mut Vec<(u8, &'static str)>,
) -> Vec<(u8, &'static str)> {
    let wanted: &[&'static str] = match kind {
        Kind::Audio => &[MID_URI, AUDIO_LEVEL_URI, TRANSPORT_CC_URI],
        Kind::Video => &[
            MID_URI,
            SDES_RTP_STREAM_ID_URI,
            SDES_REPAIR_RTP_STREAM_ID_URI,
            TRANSPORT_CC_URI,
        ],
    };
    let mut taken: Vec<(u8, &'static str)> = Vec::new();
    let maps = m.attributes.iter().filter(|a| a.key == ATTR_KEY_EXT_MAP);
    for value in maps.filter_map(|a| a.value.as_deref()) {
        let mut words = value.split_ascii_whitespace();
        let (Some(id), Some(uri)) = (words.next(), words.next()) else {
            continue;
        };
        let (id, direction) = id.split_once('/').unwrap_or((id, "sendrecv"));
        let Some(id) = id.parse::<u8>().ok().filter(|id| (1..=14).contains(id)) else {
            continue;
        };
        let Some(&uri) = wanted.iter().find(|w| **w == uri) else {
            continue;
        };
        let sent = direction == "sendrecv" || direction == "sendonly";
        let elsewhere = bundle.iter().any(|&(i, u)| i == id && u != uri);
        if sent && !elsewhere && !taken.iter().any(|&(i, u)| i == id || u == uri) {
            taken.push((id, uri));
        }
    }
    for &t in &taken {
        if !bundle.contains(&t) {
            bundle.push(t);
        }
    }
    taken
}

/// Of a simulcast offer (RFC 8853), the encodings the answer takes: each
/// stream of `a=simulcast:send` (browsers list the smallest first), its
/// first alternative, paused or not, where an `a=rid` line sends it; the
/// last [`MAX_LAYERS`] of them. A rid that is not a short token refuses the
/// offer.
fn simulcast_rids(m: &MediaDescription) -> Result<Vec<String>, MediaError> {
    let list = m
        .attributes
        .iter()
        .filter(|a| a.key == "simulcast")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let mut words = v.split_ascii_whitespace();
            words.find(|w| *w == "send")?;
            words.next()
        });
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let declared = |rid: &str| {
        m.attributes
            .iter()
            .filter(|a| a.key == "rid")
            .filter_map(|a| a.value.as_deref())
            .any(|v| {
                let mut words = v.split_ascii_whitespace();
                words.next() == Some(rid) && words.next() == Some("send")
            })
    };
    let mut rids: Vec<String> = Vec::new();
    for stream in list.split(';') {
        let rid = stream
            .split(',')
            .next()
            .map(|rid| rid.trim_start_matches('~'))
            .unwrap_or_default();
        let valid = rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if rid.is_empty() || rid.len() > MAX_RID || !valid {
            return Err(refused(format!(
                "the offer's simulcast rid {:?} is not 1 to {MAX_RID} letters, digits, - or _",
                excerpt(rid)
            )));
        }
        if declared(rid) && !rids.iter().any(|r| r == rid) {
            rids.push(rid.to_owned());
        }
    }
    let extra = rids.len().saturating_sub(MAX_LAYERS);
    rids.drain(..extra);
    Ok(rids)
}

/// The SSRCs a section names, each primary once, in the order of their
/// first `a=ssrc` line, with its RTX where an `a=ssrc-group:FID` pairs them;
/// an SSRC that is only ever an FID group's second is no primary. At most
/// `MAX_SSRCS` SSRCs and FID groups are read.
fn ssrcs(m: &MediaDescription) -> Vec<(u32, Option<u32>)> {
    let mut seen: Vec<u32> = Vec::new();
    let mut fid: Vec<(u32, u32)> = Vec::new();
    for a in &m.attributes {
        let Some(value) = a.value.as_deref() else {
            continue;
        };
        if a.key == ATTR_KEY_SSRC && seen.len() < MAX_SSRCS {
            let ssrc = value
                .split_ascii_whitespace()
                .next()
                .and_then(|s| s.parse().ok());
            if let Some(ssrc) = ssrc.filter(|s| !seen.contains(s)) {
                seen.push(ssrc);
            }
        } else if a.key == ATTR_KEY_SSRC_GROUP && fid.len() < MAX_SSRCS {
            let mut words = value.split_ascii_whitespace();
            if words.next() != Some("FID") {
                continue;
            }
            let mut ssrc = || words.next().and_then(|s| s.parse::<u32>().ok());
            if let (Some(primary), Some(rtx)) = (ssrc(), ssrc()) {
                fid.push((primary, rtx));
            }
        }
    }
    seen.iter()
        .filter(|s| !fid.iter().any(|(_, rtx)| rtx == *s))
        .map(|&s| (s, fid.iter().find(|(p, _)| *p == s).map(|&(_, rtx)| rtx)))
        .collect()
}

/// A section the answer takes media in.
fn receiving_media(read: &SectionAnswer, session: &AnswerSession, setup: &str) -> MediaDescription {
    let section = &read.section;
    let kind = section.kind.map_or("audio", media_type);
    let mut m = MediaDescription::new_jsep_media_description(kind.into(), vec![])
        .with_value_attribute(ATTR_KEY_CONNECTION_SETUP.into(), setup.into())
        .with_value_attribute(ATTR_KEY_MID.into(), section.mid.clone())
        .with_ice_credentials(session.ufrag.clone(), session.pwd.clone())
        .with_property_attribute(ATTR_KEY_RTCPMUX.into());
    if read.rtcp_rsize {
        m = m.with_property_attribute(ATTR_KEY_RTCPRSIZE.into());
    }
    if read.extmap_allow_mixed {
        m = m.with_property_attribute(ATTR_KEY_EXTMAP_ALLOW_MIXED.into());
    }
    m = m.with_property_attribute(ATTR_KEY_RECV_ONLY.into());
    for f in &read.formats {
        let pt = f.payload_type;
        m = m.with_codec(pt, f.name.into(), f.clock_rate, f.channels, f.fmtp.clone());
        for fb in &f.feedback {
            m = m.with_value_attribute("rtcp-fb".into(), format!("{pt} {fb}"));
        }
    }
    for &(id, uri) in &read.extmaps {
        m = m.with_value_attribute(ATTR_KEY_EXT_MAP.into(), format!("{id} {uri}"));
    }
    if !section.rids.is_empty() {
        for rid in &section.rids {
            m = m.with_value_attribute("rid".into(), format!("{rid} recv"));
        }
        let streams = section.rids.join(";");
        m = m.with_value_attribute("simulcast".into(), format!("recv {streams}"));
    }
    for (i, addr) in session.candidates.iter().enumerate() {
        m = m.with_candidate(host_candidate(i, addr));
    }
    m.with_property_attribute(ATTR_KEY_END_OF_CANDIDATES.into())
}

/// A section the answer rejects (RFC 3264 §6): port 0, the offer's media
/// type and transport, and of its formats the first, which says nothing
/// here but must be there.
fn rejected_media(m: &MediaDescription, mid: &str) -> MediaDescription {
    let format = m
        .media_name
        .formats
        .iter()
        .find(|f| f.len() <= MAX_PROTO && f.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| "0".to_owned(), Clone::clone);
    MediaDescription {
        media_name: MediaName {
            media: m.media_name.media.clone(),
            port: RangedPort {
                value: 0,
                range: None,
            },
            protos: m.media_name.protos.clone(),
            formats: vec![format],
        },
        media_title: None,
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: "IP4".into(),
            address: Some(Address {
                address: "0.0.0.0".into(),
                ttl: None,
                range: None,
            }),
        }),
        bandwidth: vec![],
        encryption_key: None,
        attributes: vec![],
    }
    .with_value_attribute(ATTR_KEY_MID.into(), mid.into())
    .with_property_attribute(ATTR_KEY_INACTIVE.into())
}

#[cfg(test)]
mod tests;
