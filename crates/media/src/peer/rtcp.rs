//! RTCP for the media transport Roost owns (ADR 0020, step 3): the sender
//! reports it writes for the streams it sends, and what it reads from the
//! subscriber's compound packets (reception reports for the round trip,
//! NACKs, keyframe requests). Parsing and writing use `rtc-rtcp`'s types;
//! what the transport acts on comes out as plain [`Feedback`] values.
//!
//! Time is input: NTP times come from a [`WallClock`] anchored once, when
//! the engine starts, and moved on by the `now` each call is given.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::rtcp::packet::{marshal, unmarshal, Packet};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

use crate::MediaError;

/// Seconds from 1900 (NTP's era) to 1970 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Wall-clock time at an [`Instant`], in NTP's 64-bit form (RFC 3550 §4):
/// anchored once with the wall clock's reading, so nothing here reads a clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    ntp: u64,
}

impl WallClock {
    /// `since_unix` is the wall clock's time since 1970 at `at`.
    pub fn new(at: Instant, since_unix: Duration) -> WallClock {
        let since_1900 = since_unix + Duration::from_secs(NTP_UNIX_OFFSET);
        WallClock {
            at,
            ntp: fixed_point(since_1900),
        }
    }

    /// The NTP time at `now` (a time before the anchor counts as the anchor).
    pub fn ntp(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at);
        self.ntp.wrapping_add(fixed_point(elapsed))
    }
}

/// A span as NTP's 32.32 fixed point: seconds, and a fraction of one.
fn fixed_point(d: Duration) -> u64 {
    let fraction = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32) | fraction
}

/// What a sender report says of one stream: counted as its packets go out.
#[derive(Debug, Clone, Copy)]
pub struct SentCounts {
    pub ssrc: u32,
    /// The RTP clock rate, to carry the last timestamp forward to the report's time.
    pub clock_rate: u32,
    pub packets: u32,
    /// Payload bytes sent (RFC 3550 §6.4.1: headers and padding not counted).
    pub octets: u32,
    /// The last packet's timestamp and when it went out.
    pub last: Option<(u32, Instant)>,
}

