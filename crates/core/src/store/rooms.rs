//! Rooms, their members and invites.

use sqlx::FromRow;

use super::events::{append, EventKind, NewEvent};
use super::messages::insert_system;
use super::{contains_pattern, Store, WriteTx};
use crate::error::{is_unique_violation, CoreError, Result};

/// Why a member left, as recorded in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure<'a> {
    Left,
    Kicked { by: &'a str },
}

/// A `rooms` row with its member count.
#[derive(Debug, Clone, FromRow)]
pub struct RoomRow {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub visibility: String,
    pub max_call_participants: Option<i64>,
    /// 1 where a participant muted by a moderator may unmute itself, else 0.
    pub call_self_unmute: i64,
    pub created_by: Option<String>,
    pub dm_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub member_count: i64,
    pub last_seq: i64,
}

/// A member joined with the user's public profile.
#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub user_created_at: i64,
    pub role: String,
    pub joined_at: i64,
    pub last_read_seq: i64,
}

/// An `invites` row.
#[derive(Debug, Clone, FromRow)]
pub struct InviteRow {
    pub code: String,
    pub room_id: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_uses: Option<i64>,
    pub uses: i64,
}

const ROOM_COLUMNS: &str = "r.id, r.kind, r.name, r.topic, r.visibility, r.max_call_participants, \
     r.call_self_unmute, r.created_by, r.dm_key, r.created_at, r.updated_at, r.last_seq, \
     (SELECT COUNT(*) FROM room_members c WHERE c.room_id = r.id) AS member_count";

const MEMBER_COLUMNS: &str =
    "m.user_id, u.username, u.display_name, u.created_at AS user_created_at, \
     m.role, m.joined_at, m.last_read_seq";

const INVITE_COLUMNS: &str = "code, room_id, created_by, created_at, expires_at, max_uses, uses";

