//! The VP8 payload descriptor (RFC 7741) as the forwarder sees it. When a
//! subscriber is moved from one simulcast layer to another, each layer being
//! its own encoder stream with its own picture numbering, the forwarder
//! rewrites the PictureID and TL0PICIDX of every packet it sends so that the
//! subscriber's decoder sees one continuous stream; and the SFU learns each
//! layer's resolution from its keyframes. Pure functions and plain state: no
//! IO, no clock, no allocation, and no input makes any of it panic.

/// PictureID values wrap at 15 bits.
const PID_MASK: u16 = 0x7fff;
/// The 7-bit form of a PictureID.
const PID_NARROW_MASK: u16 = 0x7f;

/// What a VP8 payload descriptor says that the forwarder rewrites or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// PictureID and whether it is the 15-bit form (M bit) rather than 7-bit.
    pub picture_id: Option<PictureId>,
    pub tl0_pic_idx: Option<u8>,
    /// The temporal layer index (TID), where the T bit is set.
    pub temporal: Option<u8>,
    /// S bit set and partition index 0: the packet begins a frame.
    pub starts_frame: bool,
    /// Offset of the payload (the VP8 frame data) after the descriptor.
    pub header_len: usize,
}

/// A PictureID as the packet carries it: `wide` is the 15-bit form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    pub wide: bool,
}

/// Where the fields of a descriptor lie in the packet.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The PictureID's first byte, and whether it has a second (M bit).
    picture_id: Option<(usize, bool)>,
    tl0_pic_idx: Option<usize>,
    /// The TID/Y/KEYIDX byte, present when T or K is set.
    tid_keyidx: Option<usize>,
    /// Whether the T bit says the TID is meaningful.
    has_tid: bool,
    starts_frame: bool,
    header_len: usize,
}

/// Finds the descriptor's fields: byte 0 is X|R|N|S|R|PID, then, if X, the
/// I|L|T|K byte and the fields it announces. `None` when the packet ends
/// before a field its bits announce.
fn layout(payload: &[u8]) -> Option<Layout> {
    let first = *payload.first()?;
    let mut layout = Layout {
        picture_id: None,
        tl0_pic_idx: None,
        tid_keyidx: None,
        has_tid: false,
        starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
        header_len: 1,
    };
    if first & 0x80 == 0 {
        return Some(layout);
    }
    let flags = *payload.get(1)?;
    let mut at = 2;
    if flags & 0x80 != 0 {
        let wide = *payload.get(at)? & 0x80 != 0;
        layout.picture_id = Some((at, wide));
        at += if wide { 2 } else { 1 };
    }
    if flags & 0x40 != 0 {
        layout.tl0_pic_idx = Some(at);
        at += 1;
    }
    if flags & 0x30 != 0 {
        layout.tid_keyidx = Some(at);
        layout.has_tid = flags & 0x20 != 0;
        at += 1;
    }
    if at > payload.len() {
        return None;
    }
    layout.header_len = at;
    Some(layout)
}

/// Reads the payload descriptor at the start of a VP8 RTP payload. `None`
/// when the packet is too short for what its bits announce.
pub fn descriptor(payload: &[u8]) -> Option<Descriptor> {
    let layout = layout(payload)?;
    let byte = |at: usize| payload.get(at).copied();
    let picture_id = match layout.picture_id {
        Some((at, true)) => Some(PictureId {
            value: u16::from_be_bytes([byte(at)?, byte(at + 1)?]) & PID_MASK,
            wide: true,
        }),
        Some((at, false)) => Some(PictureId {
            value: u16::from(byte(at)?) & PID_NARROW_MASK,
            wide: false,
        }),
        None => None,
    };
    let tl0_pic_idx = match layout.tl0_pic_idx {
        Some(at) => Some(byte(at)?),
        None => None,
    };
    let temporal = match layout.tid_keyidx {
        Some(at) if layout.has_tid => Some(byte(at)? >> 6),
        _ => None,
    };
    Some(Descriptor {
        picture_id,
        tl0_pic_idx,
        temporal,
        starts_frame: layout.starts_frame,
        header_len: layout.header_len,
    })
}

