//! Writes a forwarded RTP packet for one subscriber stream, for the media
//! transport Roost assembles itself (ADR 0020, step 2): the header is built
//! here, with the payload type and header-extension ids found once when the
//! stream was negotiated, and the payload is copied once, after it, into a
//! buffer the caller keeps. SRTP then protects the buffer; [`RtpWriter`]
//! keeps the stack's view of the same header up to date in place, so SRTP
//! need not parse the header again (nor allocate for its extensions).

use bytes::Bytes;
use rtc::rtp::header::{Extension, Header, EXTENSION_PROFILE_ONE_BYTE};

use crate::munger::Rewritten;

/// The one-byte header-extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// What a stream's packets carry beside the numbers: found at negotiation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub payload_type: u8,
    /// The `mid` extension's id and the stream's media section id.
    pub mid: Option<(u8, Vec<u8>)>,
    /// The audio-level extension's id (RFC 6464), where negotiated.
    pub audio_level: Option<u8>,
    /// The transport-wide sequence number's id, where negotiated: the
    /// subscriber's congestion feedback names packets by it.
    pub transport_cc: Option<u8>,
    /// The absolute send time's id, where negotiated and no transport-wide
    /// number is: a client without transport-wide feedback estimates its
    /// bandwidth from it and sends REMB.
    pub abs_send_time: Option<u8>,
}

impl StreamHeader {
    /// Whether every id fits the one-byte form (1 to 14) and the `mid` its
    /// 16 bytes.
    pub fn valid(&self) -> bool {
        let id = |id: u8| (1..=14).contains(&id);
        self.mid
            .as_ref()
            .is_none_or(|(i, mid)| id(*i) && (1..=16).contains(&mid.len()))
            && self.audio_level.is_none_or(id)
            && self.transport_cc.is_none_or(id)
            && self.abs_send_time.is_none_or(id)
    }
}

