//! Messages and read markers.

use sqlx::FromRow;

use super::events::{append, EventKind, NewEvent};
use super::{Store, WriteTx};
use crate::error::{is_unique_violation, CoreError, Result};

/// A `messages` row.
#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: String,
    pub room_id: String,
    pub seq: i64,
    pub sender_id: Option<String>,
    pub client_msg_id: Option<String>,
    pub kind: String,
    pub body: Option<String>,
    pub data: Option<String>,
    pub reply_to: Option<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// What a new message needs.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub room_id: &'a str,
    pub sender_id: &'a str,
    pub client_msg_id: &'a str,
    /// `text`, `image` or `file`.
    pub kind: &'a str,
    /// Absent for attachments without a caption.
    pub body: Option<&'a str>,
    /// Ids of the sender's files, in order.
    pub attachments: &'a [String],
    pub reply_to: Option<&'a str>,
    pub now: i64,
}

/// Whether a send created a message or found the one sent before with the same client id.
pub enum Sent {
    Created(MessageRow),
    Existing(MessageRow),
}

pub(super) const COLUMNS: &str =
    "id, room_id, seq, sender_id, client_msg_id, kind, body, data, reply_to, created_at, edited_at, deleted_at";

/// Inserts a system message (`data` says what happened) with its `message.new` event.
pub(crate) async fn insert_system(
    tx: &mut WriteTx,
    room_id: &str,
    data: String,
    now: i64,
) -> Result<i64> {
    let id = uuid::Uuid::now_v7().to_string();
    let seq = append(
        tx,
        room_id,
        NewEvent::about_message(EventKind::MessageNew, &id),
        now,
    )
    .await?;
    sqlx::query(&format!(
        "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, NULL, NULL, 'system', NULL, $4, NULL, $5, NULL, NULL)"
    ))
    .bind(&id)
    .bind(room_id)
    .bind(seq)
    .bind(data)
    .bind(now)
    .execute(&mut *tx.tx)
    .await?;
    Ok(seq)
}

impl Store {
    /// Stores a message, its attachments and its `message.new` event, unless this sender
    /// already sent one with this client id, which is then returned as it is.
    pub async fn insert_message(&self, m: &NewMessage<'_>) -> Result<Sent> {
        if let Some(existing) = self
            .message_by_client_id(m.sender_id, m.client_msg_id)
            .await?
        {
            return Ok(Sent::Existing(existing));
        }
        let mut tx = self.begin_write().await?;
        let inserted = async {
            let seq = append(
                &mut tx,
                m.room_id,
                NewEvent { kind: EventKind::MessageNew, message_id: Some(m.id), user_id: Some(m.sender_id), data: None },
                m.now,
            )
            .await?;
            let row: MessageRow = sqlx::query_as(&format!(
                "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, NULL, NULL) \
                 RETURNING {COLUMNS}"
            ))
            .bind(m.id)
            .bind(m.room_id)
            .bind(seq)
            .bind(m.sender_id)
            .bind(m.client_msg_id)
            .bind(m.kind)
            .bind(m.body)
            .bind(m.reply_to)
            .bind(m.now)
            .fetch_one(&mut *tx.tx)
            .await?;
            super::files::attach(&mut tx, m.id, m.attachments, m.now).await?;
            Ok::<_, CoreError>(row)
        }
        .await;
        match inserted {
            Ok(row) => {
                tx.commit().await?;
                Ok(Sent::Created(row))
            }
            // A concurrent send with the same client id won the race: return its message.
            Err(CoreError::Database(e)) if is_unique_violation(&e) => {
                drop(tx);
                let existing = self
                    .message_by_client_id(m.sender_id, m.client_msg_id)
                    .await?;
                existing.map(Sent::Existing).ok_or(CoreError::Database(e))
            }
            Err(e) => Err(e),
        }
    }

    async fn message_by_client_id(
        &self,
        sender_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<MessageRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM messages WHERE sender_id = $1 AND client_msg_id = $2"
        ))
        .bind(sender_id)
        .bind(client_msg_id)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Messages of a room by id.
    pub async fn messages_by_id(&self, room_id: &str, ids: &[String]) -> Result<Vec<MessageRow>> {
        let mut rows = Vec::with_capacity(ids.len());
        // Replays are short and ids few; one indexed look-up each keeps the SQL portable.
        for id in ids {
            if let Some(row) = self.message(id).await?.filter(|r| r.room_id == room_id) {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// A page of a room's messages in ascending order: the `limit` newest
    /// before `before`, or the `limit` oldest after `after`, or the newest.
    pub async fn messages_page(
        &self,
        room_id: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let rows: Vec<MessageRow> = if let Some(after) = after {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2 AND ($3 IS NULL OR seq < $3) \
                 ORDER BY seq LIMIT $4"
            ))
            .bind(room_id)
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
        } else {
            let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND ($2 IS NULL OR seq < $2) \
                 ORDER BY seq DESC LIMIT $3"
            ))
            .bind(room_id)
            .bind(before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
            rows.reverse();
            rows
        };
        Ok(rows)
    }

    /// Replaces a message's body, with its `message.updated` event.
    pub async fn edit_message(
        &self,
        id: &str,
        room_id: &str,
        body: &str,
        now: i64,
    ) -> Result<Option<(MessageRow, i64)>> {
        let mut tx = self.begin_write().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET body = $2, edited_at = $3 WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(body)
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let seq = append(
            &mut tx,
            room_id,
            NewEvent::about_message(EventKind::MessageUpdated, id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some((row, seq)))
    }

    /// Turns a message into a tombstone (no body, no data, no attachments),
    /// with its `message.deleted` event. Files it leaves unreferenced are
    /// collected later.
    pub async fn delete_message(
        &self,
        id: &str,
        room_id: &str,
        now: i64,
    ) -> Result<Option<(MessageRow, i64)>> {
        let mut tx = self.begin_write().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET body = NULL, data = NULL, deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query("DELETE FROM message_attachments WHERE message_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        let seq = append(
            &mut tx,
            room_id,
            NewEvent::about_message(EventKind::MessageDeleted, id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some((row, seq)))
    }

    /// Moves a member's read marker forward to `seq`; false if it was already there or beyond.
    pub async fn mark_read(&self, room_id: &str, user_id: &str, seq: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE room_members SET last_read_seq = $3 WHERE room_id = $1 AND user_id = $2 AND last_read_seq < $3",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(seq)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
