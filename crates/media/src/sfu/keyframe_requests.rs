//! When a published video track's encoder is asked for a keyframe: at most
//! once per interval for a subscriber's own request (a lost frame), at once
//! for a new subscriber, but never closer to the last request than the
//! encoder acts on; a request that would come too soon waits, and later
//! ones merge into it.

use std::time::{Duration, Instant};

/// The least time between two keyframe requests to one publisher that a
/// new subscriber's request may not be merged into: encoders ignore requests
/// that come too soon after the last (Chromium's allows one per 300 ms), so
/// a request that would come sooner is held until this has passed.
pub(crate) const KEYFRAME_SPACING: Duration = Duration::from_millis(350);

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Send a request to the publisher now.
    Send,
    /// A request goes at [`KeyframeRequests::due`]; this one joins it.
    Held,
    /// A request went recently enough: nothing to do.
    Merged,
}

/// One published track's requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyframeRequests {
    last: Option<Instant>,
    /// A new subscriber's request held back until [`KEYFRAME_SPACING`]
    /// after the last one.
    due: Option<Instant>,
}

impl KeyframeRequests {
    /// A request at `now`: `force` for a subscriber that needs its first
    /// frame, otherwise at most one per `interval`.
    pub(crate) fn ask(&mut self, now: Instant, force: bool, interval: Duration) -> Ask {
        let since_last = self.last.map(|at| now.saturating_duration_since(at));
        if force {
            if let Some(since) = since_last.filter(|s| *s < KEYFRAME_SPACING) {
                let due = now + (KEYFRAME_SPACING - since);
                self.due = Some(self.due.map_or(due, |d| d.min(due)));
                return Ask::Held;
            }
        } else if since_last.is_some_and(|s| s < interval) || self.due.is_some() {
            return Ask::Merged;
        }
        self.due = None;
        self.last = Some(now);
        Ask::Send
    }

    /// When a held request is to go.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_subscribers_requests_go_at_most_once_per_interval() {
        let t = Instant::now();
        let mut r = KeyframeRequests::default();
        assert_eq!(r.ask(t, false, INTERVAL), Ask::Send);
        assert_eq!(r.ask(t + ms(100), false, INTERVAL), Ask::Merged);
        assert_eq!(r.ask(t + ms(499), false, INTERVAL), Ask::Merged);
        assert_eq!(r.ask(t + ms(500), false, INTERVAL), Ask::Send);
        assert_eq!(r.due(), None);
    }

    #[test]
    fn a_new_subscribers_request_is_spaced_from_the_last_and_others_merge_into_it() {
        let t = Instant::now();
        let mut r = KeyframeRequests::default();
        // The first ever goes at once.
        assert_eq!(r.ask(t, true, INTERVAL), Ask::Send);
        // A second new subscriber 100 ms later: held until 350 ms after the first.
        assert_eq!(r.ask(t + ms(100), true, INTERVAL), Ask::Held);
        assert_eq!(r.due(), Some(t + KEYFRAME_SPACING));
        // A third joins the held one; so does a lost frame's request.
        assert_eq!(r.ask(t + ms(200), true, INTERVAL), Ask::Held);
        assert_eq!(r.due(), Some(t + KEYFRAME_SPACING));
        assert_eq!(r.ask(t + ms(600), false, INTERVAL), Ask::Merged);
        // When it is due, the loop forces it: it goes, and nothing is held.
        assert_eq!(r.ask(t + KEYFRAME_SPACING, true, INTERVAL), Ask::Send);
        assert_eq!(r.due(), None);
    }

    #[test]
    fn a_forced_request_long_after_the_last_goes_at_once() {
        let t = Instant::now();
        let mut r = KeyframeRequests::default();
        assert_eq!(r.ask(t, false, INTERVAL), Ask::Send);
        assert_eq!(r.ask(t + KEYFRAME_SPACING, true, INTERVAL), Ask::Send);
        assert_eq!(r.due(), None);
    }
}
