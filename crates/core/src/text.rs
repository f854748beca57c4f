//! Rules for the text clients send: what no field may hold, and how a name
//! is made fit to show to other people.

use crate::error::{CoreError, Result};

/// Refuses text holding U+0000. PostgreSQL's `text` cannot store it (the
/// driver fails with "invalid byte sequence"), while SQLite would keep it; so
/// every free-text field that reaches the store passes here first, and the
/// same input gets the same answer on both databases and through both doors.
pub fn refuse_nul(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(CoreError::validation(
            field,
            "must not contain the NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// Characters that reorder the text around them: embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069) and the directional marks
/// (U+200E, U+200F, U+061C). In a name they make `admin\u{202e}gnp.exe`
/// show as `adminexe.png`.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters drawn as nothing: zero-width space, non-joiner and joiner, word
/// joiner and the byte order mark. Joiners matter inside a name (scripts and
/// emoji sequences need them), so they are only trimmed from its ends.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}'
    )
}

/// Whitespace and invisible characters cut from both ends.
pub fn trim_blank(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || is_invisible(c))
}

/// A name fit to show: without control or bidirectional-control characters,
/// with whitespace and invisible characters trimmed from its ends. Empty when
/// nothing visible is left, which the caller refuses as an empty name.
pub fn clean_name(raw: &str) -> String {
    let kept: String = raw
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect();
    trim_blank(&kept).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_and_named() {
        assert!(refuse_nul("body", "hello").is_ok());
        let err = refuse_nul("body", "a\0b").unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert!(err.to_string().starts_with("body:"), "{err}");
    }

    #[test]
    fn names_lose_controls_and_reordering() {
        assert_eq!(clean_name("admin\u{202e}gnp.exe"), "admingnp.exe");
        assert_eq!(clean_name("a\u{2066}b\u{2069}\u{200f}\u{061c}c"), "abc");
        assert_eq!(clean_name("  Ada\u{7}\tLovelace \n"), "AdaLovelace");
        assert_eq!(clean_name("\u{200b}Ada\u{feff}"), "Ada");
        assert_eq!(clean_name("\u{200b}"), "");
        assert_eq!(clean_name(" \u{200c}\u{200d}\u{2060} "), "");
        // A joiner inside a name holds an emoji sequence together.
        assert_eq!(
            clean_name("\u{1f469}\u{200d}\u{1f4bb}"),
            "\u{1f469}\u{200d}\u{1f4bb}"
        );
        assert_eq!(clean_name("Ünïcødé 名前"), "Ünïcødé 名前");
    }

    proptest::proptest! {
        #[test]
        fn a_clean_name_has_nothing_hidden_at_its_ends(raw in ".{0,200}") {
            let name = clean_name(&raw);
            proptest::prop_assert!(!name.chars().any(|c| c.is_control() || is_bidi_control(c)));
            proptest::prop_assert_eq!(trim_blank(&name), name.as_str());
        }
    }
}
