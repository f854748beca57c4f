//! The subscriber offers Roost writes itself (ADR 0020, step 4): the SDP of
//! a connection on which the engine only sends, built with `rtc-sdp`'s
//! types, and the reading of the answer to it. The answer gives what the
//! transport needs: the client's ICE credentials and certificate
//! fingerprint, the DTLS role this side takes, and for each track the
//! payload type and header-extension ids its packets are written with.
//!
//! A section offers what a [`super::Peer`] offers for a sender of the same
//! codec (`Peer::offer_every_codec`): the track's own codec first, then the
//! other codecs of its kind, with the media engine's payload types,
//! feedback and header-extension ids (`codecs`), so a client sees the same
//! codecs whichever side writes the offer. Nothing here reads a clock: the
//! session id and version come in.

use std::io::Cursor;
use std::net::SocketAddr;

use rtc::sdp::description::media::MediaDescription;
use rtc::sdp::description::session::{
    Origin, TimeDescription, ATTR_KEY_CONNECTION_SETUP, ATTR_KEY_END_OF_CANDIDATES,
    ATTR_KEY_EXTMAP_ALLOW_MIXED, ATTR_KEY_EXT_MAP, ATTR_KEY_GROUP, ATTR_KEY_ICELITE,
    ATTR_KEY_INACTIVE, ATTR_KEY_MID, ATTR_KEY_MSID, ATTR_KEY_RTCPMUX, ATTR_KEY_RTCPRSIZE,
    ATTR_KEY_SEND_ONLY, ATTR_KEY_SSRC_GROUP,
};
use rtc::sdp::extmap::{
    ExtMap, ABS_SEND_TIME_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI,
    TRANSPORT_CC_URI,
};
use rtc::sdp::SessionDescription;

use super::codecs::{
    AUDIO_CODECS, AUDIO_LEVEL_URI, MID_URI, OTHER_AUDIO_CODECS, OTHER_VIDEO_CODECS, VIDEO_CODECS,
    VIDEO_FEEDBACK,
};
use super::dtls_srtp::DtlsRole;
use super::rtp_writer::StreamHeader;
use super::{Codec, Kind};
use crate::MediaError;

/// The header extensions each section offers, with the ids the media
/// engine gives them (`codecs::media_engine` registers audio level, then
/// mid, then the stack's default set).
const AUDIO_EXTENSIONS: &[(u8, &str)] =
    &[(1, AUDIO_LEVEL_URI), (2, MID_URI), (5, TRANSPORT_CC_URI)];
const VIDEO_EXTENSIONS: &[(u8, &str)] = &[
    (2, MID_URI),
    (3, SDES_RTP_STREAM_ID_URI),
    (4, SDES_REPAIR_RTP_STREAM_ID_URI),
    (5, TRANSPORT_CC_URI),
    // For clients without transport-wide feedback: they estimate from the
    // send time and report it in REMB.
    (6, ABS_SEND_TIME_URI),
];
/// Feedback the stack's default interceptors add: transport-cc to every
/// codec, NACK and PLI to RTX too.
const TRANSPORT_CC: (&str, &str) = ("transport-cc", "");
const RTX_FEEDBACK: &[(&str, &str)] = &[("nack", ""), ("nack", "pli")];

/// A subscriber connection's offer as the engine describes it.
#[derive(Debug, Clone)]
pub struct Session {
    /// `o=`'s session id, the same in every offer of a connection (JSEP
    /// wants 63 bits: the top one is cleared).
    pub id: u64,
    /// `o=`'s version: higher with each offer of the connection.
    pub version: u64,
    /// This side's ICE credentials (they name the connection in the demux).
    pub ufrag: String,
    pub pwd: String,
    /// This side's SHA-256 fingerprint, as `Identity::fingerprint` gives it.
    pub fingerprint: String,
    /// The engine's UDP port at each advertised address: host candidates.
    pub candidates: Vec<SocketAddr>,
    /// In the order of every earlier offer of the connection, new ones last.
    pub sections: Vec<Section>,
}

/// One media section of an offer.
#[derive(Debug, Clone)]
pub struct Section {
    /// 1 to 16 visible ASCII characters: it goes into every packet.
    pub mid: String,
    pub kind: Kind,
    /// The track sent in it; `None` for a section no longer in use, kept
    /// (inactive) until a new track takes it.
    pub sender: Option<Sender>,
}

/// A track this side sends in a section.
#[derive(Debug, Clone)]
pub struct Sender {
    pub ssrc: u32,
    /// The SSRC of its retransmission stream (RFC 4588); video only.
    pub rtx_ssrc: Option<u32>,
    /// `a=msid`'s stream and track ids.
    pub stream_id: String,
    pub track_id: String,
    pub cname: String,
    /// The codec of the forwarded track.
    pub codec: Codec,
}

/// An offer made, and what its answer is read against.
#[derive(Debug, Clone)]
pub struct Offer {
    pub sdp: String,
    sections: Vec<Offered>,
}

#[derive(Debug, Clone)]
struct Offered {
    mid: String,
    kind: Kind,
    /// The codecs offered: primaries, then (video) their RTX.
    formats: Vec<Format>,
    /// The sender's codec as offered, where the section has a sender.
    own: Option<Format>,
}

