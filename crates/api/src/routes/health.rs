//! `/healthz` (the process is up) and `/readyz` (the database answers and is migrated).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (healthz); `ready`, or `degraded` when Redis is out of reach and
    /// this node serves only its own clients (readyz).
    pub status: &'static str,
    /// `ok` or `unavailable`; absent when this node runs alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<&'static str>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Answers while the process runs.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        redis: None,
    })
}

/// Answers 200 when the database is reachable and every migration is applied,
/// else 503. With Redis configured and out of reach the answer stays 200 (the
/// node still serves its own clients) with `status: degraded`. A node that is
/// draining after SIGTERM answers 503 `draining`, so a load balancer sends it
/// nothing new. Answers within about a second whatever the database does.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is shutting down; send requests to another",
        ));
    }
    match state.core.store.ready().await {
        Ok(true) => Ok(Json(match &state.core.cluster {
            None => Health {
                status: "ready",
                redis: None,
            },
            Some(cluster) if cluster.healthy().await => Health {
                status: "ready",
                redis: Some("ok"),
            },
            Some(_) => Health {
                status: "degraded",
                redis: Some("unavailable"),
            },
        })),
        Ok(false) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "migrations are pending",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database does not answer",
            ))
        }
    }
}
