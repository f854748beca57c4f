//! Who speaks: each audio track's level (RFC 6464) smoothed into a
//! loudness, and per call the set of those above a threshold, announced
//! when it changes and looked at every [`SPEAKING_EVERY`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::events::EngineEvent;

/// How often the speakers of each call are looked at.
pub(crate) const SPEAKING_EVERY: Duration = Duration::from_millis(250);
/// Loudness (127 minus the RFC 6464 level in -dBov) from which someone speaks: -60 dBov.
const SPEAKING_LOUDNESS: u8 = 67;
/// How long a level counts after it arrived.
const LEVEL_FRESH: Duration = Duration::from_millis(500);

/// One audio track's loudness.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Level {
    loudness: u8,
    at: Option<Instant>,
}

impl Level {
    /// Takes a level (RFC 6464, -dBov): rises at once, falls gently, so the
    /// pauses between words do not end a turn.
    pub(crate) fn observe(&mut self, level: u8, now: Instant) {
        let loud = 127 - level.min(127);
        self.loudness = if loud >= self.loudness {
            loud
        } else {
            self.loudness - (self.loudness - loud).div_ceil(16)
        };
        self.at = Some(now);
    }

    /// The loudness, if the track's owner speaks at `now`.
    pub(crate) fn speaking(&self, now: Instant) -> Option<u8> {
        let fresh = self
            .at
            .is_some_and(|at| now.saturating_duration_since(at) < LEVEL_FRESH);
        (fresh && self.loudness >= SPEAKING_LOUDNESS).then_some(self.loudness)
    }
}

/// The speakers last announced, per call.
#[derive(Debug, Default)]
pub(crate) struct Speakers {
    /// `None`: not known (another loop announced until now).
    last: HashMap<Uuid, Option<Vec<Uuid>>>,
}

impl Speakers {
    /// Forgets what was last announced in `call`, so the next tick
    /// announces its speakers, nobody included: a loop that takes over a
    /// call's announcements does not know what the last one said.
    pub(crate) fn forget(&mut self, call: Uuid) {
        self.last.insert(call, None);
    }

    /// Looks at every track, given as its call, its publisher and its
    /// level (none for a track heard by no one), and returns an
    /// announcement for each call whose speakers changed. A call with no
    /// track is forgotten.
    pub(crate) fn tick<'a>(
        &mut self,
        now: Instant,
        tracks: impl Iterator<Item = (Uuid, Uuid, Option<&'a Level>)>,
    ) -> Vec<EngineEvent> {
        let mut by_call: HashMap<Uuid, Vec<(Uuid, u8)>> = HashMap::new();
        for (call, participant, level) in tracks {
            let speakers = by_call.entry(call).or_default();
            if let Some(loudness) = level.and_then(|l| l.speaking(now)) {
                match speakers.iter_mut().find(|(p, _)| *p == participant) {
                    Some(s) => s.1 = s.1.max(loudness),
                    None => speakers.push((participant, loudness)),
                }
            }
        }
        self.last.retain(|call, _| by_call.contains_key(call));
        let mut out = Vec::new();
        for (call, mut speakers) in by_call {
            speakers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut ids: Vec<Uuid> = speakers.iter().map(|s| s.0).collect();
            ids.sort();
            let last = self.last.entry(call).or_insert_with(|| Some(Vec::new()));
            if last.as_ref() != Some(&ids) {
                *last = Some(ids);
                out.push(EngineEvent::Speaking { call, speakers });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn loudness_rises_at_once_falls_gently_and_goes_stale() {
        let t = Instant::now();
        let mut l = Level::default();
        assert_eq!(l.speaking(t), None, "no level yet");
        l.observe(20, t); // -20 dBov: loud
        assert_eq!(l.speaking(t), Some(107));
        // A quiet packet between words lowers it by a sixteenth of the gap.
        l.observe(127, t + ms(20));
        assert_eq!(l.speaking(t + ms(20)), Some(100));
        // Levels older than half a second count for nothing.
        assert_eq!(l.speaking(t + ms(519)), Some(100));
        assert_eq!(l.speaking(t + ms(520)), None);
        // Below -60 dBov nobody speaks.
        let mut quiet = Level::default();
        quiet.observe(61, t);
        assert_eq!(quiet.speaking(t), None);
    }

    #[test]
    fn each_change_is_announced_once_loudest_first() {
        let t = Instant::now();
        let (call, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut speakers = Speakers::default();
        let (mut la, mut lb) = (Level::default(), Level::default());
        la.observe(30, t);
        lb.observe(10, t);
        let tracks = |la: &Level, lb: &Level| vec![(call, a, *la), (call, b, *lb)];
        let tick = |s: &mut Speakers, now, v: Vec<(Uuid, Uuid, Level)>| {
            s.tick(now, v.iter().map(|(c, p, l)| (*c, *p, Some(l))))
        };
        let first = tick(&mut speakers, t, tracks(&la, &lb));
        assert!(
            matches!(&first[..], [EngineEvent::Speaking { call: c, speakers }]
                if *c == call && speakers == &vec![(b, 117), (a, 97)]),
            "{first:?}"
        );
        // Same speakers, other loudness: nothing new.
        lb.observe(15, t + ms(100));
        assert!(tick(&mut speakers, t + ms(250), tracks(&la, &lb)).is_empty());
        // Both go quiet: announced once, as nobody.
        let later = t + ms(1000);
        let quiet = tick(&mut speakers, later, tracks(&la, &lb));
        assert!(
            matches!(&quiet[..], [EngineEvent::Speaking { speakers, .. }] if speakers.is_empty())
        );
        assert!(tick(&mut speakers, later + ms(250), tracks(&la, &lb)).is_empty());
        // Taking over a call's announcements from another loop: the next
        // tick says who speaks, nobody included, then only changes again.
        speakers.forget(call);
        let taken_over = tick(&mut speakers, later + ms(500), tracks(&la, &lb));
        assert!(
            matches!(&taken_over[..], [EngineEvent::Speaking { speakers, .. }] if speakers.is_empty()),
            "{taken_over:?}"
        );
        assert!(tick(&mut speakers, later + ms(750), tracks(&la, &lb)).is_empty());
    }
}
