//! Transport-wide congestion control feedback, the receiving side
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): the arrival time
//! of each packet that carried a transport-wide sequence number, reported
//! to the sender every [`INTERVAL`] so that its bandwidth estimator sees
//! the path's delay and loss.
//!
//! Arrivals are kept in sequence order for [`WINDOW`]: a packet that comes
//! after its number was reported missing is reported again, with the
//! arrivals around it, as libwebrtc's receiver does. Each feedback packet
//! stays under [`MAX_BYTES`]; a longer stretch goes out as several.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk,
    SymbolSizeTypeTcc, SymbolTypeTcc, TransportLayerCc,
};

/// How often feedback goes out.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);

/// How long an arrival already reported is kept, to report it again
/// beside a late packet.
const WINDOW: Duration = Duration::from_millis(500);

/// Arrivals kept at most, whatever their age.
const MAX_ARRIVALS: usize = 8_192;

/// A feedback packet's size at most, before SRTCP adds its own: well
/// under any path's MTU.
const MAX_BYTES: usize = 1_000;

/// The unit of a receive delta, in microseconds.
const DELTA_UNIT: i64 = 250;

/// The unit of the reference time, in microseconds.
const REFERENCE_UNIT: i64 = 64_000;

/// Packets a run-length chunk holds at most (13 bits).
const MAX_RUN: usize = 0x1fff;

/// The arrivals of one connection's packets, and the feedback owed on them.
#[derive(Debug, Default)]
pub(super) struct Arrivals {
    /// Arrival times are counted from the first packet's.
    epoch: Option<Instant>,
    /// The newest sequence number, unwrapped.
    last: Option<i64>,
    /// (sequence number unwrapped, arrival in µs from `epoch`), in order
    /// of sequence number, one per number.
    arrivals: VecDeque<(i64, i64)>,
    /// The first sequence number the next feedback reports.
    next: Option<i64>,
    /// Arrivals before this number may have been let go: a packet that
    /// comes later than that is not reported.
    kept_from: Option<i64>,
    /// The SSRC of the newest packet, which feedback names as its media.
    media_ssrc: u32,
    /// Feedback packets written, modulo 256.
    count: u8,
}

impl Arrivals {
    /// A packet with transport-wide sequence number `seq` arrived at `now`.
    pub(super) fn record(&mut self, now: Instant, ssrc: u32, seq: u16) {
        let epoch = *self.epoch.get_or_insert(now);
        let at =
            i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX);
        let seq = match self.last {
            None => i64::from(seq),
            Some(last) => last + i64::from(seq.wrapping_sub(last as u16) as i16),
        };
        self.last = Some(self.last.map_or(seq, |last| last.max(seq)));
        self.media_ssrc = ssrc;
        match self.arrivals.back() {
            Some((newest, _)) if seq <= *newest => {
                if self.kept_from.is_some_and(|kept| seq < kept) {
                    // Its neighbours are gone: too late to report.
                    return;
                }
                match self.arrivals.binary_search_by_key(&seq, |(s, _)| *s) {
                    Ok(_) => return,
                    Err(i) => self.arrivals.insert(i, (seq, at)),
                }
            }
            _ => self.arrivals.push_back((seq, at)),
        }
        if self.arrivals.len() > MAX_ARRIVALS {
            self.let_go_oldest();
        }
        if self.next.is_none_or(|next| seq < next) {
            self.next = Some(seq);
        }
    }

    /// Whether any arrival waits to be reported.
    pub(super) fn pending(&self) -> bool {
        self.next
            .zip(self.arrivals.back())
            .is_some_and(|(next, (newest, _))| next <= *newest)
    }

    /// The feedback on everything not yet reported, in as many packets as
    /// it takes; `sender_ssrc` names this side.
    pub(super) fn feedback(&mut self, sender_ssrc: u32) -> Vec<TransportLayerCc> {
        let mut out = Vec::new();
        let Some(next) = self.next else {
            return out;
        };
        let Some(&(newest, newest_at)) = self.arrivals.back() else {
            return out;
        };
        if next > newest {
            return out;
        }
        let first = self.arrivals.partition_point(|(s, _)| *s < next);
        let mut building: Option<Building> = None;
        for &(seq, at) in self.arrivals.range(first..) {
            // The first packet starts where the last feedback ended; one
            // that follows a full one starts at its first arrival.
            let base = match building.take() {
                None => next,
                Some(mut b) => {
                    if b.add(seq, at) {
                        building = Some(b);
                        continue;
                    }
                    out.push(b.finish(sender_ssrc, self.media_ssrc, &mut self.count));
                    seq
                }
            };
            let mut b = Building::new(base.max(seq - i64::from(u16::MAX / 2)), at);
            let added = b.add(seq, at);
            debug_assert!(added, "a packet's first arrival always fits");
            building = Some(b);
        }
        if let Some(b) = building {
            out.push(b.finish(sender_ssrc, self.media_ssrc, &mut self.count));
        }
        self.next = Some(newest + 1);
        let window = i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
        while self
            .arrivals
            .front()
            .is_some_and(|(_, at)| *at < newest_at - window)
        {
            self.let_go_oldest();
        }
        out
    }

    fn let_go_oldest(&mut self) {
        if let Some((seq, _)) = self.arrivals.pop_front() {
            self.kept_from = Some(seq + 1);
        }
    }
}

