//! Message search over REST: ranked, prefix and all-terms matching, marked
//! excerpts, pages, membership, edits and deletes, and queries meant to break it.

mod common;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use common::{Response, TestApp, TestUser};
use serde_json::{json, Value};

/// Sends a message; returns its id.
async fn send(app: &TestApp, user: &TestUser, room: &str, body: &str) -> String {
    let res = app
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &user.token,
            json!({"body": body, "client_msg_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Percent-encodes a query value, every byte but letters and digits.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn in_room(app: &TestApp, user: &TestUser, room: &str, q: &str) -> Response {
    app.get(
        &format!("/v1/rooms/{room}/messages/search?q={}", encode(q)),
        &user.token,
    )
    .await
}

async fn everywhere(app: &TestApp, user: &TestUser, q: &str) -> Response {
    app.get(&format!("/v1/search?q={}", encode(q)), &user.token)
        .await
}

/// The bodies of the hits, in order.
fn bodies(res: &Response) -> Vec<String> {
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", res.body))
        .iter()
        .map(|hit| hit["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The marked words of a hit.
fn matched(hit: &Value) -> Vec<String> {
    hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["match"] == true)
        .map(|s| s["text"].as_str().unwrap().to_owned())
        .collect()
}

/// A hit's excerpt as plain text.
fn excerpt(hit: &Value) -> String {
    hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect()
}

fn field(res: &Response) -> &str {
    res.body["error"]["details"]["field"]
        .as_str()
        .unwrap_or("<no field>")
}

#[tokio::test]
async fn better_matches_come_first_and_equal_ones_newest_first() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    for filler in ["lunch at noon", "the build is green", "see you tomorrow"] {
        send(&app, &ada, &room, filler).await;
    }
    send(&app, &ada, &room, "alpha beta gamma delta").await;
    send(&app, &ada, &room, "alpha alpha gamma delta").await;
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "alpha").await),
        ["alpha alpha gamma delta", "alpha beta gamma delta"],
        "the word twice ranks above the word once in a message as long"
    );

    send(&app, &ada, &room, "kappa").await;
    send(
        &app,
        &ada,
        &room,
        "kappa and then a great many other words that say nothing much at all",
    )
    .await;
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "kappa").await)[0],
        "kappa",
        "the word is worth more in a short message"
    );

    let older = send(&app, &ada, &room, "omega point").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let newer = send(&app, &ada, &room, "omega point").await;
    let res = in_room(&app, &ada, &room, "omega").await;
    let ids: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [newer.as_str(), older.as_str()],
        "equal matches: newest first"
    );
}

#[tokio::test]
async fn words_are_found_by_their_beginning_in_any_case() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    send(&app, &ada, &room, "The Deployment went fine").await;
    send(&app, &ada, &room, "we redeployed twice").await;
    send(&app, &ada, &room, "nothing to see").await;
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "deplo").await),
        ["The Deployment went fine"],
        "a prefix of a word, not the middle of one"
    );
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "DEPLOYMENT").await),
        ["The Deployment went fine"]
    );
    assert!(bodies(&in_room(&app, &ada, &room, "deployments").await).is_empty());
}

#[tokio::test]
async fn every_word_of_the_query_must_match() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    send(&app, &ada, &room, "deploy on friday").await;
    send(&app, &ada, &room, "friday we deploy again").await;
    send(&app, &ada, &room, "deploy on monday").await;
    send(&app, &ada, &room, "pizza friday").await;
    let mut found = bodies(&in_room(&app, &ada, &room, "fri deploy").await);
    found.sort();
    assert_eq!(found, ["deploy on friday", "friday we deploy again"]);
    assert!(bodies(&in_room(&app, &ada, &room, "deploy tuesday").await).is_empty());
}

#[tokio::test]
async fn highlights_mark_the_matched_words() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    send(&app, &ada, &room, "we deploy the deployment on friday").await;
    let res = in_room(&app, &ada, &room, "deplo fri").await;
    let hit = &res.body["items"][0];
    assert_eq!(matched(hit), ["deploy", "deployment", "friday"]);
    assert_eq!(
        excerpt(hit),
        "we deploy the deployment on friday",
        "a short message is shown whole"
    );

    // Marks inside a body are text, not matches.
    send(&app, &ada, &room, "\u{2}fake\u{3} <b>bold</b> news").await;
    let res = in_room(&app, &ada, &room, "news").await;
    let hit = &res.body["items"][0];
    assert_eq!(matched(hit), ["news"]);
    assert_eq!(
        excerpt(hit),
        "fake <b>bold</b> news",
        "no HTML is made or eaten"
    );

    let long: Vec<String> = (0..80).map(|i| format!("word{i}")).collect();
    let mut long = long.join(" ");
    long.push_str(" needle ");
    long.push_str(
        &(80..160)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    send(&app, &ada, &room, &long).await;
    let res = in_room(&app, &ada, &room, "needle").await;
    let hit = &res.body["items"][0];
    assert_eq!(matched(hit), ["needle"]);
    let text = excerpt(hit);
    assert!(text.len() < long.len() / 2, "a long message is cut: {text}");
    assert!(text.starts_with('…') && text.ends_with('…'), "{text}");
    assert_eq!(
        hit["message"]["body"],
        long.as_str(),
        "the message itself is whole"
    );
}

