//! The forwarder: for each packet of an up-track and each of its
//! down-tracks, what to send (the rewritten header) and whether the
//! subscriber can start playing with it. It decides; the loop sends.
//! Today every packet is forwarded; choosing among simulcast layers and
//! pausing a track will add packets it drops.

use std::time::Instant;

use crate::munger::Rewritten;
use crate::peer::Rtp;

use super::down_track::DownTrack;

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The header fields it goes out with.
    pub(crate) rewrite: Rewritten,
    /// Whether the subscriber can start playing with it, once it is sent:
    /// the first packet it can decode from, on a connection that is up.
    pub(crate) starts_playing: bool,
}

/// Decides for `packet` on `down`. `connected` says whether the
/// subscriber's connection is up (what is sent before is lost);
/// `starts_playback` says whether a subscriber can start at this packet, and
/// is asked only while the down-track waits to play. The munger advances
/// for every packet, sent or not, so the numbering has no hole to explain.
pub(crate) fn decide(
    down: &mut DownTrack,
    packet: &Rtp,
    connected: bool,
    starts_playback: impl FnOnce() -> bool,
    now: Instant,
) -> Decision {
    let rewrite = down.munger.rewrite(packet.ssrc, packet.seq, packet.ts, now);
    let starts_playing = !down.playing && connected && starts_playback();
    Decision {
        rewrite,
        starts_playing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Codec;
    use bytes::Bytes;
    use std::time::Duration;

    fn down() -> DownTrack {
        let codec = Codec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            fmtp: String::new(),
        };
        DownTrack::new(0xD0, &codec, "t".into())
    }

    fn packet(ssrc: u32, seq: u16, ts: u32) -> Rtp {
        Rtp {
            ssrc,
            seq,
            ts,
            marker: false,
            payload_type: 96,
            payload: Bytes::new(),
            audio_level: None,
        }
    }

    #[test]
    fn packets_go_out_under_the_subscribers_numbering_in_order() {
        let t = Instant::now();
        let mut d = down();
        let a = decide(&mut d, &packet(7, 500, 9000), true, || false, t);
        let b = decide(&mut d, &packet(7, 501, 12000), true, || false, t);
        assert_eq!(a.rewrite.ssrc, 0xD0);
        assert_eq!(b.rewrite.seq, a.rewrite.seq.wrapping_add(1));
        assert_eq!(b.rewrite.ts.wrapping_sub(a.rewrite.ts), 3000);
        // A reordered packet keeps its place.
        let late = decide(&mut d, &packet(7, 499, 6000), true, || false, t);
        assert_eq!(late.rewrite.seq, a.rewrite.seq.wrapping_sub(1));
    }

    #[test]
    fn a_switch_of_source_continues_the_stream() {
        let t = Instant::now();
        let mut d = down();
        let last = decide(&mut d, &packet(7, 10, 0), true, || false, t);
        let next = decide(
            &mut d,
            &packet(8, 40_000, 5),
            true,
            || false,
            t + Duration::from_millis(100),
        );
        assert_eq!(next.rewrite.seq, last.rewrite.seq.wrapping_add(1));
        assert_eq!(next.rewrite.ts.wrapping_sub(last.rewrite.ts), 9000);
    }

    #[test]
    fn playing_starts_only_at_a_playable_packet_on_a_connected_subscriber() {
        let t = Instant::now();
        let mut d = down();
        let mut asked = 0;
        // Not connected: not playable, and the packet is not even looked at.
        let before = decide(
            &mut d,
            &packet(7, 1, 0),
            false,
            || {
                asked += 1;
                true
            },
            t,
        );
        assert!(!before.starts_playing);
        assert_eq!(asked, 0);
        // Connected, but not a packet to start from.
        assert!(!decide(&mut d, &packet(7, 2, 0), true, || false, t).starts_playing);
        let start = decide(&mut d, &packet(7, 3, 0), true, || true, t);
        assert!(start.starts_playing);
        // The loop marks it playing once sent; then nothing is looked at.
        d.playing = true;
        let mut asked = 0;
        let after = decide(
            &mut d,
            &packet(7, 4, 0),
            true,
            || {
                asked += 1;
                true
            },
            t,
        );
        assert!(!after.starts_playing);
        assert_eq!(asked, 0);
    }
}
