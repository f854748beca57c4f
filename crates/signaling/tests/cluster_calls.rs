//! A call across two nodes sharing PostgreSQL and Redis: it lives on the
//! node where it started, and people whose sockets are on the other node
//! join it there, their signalling carried between the nodes (ADR 0007).

mod common;

use std::time::Duration;

use common::{join_call, TestServer};
use roost_signaling::calls::CallsConfig;
use serde_json::json;

#[tokio::test]
async fn a_mesh_call_reaches_participants_on_both_nodes() {
    let (a_node, b_node) = TestServer::pair_with_calls(CallsConfig::default()).await;
    let ada = a_node.user("ada").await;
    let bob = a_node.user("bob").await;
    let room = a_node.room(&ada, &[&bob]).await;
    let (mut a, _) = a_node.join(&ada, json!({})).await;
    let (mut b, _) = b_node.join(&bob, json!({})).await;

    let first = join_call(&mut a, &room).await;
    let second = join_call(&mut b, &room).await;
    assert_eq!(second["call_id"], first["call_id"], "one call");
    assert_eq!(second["topology"], "mesh");
    assert_eq!(
        second["participants"][0]["participant_id"], first["participant_id"],
        "the joiner on node B sees who is in the call on node A"
    );
    let joined = a.next_of("call.participant_joined").await;
    assert_eq!(
        joined["participant"]["participant_id"],
        second["participant_id"]
    );
    assert_eq!(
        b_node.gateway.calls.participants(),
        0,
        "node A holds the call; node B only relays"
    );
    assert_eq!(a_node.gateway.calls.participants(), 2);

    // Mesh signalling crosses the nodes both ways, to the addressed participant.
    let call_id = first["call_id"].clone();
    let ack = b
        .request(json!({"type": "call.offer", "call_id": call_id, "to": first["participant_id"], "sdp": "v=0 offer"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let offer = a.next_of("call.offer").await;
    assert_eq!(offer["from"], second["participant_id"]);
    assert_eq!(offer["sdp"], "v=0 offer");
    a.request(json!({"type": "call.answer", "call_id": call_id, "to": second["participant_id"], "sdp": "v=0 answer"}))
        .await;
    let answer = b.next_of("call.answer").await;
    assert_eq!(answer["from"], first["participant_id"]);
    assert_eq!(answer["sdp"], "v=0 answer");

    // Refusals cross too, with their code.
    let nack = b
        .request(json!({"type": "call.ice", "call_id": call_id, "to": uuid::Uuid::new_v4(), "candidate": {"candidate": ""}}))
        .await;
    assert_eq!(
        (nack["type"].as_str(), nack["code"].as_str()),
        (Some("nack"), Some("not_found")),
        "{nack}"
    );
    let nack = b
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": "v=0"}))
        .await;
    assert_eq!(nack["code"], "not_on_sfu", "{nack}");

    // Moderation crosses too: bob may not act on ada, the room's owner;
    // she removes him, he hears it on node B, and joining again finds the
    // call on node A afresh.
    let nack = b
        .request(json!({"type": "call.moderate", "call_id": call_id, "participant_id": first["participant_id"], "action": "mute_audio"}))
        .await;
    assert_eq!(nack["code"], "forbidden", "{nack}");
    let ack = a
        .request(json!({"type": "call.moderate", "call_id": call_id, "participant_id": second["participant_id"], "action": "remove"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(b.next_of("call.removed").await["by"], ada.id.as_str());
    let left = a.next_of("call.participant_left").await;
    assert_eq!(left["removed_by"], ada.id.as_str());
    assert_eq!(a_node.gateway.calls.participants(), 1);
    let again = join_call(&mut b, &room).await;
    assert_eq!(again["call_id"], call_id);
    assert_eq!(
        b_node.gateway.calls.participants(),
        0,
        "still held on node A"
    );
    a.next_of("call.participant_joined").await;

    // Bob's socket on node B drops without closing; his new one, on node A
    // this time, takes his place back, and what waited for him follows.
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a_node.gateway.calls.participants(), 2, "his place waits");
    a.request(json!({"type": "call.offer", "call_id": call_id, "to": second["participant_id"], "sdp": "v=0 again"}))
        .await;
    let (mut b, _) = a_node.join(&bob, json!({})).await;
    let resumed = b
        .request(
            json!({"type": "call.resume", "room_id": room, "call_id": call_id,
            "participant_id": second["participant_id"]}),
        )
        .await;
    assert_eq!(resumed["type"], "ack", "{resumed}");
    assert_eq!(b.next_of("call.offer").await["sdp"], "v=0 again");
    // And back on node B, relayed to node A once more.
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut b, _) = b_node.join(&bob, json!({})).await;
    let resumed = b
        .request(
            json!({"type": "call.resume", "room_id": room, "call_id": call_id,
            "participant_id": second["participant_id"]}),
        )
        .await;
    assert_eq!(resumed["type"], "ack", "{resumed}");
    let ack = b
        .request(json!({"type": "call.offer", "call_id": call_id, "to": first["participant_id"], "sdp": "v=0 from b"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let offer = a.next_of("call.offer").await;
    assert_eq!(
        (&offer["from"], &offer["sdp"]),
        (&second["participant_id"], &json!("v=0 from b"))
    );
    let heard = a.drain(Duration::from_millis(200)).await;
    assert!(
        heard.iter().all(|f| f["type"] != "call.participant_left"),
        "nobody saw him leave: {heard:?}"
    );

    // Bob's socket closes on node B: he leaves the call on node A at once.
    b.close().await;
    let left = a.next_of("call.participant_left").await;
    assert_eq!(left["participant_id"], second["participant_id"]);
    assert_eq!(a_node.gateway.calls.participants(), 1);
}

#[tokio::test]
async fn the_sfu_of_the_holding_node_carries_media_for_the_other_nodes_participants() {
    let (a_node, b_node) = TestServer::pair_with_calls(CallsConfig {
        mesh_max: 0,
        sfu_grace: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let ada = a_node.user("ada").await;
    let bob = a_node.user("bob").await;
    let cyd = a_node.user("cyd").await;
    let room = a_node.room(&ada, &[&bob, &cyd]).await;
    let (mut a, _) = a_node.join(&ada, json!({})).await;
    let first = join_call(&mut a, &room).await;
    assert_eq!(first["topology"], "sfu");
    let call_id = first["call_id"].clone();

    // Bob speaks and cyd listens, both from node B, through node A's engine.
    let (mut b, _) = b_node.join(&bob, json!({})).await;
    let (mut c, _) = b_node.join(&cyd, json!({})).await;
    let mut joined = Vec::new();
    for client in [&mut b, &mut c] {
        let j = join_call(client, &room).await;
        assert_eq!(j["call_id"], call_id);
        assert_eq!(j["topology"], "sfu");
        joined.push(j);
    }
    common::sfu_audio_reaches(&mut b, &mut [&mut c, &mut a], &call_id).await;

    // Cyd pauses bob's microphone from node B: node A's engine answers,
    // and its refusal of a stranger comes back as it was.
    let bob_id = joined[0]["participant_id"].clone();
    for (who, answer) in [(bob_id, "ack"), (json!(uuid::Uuid::new_v4()), "nack")] {
        let reply = c
            .request(
                json!({"type": "call.subscribe", "call_id": call_id, "participant_id": who,
                "source": "microphone", "paused": true}),
            )
            .await;
        assert_eq!(reply["type"], answer, "{reply}");
        if answer == "nack" {
            assert_eq!(reply["code"], "not_found", "{reply}");
        }
    }

    // Leaving from node B is answered by node A.
    let ack = b
        .request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(a_node.gateway.calls.participants(), 2);
    // And node B no longer relays for bob: a second leave is not found.
    let nack = b
        .request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    assert_eq!(nack["code"], "not_found", "{nack}");
}
