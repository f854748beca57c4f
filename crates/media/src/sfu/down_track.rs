//! A down-track: one published track as one subscriber receives it, under
//! an SSRC of the subscriber's connection, with its own numbering.

use crate::munger::Munger;
use crate::peer::Codec;

pub(crate) struct DownTrack {
    pub(crate) munger: Munger,
    /// The track id it is offered under (`a=msid`).
    pub(crate) name: String,
    /// Whether the subscriber was told it can play this track.
    pub(crate) playing: bool,
}

impl DownTrack {
    pub(crate) fn new(ssrc: u32, codec: &Codec, name: String) -> DownTrack {
        DownTrack {
            munger: Munger::new(ssrc, codec.clock_rate),
            name,
            playing: false,
        }
    }

    /// The SSRC the subscriber receives it under: its sender on the connection.
    pub(crate) fn ssrc(&self) -> u32 {
        self.munger.ssrc()
    }
}
