//! Receive statistics of one stream and the reception report built from
//! them (RFC 3550 §6.4.1): extended highest sequence number, cumulative and
//! interval loss (A.3), interarrival jitter (A.8), and the last sender
//! report with the delay since it, from which the sender reckons the round
//! trip.

use std::time::Instant;

use rtc::rtcp::reception_report::ReceptionReport;

/// Extended numbers start one cycle up, so that one that comes before the
/// first packet's stays positive.
const FIRST_CYCLE: i64 = 1 << 16;

/// The largest count of lost packets a report carries (24 bits, signed).
const MAX_LOST: i64 = 0x7f_ffff;

#[derive(Debug)]
pub(super) struct ReceiveStats {
    ssrc: u32,
    clock_rate: u32,
    /// Arrival times count from here, in the stream's clock.
    epoch: Instant,
    /// Extended numbers of the first and the newest packet.
    base: i64,
    newest: i64,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    /// Relative transit time of the last packet, in the stream's clock.
    transit: Option<u32>,
    /// Interarrival jitter in the stream's clock, times 16.
    jitter: u64,
    /// The middle of the last sender report's NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Statistics of stream `ssrc` from its first packet, `seq`, at `now`.
    pub(super) fn new(ssrc: u32, clock_rate: u32, now: Instant, seq: u16) -> ReceiveStats {
        let first = FIRST_CYCLE + i64::from(seq);
        ReceiveStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            epoch: now,
            base: first,
            newest: first - 1,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
            last_sr: None,
        }
    }

    /// The extended number of `seq`: the one nearest the newest.
    pub(super) fn extend(&self, seq: u16) -> i64 {
        self.newest + i64::from(seq.wrapping_sub(self.newest as u16) as i16)
    }

    /// Packet `seq` (extended) with RTP time `ts` arrived at `now`. A
    /// repaired packet counts as received but not for jitter, its delay
    /// being the repair's.
    pub(super) fn received(&mut self, now: Instant, seq: i64, ts: u32, repaired: bool) {
        self.received += 1;
        if seq > self.newest {
            self.newest = seq;
        }
        if seq < self.base {
            self.base = seq;
        }
        if repaired {
            return;
        }
        let elapsed = now.saturating_duration_since(self.epoch);
        let arrival = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(ts);
        if let Some(last) = self.transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J += (|D| - J) / 16, with J kept times 16 (A.8).
            self.jitter = self.jitter + d - ((self.jitter + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// A sender report with NTP time `ntp` came at `now`.
    pub(super) fn sender_report(&mut self, now: Instant, ntp: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// Whether a packet came since the last report.
    pub(super) fn heard(&self) -> bool {
        self.received > self.received_prior
    }

    /// The report on the stream at `now`, which starts a new interval.
    pub(super) fn report(&mut self, now: Instant) -> ReceptionReport {
        let expected = self.newest - self.base + 1;
        let lost = (expected - self.received as i64).clamp(0, MAX_LOST);
        let expected_interval = expected - self.expected_prior;
        let received_interval = (self.received - self.received_prior) as i64;
        let lost_interval = expected_interval - received_interval;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sender_report, delay) = self.last_sr.map_or((0, 0), |(lsr, at)| {
            // In units of 1/65536 s.
            let since = now.saturating_duration_since(at);
            let delay = (since.as_micros() * 65_536 / 1_000_000).min(u128::from(u32::MAX));
            (lsr, delay as u32)
        });
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost: lost as u32,
            last_sequence_number: (self.newest - FIRST_CYCLE) as u32,
            jitter: (self.jitter >> 4) as u32,
            last_sender_report,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stats(now: Instant, first: u16) -> ReceiveStats {
        ReceiveStats::new(5, 90_000, now, first)
    }

    #[test]
    fn loss_is_counted_in_all_and_in_the_interval() {
        let t0 = Instant::now();
        let mut s = stats(t0, 100);
        for seq in (100u16..200).filter(|s| s % 10 != 0 || *s == 100) {
            let ext = s.extend(seq);
            s.received(t0, ext, 0, false);
        }
        let r = s.report(t0);
        // 9 of 100 lost: 9 * 256 / 100.
        assert_eq!((r.total_lost, r.fraction_lost), (9, 23));
        assert_eq!(r.last_sequence_number, 199);
        assert!(!s.heard());
        for seq in 200u16..300 {
            let ext = s.extend(seq);
            s.received(t0, ext, 0, false);
        }
        let r = s.report(t0);
        assert_eq!((r.total_lost, r.fraction_lost), (9, 0), "none lost since");
    }

    #[test]
    fn numbers_extend_across_a_wrap_and_count_cycles() {
        let t0 = Instant::now();
        let mut s = stats(t0, 65_530);
        for seq in (65_530u16..=65_535).chain(0..10) {
            let ext = s.extend(seq);
            s.received(t0, ext, 0, false);
        }
        let r = s.report(t0);
        assert_eq!(r.last_sequence_number, (1 << 16) + 9);
        assert_eq!(r.total_lost, 0);
        // A late packet from before the wrap stays before it.
        assert_eq!(s.extend(65_533), FIRST_CYCLE + 65_533);
    }

    #[test]
    fn jitter_follows_the_spread_of_arrivals() {
        let t0 = Instant::now();
        let mut steady = stats(t0, 0);
        let mut uneven = stats(t0, 0);
        for i in 0..200u32 {
            let ts = i * 3_000;
            let at = t0 + Duration::from_millis(u64::from(i) * 33);
            let ext = steady.extend(i as u16);
            steady.received(at, ext, ts, false);
            let wobble = Duration::from_millis(if i % 2 == 0 { 0 } else { 10 });
            uneven.received(at + wobble, ext, ts, false);
        }
        let steady = steady.report(t0).jitter;
        let uneven = uneven.report(t0).jitter;
        // 33 ms apart in arrival against 3,000 ticks (33.3 ms): under a
        // tick of 90 kHz per packet on average.
        assert!(steady < 100, "steady {steady}");
        // Alternating 10 ms: |D| is about 900 ticks each time.
        assert!((700..1_100).contains(&uneven), "uneven {uneven}");
    }

    #[test]
    fn the_report_names_the_last_sender_report_and_the_time_since() {
        let t0 = Instant::now();
        let mut s = stats(t0, 0);
        s.received(t0, s.extend(0), 0, false);
        assert_eq!(s.report(t0).last_sender_report, 0);
        s.sender_report(t0, 0x1234_5678_9abc_def0);
        let r = s.report(t0 + Duration::from_millis(500));
        assert_eq!(r.last_sender_report, 0x5678_9abc);
        assert_eq!(r.delay, 32_768);
    }
}
