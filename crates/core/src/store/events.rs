//! The per-room event log: every sequenced room event, in order, for resume.

use sqlx::FromRow;

use super::{Store, WriteTx};
use crate::error::Result;

/// A `room_events` row.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub room_id: String,
    pub seq: i64,
    pub kind: String,
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub data: Option<String>,
    pub created_at: i64,
}

/// The kinds of event a room's log holds, as its `kind` column names them
/// (the same names as the events' `type` on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    MessageNew,
    MessageUpdated,
    MessageDeleted,
    MemberJoined,
    MemberLeft,
    RoomUpdated,
}

impl EventKind {
    /// Every kind, for tests and for reading the column back.
    pub const ALL: [EventKind; 6] = [
        EventKind::MessageNew,
        EventKind::MessageUpdated,
        EventKind::MessageDeleted,
        EventKind::MemberJoined,
        EventKind::MemberLeft,
        EventKind::RoomUpdated,
    ];

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessageNew => "message.new",
            EventKind::MessageUpdated => "message.updated",
            EventKind::MessageDeleted => "message.deleted",
            EventKind::MemberJoined => "room.member_joined",
            EventKind::MemberLeft => "room.member_left",
            EventKind::RoomUpdated => "room.updated",
        }
    }

    /// The kind a stored name stands for; `None` for a name this version does not know.
    pub fn from_column(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An event to append: the room's next sequence number is taken in the same transaction.
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub message_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub data: Option<String>,
}

impl<'a> NewEvent<'a> {
    /// An event about one message, with nothing else to say.
    pub fn about_message(kind: EventKind, message_id: &'a str) -> Self {
        NewEvent {
            kind,
            message_id: Some(message_id),
            user_id: None,
            data: None,
        }
    }
}

const COLUMNS: &str = "room_id, seq, kind, message_id, user_id, data, created_at";

/// Appends an event to `room_id`'s log and returns its sequence number. The
/// room row's update holds its lock until commit, so sequence numbers of one
/// room are handed out, and become visible, in order.
pub(crate) async fn append(
    tx: &mut WriteTx,
    room_id: &str,
    event: NewEvent<'_>,
    now: i64,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(room_id)
    .fetch_one(&mut *tx.tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO room_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(room_id)
    .bind(seq)
    .bind(event.kind.as_str())
    .bind(event.message_id)
    .bind(event.user_id)
    .bind(event.data)
    .bind(now)
    .execute(&mut *tx.tx)
    .await?;
    Ok(seq)
}

impl Store {
    /// Events of a room with `seq > after`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        room_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(room_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Events of a room with the given sequence numbers.
    pub async fn events_in(&self, room_id: &str, from: i64, to: i64) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM room_events WHERE room_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
        ))
        .bind(room_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    /// The room's newest sequence number and the oldest one still kept
    /// (`None` when the log is empty).
    pub async fn event_bounds(&self, room_id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.last_seq, (SELECT MIN(e.seq) FROM room_events e WHERE e.room_id = r.id) \
             FROM rooms r WHERE r.id = $1",
        )
        .bind(room_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row)
    }

    /// Deletes up to `batch` events from the start of each room's log, up to
    /// the room's newest event created before `before`: always a prefix, so the
    /// kept log has no holes. Returns how many went.
    pub async fn prune_events(&self, before: i64, batch: i64) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM room_events WHERE (room_id, seq) IN \
             (SELECT e.room_id, e.seq FROM room_events e \
              WHERE e.seq <= (SELECT MAX(o.seq) FROM room_events o WHERE o.room_id = e.room_id AND o.created_at < $1) \
              ORDER BY e.room_id, e.seq LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}
