//! roost-signaling: the WebSocket gateway at `GET /v1/ws`.
//!
//! # Layout
//! - [`protocol`]: the frames, their parsing, close codes and the JSON Schema;
//!   requests as dispatched, with those of calls nested in `CallRequest`.
//! - [`hub`]: routes bus events to this node's connections.
//! - [`session`]: one connection: requests, acks, resume, heartbeats, limits.
//! - [`calls`]: who is in each call on this node, topology, mesh relaying,
//!   and the media engine when a call goes through the server.
//! - `nodes`: calls held by another node: requests carried there, frames
//!   carried back, other nodes' messages read, dead nodes swept (ADR 0007).
//!   It sees this node's calls through a trait the call hub implements, so
//!   the dependency runs one way, from `calls` to `nodes`.
//! - this file: configuration, the upgrade (authentication, origin check) and the router.
//!
//! Every request goes to the same `core` services REST uses; every change
//! comes back as a bus event, routed by the hub.

pub mod calls;
pub mod hub;
mod nodes;
pub mod protocol;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use roost_core::Core;
use serde::{Deserialize, Serialize};

use calls::{CallHub, CallsConfig};
use hub::Hub;

/// Limits and timings of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The largest inbound frame; a larger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued for a client that reads too slowly before it is disconnected (4008).
    pub outbound_queue: usize,
    /// Requests per second per connection, sustained.
    pub requests_per_sec: u32,
    /// Requests a connection may burst above the sustained rate.
    pub request_burst: u32,
    /// Requests over the limit within `abuse_window_secs` that close the connection (1008).
    pub abuse_threshold: u32,
    pub abuse_window_secs: u64,
    /// How often clients send a frame and the server pings.
    pub heartbeat_interval_ms: u64,
    /// A connection silent this long is closed (4009).
    pub idle_timeout_ms: u64,
    /// Browser origins allowed besides the server's own.
    pub allowed_origins: Vec<String>,
    /// How often each connection checks its session and rooms against the
    /// store, whatever the bus delivered: the bound on how late an event lost
    /// on the way (or a revocation) can be noticed.
    pub reconcile_interval_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_frame_bytes: 64 * 1024,
            outbound_queue: 512,
            requests_per_sec: 20,
            request_burst: 40,
            abuse_threshold: 100,
            abuse_window_secs: 10,
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 30_000,
            allowed_origins: Vec::new(),
            reconcile_interval_ms: 30_000,
        }
    }
}

/// The gateway of one node.
#[derive(Clone)]
pub struct Gateway {
    pub core: Core,
    pub hub: Arc<Hub>,
    pub calls: Arc<CallHub>,
    pub config: Arc<GatewayConfig>,
}

impl Gateway {
    /// Creates the gateway, without a media engine (calls stay peer to
    /// peer), and starts its hub on the core's bus.
    pub fn start(core: Core, config: GatewayConfig) -> Gateway {
        Gateway::with_media(core, config, CallsConfig::default(), None)
    }

    /// Creates the gateway with the node's media engine and its events.
    pub fn with_media(
        core: Core,
        config: GatewayConfig,
        calls: CallsConfig,
        media: Option<(
            roost_media::Engine,
            tokio::sync::mpsc::UnboundedReceiver<roost_media::EngineEvent>,
        )>,
    ) -> Gateway {
        let hub = Hub::new();
        hub.spawn(&core.bus);
        let calls = CallHub::start(core.clone(), hub.clone(), media, calls);
        Gateway {
            core,
            hub,
            calls,
            config: Arc::new(config),
        }
    }

    /// Tells every client to reconnect elsewhere and closes their sockets (1012).
    pub fn shut_down(&self) {
        self.hub
            .close_all(protocol::close::SERVICE_RESTART, "server shutting down");
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_interval_ms)
    }
}

/// `GET /v1/ws`.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .with_state(gateway)
}

#[derive(Deserialize)]
struct WsQuery {
    access_token: Option<String>,
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Whether a browser `Origin` may open a socket: the server's own, or one allowed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true; // not a browser
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host)
}

async fn upgrade(
    State(gw): State<Gateway>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "not_websocket", &e.body_text()),
    };
    if !origin_allowed(&headers, &gw.config.allowed_origins) {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open a socket here",
        );
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let token = offered
        .iter()
        .find_map(|p| p.strip_prefix(protocol::BEARER_PREFIX).map(str::to_owned))
        .or(query.access_token);
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the access token as a subprotocol or query",
        );
    };
    let actor = match gw.core.auth.authenticate(&token).await {
        Ok(actor) => actor,
        Err(e) if matches!(e.code(), "internal" | "unavailable") => {
            tracing::error!(error = %e, "authenticating a socket failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again");
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()),
    };
    // Small buffers that grow with use: most connections are idle most of the time,
    // and the defaults (128 KiB each way) would make every one of them cost a quarter MiB.
    let ws = ws
        .max_message_size(gw.config.max_frame_bytes)
        .max_frame_size(gw.config.max_frame_bytes)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    // A browser that offered subprotocols needs one chosen; the token entry never is.
    let ws = if offered.iter().any(|p| p == protocol::SUBPROTOCOL) {
        ws.protocols([protocol::SUBPROTOCOL])
    } else {
        ws
    };
    ws.on_upgrade(move |socket| session::run(gw, actor, socket))
}
