//! An up-track: one track a participant publishes, what it carries, who
//! receives it, and what the loop keeps of its packets (the speaker's level,
//! keyframe requests to its encoder, and of each simulcast layer when it
//! last came and its size). A track of a call spread over several loops
//! lives on its publisher's loop, its home, and as a mirror on each of the
//! others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::events::Source;
use crate::keyframe::starts_keyframe;
use crate::peer::{Codec, Kind, Rtp};
use crate::{h264, vp8};

use super::ids::TrackKey;
use super::keyframe_requests::{Ask, KeyframeRequests};
use super::speakers::Level;
use super::Relay;

pub(crate) struct UpTrack {
    /// Its key, shared with the words and packets that cross to other loops.
    pub(crate) key: Arc<TrackKey>,
    pub(crate) call: Uuid,
    /// The loop it is published on, for a mirror; `None` on its home loop.
    pub(crate) home: Option<usize>,
    pub(crate) kind: Kind,
    pub(crate) source: Source,
    pub(crate) codec: Codec,
    /// Whether its codec is VP8, or H.264, read once: each packet asks.
    vp8: bool,
    h264: bool,
    /// Who receives it, in the order they subscribed.
    pub(crate) subscribers: Vec<Uuid>,
    /// Its simulcast layers, smallest first; one without simulcast.
    pub(crate) layers: Vec<Layer>,
    /// Its publisher's media section, and its layers' rids (none without
    /// simulcast): what the publisher is told when a layer goes off or on.
    pub(crate) mid: String,
    pub(crate) rids: Vec<String>,
    /// Requests for keyframes, spaced for the one encoder behind all its
    /// layers (browsers ignore a request soon after another, whichever
    /// layer each names).
    pub(crate) keyframes: KeyframeRequests,
    /// The layers asked for since the last request went, one bit each.
    pub(crate) keyframe_layers: u8,
    pub(crate) level: Level,
}

/// A layer that sent nothing for this long is taken as stopped: the
/// publisher's encoder dropped it (its own uplink is short), or the
/// client turned it off.
pub(crate) const LAYER_STOPPED: Duration = Duration::from_millis(1_000);

/// A layer no subscriber has wanted for this long is turned off at its
/// publisher: long enough that a tile resized back and forth does not turn
/// it off and on again.
pub(crate) const LAYER_UNWANTED: Duration = Duration::from_millis(2_000);

/// The window over which a layer's bitrate is counted.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// The size taken for a track's largest layer until a keyframe tells.
const ASSUMED_TOP: (u16, u16) = (1280, 720);

/// One simulcast layer of a track (the track itself without simulcast).
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    /// When its latest packet came.
    pub(crate) last: Option<Instant>,
    /// Its frame size, read from its latest keyframe (VP8).
    pub(crate) size: Option<(u16, u16)>,
    /// The publisher was told to stop it: no subscriber wanted it.
    pub(crate) off: bool,
    /// What it sends, in bits per second, over the last whole window.
    pub(crate) bitrate: u64,
    /// The bytes of the window being counted, and when it began.
    window: (u64, Option<Instant>),
    /// Since when no subscriber wants it.
    pub(crate) unwanted_since: Option<Instant>,
}

impl UpTrack {
    pub(crate) fn new(
        key: Arc<TrackKey>,
        call: Uuid,
        home: Option<usize>,
        kind: Kind,
        source: Source,
        codec: Codec,
        layers: u8,
    ) -> UpTrack {
        UpTrack {
            key,
            call,
            home,
            kind,
            source,
            vp8: codec.mime_type.eq_ignore_ascii_case("video/VP8"),
            h264: codec.mime_type.eq_ignore_ascii_case("video/H264"),
            codec,
            subscribers: Vec::new(),
            layers: vec![Layer::default(); usize::from(layers.clamp(1, 8))],
            keyframes: KeyframeRequests::default(),
            keyframe_layers: 0,
            mid: String::new(),
            rids: Vec::new(),
            level: Level::default(),
        }
    }

