//! Messages: sending (idempotent by `client_msg_id`), history, edits,
//! deletes, read markers and typing. REST and the WebSocket gateway both
//! come here, so a message takes one path whichever door it came in by.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Publisher, RoomEventBody};
use crate::model::{Actor, MemberRole, Message, MessageKind};
use crate::store::convert::{hydrate, message_from_row};
use crate::store::{MessageRow, NewMessage, Sent, Store};

pub const MAX_CLIENT_MSG_ID_CHARS: usize = 128;

/// Settings of chat.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The longest message body, in characters.
    pub max_body_chars: usize,
    /// How long a typing indicator lasts unless renewed.
    pub typing_ttl: Duration,
    /// The largest history page.
    pub max_history_limit: u32,
    /// The most files on one message.
    pub max_attachments: usize,
    /// Messages older than this many days are deleted, with their files; 0 keeps everything.
    pub message_retention_days: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_body_chars: 4000,
            typing_ttl: Duration::from_secs(6),
            max_history_limit: 100,
            max_attachments: 10,
            message_retention_days: 0,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// May be empty when the message carries attachments.
    pub body: String,
    pub client_msg_id: String,
    pub reply_to: Option<Uuid>,
    /// The sender's own uploaded files, in order.
    pub attachments: Vec<Uuid>,
}

/// A page of history in ascending order.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct History {
    pub items: Vec<Message>,
    /// Whether more messages lie beyond this page in the direction asked.
    pub has_more: bool,
}

/// The chat service.
#[derive(Clone)]
pub struct Chat {
    store: Store,
    publish: Publisher,
    config: ChatConfig,
}

impl Chat {
    pub fn new(store: Store, publish: Publisher, config: ChatConfig) -> Self {
        Chat {
            store,
            publish,
            config,
        }
    }

    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The caller's role in a room, or not found: non-members learn nothing of the room.
    async fn membership(&self, actor: &Actor, room_id: Uuid) -> Result<MemberRole> {
        self.store
            .member_role(&room_id.to_string(), &actor.user_id.to_string())
            .await?
            .ok_or(CoreError::NotFound("room"))?
            .parse()
    }

    fn check_body(&self, body: &str) -> Result<()> {
        crate::text::refuse_nul("body", body)?;
        let n = body.chars().count();
        if body.trim().is_empty() {
            return Err(CoreError::validation("body", "must not be empty"));
        }
        if n > self.config.max_body_chars {
            return Err(CoreError::validation(
                "body",
                format!("must be at most {} characters", self.config.max_body_chars),
            ));
        }
        Ok(())
    }

    /// Sends a message. Sending again with the same `client_msg_id` returns the
    /// first message (same id) and creates nothing; `created` says which.
    pub async fn send(
        &self,
        actor: &Actor,
        room_id: Uuid,
        out: Outgoing,
    ) -> Result<(Message, bool)> {
        self.membership(actor, room_id).await?;
        crate::text::refuse_nul("client_msg_id", &out.client_msg_id)?;
        let cid = out.client_msg_id.trim();
        if cid.is_empty() || cid.chars().count() > MAX_CLIENT_MSG_ID_CHARS {
            return Err(CoreError::validation(
                "client_msg_id",
                format!("must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"),
            ));
        }
        if out.attachments.is_empty() || !out.body.is_empty() {
            self.check_body(&out.body)?;
        }
        let (kind, attachments) = self.attachable(actor, &out.attachments).await?;
        let room = room_id.to_string();
        if let Some(reply) = out.reply_to {
            let target = self.store.message(&reply.to_string()).await?;
            if target.is_none_or(|t| t.room_id != room) {
                return Err(CoreError::validation(
                    "reply_to",
                    "is not a message of this room",
                ));
            }
        }
        let id = Uuid::now_v7().to_string();
        let sender = actor.user_id.to_string();
        let reply_to = out.reply_to.map(|r| r.to_string());
        let sent = self
            .store
            .insert_message(&NewMessage {
                id: &id,
                room_id: &room,
                sender_id: &sender,
                client_msg_id: cid,
                kind: kind.as_str(),
                body: (!out.body.is_empty()).then_some(out.body.as_str()),
                attachments: &attachments,
                reply_to: reply_to.as_deref(),
                now: Utc::now().timestamp_millis(),
            })
            .await?;
        match sent {
            Sent::Created(row) => {
                self.publish.sequenced(room_id, &[row.seq]).await;
                Ok((self.hydrate_one(row).await?, true))
            }
            Sent::Existing(row) if row.room_id == room => Ok((self.hydrate_one(row).await?, false)),
            Sent::Existing(_) => Err(CoreError::conflict(
                "client_msg_id_reused",
                "this client_msg_id was already used for a message in another room",
            )),
        }
    }

