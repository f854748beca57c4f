//! The munger: what a subscriber sees of a stream, its own SSRC, and
//! sequence numbers and timestamps that run on without a break whichever
//! source's packets fill it. Pure arithmetic over header fields; no IO.

use std::time::Instant;

/// The header fields a forwarded packet goes out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
}

/// The VP8 picture numbers a forwarded packet's payload descriptor is
/// given (RFC 7741 §4.2), where a subscriber's stream continues another
/// layer's: each is written only where the packet has the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Patch {
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

/// The numbering of one subscriber's outgoing stream.
#[derive(Debug, Clone)]
pub struct Munger {
    ssrc: u32,
    clock_rate: u32,
    source: Option<Source>,
    /// The highest sequence number and the timestamp sent, and when.
    last: Option<(u16, u32, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

impl Munger {
    pub fn new(ssrc: u32, clock_rate: u32) -> Munger {
        Munger {
            ssrc,
            clock_rate: clock_rate.max(1),
            source: None,
            last: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The source stream the subscriber currently receives, if any.
    pub fn source(&self) -> Option<u32> {
        self.source.map(|s| s.ssrc)
    }

    /// The packets of the current source stop here for a while (the
    /// subscriber paused the track): the next one continues the numbering
    /// as a new source's would, with no gap for the subscriber to ask after.
    pub fn rebase(&mut self) {
        self.source = None;
    }

    /// Rewrites a packet of source `src` (its SSRC, sequence number and
    /// timestamp) sent at `now`. A packet from a new source continues the
    /// numbering where the old one stopped, with the timestamp advanced by the
    /// wall-clock time in between, so the subscriber's decoder sees one
    /// stream.
    pub fn rewrite(&mut self, src: u32, seq: u16, ts: u32, now: Instant) -> Rewritten {
        let source = match self.source {
            Some(s) if s.ssrc == src => s,
            _ => {
                let s = match self.last {
                    None => Source {
                        ssrc: src,
                        seq_offset: 0,
                        ts_offset: 0,
                    },
                    Some((last_seq, last_ts, at)) => {
                        let gap = now.saturating_duration_since(at);
                        let ticks = (gap.as_micros() as u64 * u64::from(self.clock_rate)
                            / 1_000_000)
                            .clamp(1, u64::from(u32::MAX / 2))
                            as u32;
                        Source {
                            ssrc: src,
                            seq_offset: last_seq.wrapping_add(1).wrapping_sub(seq),
                            ts_offset: last_ts.wrapping_add(ticks).wrapping_sub(ts),
                        }
                    }
                };
                self.source = Some(s);
                s
            }
        };
        let out = Rewritten {
            ssrc: self.ssrc,
            seq: seq.wrapping_add(source.seq_offset),
            ts: ts.wrapping_add(source.ts_offset),
        };
        match self.last {
            // An older packet (reordered or resent) moves nothing forward.
            Some((last_seq, _, _)) if !seq_newer(out.seq, last_seq) => {}
            _ => self.last = Some((out.seq, out.ts, now)),
        }
        out
    }
}

/// Whether `a` comes after `b` in 16-bit sequence space (RFC 3550 wrap-around).
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_source_keeps_its_spacing_under_the_subscribers_ssrc() {
        let t = Instant::now();
        let mut d = Munger::new(42, 48_000);
        let a = d.rewrite(7, 100, 1000, t);
        let b = d.rewrite(7, 101, 1960, t);
        assert_eq!(a.ssrc, 42);
        assert_eq!(b.seq.wrapping_sub(a.seq), 1);
        assert_eq!(b.ts.wrapping_sub(a.ts), 960);
        // A resent older packet maps to where it was.
        assert_eq!(d.rewrite(7, 100, 1000, t), a);
    }

    #[test]
    fn a_new_source_continues_the_numbering() {
        let t = Instant::now();
        let mut d = Munger::new(1, 48_000);
        d.rewrite(10, 65_534, 4_000_000_000, t);
        let last = d.rewrite(10, 65_535, 4_000_000_960, t + Duration::from_millis(20));
        // Another publisher speaks 100 ms later, with its own numbers.
        let next = d.rewrite(20, 3, 77, t + Duration::from_millis(120));
        assert_eq!(next.seq, last.seq.wrapping_add(1), "no gap, no repeat");
        assert_eq!(
            next.ts.wrapping_sub(last.ts),
            4_800,
            "timestamps follow the clock"
        );
        let after = d.rewrite(20, 4, 1037, t + Duration::from_millis(140));
        assert_eq!(after.seq, next.seq.wrapping_add(1));
        assert_eq!(after.ts.wrapping_sub(next.ts), 960);
        assert_eq!(d.source(), Some(20));
    }

    #[test]
    fn a_paused_source_resumes_without_a_gap() {
        let t = Instant::now();
        let mut d = Munger::new(1, 90_000);
        let last = d.rewrite(10, 100, 9_000, t);
        d.rebase();
        // 50 packets later and a second on, the same source again.
        let next = d.rewrite(10, 150, 99_000, t + Duration::from_secs(1));
        assert_eq!(next.seq, last.seq.wrapping_add(1));
        assert_eq!(next.ts.wrapping_sub(last.ts), 90_000);
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_newer(1, 65_535));
        assert!(!seq_newer(65_535, 1));
        assert!(!seq_newer(5, 5));
    }

    proptest::proptest! {
        #[test]
        fn switching_sources_never_breaks_the_sequence(
            runs in proptest::collection::vec((proptest::num::u16::ANY, proptest::num::u32::ANY, 1u16..50), 1..20)
        ) {
            let mut d = Munger::new(9, 90_000);
            let mut now = Instant::now();
            let mut prev: Option<u16> = None;
            // Each run is another publisher with numbers of its own.
            for (src, (seq0, ts0, n)) in runs.into_iter().enumerate() {
                for i in 0..n {
                    now += Duration::from_millis(10);
                    let out = d.rewrite(src as u32, seq0.wrapping_add(i), ts0.wrapping_add(u32::from(i) * 900), now);
                    if let Some(p) = prev {
                        proptest::prop_assert_eq!(out.seq, p.wrapping_add(1));
                    }
                    prev = Some(out.seq);
                }
            }
        }
    }
}
