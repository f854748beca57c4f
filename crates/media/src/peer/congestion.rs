//! A subscriber connection's send-side bandwidth estimate: every packet the
//! server sends on it carries a transport-wide sequence number, the client
//! says when each arrived (transport-wide congestion control feedback), and
//! the delay those arrivals show feeds the delay-based half of GCC, built
//! from `rtc-interceptor`'s parts (arrival groups and trend, overuse
//! detector, AIMD rate controller), and the loss they show feeds a loss
//! half of Roost's own: above 10% lost it comes down by half the share
//! lost, below it goes up as GCC's does (8% a second). GCC's own loss half
//! holds while loss stays between 2% and 10%, so a link that loses a few
//! percent at random (radio) would stay at whatever it fell to once
//! (ADR 0026). The estimate is the lower of the two halves; the SFU's
//! allocator picks simulcast layers within it.
//!
//! The sent packets are kept in a ring indexed by their number, so sending
//! one costs a store, and a client's feedback can name only what was sent
//! lately. Nothing here reads a clock.

use std::time::{Duration, Instant};

use rtc::interceptor::{
    convert_twcc, OveruseDetector, PacketReport, RateCalculator, RateController, SlopeEstimator,
};
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Packets remembered: half a second at 2,000 packets a second, which the
/// client's feedback (every 50 to 100 ms) covers; 24 KiB a connection,
/// taken when its first numbered packet goes.
const RING: usize = 1_024;

/// Where the estimate starts, and its bounds, in bits per second: a start
/// that carries a small layer of a few cameras, and a floor under which
/// video is not worth sending.
pub const INITIAL_ESTIMATE: u64 = 1_000_000;
const MIN_ESTIMATE: f64 = 50_000.0;
const MAX_ESTIMATE: f64 = 50_000_000.0;

/// Feedback about a packet sent longer ago than this is not believed: its
/// slot may hold another packet by now.
const FEEDBACK_AGE: Duration = Duration::from_secs(1);

/// Loss above which the estimate comes down for it.
const HIGH_LOSS: f64 = 0.10;
/// The weight of each batch's loss in the average.
const LOSS_WEIGHT: f64 = 0.3;
/// The loss half changes at most this often, and goes up by this much a
/// second.
const LOSS_INTERVAL: Duration = Duration::from_millis(200);
const LOSS_INCREASE: f64 = 1.08;

#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// When it left, in microseconds after the connection's first packet.
    departure_us: u64,
    ssrc: u32,
    /// Its transport-wide number.
    seq: u16,
    rtp_seq: u16,
    size: u16,
    /// Reported already: a later report of it is not counted twice.
    reported: bool,
}

/// One connection's estimate.
pub struct Congestion {
    next: u64,
    /// The first packet's departure, from which the others' count.
    base: Option<Instant>,
    sent: Vec<Sent>,
    slope: SlopeEstimator,
    detector: OveruseDetector,
    received: RateCalculator,
    rate: RateController,
    /// The share of packets lost, averaged over the feedback batches.
    loss: f64,
    /// The loss half's estimate, and when it last changed.
    loss_target: f64,
    loss_changed: Option<Instant>,
    /// Feedback came: the estimate means something.
    heard: bool,
    reports: Vec<PacketReport>,
}

impl Default for Congestion {
    fn default() -> Congestion {
        Congestion::new()
    }
}

impl Congestion {
    pub fn new() -> Congestion {
        Congestion {
            next: 0,
            base: None,
            sent: Vec::new(),
            slope: SlopeEstimator::new(),
            detector: OveruseDetector::new(),
            received: RateCalculator::default(),
            rate: RateController::new(INITIAL_ESTIMATE as f64, MIN_ESTIMATE, MAX_ESTIMATE),
            loss: 0.0,
            loss_target: INITIAL_ESTIMATE as f64,
            loss_changed: None,
            heard: false,
            reports: Vec::new(),
        }
    }

    /// Numbers a packet of `size` bytes (stream `ssrc`, RTP number
    /// `rtp_seq`) sent at `now`: the transport-wide number it carries.
    pub fn sent(&mut self, now: Instant, ssrc: u32, rtp_seq: u16, size: usize) -> u16 {
        if self.sent.is_empty() {
            self.sent = vec![Sent::default(); RING];
        }
        let base = *self.base.get_or_insert(now);
        let seq = self.next as u16;
        self.sent[self.next as usize % RING] = Sent {
            departure_us: now.saturating_duration_since(base).as_micros() as u64,
            ssrc,
            seq,
            rtp_seq,
            size: size.min(usize::from(u16::MAX)) as u16,
            reported: false,
        };
        self.next += 1;
        seq
    }

