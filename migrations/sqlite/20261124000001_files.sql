-- Files, their attachment to messages, and message kinds for attachments.

-- SQLite cannot change a CHECK constraint in place: the messages table is
-- rebuilt with the wider kind list, keeping every row and its rowid.
CREATE TABLE messages_rebuilt (
    id            TEXT PRIMARY KEY NOT NULL,
    room_id       TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    sender_id     TEXT REFERENCES users (id) ON DELETE SET NULL,
    client_msg_id TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('text', 'system', 'image', 'file')),
    body          TEXT,
    data          TEXT,
    reply_to      TEXT,
    created_at    INTEGER NOT NULL,
    edited_at     INTEGER,
    deleted_at    INTEGER,
    UNIQUE (room_id, seq)
);
INSERT INTO messages_rebuilt (rowid, id, room_id, seq, sender_id, client_msg_id, kind, body, data, reply_to,
                              created_at, edited_at, deleted_at)
    SELECT rowid, id, room_id, seq, sender_id, client_msg_id, kind, body, data, reply_to,
           created_at, edited_at, deleted_at
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id);
-- Retention deletes the oldest messages first.
CREATE INDEX messages_created ON messages (created_at);

CREATE TABLE files (
    id           TEXT PRIMARY KEY NOT NULL,
    uploader_id  TEXT NOT NULL REFERENCES users (id),
    -- For display only: storage keys are random and never derived from it.
    name         TEXT NOT NULL,
    mime         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    storage_key  TEXT NOT NULL,
    width        INTEGER,
    height       INTEGER,
    thumb_key    TEXT,
    thumb_mime   TEXT,
    thumb_width  INTEGER,
    thumb_height INTEGER,
    thumb_size   INTEGER,
    created_at   INTEGER NOT NULL,
    -- When it was first attached to a message; a file never attached is
    -- collected after a day.
    attached_at  INTEGER
);
CREATE INDEX files_uploader ON files (uploader_id);
CREATE INDEX files_created ON files (created_at);

CREATE TABLE message_attachments (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    file_id    TEXT NOT NULL REFERENCES files (id),
    position   INTEGER NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_attachments_file ON message_attachments (file_id);
