//! The forwarder: for each packet of an up-track and each of its
//! down-tracks, what to send (the rewritten header) and whether the
//! subscriber can start playing with it. It decides; the loop sends.
//! A track the subscriber paused gets nothing; after the pause, sending
//! starts again at a packet it can decode from. Choosing among simulcast
//! layers will add packets it drops.

use std::time::Instant;

use crate::munger::Rewritten;
use crate::peer::Rtp;

use super::down_track::DownTrack;

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The header fields it goes out with; `None`: it is not sent.
    pub(crate) rewrite: Option<Rewritten>,
    /// Whether the subscriber can start playing with it, once it is sent:
    /// the first packet it can decode from, on a connection that is up.
    pub(crate) starts_playing: bool,
}

/// Decides for `packet` on `down`. `connected` says whether the
/// subscriber's connection is up (what is sent before is lost);
/// `starts_playback` says whether a subscriber can start at this packet, and
/// is asked only while the down-track waits to play or to resume. The
/// munger advances for every packet sent, sent before the connection is up
/// too, so the numbering has no hole to explain; across a pause it is
/// rebased.
pub(crate) fn decide(
    down: &mut DownTrack,
    packet: &Rtp,
    connected: bool,
    mut starts_playback: impl FnMut() -> bool,
    now: Instant,
) -> Decision {
    const NOTHING: Decision = Decision {
        rewrite: None,
        starts_playing: false,
    };
    if down.paused {
        return NOTHING;
    }
    if down.resuming {
        if !starts_playback() {
            return NOTHING;
        }
        down.resuming = false;
    }
    let rewrite = down.munger.rewrite(packet.ssrc, packet.seq, packet.ts, now);
    let starts_playing = !down.playing && connected && starts_playback();
    Decision {
        rewrite: Some(rewrite),
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
        assert_eq!(a.rewrite.unwrap().ssrc, 0xD0);
        assert_eq!(
            b.rewrite.unwrap().seq,
            a.rewrite.unwrap().seq.wrapping_add(1)
        );
        assert_eq!(
            b.rewrite.unwrap().ts.wrapping_sub(a.rewrite.unwrap().ts),
            3000
        );
        // A reordered packet keeps its place.
        let late = decide(&mut d, &packet(7, 499, 6000), true, || false, t);
        assert_eq!(
            late.rewrite.unwrap().seq,
            a.rewrite.unwrap().seq.wrapping_sub(1)
        );
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
        assert_eq!(
            next.rewrite.unwrap().seq,
            last.rewrite.unwrap().seq.wrapping_add(1)
        );
        assert_eq!(
            next.rewrite
                .unwrap()
                .ts
                .wrapping_sub(last.rewrite.unwrap().ts),
            9000
        );
    }

    #[test]
    fn a_paused_track_gets_nothing_and_resumes_at_a_keyframe_without_a_gap() {
        let t = Instant::now();
        let mut d = down();
        d.playing = true;
        let last = decide(&mut d, &packet(7, 10, 0), true, || false, t);
        assert!(d.set_paused(true));
        assert!(!d.set_paused(true), "paused already");
        for seq in 11..20 {
            assert_eq!(
                decide(&mut d, &packet(7, seq, 0), true, || true, t).rewrite,
                None
            );
        }
        assert!(d.set_paused(false));
        // Not a keyframe yet: still nothing.
        assert_eq!(
            decide(&mut d, &packet(7, 20, 0), true, || false, t).rewrite,
            None
        );
        let back = decide(&mut d, &packet(7, 21, 90_000), true, || true, t);
        let back = back.rewrite.expect("sent at the keyframe");
        assert_eq!(
            back.seq,
            last.rewrite.unwrap().seq.wrapping_add(1),
            "no gap"
        );
        let next = decide(&mut d, &packet(7, 22, 90_000), true, || false, t);
        assert_eq!(next.rewrite.unwrap().seq, back.seq.wrapping_add(1));
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