/// Clears `out` and writes the packet into it: the fixed header with the
/// rewritten numbers, the extensions `stream` names (the transport-wide
/// number only when the packet is given one, the audio level only when it
/// has one), and `payload`.
pub fn write_rtp(
    out: &mut Vec<u8>,
    stream: &StreamHeader,
    marker: bool,
    numbers: Rewritten,
    extras: Extras,
    payload: &[u8],
) {
    out.clear();
    let level = stream.audio_level.zip(extras.audio_level);
    let transport = stream.transport_cc.zip(extras.transport_seq);
    let sent_at = stream.abs_send_time.zip(extras.abs_send_time);
    let extended =
        stream.mid.is_some() || level.is_some() || transport.is_some() || sent_at.is_some();
    out.push(0x80 | if extended { 0x10 } else { 0 });
    out.push((u8::from(marker) << 7) | (stream.payload_type & 0x7f));
    out.extend_from_slice(&numbers.seq.to_be_bytes());
    out.extend_from_slice(&numbers.ts.to_be_bytes());
    out.extend_from_slice(&numbers.ssrc.to_be_bytes());
    if extended {
        let start = out.len();
        out.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
        out.extend_from_slice(&[0, 0]); // its length, in words, below
        if let Some((id, mid)) = &stream.mid {
            out.push((id << 4) | (mid.len() as u8 - 1));
            out.extend_from_slice(mid);
        }
        if let Some((id, seq)) = transport {
            out.push((id << 4) | 1);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        if let Some((id, at)) = sent_at {
            out.push((id << 4) | 2);
            out.extend_from_slice(&at.to_be_bytes()[1..]);
        }
        if let Some((id, level)) = level {
            out.push(id << 4);
            out.push(level & 0x7f);
        }
        while (out.len() - start) % 4 != 0 {
            out.push(0);
        }
        let words = ((out.len() - start - 4) / 4) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// What one packet carries in its header extensions beside the stream's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    pub audio_level: Option<u8>,
    /// Its transport-wide sequence number.
    pub transport_seq: Option<u16>,
    /// When it left, as the absolute send time's 24 bits (6.18 fixed
    /// point seconds).
    pub abs_send_time: Option<u32>,
}

/// One stream's writer: [`write_rtp`], and the same header as the stack's
/// [`Header`], for `rtc-srtp`'s `encrypt_rtp_with_header`.
pub struct RtpWriter {
    stream: StreamHeader,
    header: Header,
}

impl RtpWriter {
    pub fn new(stream: StreamHeader) -> RtpWriter {
        let header = Header {
            version: 2,
            payload_type: stream.payload_type,
            ..Default::default()
        };
        RtpWriter { stream, header }
    }

    /// Whether its packets carry a transport-wide number.
    pub fn transport_cc(&self) -> bool {
        self.stream.transport_cc.is_some()
    }

    /// Whether its packets carry their send time.
    pub fn abs_send_time(&self) -> bool {
        self.stream.abs_send_time.is_some()
    }

    /// Writes the packet into `out` (see [`write_rtp`]) and returns the
    /// stack's view of its header. Of the transport-wide number the view
    /// keeps the length, not the value: SRTP reads no more of it.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        marker: bool,
        numbers: Rewritten,
        extras: Extras,
        payload: &[u8],
    ) -> &Header {
        write_rtp(out, &self.stream, marker, numbers, extras, payload);
        let h = &mut self.header;
        h.marker = marker;
        h.sequence_number = numbers.seq;
        h.timestamp = numbers.ts;
        h.ssrc = numbers.ssrc;
        let level = self.stream.audio_level.zip(extras.audio_level);
        let transport = self.stream.transport_cc.zip(extras.transport_seq);
        let sent_at = self.stream.abs_send_time.zip(extras.abs_send_time);
        let count = usize::from(self.stream.mid.is_some())
            + usize::from(transport.is_some())
            + usize::from(sent_at.is_some())
            + usize::from(level.is_some());
        if h.extensions.len() != count {
            // The extensions change only when a level or a number comes or goes.
            h.extensions.clear();
            if let Some((id, mid)) = &self.stream.mid {
                h.extensions.push(Extension {
                    id: *id,
                    payload: Bytes::copy_from_slice(mid),
                });
            }
            if let Some((id, _)) = transport {
                h.extensions.push(Extension {
                    id,
                    payload: Bytes::from_static(&[0, 0]),
                });
            }
            // Of the send time too the view keeps the length alone.
            if let Some((id, _)) = sent_at {
                h.extensions.push(Extension {
                    id,
                    payload: Bytes::from_static(&[0, 0, 0]),
                });
            }
            if let Some((id, _)) = level {
                h.extensions.push(Extension {
                    id,
                    payload: Bytes::from_static(&[0]),
                });
            }
        }
        if let (Some((_, level)), Some(last)) = (level, h.extensions.last_mut()) {
            last.payload = super::audio_level_bytes(level);
        }
        h.extension = count > 0;
        h.extension_profile = if count > 0 {
            EXTENSION_PROFILE_ONE_BYTE
        } else {
            0
        };
        // The block is padded to whole words, as `write_rtp` pads it.
        let used: usize = h.extensions.iter().map(|e| 1 + e.payload.len()).sum();
        h.extensions_padding = (4 - used % 4) % 4;
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;
    use rtc::shared::marshal::{MarshalSize, Unmarshal};

    const NUMBERS: Rewritten = Rewritten {
        ssrc: 0xDEAD_BEEF,
        seq: 65_535,
        ts: 4_000_000_000,
    };

    fn parse(packet: &[u8]) -> (Header, &[u8]) {
        let header = Header::unmarshal(&mut &packet[..]).expect("a valid RTP header");
        let size = header.marshal_size();
        (header, &packet[size..])
    }

    #[test]
    fn the_stack_reads_what_is_written_with_both_extensions() {
        let stream = StreamHeader {
            payload_type: 111,
            mid: Some((4, b"12".to_vec())),
            audio_level: Some(1),
            transport_cc: Some(5),
            abs_send_time: None,
        };
        assert!(stream.valid());
        let mut out = Vec::new();
        let extras = Extras {
            audio_level: Some(30),
            transport_seq: Some(0xABCD),
            abs_send_time: None,
        };
        write_rtp(&mut out, &stream, true, NUMBERS, extras, b"opus frame");
        let (header, payload) = parse(&out);
        assert_eq!(header.version, 2);
        assert!(header.marker);
        assert_eq!(header.payload_type, 111);
        assert_eq!(header.sequence_number, 65_535);
        assert_eq!(header.timestamp, 4_000_000_000);
        assert_eq!(header.ssrc, 0xDEAD_BEEF);
        assert_eq!(header.get_extension(4).as_deref(), Some(&b"12"[..]));
        assert_eq!(header.get_extension(1).as_deref(), Some(&[30u8][..]));
        assert_eq!(header.get_extension(5).as_deref(), Some(&[0xAB, 0xCD][..]));
        assert_eq!(payload, b"opus frame");
    }

    #[test]
    fn without_extensions_the_header_is_twelve_bytes() {
        let stream = StreamHeader {
            payload_type: 96,
            mid: None,
            audio_level: Some(1),
            transport_cc: None,
            abs_send_time: None,
        };
        let mut out = vec![1, 2, 3];
        // No level in the packet: nothing to extend with.
        let extras = Extras {
            audio_level: None,
            transport_seq: Some(1),
            abs_send_time: None,
        };
        write_rtp(&mut out, &stream, false, NUMBERS, extras, &[0x5A; 1200]);
        assert_eq!(out.len(), 12 + 1200);
        let (header, payload) = parse(&out);
        assert!(!header.extension && !header.marker);
        assert_eq!(payload, &[0x5A; 1200][..]);
    }

    #[test]
    fn the_writers_header_is_what_the_stack_reads_from_its_bytes() {
        use rtc::shared::marshal::Marshal;
        let stream = StreamHeader {
            payload_type: 111,
            mid: Some((4, b"3".to_vec())),
            audio_level: Some(1),
            transport_cc: Some(6),
            abs_send_time: None,
        };
        let mut writer = RtpWriter::new(stream);
        let mut out = Vec::new();
        for (marker, level, transport_seq) in [
            (true, Some(30), None),
            (false, None, None),
            (false, Some(127), Some(0)),
            (true, Some(0), Some(0)),
            (true, None, Some(0)),
        ] {
            let extras = Extras {
                audio_level: level,
                transport_seq,
                abs_send_time: None,
            };
            let header = writer
                .write(&mut out, marker, NUMBERS, extras, b"payload")
                .clone();
            let (read, payload) = parse(&out);
            assert_eq!(
                header.marshal_size(),
                out.len() - payload.len(),
                "same length"
            );
            assert_eq!(
                &header.marshal().unwrap()[..],
                &out[..out.len() - payload.len()]
            );
            assert_eq!(read.marker, marker);
            assert_eq!(
                read.get_extension(1).as_deref(),
                level.as_ref().map(std::slice::from_ref)
            );
            assert_eq!(header.get_extension(1), read.get_extension(1));
        }
    }

    #[test]
    fn the_send_time_goes_as_three_bytes_for_clients_without_transport_wide_feedback() {
        let stream = StreamHeader {
            payload_type: 96,
            mid: Some((2, b"1".to_vec())),
            audio_level: None,
            transport_cc: None,
            abs_send_time: Some(6),
        };
        assert!(stream.valid());
        let mut writer = RtpWriter::new(stream);
        let mut out = Vec::new();
        let extras = Extras {
            audio_level: None,
            transport_seq: None,
            abs_send_time: Some(0x12_3456),
        };
        let header = writer
            .write(&mut out, false, NUMBERS, extras, b"frame")
            .clone();
        let (read, payload) = parse(&out);
        assert_eq!(payload, b"frame");
        assert_eq!(
            read.get_extension(6).as_deref(),
            Some(&[0x12, 0x34, 0x56][..])
        );
        assert_eq!(read.get_extension(2).as_deref(), Some(&b"1"[..]));
        // SRTP reads the header's length from the writer's view.
        assert_eq!(header.marshal_size(), out.len() - payload.len());
    }

    #[test]
    fn ids_outside_the_one_byte_form_are_not_valid() {
        let mut stream = StreamHeader {
            payload_type: 96,
            mid: Some((15, b"0".to_vec())),
            audio_level: None,
            transport_cc: None,
            abs_send_time: None,
        };
        assert!(!stream.valid());
        stream.mid = Some((3, vec![b'x'; 17]));
        assert!(!stream.valid());
        stream.mid = Some((3, b"0".to_vec()));
        stream.audio_level = Some(0);
        assert!(!stream.valid());
        stream.audio_level = Some(1);
        stream.transport_cc = Some(15);
        assert!(!stream.valid());
    }
}
