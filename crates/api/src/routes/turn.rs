//! `GET /v1/turn/credentials`: ICE servers with time-limited TURN credentials.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use roost_core::turn::IceConfig;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/turn/credentials", get(credentials))
}

/// The ICE servers to give `RTCPeerConnection`: the configured TURN servers
/// with a credential for the caller (coturn's `use-auth-secret` form), or an
/// empty list when the server has no TURN secret.
#[utoipa::path(get, path = "/v1/turn/credentials", tag = "calls", security(("bearer" = [])),
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
