//! The picture size of an H.264 stream, read from the sequence parameter
//! set (SPS) that comes with each keyframe: the SFU learns each simulcast
//! layer's real size from it, as it does from VP8's keyframe header, instead
//! of reckoning it from the layer's rank. Nothing here trusts the payload:
//! a short, odd or unsupported SPS gives no size.

/// NAL unit types (ITU-T H.264 Table 7-1; RFC 6184 §5.2).
const SPS: u8 = 7;
const STAP_A: u8 = 24;

/// The size an SPS in `payload` (an RTP payload, RFC 6184: a single NAL
/// unit or a STAP-A) says, in pixels, after cropping.
pub fn sps_size(payload: &[u8]) -> Option<(u16, u16)> {
    let first = *payload.first()?;
    match first & 0x1f {
        SPS => size(payload),
        STAP_A => {
            // 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while let Some(len) = payload.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let nal = payload.get(at + 2..at + 2 + len)?;
                if nal.first().is_some_and(|b| b & 0x1f == SPS) {
                    return size(nal);
                }
                at += 2 + len;
            }
            None
        }
        _ => None,
    }
}

/// Profiles whose SPS carries the chroma format, bit depths and scaling
/// matrices (H.264 §7.3.2.1.1).
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Reads an SPS NAL unit (its header byte first) up to the frame size.
fn size(nal: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits::new(nal.get(1..)?);
    let profile = r.bits(8)? as u8;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if HIGH_PROFILES.contains(&profile) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            // seq_scaling_matrix_present_flag: the lists, skipped.
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    r.scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    // Cropping counts in chroma samples (Table 6-1, equations 7-19, 7-20).
    let (sub_width, sub_height): (u32, u32) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (unit_x, unit_y): (u32, u32) = if chroma_format == 0 {
        (1, 2 - frame_mbs_only)
    } else {
        (sub_width, sub_height * (2 - frame_mbs_only))
    };
    let width = u64::from(width_mbs) * 16;
    let height = u64::from(2 - frame_mbs_only) * u64::from(height_units) * 16;
    let crop = |a: u32, b: u32, unit: u32| (u64::from(a) + u64::from(b)) * u64::from(unit);
    let width = width.checked_sub(crop(left, right, unit_x))?;
    let height = height.checked_sub(crop(top, bottom, unit_y))?;
    let fits = |v: u64| u16::try_from(v).ok().filter(|v| *v > 0);
    Some((fits(width)?, fits(height)?))
}

/// A reader of the bits of a NAL unit's payload, which drops the emulation
/// prevention bytes (a 3 after two zeros) as it goes.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    /// The current byte, and how many of its bits are left.
    byte: u8,
    left: u8,
    zeros: u8,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            at: 0,
            byte: 0,
            left: 0,
            zeros: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            let mut byte = *self.data.get(self.at)?;
            self.at += 1;
            if self.zeros >= 2 && byte == 3 {
                byte = *self.data.get(self.at)?;
                self.at += 1;
                self.zeros = 0;
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            (self.byte, self.left) = (byte, 8);
        }
        self.left -= 1;
        Some(u32::from((self.byte >> self.left) & 1))
    }

    /// `n` bits (at most 32), the first the most significant.
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// An unsigned Exp-Golomb number (§9.1); `None` past 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// A signed Exp-Golomb number (§9.1.1).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// Skips a scaling list of `size` entries (§7.3.2.1.1.1).
    fn scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i64, 8i64);
        for _ in 0..size {
            if next != 0 {
                let delta = self.se()?;
                next = (last + delta).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// SPSs from libx264: High profile at 1280x720 and 1920x1080 (68
    /// macroblock rows cropped to 1080), Constrained Baseline at 640x360
    /// and 320x180 (cropped too). Each holds emulation prevention bytes.
    const X264: [(&str, (u16, u16)); 4] = [
        (
            "6764001facd9405005ba10000003001000000303c0f1831960",
            (1280, 720),
        ),
        (
            "67640028acd940780227e584000003000400000300f03c60c658",
            (1920, 1080),
        ),
        (
            "6742c01ed900a02ff9610000030001000003003c0f162e48",
            (640, 360),
        ),
        (
            "6742c00dd901419f9e10000003001000000303c0f142a480",
            (320, 180),
        ),
    ];

    #[test]
    fn an_encoders_sps_gives_its_frame_size_alone_or_in_a_stap_a() {
        for (sps, want) in X264 {
            let nal = hex(sps);
            assert_eq!(sps_size(&nal), Some(want), "{sps}");
            // A STAP-A: an SPS, then a PPS, as browsers send them.
            let pps = [0x68, 0xce, 0x3c, 0x80];
            let mut stap = vec![0x78];
            for unit in [&nal[..], &pps[..]] {
                stap.extend_from_slice(&(unit.len() as u16).to_be_bytes());
                stap.extend_from_slice(unit);
            }
            assert_eq!(sps_size(&stap), Some(want), "in a STAP-A: {sps}");
            // The PPS first makes no difference.
            let mut stap = vec![0x78, 0, 4];
            stap.extend_from_slice(&pps);
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(&nal);
            assert_eq!(sps_size(&stap), Some(want));
        }
    }

    #[test]
    fn anything_else_gives_no_size_and_never_panics() {
        // An IDR slice, an FU-A, nothing.
        assert_eq!(sps_size(&[0x65, 0x88, 0x84]), None);
        assert_eq!(sps_size(&[0x7c, 0x85, 0x88]), None);
        assert_eq!(sps_size(&[]), None);
        // Every cut of a real SPS, and of a STAP-A holding it.
        let nal = hex(X264[0].0);
        for cut in 0..nal.len() {
            let _ = sps_size(&nal[..cut]);
            let mut stap = vec![0x78, 0, nal.len() as u8];
            stap.extend_from_slice(&nal[..cut]);
            assert_eq!(sps_size(&stap), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_payload_is_read_without_panicking(data: Vec<u8>) {
            let mut sps = vec![0x67];
            sps.extend_from_slice(&data);
            let _ = sps_size(&sps);
            let _ = sps_size(&data);
        }
    }
}
