//! What an upload is: its type from its first bytes, checked against what
//! the client declared and the allow-list; and its name, made safe to show.

/// Bytes read before the type is decided: enough for the container formats
/// (OOXML, OpenDocument) whose type shows in their first zip entries.
pub(crate) const SNIFF_BYTES: usize = 64 * 1024;

/// The default allow-list: images, PDF, plain text, common office and archive types.
pub fn default_allowed_types() -> Vec<String> {
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/rtf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Types that are zip archives inside: content sniffed as a plain zip may be one.
const ZIP_CONTAINERS: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/epub+zip",
];

/// Legacy Office files share one container format (OLE): its sniffing can't
/// always tell a document from a spreadsheet.
const OLE_CONTAINERS: &[&str] = &[
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/x-ole-storage",
];

/// Text types a client may declare for content that sniffs as plain text.
const TEXT_TYPES: &[&str] = &["text/plain", "text/csv", "text/markdown"];

/// Why an upload's type was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeRefusal {
    /// The content is of another type than declared.
    Mismatch { declared: String, sniffed: String },
    /// The type is not on the allow-list.
    NotAllowed(String),
}

/// A declared `Content-Type` without parameters, lower-case, with common aliases resolved.
pub(crate) fn normalise_type(declared: &str) -> String {
    let base = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        "application/x-zip-compressed" | "application/x-zip" => "application/zip".into(),
        "application/x-gzip" => "application/gzip".into(),
        "text/x-markdown" => "text/markdown".into(),
        "application/x-pdf" => "application/pdf".into(),
        _ => base,
    }
}

/// The type of content starting with `head` (`complete` when that is all of it).
pub(crate) fn sniff(head: &[u8], complete: bool) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    if looks_like_text(head, complete) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

/// UTF-8 without NUL bytes; a truncated head may end inside a character.
fn looks_like_text(head: &[u8], complete: bool) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // `error_len() == None`: the input ended inside a character, which a cut head may.
        Err(e) => !complete && e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Decides the stored type from the sniffed one and the declared one, or
/// refuses. An absent or generic declaration (`application/octet-stream`)
/// takes the sniffed type.
pub(crate) fn decide(
    sniffed: &str,
    declared: Option<&str>,
    allowed: &[String],
) -> Result<String, TypeRefusal> {
    let declared = declared
        .map(normalise_type)
        .filter(|d| !d.is_empty() && d != "application/octet-stream");
    let mime = match declared {
        None => sniffed.to_owned(),
        Some(d) if d == sniffed => d,
        // A zip sniffed in a document whose first entries don't name its kind.
        Some(d) if sniffed == "application/zip" && ZIP_CONTAINERS.contains(&d.as_str()) => d,
        // A zip-based document declared as the zip it is.
        Some(d) if d == "application/zip" && ZIP_CONTAINERS.contains(&sniffed) => {
            sniffed.to_owned()
        }
        Some(d) if OLE_CONTAINERS.contains(&sniffed) && OLE_CONTAINERS.contains(&d.as_str()) => d,
        Some(d) if sniffed == "text/plain" && TEXT_TYPES.contains(&d.as_str()) => d,
        Some(d) => {
            return Err(TypeRefusal::Mismatch {
                declared: d,
                sniffed: sniffed.to_owned(),
            })
        }
    };
    if allowed.iter().any(|a| a == &mime) {
        Ok(mime)
    } else {
        Err(TypeRefusal::NotAllowed(mime))
    }
}

