//! The names the loop's parts share.

use uuid::Uuid;

use crate::peer::TrackId;

/// A peer, unique within its loop.
pub(crate) type PeerKey = u64;

/// A published track: its publisher and `rtc`'s id for it.
pub(crate) type TrackKey = (Uuid, TrackId);

/// Which way a participant's connection carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The participant's own tracks, to the loop.
    Publisher,
    /// Everyone else's tracks, from the loop.
    Subscriber,
}