impl SentCounts {
    pub fn new(ssrc: u32, clock_rate: u32) -> SentCounts {
        SentCounts {
            ssrc,
            clock_rate,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    /// A packet sent for the first time (resends are not counted).
    pub fn sent(&mut self, ts: u32, payload: usize, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
        self.last = Some((ts, now));
    }

    /// The stream's RTP time at `now`: its last timestamp moved on by the
    /// time since it was sent.
    fn rtp_time(&self, now: Instant) -> Option<u32> {
        let (ts, at) = self.last?;
        let ticks =
            now.saturating_duration_since(at).as_micros() * u128::from(self.clock_rate) / 1_000_000;
        Some(ts.wrapping_add(ticks as u32))
    }
}

/// One compound packet of sender reports, one for each stream that has
/// sent something, at NTP time `ntp`; `None` when none has.
pub fn sender_reports(streams: &[SentCounts], ntp: u64, now: Instant) -> Option<BytesMut> {
    let reports: Vec<Box<dyn Packet>> = streams
        .iter()
        .filter_map(|s| {
            let rtp_time = s.rtp_time(now)?;
            Some(Box::new(SenderReport {
                ssrc: s.ssrc,
                ntp_time: ntp,
                rtp_time,
                packet_count: s.packets,
                octet_count: s.octets,
                ..Default::default()
            }) as Box<dyn Packet>)
        })
        .collect();
    if reports.is_empty() {
        return None;
    }
    marshal(&reports).ok()
}

/// What the transport acts on in a subscriber's RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// A PLI or FIR for one of this side's streams.
    Keyframe { media_ssrc: u32 },
    /// One NACK pair (RFC 4585 §6.2.1): `first` and, in `bitmap`'s bits,
    /// the 16 packets after it.
    Nack {
        media_ssrc: u32,
        first: u16,
        bitmap: u16,
    },
    /// A reception report of one of this side's streams: the middle bits of
    /// the last sender report it saw, and the delay since (1/65536 s).
    Report {
        ssrc: u32,
        lsr: u32,
        dlsr: u32,
        fraction_lost: u8,
    },
}

impl Feedback {
    /// The sequence numbers a NACK pair names, `first` included.
    pub fn nacked(first: u16, bitmap: u16) -> impl Iterator<Item = u16> {
        std::iter::once(first).chain(
            (0..16u16)
                .filter(move |bit| bitmap & (1 << bit) != 0)
                .map(move |bit| first.wrapping_add(bit + 1)),
        )
    }
}

/// Reads a compound RTCP packet (already out of SRTCP) into `out`. Packets
/// of kinds the transport does not act on are skipped; a malformed one is
/// an error, and what came before it stays in `out`.
pub fn read(plain: &[u8], out: &mut Vec<Feedback>) -> Result<(), MediaError> {
    let mut buf = plain;
    let packets = unmarshal(&mut buf).map_err(|e| MediaError::Stack(e.to_string()))?;
    let blocks = |reports: &[ReceptionReport], out: &mut Vec<Feedback>| {
        out.extend(reports.iter().map(|r| Feedback::Report {
            ssrc: r.ssrc,
            lsr: r.last_sender_report,
            dlsr: r.delay,
            fraction_lost: r.fraction_lost,
        }))
    };
    for packet in &packets {
        let any = packet.as_any();
        if let Some(p) = any.downcast_ref::<PictureLossIndication>() {
            out.push(Feedback::Keyframe {
                media_ssrc: p.media_ssrc,
            });
        } else if let Some(f) = any.downcast_ref::<FullIntraRequest>() {
            // A FIR names its streams in its entries (RFC 5104 §4.3.1).
            out.extend(
                f.fir
                    .iter()
                    .map(|e| Feedback::Keyframe { media_ssrc: e.ssrc }),
            );
        } else if let Some(n) = any.downcast_ref::<TransportLayerNack>() {
            out.extend(n.nacks.iter().map(|pair| Feedback::Nack {
                media_ssrc: n.media_ssrc,
                first: pair.packet_id,
                bitmap: pair.lost_packets,
            }));
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            blocks(&rr.reports, out);
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            blocks(&sr.reports, out);
        }
    }
    Ok(())
}

/// Whether a compound RTCP packet holds a packet of type `pt` and format
/// `fmt`, by its headers alone: the compound is parsed only when it does.
fn holds(plain: &[u8], pt: u8, fmt: u8) -> bool {
    let mut at = 0;
    while let Some(header) = plain.get(at..at + 4) {
        if header[1] == pt && header[0] & 0x1f == fmt {
            return true;
        }
        at += 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
    }
    false
}

/// The transport-wide congestion feedback a compound RTCP packet holds, if
/// any: its headers are looked at first (RTPFB, FMT 15), so the compound is
/// parsed again only when it has some.
pub fn transport_feedback(plain: &[u8]) -> Option<Vec<TransportLayerCc>> {
    if !holds(plain, 205, 15) {
        return None;
    }
    let mut buf = plain;
    let packets = unmarshal(&mut buf).ok()?;
    let feedback: Vec<TransportLayerCc> = packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerCc>().cloned())
        .collect();
    (!feedback.is_empty()).then_some(feedback)
}

