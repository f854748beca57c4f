//! From rows to the model: the ids, times and types the services hand out.
//!
//! Rows hold ids as text and times as Unix milliseconds; a value the store
//! wrote but cannot read back is Roost's bug, never the caller's, so it is
//! `internal`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{FileRow, MessageRow, RoomRow, Store, UserRow};
use crate::error::{CoreError, Result};
use crate::model::{File, Message, MessageKind, Room, Thumbnail, User};

/// Parses an id read from the store; a malformed one is our bug, not the caller's.
pub(crate) fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s)
        .map_err(|_| CoreError::Internal(format!("malformed id in store: {s}").into()))
}

/// A time read from the store (Unix milliseconds).
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn user_from_row(r: UserRow) -> Result<User> {
    Ok(User {
        id: parse_id(&r.id)?,
        email: r.email,
        username: r.username,
        display_name: r.display_name,
        role: r.role.parse()?,
        disabled: r.disabled != 0,
        created_at: time(r.created_at),
        updated_at: time(r.updated_at),
    })
}

pub(crate) fn room_from_row(r: RoomRow) -> Result<Room> {
    Ok(Room {
        id: parse_id(&r.id)?,
        kind: r.kind.parse()?,
        name: r.name,
        topic: r.topic,
        visibility: r.visibility.parse()?,
        max_call_participants: r.max_call_participants.map(|n| n as u32),
        call_self_unmute: r.call_self_unmute != 0,
        created_by: r.created_by.as_deref().map(parse_id).transpose()?,
        member_count: r.member_count.max(0) as u64,
        last_seq: r.last_seq.max(0) as u64,
        created_at: time(r.created_at),
        updated_at: time(r.updated_at),
    })
}

/// `/v1/files/{id}`: where a file is downloaded.
pub(crate) fn file_url(id: &str) -> String {
    format!("/v1/files/{id}")
}

/// The client's view of a file row.
pub(crate) fn file_from_row(r: &FileRow) -> Result<File> {
    let thumbnail = match (&r.thumb_mime, r.thumb_width, r.thumb_height) {
        (Some(mime), Some(w), Some(h)) if r.thumb_key.is_some() => Some(Thumbnail {
            url: format!("{}/thumbnail", file_url(&r.id)),
            mime: mime.clone(),
            width: w.clamp(0, i64::from(u32::MAX)) as u32,
            height: h.clamp(0, i64::from(u32::MAX)) as u32,
        }),
        _ => None,
    };
    Ok(File {
        id: parse_id(&r.id)?,
        name: r.name.clone(),
        mime: r.mime.clone(),
        size: r.size.max(0) as u64,
        sha256: r.sha256.clone(),
        width: r.width.map(|w| w.clamp(0, i64::from(u32::MAX)) as u32),
        height: r.height.map(|h| h.clamp(0, i64::from(u32::MAX)) as u32),
        url: file_url(&r.id),
        thumbnail,
        created_at: time(r.created_at),
    })
}

/// Messages from their rows, with their attachments loaded in one query.
pub(crate) async fn hydrate(store: &Store, rows: Vec<MessageRow>) -> Result<Vec<Message>> {
    let ids: Vec<String> = rows
        .iter()
        .filter(|r| r.kind == "image" || r.kind == "file")
        .map(|r| r.id.clone())
        .collect();
    let mut attachments = store.attachments_of(&ids).await?;
    rows.into_iter()
        .map(|row| {
            let mine: Vec<File> = attachments
                .iter()
                .filter(|a| a.message_id == row.id)
                .map(|a| file_from_row(&a.file))
                .collect::<Result<_>>()?;
            attachments.retain(|a| a.message_id != row.id);
            message_from_row(row, mine)
        })
        .collect()
}

pub(crate) fn message_from_row(r: MessageRow, attachments: Vec<File>) -> Result<Message> {
    Ok(Message {
        id: parse_id(&r.id)?,
        room_id: parse_id(&r.room_id)?,
        seq: r.seq.max(0) as u64,
        kind: MessageKind::from_db(&r.kind),
        sender_id: r.sender_id.as_deref().map(parse_id).transpose()?,
        client_msg_id: r.client_msg_id,
        body: r.body,
        data: r.data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        reply_to: r.reply_to.as_deref().map(parse_id).transpose()?,
        attachments,
        created_at: time(r.created_at),
        edited_at: r.edited_at.map(time),
        deleted_at: r.deleted_at.map(time),
    })
}
