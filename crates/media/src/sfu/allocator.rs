//! The allocator: which layer of each video track one subscriber receives
//! within the bandwidth its connection has (ADR 0026). Audio is never cut:
//! its rate is taken first. Of the video, screen shares come first, then
//! the cameras of those speaking, then the others; each track gets at most
//! the layer that fits the size the
//! subscriber draws it at. Every track first gets its smallest layer, in
//! that order, as long as the budget lasts; then, in the same order, each
//! moves up one layer at a time while the step fits. A track whose smallest
//! layer does not fit is left out (`None`), except the first in that
//! order: while the estimate is at least [`FLOOR`], it keeps its smallest
//! layer, so the subscriber sees the person who matters most and the
//! estimate has traffic to measure (with none, it could not find its way
//! back up). Pure arithmetic over plain data; the loop applies it.

use crate::events::Source;

/// One video track as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) source: Source,
    /// Its publisher is speaking now.
    pub(crate) speaking: bool,
    /// It is held back now: among equals, those sent now keep their place,
    /// so two tracks do not take turns (each turn costs a keyframe).
    pub(crate) held: bool,
    /// The layers it may get, smallest first, each with its bitrate
    /// (bits per second; 0 where not yet measured).
    pub(crate) layers: Vec<(u8, u64)>,
    /// The largest of those the subscriber's size calls for.
    pub(crate) best: u8,
}

/// The estimate below which not even the first track's smallest layer is
/// sent: bits per second.
pub(crate) const FLOOR: u64 = 50_000;

/// The share of the estimate the allocator hands out: the rest absorbs a
/// keyframe's burst and retransmissions.
pub(crate) const HEADROOM_PERCENT: u64 = 90;

/// The layer each of `wants` gets within `estimate` bits per second, once
/// `audio` bits per second are taken; `None`: nothing fits.
pub(crate) fn allocate(estimate: u64, audio: u64, wants: &[Want]) -> Vec<Option<u8>> {
    let mut budget = (estimate * HEADROOM_PERCENT / 100).saturating_sub(audio);
    let mut order: Vec<usize> = (0..wants.len()).collect();
    // Screen shares first, then those speaking, then those sent now;
    // otherwise in the order given.
    order.sort_by_key(|&i| {
        let w = &wants[i];
        (!matches!(w.source, Source::Screen), !w.speaking, w.held)
    });
    let mut granted: Vec<Option<usize>> = vec![None; wants.len()];
    for (n, &i) in order.iter().enumerate() {
        let Some(&(_, rate)) = wants[i].layers.first() else {
            continue;
        };
        if rate <= budget {
            budget -= rate;
            granted[i] = Some(0);
        } else if n == 0 && estimate >= FLOOR {
            budget = 0;
            granted[i] = Some(0);
        }
    }
    loop {
        let mut moved = false;
        for &i in &order {
            let Some(at) = granted[i] else { continue };
            let layers = &wants[i].layers;
            let Some(&(next, rate)) = layers.get(at + 1) else {
                continue;
            };
            if next > wants[i].best {
                continue;
            }
            let step = rate.saturating_sub(layers[at].1);
            if step <= budget {
                budget -= step;
                granted[i] = Some(at + 1);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    granted
        .iter()
        .zip(wants)
        .map(|(g, w)| g.map(|at| w.layers[at].0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(best: u8) -> Want {
        Want {
            source: Source::Camera,
            speaking: false,
            held: false,
            layers: vec![(0, 150_000), (1, 500_000), (2, 1_500_000)],
            best,
        }
    }

    #[test]
    fn with_room_for_all_each_gets_what_its_size_calls_for() {
        let wants = [camera(2), camera(1), camera(0)];
        assert_eq!(
            allocate(10_000_000, 100_000, &wants),
            [Some(2), Some(1), Some(0)]
        );
    }

    #[test]
    fn a_short_link_gets_the_small_layers_first_then_steps_up_in_order() {
        let wants = [camera(2), camera(2), camera(2)];
        // 300 kbit/s: 270 handed out, 60 of it audio: one small layer.
        assert_eq!(allocate(300_000, 60_000, &wants), [Some(0), None, None]);
        // 150 kbit/s: the first keeps its small layer all the same; under
        // the floor, nothing.
        assert_eq!(allocate(150_000, 60_000, &wants), [Some(0), None, None]);
        assert_eq!(allocate(FLOOR - 1, 0, &wants), [None, None, None]);
        // 600 kbit/s: three small layers (450 of 540).
        assert_eq!(allocate(600_000, 0, &wants), [Some(0), Some(0), Some(0)]);
        // 1.2 Mbit/s: three small layers, then the first moves up (350 more).
        assert_eq!(allocate(1_200_000, 0, &wants), [Some(1), Some(0), Some(0)]);
        // Audio is taken first, whatever is left.
        assert_eq!(allocate(120_000, 200_000, &wants), [Some(0), None, None]);
    }

    #[test]
    fn a_screen_share_comes_before_the_cameras() {
        let screen = Want {
            source: Source::Screen,
            speaking: false,
            held: false,
            layers: vec![(0, 800_000)],
            best: 0,
        };
        let wants = [camera(2), screen];
        assert_eq!(allocate(1_000_000, 0, &wants), [None, Some(0)]);
        assert_eq!(allocate(1_300_000, 0, &wants), [Some(0), Some(0)]);
        assert_eq!(allocate(500_000, 0, &wants), [None, Some(0)]);
        // Among equals, the one sent now keeps its place.
        let held = Want {
            held: true,
            ..camera(2)
        };
        assert_eq!(
            allocate(300_000, 60_000, &[held, camera(2)]),
            [None, Some(0)]
        );
        // Then the camera of whoever speaks.
        let speaker = Want {
            speaking: true,
            ..camera(2)
        };
        assert_eq!(
            allocate(300_000, 60_000, &[camera(2), speaker]),
            [None, Some(0)]
        );
    }

    #[test]
    fn layers_not_measured_yet_and_missing_layers_are_taken_as_they_come() {
        let unmeasured = Want {
            source: Source::Camera,
            speaking: false,
            held: false,
            layers: vec![(0, 0), (2, 0)],
            best: 2,
        };
        assert_eq!(allocate(0, 0, &[unmeasured]), [Some(2)]);
        let none = Want {
            source: Source::Camera,
            speaking: false,
            held: false,
            layers: vec![],
            best: 0,
        };
        assert_eq!(allocate(1_000_000, 0, &[none]), [None]);
    }
}
