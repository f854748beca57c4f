//! Messages over REST: idempotent sends, history, edits, tombstones, read markers.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, TestUser};
use serde_json::{json, Value};

async fn send(
    app: &TestApp,
    user: &TestUser,
    room: &str,
    body: &str,
    cid: &str,
) -> common::Response {
    app.post(
        &format!("/v1/rooms/{room}/messages"),
        &user.token,
        json!({"body": body, "client_msg_id": cid}),
    )
    .await
}

fn texts(history: &Value) -> Vec<String> {
    history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "text")
        .map(|m| m["body"].as_str().unwrap_or("<tombstone>").to_owned())
        .collect()
}

#[tokio::test]
async fn a_repeated_client_msg_id_returns_the_first_message() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let first = send(&app, &ada, &room, "hello", "c-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["body"], "hello");
    assert_eq!(first.body["kind"], "text");
    assert_eq!(first.body["sender_id"], ada.id.as_str());
    let again = send(&app, &ada, &room, "hello (retry)", "c-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["body"], "hello", "the first message stands");
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &ada.token)
        .await;
    assert_eq!(texts(&history.body), ["hello"], "no second row");

    let other = app.room(&ada, "other", "private").await;
    let res = send(&app, &ada, &other, "hello", "c-1").await;
    assert_eq!(
        res.status,
        StatusCode::CONFLICT,
        "a key belongs to one message"
    );
    assert_eq!(res.code(), "client_msg_id_reused");
}

#[tokio::test]
async fn racing_sends_with_one_client_msg_id_make_one_message() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let results =
        futures::future::join_all((0..6).map(|_| send(&app, &ada, &room, "once", "race-1"))).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| {
            r.body["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{}", r.body))
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        1
    );
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &ada.token)
        .await;
    assert_eq!(texts(&history.body), ["once"]);
}

