//! Account administration and server roles.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use roost_core::model::Role;
use serde_json::json;

#[tokio::test]
async fn only_admins_list_users_with_filters_and_pages() {
    let app = TestApp::new().await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let ada = app.register("ada").await;
    for name in ["bob", "cyd", "dee", "eve"] {
        app.register(name).await;
    }
    let res = app.get("/v1/admin/users", &ada.token).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.code(), "forbidden");

    let res = app.get("/v1/admin/users?limit=2", &admin.token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let mut seen: Vec<String> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().into())
        .collect();
    let mut cursor = res.body["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let res = app
            .get(&format!("/v1/admin/users?limit=2&cursor={c}"), &admin.token)
            .await;
        assert_eq!(res.status, StatusCode::OK);
        seen.extend(
            res.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        cursor = res.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        ["admin", "ada", "bob", "cyd", "dee", "eve"],
        "every account once, oldest first"
    );

    let res = app.get("/v1/admin/users?q=EV", &admin.token).await;
    let names: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eve"]);
    let res = app.get("/v1/admin/users?q=%25", &admin.token).await;
    assert_eq!(
        res.body["items"].as_array().unwrap().len(),
        0,
        "wildcards in q are literal"
    );
    let res = app.get("/v1/admin/users?role=admin", &admin.token).await;
    let names: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin"]);

    for bad in [
        "?role=king",
        "?limit=0",
        "?limit=101",
        "?cursor=%21%21",
        "?colour=red",
    ] {
        let res = app
            .get(&format!("/v1/admin/users{bad}"), &admin.token)
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.body
        );
    }
}

#[tokio::test]
async fn roles_change_only_by_super_admin_and_never_lose_the_last_one() {
    let app = TestApp::new().await;
    let root = app.user_with_role("root", Role::SuperAdmin).await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let ada = app.register("ada").await;

    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", ada.id),
            &admin.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "admins cannot grant roles"
    );

    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", ada.id),
            &root.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["role"], "admin");
    assert_eq!(
        app.get("/v1/admin/users", &ada.token).await.status,
        StatusCode::OK,
        "the new admin's token carries the role at once"
    );

    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", ada.id),
            &root.token,
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(res.body["role"], "user");
    assert_eq!(
        app.get("/v1/admin/users", &ada.token).await.status,
        StatusCode::FORBIDDEN
    );

    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", ada.id),
            &root.token,
            json!({"role": "super_admin"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", root.id),
            &root.token,
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "last_super_admin");
    let res = app
        .post(
            "/v1/admin/users/00000000-0000-7000-8000-000000000000/role",
            &root.token,
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // With a second super_admin, one may step down.
    let second = app.user_with_role("root2", Role::SuperAdmin).await;
    let res = app
        .post(
            &format!("/v1/admin/users/{}/role", root.id),
            &second.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn disabling_ends_sessions_and_blocks_login_until_enabled() {
    let app = TestApp::new().await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let ada = app.register("ada").await;
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", ada.id),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", ada.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["disabled"], true);
    assert_eq!(
        app.get("/v1/auth/me", &ada.token).await.status,
        StatusCode::UNAUTHORIZED,
        "live sessions end"
    );
    let res = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": ada.email, "password": common::PASSWORD})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/enable", ada.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["disabled"], false);
    assert_eq!(
        app.get("/v1/auth/me", &ada.token).await.status,
        StatusCode::UNAUTHORIZED,
        "enabling revives no old session"
    );
    let res = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    app.login("ada").await;
}

#[tokio::test]
async fn admins_cannot_disable_their_peers_or_themselves() {
    let app = TestApp::new().await;
    let root = app.user_with_role("root", Role::SuperAdmin).await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let other = app.user_with_role("other", Role::Admin).await;
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", other.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", root.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", admin.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", other.id),
            Some(&root.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "a super_admin may");
}
