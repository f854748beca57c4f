//! The OpenAPI document, built from the handlers' annotations, at
//! `/v1/openapi.json`, and a browsable page at `/docs`.

use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Roost", description = "Self-hosted voice, video and chat server: REST API v1. \
        Errors share one shape: `{\"error\": {\"code\", \"message\", \"details\"}}`."),
    paths(
        routes::health::healthz, routes::health::readyz,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::me,
        routes::users::update_me, routes::users::profile, routes::users::by_username,
        routes::admin::list_users, routes::admin::set_role, routes::admin::disable, routes::admin::enable,
        routes::rooms::create, routes::rooms::list, routes::rooms::directory, routes::rooms::show, routes::rooms::update, routes::rooms::remove,
        routes::rooms::join, routes::rooms::leave, routes::rooms::members, routes::rooms::add_member,
        routes::rooms::kick, routes::rooms::set_member_role, routes::rooms::create_invite,
                routes::rooms::accept_invite, routes::rooms::open_dm,
        routes::messages::send, routes::messages::history, routes::messages::show, routes::messages::edit, routes::messages::remove,
                routes::messages::read, routes::search::in_room, routes::search::everywhere,
                routes::presence::presence,
        routes::calls::credentials, routes::calls::calls,
        routes::files::upload, routes::files::download, routes::files::thumbnail,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "users", description = "Profiles"),
        (name = "admin", description = "Account administration"),
                (name = "rooms", description = "Rooms, members, invites and direct messages"),
                (name = "messages", description = "Messages, history, read markers and search"),
        (name = "files", description = "Uploads, downloads and thumbnails of attachments"),
        (name = "presence", description = "Who is online"),
        (name = "calls", description = "Voice and video calls: ICE servers and call records"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `/v1/openapi.json` and `/docs`.
pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/v1/openapi.json", ApiDoc::openapi()))
}