    /// Notes a request for a keyframe of `layer` at `now` and says which
    /// layers to ask the encoder for now, one bit each (none: the request
    /// waits or merged into one that went). One encoder makes every layer,
    /// and browsers ignore a request that comes within 300 ms of the last
    /// whichever layer it names, so the spacing is the track's: layers
    /// asked for meanwhile go together with the next request. `force` as
    /// for [`KeyframeRequests::ask`]; `layer` past the track's, nothing.
    pub(crate) fn ask_keyframe(
        &mut self,
        layer: Option<u8>,
        now: Instant,
        force: bool,
        interval: Duration,
    ) -> u8 {
        if let Some(layer) = layer {
            if usize::from(layer) >= self.layers.len() {
                return 0;
            }
            self.keyframe_layers |= 1 << layer;
        }
        if self.keyframe_layers == 0 || self.keyframes.ask(now, force, interval) != Ask::Send {
            return 0;
        }
        std::mem::take(&mut self.keyframe_layers)
    }

    /// Whether it is sent in several layers.
    pub(crate) fn simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// Whether its layers are VP8, whose picture numbers a subscriber's
    /// stream continues across a switch of layer.
    pub(crate) fn vp8(&self) -> bool {
        self.vp8
    }

    /// The layers sending at `now`.
    pub(crate) fn sending(&self, now: Instant) -> impl Iterator<Item = u8> + '_ {
        (0..self.layers.len() as u8).filter(move |&l| self.is_sending(l, now))
    }

    fn is_sending(&self, layer: u8, now: Instant) -> bool {
        self.layers[usize::from(layer)]
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < LAYER_STOPPED)
    }

    /// The layers a subscriber may be given: those sending, and those the
    /// SFU turned off at the publisher, which come back when asked.
    pub(crate) fn available(&self, now: Instant) -> impl Iterator<Item = u8> + '_ {
        (0..self.layers.len() as u8)
            .filter(move |&l| self.layers[usize::from(l)].off || self.is_sending(l, now))
    }

    /// Turns layers off and on at the publisher by what its subscribers
    /// want (`wanted`, one bit per layer) at `now`: a wanted layer that is
    /// off comes on at once; one that sends and nobody has wanted for
    /// [`LAYER_UNWANTED`] goes off. The smallest layer stays on, so that a
    /// new subscriber starts at once. The rids to send where that changed.
    pub(crate) fn steer(&mut self, wanted: u8, now: Instant) -> Option<Vec<String>> {
        if !self.simulcast() || self.rids.len() != self.layers.len() {
            return None;
        }
        let mut changed = false;
        for l in 1..self.layers.len() as u8 {
            let sending = self.is_sending(l, now);
            let layer = &mut self.layers[usize::from(l)];
            if wanted & (1 << l) != 0 {
                layer.unwanted_since = None;
                if layer.off {
                    layer.off = false;
                    changed = true;
                }
                continue;
            }
            let since = *layer.unwanted_since.get_or_insert(now);
            if !layer.off && sending && now.saturating_duration_since(since) >= LAYER_UNWANTED {
                layer.off = true;
                changed = true;
            }
        }
        changed.then(|| {
            self.rids
                .iter()
                .zip(&self.layers)
                .filter(|(_, l)| !l.off)
                .map(|(rid, _)| rid.clone())
                .collect()
        })
    }

    /// The size of layer `layer`: read from its keyframes, else reckoned
    /// from a known layer's (each layer half the size of the next), else
    /// from a 720p top layer.
    pub(crate) fn size(&self, layer: u8) -> (u16, u16) {
        let at = usize::from(layer);
        if let Some(size) = self.layers.get(at).and_then(|l| l.size) {
            return size;
        }
        let known = self
            .layers
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.size.map(|s| (i, s)));
        let (from, (w, h)) = known.unwrap_or((self.layers.len() - 1, ASSUMED_TOP));
        let scale = |v: u16| -> u16 {
            let v = u32::from(v);
            let shifted = if at >= from {
                v << (at - from).min(4)
            } else {
                v >> (from - at).min(15)
            };
            shifted.min(u32::from(u16::MAX)) as u16
        };
        (scale(w), scale(h))
    }

    /// The layer a subscriber should receive when it draws the track at
    /// most `max` (width, height) in pixels, or as large as it comes
    /// (`None`): of the layers available, the smallest that fills the box
    /// on one side at least, else the largest. When none is, the same among
    /// all layers.
    pub(crate) fn layer_for(&self, max: Option<(u16, u16)>, now: Instant) -> u8 {
        let mut sending: Vec<u8> = self.available(now).collect();
        if sending.is_empty() {
            sending = (0..self.layers.len() as u8).collect();
        }
        let largest = *sending.last().unwrap_or(&0);
        let Some((w, h)) = max else {
            return largest;
        };
        sending
            .into_iter()
            .find(|&l| {
                let (lw, lh) = self.size(l);
                lw >= w || lh >= h
            })
            .unwrap_or(largest)
    }

    /// The word that mirrors this track on another loop, from loop `from`
    /// knowing the call's loops as of `generation`.
    pub(crate) fn opened(&self, from: usize, generation: u64) -> Relay {
        Relay::Opened {
            from,
            generation,
            call: self.call,
            key: self.key.clone(),
            kind: self.kind,
            source: self.source,
            codec: self.codec.clone(),
            layers: self.layers.len() as u8,
        }
    }

    /// Takes in what a packet says of the track: its audio level, that its
    /// layer sends, and the size a VP8 keyframe or an H.264 sequence
    /// parameter set names.
    pub(crate) fn observe(&mut self, packet: &Rtp, now: Instant) {
        if let Some(level) = packet.audio_level {
            self.level.observe(level, now);
        }
        let vp8 = self.vp8();
        let h264 = self.h264;
        let Some(layer) = self.layers.get_mut(usize::from(packet.layer)) else {
            return;
        };
        layer.last = Some(now);
        // Its payload and a header's worth, as the subscriber receives it.
        layer.window.0 += packet.payload.len() as u64 + 40;
        let start = *layer.window.1.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            layer.bitrate = layer.window.0 * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64;
            layer.window = (0, Some(now));
        }
        let size = if vp8 {
            vp8::keyframe_size(&packet.payload)
        } else if h264 {
            h264::sps_size(&packet.payload)
        } else {
            None
        };
        if size.is_some() {
            layer.size = size;
        }
    }

    /// Whether a subscriber can start playing at `packet`: at once for
    /// audio, at a keyframe for video (read from the codec's payload header).
    pub(crate) fn starts_playback(&self, packet: &Rtp) -> bool {
        self.kind == Kind::Audio || starts_keyframe(&self.codec.mime_type, &packet.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(payload: &'static [u8], audio_level: Option<u8>) -> Rtp {
        Rtp {
            ssrc: 1,
            seq: 1,
            ts: 1,
            marker: false,
            payload_type: 96,
            payload: Bytes::from_static(payload),
            audio_level,
            layer: 0,
        }
    }

    fn codec(mime_type: &str, clock_rate: u32) -> Codec {
        Codec {
            mime_type: mime_type.into(),
            clock_rate,
            channels: 0,
            fmtp: String::new(),
        }
    }

    fn track(kind: Kind, source: Source, codec: Codec) -> UpTrack {
        let key = Arc::new((Uuid::new_v4(), "track".to_string()));
        UpTrack::new(key, Uuid::new_v4(), None, kind, source, codec, 1)
    }

    #[test]
    fn audio_plays_from_any_packet_and_video_from_a_keyframe() {
        let audio = track(Kind::Audio, Source::Microphone, codec("audio/opus", 48_000));
        assert!(audio.starts_playback(&packet(b"\x00\x01", None)));
        let video = track(Kind::Video, Source::Camera, codec("video/VP8", 90_000));
        // VP8: descriptor with S=1, partition 0, then a payload header with P=0.
        assert!(video.starts_playback(&packet(b"\x10\x00\x00\x00", None)));
        // The same, P=1: an interframe.
        assert!(!video.starts_playback(&packet(b"\x10\x01\x00\x00", None)));
    }

    #[test]
    fn audio_levels_reach_the_speaker_level() {
        let t = Instant::now();
        let mut audio = track(Kind::Audio, Source::Microphone, codec("audio/opus", 48_000));
        audio.observe(&packet(b"\x00", None), t);
        assert_eq!(audio.level.speaking(t), None);
        audio.observe(&packet(b"\x00", Some(10)), t);
        assert_eq!(audio.level.speaking(t), Some(117));
    }

    #[test]
    fn a_subscriber_gets_the_smallest_sending_layer_that_fills_its_tile() {
        let t = Instant::now();
        let key = Arc::new((Uuid::new_v4(), "cam".to_string()));
        let vp8 = codec("video/VP8", 90_000);
        let mut cam = UpTrack::new(
            key,
            Uuid::new_v4(),
            None,
            Kind::Video,
            Source::Camera,
            vp8,
            3,
        );
        // Nothing came: sizes reckoned from a 720p top layer, halving down.
        assert_eq!(
            (cam.size(0), cam.size(1), cam.size(2)),
            ((320, 180), (640, 360), (1280, 720))
        );
        assert_eq!(cam.layer_for(None, t), 2);
        assert_eq!(cam.layer_for(Some((300, 160)), t), 0);
        assert_eq!(cam.layer_for(Some((400, 300)), t), 1);
        // A keyframe of layer 1 says 480x270: the others follow from it.
        let mut key = vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        key.extend_from_slice(&480u16.to_le_bytes());
        key.extend_from_slice(&270u16.to_le_bytes());
        let keyframe = Rtp {
            payload: Bytes::from(key),
            layer: 1,
            ..packet(b"", None)
        };
        cam.observe(&keyframe, t);
        assert_eq!(
            (cam.size(0), cam.size(1), cam.size(2)),
            ((240, 135), (480, 270), (960, 540))
        );
        // Only layer 1 sends now: it is what everyone gets.
        assert_eq!(cam.sending(t).collect::<Vec<_>>(), [1]);
        assert_eq!(cam.layer_for(None, t), 1);
        assert_eq!(cam.layer_for(Some((100, 100)), t), 1);
        // Layers 0 and 2 send too; a second on, layer 1 has stopped.
        let later = t + LAYER_STOPPED;
        for layer in [0, 2] {
            let p = Rtp {
                layer,
                ..packet(b"\x90", None)
            };
            cam.observe(&p, later);
        }
        assert_eq!(cam.sending(later).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(cam.layer_for(Some((400, 225)), later), 2);
        assert_eq!(cam.layer_for(Some((200, 100)), later), 0);
        // What a layer sends is counted over half a second: 100 bytes and a
        // header's 40 every 20 ms are 56 kbit/s.
        let mut mic = track(Kind::Audio, Source::Microphone, codec("audio/opus", 48_000));
        for n in 0..=26u64 {
            let p = Rtp {
                payload: Bytes::from(vec![0u8; 100]),
                ..packet(b"", None)
            };
            mic.observe(&p, t + Duration::from_millis(20 * n));
        }
        assert!(
            (54_000..=60_000).contains(&mic.layers[0].bitrate),
            "{}",
            mic.layers[0].bitrate
        );
        // A packet of a layer the track does not have changes nothing.
        cam.observe(
            &Rtp {
                layer: 7,
                ..packet(b"", None)
            },
            later,
        );
        assert_eq!(cam.layers.len(), 3);
    }

    #[test]
    fn an_h264_layers_size_is_read_from_its_sequence_parameter_set() {
        let t = Instant::now();
        let key = Arc::new((Uuid::new_v4(), "cam".to_string()));
        let mut cam = UpTrack::new(
            key,
            Uuid::new_v4(),
            None,
            Kind::Video,
            Source::Camera,
            codec("video/H264", 90_000),
            3,
        );
        // libx264's SPS for 640x360 on the top layer (the encoder was asked
        // for less than 720p): the others follow from it.
        let sps: Vec<u8> = (0..48)
            .step_by(2)
            .map(|i| {
                let hex = "6742c01ed900a02ff9610000030001000003003c0f162e48";
                u8::from_str_radix(&hex[i..i + 2], 16).unwrap()
            })
            .collect();
        let keyframe = Rtp {
            payload: Bytes::from(sps),
            layer: 2,
            ..packet(b"", None)
        };
        cam.observe(&keyframe, t);
        assert_eq!(
            (cam.size(0), cam.size(1), cam.size(2)),
            ((160, 90), (320, 180), (640, 360))
        );
        // A tile of 600x340 now takes the top layer, where a reckoned 720p
        // one would have given it the middle.
        assert_eq!(cam.layer_for(Some((600, 340)), t), 2);
    }

    #[test]
    fn keyframe_requests_for_several_layers_are_spaced_as_one_encoders() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let key = Arc::new((Uuid::new_v4(), "cam".to_string()));
        let vp8 = codec("video/VP8", 90_000);
        let mut cam = UpTrack::new(
            key,
            Uuid::new_v4(),
            None,
            Kind::Video,
            Source::Camera,
            vp8,
            3,
        );
        let interval = ms(500);
        assert_eq!(cam.ask_keyframe(Some(2), t, true, interval), 0b100);
        // Layer 0 for a subscriber moving down, 30 ms later: it waits, as
        // the encoder would ignore it now, and layer 1 joins it.
        assert_eq!(cam.ask_keyframe(Some(0), t + ms(30), true, interval), 0);
        assert_eq!(cam.ask_keyframe(Some(1), t + ms(60), false, interval), 0);
        let due = cam.keyframes.due().expect("held");
        assert_eq!(due, t + super::super::keyframe_requests::KEYFRAME_SPACING);
        // When it is due, both go together.
        assert_eq!(cam.ask_keyframe(None, due, true, interval), 0b011);
        assert_eq!(cam.keyframes.due(), None);
        // Nothing asked: nothing to send.
        assert_eq!(cam.ask_keyframe(None, due + ms(1000), true, interval), 0);
        // A layer the track does not have is not asked for.
        assert_eq!(cam.ask_keyframe(Some(3), due + ms(1000), true, interval), 0);
    }

    #[test]
    fn layers_no_one_wants_are_turned_off_after_a_while_and_on_at_once() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let key = Arc::new((Uuid::new_v4(), "cam".to_string()));
        let vp8 = codec("video/VP8", 90_000);
        let mut cam = UpTrack::new(
            key,
            Uuid::new_v4(),
            None,
            Kind::Video,
            Source::Camera,
            vp8,
            3,
        );
        cam.rids = ["q", "h", "f"].map(String::from).to_vec();
        let send = |cam: &mut UpTrack, at: Instant| {
            for layer in 0..3 {
                cam.observe(
                    &Rtp {
                        layer,
                        ..packet(b"\x90", None)
                    },
                    at,
                );
            }
        };
        send(&mut cam, t);
        // Everyone on q: nothing changes before 2 s.
        assert_eq!(cam.steer(0b001, t), None);
        send(&mut cam, t + ms(1500));
        assert_eq!(cam.steer(0b001, t + ms(1500)), None);
        // Then h and f go off; q never does.
        send(&mut cam, t + LAYER_UNWANTED);
        assert_eq!(
            cam.steer(0b001, t + LAYER_UNWANTED),
            Some(vec!["q".to_string()])
        );
        assert_eq!(
            cam.steer(0, t + ms(9000)),
            None,
            "q stays on, and off is said once"
        );
        // A layer turned off is still offered to subscribers.
        let later = t + ms(9000);
        send(&mut cam, later);
        assert_eq!(cam.available(later).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(cam.layer_for(None, later), 2);
        // Wanted again: on at once.
        assert_eq!(
            cam.steer(0b101, later),
            Some(vec!["q".to_string(), "f".to_string()])
        );
        // A layer the browser stopped by itself (f, here) is never turned
        // off, nor offered: it sends nothing to come back from. One turned
        // off (h) is still offered.
        let quiet = later + LAYER_STOPPED + LAYER_UNWANTED;
        cam.observe(
            &Rtp {
                layer: 0,
                ..packet(b"\x90", None)
            },
            quiet,
        );
        assert_eq!(cam.steer(0b001, quiet), None);
        assert_eq!(cam.steer(0b001, quiet + LAYER_UNWANTED), None);
        assert_eq!(cam.available(quiet).collect::<Vec<_>>(), [0, 1]);
    }
}
