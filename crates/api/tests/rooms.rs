//! Rooms, members, invites and direct messages.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use roost_core::model::Role;
use roost_core::rooms::RoomCreation;
use serde_json::json;

#[tokio::test]
async fn create_show_and_list_rooms() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let res = app
        .post("/v1/rooms", &ada.token, json!({"name": " Lobby ", "topic": "hello", "visibility": "public", "max_call_participants": 8}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["name"], "Lobby");
    assert_eq!(res.body["kind"], "group");
    assert_eq!(res.body["visibility"], "public");
    assert_eq!(res.body["max_call_participants"], 8);
    assert_eq!(res.body["call_self_unmute"], true, "by default");
    assert_eq!(res.body["my_role"], "owner");
    assert_eq!(res.body["member_count"], 1);
    let id = res.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &ada.token).await.body["topic"],
        "hello"
    );

    let private = app
        .post("/v1/rooms", &ada.token, json!({"name": "Quiet"}))
        .await;
    assert_eq!(
        private.body["visibility"], "private",
        "rooms are private unless asked otherwise"
    );
    for i in 0..3 {
        app.room(&ada, &format!("r{i}"), "private").await;
    }
    let page = app.get("/v1/rooms?limit=3", &ada.token).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 3);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/rooms?limit=3&cursor={cursor}"), &ada.token)
        .await;
    let names: Vec<&str> = rest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r2"]);
    assert!(rest.body["next_cursor"].is_null());

    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "a", "max_call_participants": 1}),
        json!({"name": "a", "max_call_participants": 101}),
        json!({"name": "a", "visibility": "secret"}),
        json!({"name": "a", "kind": "dm"}),
    ] {
        let res = app.post("/v1/rooms", &ada.token, bad.clone()).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.body
        );
    }
    let bob = app.register("bob").await;
    assert_eq!(
        app.get("/v1/rooms", &bob.token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "only my rooms"
    );
}