#[tokio::test]
async fn pages_walk_every_hit_once() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let mut sent = HashSet::new();
    for i in 0..7 {
        sent.insert(send(&app, &ada, &room, &format!("status report {i}")).await);
    }
    send(&app, &ada, &room, "unrelated").await;

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/rooms/{room}/messages/search?q=report&limit=3");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = app.get(&path, &ada.token).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let items = res.body["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|h| h["message"]["id"].as_str().unwrap().to_owned()),
        );
        match res.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(res.body["next_cursor"].is_null());
                break;
            }
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().cloned().collect::<HashSet<_>>(),
        sent,
        "no hit twice, none missed"
    );

    let all = app.get("/v1/search?q=report&limit=7", &ada.token).await;
    assert_eq!(bodies(&all).len(), 7);
    assert!(
        all.body["next_cursor"].is_null(),
        "an exact last page has no next"
    );

    for bad in ["!!!", "YWJj", "LTE"] {
        // Not base64; "abc"; "-1".
        let res = app
            .get(&format!("/v1/search?q=report&cursor={bad}"), &ada.token)
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.body
        );
        assert_eq!(field(&res), "cursor");
    }
}

#[tokio::test]
async fn only_members_find_a_rooms_messages() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let ours = app.room_with(&ada, &[&bob]).await;
    let hers = app.room_with(&eve, &[]).await;
    send(&app, &ada, &ours, "the launch code is tulip").await;
    send(&app, &eve, &hers, "tulips are nice").await;

    let res = in_room(&app, &eve, &ours, "tulip").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    assert_eq!(res.code(), "not_found");
    let res = in_room(&app, &eve, &uuid::Uuid::new_v4().to_string(), "tulip").await;
    assert_eq!(
        res.status,
        StatusCode::NOT_FOUND,
        "an unknown room looks the same"
    );
    assert_eq!(
        bodies(&everywhere(&app, &eve, "tulip").await),
        ["tulips are nice"]
    );

    let mut found = bodies(&everywhere(&app, &bob, "tulip").await);
    found.sort();
    assert_eq!(found, ["the launch code is tulip"]);
    let res = app
        .call(
            Method::POST,
            &format!("/v1/rooms/{ours}/leave"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert!(
        bodies(&everywhere(&app, &bob, "tulip").await).is_empty(),
        "a member who left finds nothing of the room"
    );
    assert_eq!(
        in_room(&app, &bob, &ours, "tulip").await.status,
        StatusCode::NOT_FOUND
    );

    let res = app
        .call(Method::GET, "/v1/search?q=tulip", None, None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn edits_change_what_is_found_and_deleted_messages_are_gone() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let draft = send(&app, &ada, &room, "draft wording here").await;
    let secret = send(&app, &ada, &room, "the secret plan").await;

    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/rooms/{room}/messages/{draft}"),
            Some(&ada.token),
            Some(json!({"body": "final wording here"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(bodies(&in_room(&app, &ada, &room, "draft").await).is_empty());
    let res = in_room(&app, &ada, &room, "final").await;
    assert_eq!(bodies(&res), ["final wording here"]);
    assert!(res.body["items"][0]["message"]["edited_at"].is_string());
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "wording").await).len(),
        1
    );

    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/rooms/{room}/messages/{secret}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(bodies(&in_room(&app, &ada, &room, "secret").await).is_empty());
    assert!(bodies(&everywhere(&app, &ada, "plan").await).is_empty());

    // System messages (the room's creation) have no words to find.
    assert!(bodies(&everywhere(&app, &ada, "created").await).is_empty());
    assert!(bodies(&everywhere(&app, &ada, "member").await).is_empty());
}

#[tokio::test]
async fn hostile_queries_are_words_or_refused_never_errors() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    send(
        &app,
        &ada,
        &room,
        "deploy the order to Zürich, 東京 and back",
    )
    .await;
    send(&app, &ada, &room, "near the end of it's run").await;

    for q in [
        "\"", "*", ":", "&|!", "'", "-", "''", "\\", "%", "_", "()", "^", "...", "😀",
    ] {
        let res = everywhere(&app, &ada, q).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q:?}: {}",
            res.body
        );
        assert_eq!(field(&res), "q", "{q:?}");
    }
    for (q, hits) in [
        ("OR", 1),
        ("NOT", 0),
        ("AND", 1),
        // Every word must match, "near" included: it is no operator.
        ("NEAR(deploy order)", 0),
        ("near", 1),
        ("NEAR(", 1),
        ("deploy*", 1),
        ("\"deploy", 1),
        ("-deploy", 1),
        ("body:deploy", 0),
        ("deploy & !order | x", 0),
        ("it's", 1),
        ("'; DROP TABLE messages; --", 0),
        ("zürich", 1),
        ("東京", 1),
        ("ـ", 0),
    ] {
        let res = everywhere(&app, &ada, q).await;
        assert_eq!(res.status, StatusCode::OK, "{q:?}: {}", res.body);
        assert_eq!(bodies(&res).len(), hits, "{q:?}: {}", res.body);
    }
    // A lone combining mark, a zero-width joiner, a private-use character, a
    // right-to-left override: refused or found nowhere, never an error.
    for q in [
        "\u{301}",
        "\u{200d}",
        "\u{e000}",
        "\u{202e}abc",
        "x\u{301}y",
    ] {
        let res = everywhere(&app, &ada, q).await;
        assert!(
            res.status == StatusCode::OK || res.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{q:?}: {}",
            res.body
        );
        if res.status == StatusCode::OK {
            assert!(bodies(&res).is_empty(), "{q:?}: {}", res.body);
        }
    }
    // NUL is refused in every text field, as PostgreSQL cannot hold it.
    let res = everywhere(&app, &ada, "a\u{0}b").await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(field(&res), "q");
    let res = everywhere(&app, &ada, &"deploy ".repeat(72)).await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "500 characters"
    );
    assert_eq!(field(&res), "q");
    assert_eq!(
        bodies(&everywhere(&app, &ada, "deploy").await).len(),
        1,
        "the table is still there"
    );
}

