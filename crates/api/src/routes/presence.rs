//! `GET /v1/presence`: who is online among people one shares a room with.

use std::collections::HashMap;

use axum::extract::State;
use roost_core::CoreError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Query};
use crate::AppState;

/// The most users one request may ask about.
pub const MAX_USERS: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(presence))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Comma-separated user ids, 1 to 100.
    #[param(min_length = 1)]
    pub user_ids: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceAnswer {
    /// `online`, `away` or `offline` per user id; users who share no room with
    /// the caller are left out.
    #[schema(value_type = HashMap<String, String>)]
    pub presence: HashMap<Uuid, roost_core::events::PresenceStatus>,
}

/// Presence of users who share a room with the caller (and the caller's own).
#[utoipa::path(get, path = "/v1/presence", operation_id = "getPresence", tag = "presence", security(("bearer" = [])), params(PresenceQuery),
    responses((status = 200, body = PresenceAnswer), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn presence(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<PresenceQuery>,
) -> ApiResult<Json<PresenceAnswer>> {
    let ids = q
        .user_ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Uuid::parse_str(s)
                .map_err(|_| CoreError::validation("user_ids", format!("{s:?} is not a user id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() || ids.len() > MAX_USERS {
        return Err(
            CoreError::validation("user_ids", format!("give 1 to {MAX_USERS} user ids")).into(),
        );
    }
    let presence = state.core.presence.visible_to(actor.user_id, &ids).await?;
    Ok(Json(PresenceAnswer { presence }))
}
