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
//! After a fall the estimate climbs back slowly: GCC goes up by a packet a
//! round trip near the rate it last fell from. So when the allocator wants
//! more than the estimate, the connection probes (ADR 0029): for a moment
//! it sends at a higher rate, padding on top of the media, and the rate at
//! which the client's feedback shows those packets arrived becomes the
//! estimate if it is higher. A probe goes at most to twice the estimate;
//! one that finds no more room is followed by the next only after a wait
//! that doubles, up to [`PROBE_BACKOFF_MAX`].
//!
//! The sent packets are kept in a ring indexed by their number, so sending
//! one costs a store, and a client's feedback can name only what was sent
//! lately. Nothing here reads a clock.

use std::time::{Duration, Instant};

use rtc::interceptor::{
    convert_twcc, OveruseDetector, PacketReport, RateCalculator, RateControlState, RateController,
    SlopeEstimator, Usage,
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
/// The estimate grows to at most this multiple of what arrives, plus this
/// many bits per second.
const THROUGHPUT_FACTOR: f64 = 1.5;
const THROUGHPUT_MARGIN: f64 = 10_000.0;

/// How long a probe sends at its rate: long enough for a short link's
/// queue to show it, short enough that a link with no more room is
/// delayed only for a moment.
const PROBE_DURATION: Duration = Duration::from_millis(300);
/// How often padding is sent while a probe runs.
const PROBE_PACING: Duration = Duration::from_millis(5);
/// A probe goes at most to this multiple of the estimate.
const PROBE_FACTOR: f64 = 2.0;
/// The allocator must want this much more than the estimate for a probe.
const PROBE_WANT_FACTOR: f64 = 1.1;
/// A probe that measured this share of its rate found the path carrying
/// all of it.
const PROBE_CARRIED: f64 = 0.9;
/// After a probe whose whole rate arrived, the next may come after this
/// (the media first grows into the new estimate); after one that found
/// where the path ends, or found nothing, after a wait that doubles from
/// the first to the last.
const PROBE_AFTER_SUCCESS: Duration = Duration::from_millis(500);
const PROBE_BACKOFF_MIN: Duration = Duration::from_secs(1);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Feedback on a probe's packets is waited for at most this long after it
/// ends; what came by then is judged.
const PROBE_WAIT: Duration = Duration::from_millis(500);
/// A probe's result is believed when at least this many of its packets
/// were reported and this share of them arrived.
const PROBE_MIN_PACKETS: u32 = 5;
const PROBE_MIN_ARRIVED: f64 = 0.8;
/// The biggest padding packet: RTP padding says its length in one byte.
pub const PADDING_MAX: usize = 255;

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
    /// The probe it went out in (see [`Probe::id`]), 0 for none.
    probe: u8,
}

/// A probe: what it aims at, and what the client's feedback says of the
/// packets sent while it ran.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// Numbers probes apart in the ring, 1 to 255.
    id: u8,
    started: Instant,
    until: Instant,
    /// The rate it sends at, media and padding together, in bits per second.
    rate: f64,
    /// Bytes sent in it so far.
    bytes: u64,
    /// The last packet it sent, by its place in the ring's count.
    last: Option<u64>,
    /// Reported: packets, those that arrived, and the extent of both in
    /// time and bytes.
    reported: u32,
    arrived: u32,
    departures: Option<(u64, u64)>,
    /// The bytes of the packets reported, less the last to leave.
    sent_bytes: u64,
    last_departed_size: u64,
    arrivals: Option<(Duration, Duration)>,
    /// The bytes of the packets that arrived, less the first to arrive.
    arrived_bytes: u64,
    first_arrived_size: u64,
    /// The feedback on its last packet came.
    heard_last: bool,
    /// The delay half saw the path overused while it ran: it found a
    /// queue, not room, whatever the rates say (a short link's burst
    /// allowance lets the first of a probe through at any rate).
    overused: bool,
}

