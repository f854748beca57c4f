//! An up-track: one track a participant publishes, what it carries, who
//! receives it, and what the loop keeps of its packets (the speaker's level,
//! keyframe requests to its encoder). Simulcast's layers by RID and SSRC
//! will live here. A track of a call spread over several loops lives on
//! its publisher's loop, its home, and as a mirror on each of the others.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::events::Source;
use crate::keyframe::starts_keyframe;
use crate::peer::{Codec, Kind, Rtp};

use super::ids::TrackKey;
use super::keyframe_requests::KeyframeRequests;
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
    /// Who receives it, in the order they subscribed.
    pub(crate) subscribers: Vec<Uuid>,
    pub(crate) keyframes: KeyframeRequests,
    pub(crate) level: Level,
}

impl UpTrack {
    pub(crate) fn new(
        key: Arc<TrackKey>,
        call: Uuid,
        home: Option<usize>,
        kind: Kind,
        source: Source,
        codec: Codec,
    ) -> UpTrack {
        UpTrack {
            key,
            call,
            home,
            kind,
            source,
            codec,
            subscribers: Vec::new(),
            keyframes: KeyframeRequests::default(),
            level: Level::default(),
        }
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
        }
    }

    /// Takes in what a packet says of the track (its audio level).
    pub(crate) fn observe(&mut self, packet: &Rtp, now: Instant) {
        if let Some(level) = packet.audio_level {
            self.level.observe(level, now);
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
        UpTrack::new(key, Uuid::new_v4(), None, kind, source, codec)
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
}