    /// Checks that the files to attach are the sender's own, at most the
    /// configured number and none twice; gives the message's kind.
    async fn attachable(&self, actor: &Actor, ids: &[Uuid]) -> Result<(MessageKind, Vec<String>)> {
        if ids.is_empty() {
            return Ok((MessageKind::Text, Vec::new()));
        }
        if ids.len() > self.config.max_attachments {
            return Err(CoreError::validation(
                "attachments",
                format!("at most {} files per message", self.config.max_attachments),
            ));
        }
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
            return Err(CoreError::validation("attachments", "lists a file twice"));
        }
        let files = self
            .store
            .files_of_uploader(&actor.user_id.to_string(), &ids)
            .await?;
        if files.len() != ids.len() {
            return Err(CoreError::validation(
                "attachments",
                "each must be a file you uploaded",
            ));
        }
        let kind = if files.iter().all(|f| f.mime.starts_with("image/")) {
            MessageKind::Image
        } else {
            MessageKind::File
        };
        Ok((kind, ids))
    }

    async fn hydrate_one(&self, row: MessageRow) -> Result<Message> {
        let mut all = hydrate(&self.store, vec![row]).await?;
        all.pop().ok_or(CoreError::NotFound("message"))
    }

    /// Deletes messages older than the retention, oldest first in batches
    /// of `batch`, with their attachments (their files go at the next
    /// collection) and the log's events up to then, so a resume from before
    /// is told to reload. Returns how many messages went.
    pub async fn apply_retention(&self, batch: i64) -> Result<u64> {
        if self.config.message_retention_days == 0 {
            return Ok(0);
        }
        let before = Utc::now().timestamp_millis()
            - i64::from(self.config.message_retention_days) * 86_400_000;
        self.expire_before(before, batch).await
    }

    /// Deletes the messages created before `before` (Unix ms) and the log's
    /// events up to then, in batches of `batch`. Returns how many messages went.
    pub async fn expire_before(&self, before: i64, batch: i64) -> Result<u64> {
        let mut removed = 0;
        loop {
            let n = self.store.delete_messages_before(before, batch).await?;
            removed += n;
            if n < batch.max(1) as u64 {
                break;
            }
        }
        while self.store.prune_events(before, batch).await? >= batch.max(1) as u64 {}
        Ok(removed)
    }

    /// History in ascending order: the `limit` newest before `before`, the
    /// `limit` oldest after `after`, or the newest `limit`.
    pub async fn history(
        &self,
        actor: &Actor,
        room_id: Uuid,
        before: Option<Uuid>,
        after: Option<Uuid>,
        limit: Option<u32>,
    ) -> Result<History> {
        self.membership(actor, room_id).await?;
        let limit = limit.unwrap_or(50);
        if limit == 0 || limit > self.config.max_history_limit {
            return Err(CoreError::validation(
                "limit",
                format!("must be between 1 and {}", self.config.max_history_limit),
            ));
        }
        let room = room_id.to_string();
        let seq_of = |id: Option<Uuid>, field: &'static str| {
            let store = self.store.clone();
            let room = room.clone();
            async move {
                let Some(id) = id else { return Ok(None) };
                match store.message(&id.to_string()).await? {
                    Some(m) if m.room_id == room => Ok(Some(m.seq)),
                    _ => Err(CoreError::validation(
                        field,
                        "is not a message of this room",
                    )),
                }
            }
        };
        let before_seq = seq_of(before, "before").await?;
        let after_seq = seq_of(after, "after").await?;
        let rows = self
            .store
            .messages_page(&room, before_seq, after_seq, i64::from(limit) + 1)
            .await?;
        let has_more = rows.len() > limit as usize;
        let rows: Vec<MessageRow> = if !has_more {
            rows
        } else if after_seq.is_some() {
            rows.into_iter().take(limit as usize).collect()
        } else {
            rows.into_iter().skip(1).collect()
        };
        let items = hydrate(&self.store, rows).await?;
        Ok(History { items, has_more })
    }

    async fn own_message(
        &self,
        actor: &Actor,
        room_id: Uuid,
        message_id: Uuid,
    ) -> Result<(MemberRole, MessageRow)> {
        let role = self.membership(actor, room_id).await?;
        let row = self
            .store
            .message(&message_id.to_string())
            .await?
            .filter(|m| m.room_id == room_id.to_string())
            .ok_or(CoreError::NotFound("message"))?;
        Ok((role, row))
    }

    /// One message of a room, for its members (a deleted one as its tombstone).
    pub async fn get(&self, actor: &Actor, room_id: Uuid, message_id: Uuid) -> Result<Message> {
        let (_, row) = self.own_message(actor, room_id, message_id).await?;
        self.hydrate_one(row).await
    }

    /// Edits one's own text message.
    pub async fn edit(
        &self,
        actor: &Actor,
        room_id: Uuid,
        message_id: Uuid,
        body: &str,
    ) -> Result<Message> {
        let (_, row) = self.own_message(actor, room_id, message_id).await?;
        if row.sender_id.as_deref() != Some(actor.user_id.to_string().as_str())
            || row.kind == "system"
        {
            return Err(CoreError::forbidden("only the sender may edit a message"));
        }
        if row.deleted_at.is_some() {
            return Err(CoreError::conflict(
                "message_deleted",
                "a deleted message cannot be edited",
            ));
        }
        self.check_body(body)?;
        let now = Utc::now().timestamp_millis();
        let (row, seq) = self
            .store
            .edit_message(&row.id, &row.room_id, body, now)
            .await?
            .ok_or_else(|| {
                CoreError::conflict("message_deleted", "a deleted message cannot be edited")
            })?;
        self.publish.sequenced(room_id, &[seq]).await;
        self.hydrate_one(row).await
    }

    /// Deletes a message: one's own, or anyone's for moderators and the owner.
    /// It stays as a tombstone. Deleting a tombstone again changes nothing.
    pub async fn delete(&self, actor: &Actor, room_id: Uuid, message_id: Uuid) -> Result<Message> {
        let (role, row) = self.own_message(actor, room_id, message_id).await?;
        let own = row.sender_id.as_deref() == Some(actor.user_id.to_string().as_str());
        if !own && role < MemberRole::Moderator {
            return Err(CoreError::forbidden(
                "only the sender, a moderator or the owner may delete a message",
            ));
        }
        if row.deleted_at.is_some() {
            return message_from_row(row, Vec::new());
        }
        let now = Utc::now().timestamp_millis();
        match self
            .store
            .delete_message(&row.id, &row.room_id, now)
            .await?
        {
            Some((row, seq)) => {
                self.publish.sequenced(room_id, &[seq]).await;
                message_from_row(row, Vec::new())
            }
            None => message_from_row(
                self.store
                    .message(&row.id)
                    .await?
                    .ok_or(CoreError::NotFound("message"))?,
                Vec::new(),
            ),
        }
    }

    /// Moves the caller's read marker forward to `message_id`. Returns the
    /// marker's message and whether it moved; moving back changes nothing.
    pub async fn mark_read(
        &self,
        actor: &Actor,
        room_id: Uuid,
        message_id: Uuid,
    ) -> Result<(Message, bool)> {
        let (_, row) = self.own_message(actor, room_id, message_id).await?;
        let moved = self
            .store
            .mark_read(&row.room_id, &actor.user_id.to_string(), row.seq)
            .await?;
        if moved {
            self.publish.ephemeral(
                room_id,
                RoomEventBody::MessageRead {
                    user_id: actor.user_id,
                    message_id,
                    message_seq: row.seq as u64,
                },
            );
        }
        Ok((self.hydrate_one(row).await?, moved))
    }

    /// Tells the room the caller is typing.
    pub async fn typing(&self, actor: &Actor, room_id: Uuid) -> Result<()> {
        self.membership(actor, room_id).await?;
        self.publish.ephemeral(
            room_id,
            RoomEventBody::Typing {
                user_id: actor.user_id,
                expires_in_ms: self.config.typing_ttl.as_millis() as u64,
            },
        );
        Ok(())
    }
}