/// A codec under its payload type.
#[derive(Debug, Clone)]
struct Format {
    payload_type: u8,
    codec: Codec,
}

/// What the answer to an offer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub ufrag: String,
    pub pwd: String,
    /// The client's SHA-256 fingerprint, upper-case hex pairs.
    pub fingerprint: String,
    /// This side's end of the DTLS handshake.
    pub role: DtlsRole,
    /// In the offer's order.
    pub sections: Vec<AnsweredSection>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnsweredSection {
    pub mid: String,
    /// False where the answer rejected the section (port 0).
    pub accepted: bool,
    /// How the sender's packets are written; `None` for a section without
    /// a sender, rejected, or where the client kept none of the track's
    /// codec (it cannot play it).
    pub stream: Option<StreamHeader>,
    /// The payload type of its retransmissions, where RTX was kept.
    pub rtx_payload_type: Option<u8>,
    /// The feedback the answer kept for the sender's codec.
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
}

impl Offer {
    /// Writes the offer of `session`. Errors name what the engine gave
    /// wrong: a value that would break the SDP, or a codec Roost does not
    /// offer.
    pub fn new(session: &Session) -> Result<Offer, MediaError> {
        if session.sections.is_empty() || session.candidates.is_empty() {
            let why = "an offer needs media sections and candidates";
            return Err(MediaError::Config(why.into()));
        }
        token("ICE ufrag", &session.ufrag, 256)?;
        token("ICE password", &session.pwd, 256)?;
        token("fingerprint", &session.fingerprint, 256)?;
        let mut offered: Vec<Offered> = Vec::with_capacity(session.sections.len());
        for section in &session.sections {
            token("mid", &section.mid, 16)?;
            if offered.iter().any(|o| o.mid == section.mid) {
                return Err(MediaError::Config(format!("mid {} twice", section.mid)));
            }
            let mut own = None;
            if let Some(s) = &section.sender {
                // RFC 8830 says 64 characters, but the engine's track ids
                // (the publisher's stream and its own track id) are longer,
                // and browsers take them.
                token("stream id", &s.stream_id, 256)?;
                token("track id", &s.track_id, 256)?;
                token("cname", &s.cname, 256)?;
                own = Some(registered(section.kind, &s.codec).ok_or_else(|| {
                    MediaError::Config(format!("{} is not offered", s.codec.mime_type))
                })?);
            }
            offered.push(Offered {
                mid: section.mid.clone(),
                kind: section.kind,
                formats: formats(section.kind, own.as_ref()),
                own,
            });
        }
        // Every section, an unused one too, is in the BUNDLE: they all
        // share the connection's one transport.
        let mids: Vec<&str> = offered.iter().map(|o| o.mid.as_str()).collect();
        let mut sdp = engine_side(session.id, session.version, &session.fingerprint)
            .with_property_attribute(ATTR_KEY_EXTMAP_ALLOW_MIXED.into())
            .with_value_attribute(ATTR_KEY_GROUP.into(), format!("BUNDLE {}", mids.join(" ")));
        for (section, o) in session.sections.iter().zip(&offered) {
            sdp = sdp.with_media(media(session, section, o));
        }
        Ok(Offer {
            sdp: sdp.marshal(),
            sections: offered,
        })
    }
}

/// The session part every SDP of the engine's side starts with: `o=`
/// (JSEP's 63-bit session id, and the version), this side's certificate
/// fingerprint, and ICE-lite.
pub(super) fn engine_side(id: u64, version: u64, fingerprint: &str) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: "-".into(),
            session_id: id & (u64::MAX >> 1),
            session_version: version,
            network_type: "IN".into(),
            address_type: "IP4".into(),
            unicast_address: "0.0.0.0".into(),
        },
        session_name: "-".into(),
        time_descriptions: vec![TimeDescription::default()],
        ..Default::default()
    }
    .with_fingerprint("sha-256".into(), fingerprint.to_owned())
    .with_property_attribute(ATTR_KEY_ICELITE.into())
}

/// Refuses a value that is empty, longer than `max` or not visible ASCII:
/// a space or a line break in it would change the SDP around it.
pub(super) fn token(what: &str, value: &str, max: usize) -> Result<(), MediaError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MediaError::Config(format!(
            "{what} {value:?} is not 1 to {max} visible ASCII characters"
        )));
    }
    Ok(())
}

pub(super) fn media_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Audio => "audio",
        Kind::Video => "video",
    }
}

