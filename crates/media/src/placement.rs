//! Which media loop holds each participant, and over which loops each call
//! is spread: touched when people join and leave, never per packet.
//!
//! A call starts on the least loaded loop and stays whole there until that
//! loop holds [`EngineConfig::spread_after`](crate::EngineConfig) of its
//! participants; later ones fill the call's fullest loop that has room,
//! else the least loaded loop with room, so a large call uses every core. Each change of a call's set of
//! loops is numbered (its generation) and told to every loop concerned, the
//! loops that join first (see [`Spread`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::MediaError;

/// Which media loop holds each participant, and each call's loops.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// The participants of each call on each of its loops.
    calls: HashMap<Uuid, BTreeMap<usize, usize>>,
    participants: HashMap<Uuid, Placed>,
    /// How many loops there are.
    loops: usize,
    /// Participants of one call a loop takes before the call spreads; 0:
    /// calls never spread.
    spread_after: usize,
    /// Numbers placements, so a stale removal can be told from a current one.
    next: u64,
    /// Numbers the changes of the calls' loops.
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    at: usize,
    call: Uuid,
    id: u64,
}

/// A call's set of loops changed. Every loop in `notify` must hear it, in
/// that order: the loops that joined come first, so that each hears of its
/// joining before any message another loop sends it about the call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spread {
    pub(crate) call: Uuid,
    pub(crate) generation: u64,
    /// The call's loops now, in order; empty once it has ended.
    pub(crate) loops: Vec<usize>,
    pub(crate) notify: Vec<usize>,
}

impl Placement {
    fn new(loops: usize, spread_after: usize) -> Self {
        Placement {
            loops,
            spread_after,
            ..Default::default()
        }
    }

    /// Participants on loop `at`.
    fn load(&self, at: usize) -> usize {
        self.calls.values().filter_map(|on| on.get(&at)).sum()
    }

    /// Whether a loop holding `on` participants of a call may take another.
    fn room(&self, on: usize) -> bool {
        self.spread_after == 0 || on < self.spread_after
    }

    /// Places a participant: on its call's fullest loop with room, else the
    /// least loaded loop with room, else the least loaded one. Returns the
    /// loop, the placement's number and the change of the call's loops.
    pub(crate) fn place(
        &mut self,
        call: Uuid,
        participant: Uuid,
    ) -> Result<(usize, u64, Option<Spread>), MediaError> {
        if self.participants.contains_key(&participant) {
            return Err(MediaError::Conflict("already in a call".into()));
        }
        let least_loaded =
            |among: &mut dyn Iterator<Item = usize>| among.min_by_key(|&i| (self.load(i), i));
        let at = match self.calls.get(&call) {
            None => least_loaded(&mut (0..self.loops)).unwrap_or(0),
            // With `spread_after` 0 every loop has room: the call's one loop.
            Some(on) => on
                .iter()
                .filter(|(_, n)| self.room(**n))
                .max_by_key(|(at, n)| (**n, std::cmp::Reverse(**at)))
                .map(|(at, _)| *at)
                .or_else(|| {
                    let mut with_room =
                        (0..self.loops).filter(|i| self.room(on.get(i).copied().unwrap_or(0)));
                    least_loaded(&mut with_room)
                })
                .or_else(|| least_loaded(&mut (0..self.loops)))
                .unwrap_or(0),
        };
        let before = self.loops_of(call);
        *self.calls.entry(call).or_default().entry(at).or_default() += 1;
        self.next += 1;
        let id = self.next;
        self.participants
            .insert(participant, Placed { at, call, id });
        Ok((at, id, self.changed(call, before)))
    }

