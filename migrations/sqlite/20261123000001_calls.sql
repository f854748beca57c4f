-- Calls: one record per call of a room, and who was in it when.

CREATE TABLE calls (
    id                TEXT PRIMARY KEY NOT NULL,
    room_id           TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    started_by        TEXT REFERENCES users (id) ON DELETE SET NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    peak_participants INTEGER NOT NULL DEFAULT 0
);
-- At most one call of a room is going on at a time.
CREATE UNIQUE INDEX calls_one_active ON calls (room_id) WHERE ended_at IS NULL;
CREATE INDEX calls_of_room ON calls (room_id, id);

CREATE TABLE call_participants (
    call_id        TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    -- One joining: the connection that joined.
    participant_id TEXT NOT NULL,
    user_id        TEXT REFERENCES users (id) ON DELETE SET NULL,
    joined_at      INTEGER NOT NULL,
    left_at        INTEGER,
    PRIMARY KEY (call_id, participant_id)
);
