-- Full-text search over message bodies (docs/adr/0010-message-search.md).
--
-- A GIN index over an expression, not a stored tsvector column: sqlx's Any
-- driver cannot decode tsvector, so such a column would break any query that
-- reads whole `messages` rows. Queries must use this exact expression for the
-- index to serve them. 'simple': lower-cased, no stemming, no stop words, like
-- the SQLite index.
CREATE INDEX messages_search ON messages USING GIN (to_tsvector('simple', coalesce(body, '')));
