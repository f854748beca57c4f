//! Call signalling over real WebSockets: joining, mesh relaying, topology
//! moves, limits, leaving and the record of the call.

mod common;

use std::time::Duration;

use common::{join_call, Client, TestServer, User};
use roost_signaling::calls::CallsConfig;
use serde_json::{json, Value};

/// Joins the room's call; returns the `call.join` result.
/// `n` users in one room, each connected; the first owns the room.
async fn people(server: &TestServer, n: usize) -> (Vec<User>, Vec<Client>, String) {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(server.user(&format!("person{i}")).await);
    }
    let others: Vec<&User> = users[1..].iter().collect();
    let room = server.room(&users[0], &others).await;
    let mut clients = Vec::new();
    for u in &users {
        clients.push(server.join(u, json!({})).await.0);
    }
    (users, clients, room)
}

#[tokio::test]
async fn joining_tells_the_topology_the_others_and_the_room() {
    let server = TestServer::start().await;
    let (users, mut c, room) = people(&server, 3).await;

    let first = join_call(&mut c[0], &room).await;
    assert_eq!(first["topology"], "mesh");
    assert_eq!(first["participants"], json!([]));
    assert_eq!(first["ice_servers"], json!([]), "no TURN configured");
    assert_eq!(
        first["max_participants"], 4,
        "mesh only without a media engine"
    );
    let call_id = first["call_id"].as_str().unwrap().to_owned();

    // Everyone in the room, in the call or not, sees it start: in the chat, then its state.
    let started = c[2].next_of("message.new").await;
    assert_eq!(started["message"]["kind"], "system");
    assert_eq!(started["message"]["data"]["event"], "call_started");
    assert_eq!(started["message"]["data"]["call_id"], call_id.as_str());
    let state = c[2].next_of("call.state").await;
    assert_eq!(state["state"], "active");
    assert_eq!(state["call_id"], call_id.as_str());
    assert_eq!(state["participants"], 1);

    let second = join_call(&mut c[1], &room).await;
    assert_eq!(second["call_id"], call_id.as_str(), "one call per room");
    assert_eq!(second["participants"][0]["user_id"], users[0].id.as_str());
    assert_eq!(
        second["participants"][0]["participant_id"],
        first["participant_id"]
    );
    let joined = c[0].next_of("call.participant_joined").await;
    assert_eq!(joined["participant"]["user_id"], users[1].id.as_str());
    assert_eq!(
        joined["participant"]["participant_id"],
        second["participant_id"]
    );
    loop {
        let s = c[2].next_of("call.state").await;
        if s["participants"] == 2 {
            break;
        }
    }

    let again = c[1]
        .request(json!({"type": "call.join", "room_id": room}))
        .await;
    assert_eq!(again["code"], "already_in_call");
    let outsider = server.user("outsider").await;
    let (mut o, _) = server.join(&outsider, json!({})).await;
    let refused = o
        .request(json!({"type": "call.join", "room_id": room}))
        .await;
    assert_eq!(refused["code"], "not_found", "members only");
}

