//! Full-text search over message bodies: FTS5 on SQLite, a GIN index over
//! `to_tsvector('simple', ...)` on PostgreSQL (see the `*_search.sql` migrations).
//!
//! The two engines take different query syntaxes and rank differently, so
//! this is one of the few places where the SQL is written twice. On SQLite
//! one page of matches is ranked and cut first and excerpts are built for
//! that page only: an excerpt costs far more than a rank, and a common word
//! can match most of a server.

use sqlx::FromRow;

use super::{Backend, MessageRow, Store};
use crate::error::Result;

/// A matching message with its excerpt, the matched words wrapped in the
/// markers the caller chose.
#[derive(Debug, Clone, FromRow)]
pub struct SearchRow {
    #[sqlx(flatten)]
    pub message: MessageRow,
    /// SQLite's excerpt; `None` on PostgreSQL, and on SQLite if the message
    /// changed between ranking and excerpting.
    pub snippet: Option<String>,
}

/// Whose messages a search looks through.
#[derive(Debug, Clone, Copy)]
pub enum SearchScope<'a> {
    /// One room (the caller's membership is checked before).
    Room(&'a str),
    /// Every room this user is a member of.
    MemberOf(&'a str),
}

/// One page of a search.
#[derive(Debug, Clone, Copy)]
pub struct SearchPage<'a> {
    /// The query in the engine's own syntax: an FTS5 `MATCH` expression on
    /// SQLite, a `to_tsquery` string on PostgreSQL. Never raw user input.
    pub expr: &'a str,
    /// What goes before and after each matched word of an excerpt (SQLite).
    pub start_mark: &'a str,
    pub stop_mark: &'a str,
    pub limit: i64,
    pub offset: i64,
}

/// What a search may find: messages people wrote that still have a body.
const SEARCHABLE: &str = "m.kind <> 'system' AND m.deleted_at IS NULL AND m.body IS NOT NULL";

/// The indexed expression of the PostgreSQL migration; queries must repeat
/// it exactly for the index to serve them.
const PG_VECTOR: &str = "to_tsvector('simple', coalesce(m.body, ''))";

impl Store {
    /// A page of matching messages, best first; equal ranks newest first.
    pub async fn search_messages(
        &self,
        scope: SearchScope<'_>,
        page: SearchPage<'_>,
    ) -> Result<Vec<SearchRow>> {
        let (scope_sql, scope_value) = match scope {
            SearchScope::Room(room_id) => ("m.room_id = $2", room_id),
            SearchScope::MemberOf(user_id) => (
                "m.room_id IN (SELECT room_id FROM room_members WHERE user_id = $2)",
                user_id,
            ),
        };
        // Qualified: the excerpt's table has a `body` too.
        let columns = super::qualified(super::messages::COLUMNS, "m");
        let rows = match self.backend() {
            Backend::Sqlite => {
                // bm25 is lower for better matches. snippet() only works in a
                // query that MATCHes, hence the correlated subquery, which FTS5
                // answers by rowid.
                let sql = format!(
                    "SELECT {columns}, \
                       (SELECT snippet(messages_fts, 0, $3, $4, '…', 24) FROM messages_fts \
                        WHERE messages_fts MATCH $1 AND messages_fts.rowid = page.hit) AS snippet \
                     FROM (SELECT messages_fts.rowid AS hit, bm25(messages_fts) AS score, \
                             m.created_at AS created, m.id AS mid \
                           FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid \
                           WHERE messages_fts MATCH $1 AND {scope_sql} AND {SEARCHABLE} \
                           ORDER BY score, created DESC, mid DESC LIMIT $5 OFFSET $6) AS page \
                     JOIN messages m ON m.rowid = page.hit \
                     ORDER BY page.score, page.created DESC, page.mid DESC"
                );
                sqlx::query_as(&sql)
                    .bind(page.expr)
                    .bind(scope_value)
                    .bind(page.start_mark)
                    .bind(page.stop_mark)
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(self.pool())
                    .await?
            }
            Backend::Postgres => {
                // No ts_headline: it reads text as HTML and drops anything that
                // looks like a tag, so the service cuts the excerpt itself.
                // Normalisation 1 divides the rank by the logarithm of the length:
                // as with bm25, a word in a short message counts for more than in
                // a long one.
                let sql = format!(
                    "SELECT {columns}, CAST(NULL AS TEXT) AS snippet FROM messages m \
                     WHERE {PG_VECTOR} @@ to_tsquery('simple', $1) AND {scope_sql} AND {SEARCHABLE} \
                     ORDER BY ts_rank_cd({PG_VECTOR}, to_tsquery('simple', $1), 1) DESC, \
                       m.created_at DESC, m.id DESC \
                     LIMIT $3 OFFSET $4"
                );
                sqlx::query_as(&sql)
                    .bind(page.expr)
                    .bind(scope_value)
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows)
    }
}
