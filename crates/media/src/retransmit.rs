//! How much the engine resends on a subscriber's NACKs.
//!
//! A NACK costs its sender a few bytes and the engine a whole packet, so a
//! subscriber that asks for everything, again and again, would turn the
//! engine into an amplifier aimed at its own link (or at whoever it claims
//! to be). Each subscriber connection therefore gets:
//! - at most one resend of a packet per round trip (the RTT measured from its
//!   receiver reports, or [`UNMEASURED_INTERVAL`] before the first), since a
//!   copy sent sooner can only duplicate one still on its way;
//! - at most [`RetransmitLimits::attempts`] resends of a packet in all;
//! - resent bytes within [`RetransmitLimits::share_percent`] of the bytes
//!   sent to it over the last [`WINDOW`], plus [`BURST`] bytes, so a loss
//!   early in a stream is repaired too.
//!
//! This is plain bookkeeping over sequence numbers, sizes and the `now`
//! each call is given; `peer.rs` feeds it from the connection's packets and
//! keeps from the NACK responder what it refuses.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

/// Bounds on retransmissions to one subscriber connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitLimits {
    /// Resends of one packet, at most (1 to 10).
    pub attempts: u8,
    /// Resent bytes, at most this percentage of the bytes sent over the last
    /// second, plus a burst of [`BURST`] bytes (1 to 100).
    pub share_percent: u8,
}

impl Default for RetransmitLimits {
    fn default() -> Self {
        RetransmitLimits {
            attempts: 3,
            share_percent: 30,
        }
    }
}

impl RetransmitLimits {
    /// The range of [`RetransmitLimits::attempts`].
    pub const ATTEMPTS: RangeInclusive<u8> = 1..=10;
    /// The range of [`RetransmitLimits::share_percent`].
    pub const SHARE_PERCENT: RangeInclusive<u8> = 1..=100;

    /// Whether the limits are in range; 0 would turn retransmission off,
    /// which is not what a lower number should quietly mean.
    pub fn valid(&self) -> bool {
        Self::ATTEMPTS.contains(&self.attempts) && Self::SHARE_PERCENT.contains(&self.share_percent)
    }
}

/// The window over which sent and resent bytes are compared.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Resent bytes allowed beyond the share: about ten full-size packets.
pub const BURST: u64 = 12_000;
/// The shortest wait between two resends of a packet, whatever the RTT says.
pub const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// The wait between two resends of a packet before an RTT is measured.
pub const UNMEASURED_INTERVAL: Duration = Duration::from_millis(100);

/// The window in slots, so it slides without keeping every packet.
const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_millis(WINDOW.as_millis() as u64 / SLOTS as u64);
/// Sender reports remembered to match receivers' reports against.
const REPORTS: usize = 8;

/// Bytes sent and resent over the last [`WINDOW`].
#[derive(Debug)]
struct Window {
    /// Sent and resent bytes per slot; `head` is the absolute number of the
    /// newest slot, counted from the bookkeeping's origin.
    slots: [(u64, u64); SLOTS],
    head: u64,
}

impl Window {
    fn advance(&mut self, slot: u64) {
        if slot <= self.head {
            return;
        }
        let stale = (slot - self.head).min(SLOTS as u64);
        for i in 1..=stale {
            self.slots[((self.head + i) % SLOTS as u64) as usize] = (0, 0);
        }
        self.head = slot;
    }

    fn current(&mut self) -> &mut (u64, u64) {
        &mut self.slots[(self.head % SLOTS as u64) as usize]
    }

    fn totals(&self) -> (u64, u64) {
        self.slots
            .iter()
            .fold((0, 0), |(s, r), (sent, resent)| (s + sent, r + resent))
    }
}

/// What is known of one sent packet, in a ring indexed by sequence number.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    seq: u16,
    /// RTP bytes (header and payload, before SRTP), 0 for a free entry.
    size: u16,
    resends: u8,
    /// When it was last resent, in milliseconds from the origin (wrapping).
    last_ms: u32,
}

/// The retransmission bookkeeping of one connection.
#[derive(Debug)]
pub(crate) struct Retransmits {
    limits: RetransmitLimits,
    /// Entries kept per stream: the NACK responder's history.
    history: usize,
    /// By SSRC, looked up for every packet sent: the engine's own SSRCs.
    streams: FxHashMap<u32, Vec<Sent>>,
    window: Window,
    /// The first time seen; slots and resend times count from it.
    origin: Option<Instant>,
    /// Sender reports sent: the middle 32 bits of their NTP time, and when.
    reports: VecDeque<(u32, Instant)>,
    rtt: Option<Duration>,
    refused: u64,
}

