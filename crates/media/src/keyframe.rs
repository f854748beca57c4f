//! Whether an RTP packet starts a keyframe, read from the codec's payload
//! header. The SFU uses it to know when a subscriber can decode a track it
//! was just given, so that it can say so (and ask again if no keyframe
//! comes). Nothing here trusts the payload: a short or odd packet is simply
//! not a keyframe.

/// Whether `payload` (an RTP payload of the codec `mime_type`) begins a
/// keyframe. Unknown codecs and audio answer `false`.
pub fn starts_keyframe(mime_type: &str, payload: &[u8]) -> bool {
    if mime_type.eq_ignore_ascii_case("video/VP8") {
        vp8(payload)
    } else if mime_type.eq_ignore_ascii_case("video/H264") {
        h264(payload)
    } else if mime_type.eq_ignore_ascii_case("video/VP9") {
        vp9(payload)
    } else if mime_type.eq_ignore_ascii_case("video/AV1") {
        av1(payload)
    } else {
        false
    }
}

/// RFC 7741: the payload descriptor, then on the first packet of a frame
/// (S set, partition 0) the VP8 frame header, whose P bit is 0 on a keyframe.
fn vp8(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&x) = p.get(at) else {
            return false;
        };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    p.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// RFC 6184: an IDR slice (5) or a sequence parameter set (7), alone, in a
/// STAP-A, or at the start of an FU-A.
fn h264(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                let Some(&nal) = p.get(at + 2) else {
                    return false;
                };
                if matches!(nal & 0x1f, 5 | 7) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

/// The VP9 payload descriptor (RFC 9628): the first packet of a picture (B)
/// that is not inter-picture predicted (P clear), of the lowest spatial layer.
fn vp9(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let predicted = first & 0x40 != 0;
    let begins = first & 0x08 != 0;
    if predicted || !begins {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        // PictureID
        let Some(&pid) = p.get(at) else {
            return false;
        };
        at += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    if first & 0x20 != 0 {
        // Layer indices: the spatial layer must be the base one.
        let Some(&layers) = p.get(at) else {
            return false;
        };
        return (layers >> 1) & 0x07 == 0;
    }
    true
}

/// The AV1 aggregation header: N marks the first packet of a coded video
/// sequence, which starts with a keyframe.
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|header| header & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_told_from_delta_frames() {
        // Extended descriptor with a 15-bit picture id, start of partition 0.
        assert!(starts_keyframe(
            "video/VP8",
            &[0x90, 0x80, 0x81, 0x23, 0x10]
        ));
        assert!(!starts_keyframe(
            "video/VP8",
            &[0x90, 0x80, 0x81, 0x23, 0x11]
        ));
        // Not the start of a frame.
        assert!(!starts_keyframe(
            "video/VP8",
            &[0x80, 0x80, 0x81, 0x23, 0x10]
        ));
        // Minimal descriptor.
        assert!(starts_keyframe("video/vp8", &[0x10, 0x00]));
        // Cut short anywhere: no keyframe, no panic.
        for n in 0..5 {
            assert!(!starts_keyframe(
                "video/VP8",
                &[0x90, 0x80, 0x81, 0x23][..n]
            ));
        }
    }

    #[test]
    fn h264_idr_and_sps_in_every_packetisation() {
        assert!(starts_keyframe("video/H264", &[0x65, 0x88]));
        assert!(starts_keyframe("video/H264", &[0x67, 0x42]));
        assert!(!starts_keyframe("video/H264", &[0x41, 0x9a]));
        // STAP-A carrying an SPS.
        assert!(starts_keyframe(
            "video/H264",
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        // FU-A: start of an IDR, and its middle.
        assert!(starts_keyframe("video/H264", &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe("video/H264", &[0x7c, 0x05, 0x00]));
        assert!(!starts_keyframe("video/H264", &[0x78, 0xff, 0xff]));
    }

    #[test]
    fn vp9_av1_and_others() {
        assert!(starts_keyframe("video/VP9", &[0x08]));
        assert!(starts_keyframe("video/VP9", &[0x88, 0x01]));
        assert!(!starts_keyframe("video/VP9", &[0xc8, 0x01]));
        assert!(!starts_keyframe("video/VP9", &[0xa8, 0x01, 0x02]));
        assert!(starts_keyframe("video/AV1", &[0x18]));
        assert!(!starts_keyframe("video/AV1", &[0x10]));
        assert!(!starts_keyframe("audio/opus", &[0xff; 8]));
        assert!(!starts_keyframe("video/VP9", &[]));
    }
}
