//! Message search: full-text, ranked, paginated, with the matched words
//! marked, in one room or across every room of the caller.
//!
//! A query is cut into terms (runs of letters and digits); a message matches
//! when every term is the start of one of its words, so "deplo" finds
//! "deployment". The terms reach the engine only quoted, never as operators,
//! so no query can be a syntax error. Excerpts come back as segments marked
//! matched or not, so no client has to trust HTML. Why it is built this way:
//! `docs/adr/0010-message-search.md`.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::model::{Actor, Message, Page};
use crate::pagination::{PageLimits, PageRequest};
use crate::store::{Backend, MessageRow, SearchPage, SearchRow, SearchScope, Store};

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most terms in one query; each costs the engine an index look-up.
pub const MAX_TERMS: usize = 16;
/// Page sizes of search results.
pub const SEARCH_PAGES: PageLimits = PageLimits {
    default: 20,
    max: 50,
};

/// A piece of an excerpt: a matched word (or words) or the text between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Highlight {
    pub text: String,
    /// Whether this piece is what the query matched.
    #[serde(rename = "match")]
    pub matched: bool,
}

/// One message found, with an excerpt of its body around what matched.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchHit {
    pub message: Message,
    /// The excerpt, in order; `…` stands for text cut off.
    pub highlights: Vec<Highlight>,
}

/// The search service.
#[derive(Clone)]
pub struct Search {
    store: Store,
}

impl Search {
    pub fn new(store: Store) -> Self {
        Search { store }
    }

