//! `/v1/auth/*`: register, login, refresh, logout, me.

use axum::extract::State;
use axum::http::StatusCode;
use roost_core::auth::{AuthSession, Registration};
use roost_core::model::User;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Client, Json};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Normalised to lower case; unique.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// 3 to 32 of `a-z 0-9 _ . -`; unique, case-insensitive.
    #[schema(min_length = 3, max_length = 32)]
    pub username: String,
    /// 8 to 128 characters, not a common password.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// 1 to 64 characters; defaults to the username.
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Creates an account and a session. Rate limited per client address.
#[utoipa::path(post, path = "/v1/auth/register", operation_id = "register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = AuthSession, description = "The account, logged in"),
        (status = 403, body = ErrorBody, description = "Registration is closed"),
        (status = 409, body = ErrorBody, description = "`email_taken` or `username_taken`"),
        (status = 422, body = ErrorBody, description = "A field breaks a rule; `details.field` names it"),
        (status = 429, body = ErrorBody, description = "Too many registrations from this address"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<AuthSession>)> {
    state.limiters.register_ip.check(&client.ip_key())?;
    let session = state
        .core
        .auth
        .register(
            Registration {
                email: req.email,
                username: req.username,
                password: req.password,
                display_name: req.display_name,
            },
            &client.info(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Logs in with email and password. Any failure is the same 401
/// `invalid_credentials`. Rate limited per client address and per account.
#[utoipa::path(post, path = "/v1/auth/login", operation_id = "login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = AuthSession),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`, with `Retry-After`"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<AuthSession>> {
    state.limiters.login_ip.check(&client.ip_key())?;
    state
        .limiters
        .login_account
        .check(&req.email.trim().to_lowercase())?;
    Ok(Json(
        state
            .core
            .auth
            .login(&req.email, &req.password, &client.info())
            .await?,
    ))
}

/// Exchanges a refresh token for a new pair. Each refresh token works once;
/// presenting a used one ends its session (`refresh_token_reused`).
#[utoipa::path(post, path = "/v1/auth/refresh", operation_id = "refreshSession", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = AuthSession),
        (status = 401, body = ErrorBody, description = "`unauthorized` or `refresh_token_reused`"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<AuthSession>> {
    Ok(Json(state.core.auth.refresh(&req.refresh_token).await?))
}

/// Ends the caller's session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
) -> ApiResult<StatusCode> {
    state.core.auth.logout(&actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/auth/me", operation_id = "getMe", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, AuthUser(actor): AuthUser) -> ApiResult<Json<User>> {
    Ok(Json(state.core.users.me(&actor).await?))
}