impl Retransmits {
    /// Bookkeeping for streams whose sender keeps `history` packets (a power of two).
    pub(crate) fn new(limits: RetransmitLimits, history: u16) -> Retransmits {
        Retransmits {
            limits,
            history: usize::from(history.max(1)).next_power_of_two(),
            streams: FxHashMap::default(),
            window: Window {
                slots: [(0, 0); SLOTS],
                head: 0,
            },
            origin: None,
            reports: VecDeque::with_capacity(REPORTS),
            rtt: None,
            refused: 0,
        }
    }

    /// Milliseconds from the origin, and the window moved on to `now`.
    fn clock(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin);
        self.window
            .advance((elapsed.as_millis() / SLOT.as_millis()) as u64);
        elapsed.as_millis() as u64
    }

    /// A stream whose packets may be NACKed.
    pub(crate) fn track(&mut self, ssrc: u32) {
        self.streams
            .entry(ssrc)
            .or_insert_with(|| vec![Sent::default(); self.history]);
    }

    pub(crate) fn untrack(&mut self, ssrc: u32) {
        self.streams.remove(&ssrc);
    }

    /// A packet sent for the first time (retransmissions are counted when allowed).
    pub(crate) fn sent(&mut self, ssrc: u32, seq: u16, bytes: usize, now: Instant) {
        self.clock(now);
        self.window.current().0 += bytes as u64;
        if let Some(ring) = self.streams.get_mut(&ssrc) {
            let mask = ring.len() - 1;
            ring[usize::from(seq) & mask] = Sent {
                seq,
                size: bytes.clamp(1, usize::from(u16::MAX)) as u16,
                resends: 0,
                last_ms: 0,
            };
        }
    }

    /// Whether packet `seq` of `ssrc` may be resent now; if so, it counts as resent.
    pub(crate) fn allow(&mut self, ssrc: u32, seq: u16, now: Instant) -> bool {
        let now_ms = self.clock(now);
        let interval = self.interval().as_millis() as u32;
        let (sent, resent) = self.window.totals();
        let allowance = sent * u64::from(self.limits.share_percent) / 100 + BURST;
        let attempts = self.limits.attempts;
        let Some(entry) = self.streams.get_mut(&ssrc).and_then(|ring| {
            let mask = ring.len() - 1;
            ring.get_mut(usize::from(seq) & mask)
        }) else {
            return false;
        };
        // A packet never sent, or one the history has already replaced.
        if entry.size == 0 || entry.seq != seq {
            return false;
        }
        let now_ms = now_ms as u32;
        let allowed = entry.resends < attempts
            && (entry.resends == 0 || now_ms.wrapping_sub(entry.last_ms) >= interval)
            && resent + u64::from(entry.size) <= allowance;
        if allowed {
            entry.resends += 1;
            entry.last_ms = now_ms;
            let size = u64::from(entry.size);
            self.window.current().1 += size;
        } else {
            self.refused += 1;
        }
        allowed
    }

    /// How long a packet's resends are apart at least.
    pub(crate) fn interval(&self) -> Duration {
        self.rtt
            .map_or(UNMEASURED_INTERVAL, |rtt| rtt.max(MIN_INTERVAL))
    }

    /// A sender report sent: `ntp` is its NTP time.
    pub(crate) fn report_sent(&mut self, ntp: u64, now: Instant) {
        if self.reports.len() == REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(((ntp >> 16) as u32, now));
    }

    /// A reception report of one of our streams: the middle bits of the
    /// last sender report it saw (LSR) and how long it held it since
    /// (DLSR, in 1/65536 s). Gives the round trip (RFC 3550, 6.4.1).
    pub(crate) fn report_received(&mut self, lsr: u32, dlsr: u32, now: Instant) {
        if lsr == 0 {
            return;
        }
        let Some(&(_, sent)) = self.reports.iter().find(|(mid, _)| *mid == lsr) else {
            return;
        };
        let held = Duration::from_micros(u64::from(dlsr) * 1_000_000 / 65_536);
        let Some(rtt) = now.saturating_duration_since(sent).checked_sub(held) else {
            return;
        };
        // A peer can claim any delay; the round trip never counts as more than a second.
        let rtt = rtt.min(WINDOW);
        self.rtt = Some(match self.rtt {
            // Smoothed as TCP does (RFC 6298): one sample moves it by an eighth.
            Some(old) => (old * 7 + rtt) / 8,
            None => rtt,
        });
    }

    /// The smoothed round trip, once a reception report gave one.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Retransmissions refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    pub(crate) fn tracks(&self, ssrc: u32) -> bool {
        self.streams.contains_key(&ssrc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 7;

    /// A stream of 1,000-byte packets every 10 ms for a second (100 kB), and the time of the last.
    fn streaming(limits: RetransmitLimits) -> (Retransmits, Instant, u16) {
        let mut r = Retransmits::new(limits, 512);
        r.track(SSRC);
        let t0 = Instant::now();
        for i in 0..100u16 {
            r.sent(
                SSRC,
                i,
                1_000,
                t0 + Duration::from_millis(10 * u64::from(i)),
            );
        }
        (r, t0 + Duration::from_millis(990), 100)
    }

    #[test]
    fn a_packet_is_resent_once_per_round_trip_and_a_few_times_in_all() {
        let (mut r, now, _) = streaming(RetransmitLimits::default());
        assert!(r.allow(SSRC, 50, now), "the first request is answered");
        assert!(!r.allow(SSRC, 50, now), "not again at once");
        // No RTT measured yet: 100 ms apart.
        assert!(!r.allow(SSRC, 50, now + Duration::from_millis(99)));
        assert!(r.allow(SSRC, 50, now + Duration::from_millis(100)));
        assert!(r.allow(SSRC, 50, now + Duration::from_millis(200)));
        assert!(
            !r.allow(SSRC, 50, now + Duration::from_millis(300)),
            "three times in all"
        );
        assert!(
            r.allow(SSRC, 51, now + Duration::from_millis(300)),
            "another packet is its own"
        );
        assert_eq!(r.refused(), 3);
    }

    #[test]
    fn the_round_trip_comes_from_receiver_reports() {
        let (mut r, now, _) = streaming(RetransmitLimits::default());
        let ntp: u64 = 0x1234_5678_9abc_def0;
        r.report_sent(ntp, now);
        // Back 50 ms later, having held the report for 10 ms: 40 ms.
        let dlsr = 65_536 / 100;
        r.report_received(0x5678_9abc, dlsr, now + Duration::from_millis(50));
        let rtt = r.interval();
        assert!(
            rtt > Duration::from_millis(39) && rtt < Duration::from_millis(41),
            "{rtt:?}"
        );
        let later = now + Duration::from_millis(60);
        assert!(r.allow(SSRC, 10, later));
        assert!(!r.allow(SSRC, 10, later + Duration::from_millis(39)));
        assert!(r.allow(SSRC, 10, later + Duration::from_millis(41)));
        // Unknown reports and claims longer than the trip change nothing.
        r.report_received(1, 0, later);
        r.report_received(0x5678_9abc, u32::MAX, later);
        assert_eq!(r.interval(), rtt);
        // A tiny round trip still spaces resends by the floor.
        r.rtt = Some(Duration::from_micros(300));
        assert_eq!(r.interval(), MIN_INTERVAL);
    }

    #[test]
    fn resent_bytes_stay_within_the_share_of_the_last_second_plus_a_burst() {
        let (mut r, now, _) = streaming(RetransmitLimits::default());
        // 100 kB sent in the last second: 30 kB + the 12 kB burst may be resent.
        let allowed = (0..100u16).filter(|&s| r.allow(SSRC, s, now)).count();
        assert_eq!(allowed, 42);
        // Time passes with nothing sent: the share drains with the window.
        let quiet = now + WINDOW + SLOT;
        assert!(
            r.allow(SSRC, 99, quiet),
            "the burst comes back as the window slides"
        );
        let more = (0..99u16).filter(|&s| r.allow(SSRC, s, quiet)).count();
        assert_eq!(more, 11);
    }

    #[test]
    fn unknown_and_overwritten_packets_are_never_resent() {
        let limits = RetransmitLimits::default();
        let mut r = Retransmits::new(limits, 64);
        r.track(SSRC);
        let now = Instant::now();
        for seq in 0..100u16 {
            r.sent(SSRC, seq, 100, now);
        }
        assert!(!r.allow(SSRC, 10, now), "overwritten by 74");
        assert!(r.allow(SSRC, 74, now));
        assert!(!r.allow(SSRC, 100, now), "never sent");
        assert!(!r.allow(SSRC + 1, 74, now), "not a stream of ours");
        r.untrack(SSRC);
        assert!(!r.allow(SSRC, 75, now));
        assert!(!r.tracks(SSRC));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Retransmits::new(RetransmitLimits::default(), 512);
        r.track(SSRC);
        let now = Instant::now();
        for i in 0..20u16 {
            r.sent(SSRC, 65_530u16.wrapping_add(i), 500, now);
        }
        assert!(r.allow(SSRC, 65_535, now));
        assert!(r.allow(SSRC, 3, now));
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert!(RetransmitLimits::default().valid());
        for (attempts, share_percent) in [(0, 30), (11, 30), (3, 0), (3, 101)] {
            assert!(!RetransmitLimits {
                attempts,
                share_percent
            }
            .valid());
        }
    }
}
