//! Calls over REST: `GET /v1/turn/credentials` (ICE servers with
//! time-limited TURN credentials) and `GET /v1/rooms/{id}/calls` (the record
//! of a room's calls). Joining and leaving calls is on the WebSocket.

use axum::extract::State;
use roost_core::calls::CallRecord;
use roost_core::model::Page;
use roost_core::turn::IceConfig;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::PageQuery;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(credentials))
        .routes(routes!(calls))
}

/// A room's calls, newest first: when each started and ended, its peak
/// size, and who joined and left when (members only).
#[utoipa::path(get, path = "/v1/rooms/{id}/calls", operation_id = "listCalls", tag = "calls", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<CallRecord>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn calls(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<CallRecord>>> {
    Ok(Json(
        state
            .core
            .calls
            .list(&actor, id, &q.request(&state)?)
            .await?,
    ))
}

/// The ICE servers to give `RTCPeerConnection`: the configured TURN servers
/// with a credential for the caller (coturn's `use-auth-secret` form), or an
/// empty list when the server has no TURN secret.
#[utoipa::path(get, path = "/v1/turn/credentials", operation_id = "getTurnCredentials", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = IceConfig), (status = 401, body = ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
) -> ApiResult<Json<IceConfig>> {
    Ok(Json(
        state
            .core
            .turn
            .ice_config(actor.user_id, chrono::Utc::now()),
    ))
}