#[tokio::test]
async fn bad_sends_are_refused_and_non_members_see_nothing() {
    let app = TestApp::with(|core, _| core.chat.max_body_chars = 10).await;
    let ada = app.register("ada").await;
    let eve = app.register("eve").await;
    let room = app.room_with(&ada, &[]).await;
    for (body, field) in [
        (json!({"body": "", "client_msg_id": "a"}), "body"),
        (json!({"body": "   ", "client_msg_id": "a"}), "body"),
        (
            json!({"body": "x".repeat(11), "client_msg_id": "a"}),
            "body",
        ),
        (json!({"body": "ok", "client_msg_id": ""}), "client_msg_id"),
        (
            json!({"body": "ok", "client_msg_id": "c".repeat(129)}),
            "client_msg_id",
        ),
        (
            json!({"body": "ok", "client_msg_id": "a", "reply_to": "00000000-0000-7000-8000-000000000000"}),
            "reply_to",
        ),
    ] {
        let res = app
            .post(
                &format!("/v1/rooms/{room}/messages"),
                &ada.token,
                body.clone(),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.body["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(
        send(&app, &ada, &room, &"é".repeat(10), "ten").await.status,
        StatusCode::CREATED,
        "the limit counts characters"
    );
    assert_eq!(
        send(&app, &eve, &room, "hi", "e-1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/rooms/{room}/messages"), &eve.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{room}/messages"),
            None,
            Some(json!({"body": "x", "client_msg_id": "x"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn history_pages_in_ascending_order() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            send(&app, &ada, &room, &format!("m{i}"), &format!("c{i}"))
                .await
                .body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let path = format!("/v1/rooms/{room}/messages");
    let newest = app.get(&format!("{path}?limit=3"), &ada.token).await;
    assert_eq!(texts(&newest.body), ["m4", "m5", "m6"]);
    assert_eq!(newest.body["has_more"], true);
    let older = app
        .get(&format!("{path}?limit=3&before={}", ids[4]), &ada.token)
        .await;
    assert_eq!(texts(&older.body), ["m1", "m2", "m3"]);
    let after = app
        .get(&format!("{path}?limit=3&after={}", ids[1]), &ada.token)
        .await;
    assert_eq!(texts(&after.body), ["m2", "m3", "m4"]);
    assert_eq!(after.body["has_more"], true);
    let end = app
        .get(&format!("{path}?after={}", ids[5]), &ada.token)
        .await;
    assert_eq!(texts(&end.body), ["m6"]);
    assert_eq!(end.body["has_more"], false);
    let seqs: Vec<u64> = newest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for bad in [
        "?limit=0",
        "?limit=101",
        "?before=00000000-0000-7000-8000-000000000000",
        "?before=nope",
    ] {
        assert_eq!(
            app.get(&format!("{path}{bad}"), &ada.token).await.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn system_messages_record_joins_leaves_and_renames() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let room = app.room(&ada, "before", "public").await;
    app.call(
        Method::POST,
        &format!("/v1/rooms/{room}/join"),
        Some(&bob.token),
        None,
    )
    .await;
    app.call(
        Method::PATCH,
        &format!("/v1/rooms/{room}"),
        Some(&ada.token),
        Some(json!({"name": "after"})),
    )
    .await;
    app.call(
        Method::POST,
        &format!("/v1/rooms/{room}/leave"),
        Some(&bob.token),
        None,
    )
    .await;
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &ada.token)
        .await;
    let events: Vec<(String, Value)> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| {
            (
                m["data"]["event"].as_str().unwrap().to_owned(),
                m["data"].clone(),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "member_joined",
            "member_joined",
            "room_renamed",
            "member_left"
        ]
    );
    assert_eq!(events[1].1["user_id"], bob.id.as_str());
    assert_eq!(events[2].1["name"], "after");
    assert_eq!(events[2].1["old_name"], "before");
    assert_eq!(events[3].1["reason"], "left");
}

#[tokio::test]
async fn edits_and_deletes_follow_ownership_and_rank() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let room = app.room_with(&ada, &[&bob, &cyd]).await;
    let msg = send(&app, &bob, &room, "typo", "b-1").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/rooms/{room}/messages/{msg}");

    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({"body": "fixed"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["body"], "fixed");
    assert!(res.body["edited_at"].is_string());
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&ada.token),
            Some(json!({"body": "owner's words"})),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "not even the owner edits another's message"
    );
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({"body": ""})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        app.call(Method::DELETE, &path, Some(&cyd.token), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let res = app
        .call(Method::DELETE, &path, Some(&ada.token), None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "the owner deletes anyone's");
    assert!(res.body["body"].is_null(), "a tombstone keeps no body");
    assert!(res.body["deleted_at"].is_string());
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({"body": "back"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "message_deleted");
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &bob.token)
        .await;
    assert_eq!(
        texts(&history.body),
        ["<tombstone>"],
        "the tombstone stays in history"
    );

    let own = send(&app, &cyd, &room, "mine", "c-1").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/rooms/{room}/messages/{own}"),
            Some(&cyd.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "everyone deletes their own");
    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/rooms/{room}/messages/00000000-0000-7000-8000-000000000000"),
            Some(&cyd.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn read_markers_move_forward_and_drive_unread_counts() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let room = app.room_with(&ada, &[&bob]).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            send(&app, &ada, &room, &format!("m{i}"), &format!("c{i}"))
                .await
                .body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    send(&app, &bob, &room, "bob's own", "b").await;
    let rooms = app.get("/v1/rooms", &bob.token).await;
    let entry = &rooms.body["items"][0];
    assert_eq!(
        entry["unread_count"], 4,
        "others' messages count, one's own do not: {entry}"
    );
    assert_eq!(entry["last_message"]["body"], "bob's own");

    let read_path = format!("/v1/rooms/{room}/read");
    let read = |id: &str| app.post(&read_path, &bob.token, json!({"message_id": id}));
    let res = read(&ids[2]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["moved"], true);
    assert_eq!(
        app.get("/v1/rooms", &bob.token).await.body["items"][0]["unread_count"],
        1
    );
    // Everyone in the room sees where each member has read up to.
    let members = app
        .get(&format!("/v1/rooms/{room}/members"), &ada.token)
        .await;
    let marker = |name: &str| {
        members.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user"]["username"] == name)
            .map(|m| m["last_read_seq"].clone())
            .unwrap()
    };
    assert_eq!(marker("bob"), res.body["message_seq"], "{}", members.body);
    assert_eq!(marker("ada"), 0, "ada has marked nothing read");
    let res = read(&ids[0]).await;
    assert_eq!(res.body["moved"], false, "the marker never moves back");
    assert_eq!(
        app.get("/v1/rooms", &bob.token).await.body["items"][0]["unread_count"],
        1
    );
    assert_eq!(
        read("00000000-0000-7000-8000-000000000000").await.status,
        StatusCode::NOT_FOUND
    );
    let eve = app.register("eve").await;
    let res = app
        .post(
            &format!("/v1/rooms/{room}/read"),
            &eve.token,
            json!({"message_id": ids[3]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn presence_is_answered_for_roommates_only() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    app.room_with(&ada, &[&bob]).await;
    app.core
        .presence
        .connect(bob.id.parse().unwrap(), uuid::Uuid::new_v4())
        .await;
    app.core
        .presence
        .connect(eve.id.parse().unwrap(), uuid::Uuid::new_v4())
        .await;
    let res = app
        .get(
            &format!("/v1/presence?user_ids={},{},{}", ada.id, bob.id, eve.id),
            &ada.token,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["presence"][&bob.id], "online");
    assert_eq!(res.body["presence"][&ada.id], "offline", "no socket open");
    assert!(
        res.body["presence"].get(&eve.id).is_none(),
        "eve shares no room with ada"
    );
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let res = app
        .get(
            &format!("/v1/presence?user_ids={}", too_many.join(",")),
            &ada.token,
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "101 ids");
    assert_eq!(res.code(), "validation_failed");
    for bad in ["?user_ids=", "?user_ids=nope", ""] {
        assert_eq!(
            app.get(&format!("/v1/presence{bad}"), &ada.token)
                .await
                .status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn one_message_is_fetched_by_id_by_members_only() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = app.room_with(&ada, &[&bob]).await;
    let other = app.room_with(&ada, &[]).await;
    let sent = send(&app, &ada, &room, "the original", "o").await;
    let id = sent.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/rooms/{room}/messages/{id}");

    let res = app.get(&path, &bob.token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["body"], "the original");
    assert_eq!(res.body["seq"], sent.body["seq"]);
    for (who, path) in [
        (&eve, path.clone()),
        (&ada, format!("/v1/rooms/{other}/messages/{id}")),
        (
            &ada,
            format!("/v1/rooms/{room}/messages/00000000-0000-7000-8000-000000000000"),
        ),
    ] {
        let res = app.get(&path, &who.token).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}: {}", res.body);
    }

    app.call(Method::DELETE, &path, Some(&ada.token), None)
        .await;
    let res = app.get(&path, &bob.token).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body["deleted_at"].is_string(), "{}", res.body);
    assert!(res.body["body"].is_null(), "a tombstone keeps no text");
}
