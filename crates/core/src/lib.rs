//! roost-core: Roost's domain model, store and services.
//!
//! # Layout
//! - [`model`]: the types services take and return.
//! - [`store`]: the one store, whose queries run on SQLite and PostgreSQL.
//! - [`auth`]: accounts, passwords, sessions and tokens.
//! - [`users`]: profiles and account administration.
//! - [`rooms`]: rooms, members, invites, direct messages.
//! - [`pagination`]: cursor pages.
//!
//! No HTTP, no WebRTC, no reading of the environment: configuration comes in
//! as typed structs, and every IO edge but the database is elsewhere.

pub mod auth;
pub mod error;
pub mod model;
pub mod pagination;
pub mod rooms;
pub mod store;
pub mod users;

pub use error::{CoreError, Result};

use auth::{Auth, AuthConfig};
use pagination::PageLimits;
use rooms::{Rooms, RoomsConfig};
use store::Store;
use users::Users;

/// Everything the core needs at start-up.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub pages: PageLimits,
}

/// The services, wired to one store. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub store: Store,
    pub auth: Auth,
    pub users: Users,
    pub rooms: Rooms,
    pub pages: PageLimits,
}

impl Core {
    /// Wires the services; `jwt_secret` signs access tokens (at least 32 bytes).
    pub async fn new(store: Store, jwt_secret: &[u8], config: CoreConfig) -> Result<Core> {
        Ok(Core {
            auth: Auth::new(store.clone(), jwt_secret, config.auth).await?,
            users: Users::new(store.clone()),
            rooms: Rooms::new(store.clone(), config.rooms),
            pages: config.pages,
            store,
        })
    }
}
