//! Cursor pagination: a page is `limit` items after an opaque cursor, which
//! encodes the sort key of the last item of the previous page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{CoreError, Result};
use crate::model::Page;

/// Page size bounds, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: u32,
    pub max: u32,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            default: 50,
            max: 100,
        }
    }
}

/// A validated request for one page.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    /// The decoded sort key to start after.
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates `limit` against `limits` and decodes `cursor`.
    pub fn new(limit: Option<u32>, cursor: Option<&str>, limits: PageLimits) -> Result<Self> {
        let limit = limit.unwrap_or(limits.default);
        if limit == 0 || limit > limits.max {
            return Err(CoreError::validation(
                "limit",
                format!("must be between 1 and {}", limits.max),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode(c)?),
        };
        Ok(PageRequest { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row off and turns the key of the last item into the next cursor.
    pub(crate) fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next_cursor = if more {
            items.last().map(|last| encode(&key(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode(cursor: &str) -> Result<String> {
    let invalid = || CoreError::validation("cursor", "is not a cursor this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    // A key this server wrote never holds NUL, and one that did would fail on
    // PostgreSQL instead of being refused.
    String::from_utf8(bytes)
        .ok()
        .filter(|key| !key.contains('\0'))
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_bounded() {
        let limits = PageLimits {
            default: 10,
            max: 20,
        };
        assert_eq!(PageRequest::new(None, None, limits).unwrap().limit, 10);
        assert!(PageRequest::new(Some(0), None, limits).is_err());
        assert!(PageRequest::new(Some(21), None, limits).is_err());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let limits = PageLimits::default();
        let req = PageRequest::new(Some(2), None, limits).unwrap();
        let page = req.finish(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let next = PageRequest::new(Some(2), page.next_cursor.as_deref(), limits).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        assert!(PageRequest::new(None, Some("!!!"), limits).is_err());
        assert!(PageRequest::new(None, Some(&encode("a\0b")), limits).is_err());
        let last = req.finish(vec!["a"], |s| s.to_string());
        assert_eq!(last.next_cursor, None);
    }
}
