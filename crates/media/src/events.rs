//! What the engine tells signaling, and the words both sides share: what a
//! track carries, what an offer holds, the engine's counters.

use uuid::Uuid;

use crate::peer::Kind;

/// What the engine tells signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// The engine offers the participant's subscriber connection (new or
    /// changed tracks); answer with [`Engine::subscriber_answer`]. `tracks`
    /// says whose each offered media section is.
    SubscriberOffer {
        participant: Uuid,
        sdp: String,
        tracks: Vec<OfferedTrack>,
    },
    /// `subscriber` can now play `publisher`'s track of `kind`: its
    /// connection is up and the first keyframe (for audio, the first packet)
    /// went out to it. Sent once per subscription.
    Receiving {
        call: Uuid,
        subscriber: Uuid,
        publisher: Uuid,
        kind: Kind,
        source: Source,
    },
    /// The SFU wants `publisher` to send only the `active` layers (rids) of
    /// its simulcast track in media section `mid`: the others no subscriber
    /// receives. Sent when that changes.
    Layers {
        call: Uuid,
        publisher: Uuid,
        mid: String,
        active: Vec<String>,
    },
    /// `subscriber` no longer receives `publisher`'s track of `source`
    /// (`held`), or receives it again: not even its smallest layer fits the
    /// subscriber's bandwidth. Sent when that changes.
    BandwidthHeld {
        call: Uuid,
        subscriber: Uuid,
        publisher: Uuid,
        source: Source,
        held: bool,
    },
    /// A participant's media connection failed or closed.
    Disconnected { participant: Uuid },
    /// Who is speaking in a call now, loudest first, with a loudness from 0
    /// (silence) to 127; sent when the set changes, at most every 250 ms.
    Speaking {
        call: Uuid,
        speakers: Vec<(Uuid, u8)>,
    },
}

/// What a published track carries, as its publisher declared it (or as its
/// kind suggests: audio is the microphone, video the camera).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Microphone,
    Camera,
    Screen,
    ScreenAudio,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 4] = [
        Source::Microphone,
        Source::Camera,
        Source::Screen,
        Source::ScreenAudio,
    ];

    /// Whether a track of `kind` can carry this source.
    pub fn fits(self, kind: Kind) -> bool {
        match kind {
            Kind::Audio => matches!(self, Source::Microphone | Source::ScreenAudio),
            Kind::Video => matches!(self, Source::Camera | Source::Screen),
        }
    }

    /// The source a track of `kind` has when its publisher says nothing.
    pub fn default_for(kind: Kind) -> Source {
        match kind {
            Kind::Audio => Source::Microphone,
            Kind::Video => Source::Camera,
        }
    }
}

/// What a subscriber asks of one publisher's track of one source
/// (`call.subscribe`): whether it is paused, and the largest size it is
/// drawn at, from which the SFU picks a simulcast layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subscription {
    pub paused: bool,
    /// Width and height in pixels; `None`: as large as it comes.
    pub max_size: Option<(u16, u16)>,
}

/// One media section of an offer to a subscriber: whose track it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// The section's `a=mid`.
    pub mid: String,
    /// The participant who publishes it.
    pub publisher: Uuid,
    pub kind: Kind,
    pub source: Source,
}

/// Counters of the engine, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Media loops running.
    pub loops: usize,
    pub participants: usize,
    pub peers: usize,
    pub tracks: usize,
    pub packets_in: u64,
    pub packets_forwarded: u64,
    /// Packets handed to another loop of their call (once per loop),
    /// including those that loop had no room for.
    pub packets_relayed: u64,
    /// Datagrams the receive loop dropped (unknown sender, full loop
    /// queue), datagrams a peer refused, and handed packets another loop
    /// had no room for.
    pub datagrams_dropped: u64,
    pub keyframe_requests: u64,
}

impl EngineStats {
    pub(crate) fn add(&mut self, other: &EngineStats) {
        self.participants += other.participants;
        self.peers += other.peers;
        self.tracks += other.tracks;
        self.packets_in += other.packets_in;
        self.packets_forwarded += other.packets_forwarded;
        self.packets_relayed += other.packets_relayed;
        self.datagrams_dropped += other.datagrams_dropped;
        self.keyframe_requests += other.keyframe_requests;
    }
}