    /// Takes a client's feedback received at `now`.
    pub fn feedback(&mut self, now: Instant, feedback: &TransportLayerCc) {
        let mut reports = std::mem::take(&mut self.reports);
        reports.clear();
        let (Some(base), false) = (self.base, self.sent.is_empty()) else {
            return;
        };
        for ack in convert_twcc(feedback) {
            // The packet with this number most lately sent, how many
            // packets back it went (1: the last), and its number in full.
            let back = u64::from((self.next as u16).wrapping_sub(ack.sequence_number));
            if back == 0 || back > RING as u64 || back > self.next {
                continue;
            }
            let id = self.next - back;
            let sent = &mut self.sent[id as usize % RING];
            let departure = base + Duration::from_micros(sent.departure_us);
            let fresh = now.saturating_duration_since(departure) <= FEEDBACK_AGE;
            if sent.seq != ack.sequence_number || sent.reported || !fresh {
                continue;
            }
            sent.reported = ack.arrived;
            reports.push(PacketReport {
                ssrc: sent.ssrc,
                id,
                rtp_sequence_number: sent.rtp_seq,
                is_twcc: true,
                twcc_sequence_number: ack.sequence_number,
                size: usize::from(sent.size),
                arrived: ack.arrived,
                departure,
                arrival: ack.arrival,
                ecn: Ecn::NotEct,
            });
        }
        reports.sort_by_key(|r| r.id);
        if !reports.is_empty() {
            self.take(now, &reports);
            self.heard = true;
        }
        self.reports = reports;
    }

    /// One batch of reports, in the order the packets were sent.
    fn take(&mut self, now: Instant, reports: &[PacketReport]) {
        let mut usage = self.detector.usage();
        for report in reports {
            if report.arrived {
                self.received.add(now, report.size);
            }
            if let Some(trend) = self.slope.accumulate(report) {
                usage = self.detector.update(trend.at, trend.estimate_ms);
            }
        }
        let received = self.received.rate_bits_per_second(now);
        self.rate.update(now, usage, received);
        let lost = reports.iter().filter(|r| !r.arrived).count();
        let batch = lost as f64 / reports.len() as f64;
        self.loss += LOSS_WEIGHT * (batch - self.loss);
        let since = self
            .loss_changed
            .map(|at| now.saturating_duration_since(at));
        if since.is_some_and(|s| s < LOSS_INTERVAL) {
            return;
        }
        let elapsed = since.unwrap_or(LOSS_INTERVAL).min(Duration::from_secs(1));
        self.loss_target = if self.loss > HIGH_LOSS {
            self.loss_target * (1.0 - 0.5 * self.loss)
        } else {
            // Not above what the path is shown to carry by delay.
            (self.loss_target * LOSS_INCREASE.powf(elapsed.as_secs_f64())).min(self.rate.target())
        }
        .clamp(MIN_ESTIMATE, MAX_ESTIMATE);
        self.loss_changed = Some(now);
    }

