//! What a receiver owes its sender, for a publisher connection: receiver
//! reports each [`REPORT_INTERVAL`] ([`reports`]), NACKs for missing video
//! packets ([`nacks`]) and transport-wide congestion feedback ([`twcc`]).
//! Each packet updates plain per-stream state in place; RTCP is written
//! only when something is due, so the per-packet cost is a few counters.
//!
//! Nothing here reads a clock: every call is given `now`.

mod nacks;
mod reports;
mod twcc;

use std::time::{Duration, Instant};

use rtc::rtcp::packet::Packet;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};

use self::nacks::Nacks;
use self::reports::ReceiveStats;
use self::twcc::Arrivals;

/// How often receiver reports go out.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Report blocks one receiver report holds (a 5-bit count).
const BLOCKS_PER_REPORT: usize = 31;

/// The packets of a stream remembered as received, so that one that comes
/// again is known: a second or two of video.
const SEEN: usize = 1_024;

/// How a stream is received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSetup {
    pub ssrc: u32,
    pub clock_rate: u32,
    /// Whether missing packets are asked for.
    pub nack: bool,
}

#[derive(Debug)]
struct Stream {
    setup: StreamSetup,
    /// From its first packet.
    stats: Option<ReceiveStats>,
    nacks: Option<Nacks>,
    /// The extended numbers of the packets received lately, by number
    /// (`i64::MIN` an empty slot); taken with the first packet.
    seen: Vec<i64>,
}

/// The feedback state of one publisher connection.
#[derive(Debug)]
pub struct Reception {
    /// The SSRC this side's feedback names as its sender.
    own_ssrc: u32,
    streams: Vec<Stream>,
    arrivals: Arrivals,
    next_report: Option<Instant>,
    next_twcc: Option<Instant>,
    /// Numbers to ask for, kept to reuse its room.
    asking: Vec<u16>,
}

impl Reception {
    pub fn new(own_ssrc: u32) -> Reception {
        Reception {
            own_ssrc,
            streams: Vec::new(),
            arrivals: Arrivals::default(),
            next_report: None,
            next_twcc: None,
            asking: Vec::new(),
        }
    }

    /// Starts receiving a stream; reports begin a report interval later.
    pub fn bind(&mut self, now: Instant, setup: StreamSetup) {
        self.unbind(setup.ssrc);
        self.streams.push(Stream {
            setup,
            stats: None,
            nacks: setup.nack.then(Nacks::default),
            seen: Vec::new(),
        });
        self.next_report.get_or_insert(now + REPORT_INTERVAL);
    }