/// The bitrate a receiver estimated maximum bitrate message (REMB, PSFB
/// FMT 15 of type `REMB`) in a compound RTCP packet names, in bits per
/// second, if it holds one: the headers are looked at first, as for
/// [`transport_feedback`].
pub fn remb(plain: &[u8]) -> Option<u64> {
    if !holds(plain, 206, 15) {
        return None;
    }
    let mut buf = plain;
    let packets = unmarshal(&mut buf).ok()?;
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>())
        .map(|r| r.bitrate)
        .filter(|b| b.is_finite() && *b >= 0.0)
        .map(|b| b as u64)
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers;

    #[test]
    fn ntp_time_follows_the_anchor() {
        let at = Instant::now();
        // 2026-12-04T00:00:00Z.
        let clock = WallClock::new(at, Duration::from_secs(1_796_342_400));
        let ntp = clock.ntp(at + Duration::from_millis(1_500));
        assert_eq!(ntp >> 32, 1_796_342_400 + NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp as u32, 1 << 31, "half a second, in the fraction");
        assert_eq!(clock.ntp(at - Duration::from_secs(1)), clock.ntp(at));
    }

    #[test]
    fn a_sender_report_carries_the_counts_and_the_timestamp_moved_on() {
        let now = Instant::now();
        let mut video = SentCounts::new(0xAB, 90_000);
        video.sent(1_000, 1_200, now);
        video.sent(1_000, 800, now);
        let silent = SentCounts::new(0xCD, 48_000);
        let ntp = 0x1234_5678_9ABC_DEF0;
        let later = now + Duration::from_millis(100);
        let compound = sender_reports(&[video, silent], ntp, later).expect("one stream sent");
        let mut buf = &compound[..];
        let packets = unmarshal(&mut buf).unwrap();
        assert_eq!(packets.len(), 1, "only the stream that sent is reported");
        let sr = packets[0]
            .as_any()
            .downcast_ref::<SenderReport>()
            .expect("a sender report");
        assert_eq!(
            (sr.ssrc, sr.packet_count, sr.octet_count, sr.ntp_time),
            (0xAB, 2, 2_000, ntp)
        );
        assert_eq!(sr.rtp_time, 1_000 + 9_000, "100 ms at 90 kHz later");
        assert!(sender_reports(&[silent], ntp, later).is_none());
    }

    #[test]
    fn feedback_is_read_from_a_compound_packet() {
        let packets: Vec<Box<dyn Packet>> = vec![
            Box::new(ReceiverReport {
                ssrc: 1,
                reports: vec![ReceptionReport {
                    ssrc: 0xAB,
                    fraction_lost: 12,
                    last_sender_report: 0x5678_9ABC,
                    delay: 655,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 0xAB,
            }),
            Box::new(FullIntraRequest {
                sender_ssrc: 1,
                media_ssrc: 0,
                fir: vec![FirEntry {
                    ssrc: 0xCD,
                    sequence_number: 3,
                }],
            }),
            Box::new(TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: 0xAB,
                nacks: nack_pairs_from_sequence_numbers(&[65_535, 1, 2, 40]),
            }),
        ];
        let plain = marshal(&packets).unwrap();
        let mut out = Vec::new();
        read(&plain, &mut out).unwrap();
        assert_eq!(
            out[..3],
            [
                Feedback::Report {
                    ssrc: 0xAB,
                    lsr: 0x5678_9ABC,
                    dlsr: 655,
                    fraction_lost: 12
                },
                Feedback::Keyframe { media_ssrc: 0xAB },
                Feedback::Keyframe { media_ssrc: 0xCD },
            ]
        );
        let nacked: Vec<u16> = out[3..]
            .iter()
            .flat_map(|f| match *f {
                Feedback::Nack {
                    media_ssrc: 0xAB,
                    first,
                    bitmap,
                } => Feedback::nacked(first, bitmap).collect::<Vec<_>>(),
                other => panic!("not a NACK: {other:?}"),
            })
            .collect();
        assert_eq!(nacked, [65_535, 1, 2, 40], "across the wrap");
    }

    #[test]
    fn malformed_rtcp_is_an_error_and_never_a_panic() {
        let mut out = Vec::new();
        assert!(read(&[], &mut out).is_err());
        assert!(read(&[0x80, 201, 0, 40, 1, 2, 3, 4], &mut out).is_err());
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x81) as u8).collect();
            let _ = read(&junk, &mut out);
        }
    }

    #[test]
    fn a_remb_in_a_compound_names_its_bitrate() {
        let estimate = ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: 640_000.0,
            ssrcs: vec![0xDEAD],
        };
        let rr = ReceiverReport {
            ssrc: 1,
            ..Default::default()
        };
        let compound = marshal(&[Box::new(rr) as Box<dyn Packet>, Box::new(estimate)]).unwrap();
        assert_eq!(remb(&compound), Some(640_000));
        let alone = marshal(&[Box::new(ReceiverReport::default()) as Box<dyn Packet>]).unwrap();
        assert_eq!(remb(&alone), None);
        // Garbage never panics.
        assert_eq!(remb(&[0x8f, 206, 0xff, 0xff, 1, 2]), None);
    }
}
