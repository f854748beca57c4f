//! Configuration: defaults, then a TOML file (`--config` or `ROOST_CONFIG`),
//! then `ROOST_*` environment variables (`__` between section and key), then
//! command-line flags. Validated once here; the rest of Roost gets typed structs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use roost_api::ApiConfig;
use roost_core::auth::token::{MAX_ACCESS_TTL_SECS, MIN_SECRET_BYTES};
use roost_core::auth::AuthConfig;
use roost_core::chat::ChatConfig;
use roost_core::pagination::PageLimits;
use roost_core::rooms::{RoomCreation, RoomsConfig};
use roost_core::turn::TurnConfig;
use roost_core::CoreConfig;
use roost_signaling::GatewayConfig;
use serde::{Deserialize, Serialize};

/// The shortest TURN secret accepted: it is all that stands between strangers and the relay.
const MIN_TURN_SECRET_BYTES: usize = 16;

/// Everything `roost` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port of the HTTP server.
    pub listen: SocketAddr,
    /// Holds the SQLite database and the generated signing secret.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `roost.db` in `data_dir`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// Signs access tokens; at least 32 bytes. Default: generated into `data_dir/jwt_secret`.
    pub jwt_secret: Option<String>,
    /// `redis://...`: share events and presence with other nodes. Default: this node alone.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel.
    pub redis_prefix: String,
    /// An account registering with this email becomes super_admin.
    pub super_admin_email: Option<String>,
    /// Whether anyone may register.
    pub registration_open: bool,
    /// `everyone` or `admins`.
    pub room_creation: RoomCreation,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Seconds a node drains after SIGTERM before it stops listening: it
    /// still serves, but `/readyz` answers 503 so the load balancer moves
    /// traffic away. 0: stop listening at once. SIGINT does not drain.
    pub shutdown_drain_secs: u64,
    /// TURN servers offered to clients (`turn:host:3478?transport=udp`, `turns:...`).
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`; set it in the environment (`ROOST_TURN_SECRET`).
    /// Without it no TURN server is offered.
    pub turn_secret: Option<String>,
    /// Seconds an issued TURN credential stays valid.
    pub turn_ttl: u64,
    pub log: LogConfig,
    pub auth: AuthSection,
    pub rooms: RoomsSection,
    pub chat: ChatSection,
    pub pagination: PaginationSection,
    pub http: ApiConfig,
    pub gateway: GatewayConfig,
    pub calls: CallsSection,
    pub media: MediaSection,
    pub files: FilesSection,
}

/// Where uploaded files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStorage {
    /// A directory: `files.dir`, by default `files` in `data_dir`.
    Local,
    /// An S3-compatible bucket: `files.s3`.
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesSection {
    pub storage: FileStorage,
    /// The directory of `local` storage; default: `files` in `data_dir`.
    pub dir: Option<PathBuf>,
    /// The bucket of `s3` storage. Set the secret in the environment
    /// (`ROOST_FILES__S3__SECRET_ACCESS_KEY`).
    pub s3: roost_core::files::S3Config,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Bytes one user's files may take in all, thumbnails included; 0: no limit.
    pub quota_bytes_per_user: u64,
    /// Types accepted, as sniffed from the content (exact MIME types).
    pub allowed_types: Vec<String>,
    /// The most files on one message.
    pub max_attachments: usize,
    /// The most pixels (width × height) of an image that is decoded for its thumbnail.
    pub max_image_pixels: u64,
    /// The most memory one image decode may take, in bytes.
    pub max_decode_bytes: u64,
    /// Images decoded at once.
    pub decode_concurrency: usize,
    /// Seconds an uploaded file waits to be attached to a message before it is removed.
    pub unattached_ttl_secs: u64,
}

impl Default for FilesSection {
    fn default() -> Self {
        let d = roost_core::files::FilesConfig::default();
        FilesSection {
            storage: FileStorage::Local,
            dir: None,
            s3: Default::default(),
            max_upload_bytes: d.max_upload_bytes,
            quota_bytes_per_user: d.quota_bytes_per_user,
            allowed_types: d.allowed_types,
            max_attachments: ChatConfig::default().max_attachments,
            max_image_pixels: d.max_image_pixels,
            max_decode_bytes: d.max_decode_bytes,
            decode_concurrency: d.decode_concurrency,
            unattached_ttl_secs: d.unattached_ttl.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsSection {
    /// The largest call kept peer to peer; the next joiner moves it to the
    /// server (SFU). 0 keeps every call on the SFU.
    pub mesh_max: usize,
    /// The most people in one call of a room that sets no `max_call_participants`.
    pub max_participants: u32,
    /// Seconds the SFU keeps forwarding after a call returns to peer to peer.
    pub sfu_grace_secs: u64,
    /// Seconds a participant whose socket dropped without closing keeps its
    /// place in the call, for a new socket to take back (`call.resume`); 0
    /// leaves at once.
    pub reconnect_grace_secs: u64,
}

impl Default for CallsSection {
    fn default() -> Self {
        let d = roost_signaling::calls::CallsConfig::default();
        CallsSection {
            mesh_max: d.mesh_max,
            max_participants: roost_core::calls::CallsConfig::default().default_max_participants,
            sfu_grace_secs: d.sfu_grace.as_secs(),
            reconnect_grace_secs: d.reconnect_grace.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Whether this node forwards media (the SFU). Without it, calls stay peer to peer.
    pub enabled: bool,
    /// The one UDP address every call's media uses.
    pub listen: SocketAddr,
    /// Addresses clients are told to send media to (a public or NAT 1:1
    /// address). Empty: the listening address, or when that is every
    /// interface, the address of the interface with the default route.
    pub public_ips: Vec<std::net::IpAddr>,
    /// Media loops, about one per core; 0: one per core.
    pub loops: usize,
    /// Participants of one call a media loop takes before the call spreads
    /// over other loops, so that a large call (a livestream to hundreds)
    /// uses every core; 0: a call always stays on one loop.
    pub spread_call_after: usize,
    /// The media socket's send and receive buffers, in bytes: room for the
    /// bursts of a large room's fan-out. The kernel caps them at
    /// `net.core.wmem_max` and `net.core.rmem_max`.
    pub socket_buffer_bytes: usize,
    /// Several packets for one client in a batch (a frame's, to a viewer)
    /// go to the kernel as one message it cuts into datagrams (UDP GSO,
    /// Linux): one walk of the network stack for the group. Turned off by
    /// itself where the kernel or route refuses it.
    pub gso: bool,
    /// Packets kept per forwarded video stream to resend when a subscriber
    /// reports a loss (NACK): a power of two from 64 to 32768. 512 is 1.3 s
    /// of a 3.8 Mbit/s stream.
    pub retransmit_history: u16,
    /// Resends of one packet to one subscriber, at most (1 to 10); never
    /// more than one per round trip.
    pub retransmit_attempts: u8,
    /// Resent bytes to one subscriber, at most this percentage of what was
    /// sent to it over the last second, plus a burst of 12,000 bytes (1 to 100).
    pub retransmit_share_percent: u8,
    /// Fit each subscriber's video to the bandwidth its connection's
    /// congestion feedback shows (smaller simulcast layers, tracks held
    /// back on a short link; docs/webrtc.md, "Bandwidth"). Off by default
    /// for now (ADR 0029).
    pub allocate_bandwidth: bool,
}

impl Default for MediaSection {
    fn default() -> Self {
        let d = roost_media::EngineConfig::default();
        MediaSection {
            enabled: true,
            listen: d.listen,
            public_ips: d.advertised_ips,
            loops: d.loops,
            spread_call_after: d.spread_after,
            socket_buffer_bytes: d.socket_buffer,
            gso: d.gso,
            retransmit_history: d.retransmit_history,
            retransmit_attempts: d.retransmit_limits.attempts,
            retransmit_share_percent: d.retransmit_limits.share_percent,
            allocate_bandwidth: d.allocate_bandwidth,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `roost=debug,tower_http=info`.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// At most 900.
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// How long after its use a refresh token may be exchanged once more, for
    /// a client that lost the answer; 0 turns it off. At most 300.
    pub refresh_reuse_grace_secs: u64,
    /// Password hashes computed at once (each takes 19 MiB).
    pub hash_concurrency: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsSection {
    pub max_call_participants_limit: u32,
    pub invite_default_ttl_secs: u64,
    pub invite_max_ttl_secs: u64,
    pub invite_max_uses: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSection {
    /// The longest message body, in characters.
    pub max_body_chars: usize,
    /// How long a typing indicator lasts unless renewed.
    pub typing_ttl_ms: u64,
    /// The largest page of history.
    pub max_history_limit: u32,
    /// Days the room event log keeps events for resume; 0 keeps them forever.
    /// A client resuming from further back gets `resume.reset`.
    pub event_retention_days: u32,
    /// Days messages are kept, with their attachments and files; 0 keeps
    /// them forever. The event log goes with them.
    pub message_retention_days: u32,
}

impl Default for ChatSection {
    fn default() -> Self {
        let d = ChatConfig::default();
        ChatSection {
            max_body_chars: d.max_body_chars,
            typing_ttl_ms: d.typing_ttl.as_millis() as u64,
            max_history_limit: d.max_history_limit,
            event_retention_days: roost_core::sweeps::SweepsConfig::default().event_retention_days,
            message_retention_days: d.message_retention_days,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaginationSection {
    pub default_limit: u32,
    pub max_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./roost-data"),
            database_url: None,
            database_max_connections: 16,
            jwt_secret: None,
            redis_url: None,
            redis_prefix: "roost:".into(),
            super_admin_email: None,
            registration_open: true,
            room_creation: RoomCreation::Everyone,
            shutdown_grace_secs: 30,
            shutdown_drain_secs: 5,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: roost_core::turn::DEFAULT_TTL.as_secs(),
            log: LogConfig::default(),
            auth: AuthSection::default(),
            rooms: RoomsSection::default(),
            chat: ChatSection::default(),
            pagination: PaginationSection::default(),
            http: ApiConfig::default(),
            gateway: GatewayConfig::default(),
            calls: CallsSection::default(),
            media: MediaSection::default(),
            files: FilesSection::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            // The WebRTC stack reports every connection state change at info.
            // The WebRTC stack warns of what is no fault: every browser's DTLS
            // ClientHello carries extensions it does not parse. Its errors stay.
            level: "info,rtc=warn,rtc_dtls::handshake::handshake_message_client_hello=error".into(),
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        let d = AuthConfig::default();
        AuthSection {
            access_token_ttl_secs: d.access_ttl.as_secs(),
            refresh_token_ttl_secs: d.refresh_ttl.as_secs(),
            refresh_reuse_grace_secs: d.refresh_reuse_grace.as_secs(),
            hash_concurrency: d.hash_concurrency,
        }
    }
}

impl Default for RoomsSection {
    fn default() -> Self {
        let d = RoomsConfig::default();
        RoomsSection {
            max_call_participants_limit: d.max_call_participants_limit,
            invite_default_ttl_secs: d.default_invite_ttl.as_secs(),
            invite_max_ttl_secs: d.max_invite_ttl.as_secs(),
            invite_max_uses: d.max_invite_uses,
        }
    }
}

impl Default for PaginationSection {
    fn default() -> Self {
        let d = PageLimits::default();
        PaginationSection {
            default_limit: d.default,
            max_limit: d.max,
        }
    }
}

/// Values given as command-line flags; only those given override.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

impl Config {
    /// Layers the sources, then validates. `file` is `--config`; without it, `ROOST_CONFIG`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ROOST_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &file {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("ROOST_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            key != "config" && !key.starts_with("test_")
        });
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|errors| {
            let all: Vec<String> = errors
                .into_iter()
                .map(|e| {
                    let from_env = e
                        .metadata
                        .as_ref()
                        .is_some_and(|m| m.name.contains("environment"));
                    if let (true, figment::error::Kind::UnknownField(field, expected)) =
                        (from_env, &e.kind)
                    {
                        return not_a_setting(&e.path, field, expected);
                    }
                    let key = e.path.join(".").to_ascii_lowercase();
                    let from = e.metadata.as_ref().map(|m| match &m.source {
                        Some(source) => format!(" (from {source})"),
                        None => format!(" (from {})", m.name),
                    });
                    let key = if key.is_empty() {
                        String::new()
                    } else {
                        format!("{key}: ")
                    };
                    format!("{key}{}{}", e.kind, from.unwrap_or_default())
                })
                .collect();
            anyhow::anyhow!("invalid configuration: {}", all.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "invalid configuration: jwt_secret must be at least {MIN_SECRET_BYTES} bytes"
                );
            }
            if let Some(why) = crate::secret::placeholder(secret) {
                bail!("invalid configuration: jwt_secret {why}, not a secret; generate one (openssl rand -base64 48)");
            }
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
            {
                bail!("invalid configuration: database_url must start with sqlite: or postgres:");
            }
        }
        if self.redis_url.is_some() && self.jwt_secret.is_none() {
            // Every node must check the tokens every other node signs; a
            // generated secret is one node's alone (ADR 0014).
            bail!("invalid configuration: jwt_secret must be set when redis_url is: every node of a deployment signs and checks access tokens with the same secret, and a generated one is known to one node only (set ROOST_JWT_SECRET to the same value of at least {MIN_SECRET_BYTES} bytes on every node)");
        }
        if self.shutdown_drain_secs > 300 {
            bail!("invalid configuration: shutdown_drain_secs must be at most 300");
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix:"))
            {
                bail!(
                    "invalid configuration: redis_url must start with redis://, rediss:// or unix:"
                );
            }
        }
        let ttl = self.auth.access_token_ttl_secs;
        if ttl == 0 || ttl > MAX_ACCESS_TTL_SECS {
            bail!("invalid configuration: auth.access_token_ttl_secs must be between 1 and {MAX_ACCESS_TTL_SECS}");
        }
        if self.auth.refresh_token_ttl_secs < 60 {
            bail!("invalid configuration: auth.refresh_token_ttl_secs must be at least 60");
        }
        if self.auth.refresh_reuse_grace_secs > 300 {
            bail!("invalid configuration: auth.refresh_reuse_grace_secs must be at most 300");
        }
        if self.auth.hash_concurrency == 0 {
            bail!("invalid configuration: auth.hash_concurrency must be at least 1");
        }
        if self.database_max_connections == 0 {
            bail!("invalid configuration: database_max_connections must be at least 1");
        }
        if self.media.loops > 256 {
            bail!("invalid configuration: media.loops must be at most 256 (0: one per core)");
        }
        if !roost_media::EngineConfig::retransmit_history_valid(self.media.retransmit_history) {
            bail!("invalid configuration: media.retransmit_history must be a power of two from 64 to 32768");
        }
        if !roost_media::RetransmitLimits::ATTEMPTS.contains(&self.media.retransmit_attempts) {
            bail!("invalid configuration: media.retransmit_attempts must be from 1 to 10");
        }
        if !roost_media::RetransmitLimits::SHARE_PERCENT
            .contains(&self.media.retransmit_share_percent)
        {
            bail!("invalid configuration: media.retransmit_share_percent must be from 1 to 100");
        }
        let p = &self.pagination;
        if p.max_limit == 0 || p.default_limit == 0 || p.default_limit > p.max_limit {
            bail!("invalid configuration: pagination.default_limit must be between 1 and pagination.max_limit");
        }
        let r = &self.rooms;
        if r.max_call_participants_limit < 2 {
            bail!("invalid configuration: rooms.max_call_participants_limit must be at least 2");
        }
        if r.invite_default_ttl_secs == 0 || r.invite_default_ttl_secs > r.invite_max_ttl_secs {
            bail!("invalid configuration: rooms.invite_default_ttl_secs must be between 1 and rooms.invite_max_ttl_secs");
        }
        if self.chat.max_body_chars == 0
            || self.chat.max_history_limit == 0
            || self.chat.typing_ttl_ms == 0
        {
            bail!("invalid configuration: chat.max_body_chars, chat.max_history_limit and chat.typing_ttl_ms must be positive");
        }
        let g = &self.gateway;
        if g.max_frame_bytes < 1024
            || g.outbound_queue == 0
            || g.requests_per_sec == 0
            || g.heartbeat_interval_ms == 0
        {
            bail!("invalid configuration: gateway.max_frame_bytes must be at least 1024, and gateway.outbound_queue, gateway.requests_per_sec and gateway.heartbeat_interval_ms positive");
        }
        if g.reconcile_interval_ms < 1000 {
            bail!("invalid configuration: gateway.reconcile_interval_ms must be at least 1000");
        }
        if g.idle_timeout_ms <= g.heartbeat_interval_ms {
            bail!("invalid configuration: gateway.idle_timeout_ms must exceed gateway.heartbeat_interval_ms");
        }
        if self.http.max_body_bytes < 1024 {
            bail!("invalid configuration: http.max_body_bytes must be at least 1024");
        }
        for origin in &self.http.cors_allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                bail!("invalid configuration: http.cors_allowed_origins: {origin:?} is not an origin like https://example.org");
            }
        }
        for url in &self.turn_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:") || url.starts_with("stun:"))
            {
                bail!(
                    "invalid configuration: turn_urls: {url:?} is not a turn:, turns: or stun: URL"
                );
            }
        }
        if let Some(secret) = &self.turn_secret {
            if secret.len() < MIN_TURN_SECRET_BYTES {
                bail!("invalid configuration: turn_secret must be at least {MIN_TURN_SECRET_BYTES} bytes");
            }
            if let Some(why) = crate::secret::placeholder(secret) {
                bail!("invalid configuration: turn_secret {why}, not a secret; generate one (openssl rand -base64 32) and give coturn the same");
            }
            if self.turn_urls.is_empty() {
                bail!("invalid configuration: turn_secret is set but turn_urls is empty");
            }
        }
        if self.calls.max_participants < 2
            || self.calls.max_participants > self.rooms.max_call_participants_limit
        {
            bail!("invalid configuration: calls.max_participants must be between 2 and rooms.max_call_participants_limit");
        }
        if self.turn_ttl < 60 {
            bail!("invalid configuration: turn_ttl must be at least 60 seconds");
        }
        if let Some(email) = &self.super_admin_email {
            roost_core::users::normalize_email(email).map_err(|_| {
                anyhow::anyhow!("invalid configuration: super_admin_email is not an email address")
            })?;
        }
        let f = &self.files;
        if f.max_upload_bytes == 0 || f.decode_concurrency == 0 || f.max_image_pixels == 0 {
            bail!("invalid configuration: files.max_upload_bytes, files.decode_concurrency and files.max_image_pixels must be positive");
        }
        if f.max_attachments == 0 || f.max_attachments > 100 {
            bail!("invalid configuration: files.max_attachments must be between 1 and 100");
        }
        if f.allowed_types.is_empty() {
            bail!("invalid configuration: files.allowed_types must name at least one type");
        }
        for t in &f.allowed_types {
            let ok = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !t.contains(['*', ';', ' '])
            });
            if !ok {
                bail!("invalid configuration: files.allowed_types: {t:?} is not an exact MIME type like image/png");
            }
        }
        if f.storage == FileStorage::S3 {
            if f.s3.bucket.is_empty() || f.s3.region.is_empty() {
                bail!("invalid configuration: files.s3.bucket and files.s3.region are needed for s3 storage");
            }
            if f.s3
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
                && !f.s3.allow_http
            {
                bail!("invalid configuration: files.s3.endpoint is http:// but files.s3.allow_http is false");
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow::anyhow!("invalid configuration: log.level: {e}"))?;
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("roost.db").display()
            ),
        }
    }

    /// The core's part of the configuration.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            auth: AuthConfig {
                access_ttl: Duration::from_secs(self.auth.access_token_ttl_secs),
                refresh_ttl: Duration::from_secs(self.auth.refresh_token_ttl_secs),
                refresh_reuse_grace: Duration::from_secs(self.auth.refresh_reuse_grace_secs),
                super_admin_email: self.super_admin_email.clone(),
                registration_open: self.registration_open,
                hash_concurrency: self.auth.hash_concurrency,
            },
            rooms: RoomsConfig {
                creation: self.room_creation,
                max_call_participants_limit: self.rooms.max_call_participants_limit,
                default_invite_ttl: Duration::from_secs(self.rooms.invite_default_ttl_secs),
                max_invite_ttl: Duration::from_secs(self.rooms.invite_max_ttl_secs),
                max_invite_uses: self.rooms.invite_max_uses,
            },
            chat: ChatConfig {
                max_body_chars: self.chat.max_body_chars,
                typing_ttl: Duration::from_millis(self.chat.typing_ttl_ms),
                max_history_limit: self.chat.max_history_limit,
                max_attachments: self.files.max_attachments,
                message_retention_days: self.chat.message_retention_days,
            },
            files: roost_core::files::FilesConfig {
                storage: match self.files.storage {
                    FileStorage::Local => roost_core::files::StorageConfig::Local {
                        root: self
                            .files
                            .dir
                            .clone()
                            .unwrap_or_else(|| self.data_dir.join("files")),
                    },
                    FileStorage::S3 => roost_core::files::StorageConfig::S3(self.files.s3.clone()),
                },
                max_upload_bytes: self.files.max_upload_bytes,
                quota_bytes_per_user: self.files.quota_bytes_per_user,
                allowed_types: self.files.allowed_types.clone(),
                max_image_pixels: self.files.max_image_pixels,
                max_decode_bytes: self.files.max_decode_bytes,
                decode_concurrency: self.files.decode_concurrency,
                unattached_ttl: Duration::from_secs(self.files.unattached_ttl_secs),
            },
            pages: PageLimits {
                default: self.pagination.default_limit,
                max: self.pagination.max_limit,
            },
            calls: roost_core::calls::CallsConfig {
                default_max_participants: self.calls.max_participants,
            },
            sweeps: roost_core::sweeps::SweepsConfig {
                event_retention_days: self.chat.event_retention_days,
            },
            turn: TurnConfig {
                urls: self.turn_urls.clone(),
                secret: self.turn_secret.as_ref().map(|s| s.as_bytes().to_vec()),
                ttl: Duration::from_secs(self.turn_ttl),
            },
        }
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if shown.jwt_secret.is_some() {
            shown.jwt_secret = Some("<redacted>".into());
        }
        if shown.turn_secret.is_some() {
            shown.turn_secret = Some("<redacted>".into());
        }
        if shown.files.s3.secret_access_key.is_some() {
            shown.files.s3.secret_access_key = Some("<redacted>".into());
        }
        shown.database_url = Some(redact_url(&self.database_url()));
        shown.redis_url = self.redis_url.as_deref().map(redact_url);
        toml::to_string_pretty(&shown).context("printing the configuration")
    }
}

/// The error for a `ROOST_*` variable that names no setting. Every such
/// variable is refused, because a misspelt one would otherwise be ignored
/// silently; the message says which variable it is, that it is not a
/// setting (a wrapper's own `ROOST_BIN`, say), and what was perhaps meant.
fn not_a_setting(path: &[String], field: &str, expected: &[&str]) -> String {
    // The path may end with the unknown key itself; the section is what precedes it.
    let path = match path.split_last() {
        Some((last, section)) if last.eq_ignore_ascii_case(field) => section,
        _ => path,
    };
    let var = |name: &str| {
        let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
        parts.push(name);
        format!("ROOST_{}", parts.join("__").to_ascii_uppercase())
    };
    let closest = expected
        .iter()
        .map(|name| (edit_distance(&field.to_ascii_lowercase(), name), *name))
        .min()
        .filter(|(d, name)| *d <= (name.len() / 3).max(2));
    let hint = match closest {
        Some((_, name)) => format!("; did you mean {}?", var(name)),
        None => String::new(),
    };
    let section = if path.is_empty() {
        String::new()
    } else {
        format!(" of {}", path.join("."))
    };
    format!(
        "{} is not a Roost setting; unset it or rename it (settings{section}: {}){hint}",
        var(field),
        expected.join(", ")
    )
}

/// Levenshtein distance: the fewest one-character edits from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Hides the password of a `scheme://user:password@host` URL.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unknown-field error the layers give for `toml`, as the
    /// environment's `ROOST_*` variables reach the same check.
    fn unknown_field(toml: &str) -> String {
        let errors = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract::<Config>()
            .expect_err("an unknown key is refused");
        let e = errors.into_iter().next().expect("one error");
        match &e.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                not_a_setting(&e.path, field, expected)
            }
            other => panic!("not an unknown field: {other}"),
        }
    }

    #[test]
    fn a_variable_that_names_no_setting_is_called_so_with_the_settings() {
        let message = unknown_field("bin = \"/usr/local/bin/roost\"");
        assert!(
            message.starts_with("ROOST_BIN is not a Roost setting; unset it or rename it"),
            "{message}"
        );
        assert!(
            message.contains("jwt_secret"),
            "the settings are listed: {message}"
        );
        assert!(
            !message.contains("did you mean"),
            "nothing is close to BIN: {message}"
        );
    }

    #[test]
    fn a_misspelt_variable_gets_the_setting_it_was_meant_to_be() {
        let message = unknown_field("jwt_secert = \"x\"");
        assert!(
            message.ends_with("did you mean ROOST_JWT_SECRET?"),
            "{message}"
        );
        let message = unknown_field("[http]\ncors_allowed_origin = [\"https://a.example\"]");
        assert!(
            message.starts_with("ROOST_HTTP__CORS_ALLOWED_ORIGIN is not a Roost setting"),
            "{message}"
        );
        assert!(
            message.ends_with("did you mean ROOST_HTTP__CORS_ALLOWED_ORIGINS?"),
            "{message}"
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("jwt_secert", "jwt_secret"), 2);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_drain_window_is_bounded() {
        let long = Config {
            shutdown_drain_secs: 301,
            ..Config::default()
        };
        let err = long
            .validate()
            .expect_err("a drain of over 5 minutes is refused");
        assert!(
            err.to_string()
                .contains("shutdown_drain_secs must be at most 300"),
            "{err}"
        );
        let longest = Config {
            shutdown_drain_secs: 300,
            ..Config::default()
        };
        longest.validate().expect("5 minutes is allowed");
    }

    #[test]
    fn several_nodes_need_one_configured_jwt_secret() {
        let several = Config {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Config::default()
        };
        let err = several
            .validate()
            .expect_err("a generated secret is one node's alone");
        assert!(
            err.to_string()
                .contains("jwt_secret must be set when redis_url is"),
            "{err}"
        );
        let shared = Config {
            jwt_secret: Some("0123456789abcdef0123456789abcdef".into()),
            ..several
        };
        shared.validate().expect("one secret for every node");
    }

    #[test]
    fn placeholder_secrets_are_refused_naming_the_setting() {
        for jwt in ["changemechangemechangemechangeme", &"a".repeat(32)] {
            let config = Config {
                jwt_secret: Some(jwt.into()),
                ..Config::default()
            };
            let err = config.validate().expect_err(jwt).to_string();
            assert!(err.contains("jwt_secret"), "{err}");
        }
        for turn in ["changemechangeme", "your-turn-secret-here", &"7".repeat(16)] {
            let config = Config {
                turn_secret: Some(turn.into()),
                turn_urls: vec!["turn:turn.roost.test:3478".into()],
                ..Config::default()
            };
            let err = config.validate().expect_err(turn).to_string();
            assert!(err.contains("turn_secret"), "{err}");
            assert!(err.contains("not a secret"), "{err}");
        }
    }

    #[test]
    fn the_default_log_level_keeps_the_webrtc_stacks_harmless_warnings_out() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                Config::default().log.level,
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // What every DTLS handshake with a browser logs.
            tracing::warn!(
                target: "rtc_dtls::handshake::handshake_message_client_hello",
                "Unsupported Extension Type 255 1"
            );
            tracing::debug!(target: "rtc_ice::agent", "checks");
            // What an operator needs to see.
            tracing::error!(
                target: "rtc_dtls::handshake::handshake_message_client_hello",
                "hello refused"
            );
            tracing::warn!(target: "rtc_dtls::handshaker", "handshake failed");
            tracing::warn!(target: "rtc::peer_connection::handler", "handler failed");
            tracing::info!(target: "roost_media::engine", "media engine ready");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!log.contains("Unsupported Extension Type"), "{log}");
        assert!(!log.contains("checks"), "{log}");
        for kept in [
            "hello refused",
            "handshake failed",
            "handler failed",
            "media engine ready",
        ] {
            assert!(log.contains(kept), "{kept} is missing from:\n{log}");
        }
    }

    #[test]
    fn retransmission_limits_out_of_range_are_refused_naming_the_setting() {
        for (attempts, share, key) in [
            (0, 30, "media.retransmit_attempts"),
            (11, 30, "media.retransmit_attempts"),
            (3, 0, "media.retransmit_share_percent"),
            (3, 101, "media.retransmit_share_percent"),
        ] {
            let mut config = Config::default();
            config.media.retransmit_attempts = attempts;
            config.media.retransmit_share_percent = share;
            let err = config.validate().expect_err("out of range");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://roost:hunter2@db/roost"),
            "postgres://roost:<redacted>@db/roost"
        );
        assert_eq!(redact_url("postgres://db/roost"), "postgres://db/roost");
        assert_eq!(
            redact_url("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
    }
}