/// One feedback packet being written.
struct Building {
    base: i64,
    /// The sequence number the next status is for.
    next: i64,
    /// In units of 64 ms.
    reference: i64,
    /// The arrival the next delta counts from, in µs, as the sender will
    /// reckon it (rounded deltas add up).
    last_at: i64,
    symbols: Vec<SymbolTypeTcc>,
    deltas: Vec<RecvDelta>,
    delta_bytes: usize,
    /// Statuses outside long runs of missing packets: at worst a chunk
    /// for each seven.
    scattered: usize,
    /// Chunks the long runs of missing packets take at most, with one
    /// more each for the vector they may cut short.
    run_chunks: usize,
}

impl Building {
    fn new(base: i64, first_at: i64) -> Building {
        let reference = first_at.div_euclid(REFERENCE_UNIT);
        Building {
            base,
            next: base,
            reference,
            last_at: reference * REFERENCE_UNIT,
            symbols: Vec::new(),
            deltas: Vec::new(),
            delta_bytes: 0,
            scattered: 0,
            run_chunks: 0,
        }
    }

    /// Adds a packet that arrived at `at`, and the missing ones before it;
    /// false where it does not fit.
    fn add(&mut self, seq: i64, at: i64) -> bool {
        let units = (at - self.last_at + DELTA_UNIT / 2).div_euclid(DELTA_UNIT);
        let Ok(units) = i16::try_from(units) else {
            return false;
        };
        let (symbol, size) = if (0..=255).contains(&units) {
            (SymbolTypeTcc::PacketReceivedSmallDelta, 1)
        } else {
            (SymbolTypeTcc::PacketReceivedLargeDelta, 2)
        };
        let statuses = usize::try_from(seq - self.base + 1).unwrap_or(usize::MAX);
        let missing = usize::try_from(seq - self.next).unwrap_or(usize::MAX);
        let (scattered, run_chunks) = if missing >= 14 {
            // A run chunk holds up to 8,191.
            (
                self.scattered + 1,
                self.run_chunks + missing.div_ceil(MAX_RUN) + 2,
            )
        } else {
            (self.scattered + missing + 1, self.run_chunks)
        };
        // The header and fixed fields (20 bytes), the chunks at worst, and
        // the deltas.
        let chunks = scattered.div_ceil(7) + run_chunks + 1;
        let bytes = 20 + 2 * chunks + self.delta_bytes + size;
        if statuses > usize::from(u16::MAX) || bytes > MAX_BYTES {
            return false;
        }
        self.scattered = scattered;
        self.run_chunks = run_chunks;
        while self.next < seq {
            self.symbols.push(SymbolTypeTcc::PacketNotReceived);
            self.next += 1;
        }
        self.symbols.push(symbol);
        self.next = seq + 1;
        let delta = i64::from(units) * DELTA_UNIT;
        self.deltas.push(RecvDelta {
            type_tcc_packet: symbol,
            delta,
        });
        self.delta_bytes += size;
        self.last_at += delta;
        true
    }

    fn finish(self, sender_ssrc: u32, media_ssrc: u32, count: &mut u8) -> TransportLayerCc {
        let fb_pkt_count = *count;
        *count = count.wrapping_add(1);
        TransportLayerCc {
            sender_ssrc,
            media_ssrc,
            base_sequence_number: self.base as u16,
            packet_status_count: self.symbols.len() as u16,
            reference_time: (self.reference & 0x00ff_ffff) as u32,
            fb_pkt_count,
            packet_chunks: chunks(&self.symbols),
            recv_deltas: self.deltas,
        }
    }
}