    /// Searches one room. Non-members get not found, as for its history.
    pub async fn in_room(
        &self,
        actor: &Actor,
        room_id: Uuid,
        q: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<SearchHit>> {
        let room = room_id.to_string();
        self.store
            .member_role(&room, &actor.user_id.to_string())
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        self.run(SearchScope::Room(&room), q, limit, cursor).await
    }

    /// Searches every room the caller is a member of now.
    pub async fn everywhere(
        &self,
        actor: &Actor,
        q: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<SearchHit>> {
        let user = actor.user_id.to_string();
        self.run(SearchScope::MemberOf(&user), q, limit, cursor)
            .await
    }

    async fn run(
        &self,
        scope: SearchScope<'_>,
        q: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<SearchHit>> {
        let terms = terms(q)?;
        let page = PageRequest::new(limit, cursor, SEARCH_PAGES)?;
        // The cursor is the number of hits already shown: ranks are floats that
        // shift as messages come and go, so there is no stable key to resume after.
        let offset: u32 = match &page.after {
            None => 0,
            Some(after) => after.parse().map_err(|_| {
                CoreError::validation("cursor", "is not a cursor this server issued")
            })?,
        };
        let expr = match self.store.backend() {
            Backend::Sqlite => fts5_query(&terms),
            Backend::Postgres => tsquery(&terms),
        };
        let marks = Marks::fresh();
        let rows = self
            .store
            .search_messages(
                scope,
                SearchPage {
                    expr: &expr,
                    start_mark: &marks.start,
                    stop_mark: &marks.stop,
                    limit: page.fetch_limit(),
                    offset: i64::from(offset),
                },
            )
            .await?;
        let highlights: Vec<Vec<Highlight>> = rows
            .iter()
            .map(|row| excerpt(row, &terms, &marks))
            .collect();
        let messages = self
            .messages(rows.into_iter().map(|r| r.message).collect())
            .await?;
        let hits = messages
            .into_iter()
            .zip(highlights)
            .enumerate()
            .map(|(i, (message, highlights))| {
                let shown = u64::from(offset) + i as u64 + 1;
                (
                    shown,
                    SearchHit {
                        message,
                        highlights,
                    },
                )
            })
            .collect();
        let page = page.finish(hits, |(shown, _)| shown.to_string());
        Ok(Page {
            items: page.items.into_iter().map(|(_, hit)| hit).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The messages of the hits, in order: the one place search turns rows
    /// into `Message`s, so they carry whatever a message carries elsewhere.
    async fn messages(&self, rows: Vec<MessageRow>) -> Result<Vec<Message>> {
        crate::store::convert::hydrate(&self.store, rows).await
    }
}

/// The query's terms, lower-cased, each once, in order; or why the query is refused.
pub(crate) fn terms(q: &str) -> Result<Vec<String>> {
    crate::text::refuse_nul("q", q)?;
    let n = q.chars().count();
    if n == 0 || n > MAX_QUERY_CHARS {
        return Err(CoreError::validation(
            "q",
            format!("must be 1 to {MAX_QUERY_CHARS} characters"),
        ));
    }
    let mut terms: Vec<String> = Vec::new();
    for term in q.split(|c: char| !c.is_alphanumeric()) {
        let term = term.to_lowercase();
        if !term.is_empty() && !terms.contains(&term) {
            terms.push(term);
        }
    }
    if terms.is_empty() {
        return Err(CoreError::validation(
            "q",
            "must contain at least one letter or digit",
        ));
    }
    if terms.len() > MAX_TERMS {
        return Err(CoreError::validation(
            "q",
            format!("must have at most {MAX_TERMS} words"),
        ));
    }
    Ok(terms)
}

/// An FTS5 query: every term as a quoted prefix, all required. Inside FTS5
/// quotes only `"` is special, and it is doubled; terms hold none anyway.
pub(crate) fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{}\"*", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A PostgreSQL `to_tsquery` string: every term as a quoted prefix, all
/// required. Inside tsquery quotes `'` and `\` are special; both are escaped.
pub(crate) fn tsquery(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("'{}':*", t.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The markers the engine puts around matched words. A fresh random part per
/// search means no message body can contain them and fake a match.
struct Marks {
    start: String,
    stop: String,
}

impl Marks {
    fn fresh() -> Marks {
        let nonce = Uuid::new_v4().simple().to_string();
        Marks {
            start: format!("\u{2}{nonce}"),
            stop: format!("\u{3}{nonce}"),
        }
    }
}

/// How many words an excerpt shows, about; SQLite's snippet counts the same.
const EXCERPT_WORDS: usize = 24;

/// The excerpt of one row as segments: SQLite's marked snippet, else one cut here.
fn excerpt(row: &SearchRow, terms: &[String], marks: &Marks) -> Vec<Highlight> {
    match row.snippet.as_deref() {
        Some(snippet) => segments(snippet, &marks.start, &marks.stop),
        None => cut_excerpt(
            row.message.body.as_deref().unwrap_or(""),
            terms,
            EXCERPT_WORDS,
        ),
    }
}

/// An excerpt of at most `max_words` words (runs of letters and digits)
/// around the most words that begin with a term, with `…` where the body
/// goes on. Matching is by lower case, as PostgreSQL's 'simple' configuration
/// does. The text is the body's own, between the cuts.
pub(crate) fn cut_excerpt(body: &str, terms: &[String], max_words: usize) -> Vec<Highlight> {
    let mut words: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = None;
    for (i, c) in body.char_indices().chain([(body.len(), ' ')]) {
        match (start, c.is_alphanumeric()) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = body[s..i].to_lowercase();
                let matched = terms.iter().any(|t| word.starts_with(t.as_str()));
                words.push((s, i, matched));
                start = None;
            }
            _ => {}
        }
    }
    let max_words = max_words.max(1);
    let (first, end) = if words.len() <= max_words {
        (0, words.len())
    } else {
        // The window with the most matches, earliest among equals ...
        let mut count = words[..max_words].iter().filter(|w| w.2).count();
        let (mut best, mut best_count) = (0, count);
        for s in 1..=words.len() - max_words {
            count = count + usize::from(words[s + max_words - 1].2) - usize::from(words[s - 1].2);
            if count > best_count {
                (best, best_count) = (s, count);
            }
        }
        // ... moved so that its matches sit in the middle.
        let window = &words[best..best + max_words];
        let first_hit = window.iter().position(|w| w.2).unwrap_or(0);
        let last_hit = window.iter().rposition(|w| w.2).unwrap_or(0);
        let pad = (max_words - (last_hit - first_hit + 1)) / 2;
        let s = (best + first_hit)
            .saturating_sub(pad)
            .min(words.len() - max_words);
        (s, s + max_words)
    };
    let mut out = Vec::new();
    if first > 0 {
        push(&mut out, "…", false);
    }
    let mut at = if first == 0 { 0 } else { words[first].0 };
    for &(s, e, matched) in &words[first..end] {
        push(&mut out, &body[at..s], false);
        push(&mut out, &body[s..e], matched);
        at = e;
    }
    if end == words.len() {
        push(&mut out, &body[at..], false);
    } else {
        push(&mut out, "…", false);
    }
    out
}

/// Splits a marked excerpt into segments. Unbalanced marks (which the engines
/// do not produce) end up as plain text rather than as an error.
pub(crate) fn segments(marked: &str, start: &str, stop: &str) -> Vec<Highlight> {
    let mut out = Vec::new();
    let mut rest = marked;
    while let Some(i) = rest.find(start) {
        push(&mut out, &rest[..i], false);
        let after = &rest[i + start.len()..];
        match after.find(stop) {
            Some(j) => {
                push(&mut out, &after[..j], true);
                rest = &after[j + stop.len()..];
            }
            None => {
                rest = after;
                break;
            }
        }
    }
    push(&mut out, rest, false);
    out
}

/// Appends text to the segments, joining it to the last one of the same kind.
/// The engines' marks are made of \u{2} and \u{3}; a client may use the same
/// convention, so a body's own are dropped.
fn push(out: &mut Vec<Highlight>, text: &str, matched: bool) {
    let text: String = text
        .chars()
        .filter(|c| !matches!(c, '\u{2}' | '\u{3}'))
        .collect();
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.matched == matched => last.text.push_str(&text),
        _ => out.push(Highlight { text, matched }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str, matched: bool) -> Highlight {
        Highlight {
            text: text.into(),
            matched,
        }
    }

    #[test]
    fn marked_excerpts_become_segments() {
        assert_eq!(
            segments("the <deploy> of <deployment>s", "<", ">"),
            vec![
                seg("the ", false),
                seg("deploy", true),
                seg(" of ", false),
                seg("deployment", true),
                seg("s", false),
            ]
        );
        assert_eq!(
            segments("<a><b> c", "<", ">"),
            vec![seg("ab", true), seg(" c", false)],
            "adjacent matches join"
        );
        assert_eq!(segments("", "<", ">"), vec![]);
        assert_eq!(
            segments("x <y", "<", ">"),
            vec![seg("x y", false)],
            "an unclosed mark is plain text"
        );
    }

    #[test]
    fn a_body_cannot_fake_a_match() {
        let marks = Marks::fresh();
        // A body with the bytes a naive marker would use, around a word the query did not match.
        let marked = format!("\u{2}fake\u{3} and {}real{}", marks.start, marks.stop);
        assert_eq!(
            segments(&marked, &marks.start, &marks.stop),
            vec![seg("fake and ", false), seg("real", true)]
        );
        assert_ne!(Marks::fresh().start, marks.start, "marks are per search");
    }

    #[test]
    fn excerpts_cut_here_mark_prefixes_and_keep_the_text() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cut_excerpt(" We <b>Deploy</b> the deployment!", &t(&["deplo"]), 24),
            vec![
                seg(" We <b>", false),
                seg("Deploy", true),
                seg("</b> the ", false),
                seg("deployment", true),
                seg("!", false),
            ],
            "a short body is whole, tags and all"
        );
        let body: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let mut body = body.join(" ");
        body.push_str(" needle, and needles.");
        let segs = cut_excerpt(&body, &t(&["needle"]), 6);
        let text: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(text, "…w37 w38 w39 needle, and needles.");
        assert_eq!(
            segs.iter().filter(|s| s.matched).count(),
            2,
            "both needles are in the window"
        );
        let segs = cut_excerpt(&body, &t(&["w20"]), 5);
        let text: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            text, "…w18 w19 w20 w21 w22…",
            "a lone match sits in the middle"
        );
        assert_eq!(
            cut_excerpt("a b c", &t(&["zz"]), 2),
            vec![seg("a b…", false)],
            "no match: the beginning"
        );
        assert_eq!(cut_excerpt("", &t(&["x"]), 24), vec![]);
        assert_eq!(
            cut_excerpt("Zürich 東京", &t(&["zü", "東"]), 24),
            vec![seg("Zürich", true), seg(" ", false), seg("東京", true)]
        );
    }

    #[test]
    fn queries_become_lower_cased_unique_terms() {
        assert_eq!(terms("Deplo-y  the DEPLO").unwrap(), ["deplo", "y", "the"]);
        assert_eq!(terms("Ünïcode 東京 42").unwrap(), ["ünïcode", "東京", "42"]);
        for refused in ["", "\"", "*", "&|!", " - ", "'", ":"] {
            let err = terms(refused).unwrap_err();
            assert!(
                matches!(&err, CoreError::Validation { field, .. } if field == "q"),
                "{refused:?}: {err}"
            );
        }
        assert!(terms(&"a".repeat(MAX_QUERY_CHARS)).is_ok());
        assert!(terms(&"a".repeat(MAX_QUERY_CHARS + 1)).is_err());
        let many: Vec<String> = (0..=MAX_TERMS).map(|i| format!("w{i}")).collect();
        assert!(terms(&many[..MAX_TERMS].join(" ")).is_ok());
        assert!(terms(&many.join(" ")).is_err());
    }

    #[test]
    fn terms_are_quoted_for_each_engine() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fts5_query(&t(&["near", "or"])),
            "\"near\"* AND \"or\"*",
            "operator words are plain terms"
        );
        assert_eq!(fts5_query(&t(&["a\"b"])), "\"a\"\"b\"*");
        assert_eq!(tsquery(&t(&["near", "or"])), "'near':* & 'or':*");
        assert_eq!(tsquery(&t(&["it's", "a\\b"])), "'it''s':* & 'a\\\\b':*");
        // What the splitter lets through never needs the escapes.
        assert_eq!(
            fts5_query(&terms("NEAR(\"x\" OR y*)").unwrap()),
            "\"near\"* AND \"x\"* AND \"or\"* AND \"y\"*"
        );
    }
}