#[tokio::test]
async fn q_limit_and_cursor_are_validated() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    send(&app, &ada, &room, "hello").await;
    let many_words: Vec<String> = (0..17).map(|i| format!("w{i}")).collect();
    let sixteen = many_words[..16].join(" ");
    let seventeen = many_words.join(" ");
    let long = "a".repeat(201);
    for (query, field_name) in [
        ("".to_owned(), "q"),
        ("q=".to_owned(), "q"),
        ("q=%20%20".to_owned(), "q"),
        (format!("q={}", encode(&long)), "q"),
        (format!("q={}", encode(&seventeen)), "q"),
        ("q=hello&limit=0".to_owned(), "limit"),
        ("q=hello&limit=51".to_owned(), "limit"),
    ] {
        for path in [
            format!("/v1/search?{query}"),
            format!("/v1/rooms/{room}/messages/search?{query}"),
        ] {
            let res = app.get(&path, &ada.token).await;
            assert_eq!(
                res.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path}: {}",
                res.body
            );
            assert_eq!(res.code(), "validation_failed");
            assert_eq!(field(&res), field_name, "{path}");
        }
    }
    for query in ["q=hello&limit=abc", "q=hello&sort=new"] {
        let res = app.get(&format!("/v1/search?{query}"), &ada.token).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            res.body
        );
    }
    for ok in [
        format!("q={}", encode(&"a".repeat(200))),
        format!("q={}", encode(&sixteen)),
        "q=hello&limit=50".to_owned(),
        "q=hello&limit=1".to_owned(),
    ] {
        let res = app.get(&format!("/v1/search?{ok}"), &ada.token).await;
        assert_eq!(res.status, StatusCode::OK, "{ok}: {}", res.body);
    }
    let res = app.get("/v1/search?q=hello", &ada.token).await;
    assert_eq!(bodies(&res), ["hello"]);
}

#[tokio::test]
async fn search_does_not_shadow_the_message_routes() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let id = send(&app, &ada, &room, "before").await;
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/rooms/{room}/messages/{id}"),
            Some(&ada.token),
            Some(json!({"body": "after"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        bodies(&in_room(&app, &ada, &room, "after").await),
        ["after"]
    );
    let spec = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    for path in ["/v1/search", "/v1/rooms/{id}/messages/search"] {
        assert!(
            spec.body["paths"][path]["get"].is_object(),
            "{path} is documented"
        );
    }
    let highlight = &spec.body["components"]["schemas"]["Highlight"]["properties"];
    assert!(highlight["match"].is_object(), "{highlight}");
}
