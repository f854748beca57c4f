//! The allocator: which layer of each video track one subscriber receives
//! within the bandwidth its connection has (ADR 0026). Audio is never cut:
//! its rate is taken first. Of the video, screen shares come first, then
//! the cameras of those speaking, then the others; each track gets at most
//! the layer that fits the size the
//! subscriber draws it at. Every track first gets its smallest layer, in
//! that order, as long as the budget lasts; then, in the same order, each
//! moves up one layer at a time while the step fits. A track whose smallest
//! layer does not fit is left out (`None`), and one left out comes back
//! only with room to spare; except the first in that
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
    /// The layer it is given now, if it is sent: it keeps that layer
    /// before any track steps above its own.
    pub(crate) current: Option<u8>,
}

/// The estimate below which not even the first track's smallest layer is
/// sent: bits per second.
pub(crate) const FLOOR: u64 = 50_000;

/// How much more than its smallest layer's rate a held track needs free
/// before it is sent again, and how much more than a step up a track needs
/// free to take a layer above the one it has, in percent.
pub(crate) const RETURN_MARGIN_PERCENT: u64 = 30;

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
        // A track held back comes back only with room to spare, so one
        // estimate's ups and downs do not send and hold it by turns (each
        // return costs a keyframe, on a link already short).
        let room = if wants[i].held {
            rate + rate * RETURN_MARGIN_PERCENT / 100
        } else {
            rate
        };
        if room <= budget {
            budget -= rate;
            granted[i] = Some(0);
        } else if n == 0 && estimate >= FLOOR {
            budget = 0;
            granted[i] = Some(0);
        }
    }
    // Each keeps the layer it has now, in order, while the steps fit: the
    // order changes as people start and stop speaking, and a layer that
    // passed from one track to another at each change would cost two
    // keyframes every time.
    for &i in &order {
        let (Some(mut at), Some(current)) = (granted[i], wants[i].current) else {
            continue;
        };
        let layers = &wants[i].layers;
        while let Some(&(next, rate)) = layers.get(at + 1) {
            let step = rate.saturating_sub(layers[at].1);
            if next > current || next > wants[i].best || step > budget {
                break;
            }
            budget -= step;
            at += 1;
        }
        granted[i] = Some(at);
    }
    // Then each steps up one layer at a time, in order, while the step
    // fits with room to spare (an estimate's ups and downs would otherwise
    // move it up and down by turns).
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
            let room = if wants[i].current.is_some_and(|c| next <= c) {
                step
            } else {
                step + step * RETURN_MARGIN_PERCENT / 100
            };
            if room <= budget {
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

/// What `wants` and `audio` would take with each track at the layer its
/// size calls for, with the room to spare a held track's return and a step
/// up ask for, before the headroom: the rate the connection probes for
/// when its estimate is short of it. Without the room to spare, probing
/// would stop where the estimate carries every track but lets no held one
/// come back.
pub(crate) fn wanted(audio: u64, wants: &[Want]) -> u64 {
    let video: u64 = wants
        .iter()
        .filter_map(|w| w.layers.iter().rev().find(|(l, _)| *l <= w.best))
        .map(|(_, rate)| rate)
        .sum();
    let video = video + video * RETURN_MARGIN_PERCENT / 100;
    (audio + video) * 100 / HEADROOM_PERCENT
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
            current: None,
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
            current: None,
        };
        let wants = [camera(2), screen];
        assert_eq!(allocate(1_000_000, 0, &wants), [None, Some(0)]);
        assert_eq!(allocate(1_300_000, 0, &wants), [Some(0), Some(0)]);
        assert_eq!(allocate(500_000, 0, &wants), [None, Some(0)]);
        // A held track comes back only with 30% to spare: 150 kbit/s
        // needs 195 free (90% of the estimate, less the audio).
        let held = Want {
            held: true,
            ..camera(2)
        };
        let sent = camera(2);
        assert_eq!(
            allocate(380_000, 0, &[sent.clone(), held.clone()]),
            [Some(0), None]
        );
        assert_eq!(allocate(384_000, 0, &[sent, held]), [Some(0), Some(0)]);
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
    fn a_track_keeps_its_layer_when_the_order_changes_and_steps_up_with_room_to_spare() {
        // Room for one large and one middle layer (2 M of 2.25 M): the
        // second in order keeps the large one it has.
        let has = |layer| Want {
            current: Some(layer),
            ..camera(2)
        };
        assert_eq!(
            allocate(2_500_000, 0, &[has(1), has(2)]),
            [Some(1), Some(2)]
        );
        // Without one, the first in order takes it, given room to spare.
        assert_eq!(
            allocate(2_500_000, 0, &[camera(2), camera(2)]),
            [Some(1), Some(1)]
        );
        assert_eq!(
            allocate(2_700_000, 0, &[camera(2), camera(2)]),
            [Some(2), Some(1)]
        );
        // A step above the layer it has needs 30% more than the step: from
        // 150 k to 500 k, 455 k free (350 k and 105 k), so 672 k of
        // estimate; 650 k is not enough.
        assert_eq!(allocate(650_000, 0, &[has(0)]), [Some(0)]);
        assert_eq!(allocate(680_000, 0, &[has(0)]), [Some(1)]);
        // Back to a layer it had needs only the step.
        assert_eq!(allocate(650_000, 0, &[has(1)]), [Some(1)]);
    }

    #[test]
    fn what_is_wanted_is_each_tracks_layer_for_its_size_and_the_audio() {
        // 1.5 M + 500 k + 150 k with 30% to spare, and 60 k of audio,
        // before 10% headroom.
        let wants = [camera(2), camera(1), camera(0)];
        assert_eq!(
            wanted(60_000, &wants),
            (2_150_000 * 13 / 10 + 60_000) * 100 / 90
        );
        assert_eq!(wanted(0, &[]), 0);
        // At that estimate, a held camera comes back: the estimate probing
        // stops at (within 10% of what is wanted) lets it.
        let held = Want {
            held: true,
            ..camera(2)
        };
        let two = [camera(2), held];
        let enough = wanted(60_000, &two) * 10 / 11;
        assert_eq!(allocate(enough, 60_000, &two), [Some(2), Some(2)]);
    }

    #[test]
    fn layers_not_measured_yet_and_missing_layers_are_taken_as_they_come() {
        let unmeasured = Want {
            source: Source::Camera,
            speaking: false,
            held: false,
            layers: vec![(0, 0), (2, 0)],
            best: 2,
            current: None,
        };
        assert_eq!(allocate(0, 0, &[unmeasured]), [Some(2)]);
        let none = Want {
            source: Source::Camera,
            speaking: false,
            held: false,
            layers: vec![],
            best: 0,
            current: None,
        };
        assert_eq!(allocate(1_000_000, 0, &[none]), [None]);
    }
}
