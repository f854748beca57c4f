//! Profiles.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn display_name_can_be_changed_and_is_checked() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let res = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(&ada.token),
            Some(json!({"display_name": "  Ada Lovelace "})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["display_name"], "Ada Lovelace");
    assert_eq!(
        app.get("/v1/auth/me", &ada.token).await.body["display_name"],
        "Ada Lovelace"
    );

    let res = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(&ada.token),
            Some(json!({"display_name": "x".repeat(65)})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.body["error"]["details"]["field"], "display_name");
    let res = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(&ada.token),
            Some(json!({"email": "x@example.org"})),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only the display name is changed here"
    );
    let res = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            None,
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn public_profiles_show_no_private_fields() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let res = app.get(&format!("/v1/users/{}", ada.id), &bob.token).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["username"], "ada");
    assert!(
        res.body.get("email").is_none(),
        "emails are private: {}",
        res.body
    );
    assert!(res.body.get("role").is_none());

    let res = app
        .get("/v1/users/00000000-0000-7000-8000-000000000000", &bob.token)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "not_found");
    let res = app.get("/v1/users/not-a-uuid", &bob.token).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .call(Method::GET, &format!("/v1/users/{}", ada.id), None, None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}
