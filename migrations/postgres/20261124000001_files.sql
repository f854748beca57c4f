-- Files, their attachment to messages, and message kinds for attachments.

ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check CHECK (kind IN ('text', 'system', 'image', 'file'));
-- Retention deletes the oldest messages first.
CREATE INDEX messages_created ON messages (created_at);

CREATE TABLE files (
    id           TEXT PRIMARY KEY NOT NULL,
    uploader_id  TEXT NOT NULL REFERENCES users (id),
    -- For display only: storage keys are random and never derived from it.
    name         TEXT NOT NULL,
    mime         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    storage_key  TEXT NOT NULL,
    width        BIGINT,
    height       BIGINT,
    thumb_key    TEXT,
    thumb_mime   TEXT,
    thumb_width  BIGINT,
    thumb_height BIGINT,
    thumb_size   BIGINT,
    created_at   BIGINT NOT NULL,
    -- When it was first attached to a message; a file never attached is
    -- collected after a day.
    attached_at  BIGINT
);
CREATE INDEX files_uploader ON files (uploader_id);
CREATE INDEX files_created ON files (created_at);

CREATE TABLE message_attachments (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    file_id    TEXT NOT NULL REFERENCES files (id),
    position   BIGINT NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_attachments_file ON message_attachments (file_id);
