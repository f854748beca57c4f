//! A down-track: one published track as one subscriber receives it, its
//! sender on the subscriber's connection and its own numbering.

use crate::munger::Munger;
use crate::peer::{Codec, SenderId};

pub(crate) struct DownTrack {
    pub(crate) sender: SenderId,
    pub(crate) munger: Munger,
    pub(crate) mime_type: String,
    /// The track id it is offered under (`a=msid`).
    pub(crate) name: String,
    /// Whether the subscriber was told it can play this track.
    pub(crate) playing: bool,
}

impl DownTrack {
    pub(crate) fn new(sender: SenderId, ssrc: u32, codec: &Codec, name: String) -> DownTrack {
        DownTrack {
            sender,
            munger: Munger::new(ssrc, codec.clock_rate),
            mime_type: codec.mime_type.clone(),
            name,
            playing: false,
        }
    }

    /// The SSRC the subscriber receives it under.
    pub(crate) fn ssrc(&self) -> u32 {
        self.munger.ssrc()
    }
}
