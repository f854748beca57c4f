//! Call records: when each call of a room started and ended, its peak size,
//! and who was in it when.

use sqlx::FromRow;

use super::messages::insert_system;
use super::Store;
use crate::error::{CoreError, Result};

/// A `calls` row.
#[derive(Debug, Clone, FromRow)]
pub struct CallRow {
    pub id: String,
    pub room_id: String,
    pub started_by: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub peak_participants: i64,
}

/// A `call_participants` row.
#[derive(Debug, Clone, FromRow)]
pub struct CallParticipantRow {
    pub call_id: String,
    pub user_id: Option<String>,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

const CALL_COLUMNS: &str = "id, room_id, started_by, started_at, ended_at, peak_participants";

impl Store {
    /// The room's call that is going on, or a new one started by `user_id`
    /// (with a `call_started` system message). Returns the call, whether it
    /// was started now, and the logged events' sequence numbers.
    pub async fn start_call(
        &self,
        room_id: &str,
        user_id: &str,
        new_id: &str,
        now: i64,
    ) -> Result<(CallRow, bool, Vec<i64>)> {
        let mut tx = self.begin_write().await?;
        if !self.lock_room(&mut tx, room_id).await? {
            return Err(CoreError::NotFound("room"));
        }
        let active: Option<CallRow> = sqlx::query_as(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE room_id = $1 AND ended_at IS NULL"
        ))
        .bind(room_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(call) = active {
            tx.commit().await?;
            return Ok((call, false, Vec::new()));
        }
        sqlx::query(&format!(
            "INSERT INTO calls ({CALL_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, 0)"
        ))
        .bind(new_id)
        .bind(room_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let data = serde_json::json!({"event": "call_started", "call_id": new_id, "by": user_id});
        let seq = insert_system(&mut tx, room_id, data.to_string(), now).await?;
        tx.commit().await?;
        let call = CallRow {
            id: new_id.to_owned(),
            room_id: room_id.to_owned(),
            started_by: Some(user_id.to_owned()),
            started_at: now,
            ended_at: None,
            peak_participants: 0,
        };
        Ok((call, true, vec![seq]))
    }

    /// Records a participant joining; `count` is the call's size with it.
    pub async fn add_call_participant(
        &self,
        call_id: &str,
        participant_id: &str,
        user_id: &str,
        count: i64,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO call_participants (call_id, participant_id, user_id, joined_at, left_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(call_id)
        .bind(participant_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "UPDATE calls SET peak_participants = $2 WHERE id = $1 AND peak_participants < $2",
        )
        .bind(call_id)
        .bind(count)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_call_participant(
        &self,
        call_id: &str,
        participant_id: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE call_participants SET left_at = $3 \
             WHERE call_id = $1 AND participant_id = $2 AND left_at IS NULL",
        )
        .bind(call_id)
        .bind(participant_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a call (everyone still in it leaves) with a `call_ended` system
    /// message. `None` if it had ended already.
    pub async fn end_call(&self, call_id: &str, now: i64) -> Result<Option<(CallRow, Vec<i64>)>> {
        let mut tx = self.begin_write().await?;
        let call: Option<CallRow> = sqlx::query_as(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE id = $1 AND ended_at IS NULL"
        ))
        .bind(call_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(mut call) = call else {
            return Ok(None);
        };
        if !self.lock_room(&mut tx, &call.room_id).await? {
            return Ok(None);
        }
        sqlx::query("UPDATE calls SET ended_at = $2 WHERE id = $1")
            .bind(call_id)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "UPDATE call_participants SET left_at = $2 WHERE call_id = $1 AND left_at IS NULL",
        )
        .bind(call_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let data = serde_json::json!({
            "event": "call_ended",
            "call_id": call_id,
            "duration_ms": now - call.started_at,
            "peak_participants": call.peak_participants,
        });
        let seq = insert_system(&mut tx, &call.room_id, data.to_string(), now).await?;
        tx.commit().await?;
        call.ended_at = Some(now);
        Ok(Some((call, vec![seq])))
    }

    /// Calls still marked as going on (after a restart, none of them is).
    pub async fn active_calls(&self) -> Result<Vec<CallRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE ended_at IS NULL"
        ))
        .fetch_all(self.pool())
        .await?)
    }

    /// A room's calls, newest first, from before the call `before` (an id).
    pub async fn calls_of_room(
        &self,
        room_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CallRow>> {
        let rows = match before {
            Some(before) => {
                sqlx::query_as(&format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE room_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(room_id)
                .bind(before)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE room_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(room_id)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        Ok(rows)
    }

    /// Everyone who was in one of `call_ids`, in order of joining.
    pub async fn call_participants(&self, call_ids: &[String]) -> Result<Vec<CallParticipantRow>> {
        let mut out = Vec::new();
        for id in call_ids {
            let rows: Vec<CallParticipantRow> = sqlx::query_as(
                "SELECT call_id, user_id, joined_at, left_at FROM call_participants \
                 WHERE call_id = $1 ORDER BY joined_at, participant_id",
            )
            .bind(id)
            .fetch_all(self.pool())
            .await?;
            out.extend(rows);
        }
        Ok(out)
    }
}