/// The status chunks for `symbols`: a run where one status repeats, else
/// a vector of fourteen one-bit statuses where no delta is large, else
/// one of seven two-bit statuses. The last vector may hold fewer; the
/// status count tells the reader where they end.
fn chunks(symbols: &[SymbolTypeTcc]) -> Vec<PacketStatusChunk> {
    let mut out = Vec::new();
    let mut rest = symbols;
    while let Some(&first) = rest.first() {
        let run = rest
            .iter()
            .take(MAX_RUN)
            .take_while(|s| **s == first)
            .count();
        let one_bit = rest
            .iter()
            .take(14)
            .all(|s| *s != SymbolTypeTcc::PacketReceivedLargeDelta);
        let (chunk, taken) =
            if run >= 14 || (run == rest.len() && !one_bit) || (!one_bit && run >= 7) {
                (
                    PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                        type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                        packet_status_symbol: first,
                        run_length: run as u16,
                    }),
                    run,
                )
            } else {
                let (size, fits) = if one_bit {
                    (SymbolSizeTypeTcc::OneBit, 14)
                } else {
                    (SymbolSizeTypeTcc::TwoBit, 7)
                };
                let taken = fits.min(rest.len());
                (
                    PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                        type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                        symbol_size: size,
                        symbol_list: rest[..taken].to_vec(),
                    }),
                    taken,
                )
            };
        out.push(chunk);
        rest = &rest[taken..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};

    /// What a sender reads from `feedback`: each reported number with its
    /// arrival in µs from the first reference time, or None where missing.
    fn read(feedback: &[TransportLayerCc]) -> Vec<(u16, Option<i64>)> {
        let mut out = Vec::new();
        for f in feedback {
            let wire = f.marshal().unwrap();
            assert!(wire.len() <= MAX_BYTES, "{} bytes", wire.len());
            let f = TransportLayerCc::unmarshal(&mut &wire[..]).unwrap();
            let mut statuses = Vec::new();
            for chunk in &f.packet_chunks {
                match chunk {
                    PacketStatusChunk::RunLengthChunk(c) => {
                        statuses.extend(std::iter::repeat_n(
                            c.packet_status_symbol,
                            usize::from(c.run_length),
                        ));
                    }
                    PacketStatusChunk::StatusVectorChunk(c) => {
                        statuses.extend(c.symbol_list.iter().copied());
                    }
                }
            }
            statuses.truncate(usize::from(f.packet_status_count));
            let mut deltas = f.recv_deltas.iter();
            let mut at = i64::from(f.reference_time) * REFERENCE_UNIT;
            for (i, s) in statuses.iter().enumerate() {
                let seq = f.base_sequence_number.wrapping_add(i as u16);
                if *s == SymbolTypeTcc::PacketNotReceived {
                    out.push((seq, None));
                } else {
                    at += deltas.next().expect("a delta for each arrival").delta;
                    out.push((seq, Some(at)));
                }
            }
        }
        out
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn arrivals_and_a_loss_are_reported_once_with_their_times() {
        let start = Instant::now();
        let mut a = Arrivals::default();
        for (seq, ms) in [(100u16, 0), (101, 5), (103, 12), (104, 100)] {
            a.record(at(start, ms), 7, seq);
        }
        let got = read(&a.feedback(1));
        assert_eq!(
            got,
            vec![
                (100, Some(0)),
                (101, Some(5_000)),
                (102, None),
                (103, Some(12_000)),
                (104, Some(100_000)),
            ]
        );
        assert!(!a.pending());
        assert!(a.feedback(1).is_empty(), "nothing new, nothing sent");
        a.record(at(start, 150), 7, 105);
        assert_eq!(read(&a.feedback(1)), vec![(105, Some(150_000))]);
    }

    #[test]
    fn a_late_packet_is_reported_again_with_those_around_it() {
        let start = Instant::now();
        let mut a = Arrivals::default();
        a.record(at(start, 0), 7, 10);
        a.record(at(start, 1), 7, 12);
        assert_eq!(read(&a.feedback(1))[1], (11, None));
        a.record(at(start, 30), 7, 11);
        assert_eq!(
            read(&a.feedback(1)),
            vec![(11, Some(30_000)), (12, Some(1_000))]
        );
    }

    #[test]
    fn numbers_wrap_and_counts_go_up() {
        let start = Instant::now();
        let mut a = Arrivals::default();
        a.record(at(start, 0), 7, 65_534);
        a.record(at(start, 1), 7, 65_535);
        a.record(at(start, 2), 7, 1);
        let feedback = a.feedback(9);
        assert_eq!(feedback.len(), 1);
        assert_eq!((feedback[0].sender_ssrc, feedback[0].media_ssrc), (9, 7));
        let seqs: Vec<(u16, bool)> = read(&feedback)
            .into_iter()
            .map(|(s, at)| (s, at.is_some()))
            .collect();
        assert_eq!(
            seqs,
            vec![(65_534, true), (65_535, true), (0, false), (1, true)]
        );
        a.record(at(start, 3), 7, 2);
        assert_eq!(a.feedback(9)[0].fb_pkt_count, 1);
    }

    #[test]
    fn a_long_stretch_is_cut_into_packets_under_the_size_limit() {
        let start = Instant::now();
        let mut a = Arrivals::default();
        // Every other packet lost, with deltas too large for one byte.
        for i in 0..2_000u16 {
            a.record(at(start, u64::from(i) * 70), 7, i * 2);
        }
        let feedback = a.feedback(1);
        assert!(feedback.len() > 2, "{} packets", feedback.len());
        let got = read(&feedback);
        let received: Vec<u16> = got.iter().filter_map(|(s, at)| at.map(|_| *s)).collect();
        assert_eq!(received, (0..2_000u16).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_gap_of_more_than_the_delta_range_starts_a_new_packet() {
        let start = Instant::now();
        let mut a = Arrivals::default();
        a.record(at(start, 0), 7, 1);
        a.record(at(start, 9_000), 7, 2);
        let feedback = a.feedback(1);
        assert_eq!(feedback.len(), 2);
        assert_eq!(read(&feedback), vec![(1, Some(0)), (2, Some(9_000_000))]);
    }

    #[test]
    fn chunks_use_runs_and_vectors() {
        use SymbolTypeTcc::*;
        let run = vec![PacketReceivedSmallDelta; 20];
        assert!(matches!(
            chunks(&run)[..],
            [PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                run_length: 20,
                ..
            })]
        ));
        let mixed = [
            PacketReceivedSmallDelta,
            PacketNotReceived,
            PacketReceivedLargeDelta,
        ];
        let c = chunks(&mixed);
        assert!(matches!(
            &c[..],
            [PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                symbol_size: SymbolSizeTypeTcc::TwoBit,
                ..
            })]
        ));
        let long = vec![PacketNotReceived; MAX_RUN + 5];
        let c = chunks(&long);
        assert_eq!(c.len(), 2);
    }

    proptest! {
        /// Whatever arrives, in whatever order, the sender reads back each
        /// packet once as received, at its arrival time to within the
        /// rounding of one delta, and nothing else as received.
        #[test]
        fn the_sender_reads_back_every_arrival(
            gaps in proptest::collection::vec((0u16..4, 0u64..30_000, any::<bool>()), 1..400),
        ) {
            let start = Instant::now();
            let mut a = Arrivals::default();
            let mut seq = 60_000u16;
            let mut micros = 0u64;
            let mut sent = std::collections::BTreeMap::new();
            let mut held: Option<u16> = None;
            let mut epoch = None;
            let mut read_back = Vec::new();
            for (i, (skip, gap, swap)) in gaps.iter().enumerate() {
                seq = seq.wrapping_add(1 + skip);
                micros += gap;
                // Now and then a packet comes after the next one.
                if *swap && held.is_none() {
                    held = Some(seq);
                    continue;
                }
                // Arrival times count from the first packet's.
                let since = (micros - *epoch.get_or_insert(micros)) as i64;
                a.record(start + Duration::from_micros(micros), 7, seq);
                sent.insert(seq, since);
                if let Some(s) = held.take() {
                    a.record(start + Duration::from_micros(micros), 7, s);
                    sent.insert(s, since);
                }
                if i % 7 == 0 {
                    read_back.extend(read(&a.feedback(1)));
                }
            }
            read_back.extend(read(&a.feedback(1)));
            let mut seen = std::collections::BTreeMap::new();
            for (s, at) in read_back {
                if let Some(at) = at {
                    let first = *sent.get(&s).expect("only what arrived is received");
                    prop_assert!((at - first).abs() <= DELTA_UNIT / 2, "{s}: {at} for {first}");
                    seen.insert(s, at);
                }
            }
            prop_assert_eq!(seen.len(), sent.len());
        }
    }
}