/// One `m=` section. An unused section keeps its codecs, port and place in
/// the BUNDLE and says `a=inactive` rather than taking port 0: port 0 would
/// stop the client's transceiver for good (RFC 8829 §5.2.2), so the section
/// could not carry a track again, whereas an inactive one takes the next
/// track with a change of direction, as RFC 8829 allows.
fn media(session: &Session, section: &Section, offered: &Offered) -> MediaDescription {
    let kind = media_type(section.kind);
    let mut m = MediaDescription::new_jsep_media_description(kind.into(), vec![])
        .with_value_attribute(ATTR_KEY_CONNECTION_SETUP.into(), "actpass".into())
        .with_value_attribute(ATTR_KEY_MID.into(), section.mid.clone())
        .with_ice_credentials(session.ufrag.clone(), session.pwd.clone())
        .with_property_attribute(ATTR_KEY_RTCPMUX.into())
        .with_property_attribute(ATTR_KEY_RTCPRSIZE.into());
    for f in &offered.formats {
        let (payload_type, codec) = (f.payload_type, &f.codec);
        let name = codec.mime_type.split_once('/').map_or("", |(_, name)| name);
        let (rate, channels, fmtp) = (codec.clock_rate, codec.channels, codec.fmtp.clone());
        m = m.with_codec(payload_type, name.into(), rate, channels, fmtp);
        let feedback = match section.kind {
            Kind::Audio => &[][..],
            Kind::Video if is_rtx(codec) => RTX_FEEDBACK,
            Kind::Video => VIDEO_FEEDBACK,
        };
        for (typ, parameter) in feedback.iter().chain([&TRANSPORT_CC]) {
            let value = format!("{payload_type} {typ} {parameter}");
            m = m.with_value_attribute("rtcp-fb".into(), value.trim_end().into());
        }
    }
    let extensions = match section.kind {
        Kind::Audio => AUDIO_EXTENSIONS,
        Kind::Video => VIDEO_EXTENSIONS,
    };
    for (id, uri) in extensions {
        m = m.with_value_attribute(ATTR_KEY_EXT_MAP.into(), format!("{id} {uri}"));
    }
    if let Some(s) = &section.sender {
        let msid = format!("{} {}", s.stream_id, s.track_id);
        m = m.with_value_attribute(ATTR_KEY_MSID.into(), msid);
        let rtx = s.rtx_ssrc.filter(|_| section.kind == Kind::Video);
        if let Some(rtx) = rtx {
            let group = format!("FID {} {rtx}", s.ssrc);
            m = m.with_value_attribute(ATTR_KEY_SSRC_GROUP.into(), group);
        }
        for ssrc in std::iter::once(s.ssrc).chain(rtx) {
            let (cname, stream, track) = (&s.cname, &s.stream_id, &s.track_id);
            m = m.with_media_source(ssrc, cname.clone(), stream.clone(), track.clone());
        }
    }
    let direction = match section.sender {
        Some(_) => ATTR_KEY_SEND_ONLY,
        None => ATTR_KEY_INACTIVE,
    };
    m = m.with_property_attribute(direction.into());
    for (i, addr) in session.candidates.iter().enumerate() {
        m = m.with_candidate(host_candidate(i, addr));
    }
    m.with_property_attribute(ATTR_KEY_END_OF_CANDIDATES.into())
}

/// The `a=candidate` value of the `i`th advertised address (from 0). RFC
/// 8445 §5.1.2: host candidates of component 1, the first address
/// preferred, a foundation per address.
pub(super) fn host_candidate(i: usize, addr: &SocketAddr) -> String {
    let preference = 65_535u32.saturating_sub(u32::try_from(i).unwrap_or(u32::MAX));
    let priority = (126 << 24) | (preference << 8) | 255;
    let (ip, port) = (addr.ip(), addr.port());
    format!("{} 1 udp {priority} {ip} {port} typ host", i + 1)
}

pub(super) fn codec(mime_type: &str, clock_rate: u32, channels: u16, fmtp: &str) -> Codec {
    Codec {
        mime_type: mime_type.into(),
        clock_rate,
        channels,
        fmtp: fmtp.into(),
    }
}

pub(super) fn is_rtx(codec: &Codec) -> bool {
    codec.mime_type.eq_ignore_ascii_case("video/rtx")
}

/// The codecs a section offers: the sender's own first and the others of
/// its kind after it, in `codecs`' order, so each codec appears once; for
/// video, each one's RTX after them all, in the same order.
fn formats(kind: Kind, own: Option<&Format>) -> Vec<Format> {
    let others = match kind {
        Kind::Audio => OTHER_AUDIO_CODECS,
        Kind::Video => OTHER_VIDEO_CODECS,
    };
    let mut formats: Vec<Format> = own.into_iter().cloned().collect();
    for &(mime_type, clock_rate, channels, fmtp) in others {
        if !own.is_some_and(|o| o.codec.mime_type.eq_ignore_ascii_case(mime_type)) {
            formats.extend(registered(
                kind,
                &codec(mime_type, clock_rate, channels, fmtp),
            ));
        }
    }
    let rtx: Vec<Format> = formats
        .iter()
        .filter(|_| kind == Kind::Video)
        .filter_map(|f| {
            let &(_, _, _, rtx) = VIDEO_CODECS.iter().find(|c| c.2 == f.payload_type)?;
            let apt = format!("apt={}", f.payload_type);
            let codec = codec("video/rtx", 90_000, 0, &apt);
            Some(Format {
                payload_type: rtx,
                codec,
            })
        })
        .collect();
    formats.extend(rtx);
    formats
}

