//! roost-core: Roost's domain model, store and services.
//!
//! # Layout
//! - [`model`]: the types services take and return.
//! - [`store`]: the one store, whose queries run on SQLite and PostgreSQL.
//! - [`auth`]: accounts, passwords, sessions and tokens.
//! - [`users`]: profiles and account administration.
//! - [`rooms`]: rooms, members, invites, direct messages.
//! - [`pagination`]: cursor pages.
//! - [`text`]: what no text field may hold, and how names are cleaned.
//! - [`search`]: full-text search of messages.
//! - [`chat`]: messages, history, read markers, typing and retention.
//! - [`files`]: uploads, downloads, thumbnails and the collection of orphaned files.
//! - [`calls`]: call records, limits and `call.state`.
//! - [`turn`]: time-limited TURN credentials for coturn.
//!
//! No HTTP, no WebRTC, no reading of the environment: configuration comes in
//! as typed structs, and every IO edge but the database is elsewhere.

pub mod auth;
pub mod calls;
pub mod chat;
pub mod cluster;
pub mod error;
pub mod events;
pub mod files;
pub mod model;
pub mod pagination;
pub mod presence;
pub mod rooms;
pub mod search;
pub mod store;
pub mod text;
pub mod turn;
pub mod users;

pub use error::{CoreError, Result};

use auth::{Auth, AuthConfig};
use calls::{Calls, CallsConfig};
use chat::{Chat, ChatConfig, Publisher};
use events::{Bus, EventLog};
use files::{Files, FilesConfig};
use pagination::PageLimits;
use rooms::{Rooms, RoomsConfig};
use store::Store;
use turn::{Turn, TurnConfig};
use users::Users;

/// Everything the core needs at start-up.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub chat: ChatConfig,
    pub pages: PageLimits,
    pub turn: TurnConfig,
    pub calls: CallsConfig,
    pub files: FilesConfig,
}

/// The services, wired to one store. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub store: Store,
    pub auth: Auth,
    pub users: Users,
    pub rooms: Rooms,
    pub chat: Chat,
    pub search: search::Search,
    pub files: Files,
    pub calls: Calls,
    pub events: EventLog,
    pub bus: Bus,
    pub presence: presence::Presence,
    pub turn: Turn,
    /// Redis, when this node is one of several.
    pub cluster: Option<cluster::Cluster>,
    pub pages: PageLimits,
}

impl Core {
    /// Wires the services on an in-process bus; `jwt_secret` signs access tokens (at least 32 bytes).
    pub async fn new(store: Store, jwt_secret: &[u8], config: CoreConfig) -> Result<Core> {
        Core::with_bus(store, Bus::in_process(8192), jwt_secret, config).await
    }

    /// Wires the services for one node of several, sharing events and presence through Redis.
    pub async fn clustered(
        store: Store,
        cluster: &cluster::Cluster,
        jwt_secret: &[u8],
        config: CoreConfig,
    ) -> Result<Core> {
        let bus = cluster.attach(Bus::in_process(8192));
        let mut core = Core::with_bus(store.clone(), bus.clone(), jwt_secret, config).await?;
        core.presence = presence::Presence::redis(cluster, store, bus, presence::DEFAULT_TTL);
        core.cluster = Some(cluster.clone());
        Ok(core)
    }

    /// Wires the services on the given bus.
    pub async fn with_bus(
        store: Store,
        bus: Bus,
        jwt_secret: &[u8],
        config: CoreConfig,
    ) -> Result<Core> {
        let events = EventLog::new(store.clone());
        let publish = Publisher {
            bus: bus.clone(),
            log: events.clone(),
        };
        Ok(Core {
            auth: Auth::new(store.clone(), jwt_secret, config.auth, bus.clone()).await?,
            users: Users::new(store.clone(), bus.clone()),
            calls: Calls::new(
                store.clone(),
                publish.clone(),
                config.calls,
                config.rooms.max_call_participants_limit,
            ),
            rooms: Rooms::new(store.clone(), publish.clone(), config.rooms),
            search: search::Search::new(store.clone()),
            chat: Chat::new(store.clone(), publish, config.chat),
            files: Files::new(store.clone(), config.files)?,
            events,
            presence: presence::Presence::local(store.clone(), bus.clone(), presence::DEFAULT_TTL),
            turn: Turn::new(config.turn),
            bus,
            cluster: None,
            pages: config.pages,
            store,
        })
    }
}
