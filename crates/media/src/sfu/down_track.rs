//! A down-track: one published track as one subscriber receives it, under
//! an SSRC of the subscriber's connection, with its own numbering, and of a
//! simulcast track one layer at a time.

use crate::munger::Munger;
use crate::peer::Codec;
use crate::vp8::IdMunger;

pub(crate) struct DownTrack {
    pub(crate) munger: Munger,
    /// The track id it is offered under (`a=msid`).
    pub(crate) name: String,
    /// Whether the subscriber was told it can play this track.
    pub(crate) playing: bool,
    /// Whether the subscriber paused it (`call.subscribe`): nothing is sent.
    pub(crate) paused: bool,
    /// Whether the allocator left it out: not even its smallest layer fits
    /// the subscriber's bandwidth. Nothing is sent either.
    pub(crate) starved: bool,
    /// Whether a moderator stopped the publisher's track: nothing is sent.
    pub(crate) stopped: bool,
    /// After a pause, sending waits for a packet the subscriber can start
    /// decoding from (a keyframe's first, for video).
    pub(crate) resuming: bool,
    /// The layer forwarded now; `None` before the first packet went.
    pub(crate) current: Option<u8>,
    /// The layer it should receive: where it differs from `current`, the
    /// switch happens at the target layer's next keyframe.
    pub(crate) target: u8,
    /// The target is smaller than the current layer, which alone takes
    /// more than the subscriber's whole estimate: the current layer stops
    /// at its next frame rather than go on until the target's keyframe, so
    /// a link found short is not sent a large layer meanwhile.
    pub(crate) shed: bool,
    /// The last packet sent ended no frame: a frame is half sent.
    pub(crate) mid_frame: bool,
    /// The largest size the subscriber draws it at, where it said.
    pub(crate) max: Option<(u16, u16)>,
    /// The layer the allocator grants within the subscriber's bandwidth,
    /// once an estimate is known.
    pub(crate) cap: Option<u8>,
    /// For a VP8 simulcast track: the picture numbers the subscriber sees,
    /// continued across switches of layer.
    pub(crate) vp8: Option<IdMunger>,
}

impl DownTrack {
    pub(crate) fn new(ssrc: u32, codec: &Codec, name: String) -> DownTrack {
        DownTrack {
            munger: Munger::new(ssrc, codec.clock_rate),
            name,
            playing: false,
            paused: false,
            starved: false,
            stopped: false,
            resuming: false,
            current: None,
            target: 0,
            shed: false,
            mid_frame: false,
            max: None,
            cap: None,
            vp8: None,
        }
    }

    /// Whether nothing of it is sent now: paused, left out, or stopped.
    pub(crate) fn held(&self) -> bool {
        self.paused || self.starved || self.stopped
    }

    /// Pauses or resumes it for the subscriber; whether that changed
    /// anything.
    pub(crate) fn set_paused(&mut self, paused: bool) -> bool {
        self.set_hold(|d| &mut d.paused, paused)
    }

    /// Leaves it out for the subscriber's bandwidth, or takes it back;
    /// whether that changed anything.
    pub(crate) fn set_starved(&mut self, starved: bool) -> bool {
        self.set_hold(|d| &mut d.starved, starved)
    }

    /// Stops it at a moderator's word, or lets it go on; whether that
    /// changed anything.
    pub(crate) fn set_stopped(&mut self, stopped: bool) -> bool {
        self.set_hold(|d| &mut d.stopped, stopped)
    }

    /// Sets one of the reasons to hold it; whether that changed anything.
    fn set_hold(&mut self, reason: fn(&mut DownTrack) -> &mut bool, value: bool) -> bool {
        let held = self.held();
        let flag = reason(self);
        if *flag == value {
            return false;
        }
        *flag = value;
        self.hold_changed(held);
        true
    }

    /// Across a hold the numbering is rebased; after it, sending starts
    /// again at a packet the subscriber can decode from.
    fn hold_changed(&mut self, was_held: bool) {
        match (was_held, self.held()) {
            (false, true) => {
                self.munger.rebase();
                self.resuming = false;
            }
            (true, false) => self.resuming = true,
            _ => {}
        }
    }

    /// The SSRC the subscriber receives it under: its sender on the connection.
    pub(crate) fn ssrc(&self) -> u32 {
        self.munger.ssrc()
    }
}