#[tokio::test]
async fn room_creation_can_be_limited_to_admins() {
    let app = TestApp::with(|core, _| core.rooms.creation = RoomCreation::Admins).await;
    let ada = app.register("ada").await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    assert_eq!(
        app.post("/v1/rooms", &ada.token, json!({"name": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post("/v1/rooms", &admin.token, json!({"name": "x"}))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn private_rooms_are_invisible_to_outsiders() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let eve = app.register("eve").await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let id = app.room(&ada, "secret", "private").await;
    let missing = app
        .get("/v1/rooms/00000000-0000-7000-8000-000000000000", &eve.token)
        .await;
    let hidden = app.get(&format!("/v1/rooms/{id}"), &eve.token).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.body, missing.body,
        "a hidden room looks exactly like a missing one"
    );
    for (method, path) in [
        (Method::GET, format!("/v1/rooms/{id}/members")),
        (Method::POST, format!("/v1/rooms/{id}/join")),
        (Method::POST, format!("/v1/rooms/{id}/invites")),
        (Method::DELETE, format!("/v1/rooms/{id}")),
        (Method::POST, format!("/v1/rooms/{id}/leave")),
    ] {
        let res = app
            .call(method.clone(), &path, Some(&eve.token), None)
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/rooms/{id}"),
            Some(&eve.token),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &admin.token)
            .await
            .status,
        StatusCode::OK,
        "admins see every room"
    );
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{id}/join"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "but join private rooms by invite like anyone"
    );
    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/rooms/{id}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::NO_CONTENT,
        "and may delete any room"
    );
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &ada.token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn settings_change_only_by_owner_or_admin() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let admin = app.user_with_role("admin", Role::Admin).await;
    let id = app.room(&ada, "lobby", "public").await;
    app.call(
        Method::POST,
        &format!("/v1/rooms/{id}/join"),
        Some(&bob.token),
        None,
    )
    .await;
    let path = format!("/v1/rooms/{id}");
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({"name": "bob's"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&ada.token),
            Some(json!({"name": "Hall", "topic": "t", "max_call_participants": 6, "call_self_unmute": false})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["name"], "Hall");
    assert_eq!(res.body["call_self_unmute"], false);
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin.token),
            Some(json!({"topic": null, "max_call_participants": null, "visibility": "private"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body["topic"].is_null(), "null clears");
    assert!(res.body["max_call_participants"].is_null());
    assert_eq!(res.body["name"], "Hall", "absent fields stay");
    assert_eq!(res.body["call_self_unmute"], false, "absent fields stay");
    assert_eq!(res.body["visibility"], "private");
    let res = app
        .call(
            Method::PATCH,
            &path,
            Some(&ada.token),
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        app.call(Method::DELETE, &path, Some(&bob.token), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&ada.token), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&path, &ada.token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/rooms", &bob.token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn join_leave_and_ownership_handover() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let public = app.room(&ada, "public", "public").await;
    let private = app.room(&ada, "private", "private").await;

    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{public}/join"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["my_role"], "member");
    assert_eq!(res.body["member_count"], 2);
    let again = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{public}/join"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(
        again.body["member_count"], 2,
        "joining twice changes nothing"
    );
    app.call(
        Method::POST,
        &format!("/v1/rooms/{public}/join"),
        Some(&cyd.token),
        None,
    )
    .await;
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{private}/join"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // cyd becomes moderator, so on ada's leaving the room passes to cyd, not bob who joined first.
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/rooms/{public}/members/{}", cyd.id),
            Some(&ada.token),
            Some(json!({"role": "moderator"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{public}/leave"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = app.get(&format!("/v1/rooms/{public}"), &cyd.token).await;
    assert_eq!(res.body["my_role"], "owner");
    assert_eq!(res.body["member_count"], 2);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{public}/leave"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "not a member any more");
}

#[tokio::test]
async fn members_are_added_listed_and_kicked_by_rank() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let dee = app.register("dee").await;
    let id = app.room(&ada, "team", "private").await;
    let members = format!("/v1/rooms/{id}/members");

    let res = app
        .post(&members, &ada.token, json!({"user_id": bob.id}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["user"]["username"], "bob");
    assert_eq!(res.body["role"], "member");
    let res = app
        .post(&members, &ada.token, json!({"user_id": bob.id}))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "already_member");
    let res = app
        .post(&members, &bob.token, json!({"user_id": cyd.id}))
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "plain members cannot add"
    );
    let res = app
        .post(
            &members,
            &ada.token,
            json!({"user_id": "00000000-0000-7000-8000-000000000000"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .post(&members, &ada.token, json!({"user_id": "nope"}))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    app.call(
        Method::PATCH,
        &format!("{members}/{}", bob.id),
        Some(&ada.token),
        Some(json!({"role": "moderator"})),
    )
    .await;
    let res = app
        .post(&members, &bob.token, json!({"user_id": cyd.id}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "moderators can add");
    app.post(&members, &ada.token, json!({"user_id": dee.id}))
        .await;

    let page = app.get(&format!("{members}?limit=2"), &cyd.token).await;
    assert_eq!(page.status, StatusCode::OK);
    let mut names: Vec<String> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["username"].as_str().unwrap().into())
        .collect();
    let next = app
        .get(
            &format!(
                "{members}?limit=2&cursor={}",
                page.body["next_cursor"].as_str().unwrap()
            ),
            &cyd.token,
        )
        .await;
    names.extend(
        next.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"]["username"].as_str().unwrap().to_owned()),
    );
    assert_eq!(names, ["ada", "bob", "cyd", "dee"]);
    assert!(next.body["next_cursor"].is_null());

    let kick = |actor: &common::TestUser, target: &common::TestUser| {
        let path = format!("{members}/{}", target.id);
        let token = actor.token.clone();
        let app = &app;
        async move {
            app.call(Method::DELETE, &path, Some(&token), None)
                .await
                .status
        }
    };
    assert_eq!(
        kick(&cyd, &dee).await,
        StatusCode::FORBIDDEN,
        "members cannot kick"
    );
    assert_eq!(
        kick(&bob, &ada).await,
        StatusCode::FORBIDDEN,
        "moderators cannot kick the owner"
    );
    assert_eq!(
        kick(&bob, &cyd).await,
        StatusCode::NO_CONTENT,
        "moderators kick members"
    );
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &cyd.token).await.status,
        StatusCode::NOT_FOUND,
        "a kicked member loses sight of a private room"
    );
    assert_eq!(
        kick(&ada, &bob).await,
        StatusCode::NO_CONTENT,
        "the owner kicks moderators"
    );
    assert_eq!(
        kick(&ada, &bob).await,
        StatusCode::NOT_FOUND,
        "not a member any more"
    );
    let res = app
        .call(
            Method::DELETE,
            &format!("{members}/{}", ada.id),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "leave, don't kick yourself"
    );
    let res = app
        .call(
            Method::PATCH,
            &format!("{members}/{}", dee.id),
            Some(&ada.token),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn invites_admit_until_expired_or_used_up() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let dee = app.register("dee").await;
    let id = app.room(&ada, "team", "private").await;

    let res = app
        .post(
            &format!("/v1/rooms/{id}/invites"),
            &ada.token,
            json!({"max_uses": 2}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["max_uses"], 2);
    assert_eq!(res.body["uses"], 0);
    let code = res.body["code"].as_str().unwrap().to_owned();
    assert!(code.len() >= 12);

    let res = app
        .call(
            Method::POST,
            &format!("/v1/invites/{code}/accept"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["id"], id.as_str());
    assert_eq!(res.body["my_role"], "member");
    let res = app
        .call(
            Method::POST,
            &format!("/v1/invites/{code}/accept"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "accepting again as a member uses nothing"
    );
    assert_eq!(
        app.call(
            Method::POST,
            &format!("/v1/invites/{code}/accept"),
            Some(&cyd.token),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let res = app
        .call(
            Method::POST,
            &format!("/v1/invites/{code}/accept"),
            Some(&dee.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::GONE);
    assert_eq!(res.code(), "invite_expired");
    let res = app
        .call(
            Method::POST,
            "/v1/invites/no-such-code/accept",
            Some(&dee.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    let res = app
        .post(&format!("/v1/rooms/{id}/invites"), &bob.token, json!({}))
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "plain members cannot invite"
    );
    for bad in [
        json!({"max_uses": 0}),
        json!({"expires_in_secs": 0}),
        json!({"expires_in_secs": 31 * 24 * 3600}),
    ] {
        let res = app
            .post(&format!("/v1/rooms/{id}/invites"), &ada.token, bad.clone())
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    let res = app
        .post(
            &format!("/v1/rooms/{id}/invites"),
            &ada.token,
            json!({"expires_in_secs": 1}),
        )
        .await;
    let short = res.body["code"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let res = app
        .call(
            Method::POST,
            &format!("/v1/invites/{short}/accept"),
            Some(&dee.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::GONE);
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &dee.token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invite_uses_are_not_oversold_under_concurrency() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let id = app.room(&ada, "team", "private").await;
    let res = app
        .post(
            &format!("/v1/rooms/{id}/invites"),
            &ada.token,
            json!({"max_uses": 3}),
        )
        .await;
    let code = res.body["code"].as_str().unwrap().to_owned();
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(app.register(&format!("user{i}")).await);
    }
    let path = format!("/v1/invites/{code}/accept");
    let results = futures::future::join_all(
        users
            .iter()
            .map(|u| app.call(Method::POST, &path, Some(&u.token), None)),
    )
    .await;
    let admitted = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        admitted,
        3,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &ada.token).await.body["member_count"],
        4
    );
}

#[tokio::test]
async fn direct_messages_are_one_room_per_pair() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let res = app
        .post("/v1/dms", &ada.token, json!({"user_id": bob.id}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["kind"], "dm");
    assert_eq!(res.body["member_count"], 2);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .post("/v1/dms", &bob.token, json!({"user_id": ada.id}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.body["id"],
        id.as_str(),
        "either side gets the same room"
    );

    assert_eq!(
        app.post("/v1/dms", &ada.token, json!({"user_id": ada.id}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post(
            "/v1/dms",
            &ada.token,
            json!({"user_id": "00000000-0000-7000-8000-000000000000"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let eve = app.register("eve").await;
    assert_eq!(
        app.get(&format!("/v1/rooms/{id}"), &eve.token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/v1/rooms/{id}/members"),
            &ada.token,
            json!({"user_id": eve.id})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&format!("/v1/rooms/{id}/invites"), &ada.token, json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call(
            Method::POST,
            &format!("/v1/rooms/{id}/leave"),
            Some(&ada.token),
            None
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn concurrent_dm_requests_give_one_room() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let calls = (0..6).map(|i| {
        let (from, to) = if i % 2 == 0 {
            (&ada, &bob)
        } else {
            (&bob, &ada)
        };
        app.post("/v1/dms", &from.token, json!({"user_id": to.id}))
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| {
            assert!(
                r.status == StatusCode::OK || r.status == StatusCode::CREATED,
                "{} {}",
                r.status,
                r.body
            );
            r.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        1,
        "created exactly once"
    );
    let dms = app.get("/v1/rooms", &ada.token).await;
    assert_eq!(dms.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_public_directory_lists_public_group_rooms_by_name() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let names = [
        "gardening",
        "Board games",
        "Chess_club",
        "100% cotton",
        "apiary",
    ];
    for name in names {
        app.room(&ada, name, "public").await;
    }
    app.room(&ada, "secret garden", "private").await;
    app.post("/v1/dms", &ada.token, json!({"user_id": bob.id}))
        .await;

    let listed = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Bob belongs to none of them, sees them all, in pages, by name.
    let first = app.get("/v1/rooms/public?limit=3", &bob.token).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        listed(&first.body),
        ["100% cotton", "apiary", "Board games"]
    );
    assert!(first.body["items"][0]["my_role"].is_null());
    assert_eq!(first.body["items"][0]["member_count"], 1);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/rooms/public?limit=3&cursor={cursor}"),
            &bob.token,
        )
        .await;
    assert_eq!(listed(&rest.body), ["Chess_club", "gardening"]);
    assert!(rest.body["next_cursor"].is_null());

    // A search ignores case and takes % and _ literally.
    let found = app.get("/v1/rooms/public?q=GARDEN", &bob.token).await;
    assert_eq!(
        listed(&found.body),
        ["gardening"],
        "private rooms stay hidden"
    );
    let found = app.get("/v1/rooms/public?q=0%25", &bob.token).await;
    assert_eq!(listed(&found.body), ["100% cotton"]);
    let found = app.get("/v1/rooms/public?q=s_c", &bob.token).await;
    assert_eq!(listed(&found.body), ["Chess_club"]);
    let found = app.get("/v1/rooms/public?q=s%25c", &bob.token).await;
    assert!(listed(&found.body).is_empty());

    // Joining from the directory shows up in the next listing.
    let apiary = first.body["items"][1]["id"].as_str().unwrap();
    let joined = app
        .post(&format!("/v1/rooms/{apiary}/join"), &bob.token, json!({}))
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    let again = app.get("/v1/rooms/public?q=apiary", &bob.token).await;
    assert_eq!(again.body["items"][0]["my_role"], "member");
    assert_eq!(again.body["items"][0]["member_count"], 2);

    for bad in [
        "cursor=nonsense",
        "limit=0",
        &format!("q={}", "x".repeat(101)),
        "sort=name",
    ] {
        let res = app
            .get(&format!("/v1/rooms/public?{bad}"), &bob.token)
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.body
        );
    }
    assert_eq!(
        app.call(Method::GET, "/v1/rooms/public", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
