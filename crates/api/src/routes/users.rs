//! `/v1/users/*`: profiles.

use axum::extract::State;
use roost_core::model::{PublicUser, User};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(update_me))
        .routes(routes!(profile))
        .routes(routes!(by_username))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: String,
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/v1/users/me", operation_id = "updateMe", tag = "users", security(("bearer" = [])), request_body = UpdateMeRequest,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(req): Json<UpdateMeRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        state
            .core
            .users
            .set_display_name(&actor, &req.display_name)
            .await?,
    ))
}

/// Anyone's public profile.
#[utoipa::path(get, path = "/v1/users/{id}", operation_id = "getUser", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PublicUser), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn profile(
    State(state): State<AppState>,
    _caller: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<PublicUser>> {
    Ok(Json(state.core.users.profile(id).await?))
}

/// The enabled account with exactly this username (ignoring case), to start a
/// direct message with someone who shares no room with the caller. There is
/// no prefix search: a name must be known in full.
#[utoipa::path(get, path = "/v1/users/by-username/{username}", operation_id = "getUserByUsername", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = PublicUser), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn by_username(
    State(state): State<AppState>,
    _caller: AuthUser,
    Path(username): Path<String>,
) -> ApiResult<Json<PublicUser>> {
    Ok(Json(state.core.users.by_username(&username).await?))
}