/// The width and height of the keyframe `payload` begins: on the first
/// packet of a frame, the VP8 frame header (RFC 6386 §9.1) is a 3-byte frame
/// tag whose lowest bit is 0 on a keyframe, the start code 0x9d 0x01 0x2a,
/// then width and height as 14-bit little-endian values (the top two bits
/// are the scaling mode). `None` for any other packet, a wrong start code,
/// a short packet, or a zero dimension.
pub fn keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let layout = layout(payload)?;
    if !layout.starts_frame {
        return None;
    }
    let frame = payload.get(layout.header_len..)?;
    let header: &[u8; 10] = frame.get(..10)?.try_into().ok()?;
    if header[0] & 0x01 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    (width != 0 && height != 0).then_some((width, height))
}

/// Writes `picture_id` and `tl0_pic_idx` into the fields the descriptor of
/// `payload` already has: a 7-bit PictureID gets the value's low 7 bits, a
/// 15-bit one keeps its M bit and gets the low 15. A field the packet lacks
/// stays absent, so the packet's length never changes. Returns whether the
/// descriptor could be read; an unreadable packet is left as it was.
pub fn rewrite(payload: &mut [u8], picture_id: Option<u16>, tl0_pic_idx: Option<u8>) -> bool {
    let Some(layout) = layout(payload) else {
        return false;
    };
    if let (Some((at, wide)), Some(value)) = (layout.picture_id, picture_id) {
        write_picture_id(payload, at, wide, value);
    }
    if let (Some(at), Some(value)) = (layout.tl0_pic_idx, tl0_pic_idx) {
        if let Some(byte) = payload.get_mut(at) {
            *byte = value;
        }
    }
    true
}

/// Writes a PictureID at `at` in the form (7 or 15 bits) the packet has.
fn write_picture_id(payload: &mut [u8], at: usize, wide: bool, value: u16) {
    if wide {
        let bytes = (0x8000 | (value & PID_MASK)).to_be_bytes();
        if let Some(field) = payload.get_mut(at..at + 2) {
            field.copy_from_slice(&bytes);
        }
    } else if let Some(byte) = payload.get_mut(at) {
        *byte = (value & PID_NARROW_MASK) as u8;
    }
}

/// Whether PictureID `a` comes after `b` in 15-bit space.
fn pid_newer(a: u16, b: u16) -> bool {
    (1..0x4000).contains(&(a.wrapping_sub(b) & PID_MASK))
}

/// Whether TL0PICIDX `a` comes after `b` in 8-bit space.
fn tl0_newer(a: u8, b: u8) -> bool {
    (1..0x80).contains(&a.wrapping_sub(b))
}

/// The PictureID and TL0PICIDX one subscriber sees of a VP8 track whose
/// packets come from one source stream at a time (simulcast layers or, after
/// a pause, the same stream again).
#[derive(Debug, Clone, Default)]
pub struct IdMunger {
    /// The source whose packets go out now, and how its values map.
    source: Option<Mapping>,
    /// The highest PictureID sent so far, in 15-bit space.
    highest_pid: Option<u16>,
    /// The highest TL0PICIDX sent so far.
    highest_tl0: Option<u8>,
}

/// How the values of the current source map to the ones sent. Each offset
/// is fixed by the first packet of the source that carries the field.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    ssrc: u32,
    /// Added to the source's PictureID, in 15-bit space.
    pid_offset: Option<u16>,
    /// The source's highest PictureID so far, widened to 15 bits, against
    /// which its 7-bit values are placed.
    pid_in: Option<u16>,
    /// Added to the source's TL0PICIDX.
    tl0_offset: Option<u8>,
}

impl Mapping {
    fn new(ssrc: u32) -> Mapping {
        Mapping {
            ssrc,
            pid_offset: None,
            pid_in: None,
            tl0_offset: None,
        }
    }
}

