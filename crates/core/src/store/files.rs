//! Files, their attachment to messages, quota sums, and what garbage
//! collection and retention remove.

use sqlx::FromRow;

use super::{Backend, Store, WriteTx};
use crate::error::{CoreError, Result};

/// A `files` row.
#[derive(Debug, Clone, FromRow)]
pub struct FileRow {
    pub id: String,
    pub uploader_id: String,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub thumb_key: Option<String>,
    pub thumb_mime: Option<String>,
    pub thumb_width: Option<i64>,
    pub thumb_height: Option<i64>,
    pub thumb_size: Option<i64>,
    pub created_at: i64,
    pub attached_at: Option<i64>,
}

/// A file attached to a message, in the message's order.
#[derive(Debug, Clone, FromRow)]
pub struct AttachmentRow {
    pub message_id: String,
    #[sqlx(flatten)]
    pub file: FileRow,
}

/// Storage keys of a removed file, for deleting its objects.
#[derive(Debug, Clone, FromRow)]
pub struct RemovedFile {
    pub id: String,
    pub storage_key: String,
    pub thumb_key: Option<String>,
}

const COLUMNS: &str = "id, uploader_id, name, mime, size, sha256, storage_key, width, height, \
     thumb_key, thumb_mime, thumb_width, thumb_height, thumb_size, created_at, attached_at";

/// Bytes a user's files take, thumbnails included.
const BYTES_STORED: &str =
    "SELECT CAST(COALESCE(SUM(size + COALESCE(thumb_size, 0)), 0) AS BIGINT) \
     FROM files WHERE uploader_id = $1";

/// `$from, $from+1, ...` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Links `file_ids` to a new message, in order, and marks them attached.
pub(crate) async fn attach(
    tx: &mut WriteTx,
    message_id: &str,
    file_ids: &[String],
    now: i64,
) -> Result<()> {
    for (position, file_id) in file_ids.iter().enumerate() {
        sqlx::query(
            "INSERT INTO message_attachments (message_id, file_id, position) VALUES ($1, $2, $3)",
        )
        .bind(message_id)
        .bind(file_id)
        .bind(position as i64)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("UPDATE files SET attached_at = $2 WHERE id = $1 AND attached_at IS NULL")
            .bind(file_id)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Bytes a user's files take, thumbnails included.
    pub async fn bytes_stored_by(&self, uploader_id: &str) -> Result<i64> {
        let used: Option<i64> = sqlx::query_scalar(BYTES_STORED)
            .bind(uploader_id)
            .fetch_one(self.pool())
            .await?;
        Ok(used.unwrap_or(0))
    }

    /// Records an uploaded file, unless it would take its uploader past
    /// `quota` bytes: then nothing is recorded and the error says so.
    pub async fn insert_file(&self, f: &FileRow, quota: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Serialises one user's uploads, so two cannot both fit the last of the quota.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(&f.uploader_id)
                .execute(&mut *tx.tx)
                .await?;
        }
        let used: Option<i64> = sqlx::query_scalar(BYTES_STORED)
            .bind(&f.uploader_id)
            .fetch_one(&mut *tx.tx)
            .await?;
        if used.unwrap_or(0) + f.size + f.thumb_size.unwrap_or(0) > quota {
            return Err(CoreError::too_large(
                "quota_exceeded",
                "this file would take you past your storage quota",
            ));
        }
        sqlx::query(&format!(
            "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&f.id)
        .bind(&f.uploader_id)
        .bind(&f.name)
        .bind(&f.mime)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.storage_key)
        .bind(f.width)
        .bind(f.height)
        .bind(&f.thumb_key)
        .bind(&f.thumb_mime)
        .bind(f.thumb_width)
        .bind(f.thumb_height)
        .bind(f.thumb_size)
        .bind(f.created_at)
        .bind(f.attached_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM files WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The files with these ids that `uploader_id` uploaded.
    pub async fn files_of_uploader(
        &self,
        uploader_id: &str,
        ids: &[String],
    ) -> Result<Vec<FileRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM files WHERE uploader_id = $1 AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = sqlx::query_as(&sql).bind(uploader_id);
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Whether `user_id` belongs to a room where the file is attached to a message.
    pub async fn file_visible_through_rooms(&self, file_id: &str, user_id: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM message_attachments a \
             JOIN messages m ON m.id = a.message_id \
             JOIN room_members rm ON rm.room_id = m.room_id AND rm.user_id = $2 \
             WHERE a.file_id = $1 LIMIT 1",
        )
        .bind(file_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// The attachments of these messages, in each message's order.
    pub async fn attachments_of(&self, message_ids: &[String]) -> Result<Vec<AttachmentRow>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cols = super::qualified(COLUMNS, "f");
        let sql = format!(
            "SELECT a.message_id, {cols} FROM message_attachments a JOIN files f ON f.id = a.file_id \
             WHERE a.message_id IN ({}) ORDER BY a.message_id, a.position",
            placeholders(1, message_ids.len())
        );
        let mut q = sqlx::query_as(&sql);
        for id in message_ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Up to `batch` files that nothing references: attached once and no
    /// longer (their messages were deleted), or never attached and uploaded
    /// before `unattached_before`.
    pub async fn orphaned_files(&self, unattached_before: i64, batch: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT f.id FROM files f \
             WHERE NOT EXISTS (SELECT 1 FROM message_attachments a WHERE a.file_id = f.id) \
             AND (f.attached_at IS NOT NULL OR f.created_at < $1) \
             ORDER BY f.created_at LIMIT $2",
        )
        .bind(unattached_before)
        .bind(batch)
        .fetch_all(self.pool())
        .await?)
    }

    /// Removes a file's row if nothing references it (checked again, in the
    /// same statement), returning its storage keys.
    pub async fn remove_orphan(
        &self,
        id: &str,
        unattached_before: i64,
    ) -> Result<Option<RemovedFile>> {
        Ok(sqlx::query_as(
            "DELETE FROM files WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM message_attachments a WHERE a.file_id = files.id) \
             AND (attached_at IS NOT NULL OR created_at < $2) \
             RETURNING id, storage_key, thumb_key",
        )
        .bind(id)
        .bind(unattached_before)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Deletes up to `batch` messages created before `before`, oldest first,
    /// with their attachment links. Returns how many went.
    pub async fn delete_messages_before(&self, before: i64, batch: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE created_at < $1 ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(batch)
        .fetch_all(&mut *tx.tx)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let list = placeholders(1, ids.len());
        for table in ["message_attachments WHERE message_id", "messages WHERE id"] {
            let sql = format!("DELETE FROM {table} IN ({list})");
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx.tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_the_first_free_number() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 1), "$1");
    }
}