    /// The estimate in bits per second, once the client's feedback came.
    pub fn estimate(&self) -> Option<u64> {
        let estimate = self.rate.target().min(self.loss_target);
        self.heard.then_some(estimate as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc,
    };

    /// Feedback saying packets `base..base+count` arrived `spacing_us`
    /// apart (or, where `lost` says, did not).
    fn feedback(base: u16, arrivals: &[Option<i64>], reference_64ms: u32) -> TransportLayerCc {
        let mut chunks = Vec::new();
        let mut deltas = Vec::new();
        for a in arrivals {
            let symbol = match a {
                None => SymbolTypeTcc::PacketNotReceived,
                Some(d) if (0..=255_000).contains(d) => SymbolTypeTcc::PacketReceivedSmallDelta,
                Some(_) => SymbolTypeTcc::PacketReceivedLargeDelta,
            };
            chunks.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: symbol,
                run_length: 1,
            }));
            if let Some(d) = a {
                deltas.push(RecvDelta {
                    type_tcc_packet: symbol,
                    delta: *d,
                });
            }
        }
        TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: base,
            packet_status_count: arrivals.len() as u16,
            reference_time: reference_64ms,
            fb_pkt_count: 0,
            packet_chunks: chunks,
            recv_deltas: deltas,
        }
    }

    /// Sends `rate_bps` for `secs` in 1,200-byte packets over a path that
    /// carries at most `path_bps` (the rest queues, and arrives late),
    /// with feedback every 100 ms; the estimate at the end.
    fn run(c: &mut Congestion, start: Instant, rate_bps: u64, path_bps: u64, secs: u64) -> u64 {
        run_losing(c, start, rate_bps, path_bps, secs, None)
    }

    /// The same, losing one packet in `lose_every` at random (not for
    /// want of room).
    fn run_losing(
        c: &mut Congestion,
        start: Instant,
        rate_bps: u64,
        path_bps: u64,
        secs: u64,
        lose_every: Option<u64>,
    ) -> u64 {
        let size = 1_200usize;
        let per_packet_us = (size as u64 * 8 * 1_000_000) / rate_bps;
        let drain_us = (size as u64 * 8 * 1_000_000) / path_bps;
        let mut queue_free_us = 0u64;
        let mut pending: Vec<(u16, i64)> = Vec::new();
        let total = secs * 1_000_000 / per_packet_us;
        for n in 0..total {
            let send_us = n * per_packet_us;
            let now = start + Duration::from_micros(send_us);
            let seq = c.sent(now, 7, n as u16, size);
            // The path's queue: a packet leaves it once those before it did.
            queue_free_us = queue_free_us.max(send_us) + drain_us;
            let arrival_us = queue_free_us as i64 + 20_000;
            pending.push((seq, arrival_us));
            // Every 100 ms the client reports what has arrived by then
            // (and the report reaches the server 20 ms later).
            if send_us % 100_000 < per_packet_us {
                let arrived = pending
                    .iter()
                    .take_while(|(_, at)| *at <= send_us as i64 - 20_000)
                    .count();
                if arrived > 0 {
                    let batch: Vec<(u16, i64)> = pending.drain(..arrived).collect();
                    // The reference time in 64 ms ticks, then each arrival
                    // as a delta from the one before.
                    let reference = batch[0].1 / 64_000;
                    let mut before = reference * 64_000;
                    let arrivals: Vec<Option<i64>> = batch
                        .iter()
                        .map(|(seq, at)| {
                            if lose_every.is_some_and(|n| u64::from(*seq) % n == 0) {
                                return None;
                            }
                            let d = at - before;
                            before = *at;
                            Some(d)
                        })
                        .collect();
                    c.feedback(now, &feedback(batch[0].0, &arrivals, reference as u32));
                }
            }
        }
        c.estimate().unwrap()
    }

    #[test]
    fn the_estimate_follows_what_the_path_carries() {
        let t = Instant::now();
        let mut c = Congestion::new();
        assert_eq!(c.estimate(), None, "nothing is known before feedback");
        // 2 Mbit/s into a 300 kbit/s path: the queue grows, the estimate falls.
        let low = run(&mut c, t, 2_000_000, 300_000, 5);
        assert!(low < 600_000, "a path of 300 kbit/s: {low}");
        // 1.5 Mbit/s on a path of 10 Mbit/s: it rises above the start.
        let mut c = Congestion::new();
        let high = run(&mut c, t, 1_500_000, 10_000_000, 5);
        assert!(high > INITIAL_ESTIMATE, "a clear path: {high}");
        // The same path losing 5% at random: not taken for congestion.
        let mut c = Congestion::new();
        let lossy = run_losing(&mut c, t, 1_500_000, 10_000_000, 5, Some(20));
        assert!(lossy > INITIAL_ESTIMATE, "a clear path losing 5%: {lossy}");
        // Losing a third: it comes down.
        let mut c = Congestion::new();
        let losing = run_losing(&mut c, t, 1_500_000, 10_000_000, 5, Some(3));
        assert!(
            losing < INITIAL_ESTIMATE / 2,
            "a path losing a third: {losing}"
        );
    }

    #[test]
    fn feedback_about_packets_never_sent_or_long_gone_is_ignored() {
        let t = Instant::now();
        let mut c = Congestion::new();
        c.feedback(t, &feedback(500, &[Some(1_000), Some(1_000)], 0));
        assert_eq!(c.estimate(), None);
        let seq = c.sent(t, 7, 1, 1_000);
        let late = t + FEEDBACK_AGE + Duration::from_millis(1);
        c.feedback(late, &feedback(seq, &[Some(1_000)], 0));
        assert_eq!(c.estimate(), None);
        // Any feedback at all never panics.
        for base in [0u16, 1_023, 1_024, 65_535] {
            c.feedback(
                t,
                &feedback(base, &[None, Some(-5_000), Some(300_000)], 1 << 23),
            );
        }
    }
}