impl IdMunger {
    /// The values `d` (a packet of source `ssrc`) goes out with; `None`
    /// where the packet has neither field. When `ssrc` differs from the
    /// previous packet's source, the new source's values continue from the
    /// highest values sent so far (the next PictureID after the highest sent,
    /// TL0PICIDX one after the highest sent), so the decoder sees no jump back
    /// and no gap it cannot explain. A packet of the current source that is
    /// older than the highest (reordered/resent) maps with the same offset.
    /// Arithmetic wraps at the field's width (2^15 or 2^7 for PictureID, 2^8
    /// for TL0PICIDX).
    pub fn rewrite(&mut self, ssrc: u32, d: &Descriptor) -> (Option<u16>, Option<u8>) {
        let mut mapping = match self.source {
            Some(m) if m.ssrc == ssrc => m,
            _ => Mapping::new(ssrc),
        };
        let picture_id = d.picture_id.map(|p| self.map_picture_id(&mut mapping, p));
        let tl0_pic_idx = d.tl0_pic_idx.map(|t| self.map_tl0(&mut mapping, t));
        self.source = Some(mapping);
        (picture_id, tl0_pic_idx)
    }

    /// The next packet, of whichever source, starts as a new source's would
    /// (used after a pause).
    pub fn rebase(&mut self) {
        self.source = None;
    }

    /// The PictureID a packet of the current source goes out with, in the
    /// width the packet carries. The offset lives in 15-bit space, so a
    /// source may use either form and the low bits still run on.
    fn map_picture_id(&mut self, mapping: &mut Mapping, p: PictureId) -> u16 {
        let value = widen(p, mapping.pid_in);
        if mapping.pid_in.is_none_or(|last| pid_newer(value, last)) {
            mapping.pid_in = Some(value);
        }
        let highest = self.highest_pid;
        let offset = *mapping.pid_offset.get_or_insert_with(|| {
            highest.map_or(0, |h| h.wrapping_add(1).wrapping_sub(value) & PID_MASK)
        });
        let out = value.wrapping_add(offset) & PID_MASK;
        if highest.is_none_or(|h| pid_newer(out, h)) {
            self.highest_pid = Some(out);
        }
        if p.wide {
            out
        } else {
            out & PID_NARROW_MASK
        }
    }

    /// The TL0PICIDX a packet of the current source goes out with.
    fn map_tl0(&mut self, mapping: &mut Mapping, tl0: u8) -> u8 {
        let highest = self.highest_tl0;
        let offset = *mapping
            .tl0_offset
            .get_or_insert_with(|| highest.map_or(0, |h| h.wrapping_add(1).wrapping_sub(tl0)));
        let out = tl0.wrapping_add(offset);
        if highest.is_none_or(|h| tl0_newer(out, h)) {
            self.highest_tl0 = Some(out);
        }
        out
    }
}

