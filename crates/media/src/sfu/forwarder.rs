//! The forwarder: for each packet of an up-track and each of its
//! down-tracks, what to send (the rewritten header, and for VP8 simulcast
//! the picture numbers) and whether the subscriber can start playing with
//! it. It decides; the loop sends.
//! - A track the subscriber paused gets nothing; after the pause, sending
//!   starts again at a packet it can decode from.
//! - Of a simulcast track one layer goes out, `current`. Where the target
//!   layer differs, the current one goes on until the target's next
//!   keyframe, and from that packet on the target's packets go out under
//!   the same numbering: the subscriber sees one stream. A switch down for
//!   want of bandwidth (`shed`) stops the current layer at its next frame.

use std::time::Instant;

use crate::munger::{Rewritten, Vp8Patch};
use crate::peer::Rtp;
use crate::vp8::Descriptor;

use super::down_track::DownTrack;

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The header fields it goes out with; `None`: it is not sent.
    pub(crate) rewrite: Option<Rewritten>,
    /// Whether the subscriber can start playing with it, once it is sent:
    /// the first packet it can decode from, on a connection that is up.
    pub(crate) starts_playing: bool,
    /// The VP8 picture numbers to write into its payload, where they differ
    /// from the packet's own.
    pub(crate) vp8: Option<Vp8Patch>,
}

