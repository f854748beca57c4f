//! `/v1/rooms/{id}/messages` and `/v1/rooms/{id}/read`: chat over REST. The
//! WebSocket gateway offers the same operations; both go through `core::chat`.

use axum::extract::State;
use axum::http::StatusCode;
use roost_core::chat::{History, Outgoing};
use roost_core::model::Message;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(send, history))
        .routes(routes!(show, edit, remove))
        .routes(routes!(read))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// 1 to 4,000 characters (configurable), not only whitespace; may be
    /// empty or absent when `attachments` are given (a caption, then).
    #[serde(default)]
    pub body: String,
    /// The client's idempotency key, 1 to 128 characters: sending again with the
    /// same key returns the first message and creates nothing.
    #[schema(min_length = 1, max_length = 128)]
    pub client_msg_id: String,
    /// A message of the same room this one answers.
    pub reply_to: Option<Uuid>,
    /// Ids of the caller's own files (`POST /v1/files`), at most 10
    /// (configurable). The message's kind becomes `image` when all are
    /// images, `file` otherwise.
    #[serde(default)]
    pub attachments: Vec<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// 1 to 4,000 characters (configurable), not only whitespace.
    #[schema(min_length = 1)]
    pub body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The newest message the caller has read.
    pub message_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadMarker {
    pub message_id: Uuid,
    /// The room sequence number of that message.
    pub message_seq: u64,
    /// False when the marker was already at or past this message.
    pub moved: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The page ends just before this message.
    pub before: Option<Uuid>,
    /// The page starts just after this message.
    pub after: Option<Uuid>,
    /// 1 to 100 (configurable); default 50.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
}

/// Sends a message: 201 with the new message, or 200 with the one sent
/// before under the same `client_msg_id`.
#[utoipa::path(post, path = "/v1/rooms/{id}/messages", operation_id = "sendMessage", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SendRequest,
    responses((status = 201, body = Message), (status = 200, body = Message, description = "Already sent"),
        (status = 404, body = ErrorBody, description = "Not a member"), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(room_id): Path<Uuid>,
    Json(req): Json<SendRequest>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let out = Outgoing {
        body: req.body,
        client_msg_id: req.client_msg_id,
        reply_to: req.reply_to,
        attachments: req.attachments,
    };
    let (message, created) = state.core.chat.send(&actor, room_id, out).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(message),
    ))
}

/// History, always in ascending order (oldest first): the `limit` messages
/// before `before`, or after `after`, or the newest `limit`. `has_more` says
/// whether more lie beyond in the direction asked.
#[utoipa::path(get, path = "/v1/rooms/{id}/messages", operation_id = "listMessages", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), HistoryQuery),
    responses((status = 200, body = History), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(room_id): Path<Uuid>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<History>> {
    Ok(Json(
        state
            .core
            .chat
            .history(&actor, room_id, q.before, q.after, q.limit)
            .await?,
    ))
}

/// One message (a deleted one as its tombstone), for the room's members: what
/// a client shows for a reply whose original is not in the pages it loaded.
#[utoipa::path(get, path = "/v1/rooms/{id}/messages/{message_id}", operation_id = "getMessage", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state.core.chat.get(&actor, room_id, message_id).await?,
    ))
}

/// Edits one's own message.
#[utoipa::path(patch, path = "/v1/rooms/{id}/messages/{message_id}", operation_id = "editMessage", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)), request_body = EditRequest,
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`message_deleted`"), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
    Json(req): Json<EditRequest>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state
            .core
            .chat
            .edit(&actor, room_id, message_id, &req.body)
            .await?,
    ))
}

/// Deletes a message (one's own; moderators and the owner: anyone's). It stays
/// as a tombstone without its body.
#[utoipa::path(delete, path = "/v1/rooms/{id}/messages/{message_id}", operation_id = "deleteMessage", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 200, body = Message, description = "The tombstone"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state.core.chat.delete(&actor, room_id, message_id).await?,
    ))
}

/// Moves the caller's read marker forward to a message; never back.
#[utoipa::path(post, path = "/v1/rooms/{id}/read", operation_id = "markRead", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReadRequest,
    responses((status = 200, body = ReadMarker), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(room_id): Path<Uuid>,
    Json(req): Json<ReadRequest>,
) -> ApiResult<Json<ReadMarker>> {
    let (message, moved) = state
        .core
        .chat
        .mark_read(&actor, room_id, req.message_id)
        .await?;
    Ok(Json(ReadMarker {
        message_id: message.id,
        message_seq: message.seq,
        moved,
    }))
}