    /// Stops receiving stream `ssrc`: nothing more is reported on it.
    pub fn unbind(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.setup.ssrc != ssrc);
        if self.streams.is_empty() {
            self.next_report = None;
        }
    }

    /// A packet of stream `ssrc` came at `now`; `repaired` where it came
    /// again through RTX. A stream not bound is not counted.
    /// Whether the packet is new: one received already (a publisher's
    /// RTX resends the same packets to probe its path, or repairs one that
    /// came after all) is counted, and not to be forwarded again.
    pub fn rtp(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32, repaired: bool) -> bool {
        let Some(stream) = self.streams.iter_mut().find(|s| s.setup.ssrc == ssrc) else {
            return true;
        };
        let stats = stream
            .stats
            .get_or_insert_with(|| ReceiveStats::new(ssrc, stream.setup.clock_rate, now, seq));
        let seq = stats.extend(seq);
        stats.received(now, seq, ts, repaired);
        if let Some(nacks) = stream.nacks.as_mut() {
            nacks.received(now, seq);
        }
        if stream.seen.is_empty() {
            stream.seen = vec![i64::MIN; SEEN];
        }
        let slot = &mut stream.seen[seq.rem_euclid(SEEN as i64) as usize];
        let new = *slot != seq;
        *slot = seq;
        new
    }

    /// A packet with transport-wide sequence number `seq` came at `now`,
    /// on stream `ssrc` (media, repair or padding). Feedback on it is due an
    /// interval after the first arrival not yet reported, so a publisher
    /// that stops sending costs no timer.
    pub fn transport_seq(&mut self, now: Instant, ssrc: u32, seq: u16) {
        self.arrivals.record(now, ssrc, seq);
        self.next_twcc.get_or_insert(now + twcc::INTERVAL);
    }

    /// A sender report on stream `ssrc` with NTP time `ntp` came at `now`.
    pub fn sender_report(&mut self, now: Instant, ssrc: u32, ntp: u64) {
        let stats = self
            .streams
            .iter_mut()
            .find(|s| s.setup.ssrc == ssrc)
            .and_then(|s| s.stats.as_mut());
        if let Some(stats) = stats {
            stats.sender_report(now, ntp);
        }
    }

    /// When feedback is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nacks = self
            .streams
            .iter()
            .filter_map(|s| s.nacks.as_ref().and_then(Nacks::due))
            .min();
        [self.next_report, self.next_twcc, nacks]
            .into_iter()
            .flatten()
            .min()
    }

    /// The feedback due at `now`, appended to `out`: NACKs, then receiver
    /// reports and congestion feedback where their interval has passed.
    pub fn feedback(&mut self, now: Instant, out: &mut Vec<Box<dyn Packet>>) {
        for stream in &mut self.streams {
            let Some(nacks) = stream.nacks.as_mut() else {
                continue;
            };
            self.asking.clear();
            nacks.take_due(now, &mut self.asking);
            if !self.asking.is_empty() {
                out.push(Box::new(TransportLayerNack {
                    sender_ssrc: self.own_ssrc,
                    media_ssrc: stream.setup.ssrc,
                    nacks: nack_pairs_from_sequence_numbers(&self.asking),
                }));
            }
        }
        if self.next_report.is_some_and(|at| at <= now) {
            self.next_report = Some(now + REPORT_INTERVAL);
            let blocks: Vec<_> = self
                .streams
                .iter_mut()
                .filter_map(|s| s.stats.as_mut())
                .filter(|s| s.heard())
                .map(|s| s.report(now))
                .collect();
            for chunk in blocks.chunks(BLOCKS_PER_REPORT) {
                out.push(Box::new(ReceiverReport {
                    ssrc: self.own_ssrc,
                    reports: chunk.to_vec(),
                    ..Default::default()
                }));
            }
        }
        if self.next_twcc.is_some_and(|at| at <= now) {
            self.next_twcc = None;
            if self.arrivals.pending() {
                for f in self.arrivals.feedback(self.own_ssrc) {
                    out.push(Box::new(f));
                }
            }
        }
    }

    /// The streams bound, for tests.
    #[cfg(test)]
    fn stream_ssrcs(&self) -> Vec<u32> {
        self.streams.iter().map(|s| s.setup.ssrc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

    const OWN: u32 = 0xABCD;

    fn video(ssrc: u32) -> StreamSetup {
        StreamSetup {
            ssrc,
            clock_rate: 90_000,
            nack: true,
        }
    }

    fn due(r: &mut Reception, now: Instant) -> Vec<Box<dyn Packet>> {
        let mut out = Vec::new();
        r.feedback(now, &mut out);
        out
    }

    fn of<T: 'static>(packets: &[Box<dyn Packet>]) -> Vec<&T> {
        packets
            .iter()
            .filter_map(|p| p.as_any().downcast_ref::<T>())
            .collect()
    }

    #[test]
    fn a_loss_is_asked_for_at_once_and_reported_each_second() {
        let t0 = Instant::now();
        let mut r = Reception::new(OWN);
        r.bind(t0, video(1));
        r.bind(
            t0,
            StreamSetup {
                nack: false,
                ..video(2)
            },
        );
        for seq in [0u16, 1, 3] {
            r.rtp(t0, 1, seq, 0, false);
            r.rtp(t0, 2, seq, 0, false);
        }
        assert_eq!(r.poll_timeout(), Some(t0), "the NACK is due now");
        let out = due(&mut r, t0);
        let nacks = of::<TransportLayerNack>(&out);
        assert_eq!(nacks.len(), 1, "only the stream that negotiated NACK");
        assert_eq!((nacks[0].sender_ssrc, nacks[0].media_ssrc), (OWN, 1));
        assert_eq!(nacks[0].nacks[0].packet_id, 2);
        assert!(of::<ReceiverReport>(&out).is_empty());

        let second = t0 + REPORT_INTERVAL;
        let out = due(&mut r, second);
        let reports = of::<ReceiverReport>(&out);
        assert_eq!(reports.len(), 1);
        let blocks: Vec<(u32, u32)> = reports[0]
            .reports
            .iter()
            .map(|b| (b.ssrc, b.total_lost))
            .collect();
        assert_eq!(blocks, vec![(1, 1), (2, 1)]);
        // A stream that sent nothing since is left out of the next.
        r.rtp(second, 1, 4, 0, false);
        let out = due(&mut r, second + REPORT_INTERVAL);
        let blocks: Vec<u32> = of::<ReceiverReport>(&out)[0]
            .reports
            .iter()
            .map(|b| b.ssrc)
            .collect();
        assert_eq!(blocks, vec![1]);
    }

    #[test]
    fn a_packet_that_comes_again_is_known_as_such() {
        let t0 = Instant::now();
        let mut r = Reception::new(OWN);
        r.bind(t0, video(1));
        assert!(r.rtp(t0, 1, 65_535, 0, false));
        assert!(r.rtp(t0, 1, 0, 0, false), "across the wrap");
        // The same packet again, by RTX or not: not new.
        assert!(!r.rtp(t0, 1, 0, 0, true));
        assert!(!r.rtp(t0, 1, 65_535, 0, false));
        // A late packet never seen is new; a number long past reuses its
        // slot.
        assert!(r.rtp(t0, 1, 65_534, 0, true));
        assert!(r.rtp(t0, 1, SEEN as u16, 0, false));
        assert!(!r.rtp(t0, 1, SEEN as u16, 0, false));
        // A stream not bound: taken as new.
        assert!(r.rtp(t0, 9, 1, 0, false));
    }

    #[test]
    fn a_repaired_packet_is_not_asked_for_again() {
        let t0 = Instant::now();
        let mut r = Reception::new(OWN);
        r.bind(t0, video(1));
        for seq in [0u16, 2] {
            r.rtp(t0, 1, seq, 0, false);
        }
        assert_eq!(of::<TransportLayerNack>(&due(&mut r, t0)).len(), 1);
        r.rtp(t0, 1, 1, 0, true);
        let later = t0 + nacks::RETRY * 3;
        assert!(of::<TransportLayerNack>(&due(&mut r, later)).is_empty());
        let out = due(&mut r, t0 + REPORT_INTERVAL);
        assert_eq!(of::<ReceiverReport>(&out)[0].reports[0].total_lost, 0);
    }

    #[test]
    fn congestion_feedback_goes_out_each_interval_while_packets_come() {
        let t0 = Instant::now();
        let mut r = Reception::new(OWN);
        assert_eq!(r.poll_timeout(), None, "nothing to report on");
        r.transport_seq(t0, 9, 1);
        r.transport_seq(t0, 9, 2);
        assert_eq!(r.poll_timeout(), Some(t0 + twcc::INTERVAL));
        let out = due(&mut r, t0 + twcc::INTERVAL);
        let cc = of::<TransportLayerCc>(&out);
        assert_eq!(cc.len(), 1);
        assert_eq!((cc[0].sender_ssrc, cc[0].packet_status_count), (OWN, 2));
        assert_eq!(r.poll_timeout(), None, "nothing more came: no timer");
        assert!(due(&mut r, t0 + twcc::INTERVAL * 2).is_empty());
        r.transport_seq(t0 + twcc::INTERVAL * 3, 9, 3);
        assert_eq!(r.poll_timeout(), Some(t0 + twcc::INTERVAL * 4));
    }

    #[test]
    fn an_unbound_stream_is_no_longer_counted_or_reported() {
        let t0 = Instant::now();
        let mut r = Reception::new(OWN);
        r.bind(t0, video(1));
        r.bind(t0, video(2));
        r.rtp(t0, 1, 0, 0, false);
        r.unbind(1);
        assert_eq!(r.stream_ssrcs(), vec![2]);
        r.rtp(t0, 1, 5, 0, false);
        assert!(due(&mut r, t0 + REPORT_INTERVAL).is_empty());
        r.unbind(2);
        assert_eq!(r.poll_timeout(), None);
    }

    proptest::proptest! {
        /// Whatever numbers a client sends, with whatever timing, every
        /// feedback packet written is valid RTCP under the size of one
        /// datagram, and feedback stays within a few packets each time it
        /// is due: a client cannot make the server send much more than it
        /// received.
        #[test]
        fn any_packets_give_bounded_valid_feedback(
            steps in proptest::collection::vec(
                (0u8..4, proptest::num::u16::ANY, proptest::num::u32::ANY, 0u64..300),
                1..300,
            ),
        ) {
            let mut now = Instant::now();
            let mut r = Reception::new(OWN);
            r.bind(now, video(1));
            r.bind(now, StreamSetup { nack: false, ..video(2) });
            let (mut seq, mut twcc) = (0u16, 0u16);
            for (what, jump, ts, ms) in steps {
                now += Duration::from_millis(ms);
                match what {
                    // A packet of either stream, its number moved by any amount.
                    0 | 1 => {
                        seq = seq.wrapping_add(jump);
                        r.rtp(now, 1 + u32::from(what), seq, ts, jump % 7 == 0);
                    }
                    2 => {
                        twcc = twcc.wrapping_add(jump % 1_000);
                        r.transport_seq(now, 1, twcc);
                    }
                    _ => r.sender_report(now, 1, u64::from(ts) << 20),
                }
                let mut out = Vec::new();
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.feedback(now, &mut out);
                }
                // Two streams' NACKs, a report, and congestion feedback that
                // a packet's arrivals fill in at most a few.
                proptest::prop_assert!(out.len() <= 8, "{} packets at once", out.len());
                for p in &out {
                    let wire = p.marshal().expect("valid RTCP");
                    proptest::prop_assert!(wire.len() <= 1_200, "{} bytes", wire.len());
                }
            }
        }
    }
}
