-- Whether a participant muted by a moderator may unmute itself (1) or must
-- wait for a moderator to allow it (0). See docs/adr/0027-call-moderation.md.
ALTER TABLE rooms ADD COLUMN call_self_unmute INTEGER NOT NULL DEFAULT 1;
