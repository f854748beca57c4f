//! `/v1/admin/*`: account administration.

use axum::extract::State;
use roost_core::model::{Page, Role, User};
use roost_core::pagination::PageRequest;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_users))
        .routes(routes!(set_role))
        .routes(routes!(disable))
        .routes(routes!(enable))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Matches email, username or display name, ignoring case.
    pub q: Option<String>,
    pub role: Option<Role>,
    /// Items per page (default 50, at most 100 unless configured otherwise).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// `user` or `admin`.
    pub role: Role,
}

/// Lists accounts, oldest first (admin and up).
#[utoipa::path(get, path = "/v1/admin/users", operation_id = "listUsers", tag = "admin", security(("bearer" = [])), params(UsersQuery),
    responses((status = 200, body = Page<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<UsersQuery>,
) -> ApiResult<Json<Page<User>>> {
    let page = PageRequest::new(q.limit, q.cursor.as_deref(), state.core.pages)?;
    Ok(Json(
        state
            .core
            .users
            .list(&actor, q.q.as_deref(), q.role, &page)
            .await?,
    ))
}

/// Moves an account between `user` and `admin` (super_admin only). The last
/// super_admin cannot be demoted (`last_super_admin`).
#[utoipa::path(post, path = "/v1/admin/users/{id}/role", operation_id = "setUserRole", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SetRoleRequest,
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<SetRoleRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.core.users.set_role(&actor, id, req.role).await?))
}

/// Disables an account and ends all its sessions (admin and up).
#[utoipa::path(post, path = "/v1/admin/users/{id}/disable", operation_id = "disableUser", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.core.users.set_disabled(&actor, id, true).await?))
}

/// Enables a disabled account (admin and up).
#[utoipa::path(post, path = "/v1/admin/users/{id}/enable", operation_id = "enableUser", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`cannot_target_self`")))]
pub async fn enable(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        state.core.users.set_disabled(&actor, id, false).await?,
    ))
}
