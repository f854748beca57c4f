//! The OpenAPI document, at `/v1/openapi.json`, and a browsable page at
//! `/docs`.
//!
//! The operations come from the routers that serve them (each handler's
//! `#[utoipa::path]`, registered with `routes!`); this module adds what is
//! not one handler's: the title, the tags, the bearer scheme and the answers
//! the shared extractors give.

use axum::Router;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;

/// What the document says besides its operations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Roost", description = "Self-hosted voice, video and chat server: REST API v1. \
        Errors share one shape: `{\"error\": {\"code\", \"message\", \"details\"}}`."),
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

/// Answers that come from the shared extractors and the store rather than
/// from one handler: `AuthUser` (401), `Json` (400, 413, 415, 422), `Query`
/// (422), `Path` (404: an id that cannot parse names nothing) and a database
/// out of reach (503). They are added to each operation from what it takes,
/// so a new route is documented as the extractors make it behave; a handler's
/// own annotation (with a more precise description) wins.
struct SharedAnswers;

/// Name in `components/responses`, status, description.
const SHARED_ANSWERS: [(&str, &str, &str); 7] = [
    ("Unauthorized", "401", "`unauthorized`: no access token, or one that is malformed, expired or of an ended session or a disabled account"),
    ("MalformedJson", "400", "`malformed_json`: the body is not JSON"),
    ("BodyTooLarge", "413", "`payload_too_large`: the body is larger than the server accepts"),
    ("NotJson", "415", "`unsupported_media_type`: the body was not sent with `Content-Type: application/json`"),
    ("ValidationFailed", "422", "`validation_failed`: a field or query parameter breaks a rule; `details.field` names it when known"),
    ("NotFound", "404", "`not_found`: nothing with this id that the caller may see"),
    ("Unavailable", "503", "`unavailable`: the database is out of reach; try again"),
];

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, _, description) in SHARED_ANSWERS {
            let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            components.responses.insert(
                name.to_owned(),
                RefOr::T(
                    Response::builder()
                        .description(description)
                        .content("application/json", body)
                        .build(),
                ),
            );
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                add_shared_answers(op);
            }
        }
    }
}

fn add_shared_answers(op: &mut Operation) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let params = op.parameters.as_deref().unwrap_or_default();
    let in_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
    let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let mut wanted = Vec::new();
    if authenticated {
        wanted.push("Unauthorized");
    }
    if json_body {
        wanted.extend([
            "MalformedJson",
            "BodyTooLarge",
            "NotJson",
            "ValidationFailed",
        ]);
    }
    if in_query {
        wanted.push("ValidationFailed");
    }
    if in_path {
        wanted.push("NotFound");
    }
    // Everything past the session check or with a body reads the database.
    if authenticated || op.request_body.is_some() {
        wanted.push("Unavailable");
    }
    for name in wanted {
        let (_, status, _) = SHARED_ANSWERS
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("every wanted answer is in SHARED_ANSWERS");
        op.responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// The whole document: [`ApiDoc`] with the operations (and the schemas they
/// use) of `routes`, which the routers serving them carry, then the bearer
/// scheme and the shared answers, added once every operation is there.
pub fn document(
    routes: impl IntoIterator<Item = utoipa::openapi::OpenApi>,
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in routes {
        doc.merge(part);
    }
    BearerAuth.modify(&mut doc);
    SharedAnswers.modify(&mut doc);
    doc
}

/// `/v1/openapi.json` serving `doc`, and `/docs`.
pub fn router(doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/v1/openapi.json", doc))
}
