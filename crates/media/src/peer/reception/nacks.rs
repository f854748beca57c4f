//! The packets of one stream that are missing, and when to ask for each
//! again (RFC 4585 generic NACK): a gap is asked for as soon as the packet
//! after it shows it, then every [`RETRY`] until it comes, up to
//! [`MAX_ASKS`] times, while it is among the stream's last [`WINDOW`]
//! numbers. Sequence numbers here are extended ([`super::reports`]), so
//! order holds across a wrap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long to wait for a packet asked for before asking again.
pub(super) const RETRY: Duration = Duration::from_millis(100);

/// How many times a packet is asked for.
const MAX_ASKS: u8 = 10;

/// How far behind the newest packet a missing one is still asked for;
/// also the most that are asked for at once.
const WINDOW: i64 = 512;

#[derive(Debug, Clone, Copy)]
struct Missing {
    seq: i64,
    asked: u8,
    due: Instant,
}

/// One stream's missing packets.
#[derive(Debug, Default)]
pub(super) struct Nacks {
    newest: Option<i64>,
    /// In order of sequence number.
    missing: VecDeque<Missing>,
    /// No entry is due before this.
    due: Option<Instant>,
}

impl Nacks {
    /// Packet `seq` arrived: a gap before it is missing from now on; a
    /// packet that was missing is no longer.
    pub(super) fn received(&mut self, now: Instant, seq: i64) {
        let Some(newest) = self.newest else {
            self.newest = Some(seq);
            return;
        };
        if seq > newest {
            for lost in (newest + 1).max(seq - WINDOW)..seq {
                self.missing.push_back(Missing {
                    seq: lost,
                    asked: 0,
                    due: now,
                });
                self.due = Some(self.due.map_or(now, |due| due.min(now)));
            }
            self.newest = Some(seq);
            while self.missing.front().is_some_and(|m| m.seq < seq - WINDOW) {
                self.missing.pop_front();
            }
        } else if let Ok(i) = self.missing.binary_search_by_key(&seq, |m| m.seq) {
            self.missing.remove(i);
        }
    }

    /// When the next packet is to be asked for.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The packets to ask for at `now`, appended to `out` as the 16-bit
    /// numbers a NACK carries; each is asked for again after [`RETRY`].
    pub(super) fn take_due(&mut self, now: Instant, out: &mut Vec<u16>) {
        if self.due.is_none_or(|due| due > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        self.missing.retain_mut(|m| {
            if m.due <= now {
                out.push(m.seq as u16);
                m.asked += 1;
                m.due = now + RETRY;
            }
            let keep = m.asked < MAX_ASKS;
            if keep {
                next = Some(next.map_or(m.due, |n| n.min(m.due)));
            }
            keep
        });
        self.due = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(n: &mut Nacks, now: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        n.take_due(now, &mut out);
        out
    }

    #[test]
    fn a_gap_is_asked_for_at_once_then_again_until_it_comes() {
        let t0 = Instant::now();
        let mut n = Nacks::default();
        n.received(t0, 10);
        n.received(t0, 11);
        assert_eq!(n.due(), None, "no gap, nothing to ask");
        n.received(t0, 14);
        assert_eq!(n.due(), Some(t0));
        assert_eq!(asked(&mut n, t0), vec![12, 13]);
        assert!(asked(&mut n, t0 + RETRY / 2).is_empty());
        n.received(t0 + RETRY / 2, 12);
        assert_eq!(asked(&mut n, t0 + RETRY), vec![13]);
        n.received(t0 + RETRY, 13);
        assert!(asked(&mut n, t0 + RETRY * 5).is_empty());
        assert_eq!(n.due(), None);
    }

    #[test]
    fn a_packet_is_asked_for_a_limited_number_of_times() {
        let t0 = Instant::now();
        let mut n = Nacks::default();
        n.received(t0, 1);
        n.received(t0, 3);
        let mut times = 0;
        for i in 0..50 {
            times += asked(&mut n, t0 + RETRY * i).len();
        }
        assert_eq!(times, usize::from(MAX_ASKS));
        assert_eq!(n.due(), None);
    }

    #[test]
    fn only_the_newest_window_is_asked_for() {
        let t0 = Instant::now();
        let mut n = Nacks::default();
        n.received(t0, 0);
        n.received(t0, 10_000);
        let got = asked(&mut n, t0);
        assert_eq!(got.len(), WINDOW as usize);
        assert_eq!(got.first(), Some(&((10_000 - WINDOW) as u16)));
        // A later gap pushes the oldest out of the window (10,000 itself
        // arrived).
        n.received(t0, 10_000 + 100);
        let got = asked(&mut n, t0 + RETRY);
        assert_eq!(got.len(), WINDOW as usize - 1);
        assert_eq!(got.first(), Some(&((10_100 - WINDOW) as u16)));
        assert_eq!(got.last(), Some(&(10_099)));
    }

    #[test]
    fn late_and_repeated_packets_change_nothing_else() {
        let t0 = Instant::now();
        let mut n = Nacks::default();
        n.received(t0, 100);
        n.received(t0, 90);
        n.received(t0, 100);
        assert_eq!(n.due(), None);
        n.received(t0, 102);
        n.received(t0, 102);
        assert_eq!(asked(&mut n, t0), vec![101]);
    }
}
