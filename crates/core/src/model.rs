//! The domain types that services take and return.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::CoreError;

/// A server-wide role. Ordered: `User < Admin < SuperAdmin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    SuperAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    pub fn is_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl std::str::FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "super_admin" => Ok(Role::SuperAdmin),
            _ => Err(CoreError::validation(
                "role",
                "must be one of user, admin, super_admin",
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account as its owner and admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An account as anyone else sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for PublicUser {
    fn from(u: &User) -> Self {
        PublicUser {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            created_at: u.created_at,
        }
    }
}

/// `group` rooms have names and any number of members; a `dm` has exactly two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    Group,
    Dm,
}

/// Public rooms can be found and joined by anyone; private rooms are invisible to non-members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
}

/// A member's role within one room. Ordered: `Member < Moderator < Owner`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Member,
    Moderator,
    Owner,
}

macro_rules! text_enum {
    ($ty:ty, $field:literal, $($variant:path => $text:literal),+) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $text),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($variant),)+
                    _ => Err(CoreError::validation($field, concat!("must be one of:", $(" ", $text),+))),
                }
            }
        }
    };
}
text_enum!(RoomKind, "kind", RoomKind::Group => "group", RoomKind::Dm => "dm");
text_enum!(Visibility, "visibility", Visibility::Public => "public", Visibility::Private => "private");
text_enum!(MemberRole, "role", MemberRole::Member => "member", MemberRole::Moderator => "moderator", MemberRole::Owner => "owner");

/// A room and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct Room {
    pub id: Uuid,
    pub kind: RoomKind,
    /// Absent for direct messages.
    pub name: Option<String>,
    pub topic: Option<String>,
    pub visibility: Visibility,
    /// The most people in one call of this room; `null` means the server default.
    pub max_call_participants: Option<u32>,
    /// Whether a participant a moderator muted in a call may unmute itself;
    /// when not, it waits until a moderator allows it. (Absent from rooms
    /// logged before the setting: they let it.)
    #[serde(default = "unmute_by_default")]
    pub call_self_unmute: bool,
    pub created_by: Option<Uuid>,
    pub member_count: u64,
    /// The sequence number of the room's newest event: where a live stream of it starts.
    pub last_seq: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn unmute_by_default() -> bool {
    true
}

/// A room together with the caller's place in it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoomView {
    #[serde(flatten)]
    pub room: Room,
    /// The caller's role, or `null` when the caller is not a member.
    pub my_role: Option<MemberRole>,
    /// The newest message (in listings of the caller's rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// Messages from others after the caller's read marker (in listings of the caller's rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<u64>,
}

/// `text` is written by a person; `image` carries only images and `file`
/// any other attachment (each with an optional caption in `body`); `system`
/// records what happened in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Image,
    File,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::System => "system",
        }
    }

    pub(crate) fn from_db(s: &str) -> MessageKind {
        match s {
            "image" => MessageKind::Image,
            "file" => MessageKind::File,
            "system" => MessageKind::System,
            _ => MessageKind::Text,
        }
    }
}

/// An uploaded file: what `POST /v1/files` returns and what a message's
/// `attachments` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct File {
    pub id: Uuid,
    /// The uploader's name for it, for display only.
    pub name: String,
    /// The type sniffed from the content.
    pub mime: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content; also its `ETag`.
    pub sha256: String,
    /// Pixels, for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Where to download it (with the same bearer token).
    pub url: String,
    /// A preview of an image, at most 320 pixels on its longer side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
    pub created_at: DateTime<Utc>,
}

/// An image's preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct Thumbnail {
    pub url: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
}

/// A chat message. A deleted message stays as a tombstone: `deleted_at` set, no body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    /// The room sequence number of its `message.new` event; orders the room's messages.
    pub seq: u64,
    pub kind: MessageKind,
    /// Absent for system messages.
    pub sender_id: Option<Uuid>,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// Absent for system messages and tombstones.
    pub body: Option<String>,
    /// For system messages: what happened, e.g. `{"event": "member_joined", "user_id": "..."}`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub reply_to: Option<Uuid>,
    /// Files sent with the message, in order; empty for tombstones.
    #[serde(default)]
    pub attachments: Vec<File>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct Member {
    pub user: PublicUser,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
    /// `seq` of the newest message this member has marked read (0: none);
    /// `message.read` events move it live.
    pub last_read_seq: u64,
}

/// An invite code to a room.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Invite {
    pub code: String,
    pub room_id: Uuid,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `null` means unlimited.
    pub max_uses: Option<u32>,
    pub uses: u32,
}

/// One page of a listing. `next_cursor` is absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Who is making a request: an authenticated, enabled user in a live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
}

/// Whether a room has a call going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// No call.
    Idle,
    Active,
    /// The call just ended (the room is idle again).
    Ended,
}
