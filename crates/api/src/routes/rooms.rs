//! `/v1/rooms/*`, `/v1/invites/*` and `/v1/dms`: rooms, members, invites, direct messages.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use roost_core::model::{Invite, Member, MemberRole, Page, RoomView, Visibility};
use roost_core::pagination::PageRequest;
use roost_core::rooms::{NewInvite, NewRoom, RoomPatch};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{double_option, PageQuery};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(create, list))
        .routes(routes!(directory))
        .routes(routes!(show, update, remove))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(members, add_member))
        .routes(routes!(kick, set_member_role))
        .routes(routes!(create_invite))
        .routes(routes!(accept_invite))
        .routes(routes!(open_dm))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Up to 1,000 characters.
    #[schema(max_length = 1000)]
    pub topic: Option<String>,
    /// Default `private`.
    pub visibility: Option<Visibility>,
    /// 2 up to the server's limit; absent means the server default.
    #[schema(minimum = 2)]
    pub max_call_participants: Option<u32>,
    /// Whether participants a moderator muted in a call may unmute
    /// themselves; default `true`.
    pub call_self_unmute: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoomRequest {
    /// 1 to 100 characters; not for direct messages.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Up to 1,000 characters; `null` clears the topic.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub topic: Option<Option<String>>,
    pub visibility: Option<Visibility>,
    /// 2 up to the server's limit; `null` returns to the server default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 2)]
    pub max_call_participants: Option<Option<u32>>,
    /// Whether participants a moderator muted in a call may unmute themselves.
    pub call_self_unmute: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIdRequest {
    pub user_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRoleRequest {
    /// `moderator` or `member`.
    pub role: MemberRole,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// Default 7 days, at most 30 days (configurable).
    #[schema(minimum = 1)]
    pub expires_in_secs: Option<u64>,
    /// Absent means unlimited.
    #[schema(minimum = 1)]
    pub max_uses: Option<u32>,
}

/// Creates a group room; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/rooms", operation_id = "createRoom", tag = "rooms", security(("bearer" = [])), request_body = CreateRoomRequest,
    responses((status = 201, body = RoomView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Room creation is limited to admins"),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(req): Json<CreateRoomRequest>,
) -> ApiResult<(StatusCode, Json<RoomView>)> {
    let room = state
        .core
        .rooms
        .create(
            &actor,
            NewRoom {
                name: req.name,
                topic: req.topic,
                visibility: req.visibility.unwrap_or(Visibility::Private),
                max_call_participants: req.max_call_participants,
                call_self_unmute: req.call_self_unmute.unwrap_or(true),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

/// The rooms the caller belongs to, oldest first.
#[utoipa::path(get, path = "/v1/rooms", operation_id = "listMyRooms", tag = "rooms", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<RoomView>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<RoomView>>> {
    Ok(Json(
        state.core.rooms.mine(&actor, &q.request(&state)?).await?,
    ))
}

/// `?q=&limit=&cursor=` of the public room directory.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DirectoryQuery {
    /// Only rooms whose name contains this, ignoring case (up to 100 characters).
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Items per page (default 50, at most 100 unless configured otherwise).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The server's public group rooms by name, for anyone signed in; `my_role`
/// tells which the caller is already in.
#[utoipa::path(get, path = "/v1/rooms/public", operation_id = "listPublicRooms", tag = "rooms", security(("bearer" = [])), params(DirectoryQuery),
    responses((status = 200, body = Page<RoomView>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn directory(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<DirectoryQuery>,
) -> ApiResult<Json<Page<RoomView>>> {
    let page = PageRequest::new(q.limit, q.cursor.as_deref(), state.core.pages)?;
    Ok(Json(
        state
            .core
            .rooms
            .directory(&actor, q.q.as_deref(), &page)
            .await?,
    ))
}

/// A room: for members, for anyone if public, for admins. Private rooms are 404 to others.
#[utoipa::path(get, path = "/v1/rooms/{id}", operation_id = "getRoom", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RoomView>> {
    Ok(Json(state.core.rooms.get(&actor, id).await?))
}

/// Changes settings (the owner or an admin).
#[utoipa::path(patch, path = "/v1/rooms/{id}", operation_id = "updateRoom", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UpdateRoomRequest,
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateRoomRequest>,
) -> ApiResult<Json<RoomView>> {
    let patch = RoomPatch {
        name: req.name,
        topic: req.topic,
        visibility: req.visibility,
        max_call_participants: req.max_call_participants,
        call_self_unmute: req.call_self_unmute,
    };
    Ok(Json(state.core.rooms.update(&actor, id, patch).await?))
}

/// Deletes a room with its members and invites (the owner or an admin).
#[utoipa::path(delete, path = "/v1/rooms/{id}", operation_id = "deleteRoom", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    state.core.rooms.delete(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Joins a public room; joining again changes nothing.
#[utoipa::path(post, path = "/v1/rooms/{id}/join", operation_id = "joinRoom", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody, description = "Invite only"),
        (status = 404, body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RoomView>> {
    Ok(Json(state.core.rooms.join(&actor, id).await?))
}

/// Leaves a group room. An owner who leaves hands the room to the
/// longest-standing moderator, else the longest-standing member.
#[utoipa::path(post, path = "/v1/rooms/{id}/leave", operation_id = "leaveRoom", tag = "rooms", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`dm_cannot_leave`")))]
pub async fn leave(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    state.core.rooms.leave(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members in join order.
#[utoipa::path(get, path = "/v1/rooms/{id}/members", operation_id = "listMembers", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Member>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Member>>> {
    Ok(Json(
        state
            .core
            .rooms
            .members(&actor, id, &q.request(&state)?)
            .await?,
    ))
}

/// Adds a user to a group room (a moderator, the owner or an admin).
#[utoipa::path(post, path = "/v1/rooms/{id}/members", operation_id = "addMember", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UserIdRequest,
    responses((status = 201, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`already_member` or `dm_members_fixed`")))]
pub async fn add_member(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UserIdRequest>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    Ok((
        StatusCode::CREATED,
        Json(state.core.rooms.add_member(&actor, id, req.user_id).await?),
    ))
}

/// Removes a member; only someone of a higher role may (moderator < owner < admin).
#[utoipa::path(delete, path = "/v1/rooms/{id}/members/{user_id}", operation_id = "removeMember", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kick(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    state.core.rooms.kick(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a member a moderator or back (the owner or an admin).
#[utoipa::path(patch, path = "/v1/rooms/{id}/members/{user_id}", operation_id = "setMemberRole", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = MemberRoleRequest,
    responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn set_member_role(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Json(req): Json<MemberRoleRequest>,
) -> ApiResult<Json<Member>> {
    Ok(Json(
        state
            .core
            .rooms
            .set_member_role(&actor, id, user_id, req.role)
            .await?,
    ))
}

/// Creates an invite code (a moderator, the owner or an admin).
#[utoipa::path(post, path = "/v1/rooms/{id}/invites", operation_id = "createInvite", tag = "rooms", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = CreateInviteRequest,
    responses((status = 201, body = Invite), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    body: Option<Json<CreateInviteRequest>>,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let new = NewInvite {
        expires_in: req.expires_in_secs.map(Duration::from_secs),
        max_uses: req.max_uses,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.core.rooms.create_invite(&actor, id, new).await?),
    ))
}

/// Joins the invite's room. Accepting while already a member uses nothing.
#[utoipa::path(post, path = "/v1/invites/{code}/accept", operation_id = "acceptInvite", tag = "rooms", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = RoomView), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "`invite_expired`: expired or used up")))]
pub async fn accept_invite(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<RoomView>> {
    Ok(Json(state.core.rooms.accept_invite(&actor, &code).await?))
}

/// The one direct-message room of the caller and `user_id`: 201 when created
/// now, 200 when it existed. Concurrent calls give the same room.
#[utoipa::path(post, path = "/v1/dms", operation_id = "openDm", tag = "rooms", security(("bearer" = [])), request_body = UserIdRequest,
    responses((status = 201, body = RoomView), (status = 200, body = RoomView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn open_dm(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(req): Json<UserIdRequest>,
) -> ApiResult<(StatusCode, Json<RoomView>)> {
    let (room, created) = state.core.rooms.open_dm(&actor, req.user_id).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(room),
    ))
}