/// A source's PictureID in 15-bit space. A 7-bit value is placed nearest to
/// the source's highest so far (`last`), so that its wrap from 127 to 0
/// reads as a step forward rather than back.
fn widen(p: PictureId, last: Option<u16>) -> u16 {
    if p.wide {
        return p.value & PID_MASK;
    }
    let value = p.value & PID_NARROW_MASK;
    let Some(last) = last else {
        return value;
    };
    let ahead = value.wrapping_sub(last) & PID_NARROW_MASK;
    let placed = if ahead < 0x40 {
        last.wrapping_add(ahead)
    } else {
        last.wrapping_sub(0x80 - ahead)
    };
    placed & PID_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor with the fields the munger reads.
    fn packet(pid: u16, wide: bool, tl0: u8) -> Descriptor {
        Descriptor {
            picture_id: Some(PictureId { value: pid, wide }),
            tl0_pic_idx: Some(tl0),
            temporal: Some(0),
            starts_frame: true,
            header_len: 6,
        }
    }

    #[test]
    fn reads_a_seven_bit_picture_id_tl0_and_tid() {
        // X and S; I, L and T; PictureID 0x23; TL0PICIDX 5; TID 1.
        let p = [0x90, 0xe0, 0x23, 0x05, 0x40, 0xaa];
        assert_eq!(
            descriptor(&p),
            Some(Descriptor {
                picture_id: Some(PictureId {
                    value: 0x23,
                    wide: false
                }),
                tl0_pic_idx: Some(5),
                temporal: Some(1),
                starts_frame: true,
                header_len: 5,
            })
        );
    }

    #[test]
    fn reads_a_fifteen_bit_picture_id() {
        // X without S: a continuation packet; I only, M set.
        let p = [0x80, 0x80, 0x81, 0x23, 0xaa];
        assert_eq!(
            descriptor(&p),
            Some(Descriptor {
                picture_id: Some(PictureId {
                    value: 0x0123,
                    wide: true
                }),
                tl0_pic_idx: None,
                temporal: None,
                starts_frame: false,
                header_len: 4,
            })
        );
        // The widest value.
        let d = descriptor(&[0x90, 0x80, 0xff, 0xff]).unwrap();
        assert_eq!(d.picture_id.unwrap().value, 0x7fff);
    }

    #[test]
    fn a_keyidx_without_t_has_no_temporal_layer() {
        let d = descriptor(&[0x90, 0x10, 0xca, 0xaa]).unwrap();
        assert_eq!(d.temporal, None);
        assert_eq!(d.header_len, 3);
        let d = descriptor(&[0x90, 0x30, 0xca, 0xaa]).unwrap();
        assert_eq!(d.temporal, Some(3));
    }

    #[test]
    fn reads_a_descriptor_without_extension() {
        let d = descriptor(&[0x10, 0x9d]).unwrap();
        assert_eq!(
            d,
            Descriptor {
                starts_frame: true,
                header_len: 1,
                ..Descriptor::default()
            }
        );
        // Partition 1 does not begin a frame, even with S set.
        assert!(!descriptor(&[0x11, 0x9d]).unwrap().starts_frame);
        assert!(!descriptor(&[0x00, 0x9d]).unwrap().starts_frame);
    }

    #[test]
    fn truncated_descriptors_read_as_none() {
        let full = [0x90, 0xf0, 0x81, 0x23, 0x05, 0x40];
        for n in 0..full.len() {
            assert_eq!(descriptor(&full[..n]), None, "{n} bytes");
        }
        assert_eq!(descriptor(&full).unwrap().header_len, 6);
        // A 15-bit PictureID cut after its first byte.
        assert_eq!(descriptor(&[0x90, 0x80, 0x81]), None);
    }

    /// The first packet of a 640x360 keyframe, with a 15-bit PictureID.
    fn keyframe_packet() -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x81, 0x23];
        // Frame tag (keyframe, shown), start code, then width and height
        // with a scaling mode in the top bits of the width.
        p.extend_from_slice(&[0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x01]);
        p.extend_from_slice(&[0x00; 8]);
        p
    }

    #[test]
    fn a_keyframe_tells_its_size() {
        assert_eq!(keyframe_size(&keyframe_packet()), Some((640, 360)));
        // With the minimal descriptor.
        let p = keyframe_packet();
        let mut minimal = vec![0x10];
        minimal.extend_from_slice(&p[4..]);
        assert_eq!(keyframe_size(&minimal), Some((640, 360)));
    }

    #[test]
    fn other_packets_tell_no_size() {
        let mut inter = keyframe_packet();
        inter[4] |= 0x01;
        assert_eq!(keyframe_size(&inter), None, "an interframe");
        let mut continuation = keyframe_packet();
        continuation[0] &= !0x10;
        assert_eq!(keyframe_size(&continuation), None, "not the frame's start");
        let mut later_partition = keyframe_packet();
        later_partition[0] |= 0x01;
        assert_eq!(keyframe_size(&later_partition), None, "partition 1");
        let mut bad_code = keyframe_packet();
        bad_code[8] = 0x2b;
        assert_eq!(keyframe_size(&bad_code), None, "wrong start code");
        let mut empty = keyframe_packet();
        empty[10] = 0x00;
        empty[11] = 0x00;
        assert_eq!(keyframe_size(&empty), None, "zero width");
        let p = keyframe_packet();
        for n in 0..14 {
            assert_eq!(keyframe_size(&p[..n]), None, "{n} bytes");
        }
        assert_eq!(keyframe_size(&p[..14]), Some((640, 360)));
    }

    #[test]
    fn rewrite_patches_only_the_id_fields() {
        let mut p = [0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0xaa, 0xbb];
        assert!(rewrite(&mut p, Some(0x1234), Some(9)));
        assert_eq!(p, [0x90, 0xe0, 0x92, 0x34, 0x09, 0x40, 0xaa, 0xbb]);
        // A value past 15 bits keeps the M bit and its low 15 bits.
        assert!(rewrite(&mut p, Some(0xffff), None));
        assert_eq!(p, [0x90, 0xe0, 0xff, 0xff, 0x09, 0x40, 0xaa, 0xbb]);

        let mut narrow = [0x90, 0xc0, 0x23, 0x05, 0xaa];
        assert!(rewrite(&mut narrow, Some(0x1234), Some(7)));
        assert_eq!(narrow, [0x90, 0xc0, 0x34, 0x07, 0xaa]);
    }

    #[test]
    fn rewrite_leaves_absent_fields_absent() {
        // No TL0PICIDX: only the PictureID changes.
        let mut p = [0x90, 0x80, 0x23, 0xaa];
        assert!(rewrite(&mut p, Some(0x45), Some(7)));
        assert_eq!(p, [0x90, 0x80, 0x45, 0xaa]);
        // No extension at all: nothing changes, yet the packet is readable.
        let mut plain = [0x10, 0xaa, 0xbb];
        assert!(rewrite(&mut plain, Some(1), Some(2)));
        assert_eq!(plain, [0x10, 0xaa, 0xbb]);
        // No values: nothing changes.
        let mut q = [0x90, 0xc0, 0x23, 0x05];
        assert!(rewrite(&mut q, None, None));
        assert_eq!(q, [0x90, 0xc0, 0x23, 0x05]);
    }

    #[test]
    fn rewrite_refuses_a_truncated_descriptor() {
        let mut p = [0x90, 0xc0, 0x23];
        assert!(!rewrite(&mut p, Some(1), Some(2)));
        assert_eq!(p, [0x90, 0xc0, 0x23]);
        assert!(!rewrite(&mut [], Some(1), Some(2)));
    }

    #[test]
    fn the_first_source_passes_through_unchanged() {
        let mut m = IdMunger::default();
        assert_eq!(
            m.rewrite(1, &packet(1000, true, 50)),
            (Some(1000), Some(50))
        );
        assert_eq!(
            m.rewrite(1, &packet(1000, true, 50)),
            (Some(1000), Some(50))
        );
        assert_eq!(
            m.rewrite(1, &packet(1001, true, 51)),
            (Some(1001), Some(51))
        );
        // A source that skips keeps its spacing.
        assert_eq!(
            m.rewrite(1, &packet(1005, true, 53)),
            (Some(1005), Some(53))
        );
        // A packet without the fields gets none.
        assert_eq!(m.rewrite(1, &Descriptor::default()), (None, None));
        let mut narrow = IdMunger::default();
        assert_eq!(
            narrow.rewrite(1, &packet(100, false, 3)),
            (Some(100), Some(3))
        );
    }

    #[test]
    fn a_switch_continues_after_the_highest_sent() {
        let mut m = IdMunger::default();
        m.rewrite(1, &packet(1000, true, 50));
        m.rewrite(1, &packet(1001, true, 51));
        // Another layer, with lower numbers of its own.
        assert_eq!(m.rewrite(2, &packet(20, true, 3)), (Some(1002), Some(52)));
        assert_eq!(m.rewrite(2, &packet(20, true, 3)), (Some(1002), Some(52)));
        assert_eq!(m.rewrite(2, &packet(21, true, 4)), (Some(1003), Some(53)));
        // And back to the first, whose numbers ran on meanwhile.
        assert_eq!(
            m.rewrite(1, &packet(1010, true, 58)),
            (Some(1004), Some(54))
        );
    }

    #[test]
    fn a_late_packet_maps_back_with_the_same_offset() {
        let mut m = IdMunger::default();
        m.rewrite(1, &packet(500, true, 10));
        m.rewrite(2, &packet(7000, true, 200));
        m.rewrite(2, &packet(7001, true, 201));
        // A resent packet of the frame before.
        assert_eq!(
            m.rewrite(2, &packet(7000, true, 200)),
            (Some(501), Some(11))
        );
        // It moved nothing forward: the next frame follows the highest.
        assert_eq!(
            m.rewrite(2, &packet(7002, true, 202)),
            (Some(503), Some(13))
        );

        // A 7-bit source's late packet from before its wrap is older too.
        let mut n = IdMunger::default();
        n.rewrite(1, &packet(127, false, 0));
        n.rewrite(1, &packet(0, false, 1));
        assert_eq!(n.rewrite(1, &packet(127, false, 0)), (Some(127), Some(0)));
        assert_eq!(n.rewrite(2, &packet(600, true, 9)), (Some(129), Some(2)));
    }

    #[test]
    fn ids_wrap_at_their_width() {
        let mut m = IdMunger::default();
        m.rewrite(1, &packet(0x7ffe, true, 254));
        assert_eq!(
            m.rewrite(1, &packet(0x7fff, true, 255)),
            (Some(0x7fff), Some(255))
        );
        assert_eq!(m.rewrite(1, &packet(0, true, 0)), (Some(0), Some(0)));
        // A switch right after the wrap continues from the new highest.
        m.rewrite(1, &packet(0x7fff, true, 255));
        assert_eq!(m.rewrite(2, &packet(300, true, 90)), (Some(1), Some(1)));

        // A switch right at the wrap.
        let mut w = IdMunger::default();
        w.rewrite(1, &packet(0x7fff, true, 255));
        assert_eq!(w.rewrite(2, &packet(40, true, 17)), (Some(0), Some(0)));

        // A 7-bit source wraps at 127 and stays continuous.
        let mut n = IdMunger::default();
        n.rewrite(1, &packet(1000, true, 0));
        assert_eq!(n.rewrite(2, &packet(126, false, 0)).0, Some(1001 & 0x7f));
        assert_eq!(n.rewrite(2, &packet(127, false, 1)).0, Some(1002 & 0x7f));
        assert_eq!(n.rewrite(2, &packet(0, false, 2)).0, Some(1003 & 0x7f));
        // Back to a 15-bit source: it continues after the 7-bit one.
        assert_eq!(n.rewrite(3, &packet(9, true, 5)).0, Some(1004));
    }

    #[test]
    fn a_rebased_source_continues_without_a_gap() {
        let mut m = IdMunger::default();
        m.rewrite(1, &packet(100, true, 10));
        m.rewrite(1, &packet(101, true, 11));
        m.rebase();
        // Paused for a while: the same source resumes 300 frames on.
        assert_eq!(m.rewrite(1, &packet(401, true, 40)), (Some(102), Some(12)));
        assert_eq!(m.rewrite(1, &packet(402, true, 41)), (Some(103), Some(13)));
    }

    /// Where `rewrite` may write in `p`: the PictureID's bytes and the
    /// TL0PICIDX byte, found from the bits independently of the parser.
    fn id_bytes(p: &[u8]) -> Vec<usize> {
        let mut at = Vec::new();
        if p.len() < 2 || p[0] & 0x80 == 0 {
            return at;
        }
        let mut next = 2;
        if p[1] & 0x80 != 0 && p.len() > 2 {
            let n = if p[2] & 0x80 != 0 { 2 } else { 1 };
            at.extend(next..next + n);
            next += n;
        }
        if p[1] & 0x40 != 0 {
            at.push(next);
        }
        at
    }

    proptest::proptest! {
        #[test]
        fn no_packet_panics_or_moves_other_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            pid in proptest::option::of(proptest::num::u16::ANY),
            tl0 in proptest::option::of(proptest::num::u8::ANY),
        ) {
            let read = descriptor(&bytes);
            let _ = keyframe_size(&bytes);
            let mut out = bytes.clone();
            let readable = rewrite(&mut out, pid, tl0);
            proptest::prop_assert_eq!(readable, read.is_some());
            proptest::prop_assert_eq!(out.len(), bytes.len());
            let fields = id_bytes(&bytes);
            for (i, (a, b)) in bytes.iter().zip(&out).enumerate() {
                if a != b {
                    proptest::prop_assert!(fields.contains(&i), "byte {} changed", i);
                }
            }
            if let Some(before) = read {
                let after = descriptor(&out).unwrap();
                // Everything but the values stays as it was, M bit included.
                proptest::prop_assert_eq!(after.header_len, before.header_len);
                proptest::prop_assert_eq!(after.temporal, before.temporal);
                proptest::prop_assert_eq!(after.starts_frame, before.starts_frame);
                proptest::prop_assert_eq!(after.picture_id.map(|p| p.wide), before.picture_id.map(|p| p.wide));
                if let (Some(p), Some(v)) = (after.picture_id, pid) {
                    let mask = if p.wide { 0x7fff } else { 0x7f };
                    proptest::prop_assert_eq!(p.value, v & mask);
                }
                if let (Some(t), Some(v)) = (after.tl0_pic_idx, tl0) {
                    proptest::prop_assert_eq!(t, v);
                }
                // Writing back what was read changes nothing.
                let mut again = bytes.clone();
                rewrite(&mut again, before.picture_id.map(|p| p.value), before.tl0_pic_idx);
                proptest::prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn frames_run_on_by_one_across_switches(
            runs in proptest::collection::vec(
                (0u32..3, proptest::bool::ANY, proptest::bool::ANY, proptest::num::u16::ANY, proptest::num::u8::ANY, 1u16..40, 1u8..4),
                1..12,
            )
        ) {
            let mut m = IdMunger::default();
            let mut last_ssrc = None;
            // The PictureID (and whether 15-bit) and TL0PICIDX of the last frame's first packet.
            let mut prev: Option<(u16, bool, u8)> = None;
            for (ssrc, pause, wide, pid0, tl00, frames, packets) in runs {
                // The same stream again with other numbers comes only after a pause.
                if pause || last_ssrc == Some(ssrc) {
                    m.rebase();
                }
                last_ssrc = Some(ssrc);
                let mask = if wide { 0x7fff } else { 0x7f };
                for f in 0..frames {
                    let d = packet(pid0.wrapping_add(f) & mask, wide, tl00.wrapping_add(f as u8));
                    let (pid, tl0) = m.rewrite(ssrc, &d);
                    let (pid, tl0) = (pid.unwrap(), tl0.unwrap());
                    // The frame's other packets carry the same values.
                    for _ in 1..packets {
                        proptest::prop_assert_eq!(m.rewrite(ssrc, &d), (Some(pid), Some(tl0)));
                    }
                    if let Some((p, p_wide, t)) = prev {
                        let step_mask = if wide && p_wide { 0x7fff } else { 0x7f };
                        proptest::prop_assert_eq!(pid.wrapping_sub(p) & step_mask, 1);
                        proptest::prop_assert_eq!(tl0, t.wrapping_add(1));
                    }
                    prev = Some((pid, wide, tl0));
                }
            }
        }
    }
}