impl Probe {
    /// The rate it measured: the lower of the rates its packets left and
    /// arrived at, and where they arrived markedly slower than they left,
    /// a little under that (the path's room, found); `None` when too
    /// little of it was heard.
    fn result(&self) -> Option<f64> {
        let ((first_out, last_out), (first_in, last_in)) = (self.departures?, self.arrivals?);
        if self.overused
            || self.reported < PROBE_MIN_PACKETS
            || f64::from(self.arrived) < PROBE_MIN_ARRIVED * f64::from(self.reported)
        {
            return None;
        }
        let sent_secs = (last_out - first_out) as f64 / 1e6;
        let received_secs = (last_in - first_in).as_secs_f64();
        if sent_secs <= 0.0 || received_secs <= 0.0 {
            return None;
        }
        let sent = (self.sent_bytes - self.last_departed_size) as f64 * 8.0 / sent_secs;
        let received = (self.arrived_bytes - self.first_arrived_size) as f64 * 8.0 / received_secs;
        Some(if received < 0.9 * sent {
            0.95 * received
        } else {
            sent.min(received)
        })
    }
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
    /// The probe running or waiting for its feedback.
    probe: Option<Probe>,
    /// The last probe's number, and when the next may start.
    probe_id: u8,
    next_probe: Option<Instant>,
    /// The wait after the next probe that finds no more room.
    probe_backoff: Duration,
    /// Probes sent, and those that raised the estimate.
    probes: (u64, u64),
    /// When a running probe's padding is next due, or its feedback judged.
    timer: Option<Instant>,
    /// The bitrate the client's last REMB named: the estimate of a client
    /// that sends no transport-wide feedback.
    remb: Option<u64>,
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
            probe: None,
            probe_id: 0,
            next_probe: None,
            probe_backoff: PROBE_BACKOFF_MIN,
            probes: (0, 0),
            timer: None,
            remb: None,
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
        let mut probe = 0;
        if let Some(p) = self.probe.as_mut().filter(|p| now < p.until) {
            p.bytes += size as u64;
            p.last = Some(self.next);
            probe = p.id;
        }
        self.sent[self.next as usize % RING] = Sent {
            departure_us: now.saturating_duration_since(base).as_micros() as u64,
            ssrc,
            seq,
            rtp_seq,
            size: size.min(usize::from(u16::MAX)) as u16,
            reported: false,
            probe,
        };
        self.next += 1;
        seq
    }

    /// The allocator wants `wanted` bits per second for this connection at
    /// `now`: where that is more than the estimate, a probe starts, unless
    /// one runs, the last found no more room a short while ago, or the path
    /// is congested or losing much now. True when one started.
    pub fn want(&mut self, now: Instant, wanted: u64) -> bool {
        // Probes are measured by transport-wide feedback alone.
        let Some(estimate) = self.estimate().filter(|_| self.heard).map(|e| e as f64) else {
            return false;
        };
        let wanted = wanted as f64;
        if self.probe.is_some()
            || wanted <= estimate * PROBE_WANT_FACTOR
            || self.next_probe.is_some_and(|at| now < at)
            || self.rate.state() == RateControlState::Decrease
            || self.loss > HIGH_LOSS
        {
            return false;
        }
        self.probe_id = self.probe_id.checked_add(1).unwrap_or(1);
        self.probe = Some(Probe {
            id: self.probe_id,
            started: now,
            until: now + PROBE_DURATION,
            rate: wanted.min(estimate * PROBE_FACTOR).min(MAX_ESTIMATE),
            bytes: 0,
            last: None,
            reported: 0,
            arrived: 0,
            departures: None,
            sent_bytes: 0,
            last_departed_size: 0,
            arrivals: None,
            arrived_bytes: 0,
            first_arrived_size: 0,
            heard_last: false,
            overused: false,
        });
        self.probes.0 += 1;
        self.timer = Some(now);
        true
    }

    /// How many bytes of padding a running probe wants sent at `now`, to
    /// keep its rate; 0 when none runs.
    pub fn padding(&self, now: Instant) -> usize {
        let Some(p) = self.probe.filter(|p| now < p.until) else {
            return 0;
        };
        let due = p.rate * now.saturating_duration_since(p.started).as_secs_f64() / 8.0;
        // One pacing step ahead, so the rate holds between the loop's turns.
        let ahead = p.rate * PROBE_PACING.as_secs_f64() / 8.0;
        (due + ahead - p.bytes as f64).max(0.0) as usize
    }

    /// When padding is next due while a probe runs, or its feedback is
    /// to be judged after.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Moves a probe on at `now`, once its padding is sent: it goes on
    /// sending, or waits for its feedback, or is judged once the feedback
    /// came or was waited for long enough.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(p) = self.probe else {
            self.timer = None;
            return;
        };
        if now < p.until {
            self.timer = Some((now + PROBE_PACING).min(p.until));
            return;
        }
        if !p.heard_last && now < p.until + PROBE_WAIT {
            self.timer = Some(p.until + PROBE_WAIT);
            return;
        }
        self.timer = None;
        self.probe = None;
        let estimate = self.rate.target().min(self.loss_target);
        tracing::debug!(
            rate = p.rate as u64,
            found = p.result().map(|r| r as u64),
            estimate = estimate as u64,
            overused = p.overused,
            "a probe for bandwidth ends"
        );
        let found = p.result();
        if let Some(found) = found.filter(|&r| r > estimate) {
            let found = found.clamp(MIN_ESTIMATE, MAX_ESTIMATE);
            // The path carried it: the delay half starts again from there,
            // and the loss half is not lower.
            self.rate = RateController::new(found, MIN_ESTIMATE, MAX_ESTIMATE);
            self.loss_target = self.loss_target.max(found);
            self.probes.1 += 1;
        }
        if found.is_some_and(|r| r >= PROBE_CARRIED * p.rate) {
            // All it asked for arrived: there may be more.
            self.probe_backoff = PROBE_BACKOFF_MIN;
            self.next_probe = Some(now + PROBE_AFTER_SUCCESS);
        } else {
            // It found where the path ends (or nothing): the next probe
            // waits, longer each time.
            self.next_probe = Some(now + self.probe_backoff);
            self.probe_backoff = (self.probe_backoff * 2).min(PROBE_BACKOFF_MAX);
        }
    }

    /// Probes sent, and those that raised the estimate.
    pub fn probes(&self) -> (u64, u64) {
        self.probes
    }

    /// Takes a client's feedback received at `now`.
    pub fn feedback(&mut self, now: Instant, feedback: &TransportLayerCc) {
        let mut reports = std::mem::take(&mut self.reports);
        reports.clear();
        let (Some(base), false) = (self.base, self.sent.is_empty()) else {
            return;
        };
        // The loss counted: not of what a probe sent, whose losses say the
        // probe went too far (its result), not that the link loses.
        let (mut lost, mut counted) = (0usize, 0usize);
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
            if sent.probe == 0 {
                counted += 1;
                lost += usize::from(!ack.arrived);
            }
            if let Some(p) = self.probe.as_mut().filter(|p| p.id == sent.probe) {
                let size = u64::from(sent.size);
                p.reported += 1;
                p.heard_last |= p.last == Some(id);
                let out = sent.departure_us;
                match p.departures {
                    Some((first, last)) if out >= last => {
                        p.departures = Some((first, out));
                        p.last_departed_size = size;
                    }
                    Some((first, last)) => p.departures = Some((first.min(out), last)),
                    None => {
                        p.departures = Some((out, out));
                        p.last_departed_size = size;
                    }
                }
                p.sent_bytes += size;
                if let (true, Some(at)) = (ack.arrived, ack.arrival) {
                    p.arrived += 1;
                    p.arrived_bytes += size;
                    match p.arrivals {
                        Some((first, last)) if at < first => {
                            p.arrivals = Some((at, last));
                            p.first_arrived_size = size;
                        }
                        Some((first, last)) => p.arrivals = Some((first, last.max(at))),
                        None => {
                            p.arrivals = Some((at, at));
                            p.first_arrived_size = size;
                        }
                    }
                }
            }
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
        if let Some(p) = self.probe.filter(|p| p.heard_last && now >= p.until) {
            self.timer = Some(now.max(p.until));
        }
        reports.sort_by_key(|r| r.id);
        if !reports.is_empty() {
            self.take(now, &reports, (lost, counted));
            self.heard = true;
        }
        self.reports = reports;
    }

    /// One batch of reports, in the order the packets were sent, and of
    /// those counted for loss, how many were lost.
    fn take(&mut self, now: Instant, reports: &[PacketReport], (lost, counted): (usize, usize)) {
        let mut usage = self.detector.usage();
        for report in reports {
            if report.arrived {
                self.received.add(now, report.size);
            }
            if let Some(trend) = self.slope.accumulate(report) {
                usage = self.detector.update(trend.at, trend.estimate_ms);
                if usage == Usage::Over {
                    if let Some(p) = self.probe.as_mut().filter(|p| now >= p.started) {
                        p.overused = true;
                    }
                }
            }
        }
        let received = self.received.rate_bits_per_second(now);
        let before = self.rate.target();
        self.rate.update(now, usage, received);
        if self.rate.target() < before {
            tracing::debug!(
                from = before as u64,
                to = self.rate.target() as u64,
                received = received.map(|r| r as u64),
                "the path's delay grows: the estimate comes down"
            );
        }
        if counted > 0 {
            let batch = lost as f64 / counted as f64;
            self.loss += LOSS_WEIGHT * (batch - self.loss);
        }
        let since = self
            .loss_changed
            .map(|at| now.saturating_duration_since(at));
        if since.is_some_and(|s| s < LOSS_INTERVAL) {
            return;
        }
        let elapsed = since.unwrap_or(LOSS_INTERVAL).min(Duration::from_secs(1));
        self.loss_target = if self.loss > HIGH_LOSS {
            tracing::debug!(
                loss = self.loss,
                from = self.loss_target as u64,
                "the path loses much: the estimate comes down"
            );
            self.loss_target * (1.0 - 0.5 * self.loss)
        } else {
            // Not above what the path is shown to carry by delay, and
            // while the media sends less than the estimate, not above half
            // as much again as arrives (as libwebrtc's AIMD): an estimate
            // that climbed while little was sent would let the allocator
            // send far more than the path has shown it carries. A probe
            // shows it instead.
            let arrives = received.map_or(0.0, |r| THROUGHPUT_FACTOR * r + THROUGHPUT_MARGIN);
            (self.loss_target * LOSS_INCREASE.powf(elapsed.as_secs_f64()))
                .min(self.rate.target())
                .min(arrives.max(self.loss_target))
        }
        .clamp(MIN_ESTIMATE, MAX_ESTIMATE);
        self.loss_changed = Some(now);
    }

    /// The client's REMB (receiver estimated maximum bitrate) named
    /// `bitrate` bits per second: the estimate while no transport-wide
    /// feedback came, within the same bounds.
    pub fn remb(&mut self, bitrate: u64) {
        self.remb = Some(bitrate.clamp(MIN_ESTIMATE as u64, MAX_ESTIMATE as u64));
    }

    /// The estimate in bits per second, once the client's feedback came:
    /// from transport-wide feedback, or failing that from its REMB.
    pub fn estimate(&self) -> Option<u64> {
        let estimate = self.rate.target().min(self.loss_target);
        if self.heard {
            return Some(estimate as u64);
        }
        self.remb
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

    /// The client's feedback on `batch` (each packet's transport-wide number
    /// and when it arrived, in µs, or `None`): the reference time in 64 ms
    /// ticks, then each arrival as a delta from the one before. Nothing goes
    /// while none of them arrived.
    fn report(c: &mut Congestion, now: Instant, batch: &[(u16, Option<i64>)]) {
        let Some(first) = batch.iter().find_map(|(_, at)| *at) else {
            return;
        };
        let reference = first / 64_000;
        let mut before = reference * 64_000;
        let arrivals: Vec<Option<i64>> = batch
            .iter()
            .map(|(_, at)| {
                let at = (*at)?;
                let d = at - before;
                before = at;
                Some(d)
            })
            .collect();
        c.feedback(now, &feedback(batch[0].0, &arrivals, reference as u32));
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
                let batch: Vec<(u16, Option<i64>)> = pending
                    .drain(..arrived)
                    .map(|(seq, at)| {
                        let lost = lose_every.is_some_and(|n| u64::from(seq) % n == 0);
                        (seq, (!lost).then_some(at))
                    })
                    .collect();
                report(c, now, &batch);
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

    /// A path of `path_bps` with a queue of at most 300 ms (what does not
    /// fit is dropped, as `tc`'s tbf does), and a client that reports every
    /// 100 ms what arrived (the report reaching the server 20 ms later).
    struct Path {
        bps: u64,
        free_us: u64,
        pending: Vec<(u16, i64)>,
        /// Bytes that went in, media and padding.
        sent: u64,
        padding: u64,
    }

    impl Path {
        fn new(bps: u64) -> Path {
            Path {
                bps,
                free_us: 0,
                pending: Vec::new(),
                sent: 0,
                padding: 0,
            }
        }

        fn send(&mut self, c: &mut Congestion, now: Instant, at_us: u64, size: usize) {
            let seq = c.sent(now, 7, 0, size);
            self.sent += size as u64;
            let free = self.free_us.max(at_us);
            if free - at_us > 300_000 {
                // Lost: it arrives "never", reported along with the others.
                self.pending.push((seq, -1));
                return;
            }
            self.free_us = free + (size as u64 * 8 * 1_000_000) / self.bps;
            self.pending.push((seq, self.free_us as i64 + 20_000));
        }

        fn report(&mut self, c: &mut Congestion, now: Instant, at_us: u64) {
            let arrived = self
                .pending
                .iter()
                .take_while(|(_, at)| *at <= at_us as i64 - 20_000)
                .count();
            // A lost packet is reported once a later one arrived.
            if arrived == 0 {
                return;
            }
            let batch: Vec<(u16, Option<i64>)> = self
                .pending
                .drain(..arrived)
                .map(|(seq, at)| (seq, (at >= 0).then_some(at)))
                .collect();
            report(c, now, &batch);
        }
    }

    /// Runs `secs` of media at `media_bps` in 1,200-byte packets over
    /// `path`, telling the estimate every 250 ms that `wanted` is wanted
    /// (where given), and sending the padding its probes ask for.
    fn run_probing(
        c: &mut Congestion,
        path: &mut Path,
        start: Instant,
        from_ms: u64,
        secs: u64,
        media_bps: u64,
        wanted: Option<u64>,
    ) -> u64 {
        let per_packet_us = (1_200 * 8 * 1_000_000) / media_bps;
        let mut next_media = from_ms * 1_000;
        for ms in from_ms..from_ms + secs * 1_000 {
            let at_us = ms * 1_000;
            let now = start + Duration::from_micros(at_us);
            while next_media <= at_us {
                path.send(c, now, at_us, 1_200);
                next_media += per_packet_us;
            }
            if let (Some(w), 0) = (wanted, ms % 250) {
                c.want(now, w);
            }
            if c.poll_timeout().is_some_and(|t| t <= now) {
                let mut owed = c.padding(now);
                while owed > 0 {
                    path.send(c, now, at_us, PADDING_MAX + 40);
                    path.padding += (PADDING_MAX + 40) as u64;
                    owed = owed.saturating_sub(PADDING_MAX + 40);
                }
                c.handle_timeout(now);
            }
            if ms % 100 == 0 {
                path.report(c, now, at_us);
            }
        }
        c.estimate().unwrap()
    }

    #[test]
    fn after_a_fall_probes_find_the_room_a_path_has_again() {
        let t = Instant::now();
        // Five seconds on a path of 300 kbit/s bring the estimate down.
        let mut c = Congestion::new();
        let mut path = Path::new(300_000);
        let low = run_probing(&mut c, &mut path, t, 0, 5, 1_000_000, None);
        assert!(low < 400_000, "a path of 300 kbit/s: {low}");
        // The path opens to 20 Mbit/s; the media, cut to fit, sends
        // 250 kbit/s. Without probes the estimate climbs slowly.
        let mut slow = Congestion::new();
        let mut slow_path = Path::new(300_000);
        run_probing(&mut slow, &mut slow_path, t, 0, 5, 1_000_000, None);
        slow_path.bps = 20_000_000;
        let unprobed = run_probing(&mut slow, &mut slow_path, t, 5_000, 5, 250_000, None);
        assert!(unprobed < 800_000, "without probes: {unprobed}");
        assert_eq!(slow.probes(), (0, 0));
        // With them, 3 Mbit/s wanted is found within 6 s (the first once
        // the loss the fall left has faded), and then no more probes go.
        path.bps = 20_000_000;
        let probed = run_probing(&mut c, &mut path, t, 5_000, 6, 250_000, Some(3_000_000));
        assert!(probed >= 3_000_000 * 10 / 11, "with probes: {probed}");
        let (sent, raised) = c.probes();
        assert!(
            raised >= 2 && sent <= raised + 1,
            "probes: {sent}, raised: {raised}"
        );
        let padding = path.padding;
        run_probing(&mut c, &mut path, t, 11_000, 2, 250_000, Some(3_000_000));
        assert_eq!(
            c.probes().0,
            sent,
            "no probe once the estimate is what is wanted"
        );
        assert_eq!(path.padding, padding);
    }

    #[test]
    fn probes_of_a_path_with_no_more_room_are_few_and_raise_nothing() {
        let t = Instant::now();
        let mut c = Congestion::new();
        let mut path = Path::new(300_000);
        run_probing(&mut c, &mut path, t, 0, 5, 1_000_000, None);
        let (sent_before, padding_before) = (path.sent, path.padding);
        // 20 s of 200 kbit/s media on it, 3 Mbit/s wanted.
        let estimate = run_probing(&mut c, &mut path, t, 5_000, 20, 200_000, Some(3_000_000));
        // The estimate fell far under the path's rate (a burst of loss),
        // and probes bring it back to about that rate, never far above:
        // an estimate grows to at most half as much again as arrives.
        assert!(
            (250_000..600_000).contains(&estimate),
            "a path of 300 kbit/s: {estimate}"
        );
        let (probes, raised) = c.probes();
        // Once at the path's rate they find nothing: 1 s, 2 s, then every
        // 4 s apart.
        assert!(probes <= raised + 5, "probes: {probes}, raised: {raised}");
        // The padding is under a quarter of what was sent (media of 200
        // kbit/s, probes of twice the estimate for 300 ms every 4 s).
        let padding = path.padding - padding_before;
        let total = path.sent - sent_before;
        assert!(
            padding * 100 / total < 25,
            "padding {padding} of {total} bytes"
        );
    }

    #[test]
    fn nothing_is_probed_without_feedback_or_while_the_estimate_is_enough() {
        let t = Instant::now();
        let mut c = Congestion::new();
        assert!(!c.want(t, 10_000_000), "no estimate yet");
        let mut path = Path::new(20_000_000);
        run_probing(&mut c, &mut path, t, 0, 3, 500_000, Some(600_000));
        assert_eq!(c.probes().0, 0);
        assert_eq!(path.padding, 0);
        assert_eq!(c.padding(t + Duration::from_secs(3)), 0);
    }

    #[test]
    fn a_client_without_transport_wide_feedback_is_estimated_by_its_remb() {
        let t = Instant::now();
        let mut c = Congestion::new();
        assert_eq!(c.estimate(), None);
        c.remb(420_000);
        assert_eq!(c.estimate(), Some(420_000));
        c.remb(1);
        assert_eq!(c.estimate(), Some(MIN_ESTIMATE as u64), "within the bounds");
        // REMB alone is not probed for.
        assert!(!c.want(t, 10_000_000));
        // Transport-wide feedback, once it comes, is the estimate.
        let mut path = Path::new(20_000_000);
        run_probing(&mut c, &mut path, t, 0, 2, 500_000, None);
        assert!(c.estimate().unwrap() > 200_000);
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
