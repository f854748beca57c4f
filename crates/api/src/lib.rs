//! roost-api: the REST API over `roost-core`.
//!
//! # Layout
//! - [`error`]: the one error shape and the status for each core error.
//! - [`extract`]: JSON, query and path extractors with that shape; `AuthUser`.
//! - [`ratelimit`]: login and registration limits.
//! - [`routes`]: one module per resource, each with its `router()`: the
//!   routes and their OpenAPI operations, registered once.
//! - [`openapi`]: the rest of the OpenAPI document, and where it is served.
//!
//! Handlers extract and validate input, call one core service and shape its
//! answer; authorisation and persistence live in the core.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod ratelimit;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use roost_core::Core;
use serde::{Deserialize, Serialize};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa_axum::router::OpenApiRouter;

use error::ApiError;
use ratelimit::{Limiters, RateLimits};

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Browser origins allowed to call the API cross-origin (exact match).
    pub cors_allowed_origins: Vec<String>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request still running after this long gets 408.
    pub request_timeout_secs: u64,
    /// The same for file uploads and for the start of a download, which
    /// carry much more than other requests.
    pub transfer_timeout_secs: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy_headers: bool,
    pub rate_limits: RateLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
            transfer_timeout_secs: 600,
            trust_proxy_headers: false,
            rate_limits: RateLimits::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub config: Arc<ApiConfig>,
    pub limiters: Arc<Limiters>,
    /// Set when the node starts draining: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(core: Core, config: ApiConfig) -> Self {
        let limiters = Arc::new(Limiters::new(&config.rate_limits));
        AppState {
            core,
            config: Arc::new(config),
            limiters,
            draining: Default::default(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole REST API with its middleware.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The REST API with more routes (the WebSocket gateway) under the same
/// middleware: request ids, tracing, panics caught.
pub fn router_with(state: AppState, extra: Router) -> Router {
    let config = state.config.clone();
    let short = Duration::from_secs(config.request_timeout_secs);
    // Each module registers its routes with their documentation, so the
    // document below lists exactly the routes these routers serve.
    let (requests, requests_doc) = OpenApiRouter::default()
        .merge(routes::health::router())
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::admin::router())
        .merge(routes::rooms::router())
        .merge(routes::messages::router())
        .merge(routes::search::router())
        .merge(routes::presence::router())
        .merge(routes::calls::router())
        .split_for_parts();
    let (transfers, transfers_doc) = routes::files::router().split_for_parts();
    let doc = openapi::document([requests_doc, transfers_doc]);
    let requests = requests
        .merge(openapi::router(doc))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    // Files stream their bodies and enforce their own limits, over a longer time.
    let transfers = transfers.layer(DefaultBodyLimit::disable());
    let api = with_timeout(requests, short)
        .merge(with_timeout(
            transfers,
            Duration::from_secs(config.transfer_timeout_secs),
        ))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            )
        })
        .with_state(state)
        .merge(with_timeout(extra, short));

    api.layer(cors(&config.cors_allowed_origins))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on the server")
                .into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
                    // The path only: query strings may carry tokens.
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = id.unwrap_or(""))
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Answers 408 when the routes of `router` take longer than `limit` to respond.
fn with_timeout<S: Clone + Send + Sync + 'static>(router: Router<S>, limit: Duration) -> Router<S> {
    router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        "the request took too long",
                    )
                },
            ))
            .layer(tower::timeout::TimeoutLayer::new(limit)),
    )
}

fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
            REQUEST_ID,
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            header::CONTENT_RANGE,
            header::CONTENT_DISPOSITION,
            header::ETAG,
        ])
        .max_age(Duration::from_secs(600))
}
