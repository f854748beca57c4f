//! One module per resource; each exposes `router()`, an `OpenApiRouter`.
//!
//! A route is registered once, with `routes!(handler, ...)`: the path and the
//! method come from the handler's `#[utoipa::path]`, so the route that is
//! served and the operation that is documented are the same declaration.
//! One `routes!` holds the handlers of one path only (it would serve each of
//! them at every path it is given). `OpenApiRouter::route` would serve a
//! route the document does not know: it is not used here.

pub mod admin;
pub mod auth;
pub mod calls;
pub mod files;
pub mod health;
pub mod messages;
pub mod presence;
pub mod rooms;
pub mod search;
pub mod users;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiResult;
use crate::AppState;
use roost_core::pagination::PageRequest;

/// `?limit=&cursor=` of every listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page (default 50, at most 100 unless configured otherwise).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn request(&self, state: &AppState) -> ApiResult<PageRequest> {
        Ok(PageRequest::new(
            self.limit,
            self.cursor.as_deref(),
            state.core.pages,
        )?)
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