#[tokio::test]
async fn mesh_signalling_reaches_only_the_addressed_participant() {
    let server = TestServer::start().await;
    let (_, mut c, room) = people(&server, 4).await;
    let a = join_call(&mut c[0], &room).await;
    let b = join_call(&mut c[1], &room).await;
    let _ = join_call(&mut c[2], &room).await;
    let call_id = a["call_id"].clone();
    let (a_id, b_id) = (a["participant_id"].clone(), b["participant_id"].clone());
    // Let the joining notices settle.
    for client in c.iter_mut().take(3) {
        client.drain(Duration::from_millis(200)).await;
    }

    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n";
    let ack = c[0]
        .request(json!({"type": "call.offer", "call_id": call_id, "to": b_id, "sdp": sdp}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let offer = c[1].next_of("call.offer").await;
    assert_eq!(offer["from"], a_id);
    assert_eq!(offer["sdp"], sdp);
    c[1].request(json!({"type": "call.answer", "call_id": call_id, "to": a_id, "sdp": "answer"}))
        .await;
    assert_eq!(c[0].next_of("call.answer").await["from"], b_id);
    let candidate = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    c[0].request(
        json!({"type": "call.ice", "call_id": call_id, "to": b_id, "candidate": candidate}),
    )
    .await;
    assert_eq!(c[1].next_of("call.ice").await["candidate"], candidate);

    let others = c[2].drain(Duration::from_millis(300)).await;
    assert!(
        others
            .iter()
            .all(|f| !f["type"].as_str().unwrap().starts_with("call.o")
                && f["type"] != "call.answer"
                && f["type"] != "call.ice"),
        "the third participant hears none of it: {others:?}"
    );

    let nobody = c[0]
        .request(json!({"type": "call.offer", "call_id": call_id, "to": uuid::Uuid::new_v4(), "sdp": sdp}))
        .await;
    assert_eq!(nobody["code"], "not_found");
    let myself = c[0]
        .request(json!({"type": "call.offer", "call_id": call_id, "to": a_id, "sdp": sdp}))
        .await;
    assert_eq!(myself["code"], "not_found");
    // A member not in the call cannot address the call.
    let outside = c[3]
        .request(json!({"type": "call.offer", "call_id": call_id, "to": b_id, "sdp": sdp}))
        .await;
    assert_eq!(outside["code"], "not_found");
    let not_sfu = c[0]
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": sdp}))
        .await;
    assert_eq!(not_sfu["code"], "not_on_sfu");
    let pause = c[0]
        .request(json!({"type": "call.subscribe", "call_id": call_id, "participant_id": b_id, "source": "camera", "paused": true}))
        .await;
    assert_eq!(pause["code"], "not_on_sfu", "{pause}");
    let restart = c[0]
        .request(json!({"type": "sfu.restart", "call_id": call_id}))
        .await;
    assert_eq!(restart["code"], "not_on_sfu", "{restart}");
}

#[tokio::test]
async fn the_fifth_joiner_moves_the_call_to_the_sfu_and_three_bring_it_back() {
    let server = TestServer::with_media(CallsConfig {
        mesh_max: 4,
        sfu_grace: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let (_, mut c, room) = people(&server, 5).await;
    let mut ids = Vec::new();
    for client in c.iter_mut().take(4) {
        let r = join_call(client, &room).await;
        assert_eq!(r["topology"], "mesh");
        ids.push(r["participant_id"].clone());
    }
    let fifth = join_call(&mut c[4], &room).await;
    assert_eq!(fifth["topology"], "sfu", "the fifth makes it an SFU call");
    let call_id = fifth["call_id"].clone();
    for client in c.iter_mut().take(4) {
        let t = client.next_of("call.topology").await;
        assert_eq!(t["topology"], "sfu");
        assert_eq!(t["call_id"], call_id);
    }

    // Four stay SFU (no flapping at the boundary); three return to mesh.
    c[4].request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    let quiet = c[0].drain(Duration::from_millis(300)).await;
    assert!(
        quiet.iter().all(|f| f["type"] != "call.topology"),
        "still SFU at four: {quiet:?}"
    );
    c.remove(3).close().await; // a connection closed by its client leaves at once
    for client in c.iter_mut().take(3) {
        loop {
            let left = client.next_of("call.participant_left").await;
            if left["participant_id"] == ids[3] {
                break;
            }
        }
        let t = client.next_of("call.topology").await;
        assert_eq!(t["topology"], "mesh");
    }
    let mesh = c[0]
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": "v=0"}))
        .await;
    assert_eq!(mesh["type"], "nack");
}

#[tokio::test]
async fn mesh_max_zero_keeps_every_call_on_the_sfu() {
    let server = TestServer::with_media(CallsConfig {
        mesh_max: 0,
        ..Default::default()
    })
    .await;
    let (_, mut c, room) = people(&server, 2).await;
    assert_eq!(join_call(&mut c[0], &room).await["topology"], "sfu");
    let second = join_call(&mut c[1], &room).await;
    assert_eq!(second["topology"], "sfu");
    // A bad SDP is refused with a clear code, and the call goes on.
    let bad = c[1]
        .request(json!({"type": "sfu.offer", "call_id": second["call_id"], "sdp": "not sdp"}))
        .await;
    assert_eq!(bad["code"], "validation_failed", "{bad}");
    let ok = c[1]
        .request(json!({"type": "call.mute", "call_id": second["call_id"], "kind": "video", "muted": true}))
        .await;
    assert_eq!(ok["type"], "ack");
    let muted = c[0].next_of("call.mute").await;
    assert_eq!(muted["participant_id"], second["participant_id"]);
    assert_eq!(muted["kind"], "video");
    assert_eq!(muted["muted"], true);
    // Pausing another's camera is taken; one not in the call, or oneself, is not.
    let first = c[0]
        .request(
            json!({"type": "call.subscribe", "call_id": second["call_id"],
        "participant_id": second["participant_id"], "source": "camera", "paused": true}),
        )
        .await;
    assert_eq!(first["type"], "ack", "{first}");
    for who in [
        json!(uuid::Uuid::new_v4()),
        second["participant_id"].clone(),
    ] {
        let refused = c[1]
            .request(
                json!({"type": "call.subscribe", "call_id": second["call_id"],
            "participant_id": who, "source": "camera", "paused": false}),
            )
            .await;
        assert_eq!(refused["code"], "not_found", "{refused}");
    }
}

#[tokio::test]
async fn a_full_call_refuses_one_more_and_the_record_keeps_who_was_there() {
    let server = TestServer::start().await;
    let (users, mut c, room) = people(&server, 3).await;
    let owner = server.actor(&users[0]).await;
    server
        .core
        .rooms
        .update(
            &owner,
            room.parse().unwrap(),
            roost_core::rooms::RoomPatch {
                max_call_participants: Some(Some(2)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = join_call(&mut c[0], &room).await;
    assert_eq!(first["max_participants"], 2);
    join_call(&mut c[1], &room).await;
    let full = c[2]
        .request(json!({"type": "call.join", "room_id": room}))
        .await;
    assert_eq!(full["code"], "call_full");

    let call_id = first["call_id"].clone();
    c[0].request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    c[1].request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    // The chat marks the end, then the room hears the call ended.
    loop {
        let m = c[2].next_of("message.new").await;
        if m["message"]["data"]["event"] == "call_ended" {
            assert_eq!(m["message"]["data"]["peak_participants"], 2);
            break;
        }
    }
    loop {
        let s = c[2].next_of("call.state").await;
        if s["state"] == "ended" {
            break;
        }
    }
    let page = server
        .core
        .calls
        .list(
            &owner,
            room.parse().unwrap(),
            &roost_core::pagination::PageRequest::new(None, None, Default::default()).unwrap(),
        )
        .await
        .unwrap();
    let call = &page.items[0];
    assert_eq!(json!(call.id), call_id);
    assert!(call.ended_at.is_some());
    assert_eq!(call.peak_participants, 2);
    let who: Vec<String> = call
        .participants
        .iter()
        .map(|p| p.user_id.unwrap().to_string())
        .collect();
    assert_eq!(who, vec![users[0].id.clone(), users[1].id.clone()]);
    assert!(call.participants.iter().all(|p| p.left_at.is_some()));

    // Leaving a call one is not in is not found; a new call can start.
    let gone = c[0]
        .request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    assert_eq!(gone["code"], "not_found");
    let next = join_call(&mut c[2], &room).await;
    assert_ne!(next["call_id"], call_id);
}

#[tokio::test]
async fn media_flows_through_the_sfu_with_its_signalling_on_the_socket() {
    let server = TestServer::with_media(CallsConfig {
        mesh_max: 0,
        ..Default::default()
    })
    .await;
    let (_, mut c, room) = people(&server, 3).await;
    let mut call_id = Value::Null;
    for client in c.iter_mut() {
        call_id = join_call(client, &room).await["call_id"].clone();
    }
    let (speaker, rest) = c.split_first_mut().unwrap();
    let mut listeners: Vec<&mut Client> = rest.iter_mut().collect();
    common::sfu_audio_reaches(speaker, &mut listeners, &call_id).await;

    // The speaker leaves; the others stay in the call.
    c[0].request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    assert_eq!(server.gateway.calls.participants(), 2);
}

/// Every client's next `ty` frame, which must concern `who`.
async fn all_hear(c: &mut [Client], ty: &str, who: &Value) -> Vec<Value> {
    let mut heard = Vec::new();
    for client in c.iter_mut() {
        let f = client.next_of(ty).await;
        assert_eq!(&f["participant_id"], who, "{f}");
        heard.push(f);
    }
    heard
}

#[tokio::test]
async fn moderators_mute_stop_shares_and_remove_and_everyone_hears_it() {
    let server = TestServer::start().await;
    let (users, mut c, room) = people(&server, 4).await;
    let owner = server.actor(&users[0]).await;
    let room_id: uuid::Uuid = room.parse().unwrap();
    let mut ids = Vec::new();
    let mut call_id = Value::Null;
    for client in c.iter_mut() {
        let joined = join_call(client, &room).await;
        call_id = joined["call_id"].clone();
        ids.push(joined["participant_id"].clone());
    }
    for client in c.iter_mut() {
        client.drain(Duration::from_millis(200)).await;
    }
    let moderate = |who: &Value, action: &str| json!({"type": "call.moderate", "call_id": call_id, "participant_id": who, "action": action});

    // A participant's own share: the others hear it, without `by`.
    let ack = c[1]
        .request(json!({"type": "call.share", "call_id": call_id, "sharing": true}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for i in [0, 2, 3] {
        let f = c[i].next_of("call.share").await;
        assert_eq!(
            (&f["participant_id"], &f["sharing"]),
            (&ids[1], &json!(true))
        );
        assert!(f.get("by").is_none(), "{f}");
    }

    // Who may not: a plain member, anyone on themselves, anyone on a stranger.
    let refused = c[2].request(moderate(&ids[1], "mute_audio")).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let myself = c[0].request(moderate(&ids[0], "mute_audio")).await;
    assert_eq!(myself["code"], "not_found");
    let stranger = c[0]
        .request(moderate(&json!(uuid::Uuid::new_v4()), "remove"))
        .await;
    assert_eq!(stranger["code"], "not_found");
    let unknown = c[0].request(moderate(&ids[1], "ban")).await;
    assert_eq!(unknown["code"], "invalid_frame", "{unknown}");

    // The owner mutes a member: everyone hears it, the member too.
    let ack = c[0].request(moderate(&ids[1], "mute_audio")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for f in all_hear(&mut c, "call.mute", &ids[1]).await {
        assert_eq!(f["kind"], "audio");
        assert_eq!(f["muted"], true);
        assert_eq!(f["by"], users[0].id.as_str());
        assert_eq!(f["locked"], false);
    }
    // The room lets it unmute itself; the others hear that as ever.
    let ack = c[1]
        .request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": false}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for i in [0, 2, 3] {
        let f = c[i].next_of("call.mute").await;
        assert_eq!((&f["muted"], f.get("by")), (&json!(false), None));
    }

    // A moderator acts on members, never on the owner.
    server
        .core
        .rooms
        .set_member_role(
            &owner,
            room_id,
            users[3].id.parse().unwrap(),
            roost_core::model::MemberRole::Moderator,
        )
        .await
        .unwrap();
    let up = c[3].request(moderate(&ids[0], "mute_video")).await;
    assert_eq!(up["code"], "forbidden", "{up}");
    let ack = c[3].request(moderate(&ids[2], "mute_video")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for f in all_hear(&mut c, "call.mute", &ids[2]).await {
        assert_eq!(
            (&f["kind"], &f["by"]),
            (&json!("video"), &json!(users[3].id))
        );
    }

    // Stopping a share: the sharer hears it too.
    let ack = c[0].request(moderate(&ids[1], "stop_screen")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for f in all_hear(&mut c, "call.share", &ids[1]).await {
        assert_eq!(
            (&f["sharing"], &f["by"]),
            (&json!(false), &json!(users[0].id))
        );
    }

    // A room that locks moderators' mutes: unmuting waits for a moderator.
    server
        .core
        .rooms
        .update(
            &owner,
            room_id,
            roost_core::rooms::RoomPatch {
                call_self_unmute: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c[0].request(moderate(&ids[1], "mute_audio")).await;
    for f in all_hear(&mut c, "call.mute", &ids[1]).await {
        assert_eq!((&f["muted"], &f["locked"]), (&json!(true), &json!(true)));
    }
    let locked = c[1]
        .request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": false}))
        .await;
    assert_eq!(locked["code"], "unmute_locked", "{locked}");

    // Removed: the removed one hears it and is out; the others see it leave.
    let ack = c[0].request(moderate(&ids[2], "remove")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let removed = c[2].next_of("call.removed").await;
    assert_eq!(
        (&removed["call_id"], &removed["by"]),
        (&call_id, &json!(users[0].id))
    );
    for i in [0, 1, 3] {
        let left = c[i].next_of("call.participant_left").await;
        assert_eq!(left["participant_id"], ids[2]);
        assert_eq!(left["removed_by"], users[0].id.as_str());
    }
    let gone = c[2]
        .request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": true}))
        .await;
    assert_eq!(gone["code"], "not_found", "out of the call");
    // It may join again, and sees where the others stand.
    let again = join_call(&mut c[2], &room).await;
    let member = again["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == ids[1])
        .expect("the muted member is listed")
        .clone();
    assert_eq!(member["audio_muted"], true);
    assert_eq!(member["audio_locked"], true);
    assert_eq!(member["screen_sharing"], false);

    // Allowed by a moderator, it unmutes itself.
    c[0].request(moderate(&ids[1], "allow_audio")).await;
    let f = c[1].next_of("call.mute").await;
    assert_eq!((&f["muted"], &f["locked"]), (&json!(true), &json!(false)));
    let ack = c[1]
        .request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": false}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
}

#[tokio::test]
async fn mesh_signalling_relays_the_sources_it_names() {
    let server = TestServer::start().await;
    let (_, mut c, room) = people(&server, 2).await;
    let a = join_call(&mut c[0], &room).await;
    let b = join_call(&mut c[1], &room).await;
    let call_id = a["call_id"].clone();
    let sources = json!({"0": "microphone", "1": "camera", "2": "screen"});
    c[0].request(
        json!({"type": "call.offer", "call_id": call_id, "to": b["participant_id"],
        "sdp": "v=0", "sources": sources}),
    )
    .await;
    assert_eq!(c[1].next_of("call.offer").await["sources"], sources);
    c[1].request(
        json!({"type": "call.answer", "call_id": call_id, "to": a["participant_id"],
        "sdp": "v=0", "sources": {"2": "screen"}}),
    )
    .await;
    assert_eq!(
        c[0].next_of("call.answer").await["sources"],
        json!({"2": "screen"})
    );
    let wrong = c[0]
        .request(
            json!({"type": "call.offer", "call_id": call_id, "to": b["participant_id"],
            "sdp": "v=0", "sources": {"0": "projector"}}),
        )
        .await;
    assert_eq!(wrong["code"], "invalid_frame", "{wrong}");
}

#[tokio::test]
async fn a_moderators_mute_stops_the_sfu_forwarding_until_the_participant_unmutes() {
    let server = TestServer::with_media(CallsConfig {
        mesh_max: 0,
        ..Default::default()
    })
    .await;
    let (users, mut c, room) = people(&server, 2).await;
    let mut ids = Vec::new();
    let mut call_id = Value::Null;
    for client in c.iter_mut() {
        let joined = join_call(client, &room).await;
        call_id = joined["call_id"].clone();
        ids.push(joined["participant_id"].clone());
    }
    // The member speaks, the owner listens.
    let (owner, member) = c.split_at_mut(1);
    let mut path = common::sfu_audio_reaches(&mut member[0], &mut [&mut owner[0]], &call_id).await;
    let ack = c[0]
        .request(
            json!({"type": "call.moderate", "call_id": call_id, "participant_id": ids[1],
            "action": "mute_audio"}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(c[1].next_of("call.mute").await["by"], users[0].id.as_str());
    assert_eq!(
        path.speak(b"muted#", 20).await,
        0,
        "nothing of a muted microphone is forwarded"
    );

    let ack = c[1]
        .request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": false}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        path.speak(b"back#", 20).await,
        20,
        "unmuted, every packet is forwarded"
    );

    // The owner's network changes: she restarts ICE on her receiving
    // connection, the server offers new credentials, and audio goes on.
    let before = c[0].drain(Duration::from_millis(100)).await;
    let old = before
        .iter()
        .rev()
        .find(|f| f["type"] == "sfu.offer")
        .cloned();
    let ack = c[0]
        .request(json!({"type": "sfu.restart", "call_id": call_id}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let offer = c[0].next_of("sfu.offer").await;
    let ufrag = |f: &Value| roost_media::client::ice_credentials(f["sdp"].as_str().unwrap());
    if let Some(old) = old {
        assert_ne!(ufrag(&old), ufrag(&offer), "new credentials");
    }
    let answer = path.answer(0, &offer).await;
    let ack = c[0]
        .request(json!({"type": "sfu.answer", "call_id": call_id, "sdp": answer}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // The client checks again with the new credentials, and hears on.
    let mut heard = 0;
    for _ in 0..10 {
        heard = path.speak(b"moved#", 20).await;
        if heard == 20 {
            break;
        }
    }
    assert_eq!(heard, 20, "after the restart, every packet");
}

#[tokio::test]
async fn a_dropped_socket_keeps_its_place_for_a_new_one_to_resume() {
    let server = TestServer::with_media(CallsConfig {
        reconnect_grace: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let (users, mut c, room) = people(&server, 3).await;
    let mut ids = Vec::new();
    let mut call_id = Value::Null;
    for client in c.iter_mut() {
        let joined = join_call(client, &room).await;
        call_id = joined["call_id"].clone();
        ids.push(joined["participant_id"].clone());
    }
    for client in c.iter_mut() {
        client.drain(Duration::from_millis(200)).await;
    }

    // Bob's socket drops without a close (his network changed).
    drop(c.remove(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.gateway.calls.participants(),
        3,
        "bob keeps his place"
    );
    // Meanwhile ada offers to him: it waits for him.
    let ack = c[0]
        .request(json!({"type": "call.offer", "call_id": call_id, "to": ids[1], "sdp": "v=0 while away"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Another user cannot take his place; a socket in a call cannot take a
    // second one; bob's new socket does.
    let mut stranger = c.remove(1);
    let resume = json!({"type": "call.resume", "room_id": room, "call_id": call_id, "participant_id": ids[1]});
    let (mut cyd_again, _) = server.join(&users[2], json!({})).await;
    let taken = cyd_again.request(resume.clone()).await;
    assert_eq!(taken["code"], "not_found", "{taken}");
    let second = stranger.request(resume).await;
    assert_eq!(second["code"], "already_in_call", "{second}");
    let (mut bob, _) = server.join(&users[1], json!({})).await;
    let resumed = bob
        .request(json!({"type": "call.resume", "room_id": room, "call_id": call_id, "participant_id": ids[1]}))
        .await;
    assert_eq!(resumed["type"], "ack", "{resumed}");
    assert_eq!(resumed["result"]["participant_id"], ids[1]);
    assert_eq!(resumed["result"]["topology"], "mesh");
    assert_eq!(
        resumed["result"]["participants"].as_array().unwrap().len(),
        2
    );
    let offer = bob.next_of("call.offer").await;
    assert_eq!(
        (&offer["from"], &offer["sdp"]),
        (&ids[0], &json!("v=0 while away")),
        "what waited for him comes"
    );
    // He speaks for his place in the call, and nobody saw him leave.
    bob.request(json!({"type": "call.mute", "call_id": call_id, "kind": "audio", "muted": true}))
        .await;
    let heard = c[0].drain(Duration::from_millis(300)).await;
    assert!(
        heard.iter().all(|f| f["type"] != "call.participant_left"),
        "{heard:?}"
    );
    let muted = heard
        .iter()
        .find(|f| f["type"] == "call.mute")
        .expect("his mute is heard");
    assert_eq!(muted["participant_id"], ids[1]);

    // A socket closed by its client leaves at once.
    bob.close().await;
    let left = c[0].next_of("call.participant_left").await;
    assert_eq!(left["participant_id"], ids[1]);

    // One that drops and does not come back leaves when the grace ends.
    drop(stranger);
    let left = tokio::time::timeout(
        Duration::from_secs(5),
        c[0].next_of("call.participant_left"),
    )
    .await
    .expect("cyd leaves once the grace is over");
    assert_eq!(left["participant_id"], ids[2]);
    let late = c[0]
        .request(json!({"type": "call.leave", "call_id": call_id}))
        .await;
    assert_eq!(late["type"], "ack");
}

#[tokio::test]
async fn a_participant_whose_media_the_engine_gave_up_on_comes_back_with_new_connections() {
    let server = TestServer::with_media_quick(
        CallsConfig {
            mesh_max: 0,
            ..Default::default()
        },
        true,
    )
    .await;
    let (_, mut c, room) = people(&server, 2).await;
    let mut call_id = Value::Null;
    for client in c.iter_mut() {
        call_id = join_call(client, &room).await["call_id"].clone();
    }
    let (listener, speaker) = c.split_at_mut(1);
    let path = common::sfu_audio_reaches(&mut speaker[0], &mut [&mut listener[0]], &call_id).await;
    path.silence_speaker();
    // The engine gives up on the silent connections; the call keeps her.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let restart = c[1]
            .request(json!({"type": "sfu.restart", "call_id": call_id}))
            .await;
        if restart["code"] == "not_on_sfu" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine never gave up: {restart}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(server.gateway.calls.participants(), 2);
    // Her old connection cannot come back: it would be one the server forgot.
    let old = c[1]
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": path.offer}))
        .await;
    assert_eq!(old["code"], "not_on_sfu", "{old}");

    // A new sending connection brings her back.
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let voice = roost_media::client::Client::start(loopback, Some(roost_media::Kind::Audio))
        .await
        .unwrap();
    let offer = voice.offer().await.unwrap();
    let ack = c[1]
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": offer}))
        .await;
    assert_eq!(ack["result"]["type"], "answer", "{ack}");
    let mut voice = voice;
    voice
        .accept_answer(ack["result"]["sdp"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert!(voice.connected(Duration::from_secs(10)).await);
    drop(path);
}
