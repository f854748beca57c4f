//! Image dimensions and thumbnails, within pixel and memory limits: the
//! header is read first, so an image that claims too many pixels is refused
//! before anything is allocated for them.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::error::{CoreError, Result};

/// The longer side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;

/// How far a decode may go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    /// Width times height.
    pub max_pixels: u64,
    /// Bytes the decoder may allocate.
    pub max_alloc: u64,
}

/// An image's size and its thumbnail.
#[derive(Debug)]
pub(crate) struct Preview {
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
    pub thumbnail_mime: &'static str,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

fn format_of(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn unreadable(e: ImageError) -> CoreError {
    match e {
        ImageError::Limits(_) => too_large(),
        e => CoreError::unprocessable(
            "image_unreadable",
            format!("the image could not be decoded: {e}"),
        ),
    }
}

fn too_large() -> CoreError {
    CoreError::unprocessable(
        "image_too_large",
        "the image has more pixels than this server decodes",
    )
}

/// Reads an image's dimensions and makes its thumbnail (JPEG, or PNG when
/// the image has transparency). Oriented as its EXIF data says, as viewers show it.
/// CPU-bound: call it off the async runtime.
pub(crate) fn preview(bytes: &[u8], mime: &str, limits: DecodeLimits) -> Result<Preview> {
    let format = format_of(mime)
        .ok_or_else(|| CoreError::Internal(format!("no preview for {mime}").into()))?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(unreadable)?;
    if w == 0 || h == 0 {
        return Err(CoreError::unprocessable(
            "image_unreadable",
            "the image has no pixels",
        ));
    }
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(too_large());
    }
    let mut budget = image::Limits::default();
    budget.max_alloc = Some(limits.max_alloc);
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(unreadable)?;
    // The decoded frame is charged up front; what is left bounds the decoder's own buffers.
    budget.reserve(decoder.total_bytes()).map_err(unreadable)?;
    decoder.set_limits(budget).map_err(unreadable)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());
    let thumb = if width > THUMBNAIL_SIDE || height > THUMBNAIL_SIDE {
        img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        img
    };
    let mut out = Cursor::new(Vec::new());
    let thumbnail_mime = if thumb.color().has_alpha() {
        thumb
            .to_rgba8()
            .write_to(&mut out, ImageFormat::Png)
            .map_err(unreadable)?;
        "image/png"
    } else {
        let rgb = thumb.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&rgb)
            .map_err(unreadable)?;
        "image/jpeg"
    };
    Ok(Preview {
        width,
        height,
        thumbnail: out.into_inner(),
        thumbnail_mime,
        thumbnail_width: thumb.width(),
        thumbnail_height: thumb.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 50_000_000,
        max_alloc: 512 << 20,
    };

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_large_photo_gets_its_size_and_a_320_pixel_jpeg_thumbnail() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            1600,
            900,
            image::Rgb([200, 10, 10]),
        ));
        let p = preview(&encode(img, ImageFormat::Png), "image/png", LIMITS).unwrap();
        assert_eq!((p.width, p.height), (1600, 900));
        assert_eq!((p.thumbnail_width, p.thumbnail_height), (320, 180));
        assert_eq!(p.thumbnail_mime, "image/jpeg");
        let back = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((back.width(), back.height()), (320, 180));
    }

    #[test]
    fn transparency_keeps_a_png_thumbnail_and_small_images_keep_their_size() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            40,
            90,
            image::Rgba([0, 0, 0, 0]),
        ));
        let p = preview(&encode(img, ImageFormat::Png), "image/png", LIMITS).unwrap();
        assert_eq!(p.thumbnail_mime, "image/png");
        assert_eq!((p.thumbnail_width, p.thumbnail_height), (40, 90));
    }

    #[test]
    fn an_image_claiming_too_many_pixels_is_refused_before_decoding() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(3000, 3000));
        let bytes = encode(img, ImageFormat::Png);
        let small = DecodeLimits {
            max_pixels: 1_000_000,
            ..LIMITS
        };
        let err = preview(&bytes, "image/png", small).unwrap_err();
        assert_eq!(err.code(), "image_too_large");
        let tight = DecodeLimits {
            max_pixels: u64::MAX,
            max_alloc: 1 << 20,
        };
        assert_eq!(
            preview(&bytes, "image/png", tight).unwrap_err().code(),
            "image_too_large"
        );
    }

    #[test]
    fn garbage_with_an_image_signature_is_unreadable_not_a_panic() {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend_from_slice(&[0xAB; 300]);
        assert_eq!(
            preview(&bytes, "image/png", LIMITS).unwrap_err().code(),
            "image_unreadable"
        );
        for mime in ["image/jpeg", "image/gif", "image/webp"] {
            assert!(preview(&[0xFF, 0xD8, 0xFF, 0, 1, 2], mime, LIMITS).is_err());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Bytes from the network, behind each image signature, never panic the decoder.
        #[test]
        fn any_bytes_are_an_image_or_a_refusal(
            kind in 0usize..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let (mime, magic): (&str, &[u8]) = [
                ("image/png", b"\x89PNG\r\n\x1a\n".as_slice()),
                ("image/jpeg", b"\xff\xd8\xff".as_slice()),
                ("image/gif", b"GIF89a".as_slice()),
                ("image/webp", b"RIFF\0\0\0\0WEBPVP8 ".as_slice()),
            ][kind];
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = preview(&bytes, mime, LIMITS);
        }
    }
}