/// Decides for `packet` on `down`. `connected` says whether the
/// subscriber's connection is up (what is sent before is lost);
/// `starts_playback` says whether a subscriber can start at this packet, and
/// is asked only while the down-track waits to play, to resume or to switch
/// layer; `descriptor` reads the packet's VP8 payload descriptor, asked
/// only for a VP8 simulcast track. The munger advances for every packet
/// sent, sent before the connection is up too, so the numbering has no
/// hole to explain; across a pause it is rebased.
pub(crate) fn decide(
    down: &mut DownTrack,
    packet: &Rtp,
    connected: bool,
    mut starts_playback: impl FnMut() -> bool,
    descriptor: impl FnOnce() -> Option<Descriptor>,
    now: Instant,
) -> Decision {
    const NOTHING: Decision = Decision {
        rewrite: None,
        starts_playing: false,
        vp8: None,
    };
    if down.held() {
        return NOTHING;
    }
    let switching = down.current != Some(packet.layer);
    if !switching && down.shed && down.target != packet.layer && !down.mid_frame {
        return NOTHING;
    }
    if switching || down.resuming {
        if switching && packet.layer != down.target {
            return NOTHING;
        }
        // A down-track's very first packet goes at once (the subscriber's
        // decoder waits for the keyframe asked for it); a switch of layer
        // or a resume waits for a packet it can decode from.
        let at_once = down.current.is_none() && !down.resuming;
        if !at_once && !starts_playback() {
            return NOTHING;
        }
        down.current = Some(packet.layer);
        down.resuming = false;
    }
    let rewrite = down.munger.rewrite(packet.ssrc, packet.seq, packet.ts, now);
    down.mid_frame = !packet.marker;
    let vp8 = down.vp8.as_mut().and_then(|ids| {
        let d = descriptor()?;
        let (picture_id, tl0_pic_idx) = ids.rewrite(packet.ssrc, &d);
        let same = picture_id == d.picture_id.map(|p| p.value) && tl0_pic_idx == d.tl0_pic_idx;
        (!same).then_some(Vp8Patch {
            picture_id,
            tl0_pic_idx,
        })
    });
    let starts_playing = !down.playing && connected && starts_playback();
    Decision {
        rewrite: Some(rewrite),
        starts_playing,
        vp8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Codec;
    use bytes::Bytes;
    use std::time::Duration;

    /// A decision on a track that is not VP8 simulcast.
    fn plain(
        down: &mut DownTrack,
        packet: &Rtp,
        connected: bool,
        starts_playback: impl FnMut() -> bool,
        now: Instant,
    ) -> Decision {
        decide(down, packet, connected, starts_playback, || None, now)
    }

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
            layer: 0,
        }
    }

    #[test]
    fn packets_go_out_under_the_subscribers_numbering_in_order() {
        let t = Instant::now();
        let mut d = down();
        let a = plain(&mut d, &packet(7, 500, 9000), true, || false, t);
        let b = plain(&mut d, &packet(7, 501, 12000), true, || false, t);
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
        let late = plain(&mut d, &packet(7, 499, 6000), true, || false, t);
        assert_eq!(
            late.rewrite.unwrap().seq,
            a.rewrite.unwrap().seq.wrapping_sub(1)
        );
    }

    #[test]
    fn a_switch_of_source_continues_the_stream() {
        let t = Instant::now();
        let mut d = down();
        let last = plain(&mut d, &packet(7, 10, 0), true, || false, t);
        let next = plain(
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
        let last = plain(&mut d, &packet(7, 10, 0), true, || false, t);
        assert!(d.set_paused(true));
        assert!(!d.set_paused(true), "paused already");
        for seq in 11..20 {
            assert_eq!(
                plain(&mut d, &packet(7, seq, 0), true, || true, t).rewrite,
                None
            );
        }
        assert!(d.set_paused(false));
        // Not a keyframe yet: still nothing.
        assert_eq!(
            plain(&mut d, &packet(7, 20, 0), true, || false, t).rewrite,
            None
        );
        let back = plain(&mut d, &packet(7, 21, 90_000), true, || true, t);
        let back = back.rewrite.expect("sent at the keyframe");
        assert_eq!(
            back.seq,
            last.rewrite.unwrap().seq.wrapping_add(1),
            "no gap"
        );
        let next = plain(&mut d, &packet(7, 22, 90_000), true, || false, t);
        assert_eq!(next.rewrite.unwrap().seq, back.seq.wrapping_add(1));
    }

    #[test]
    fn a_switch_down_for_bandwidth_stops_the_large_layer_at_its_next_frame() {
        let t = Instant::now();
        let mut d = down();
        d.playing = true;
        d.current = Some(2);
        d.target = 2;
        let layer = |layer: u8, seq: u16, ts: u32, marker: bool| Rtp {
            ssrc: 100 + u32::from(layer),
            marker,
            layer,
            ..packet(0, seq, ts)
        };
        // A frame of the large layer is half sent when the switch comes.
        assert!(plain(&mut d, &layer(2, 1, 0, false), true, || true, t)
            .rewrite
            .is_some());
        (d.target, d.shed) = (0, true);
        // It is finished, so the subscriber is not left half a frame.
        let last = plain(&mut d, &layer(2, 2, 0, true), true, || false, t);
        let last = last.rewrite.expect("the frame's end goes");
        // The next frames of the large layer do not, nor the small layer's
        // interframes.
        for seq in 3..10 {
            let large = plain(&mut d, &layer(2, seq, 3_000, seq == 9), true, || false, t);
            assert_eq!(large.rewrite, None, "large layer, packet {seq}");
            let small = plain(&mut d, &layer(0, seq, 3_000, true), true, || false, t);
            assert_eq!(small.rewrite, None);
        }
        // The small layer's keyframe goes next in the numbering.
        let key = plain(&mut d, &layer(0, 10, 6_000, false), true, || true, t);
        assert_eq!(key.rewrite.expect("switched").seq, last.seq.wrapping_add(1));
        assert_eq!(d.current, Some(0));
        // Without the bandwidth's word, the large layer goes on until then.
        let mut d = down();
        (d.playing, d.current, d.target) = (true, Some(2), 0);
        for seq in 1..5 {
            let large = plain(&mut d, &layer(2, seq, 0, true), true, || false, t);
            assert!(large.rewrite.is_some());
        }
    }

    #[test]
    fn playing_starts_only_at_a_playable_packet_on_a_connected_subscriber() {
        let t = Instant::now();
        let mut d = down();
        let mut asked = 0;
        // Not connected: not playable, and the packet is not even looked at.
        let before = plain(
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
        assert!(!plain(&mut d, &packet(7, 2, 0), true, || false, t).starts_playing);
        let start = plain(&mut d, &packet(7, 3, 0), true, || true, t);
        assert!(start.starts_playing);
        // The loop marks it playing once sent; then nothing is looked at.
        d.playing = true;
        let mut asked = 0;
        let after = plain(
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

    /// A VP8 packet of layer `layer` (SSRC 100 + layer): a 15-bit picture
    /// id and TL0PICIDX, and a keyframe's or an interframe's first bytes.
    fn vp8(layer: u8, seq: u16, picture_id: u16, tl0: u8, key: bool) -> Rtp {
        let [hi, lo] = (0x8000 | picture_id).to_be_bytes();
        let frame = if key { 0x00 } else { 0x01 };
        Rtp {
            ssrc: 100 + u32::from(layer),
            seq,
            ts: u32::from(seq) * 3000,
            marker: true,
            payload_type: 96,
            payload: Bytes::from(vec![0x90, 0xC0, hi, lo, tl0, frame, 0, 0]),
            audio_level: None,
            layer,
        }
    }

    fn simulcast(target: u8) -> DownTrack {
        let mut d = down();
        d.target = target;
        d.vp8 = Some(crate::vp8::IdMunger::default());
        d
    }

    fn go(d: &mut DownTrack, p: &Rtp, t: Instant) -> Decision {
        let key = p.payload[5] & 0x01 == 0;
        decide(d, p, true, || key, || crate::vp8::descriptor(&p.payload), t)
    }

    #[test]
    fn of_a_simulcast_track_one_layer_goes_out_and_a_switch_waits_for_a_keyframe() {
        let t = Instant::now();
        let mut d = simulcast(0);
        // Packets of a layer it does not want are not sent, from the start.
        assert_eq!(go(&mut d, &vp8(2, 900, 7000, 40, true), t).rewrite, None);
        let first = go(&mut d, &vp8(0, 10, 300, 5, false), t).rewrite.unwrap();
        assert_eq!(d.current, Some(0));
        // Up to layer 2: layer 0 goes on until layer 2's keyframe.
        d.target = 2;
        assert_eq!(go(&mut d, &vp8(2, 901, 7001, 40, false), t).rewrite, None);
        let before = go(&mut d, &vp8(0, 11, 301, 5, false), t).rewrite.unwrap();
        assert_eq!(before.seq, first.seq.wrapping_add(1));
        let switched = go(&mut d, &vp8(2, 902, 7002, 41, true), t);
        let at = switched.rewrite.expect("sent at the keyframe");
        assert_eq!(d.current, Some(2));
        assert_eq!(at.ssrc, first.ssrc, "the same stream for the subscriber");
        assert_eq!(
            at.seq,
            before.seq.wrapping_add(1),
            "no gap in the numbering"
        );
        // Its picture numbers continue layer 0's.
        assert_eq!(
            switched.vp8,
            Some(Vp8Patch {
                picture_id: Some(302),
                tl0_pic_idx: Some(6)
            })
        );
        // Layer 0 is no longer sent; layer 2 goes on, numbered on.
        assert_eq!(go(&mut d, &vp8(0, 12, 302, 5, false), t).rewrite, None);
        let next = go(&mut d, &vp8(2, 903, 7003, 41, false), t);
        assert_eq!(next.rewrite.unwrap().seq, at.seq.wrapping_add(1));
        assert_eq!(next.vp8.unwrap().picture_id, Some(303));
    }

    #[test]
    fn a_switch_down_and_a_resume_also_wait_for_a_keyframe_of_the_target() {
        let t = Instant::now();
        let mut d = simulcast(2);
        d.playing = true;
        let last = go(&mut d, &vp8(2, 50, 100, 9, true), t).rewrite.unwrap();
        d.target = 1;
        // A keyframe of a layer that is neither current nor target: nothing.
        assert_eq!(go(&mut d, &vp8(0, 5, 10, 1, true), t).rewrite, None);
        assert_eq!(go(&mut d, &vp8(1, 70, 500, 3, false), t).rewrite, None);
        let down = go(&mut d, &vp8(1, 71, 501, 3, true), t).rewrite.unwrap();
        assert_eq!(down.seq, last.seq.wrapping_add(1));
        assert!(d.set_paused(true));
        assert_eq!(go(&mut d, &vp8(1, 72, 502, 3, true), t).rewrite, None);
        assert!(d.set_paused(false));
        assert_eq!(go(&mut d, &vp8(1, 73, 503, 3, false), t).rewrite, None);
        let back = go(&mut d, &vp8(1, 74, 504, 4, true), t).rewrite.unwrap();
        assert_eq!(
            back.seq,
            down.seq.wrapping_add(1),
            "no gap across the pause"
        );
    }
}