/// The media engine's entry for `codec`: the first of the same codec and
/// stream format, else, as the stack falls back, the first of its mime type.
fn registered(kind: Kind, codec: &Codec) -> Option<Format> {
    let table: Vec<Format> = match kind {
        Kind::Audio => AUDIO_CODECS
            .iter()
            .map(|&(mime, rate, channels, fmtp, payload_type)| Format {
                payload_type,
                codec: self::codec(mime, rate, channels, fmtp),
            })
            .collect(),
        Kind::Video => VIDEO_CODECS
            .iter()
            .map(|&(mime, fmtp, payload_type, _)| Format {
                payload_type,
                codec: self::codec(mime, 90_000, 0, fmtp),
            })
            .collect(),
    };
    let exact = table.iter().find(|f| same(&f.codec, codec));
    let named = || {
        let mime_type = &codec.mime_type;
        table
            .iter()
            .find(|f| f.codec.mime_type.eq_ignore_ascii_case(mime_type))
    };
    exact.or_else(named).cloned()
}

/// The same codec: mime type, clock rate and channels (none means one).
fn same_codec(a: &Codec, b: &Codec) -> bool {
    a.mime_type.eq_ignore_ascii_case(&b.mime_type)
        && a.clock_rate == b.clock_rate
        && a.channels.max(1) == b.channels.max(1)
}

/// The same codec and stream format: for H.264 the packetization mode and
/// the profile (the first two bytes of profile-level-id; the level may
/// differ), as the stack matches them, with RFC 6184's defaults where one
/// is absent; for VP9 and AV1 the profile. Other parameters (Opus's, say)
/// say what a receiver prefers, not what a stream is.
pub(super) fn same(a: &Codec, b: &Codec) -> bool {
    let param = |fmtp: &str, key: &str, default: &str| {
        let value = fmtp.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        });
        value.unwrap_or(default).to_ascii_lowercase()
    };
    let agree =
        |key: &str, default: &str| param(&a.fmtp, key, default) == param(&b.fmtp, key, default);
    let is = |mime_type: &str| a.mime_type.eq_ignore_ascii_case(mime_type);
    let format = if is("video/H264") {
        let profile = |f: &str| {
            param(f, "profile-level-id", "42000a")
                .get(..4)
                .map(str::to_owned)
        };
        let (pa, pb) = (profile(&a.fmtp), profile(&b.fmtp));
        agree("packetization-mode", "0") && pa.is_some() && pa == pb
    } else if is("video/VP9") {
        agree("profile-id", "0")
    } else if is("video/AV1") {
        agree("profile", "0")
    } else {
        true
    };
    same_codec(a, b) && format
}

/// Reads the answer to `offer`. It must answer that offer's media sections
/// in its order (as `sdp::check_answer` wants of every answer), bundle
/// them, carry ICE credentials, a SHA-256 fingerprint and a DTLS role, and
/// keep the offer's payload types.
pub fn read_answer(answer: &str, offer: &Offer) -> Result<Answered, MediaError> {
    let mismatch = |why: &str| MediaError::Mismatch(why.to_owned());
    let sdp = SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes()))
        .map_err(|e| MediaError::Sdp(e.to_string()))?;
    let media = &sdp.media_descriptions;
    if media.len() != offer.sections.len() {
        return Err(MediaError::Mismatch(format!(
            "the offer has {} media sections, the answer {}",
            offer.sections.len(),
            media.len()
        )));
    }
    let pairs = || media.iter().zip(&offer.sections);
    let same_sections = pairs().all(|(m, o)| {
        let mid = m.attribute(ATTR_KEY_MID).flatten().map(str::trim);
        m.media_name.media == media_type(o.kind) && mid == Some(o.mid.as_str())
    });
    if !same_sections {
        return Err(mismatch(
            "the answer's media sections are not the offer's (a=mid)",
        ));
    }
    let accepted = |m: &MediaDescription| m.media_name.port.value != 0;
    // The transport's attributes: the first accepted section's, then the
    // session's (a section's override the session's).
    let transport = |key: &'static str| {
        let first = media.iter().find(|m| accepted(m));
        let attributes = first.map_or(&[][..], |m| &m.attributes[..]);
        attributes
            .iter()
            .chain(&sdp.attributes)
            .filter(move |a| a.key == key)
            .filter_map(|a| a.value.as_deref().map(str::trim))
    };
    let ufrag = transport("ice-ufrag")
        .next()
        .ok_or_else(|| mismatch("no a=ice-ufrag"))?;
    let pwd = transport("ice-pwd")
        .next()
        .ok_or_else(|| mismatch("no a=ice-pwd"))?;
    let fingerprint = transport("fingerprint")
        .find_map(|f| {
            let (hash, value) = f.split_once(' ')?;
            hash.eq_ignore_ascii_case("sha-256").then(|| value.trim())
        })
        .ok_or_else(|| mismatch("no a=fingerprint of sha-256"))?;
    let hex = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if fingerprint.split(':').count() != 32 || !fingerprint.split(':').all(hex) {
        return Err(mismatch(
            "the answer's a=fingerprint is not a SHA-256 fingerprint",
        ));
    }
    let role = match transport(ATTR_KEY_CONNECTION_SETUP).next() {
        Some("active") => DtlsRole::Server,
        Some("passive") => DtlsRole::Client,
        _ => return Err(mismatch("an answer's a=setup must be active or passive")),
    };
    let bundled: Vec<&str> = sdp
        .attributes
        .iter()
        .filter(|a| a.key == ATTR_KEY_GROUP)
        .filter_map(|a| a.value.as_deref()?.strip_prefix("BUNDLE"))
        .flat_map(str::split_whitespace)
        .collect();
    let live = || pairs().filter(|(m, _)| accepted(m));
    if live().count() > 1 && live().any(|(_, o)| !bundled.contains(&o.mid.as_str())) {
        return Err(mismatch(
            "the answer does not bundle its media sections: they share one transport",
        ));
    }
    Ok(Answered {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
        fingerprint: fingerprint.to_ascii_uppercase(),
        role,
        sections: pairs()
            .map(|(m, o)| answered_section(m, o))
            .collect::<Result<_, _>>()?,
    })
}