impl Store {
    /// Creates a room with `owner` as its first member, or for a DM both members.
    /// Returns the room and the sequence numbers of the events it logged.
    pub async fn insert_room(
        &self,
        room: &RoomRow,
        members: &[(&str, &str)],
    ) -> Result<(RoomRow, Vec<i64>)> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO rooms (id, kind, name, topic, visibility, max_call_participants, created_by, dm_key, \
             created_at, updated_at, call_self_unmute) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
        )
        .bind(&room.id)
        .bind(&room.kind)
        .bind(&room.name)
        .bind(&room.topic)
        .bind(&room.visibility)
        .bind(room.max_call_participants)
        .bind(&room.created_by)
        .bind(&room.dm_key)
        .bind(room.created_at)
        .bind(room.call_self_unmute)
        .execute(&mut *tx.tx)
        .await;
        if let Err(e) = inserted {
            if is_unique_violation(&e) && room.dm_key.is_some() {
                return Err(CoreError::conflict(
                    "dm_exists",
                    "this direct message exists",
                ));
            }
            return Err(e.into());
        }
        let mut seqs = Vec::new();
        for (user_id, role) in members {
            insert_member(&mut tx, &room.id, user_id, role, room.created_at).await?;
            seqs.extend(log_joined(&mut tx, &room.id, user_id, role, room.created_at).await?);
        }
        let row = room_in(&mut tx, &room.id)
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        tx.commit().await?;
        Ok((row, seqs))
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomRow>> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn room_by_dm_key(&self, key: &str) -> Result<Option<RoomRow>> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.dm_key = $1");
        Ok(sqlx::query_as(&sql)
            .bind(key)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The rooms `user_id` belongs to, in creation order, after room id `after`,
    /// each with the user's role.
    pub async fn rooms_of_user(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(RoomRow, String, i64)>> {
        #[derive(FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            room: RoomRow,
            my_role: String,
            unread: i64,
        }
        let sql = format!(
            "SELECT {ROOM_COLUMNS}, me.role AS my_role, \
             (SELECT COUNT(*) FROM messages m WHERE m.room_id = r.id AND m.seq > me.last_read_seq \
                AND m.kind <> 'system' AND m.deleted_at IS NULL AND m.sender_id <> $1) AS unread \
             FROM rooms r JOIN room_members me ON me.room_id = r.id AND me.user_id = $1 \
             WHERE ($2 IS NULL OR r.id > $2) ORDER BY r.id LIMIT $3"
        );
        let rows: Vec<Joined> = sqlx::query_as(&sql)
            .bind(user_id)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|j| (j.room, j.my_role, j.unread))
            .collect())
    }

    /// Public group rooms ordered by lowercased name, then id, with
    /// `user_id`'s role where they are a member and each room's sort key;
    /// only those whose name contains `name_contains`, ignoring case, if given.
    pub async fn public_rooms(
        &self,
        user_id: &str,
        name_contains: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<(RoomRow, Option<String>, String)>> {
        #[derive(FromRow)]
        struct Listed {
            #[sqlx(flatten)]
            room: RoomRow,
            my_role: Option<String>,
            sort_key: String,
        }
        let sql = format!(
            "SELECT {ROOM_COLUMNS}, me.role AS my_role, lower(r.name) AS sort_key \
             FROM rooms r LEFT JOIN room_members me ON me.room_id = r.id AND me.user_id = $1 \
             WHERE r.kind = 'group' AND r.visibility = 'public' \
             AND ($2 IS NULL OR lower(r.name) LIKE $2 ESCAPE '\\') \
             AND ($3 IS NULL OR lower(r.name) > $3 OR (lower(r.name) = $3 AND r.id > $4)) \
             ORDER BY lower(r.name), r.id LIMIT $5"
        );
        let name_like = name_contains.map(|t| contains_pattern(&t.to_lowercase()));
        let rows: Vec<Listed> = sqlx::query_as(&sql)
            .bind(user_id)
            .bind(name_like)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1).unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|l| (l.room, l.my_role, l.sort_key))
            .collect())
    }

    /// Every room `user_id` belongs to, with its newest sequence number.
    pub async fn room_seqs_of_user(&self, user_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.id, r.last_seq FROM rooms r JOIN room_members m ON m.room_id = r.id WHERE m.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Which of `others` share at least one room with `user_id`.
    pub async fn co_members(&self, user_id: &str, others: &[String]) -> Result<Vec<String>> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..others.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT DISTINCT b.user_id FROM room_members a JOIN room_members b ON b.room_id = a.room_id \
             WHERE a.user_id = $1 AND b.user_id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query_scalar(&sql).bind(user_id);
        for o in others {
            q = q.bind(o);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Every room id `user_id` belongs to.
    pub async fn room_ids_of_user(&self, user_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// The newest message of a room.
    pub async fn last_message(&self, room_id: &str) -> Result<Option<super::MessageRow>> {
        self.messages_page(room_id, None, None, 1)
            .await
            .map(|mut v| v.pop())
    }

    /// Writes a room's settings, logging `room.updated` and, for a new name, a system message.
    pub async fn update_room(
        &self,
        room: &RoomRow,
        by: &str,
    ) -> Result<Option<(RoomRow, Vec<i64>)>> {
        let mut tx = self.begin_write().await?;
        let old_name: Option<Option<String>> =
            sqlx::query_scalar("SELECT name FROM rooms WHERE id = $1")
                .bind(&room.id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let Some(old_name) = old_name else {
            return Ok(None);
        };
        let r = sqlx::query(
            "UPDATE rooms SET name = $2, topic = $3, visibility = $4, max_call_participants = $5, updated_at = $6, \
             call_self_unmute = $7 WHERE id = $1",
        )
        .bind(&room.id)
        .bind(&room.name)
        .bind(&room.topic)
        .bind(&room.visibility)
        .bind(room.max_call_participants)
        .bind(room.updated_at)
        .bind(room.call_self_unmute)
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let now = room.updated_at;
        let mut seqs = vec![
            append(
                &mut tx,
                &room.id,
                NewEvent {
                    kind: EventKind::RoomUpdated,
                    message_id: None,
                    user_id: Some(by),
                    data: None,
                },
                now,
            )
            .await?,
        ];
        if old_name != room.name {
            let data = serde_json::json!({"event": "room_renamed", "by": by, "name": room.name, "old_name": old_name});
            seqs.push(insert_system(&mut tx, &room.id, data.to_string(), now).await?);
        }
        let row = room_in(&mut tx, &room.id)
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        tx.commit().await?;
        Ok(Some((row, seqs)))
    }

    /// Deletes a room with its members and invites.
    pub async fn delete_room(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // Foreign keys cascade too; deleting children first keeps this true without them.
        sqlx::query("DELETE FROM invites WHERE room_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("DELETE FROM room_members WHERE room_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        let r = sqlx::query("DELETE FROM rooms WHERE id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// The role of `user_id` in `room_id`, if a member.
    pub async fn member_role(&self, room_id: &str, user_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Adds a member, logging the join; `None` if already one.
    pub async fn add_member(
        &self,
        room_id: &str,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<Vec<i64>>> {
        let mut tx = self.begin_write().await?;
        if !self.lock_room(&mut tx, room_id).await? {
            return Err(CoreError::NotFound("room"));
        }
        if !insert_member(&mut tx, room_id, user_id, role, now).await? {
            return Ok(None);
        }
        let seqs = log_joined(&mut tx, room_id, user_id, role, now).await?;
        tx.commit().await?;
        Ok(Some(seqs))
    }

    /// Removes a member, logging the departure. When the owner leaves, the
    /// longest-standing moderator, else the longest-standing member, becomes
    /// owner. `None` if `user_id` was not a member.
    pub async fn remove_member(
        &self,
        room_id: &str,
        user_id: &str,
        how: Departure<'_>,
        now: i64,
    ) -> Result<Option<Vec<i64>>> {
        let mut tx = self.begin_write().await?;
        if !self.lock_room(&mut tx, room_id).await? {
            return Ok(None);
        }
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let Some(role) = role else { return Ok(None) };
        sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        if role == "owner" {
            let heir: Option<String> = sqlx::query_scalar(
                "SELECT user_id FROM room_members WHERE room_id = $1 \
                 ORDER BY CASE role WHEN 'moderator' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
            )
            .bind(room_id)
            .fetch_optional(&mut *tx.tx)
            .await?;
            if let Some(heir) = heir {
                sqlx::query(
                    "UPDATE room_members SET role = 'owner' WHERE room_id = $1 AND user_id = $2",
                )
                .bind(room_id)
                .bind(&heir)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        let (reason, by) = match how {
            Departure::Left => ("left", None),
            Departure::Kicked { by } => ("kicked", Some(by)),
        };
        let data = serde_json::json!({"reason": reason, "by": by});
        let left = NewEvent {
            kind: EventKind::MemberLeft,
            message_id: None,
            user_id: Some(user_id),
            data: Some(data.to_string()),
        };
        let mut seqs = vec![append(&mut tx, room_id, left, now).await?];
        let system = serde_json::json!({"event": "member_left", "user_id": user_id, "reason": reason, "by": by});
        seqs.push(insert_system(&mut tx, room_id, system.to_string(), now).await?);
        tx.commit().await?;
        Ok(Some(seqs))
    }

    /// Changes a member's role. `None` if not a member; the owner's role cannot change.
    pub async fn set_member_role(
        &self,
        room_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<Option<()>> {
        let mut tx = self.begin_write().await?;
        if !self.lock_room(&mut tx, room_id).await? {
            return Ok(None);
        }
        let current: Option<String> =
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        match current.as_deref() {
            None => return Ok(None),
            Some("owner") => {
                return Err(CoreError::conflict(
                    "owner_role_fixed",
                    "the owner's role cannot be changed",
                ));
            }
            Some(_) => {}
        }
        sqlx::query("UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(Some(()))
    }

    /// Locks a room's row for the rest of the transaction (PostgreSQL; SQLite's
    /// transaction already holds the write lock). False if the room is gone.
    pub(crate) async fn lock_room(&self, tx: &mut WriteTx, room_id: &str) -> Result<bool> {
        let sql = match self.backend() {
            super::Backend::Postgres => "SELECT id FROM rooms WHERE id = $1 FOR UPDATE",
            super::Backend::Sqlite => "SELECT id FROM rooms WHERE id = $1",
        };
        let found: Option<String> = sqlx::query_scalar(sql)
            .bind(room_id)
            .fetch_optional(&mut *tx.tx)
            .await?;
        Ok(found.is_some())
    }

    pub async fn member(&self, room_id: &str, user_id: &str) -> Result<Option<MemberRow>> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM room_members m JOIN users u ON u.id = m.user_id \
             WHERE m.room_id = $1 AND m.user_id = $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Members in join order, after the (joined_at, user_id) key `after`.
    pub async fn members(
        &self,
        room_id: &str,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM room_members m JOIN users u ON u.id = m.user_id \
             WHERE m.room_id = $1 AND ($2 IS NULL OR m.joined_at > $2 OR (m.joined_at = $2 AND m.user_id > $3)) \
             ORDER BY m.joined_at, m.user_id LIMIT $4"
        );
        Ok(sqlx::query_as(&sql)
            .bind(room_id)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1).unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn insert_invite(&self, invite: &InviteRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO invites ({INVITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0)"
        ))
        .bind(&invite.code)
        .bind(&invite.room_id)
        .bind(&invite.created_by)
        .bind(invite.created_at)
        .bind(invite.expires_at)
        .bind(invite.max_uses)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn invite(&self, code: &str) -> Result<Option<InviteRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE code = $1"
        ))
        .bind(code)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Uses one of an invite's uses and adds `user_id` to its room, in one
    /// transaction. `Ok(None)` when the invite is expired or used up; a user who
    /// is already a member uses nothing.
    pub async fn redeem_invite(
        &self,
        code: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Option<(String, Vec<i64>)>> {
        let mut tx = self.begin_write().await?;
        let room_id: Option<String> =
            sqlx::query_scalar("SELECT room_id FROM invites WHERE code = $1")
                .bind(code)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let Some(room_id) = room_id else {
            return Ok(None);
        };
        if !self.lock_room(&mut tx, &room_id).await? {
            return Ok(None);
        }
        let already: Option<String> =
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(&room_id)
                .bind(user_id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        if already.is_some() {
            return Ok(Some((room_id, Vec::new())));
        }
        let used = sqlx::query(
            "UPDATE invites SET uses = uses + 1 \
             WHERE code = $1 AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)",
        )
        .bind(code)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if used.rows_affected() == 0 {
            return Ok(None);
        }
        insert_member(&mut tx, &room_id, user_id, "member", now).await?;
        let seqs = log_joined(&mut tx, &room_id, user_id, "member", now).await?;
        tx.commit().await?;
        Ok(Some((room_id, seqs)))
    }
}

async fn room_in(tx: &mut WriteTx, id: &str) -> Result<Option<RoomRow>> {
    let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?)
}

async fn insert_member(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (room_id, user_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(&mut *tx.tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Logs a join: the `room.member_joined` event and a system message.
async fn log_joined(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let data = serde_json::json!({"role": role});
    let joined = NewEvent {
        kind: EventKind::MemberJoined,
        message_id: None,
        user_id: Some(user_id),
        data: Some(data.to_string()),
    };
    let mut seqs = vec![append(tx, room_id, joined, now).await?];
    let system = serde_json::json!({"event": "member_joined", "user_id": user_id});
    seqs.push(insert_system(tx, room_id, system.to_string(), now).await?);
    Ok(seqs)
}
