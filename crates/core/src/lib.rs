//! roost-core: Roost's domain model, store and services.
//!
//! # Layout
//! Read top to bottom: each part uses only those above it, never one below
//! (`docs/ARCHITECTURE.md` states the order; a test holds the code to it).
//!
//! The foundation:
//! - [`error`]: the one error type, its stable codes and public messages.
//! - [`model`]: the types services take and return.
//! - [`text`]: what no text field may hold, and how names are cleaned.
//! - [`pagination`]: cursor pages.
//!
//! The store:
//! - [`store`]: the one store, whose queries run on SQLite and PostgreSQL,
//!   and the conversion of its rows into the model.
//!
//! Events:
//! - [`events`]: room events, the bus, the event log and the publisher.
//! - [`cluster`]: the bus and presence shared between nodes through Redis.
//!
//! The services:
//! - [`auth`]: accounts, passwords, sessions and tokens.
//! - [`users`]: profiles and account administration.
//! - [`rooms`]: rooms, members, invites, direct messages.
//! - [`chat`]: messages, history, read markers, typing and retention.
//! - [`files`]: uploads, downloads, thumbnails and the collection of orphaned files.
//! - [`calls`]: call records, limits and `call.state`.
//! - [`search`]: full-text search of messages.
//! - [`presence`]: online, away and offline over a user's connections.
//! - [`turn`]: time-limited TURN credentials for coturn.
//! - [`sweeps`]: the background work started with the node: the database
//!   probe, lapsed presence, retention and orphaned files.
//!
//! No HTTP, no WebRTC, no reading of the environment: configuration comes in
//! as typed structs, and every IO edge but the database is elsewhere.

pub mod error;
pub mod model;
pub mod pagination;
pub mod text;

pub mod store;

pub mod cluster;
pub mod events;

pub mod auth;
pub mod calls;
pub mod chat;
pub mod files;
pub mod presence;
pub mod rooms;
pub mod search;
pub mod sweeps;
pub mod turn;
pub mod users;

pub use error::{CoreError, ErrorKind, Result};

use auth::{Auth, AuthConfig};
use calls::{Calls, CallsConfig};
use chat::{Chat, ChatConfig};
use events::{Bus, EventLog, Publisher};
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
    pub sweeps: sweeps::SweepsConfig,
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
    sweeps: sweeps::SweepsConfig,
}

impl Core {
    /// Starts the background work of this node; stop it with [`sweeps::Sweeps::stop`] at shutdown.
    pub fn start_sweeps(&self) -> sweeps::Sweeps {
        sweeps::Sweeps::start(
            sweeps::Parts {
                store: self.store.clone(),
                presence: self.presence.clone(),
                chat: self.chat.clone(),
                files: self.files.clone(),
            },
            self.sweeps.clone(),
        )
    }

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
            sweeps: config.sweeps,
            store,
        })
    }
}