/// What an answer's section says of what `offered` offered. A track is sent
/// with the payload type the offer gave its codec (each codec is offered
/// once in a section), where the answer keeps it as that codec.
fn answered_section(
    m: &MediaDescription,
    offered: &Offered,
) -> Result<AnsweredSection, MediaError> {
    let mut section = AnsweredSection {
        mid: offered.mid.clone(),
        accepted: m.media_name.port.value != 0,
        ..Default::default()
    };
    if !section.accepted {
        return Ok(section);
    }
    let mid = &offered.mid;
    let codecs = m.codecs();
    // Each format the answer kept, as it describes it (rtpmap, fmtp), or as
    // the offer did where it says nothing. An answer keeps the offer's
    // numbers and what they stand for (RFC 3264 §6.1).
    let mut kept: Vec<(u8, Codec)> = Vec::new();
    for f in &m.media_name.formats {
        let pt: Option<u8> = f.parse().ok();
        let Some(o) = offered.formats.iter().find(|o| Some(o.payload_type) == pt) else {
            return Err(MediaError::Mismatch(format!(
                "the answer's section {mid} takes payload type {f:.8}, which the offer did not give it"
            )));
        };
        let said = codecs.get(&o.payload_type);
        let mut codec = o.codec.clone();
        if let Some(c) = said.filter(|c| !c.name.is_empty()) {
            codec.mime_type = format!("{}/{}", media_type(offered.kind), c.name);
            codec.clock_rate = c.clock_rate;
            codec.channels = c.encoding_parameters.parse().unwrap_or(0);
        }
        if let Some(c) = said.filter(|c| !c.fmtp.is_empty()) {
            codec.fmtp = c.fmtp.clone();
        }
        if !same_codec(&codec, &o.codec) {
            return Err(MediaError::Mismatch(format!(
                "the answer's section {mid} gives payload type {f:.8} another codec than the offer's"
            )));
        }
        kept.push((o.payload_type, codec));
    }
    let kept = |f: &Format| {
        kept.iter()
            .find(|(pt, _)| *pt == f.payload_type)
            .map(|(_, c)| c)
    };
    // A client that cannot play the track's codec (Firefox without H.264,
    // say) keeps the section without it: the track has no stream there,
    // and the connection's other tracks go on.
    let playable = |own: &&Format| kept(own).is_some_and(|c| same(c, &own.codec));
    let Some(own) = offered.own.as_ref().filter(playable) else {
        return Ok(section);
    };
    let feedback = codecs
        .get(&own.payload_type)
        .map_or(&[][..], |c| &c.rtcp_feedback[..]);
    let fb = |kind: &str| {
        feedback
            .iter()
            .any(|f| f.split_whitespace().eq(kind.split_whitespace()))
    };
    (section.nack, section.pli, section.fir) = (fb("nack"), fb("nack pli"), fb("ccm fir"));
    let apt = format!("apt={}", own.payload_type);
    section.rtx_payload_type = offered
        .formats
        .iter()
        .filter(|f| is_rtx(&f.codec) && f.codec.fmtp == apt)
        .find(|f| kept(f).is_some_and(|c| c.fmtp.trim() == apt))
        .map(|f| f.payload_type);
    // An id beyond the one-byte form (1 to 14) is not written: such an
    // extension counts as not kept.
    let extension = |uri: &str| {
        let mut maps = m.attributes.iter().filter(|a| a.key == ATTR_KEY_EXT_MAP);
        maps.find_map(|a| {
            let e = ExtMap::unmarshal(&mut Cursor::new(a.to_string())).ok()?;
            let id = u8::try_from(e.value)
                .ok()
                .filter(|id| (1..=14).contains(id))?;
            (e.uri?.as_str() == uri).then_some(id)
        })
    };
    section.stream = Some(StreamHeader {
        payload_type: own.payload_type,
        mid: extension(MID_URI).map(|id| (id, offered.mid.as_bytes().to_vec())),
        audio_level: extension(AUDIO_LEVEL_URI).filter(|_| offered.kind == Kind::Audio),
        transport_cc: extension(TRANSPORT_CC_URI),
        // Only where no transport-wide number goes: a browser keeps both,
        // and needs the send time for nothing then.
        abs_send_time: extension(ABS_SEND_TIME_URI)
            .filter(|_| extension(TRANSPORT_CC_URI).is_none()),
    });
    Ok(section)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;
    use crate::peer::sdp::sdp_value;
    use crate::peer::{Peer, PeerSetup};

    const FINGERPRINT: &str = "E3:DE:71:2A:FF:D9:EB:C7:63:2A:96:41:E9:53:9A:7F:\
                               BF:B4:55:E7:D4:CA:27:90:54:DF:93:9A:4B:5C:9D:15";

    fn codec(mime_type: &str, fmtp: &str) -> Codec {
        Codec {
            mime_type: mime_type.into(),
            clock_rate: 90_000,
            channels: 0,
            fmtp: fmtp.into(),
        }
    }

    fn h264() -> Codec {
        let fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        codec("video/H264", fmtp)
    }

    /// A section with a track, as the engine adds one (RTX for video).
    fn live(mid: &str, kind: Kind, ssrc: u32, codec: Codec) -> Section {
        let sender = Sender {
            ssrc,
            rtx_ssrc: (kind == Kind::Video).then_some(ssrc + 1),
            stream_id: format!("s{ssrc}"),
            track_id: format!("t{ssrc}"),
            cname: format!("s{ssrc}"),
            codec,
        };
        Section {
            mid: mid.into(),
            kind,
            sender: Some(sender),
        }
    }

    fn unused(mid: &str) -> Section {
        Section {
            mid: mid.into(),
            kind: Kind::Video,
            sender: None,
        }
    }

    fn session(version: u64, sections: Vec<Section>) -> Session {
        Session {
            id: 42,
            version,
            ufrag: "engineufrag00000".into(),
            pwd: "enginepassword00000000000000000a".into(),
            fingerprint: FINGERPRINT.into(),
            candidates: vec!["127.0.0.1:7882".parse().unwrap()],
            sections,
        }
    }

    fn client() -> Peer {
        let setup = PeerSetup::client("127.0.0.1:40000".parse().unwrap());
        Peer::new(&setup, Instant::now()).unwrap()
    }

    /// The stack's own client answers `offer`: its answer, and that answer read here.
    fn answered(client: &mut Peer, offer: &Offer) -> (String, Answered) {
        let answer = client
            .answer(offer.sdp.clone(), Instant::now())
            .unwrap_or_else(|e| panic!("the client refused the offer: {e}\n{}", offer.sdp));
        let read = read_answer(&answer, offer).unwrap_or_else(|e| panic!("{e}\n{answer}"));
        (answer, read)
    }

    fn stream(payload_type: u8, mid: &str, audio_level: Option<u8>) -> Option<StreamHeader> {
        Some(StreamHeader {
            payload_type,
            mid: Some((2, mid.as_bytes().to_vec())),
            audio_level,
            transport_cc: Some(5),
            abs_send_time: None,
        })
    }

    fn parse(sdp: &str) -> SessionDescription {
        SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).expect("an SDP")
    }

    #[test]
    fn the_stacks_client_takes_an_opus_and_a_vp8_track() {
        let (offer, answer) = offered_and_answered();
        let read = read_answer(answer, offer).unwrap();
        assert_eq!(Some(read.ufrag.as_str()), sdp_value(answer, "a=ice-ufrag:"));
        assert_eq!(Some(read.pwd.as_str()), sdp_value(answer, "a=ice-pwd:"));
        let theirs = sdp_value(answer, "a=fingerprint:sha-256 ").unwrap();
        assert_eq!(read.fingerprint, theirs.to_ascii_uppercase());
        assert_ne!(read.fingerprint, FINGERPRINT);
        // It answers `passive`, so Roost is the DTLS client (see below for `active`).
        assert_eq!(sdp_value(answer, "a=setup:"), Some("passive"));
        assert_eq!(read.role, DtlsRole::Client);
        let [audio, video] = &read.sections[..] else {
            panic!("two sections: {read:?}");
        };
        assert!(audio.accepted && video.accepted);
        assert_eq!(audio.stream, stream(111, "0", Some(1)));
        assert_eq!(audio.rtx_payload_type, None);
        assert!(!audio.nack && !audio.pli && !audio.fir);
        assert_eq!(video.stream, stream(96, "1", None));
        assert_eq!(video.rtx_payload_type, Some(97));
        assert!(video.nack && video.pli && video.fir);
    }

    #[test]
    fn a_renegotiation_recycles_a_section_and_adds_h264_vp9_and_av1() {
        let audio = live("0", Kind::Audio, 1000, crate::client::codec(Kind::Audio));
        let vp8 = live("1", Kind::Video, 2000, crate::client::codec(Kind::Video));
        let vp9 = || codec("video/VP9", "profile-id=0");
        let mut client = client();
        let first = Offer::new(&session(1, vec![audio.clone(), vp8])).unwrap();
        answered(&mut client, &first);

        // The VP8 track ends; its section stays, unused, beside three new ones.
        let mut sections = vec![
            audio,
            unused("1"),
            live("2", Kind::Video, 3000, h264()),
            live("3", Kind::Video, 4000, vp9()),
            live("4", Kind::Video, 5000, codec("video/AV1", "")),
        ];
        let second = Offer::new(&session(2, sections.clone())).unwrap();
        let origin = parse(&second.sdp).origin;
        assert_eq!((origin.session_id, origin.session_version), (42, 2));
        let (_, read) = answered(&mut client, &second);
        let got: Vec<_> = read
            .sections
            .iter()
            .map(|s| (s.accepted, s.stream.clone(), s.rtx_payload_type))
            .collect();
        assert_eq!(
            got,
            [
                (true, stream(111, "0", Some(1)), None),
                (true, None, None),
                (true, stream(125, "2", None), Some(105)),
                (true, stream(98, "3", None), Some(99)),
                (true, stream(41, "4", None), Some(106)),
            ]
        );

        // A new track takes the unused section.
        sections[1] = live("1", Kind::Video, 6000, vp9());
        let third = Offer::new(&session(3, sections)).unwrap();
        let (_, read) = answered(&mut client, &third);
        assert_eq!(read.sections[1].stream, stream(98, "1", None));
    }

    /// A section's codecs (primaries in order, RTX in any), with their
    /// payload types, feedback and parameters, its header extensions and
    /// its streams, as parsed.
    /// A section as compared: its formats, and its lines of these keys
    /// (leaving out those that hold `leave_out`), and its codecs.
    fn described<'a>(
        m: &'a MediaDescription,
        leave_out: &'a str,
    ) -> impl PartialEq + std::fmt::Debug + 'a {
        let codecs = m.codecs();
        let rtx = |f: &&String| {
            let codec = f.parse().ok().and_then(|pt| codecs.get(&pt));
            codec.is_some_and(|c| c.name == "rtx")
        };
        let (mut rtx, primaries): (Vec<&String>, Vec<_>) =
            m.media_name.formats.iter().partition(rtx);
        rtx.sort();
        let keys = [
            "extmap",
            "msid",
            "ssrc",
            "ssrc-group",
            "rtcp-mux",
            "rtcp-rsize",
            "mid",
        ];
        let mut lines: Vec<String> = m
            .attributes
            .iter()
            .filter(|a| keys.contains(&a.key.as_str()))
            .map(|a| a.to_string())
            .filter(|l| leave_out.is_empty() || !l.contains(leave_out))
            .collect();
        lines.sort();
        (primaries, rtx, lines, codecs)
    }

    #[test]
    fn each_section_offers_what_todays_peer_offers_for_its_track() {
        let sections = vec![
            live("0", Kind::Audio, 1000, crate::client::codec(Kind::Audio)),
            live("1", Kind::Video, 2000, crate::client::codec(Kind::Video)),
            live("2", Kind::Video, 3000, h264()),
            live("3", Kind::Video, 4000, codec("video/VP9", "profile-id=0")),
            live("4", Kind::Video, 5000, codec("video/AV1", "")),
        ];
        let ours = session(1, sections.clone());
        // The stack's own peer, offering the same senders (a client's: ICE
        // credentials of its own, and no ICE-lite).
        let setup = PeerSetup::client("127.0.0.1:7882".parse().unwrap());
        let now = Instant::now();
        let mut peer = Peer::new(&setup, now).unwrap();
        for section in &sections {
            let s = section.sender.as_ref().unwrap();
            peer.add_sender(
                section.kind,
                &s.codec,
                s.ssrc,
                s.rtx_ssrc,
                &s.stream_id,
                &s.track_id,
            )
            .unwrap();
        }
        let today = parse(&peer.offer(now).unwrap().unwrap());
        let ours = parse(&Offer::new(&ours).unwrap().sdp);
        for key in ["extmap-allow-mixed", "group"] {
            assert_eq!(ours.attribute(key), today.attribute(key), "a={key}");
        }
        assert!(ours.has_attribute("ice-lite"));
        assert_eq!(
            ours.media_descriptions.len(),
            today.media_descriptions.len()
        );
        for (o, t) in ours
            .media_descriptions
            .iter()
            .zip(&today.media_descriptions)
        {
            assert_eq!(o.media_name.media, t.media_name.media);
            // Roost's video sections offer the send time as well, for
            // clients that estimate from it and send REMB.
            let sends_time = o.attributes.iter().any(|a| {
                a.key == "extmap"
                    && a.value
                        .as_deref()
                        .is_some_and(|v| v.contains("abs-send-time"))
            });
            assert_eq!(sends_time, o.media_name.media == "video");
            assert_eq!(
                described(o, "abs-send-time"),
                described(t, ""),
                "mid {:?}",
                o.attribute("mid")
            );
            assert_eq!(o.attribute("setup"), t.attribute("setup"), "a=setup");
            assert_eq!(o.attribute("ice-ufrag"), Some(Some("engineufrag00000")));
            // What differs: the direction (today's says sendrecv, though
            // nothing is received) and the candidates, which end here.
            assert!(o.has_attribute("sendonly") && o.has_attribute("end-of-candidates"));
            let candidates: Vec<_> = o
                .attributes
                .iter()
                .filter(|a| a.is_ice_candidate())
                .collect();
            assert_eq!(candidates.len(), 1, "{candidates:?}");
        }
    }

    /// An offer of an Opus and a VP8 track, and the stack's client's answer.
    fn offered_and_answered() -> &'static (Offer, String) {
        static BOTH: OnceLock<(Offer, String)> = OnceLock::new();
        BOTH.get_or_init(|| {
            let sections = vec![
                live("0", Kind::Audio, 1000, crate::client::codec(Kind::Audio)),
                live("1", Kind::Video, 2000, crate::client::codec(Kind::Video)),
            ];
            let offer = Offer::new(&session(1, sections)).unwrap();
            let (answer, _) = answered(&mut client(), &offer);
            (offer, answer)
        })
    }

    #[test]
    fn hostile_answers_are_refused_with_a_reason() {
        let (offer, answer) = offered_and_answered();
        let without = |prefix: &str| {
            let kept: Vec<&str> = answer.lines().filter(|l| !l.starts_with(prefix)).collect();
            kept.join("\r\n")
        };
        let (head, rest) = answer.split_at(answer.find("m=audio").unwrap());
        let (audio, video) = rest.split_at(rest.find("m=video").unwrap());
        let many = format!(
            "{answer}{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x\r\n".repeat(100_000)
        );
        let cases = [
            (String::new(), "session description"),
            ("garbage".into(), "session description"),
            (
                "\u{0}v=0\r\n\u{fffd}\u{202e}o=\u{10ffff}\r\nm=\u{0}".into(),
                "session description",
            ),
            (answer.chars().rev().collect(), "session description"),
            (without("a=fingerprint:"), "fingerprint"),
            (
                answer.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 zz"),
                "SHA-256",
            ),
            (without("a=ice-ufrag:"), "ice-ufrag"),
            (without("a=ice-pwd:"), "ice-pwd"),
            (without("a=group:"), "bundle"),
            (
                answer
                    .replace("a=setup:passive", "a=setup:actpass")
                    .replace("a=setup:active", "a=setup:actpass"),
                "setup",
            ),
            (format!("{head}{video}{audio}"), "a=mid"),
            (format!("{head}{audio}"), "2 media sections, the answer 1"),
            (many, "2 media sections, the answer 100002"),
            // VP8 under another number than the offer's, or another codec under VP8's.
            (
                answer
                    .replace("SAVPF 96 ", "SAVPF 35 ")
                    .replace("a=rtpmap:96 ", "a=rtpmap:35 "),
                "payload type 35, which the offer did not give it",
            ),
            (
                answer.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 H263/90000"),
                "payload type 96 another codec",
            ),
        ];
        for (hostile, why) in cases {
            match read_answer(&hostile, offer) {
                Err(e) => assert!(e.to_string().contains(why), "{e} for\n{hostile:.2000}"),
                Ok(read) => panic!("taken: {read:?}\n{hostile:.2000}"),
            }
        }
        // No error either way, but no stream: a section rejected, or one
        // kept without the track's codec.
        let rejected = answer.replace("m=video 9 ", "m=video 0 ");
        let read = read_answer(&rejected, offer).unwrap();
        assert!(!read.sections[1].accepted && read.sections[1].stream.is_none());
        let active = answer.replace("a=setup:passive", "a=setup:active");
        assert_eq!(read_answer(&active, offer).unwrap().role, DtlsRole::Server);
        let without_vp8 = answer.replace("SAVPF 96 ", "SAVPF ");
        let read = read_answer(&without_vp8, offer).unwrap();
        assert!(read.sections[1].accepted && read.sections[1].stream.is_none());
        assert!(read.sections[0].stream.is_some());
    }

    #[test]
    fn offers_that_would_break_their_sdp_are_refused() {
        let good = || live("0", Kind::Video, 1, h264());
        let mut bad = vec![
            session(1, vec![]),
            session(1, vec![good(), good()]),
            session(1, vec![live("0 1", Kind::Video, 1, h264())]),
            session(1, vec![live("0", Kind::Audio, 1, h264())]),
            session(1, vec![live("0", Kind::Video, 1, codec("video/H263", ""))]),
            session(1, vec![live("01234567890123456", Kind::Video, 1, h264())]),
        ];
        let mut injected = session(1, vec![good()]);
        injected.ufrag.push_str("\r\na=ice-lite");
        bad.push(injected);
        let mut nowhere = session(1, vec![good()]);
        nowhere.candidates.clear();
        bad.push(nowhere);
        for session in bad {
            assert!(Offer::new(&session).is_err(), "{session:?}");
        }
    }

    /// Lines shaped like an answer's, to reach past the parser's first checks.
    const LINE: &str = "(m=(audio|video) [0-9]{1,5} UDP/TLS/RTP/SAVPF( [0-9]{1,3}){0,3}|\
        a=(mid|ice-ufrag|ice-pwd|setup|group|rtpmap|fmtp|rtcp-fb|extmap|fingerprint)(:[ -~]{0,40})?|\
        c=IN IP4 [0-9.]{1,15}|[a-z]=[ -~]{0,20})";

    proptest! {
        #[test]
        fn reading_any_text_as_an_answer_never_panics(text in any::<String>()) {
            let _ = read_answer(&text, &offered_and_answered().0);
        }

        #[test]
        fn an_answer_with_lines_changed_never_panics(
            changes in prop::collection::vec((any::<prop::sample::Index>(), LINE), 1..8)
        ) {
            let (offer, answer) = offered_and_answered();
            let mut lines: Vec<String> = answer.lines().map(str::to_owned).collect();
            for (at, line) in changes {
                let at = at.index(lines.len());
                lines[at] = line;
            }
            let _ = read_answer(&lines.join("\r\n"), offer);
        }
    }
}
