//! `/v1/rooms/{id}/messages/search` and `/v1/search`: full-text search of
//! messages, in one room or in every room of the caller, through `core::search`.

use axum::extract::State;
use roost_core::model::Page;
use roost_core::search::SearchHit;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    // A static segment wins over a parameter, so `search` is never taken for a message id.
    OpenApiRouter::default()
        .routes(routes!(in_room))
        .routes(routes!(everywhere))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// 1 to 200 characters. Cut into words (runs of letters and digits), at
    /// most 16; a message matches when each word begins one of its words.
    /// Other characters, quotes and operators included, only separate words.
    #[param(value_type = String, required = true, min_length = 1, max_length = 200)]
    pub q: Option<String>,
    /// Hits per page: 1 to 50, default 20.
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Searches the messages of one room the caller is a member of: best matches
/// first, newest first among equals.
#[utoipa::path(get, path = "/v1/rooms/{id}/messages/search", operation_id = "searchRoom", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), SearchQuery),
    responses((status = 200, body = Page<SearchHit>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Not a member"),
        (status = 422, body = ErrorBody, description = "Bad `q`, `limit` or `cursor`")))]
pub async fn in_room(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(room_id): Path<Uuid>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<SearchHit>>> {
    Ok(Json(
        state
            .core
            .search
            .in_room(
                &actor,
                room_id,
                q.q.as_deref().unwrap_or(""),
                q.limit,
                q.cursor.as_deref(),
            )
            .await?,
    ))
}

/// Searches the messages of every room the caller is a member of.
#[utoipa::path(get, path = "/v1/search", operation_id = "searchMessages", tag = "messages", security(("bearer" = [])),
    params(SearchQuery),
    responses((status = 200, body = Page<SearchHit>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Bad `q`, `limit` or `cursor`")))]
pub async fn everywhere(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<SearchHit>>> {
    Ok(Json(
        state
            .core
            .search
            .everywhere(
                &actor,
                q.q.as_deref().unwrap_or(""),
                q.limit,
                q.cursor.as_deref(),
            )
            .await?,
    ))
}