/// The image types Roost decodes for dimensions and a thumbnail.
pub(crate) fn is_previewable(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// The longest name kept, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// A file name fit for display: its last path component, cleaned as every
/// name is ([`crate::text::clean_name`]), without leading dots and at most
/// 255 characters. Never used in a storage path.
pub fn sanitise_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned = crate::text::clean_name(last);
    let trimmed = crate::text::trim_blank(cleaned.trim_start_matches('.'));
    let name: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    if name.is_empty() {
        "file".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn allowed() -> Vec<String> {
        default_allowed_types()
    }

    #[test]
    fn sniffing_reads_the_content_not_the_claim() {
        assert_eq!(sniff(PNG, false), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n", false), "application/pdf");
        assert_eq!(sniff("héllo, world\n".as_bytes(), true), "text/plain");
        assert_eq!(
            sniff(b"\x00\x01\x02binary", true),
            "application/octet-stream"
        );
        assert_eq!(sniff(b"<!DOCTYPE html><html>", true), "text/html");
    }

    #[test]
    fn a_head_cut_inside_a_character_is_still_text_but_a_whole_file_is_not() {
        let cut = &"é".as_bytes()[..1];
        assert!(looks_like_text(cut, false));
        assert!(!looks_like_text(cut, true));
        assert!(!looks_like_text(b"\xff\xfe junk", false));
    }

    #[test]
    fn declared_types_must_agree_with_the_content() {
        let a = allowed();
        assert_eq!(
            decide("image/png", Some("image/png"), &a).unwrap(),
            "image/png"
        );
        assert_eq!(decide("image/png", None, &a).unwrap(), "image/png");
        assert_eq!(
            decide("image/png", Some("application/octet-stream"), &a).unwrap(),
            "image/png"
        );
        assert_eq!(
            decide("image/jpeg", Some("image/JPG; q=1"), &a).unwrap(),
            "image/jpeg"
        );
        assert!(matches!(
            decide("text/plain", Some("image/png"), &a),
            Err(TypeRefusal::Mismatch { .. })
        ));
        assert!(matches!(
            decide("text/html", Some("text/plain"), &a),
            Err(TypeRefusal::Mismatch { .. })
        ));
        assert_eq!(
            decide("text/plain", Some("text/csv"), &a).unwrap(),
            "text/csv"
        );
    }

    #[test]
    fn zip_documents_and_their_zips_are_the_same_thing() {
        let a = allowed();
        let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert_eq!(decide("application/zip", Some(docx), &a).unwrap(), docx);
        assert_eq!(decide(docx, Some("application/zip"), &a).unwrap(), docx);
        assert!(decide("application/zip", Some("application/pdf"), &a).is_err());
    }

    #[test]
    fn types_off_the_list_are_refused() {
        let a = allowed();
        assert_eq!(
            decide("text/html", None, &a),
            Err(TypeRefusal::NotAllowed("text/html".into()))
        );
        assert_eq!(
            decide("application/octet-stream", None, &a),
            Err(TypeRefusal::NotAllowed("application/octet-stream".into()))
        );
        assert!(decide("application/x-executable", None, &a).is_err());
    }

    #[test]
    fn names_lose_paths_controls_and_leading_dots() {
        assert_eq!(sanitise_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitise_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitise_name("a\u{0}b\nc\u{7f}.txt"), "abc.txt");
        assert_eq!(sanitise_name("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitise_name(".."), "file");
        assert_eq!(sanitise_name("   "), "file");
        assert_eq!(sanitise_name("\u{200b}.\u{feff}"), "file");
        assert_eq!(sanitise_name(".bashrc"), "bashrc");
        assert_eq!(sanitise_name("Ünïcødé 名前.pdf"), "Ünïcødé 名前.pdf");
        assert_eq!(
            sanitise_name(&"x".repeat(1000)).chars().count(),
            MAX_NAME_CHARS
        );
    }

    proptest::proptest! {
        #[test]
        fn any_upload_head_and_declaration_gets_an_answer(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            complete in proptest::prelude::any::<bool>(),
            declared in proptest::option::of(".{0,40}"),
        ) {
            let sniffed = sniff(&head, complete);
            let _ = decide(&sniffed, declared.as_deref(), &allowed());
        }

        #[test]
        fn any_name_becomes_one_safe_to_show(raw in ".{0,400}") {
            let name = sanitise_name(&raw);
            proptest::prop_assert!(!name.is_empty());
            proptest::prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
            proptest::prop_assert!(!name.contains(['/', '\\']));
            proptest::prop_assert!(!name.starts_with('.'));
            proptest::prop_assert!(!name.chars().any(char::is_control));
        }
    }
}
