//! `GET /v1/rooms/{id}/calls`: the record of a room's calls.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use uuid::Uuid;

#[tokio::test]
async fn a_rooms_calls_are_listed_newest_first_for_members_only() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = app.room(&ada, "calls", "private").await;
    let res = app
        .post(
            &format!("/v1/rooms/{room}/members"),
            &ada.token,
            serde_json::json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let room_id: Uuid = room.parse().unwrap();
    let (ada_id, bob_id): (Uuid, Uuid) = (ada.id.parse().unwrap(), bob.id.parse().unwrap());

    // Two calls: ada alone, then ada and bob.
    let calls = &app.core.calls;
    let (first, started) = calls.start(room_id, ada_id).await.unwrap();
    assert!(started);
    let (again, started) = calls.start(room_id, bob_id).await.unwrap();
    assert_eq!((again, started), (first, false), "one call at a time");
    let p1 = Uuid::new_v4();
    calls.joined(room_id, first, p1, ada_id, 1).await.unwrap();
    calls.left(room_id, first, p1, 0).await.unwrap();
    calls.end(first).await.unwrap();
    let (second, _) = calls.start(room_id, bob_id).await.unwrap();
    let (p2, p3) = (Uuid::new_v4(), Uuid::new_v4());
    calls.joined(room_id, second, p2, bob_id, 1).await.unwrap();
    calls.joined(room_id, second, p3, ada_id, 2).await.unwrap();

    let res = app
        .get(&format!("/v1/rooms/{room}/calls"), &bob.token)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let items = res.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second.to_string(), "newest first");
    assert!(items[0]["ended_at"].is_null(), "still going on");
    assert_eq!(items[0]["peak_participants"], 2);
    assert_eq!(items[0]["started_by"], bob.id.as_str());
    assert_eq!(items[0]["participants"].as_array().unwrap().len(), 2);
    assert_eq!(items[1]["id"], first.to_string());
    assert!(items[1]["ended_at"].is_string());
    assert_eq!(items[1]["participants"][0]["user_id"], ada.id.as_str());
    assert!(items[1]["participants"][0]["left_at"].is_string());

    let page = app
        .get(&format!("/v1/rooms/{room}/calls?limit=1"), &bob.token)
        .await;
    assert_eq!(page.body["items"][0]["id"], second.to_string());
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/v1/rooms/{room}/calls?limit=1&cursor={cursor}"),
            &bob.token,
        )
        .await;
    assert_eq!(next.body["items"][0]["id"], first.to_string());
    assert!(next.body["next_cursor"].is_null());

    let res = app
        .get(&format!("/v1/rooms/{room}/calls"), &eve.token)
        .await;
    assert_eq!(
        res.status,
        StatusCode::NOT_FOUND,
        "non-members learn nothing"
    );
    let res = app
        .get(&format!("/v1/rooms/{room}/calls?limit=0"), &bob.token)
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}
