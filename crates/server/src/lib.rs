//! The `roost` binary as a library: configuration, commands, wiring and
//! graceful shutdown. `main.rs` only parses arguments and calls in here, so
//! tests can start a server on `127.0.0.1:0`.
//!
//! # Layout
//! - [`cli`]: the commands (`serve`, `migrate`, `config check`, `user create`).
//! - [`config`]: layered configuration and its validation.
//! - [`secret`]: the generated signing secret.
//! - [`web`]: the built-in web client, embedded and served at `/`.
//! - [`run`]: opening the store and serving until a shutdown signal.

pub mod cli;
pub mod config;
pub mod secret;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use roost_core::store::{Store, StoreOptions};
use roost_core::Core;
use tokio::net::TcpListener;

use config::{Config, LogFormat};

/// Libraries that write what crosses the wire into their most verbose log
/// lines: the WebSocket library logs every frame it reads and writes at
/// `trace`, access tokens (`auth.refresh`) and message bodies included, and
/// the HTTP/2 library logs frames, and axum logs each rejected request with
/// its error, which quotes what the client sent. They are held to `debug`
/// whatever `log.level` asks for, so no level puts a token, a password or a
/// message in the log. (sqlx logs statements, whose values are bound, never
/// written.)
const WIRE_LOGGERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "h2",
    "hyper",
    "hyper_util",
    "axum::rejection",
];

/// The cap on [`WIRE_LOGGERS`], applied on top of `log.level`.
fn wire_cap() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    WIRE_LOGGERS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |cap, target| cap.with_target(*target, LevelFilter::DEBUG),
    )
}

/// Sets up logging to stderr, as configured.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().finish().with(wire_cap()).try_init(),
        LogFormat::Pretty => builder.finish().with(wire_cap()).try_init(),
    };
}

/// Creates the data directory if needed, connects and migrates.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
    }
    let store = Store::connect(&StoreOptions {
        url: config.database_url(),
        max_connections: config.database_max_connections,
        acquire_timeout: Duration::from_secs(10),
    })
    .await
    .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Builds the services over an open store.
pub async fn build_core(config: &Config, store: Store) -> anyhow::Result<Core> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let secret = secret::load_or_create(config.jwt_secret.as_deref(), &config.data_dir)?;
    match &config.redis_url {
        None => Ok(Core::new(store, &secret, config.core()).await?),
        Some(url) => {
            let cluster =
                roost_core::cluster::Cluster::connect(&roost_core::cluster::ClusterConfig {
                    url: url.clone(),
                    prefix: config.redis_prefix.clone(),
                })
                .await
                .context("connecting to Redis")?;
            tracing::info!(node = %cluster.node_id(), "sharing events and presence through Redis");
            Ok(Core::clustered(store, &cluster, &secret, config.core()).await?)
        }
    }
}

/// How the node was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM, as process managers and orchestrators send: drain first.
    /// `/readyz` answers 503 for `shutdown_drain_secs` while the node still
    /// serves, so a load balancer stops sending to it before it stops listening.
    Drain,
    /// SIGINT (Ctrl-C at a terminal): no load balancer to wait for; stop listening now.
    Now,
}

/// Serves the API on `listener` until `shutdown` completes, drains if asked
/// to, then lets in-flight requests finish for up to `shutdown_grace_secs`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = Shutdown> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let core = build_core(&config, store.clone()).await?;
    let mut gateway_config = config.gateway.clone();
    gateway_config
        .allowed_origins
        .extend(config.http.cors_allowed_origins.iter().cloned());
    let media = start_media(&config).await?;
    if core.cluster.is_none() {
        // Nobody is in the calls a previous run of this node left open.
        match core.calls.end_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, "ended calls left open by the previous run"),
            Err(e) => tracing::warn!(error = %e, "ending abandoned calls failed"),
        }
    }
    let gateway = roost_signaling::Gateway::with_media(
        core.clone(),
        gateway_config,
        roost_signaling::calls::CallsConfig {
            mesh_max: config.calls.mesh_max,
            sfu_grace: Duration::from_secs(config.calls.sfu_grace_secs),
            reconnect_grace: Duration::from_secs(config.calls.reconnect_grace_secs),
        },
        media,
    );
    let hub = gateway.hub.clone();
    let sweeps = core.start_sweeps();
    let state = roost_api::AppState::new(core, config.http.clone());
    let draining = state.draining.clone();
    let app = roost_api::router_with(
        state,
        roost_signaling::router(gateway.clone()).merge(web::router()),
    );
    let addr = listener.local_addr()?;
    // The one line on stdout: scripts and tests read the address from it.
    println!("Roost is listening on http://{addr}");
    tracing::info!(%addr, database = ?store.backend(), "serving");

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let window = Duration::from_secs(config.shutdown_drain_secs);
    // Small frames (chat events, acks) go out at once rather than waiting on Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let how = shutdown.await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if how == Shutdown::Drain && !window.is_zero() {
            tracing::info!(
                ?window,
                "draining: /readyz answers 503, requests are still served until the window ends"
            );
            tokio::time::sleep(window).await;
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        gateway.shut_down();
        let _ = stopping_tx.send(());
    });
    let mut serving = tokio::spawn(async move { server.await });
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tokio::select! {
        res = &mut serving => res??,
        _ = stopping_rx => {
            match tokio::time::timeout(grace, &mut serving).await {
                Ok(res) => res??,
                Err(_) => tracing::warn!(?grace, "requests still running after the grace period; exiting anyway"),
            }
        }
    }
    // Sockets were told to close (1012); give them a moment to say so to their clients.
    for _ in 0..30 {
        if hub.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sweeps.stop().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the media engine, unless disabled.
async fn start_media(
    config: &Config,
) -> anyhow::Result<
    Option<(
        roost_media::Engine,
        tokio::sync::mpsc::UnboundedReceiver<roost_media::EngineEvent>,
    )>,
> {
    if !config.media.enabled {
        tracing::info!("media forwarding disabled: calls stay peer to peer");
        return Ok(None);
    }
    let mut advertised = config.media.public_ips.clone();
    if advertised.is_empty() {
        let ip = config.media.listen.ip();
        advertised.push(if ip.is_unspecified() {
            default_route_ip().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
        } else {
            ip
        });
    }
    let (engine, events) = roost_media::Engine::start(roost_media::EngineConfig {
        listen: config.media.listen,
        advertised_ips: advertised.clone(),
        loops: config.media.loops,
        spread_after: config.media.spread_call_after,
        socket_buffer: config.media.socket_buffer_bytes,
        gso: config.media.gso,
        retransmit_history: config.media.retransmit_history,
        retransmit_limits: roost_media::RetransmitLimits {
            attempts: config.media.retransmit_attempts,
            share_percent: config.media.retransmit_share_percent,
        },
        allocate_bandwidth: config.media.allocate_bandwidth,
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the media engine on UDP {}", config.media.listen))?;
    tracing::info!(listen = %engine.local_addr(), advertised = ?advertised, "media engine ready");
    Ok(Some((engine, events)))
}

/// The address of the interface with the default route: what a client on
/// the network reaches this host by. Connecting a UDP socket sends nothing.
fn default_route_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// A future that completes on SIGINT or SIGTERM, saying which. The handlers
/// are installed now, before the server announces itself, so no early signal
/// is missed.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = Shutdown> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => Shutdown::Now,
            _ = terminate.recv() => Shutdown::Drain,
        }
    })
}
