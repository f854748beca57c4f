-- Messages, the per-room event log that resume replays, and read markers.

ALTER TABLE rooms ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN last_read_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE messages (
    id            TEXT PRIMARY KEY NOT NULL,
    room_id       TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- The room sequence of the event that created it: the order of the room.
    seq           BIGINT NOT NULL,
    sender_id     TEXT REFERENCES users (id) ON DELETE SET NULL,
    client_msg_id TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('text', 'system')),
    body          TEXT,
    -- For system messages: what happened, as JSON.
    data          TEXT,
    reply_to      TEXT,
    created_at    BIGINT NOT NULL,
    edited_at     BIGINT,
    deleted_at    BIGINT,
    UNIQUE (room_id, seq)
);
-- Idempotent sends: one message per sender and client id.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id);

-- Every sequenced room event, in order; message events point at the message,
-- whose current state is what a replay shows.
CREATE TABLE room_events (
    room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT,
    user_id    TEXT,
    data       TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX room_events_created ON room_events (created_at);