    /// The loops of a call, in order.
    fn loops_of(&self, call: Uuid) -> Vec<usize> {
        self.calls
            .get(&call)
            .map(|on| on.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The change of a call's loops from `before`, where one of the two
    /// sets spans several loops (a call on one loop needs no word).
    fn changed(&mut self, call: Uuid, before: Vec<usize>) -> Option<Spread> {
        let loops = self.loops_of(call);
        if loops == before || (loops.len() <= 1 && before.len() <= 1) {
            return None;
        }
        self.generation += 1;
        let joined = loops.iter().filter(|l| !before.contains(l));
        let stayed_or_left = before.iter();
        Some(Spread {
            call,
            generation: self.generation,
            notify: joined.chain(stayed_or_left).copied().collect(),
            loops,
        })
    }

    pub(crate) fn loop_of(&self, participant: Uuid) -> Option<usize> {
        self.participants.get(&participant).map(|p| p.at)
    }

    /// Forgets the placement `id` of a participant, unless a newer one
    /// replaced it; returns the change of its call's loops.
    pub(crate) fn remove_placed(&mut self, participant: Uuid, id: u64) -> Option<Spread> {
        if self
            .participants
            .get(&participant)
            .is_some_and(|p| p.id == id)
        {
            return self.remove(participant).and_then(|(_, spread)| spread);
        }
        None
    }

    /// Forgets a participant, and its call once the last one is gone;
    /// returns the loop it was on and the change of its call's loops.
    pub(crate) fn remove(&mut self, participant: Uuid) -> Option<(usize, Option<Spread>)> {
        let Placed { at, call, .. } = self.participants.remove(&participant)?;
        let before = self.loops_of(call);
        if let Some(on) = self.calls.get_mut(&call) {
            if let Some(count) = on.get_mut(&at) {
                *count -= 1;
                if *count == 0 {
                    on.remove(&at);
                }
            }
            if on.is_empty() {
                self.calls.remove(&call);
            }
        }
        Some((at, self.changed(call, before)))
    }
}

/// The placement, shared by the handle and the loops.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPlacement(Arc<Mutex<Placement>>);

impl SharedPlacement {
    /// The placement of an engine with `loops` media loops, whose calls
    /// spread after `spread_after` participants on one loop.
    pub(crate) fn new(loops: usize, spread_after: usize) -> Self {
        SharedPlacement(Arc::new(Mutex::new(Placement::new(loops, spread_after))))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Placement> {
        // A panic while holding it leaves plain maps behind, still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_go_to_the_least_loaded_loop_and_stay_whole() {
        let mut placement = Placement::new(2, 0);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let people: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let first = placement.place(a, people[0]).unwrap().0;
        assert_eq!(placement.place(a, people[1]).unwrap().0, first);
        let (_, third, spread) = placement.place(a, people[2]).unwrap();
        assert_eq!(spread, None, "a call on one loop needs no word");
        let second = placement.place(b, people[3]).unwrap().0;
        assert_ne!(first, second, "a new call goes to the idle loop");
        assert!(matches!(
            placement.place(b, people[0]),
            Err(MediaError::Conflict(_))
        ));
        // Left and placed again at once: the old placement's late removal changes nothing.
        placement.remove(people[2]);
        let (_, again, _) = placement.place(a, people[2]).unwrap();
        placement.remove_placed(people[2], third);
        assert_eq!(placement.loop_of(people[2]), Some(first));
        placement.remove_placed(people[2], again);
        assert_eq!(placement.loop_of(people[2]), None);
        for p in &people[..2] {
            placement.remove(*p);
        }
        assert!(
            !placement.calls.contains_key(&a),
            "an empty call is forgotten"
        );
        assert_eq!(placement.load(first), 0);
        let c = Uuid::new_v4();
        assert_eq!(placement.place(c, people[4]).unwrap().0, first);
    }

    #[test]
    fn a_large_call_spreads_over_the_loops_and_each_change_is_told_joiners_first() {
        let mut placement = Placement::new(3, 2);
        let call = Uuid::new_v4();
        let people: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
        // Another call keeps loop 0 busy: this one starts on loop 1.
        placement.place(Uuid::new_v4(), Uuid::new_v4()).unwrap();
        let mut at = Vec::new();
        let mut spreads = Vec::new();
        for p in &people[..6] {
            let (loop_, _, spread) = placement.place(call, *p).unwrap();
            at.push(loop_);
            spreads.extend(spread);
        }
        // Two per loop, the call's own loop filled first, then the least
        // loaded (loop 2, idle), then loop 0.
        assert_eq!(at, vec![1, 1, 2, 2, 0, 0]);
        assert_eq!(
            spreads,
            vec![
                Spread {
                    call,
                    generation: 1,
                    loops: vec![1, 2],
                    notify: vec![2, 1],
                },
                Spread {
                    call,
                    generation: 2,
                    loops: vec![0, 1, 2],
                    notify: vec![0, 1, 2],
                },
            ]
        );
        // Every loop is full: the least loaded takes the next (loop 1, as
        // loop 0 holds the other call too), and the set is unchanged.
        let (loop_, _, spread) = placement.place(call, people[6]).unwrap();
        assert_eq!((loop_, spread), (1, None));
        // Loop 2 empties: its loops hear it, the loop that left included.
        placement.remove(people[2]);
        let (_, spread) = placement.remove(people[3]).unwrap();
        assert_eq!(
            spread,
            Some(Spread {
                call,
                generation: 3,
                loops: vec![0, 1],
                notify: vec![0, 1, 2],
            })
        );
        // A loop of the call with room is filled before another is opened.
        placement.remove(people[4]);
        assert_eq!(placement.place(call, people[7]).unwrap(), (0, 9, None));
        for p in [0, 1, 5, 6, 7] {
            placement.remove(people[p]);
        }
        assert!(!placement.calls.contains_key(&call));
    }
}
