-- Full-text search over message bodies (docs/adr/0010-message-search.md).
--
-- An external-content FTS5 index: the text stays in `messages` alone and the
-- index refers to rows by rowid. Triggers keep it in step with every write,
-- deletes cascaded from a room included, exactly as FTS5's documentation
-- prescribes, so the index always equals what 'rebuild' would make of the
-- table (and `integrity-check` can say so). A NULL body (system messages, and
-- deleted messages, whose body is set to NULL) is indexed as an empty text:
-- it matches nothing. The `delete` command must be given the body that was
-- indexed, which `old.body` is.
-- A migration that rebuilds `messages` must keep its rowids, and recreate
-- these triggers after dropping the old table, or the index goes stale.

CREATE VIRTUAL TABLE messages_fts USING fts5(
    body,
    content = 'messages',
    content_rowid = 'rowid',
    -- Case and diacritics folded, no stemming: language neutral.
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
END;

-- Edits replace the body; deletes set it to NULL.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;

-- The messages already there.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
