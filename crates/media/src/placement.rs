//! Which media loop holds each call and participant: touched when people
//! join and leave, never per packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::MediaError;

/// Which media loop holds each call and participant. Touched when people
/// join and leave, never per packet.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// The loop of each call, and how many of its participants are in the engine.
    calls: HashMap<Uuid, (usize, usize)>,
    participants: HashMap<Uuid, Placed>,
    /// How many loops there are.
    loops: usize,
    /// Numbers placements, so a stale removal can be told from a current one.
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    at: usize,
    call: Uuid,
    id: u64,
}

impl Placement {
    fn new(loops: usize) -> Self {
        Placement {
            loops,
            ..Default::default()
        }
    }

    /// Participants on loop `at`.
    fn load(&self, at: usize) -> usize {
        self.calls
            .values()
            .filter(|(on, _)| *on == at)
            .map(|(_, count)| count)
            .sum()
    }

    /// Places a participant on its call's loop, or the call on the least
    /// loaded one; returns the loop and the placement's number.
    pub(crate) fn place(
        &mut self,
        call: Uuid,
        participant: Uuid,
    ) -> Result<(usize, u64), MediaError> {
        if self.participants.contains_key(&participant) {
            return Err(MediaError::Conflict("already in a call".into()));
        }
        let at = match self.calls.get_mut(&call) {
            Some((at, count)) => {
                *count += 1;
                *at
            }
            None => {
                let at = (0..self.loops).min_by_key(|&i| self.load(i)).unwrap_or(0);
                self.calls.insert(call, (at, 1));
                at
            }
        };
        self.next += 1;
        let id = self.next;
        self.participants
            .insert(participant, Placed { at, call, id });
        Ok((at, id))
    }

    pub(crate) fn loop_of(&self, participant: Uuid) -> Option<usize> {
        self.participants.get(&participant).map(|p| p.at)
    }

    /// Forgets the placement `id` of a participant, unless a newer one replaced it.
    pub(crate) fn remove_placed(&mut self, participant: Uuid, id: u64) {
        if self
            .participants
            .get(&participant)
            .is_some_and(|p| p.id == id)
        {
            self.remove(participant);
        }
    }

    /// Forgets a participant, and its call once the last one is gone;
    /// returns the loop it was on.
    pub(crate) fn remove(&mut self, participant: Uuid) -> Option<usize> {
        let Placed { at, call, .. } = self.participants.remove(&participant)?;
        if let Some((_, count)) = self.calls.get_mut(&call) {
            *count -= 1;
            if *count == 0 {
                self.calls.remove(&call);
            }
        }
        Some(at)
    }
}

/// The placement, shared by the handle and the loops.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPlacement(Arc<Mutex<Placement>>);

impl SharedPlacement {
    /// The placement of an engine with `loops` media loops.
    pub(crate) fn new(loops: usize) -> Self {
        SharedPlacement(Arc::new(Mutex::new(Placement::new(loops))))
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
        let mut placement = Placement::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let people: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let first = placement.place(a, people[0]).unwrap().0;
        assert_eq!(placement.place(a, people[1]).unwrap().0, first);
        let (_, third) = placement.place(a, people[2]).unwrap();
        let second = placement.place(b, people[3]).unwrap().0;
        assert_ne!(first, second, "a new call goes to the idle loop");
        assert!(matches!(
            placement.place(b, people[0]),
            Err(MediaError::Conflict(_))
        ));
        // Left and placed again at once: the old placement's late removal changes nothing.
        placement.remove(people[2]);
        let (_, again) = placement.place(a, people[2]).unwrap();
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
}
