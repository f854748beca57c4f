//! Profiles.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use roost_core::model::Role;
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

#[tokio::test]
async fn a_user_is_found_by_exact_username_to_start_a_dm() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let stranger = app.register("marguerite").await;
    let res = app
        .get("/v1/users/by-username/Marguerite", &ada.token)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["id"], stranger.id.as_str());
    assert_eq!(res.body["username"], "marguerite");
    assert!(
        res.body.get("email").is_none(),
        "no private fields: {}",
        res.body
    );
    let dm = app
        .post("/v1/dms", &ada.token, json!({"user_id": res.body["id"]}))
        .await;
    assert_eq!(dm.status, StatusCode::CREATED, "{}", dm.body);

    for missing in ["margue", "nobody", "not%20a%20name", "x"] {
        let res = app
            .get(&format!("/v1/users/by-username/{missing}"), &ada.token)
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{missing}: {}", res.body);
        assert_eq!(res.code(), "not_found");
    }
    let admin = app.user_with_role("root", Role::SuperAdmin).await;
    let res = app
        .post(
            &format!("/v1/admin/users/{}/disable", stranger.id),
            &admin.token,
            json!({}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        app.get("/v1/users/by-username/marguerite", &ada.token)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "disabled accounts are not found"
    );
}
