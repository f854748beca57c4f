//! Text the server refuses or cleans, the same on SQLite and PostgreSQL:
//! U+0000 in any text field (PostgreSQL cannot store it), and names that
//! would hide or reorder what other people read.

mod common;

use axum::http::StatusCode;
use common::{Response, TestApp};
use roost_core::model::Role;
use serde_json::{json, Value};

fn refused(res: &Response, field: &str) {
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.code(), "validation_failed", "{}", res.body);
    assert_eq!(res.body["error"]["details"]["field"], field, "{}", res.body);
}

fn bodies(history: &Value) -> Vec<String> {
    history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_nul_in_a_message_or_its_key_is_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let path = format!("/v1/rooms/{room}/messages");

    for (message, field) in [
        (json!({"body": "a\u{0}b", "client_msg_id": "c1"}), "body"),
        (
            json!({"body": "hello", "client_msg_id": "c\u{0}2"}),
            "client_msg_id",
        ),
    ] {
        refused(&app.post(&path, &ada.token, message).await, field);
    }

    let sent = app
        .post(
            &path,
            &ada.token,
            json!({"body": "kept", "client_msg_id": "c3"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    let id = sent.body["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("{path}/{id}"),
            &ada.token,
            json!({"body": "edited\u{0}"}),
        )
        .await;
    refused(&res, "body");

    let history = app.get(&path, &ada.token).await;
    assert_eq!(history.status, StatusCode::OK);
    let texts = bodies(&history.body);
    assert!(texts.contains(&"kept".to_owned()), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains('\0')), "{texts:?}");
    assert!(history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["edited_at"].is_null()));
}

#[tokio::test]
async fn a_nul_in_a_search_or_a_cursor_is_refused_by_name() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let admin = app.user_with_role("root", Role::Admin).await;
    let room = app.room_with(&ada, &[]).await;

    for (path, token, field) in [
        ("/v1/rooms/public?q=a%00b", &ada.token, "q"),
        ("/v1/admin/users?q=%00x", &admin.token, "q"),
        (
            &*format!("/v1/rooms/{room}/messages/search?q=a%00b"),
            &ada.token,
            "q",
        ),
        ("/v1/search?q=a%00b", &ada.token, "q"),
        // base64url of "a\0b": a cursor this server never issued.
        ("/v1/admin/users?cursor=YQBi", &admin.token, "cursor"),
    ] {
        let res = app.get(path, token).await;
        refused(&res, field);
    }
}

#[tokio::test]
async fn a_nul_in_a_name_topic_or_invite_code_is_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let res = app
        .register_with("ada", json!({"display_name": "Ada\u{0}"}))
        .await;
    refused(&res, "display_name");
    let ada = app.register("ada").await;
    let res = app
        .patch("/v1/users/me", &ada.token, json!({"display_name": "\u{0}"}))
        .await;
    refused(&res, "display_name");

    for (room, field) in [
        (json!({"name": "a\u{0}", "visibility": "public"}), "name"),
        (
            json!({"name": "ok", "topic": "t\u{0}", "visibility": "public"}),
            "topic",
        ),
    ] {
        refused(&app.post("/v1/rooms", &ada.token, room).await, field);
    }
    let rooms = app.get("/v1/rooms", &ada.token).await;
    assert_eq!(rooms.body["items"], json!([]), "no room was created");

    let res = app
        .post("/v1/invites/ab%00cd/accept", &ada.token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
}

#[tokio::test]
async fn names_lose_reordering_and_a_name_of_nothing_visible_is_empty() {
    let app = TestApp::new().await;
    let res = app
        .register_with(
            "ada",
            json!({"display_name": "\u{200b}admin\u{202e}gnp.exe\u{2069}"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let ada = app.login("ada").await;
    let me = app.get("/v1/auth/me", &ada.token).await;
    assert_eq!(me.body["display_name"], "admingnp.exe");

    for blank in ["\u{200b}", " \u{200c}\u{2060}\u{feff} ", "\u{202e}\u{200f}"] {
        let res = app
            .patch("/v1/users/me", &ada.token, json!({"display_name": blank}))
            .await;
        refused(&res, "display_name");
    }
    let res = app
        .patch(
            "/v1/users/me",
            &ada.token,
            json!({"display_name": "Ada\u{7}\u{2066} Lovelace\u{200e}"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["display_name"], "Ada Lovelace");

    let res = app
        .post(
            "/v1/rooms",
            &ada.token,
            json!({"name": "\u{200b}", "visibility": "public"}),
        )
        .await;
    refused(&res, "name");
    let res = app
        .post(
            "/v1/rooms",
            &ada.token,
            json!({"name": "team\u{202e}txt.exe", "visibility": "public"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["name"], "teamtxt.exe");
    let room = res.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/rooms/{room}");
    let res = app
        .patch(
            &path,
            &ada.token,
            json!({"name": "\u{feff}\u{2067}Plans\u{2069}\u{200d}"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["name"], "Plans");
    let res = app
        .patch(&path, &ada.token, json!({"name": "\u{2060}"}))
        .await;
    refused(&res, "name");
    let shown = app.get(&path, &ada.token).await;
    assert_eq!(
        shown.body["name"], "Plans",
        "the refused rename changed nothing"
    );
}
