//! Two nodes sharing PostgreSQL and Redis serve the same rooms.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn messages_typing_reads_and_presence_cross_nodes() {
    let (a_node, b_node) = TestServer::pair().await;
    let ada = a_node.user("ada").await;
    let bob = a_node.user("bob").await;
    let room = a_node.room(&ada, &[&bob]).await;
    let (mut a, _) = a_node.join(&ada, json!({})).await;
    let (mut b, welcome) = b_node.join(&bob, json!({})).await;
    assert_eq!(
        welcome["rooms"][0]["room_id"],
        room.as_str(),
        "node B reads the shared database"
    );

    // Bob's arrival on node B is announced to ada on node A.
    loop {
        let p = a.next_of("presence.update").await;
        if p["user_id"] == bob.id.as_str() {
            assert_eq!(p["status"], "online");
            break;
        }
    }
    let ack = a.request(json!({"type": "message.send", "room_id": room, "body": "across", "client_msg_id": "x1"})).await;
    let id = ack["result"]["message"]["id"].clone();
    let got = b.next_of("message.new").await;
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["body"], "across");

    b.request(json!({"type": "typing.start", "room_id": room}))
        .await;
    assert_eq!(a.next_of("typing").await["user_id"], bob.id.as_str());
    b.request(json!({"type": "read", "room_id": room, "message_id": id}))
        .await;
    assert_eq!(a.next_of("message.read").await["user_id"], bob.id.as_str());

    // The same client_msg_id on the other node is still one message.
    let again = b_node.actor(&ada).await;
    let (m, created) = b_node
        .core
        .chat
        .send(
            &again,
            room.parse().unwrap(),
            roost_core::chat::Outgoing {
                body: "dup".into(),
                client_msg_id: "x1".into(),
                reply_to: None,
                attachments: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(json!(m.id), id);

    // Logout on node A closes ada's socket on node B too.
    let (mut a_on_b, _) = b_node.join(&ada, json!({})).await;
    a_node
        .core
        .auth
        .logout(&a_node.actor(&ada).await)
        .await
        .unwrap();
    assert_eq!(a_on_b.closed().await, Some(4001), "on the other node");
    assert_eq!(a.closed().await, Some(4001), "and on its own");
}

#[tokio::test]
async fn a_dead_nodes_users_are_announced_offline_by_a_live_one() {
    let (a_node, b_node) = TestServer::pair().await;
    let ada = a_node.user("ada").await;
    let bob = a_node.user("bob").await;
    a_node.room(&ada, &[&bob]).await;
    let (mut b, _) = b_node.join(&bob, json!({})).await;

    // Ada comes online through node A's presence, with a short TTL; then node A
    // dies: nothing renews her entry and nothing says goodbye.
    let cluster = a_node.core.cluster.clone().expect("a clustered node");
    let dying = roost_core::presence::Presence::redis(
        &cluster,
        a_node.core.store.clone(),
        a_node.core.bus.clone(),
        std::time::Duration::from_millis(800),
    );
    let ada_id: uuid::Uuid = ada.id.parse().unwrap();
    dying.connect(ada_id, uuid::Uuid::new_v4()).await;
    loop {
        let p = b.next_of("presence.update").await;
        if p["user_id"] == ada.id.as_str() {
            assert_eq!(p["status"], "online");
            break;
        }
    }
    assert_eq!(
        b_node.core.presence.statuses(&[ada_id]).await.unwrap()[&ada_id],
        roost_core::events::PresenceStatus::Online
    );

    // Node B's sweep (every 10 s in `roost serve`) finds the lapsed entry.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    b_node.core.presence.sweep().await;
    let p = b.next_of("presence.update").await;
    assert_eq!(p["user_id"], ada.id.as_str());
    assert_eq!(p["status"], "offline");
    assert_eq!(
        b_node.core.presence.statuses(&[ada_id]).await.unwrap()[&ada_id],
        roost_core::events::PresenceStatus::Offline
    );
}
