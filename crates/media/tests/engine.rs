//! The engine with real WebRTC clients (`rtc` peers, full ICE, DTLS-SRTP)
//! over loopback: forwarding, keyframe requests for late joiners, and
//! retransmission of lost packets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_media::client::{Client, ClientEvent};
use roost_media::{Engine, EngineConfig, EngineEvent, Kind, OfferedTrack, Source, Subscription};
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn client(send: Option<Kind>) -> Client {
    Client::start(LOOPBACK, send)
        .await
        .expect("a client on loopback")
}

async fn engine() -> (Engine, UnboundedReceiver<EngineEvent>) {
    Engine::start(EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("the engine starts")
}

/// An engine that gives up on a silent peer after 3 s: shorter than the
/// default, longer than the clients' keepalives and reports.
async fn engine_with_short_liveness() -> (Engine, UnboundedReceiver<EngineEvent>) {
    Engine::start(EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        peer_disconnected: Duration::from_secs(2),
        peer_failed: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .expect("the engine starts")
}

/// A numbered payload: a marker, the number, and filler to a realistic size.
fn numbered(n: u32, size: usize) -> Bytes {
    let mut p = b"roost#".to_vec();
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(size.max(10), 0xAB);
    Bytes::from(p)
}

fn number_of(payload: &[u8]) -> Option<u32> {
    let rest = payload.strip_prefix(b"roost#")?;
    Some(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?))
}

/// A publisher in the call: its publisher connection is negotiated and up.
async fn publisher(engine: &Engine, call: Uuid, kind: Kind) -> (Uuid, Client) {
    let id = Uuid::new_v4();
    engine.join(call, id).await.unwrap();
    let mut client = client(Some(kind)).await;
    let offer = client.offer().await.unwrap();
    let answer = engine.publish(id, offer).await.expect("the engine answers");
    client.accept_answer(answer).await.unwrap();
    assert!(
        client.connected(Duration::from_secs(10)).await,
        "the publisher connects"
    );
    (id, client)
}

/// Answers every subscriber offer the engine makes until each of `clients`
/// has answered at least once, while `tick` runs between checks (a publisher
/// keeps sending so its track opens). Returns when each answered, and the
/// last offer each was made.
async fn negotiate(
    engine: &Engine,
    events: &mut UnboundedReceiver<EngineEvent>,
    clients: &HashMap<Uuid, Client>,
    tick: impl FnMut(),
) -> HashMap<Uuid, Instant> {
    negotiate_offers(engine, events, clients, tick).await.0
}

async fn negotiate_offers(
    engine: &Engine,
    events: &mut UnboundedReceiver<EngineEvent>,
    clients: &HashMap<Uuid, Client>,
    mut tick: impl FnMut(),
) -> (HashMap<Uuid, Instant>, HashMap<Uuid, String>) {
    let mut answered = HashMap::new();
    let mut offers = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.len() < clients.len() {
        assert!(Instant::now() < deadline, "offers did not come");
        tick();
        while let Ok(event) = events.try_recv() {
            if let EngineEvent::SubscriberOffer {
                participant, sdp, ..
            } = event
            {
                if let Some(client) = clients.get(&participant) {
                    let answer = client.answer(sdp.clone()).await.unwrap();
                    engine.subscriber_answer(participant, answer).await.unwrap();
                    answered.insert(participant, Instant::now());
                    offers.insert(participant, sdp);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (answered, offers)
}

/// A client sends its first check as soon as it has the answer: the engine
/// routes the new connection before the answer comes back, so not one
/// datagram of the connection is dropped.
#[tokio::test]
async fn a_new_connection_is_routed_before_its_answer_comes_back() {
    let (engine, _events) = engine().await;
    let (_, _client) = publisher(&engine, Uuid::new_v4(), Kind::Audio).await;
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.peers, 2, "a subscriber and a publisher connection");
    assert_eq!(stats.datagrams_dropped, 0, "no datagram was dropped");
}

#[tokio::test]
async fn every_subscriber_receives_every_packet_in_order_under_its_own_ssrc() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let (_, publisher) = publisher(&engine, call, Kind::Audio).await;
    let mut subscribers = HashMap::new();
    for _ in 0..2 {
        let id = Uuid::new_v4();
        engine.join(call, id).await.unwrap();
        subscribers.insert(id, client(None).await);
    }

    // Warm-up packets open the track; the engine then offers it to the others.
    // Close to the wrap, so the numbered packets below cross it.
    let mut seq: u16 = 65_200;
    let mut ts: u32 = u32::MAX - 100_000;
    negotiate(&engine, &mut events, &subscribers, || {
        publisher.send(seq, ts, Bytes::from_static(b"warm-up"));
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(960);
    })
    .await;
    for client in subscribers.values_mut() {
        assert!(client.connected(Duration::from_secs(10)).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 300 numbered Opus-sized packets, across the sequence-number and timestamp wraps.
    for n in 0..300u32 {
        publisher.send(seq, ts, numbered(n, 160));
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(960);
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    for (id, client) in subscribers.iter_mut() {
        let mut got: Vec<(u32, u32, u16, u32)> = Vec::new();
        while got.len() < 300 {
            match client.next(Duration::from_secs(5)).await {
                Some(ClientEvent::Rtp { packet, .. }) => {
                    if let Some(n) = number_of(&packet.payload) {
                        assert_eq!(packet.payload, numbered(n, 160), "payload intact");
                        got.push((n, packet.ssrc, packet.seq, packet.ts));
                    }
                }
                Some(_) => {}
                None => panic!("{id} received {} of 300 packets", got.len()),
            }
        }
        let numbers: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            numbers,
            (0..300).collect::<Vec<_>>(),
            "every packet, once, in order"
        );
        let ssrc = got[0].1;
        assert_ne!(Some(ssrc), publisher.ssrc, "the subscriber's own SSRC");
        for pair in got.windows(2) {
            assert_eq!(pair[1].1, ssrc, "one SSRC throughout");
            assert_eq!(
                pair[1].2,
                pair[0].2.wrapping_add(1),
                "sequence numbers run on"
            );
            assert_eq!(
                pair[1].3.wrapping_sub(pair[0].3),
                960,
                "timestamps keep their spacing"
            );
        }
    }
    let stats = engine.stats().await.unwrap();
    assert!(stats.packets_forwarded >= 600, "{stats:?}");
}

/// A video publisher whose track is open (its first packets came) and
/// whose early events are drained; nobody watches it yet.
async fn open_video_track(engine: &Engine, call: Uuid) -> Client {
    let (_, mut publisher) = publisher(engine, call, Kind::Video).await;
    for i in 0..10u16 {
        publisher.send(1 + i, 3000 * u32::from(i), numbered(0, 1200));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while publisher.next(Duration::from_millis(200)).await.is_some() {}
    publisher
}

#[tokio::test]
async fn a_late_joiners_keyframe_is_requested_once_its_connection_is_up() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let mut publisher = open_video_track(&engine, call).await;

    let late = Uuid::new_v4();
    engine.join(call, late).await.unwrap();
    let mut clients = HashMap::new();
    clients.insert(late, client(None).await);
    negotiate(&engine, &mut events, &clients, || {}).await;
    assert!(
        clients
            .get_mut(&late)
            .unwrap()
            .connected(Duration::from_secs(10))
            .await
    );
    let connected = Instant::now();
    // Arrival times are taken by the publisher's task as requests come.
    let requested = loop {
        match publisher.next(Duration::from_secs(2)).await {
            Some(ClientEvent::KeyframeRequested { at }) => break at,
            Some(_) => continue,
            None => panic!("no keyframe request reached the publisher"),
        }
    };
    // A request made before the joiner could decrypt would be wasted: its
    // keyframe would come and go before the joiner's connection was up.
    assert!(
        requested + Duration::from_millis(100) >= connected,
        "keyframe requested {:?} before the joiner's connection was up",
        connected.saturating_duration_since(requested)
    );
    assert!(
        requested < connected + Duration::from_millis(200),
        "keyframe requested {:?} after the joiner's connection was up",
        requested.saturating_duration_since(connected)
    );
}

#[tokio::test]
async fn a_lost_packet_is_resent_when_the_subscriber_asks() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let (_, publisher) = publisher(&engine, call, Kind::Video).await;
    let sub = Uuid::new_v4();
    engine.join(call, sub).await.unwrap();
    let mut clients = HashMap::new();
    clients.insert(sub, client(None).await);
    let mut seq: u16 = 100;
    let mut ts: u32 = 0;
    let (_, offers) = negotiate_offers(&engine, &mut events, &clients, || {
        publisher.send(seq, ts, Bytes::from_static(b"warm-up"));
        seq += 1;
        ts += 3000;
    })
    .await;
    // The video is offered with a retransmission stream (RFC 4588), which the client takes.
    let offer = &offers[&sub];
    assert!(
        offer.contains("a=ssrc-group:FID ") && offer.contains(" rtx/90000"),
        "the offer pairs the video with an RTX stream:\n{offer}"
    );
    // AV1 is offered with AV1's parameters, not VP9's `profile-id`.
    let av1 = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" AV1/90000"))
        .expect("AV1 in the offer");
    let av1_fmtp = format!("a=fmtp:{av1} ");
    assert!(
        !offer
            .lines()
            .any(|l| l.starts_with(&av1_fmtp) && l.contains("profile-id")),
        "AV1 offered with VP9's parameter:\n{offer}"
    );
    let vp8: u8 = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" VP8/90000"))
        .and_then(|pt| pt.parse().ok())
        .expect("VP8 in the offer");
    let client = clients.get_mut(&sub).unwrap();
    assert!(client.connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while client.next(Duration::from_millis(100)).await.is_some() {}

    // The subscriber's network loses one of the next packets.
    client.lose(1);
    for n in 0..40u32 {
        publisher.send(seq, ts, numbered(n, 1200));
        seq += 1;
        ts += 3000;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got = std::collections::BTreeMap::new();
    let mut stream = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 39 && Instant::now() < deadline {
        if let Some(ClientEvent::Rtp { packet, track, .. }) =
            client.next(Duration::from_millis(500)).await
        {
            if let Some(n) = number_of(&packet.payload) {
                got.insert(n, packet.seq);
                assert_eq!(
                    packet.payload_type, vp8,
                    "sent with the payload type the offer gave VP8"
                );
                stream = track;
            }
        }
    }
    assert_eq!(got.len(), 39, "all but the lost packet arrive: {got:?}");
    assert!(!got.contains_key(&0), "the first numbered packet was lost");

    // The subscriber asks for it again, by its rewritten sequence number.
    client.nack(stream, got[&1].wrapping_sub(1));
    let resent = loop {
        match client.next(Duration::from_secs(2)).await {
            Some(ClientEvent::Rtp { packet, .. }) if number_of(&packet.payload) == Some(0) => {
                break packet.seq
            }
            Some(_) => continue,
            None => panic!("the NACKed packet was not resent"),
        }
    };
    assert_eq!(
        resent,
        got[&1].wrapping_sub(1),
        "resent under its own number"
    );
}

#[tokio::test]
async fn audio_levels_tell_who_speaks_at_a_bounded_rate() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let (speaker, publisher) = publisher(&engine, call, Kind::Audio).await;
    let mut seq: u16 = 1;
    let mut speak = |level: u8, packets: u32| {
        for _ in 0..packets {
            publisher.send_with_level(seq, u32::from(seq) * 960, vec![0xF8; 60], Some(level));
            seq = seq.wrapping_add(1);
        }
    };
    // Loud (-20 dBov) for a second, in 20 ms packets.
    let mut announced = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        speak(20, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(e) = events.try_recv() {
            if let EngineEvent::Speaking { call: c, speakers } = e {
                assert_eq!(c, call);
                announced.push((started.elapsed(), speakers));
            }
        }
    }
    assert!(!announced.is_empty(), "the speaker was announced");
    assert_eq!(announced[0].1.len(), 1);
    assert_eq!(announced[0].1[0].0, speaker);
    assert!(
        announced[0].1[0].1 >= 100,
        "loudness {}",
        announced[0].1[0].1
    );
    assert_eq!(
        announced.len(),
        1,
        "one announcement while nothing changes: {announced:?}"
    );

    // Silence: the turn ends, announced once.
    for _ in 0..50 {
        speak(127, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut after = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EngineEvent::Speaking { speakers, .. } = e {
            after.push(speakers);
        }
    }
    assert_eq!(after, vec![vec![]], "the end of the turn, once");
}

#[tokio::test]
async fn a_microphone_a_moderator_stopped_is_not_announced_as_speaking() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let (speaker, publisher) = publisher(&engine, call, Kind::Audio).await;
    let mut seq: u16 = 1;
    // Loud for `ms`, in 20 ms packets: the speakers announced meanwhile.
    let mut speak = async |ms: u32| {
        let mut announced = Vec::new();
        for _ in 0..ms / 20 {
            publisher.send_with_level(seq, u32::from(seq) * 960, vec![0xF8; 60], Some(20));
            seq = seq.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(e) = events.try_recv() {
                if let EngineEvent::Speaking { speakers, .. } = e {
                    announced.push(speakers.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
                }
            }
        }
        announced
    };
    assert_eq!(speak(1000).await, vec![vec![speaker]]);
    engine.stop_forwarding(speaker, &[Source::Microphone], true);
    assert_eq!(
        speak(1000).await,
        vec![Vec::<Uuid>::new()],
        "stopped, it is heard by no one, and nobody is said to speak"
    );
    engine.stop_forwarding(speaker, &[Source::Microphone], false);
    assert_eq!(speak(1000).await, vec![vec![speaker]]);
}

/// A video publisher and `n` subscribers, negotiated and connected, the
/// publisher's early keyframe requests drained.
async fn video_call(
    engine: &Engine,
    events: &mut UnboundedReceiver<EngineEvent>,
    n: usize,
) -> (Uuid, Client, HashMap<Uuid, Client>, u16) {
    let call = Uuid::new_v4();
    let (publisher_id, mut publisher) = publisher(engine, call, Kind::Video).await;
    let mut subs = HashMap::new();
    for _ in 0..n {
        let id = Uuid::new_v4();
        engine.join(call, id).await.unwrap();
        subs.insert(id, client(None).await);
    }
    let mut seq: u16 = 1;
    negotiate(engine, events, &subs, || {
        publisher.send(seq, u32::from(seq) * 3000, numbered(0, 1000));
        seq += 1;
    })
    .await;
    for s in subs.values_mut() {
        assert!(s.connected(Duration::from_secs(10)).await);
    }
    // The new subscribers' own requests (the second held 350 ms after the
    // first), then the merge interval after them.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while publisher.next(Duration::from_millis(100)).await.is_some() {}
    (publisher_id, publisher, subs, seq)
}

#[tokio::test]
async fn subscribers_keyframe_requests_reach_the_publisher_merged() {
    let (engine, mut events) = engine().await;
    let (_, mut publisher, mut subs, mut seq) = video_call(&engine, &mut events, 2).await;
    // Each subscriber learns its track's id from a packet, then asks ten times at once.
    let mut tracks = Vec::new();
    for s in subs.values_mut() {
        publisher.send(seq, u32::from(seq) * 3000, numbered(1, 1000));
        seq += 1;
        loop {
            match s.next(Duration::from_secs(2)).await {
                Some(ClientEvent::Rtp { track, .. }) => break tracks.push(track),
                Some(_) => continue,
                None => panic!("no packet reached a subscriber"),
            }
        }
    }
    for (s, track) in subs.values().zip(&tracks) {
        for _ in 0..10 {
            s.request_keyframe(track.clone());
        }
    }
    let mut requests = 0;
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        if let Some(ClientEvent::KeyframeRequested { .. }) =
            publisher.next(Duration::from_millis(50)).await
        {
            requests += 1;
        }
    }
    assert!(
        (1..=2).contains(&requests),
        "20 requests within 400 ms reach the publisher as {requests}"
    );
}

/// The ICE ufrag of a session description.
fn ufrag(sdp: &str) -> String {
    roost_media::client::ice_credentials(sdp)
        .expect("ICE credentials")
        .0
}

#[tokio::test]
async fn both_connections_restart_ice_and_media_follows_a_client_that_moved() {
    let (engine, mut events) = engine_with_short_liveness().await;
    let (publisher_id, publisher, mut subs, mut seq) = video_call(&engine, &mut events, 1).await;
    let (&sub_id, sub) = subs.iter_mut().next().unwrap();

    // The publisher's side: a new offer with new credentials is answered
    // with new ones; a new offer with the same is answered with the same.
    let offer = publisher.offer().await.unwrap();
    let same = engine.publish(publisher_id, offer).await.unwrap();
    publisher.accept_answer(same.clone()).await.unwrap();
    publisher.restart_ice();
    let offer = publisher.offer().await.unwrap();
    let restarted = engine.publish(publisher_id, offer).await.unwrap();
    assert_ne!(
        ufrag(&restarted),
        ufrag(&same),
        "an ICE restart gets new credentials"
    );
    publisher.accept_answer(restarted).await.unwrap();

    // The subscriber's side: the server offers new credentials.
    engine.restart_ice(sub_id).await.unwrap();
    let offer = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(EngineEvent::SubscriberOffer {
                participant, sdp, ..
            })) if participant == sub_id => {
                break sdp;
            }
            Ok(Some(_)) => continue,
            _ => panic!("no offer restarting ICE came"),
        }
    };
    let answer = sub.answer(offer).await.unwrap();
    engine
        .subscriber_answer(sub_id, answer)
        .await
        .expect("the client's new credentials are taken");
    assert!(engine.restart_ice(Uuid::new_v4()).await.is_err());

    // Both move to new ports, and check with their new credentials only.
    publisher.move_to_new_port();
    sub.move_to_new_port();
    let started = Instant::now();
    let mut n = 100u32;
    while started.elapsed() < Duration::from_secs(4) {
        publisher.send(seq, u32::from(seq) * 3000, numbered(n, 1000));
        seq = seq.wrapping_add(1);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(EngineEvent::Disconnected { participant }) = events.try_recv() {
            panic!("{participant} was dropped after an ICE restart");
        }
    }
    let mut got = Vec::new();
    while let Some(e) = sub.next(Duration::from_millis(200)).await {
        if let ClientEvent::Rtp { packet, .. } = e {
            if let Some(k) = number_of(&packet.payload) {
                got.push(k);
            }
        }
    }
    let late = got.iter().filter(|&&k| k + 50 >= n).count();
    assert!(
        late >= 40,
        "the last 50 packets arrive over the new paths: {late}"
    );
}

#[tokio::test]
async fn a_client_that_moves_to_another_path_stays_and_keeps_receiving() {
    // A browser with two working paths to the server may nominate the other
    // one mid-call and move its traffic there: the engine follows it.
    let (engine, mut events) = engine_with_short_liveness().await;
    let (_, publisher, mut subs, mut seq) = video_call(&engine, &mut events, 2).await;
    let ids: Vec<Uuid> = subs.keys().copied().collect();
    let mover = subs.get_mut(&ids[0]).unwrap();
    mover.move_to_new_port();
    while mover.next(Duration::from_millis(50)).await.is_some() {}
    // Longer than peer_disconnected + peer_failed: the old path is silent all along.
    let started = Instant::now();
    let mut n = 100u32;
    while started.elapsed() < Duration::from_secs(5) {
        publisher.send(seq, u32::from(seq) * 3000, numbered(n, 1000));
        seq += 1;
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(EngineEvent::Disconnected { participant }) = events.try_recv() {
            panic!("{participant} was dropped after a client moved");
        }
    }
    let mut got = Vec::new();
    while let Some(e) = mover.next(Duration::from_millis(200)).await {
        if let ClientEvent::Rtp { packet, .. } = e {
            if let Some(k) = number_of(&packet.payload) {
                got.push(k);
            }
        }
    }
    let late = got.iter().filter(|&&k| k + 50 >= n).count();
    assert!(
        late >= 20,
        "the moved client received {} packets, {late} of the last 50 sent",
        got.len()
    );
    assert_eq!(engine.stats().await.unwrap().participants, 3);
}

#[tokio::test]
async fn a_peer_that_vanishes_leaves_and_the_others_go_on() {
    let (engine, mut events) = engine_with_short_liveness().await;
    let (_, publisher, mut subs, mut seq) = video_call(&engine, &mut events, 2).await;
    let ids: Vec<Uuid> = subs.keys().copied().collect();
    let gone = ids[0];
    subs[&gone].vanish();
    let started = Instant::now();
    let left = loop {
        publisher.send(seq, u32::from(seq) * 3000, numbered(2, 1000));
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        match events.try_recv() {
            Ok(EngineEvent::Disconnected { participant }) => break participant,
            _ => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the vanished peer was never noticed"
            ),
        }
    };
    assert_eq!(left, gone);
    assert_eq!(engine.stats().await.unwrap().participants, 2);
    // The one still there keeps receiving.
    let stays = subs.get_mut(&ids[1]).unwrap();
    while stays.next(Duration::from_millis(50)).await.is_some() {}
    for n in 0..20u32 {
        publisher.send(seq, u32::from(seq) * 3000, numbered(100 + n, 1000));
        seq += 1;
    }
    let mut got = 0;
    while let Some(e) = stays.next(Duration::from_secs(2)).await {
        if let ClientEvent::Rtp { packet, .. } = e {
            if number_of(&packet.payload).is_some_and(|n| n >= 100) {
                got += 1;
                if got == 20 {
                    break;
                }
            }
        }
    }
    assert_eq!(got, 20);
}

#[tokio::test]
async fn calls_on_different_loops_each_get_only_their_own_media() {
    let (engine, mut events) = Engine::start(EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        loops: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    // Two calls, each a publisher and a subscriber; the second call goes to the idle loop.
    let mut calls = Vec::new();
    let mut subscribers = HashMap::new();
    for _ in 0..2 {
        let call = Uuid::new_v4();
        let (_, publisher) = publisher(&engine, call, Kind::Audio).await;
        let id = Uuid::new_v4();
        engine.join(call, id).await.unwrap();
        subscribers.insert(id, client(None).await);
        calls.push((id, publisher));
    }
    let mut seq = 1u16;
    negotiate(&engine, &mut events, &subscribers, || {
        for (_, publisher) in &calls {
            publisher.send(seq, u32::from(seq) * 960, Bytes::from_static(b"warm-up"));
        }
        seq = seq.wrapping_add(1);
    })
    .await;
    for client in subscribers.values_mut() {
        assert!(client.connected(Duration::from_secs(10)).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Call i numbers its packets from i * 1000.
    for n in 0..100u32 {
        for (i, (_, publisher)) in calls.iter().enumerate() {
            publisher.send(
                seq,
                u32::from(seq) * 960,
                numbered(i as u32 * 1000 + n, 160),
            );
        }
        seq = seq.wrapping_add(1);
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for (i, (id, _)) in calls.iter().enumerate() {
        let client = subscribers.get_mut(id).unwrap();
        let mut got = Vec::new();
        while got.len() < 100 {
            match client.next(Duration::from_secs(5)).await {
                Some(ClientEvent::Rtp { packet, .. }) => got.extend(number_of(&packet.payload)),
                Some(_) => {}
                None => panic!("call {i}'s subscriber received {} of 100", got.len()),
            }
        }
        let base = i as u32 * 1000;
        assert_eq!(
            got,
            (base..base + 100).collect::<Vec<_>>(),
            "call {i}: its own packets, in order"
        );
    }
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.loops, stats.participants), (2, 4), "{stats:?}");
}

/// A call larger than a loop spreads over two: the publisher's loop hands
/// each packet to the other once, and the viewers of both receive every
/// packet; a viewer on the other loop has its keyframe request reach the
/// publisher.
#[tokio::test]
async fn a_call_spread_over_two_loops_reaches_every_viewer_on_either() {
    let (engine, mut events) = Engine::start(EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        loops: 2,
        spread_after: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let call = Uuid::new_v4();
    let (_, mut publisher) = publisher(&engine, call, Kind::Video).await;
    // Two on the publisher's loop (it and the first viewer), then the other loop.
    let mut viewers = HashMap::new();
    let mut joined = Vec::new();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        engine.join(call, id).await.unwrap();
        viewers.insert(id, client(None).await);
        joined.push(id);
    }
    let mut seq: u16 = 1;
    negotiate(&engine, &mut events, &viewers, || {
        publisher.send(seq, u32::from(seq) * 3000, numbered(0, 1000));
        seq += 1;
    })
    .await;
    for v in viewers.values_mut() {
        assert!(v.connected(Duration::from_secs(10)).await);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while publisher.next(Duration::from_millis(100)).await.is_some() {}
    for v in viewers.values_mut() {
        while v.events.try_recv().is_ok() {}
    }
    let before = engine.stats().await.unwrap();

    for n in 1..=300u32 {
        publisher.send(seq, u32::from(seq) * 3000, numbered(n, 1000));
        seq = seq.wrapping_add(1);
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut tracks = HashMap::new();
    for (id, v) in viewers.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 300 {
            match v.next(Duration::from_secs(5)).await {
                Some(ClientEvent::Rtp { packet, track, .. }) => {
                    got.extend(number_of(&packet.payload).filter(|&n| n > 0));
                    tracks.insert(*id, track);
                }
                Some(_) => {}
                None => panic!("{id} received {} of 300", got.len()),
            }
        }
        assert_eq!(got, (1..=300).collect::<Vec<_>>(), "every packet, in order");
    }
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.participants, stats.tracks), (4, 1), "{stats:?}");
    assert!(
        (300..400).contains(&(stats.packets_relayed - before.packets_relayed)),
        "each packet crossed to the other loop once: {stats:?}"
    );

    // The viewers on the other loop ask: the publisher hears.
    for id in &joined[1..] {
        viewers[id].request_keyframe(tracks[id].clone());
    }
    let asked = loop {
        match publisher.next(Duration::from_secs(2)).await {
            Some(ClientEvent::KeyframeRequested { .. }) => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(
        asked,
        "the other loop's keyframe requests reached the publisher"
    );
}

/// What a subscriber received of the numbered packets from `first` on:
/// copies of each number (originals and resent ones) and payload bytes.
#[derive(Default)]
struct Received {
    copies: HashMap<u32, usize>,
    /// The subscriber's sequence number of each.
    seqs: HashMap<u32, u16>,
    /// Sequence numbers as they first came, and when.
    arrivals: Vec<(u16, Instant)>,
    packets: usize,
    bytes: usize,
    track: Option<String>,
}

impl Received {
    fn take(&mut self, client: &mut Client, first: u32) {
        while let Ok(event) = client.events.try_recv() {
            if let ClientEvent::Rtp { packet, track, at } = event {
                let Some(n) = number_of(&packet.payload).filter(|&n| n >= first) else {
                    continue;
                };
                self.packets += 1;
                self.bytes += packet.payload.len();
                let copies = self.copies.entry(n).or_default();
                *copies += 1;
                if *copies == 1 {
                    self.seqs.insert(n, packet.seq);
                    self.arrivals.push((packet.seq, at));
                }
                self.track = Some(track);
            }
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_nacks_everything_gets_little_more_than_the_stream() {
    // A subscriber that asks again for every packet it has had, over and
    // over, must not turn the server into an amplifier aimed at its link;
    // an honest subscriber in the same call still has its loss repaired.
    let (engine, mut events) = engine().await;
    let (_, publisher, mut subs, mut seq) = video_call(&engine, &mut events, 2).await;
    let ids: Vec<Uuid> = subs.keys().copied().collect();
    let (abuser, honest) = (ids[0], ids[1]);
    for s in subs.values_mut() {
        while s.next(Duration::from_millis(50)).await.is_some() {}
    }
    subs[&honest].lose(1);

    // Two seconds of 1,200-byte packets every 10 ms (about 1 Mbit/s); every
    // 20 ms the abuser asks for every packet of the last second again.
    const FIRST: u32 = 1_000;
    const SIZE: usize = 1_200;
    let mut sent = 0usize;
    let mut abused = Received::default();
    let mut repaired = Received::default();
    let started = Instant::now();
    let mut tick = 0u32;
    while started.elapsed() < Duration::from_secs(2) {
        publisher.send(
            seq,
            u32::from(seq) * 3000,
            numbered(FIRST + sent as u32, SIZE),
        );
        sent += 1;
        seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        abused.take(subs.get_mut(&abuser).unwrap(), FIRST);
        repaired.take(subs.get_mut(&honest).unwrap(), FIRST);
        tick += 1;
        if tick % 2 == 0 {
            if let Some(track) = abused.track.clone() {
                let recent: Vec<u16> = abused
                    .arrivals
                    .iter()
                    .filter(|(_, at)| at.elapsed() < Duration::from_secs(1))
                    .map(|(s, _)| *s)
                    .collect();
                subs[&abuser].nack_all(track, recent);
            }
        }
    }
    // The honest subscriber lost the first packet; it asks for it once.
    assert!(
        !repaired.copies.contains_key(&FIRST),
        "the first packet was lost"
    );
    let lost = repaired.seqs[&(FIRST + 1)].wrapping_sub(1);
    subs[&honest].nack(repaired.track.clone().unwrap(), lost);
    tokio::time::sleep(Duration::from_millis(500)).await;
    abused.take(subs.get_mut(&abuser).unwrap(), FIRST);
    repaired.take(subs.get_mut(&honest).unwrap(), FIRST);

    let stream_bytes = sent * SIZE;
    let extra = abused.packets.saturating_sub(sent);
    eprintln!(
        "publisher sent {sent} packets ({stream_bytes} bytes); the abuser received {} packets \
         ({} bytes, {extra} beyond the stream); the honest subscriber {} packets",
        abused.packets, abused.bytes, repaired.packets
    );
    // The default share is 30 % of what was sent over the last second, plus a
    // burst of about ten packets; the stream lasts two such windows.
    assert!(
        abused.bytes <= stream_bytes + stream_bytes * 35 / 100 + 30 * SIZE,
        "the abuser received {} bytes for a stream of {stream_bytes}",
        abused.bytes
    );
    assert_eq!(
        repaired.copies.get(&FIRST),
        Some(&1),
        "the honest subscriber's lost packet is resent, once"
    );
}

/// The numbers and sequence numbers of the packets `client` receives
/// within `wait`.
async fn received(client: &mut Client, wait: Duration) -> Vec<(Option<u32>, u16)> {
    let mut got = Vec::new();
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.next(left).await {
            Some(ClientEvent::Rtp { packet, .. }) => {
                let number =
                    number_of(&packet.payload).or_else(|| number_of(packet.payload.get(2..)?));
                got.push((number, packet.seq));
            }
            Some(_) => continue,
            None => break,
        }
    }
    got
}

#[tokio::test]
async fn a_paused_track_is_not_sent_and_resumes_at_a_keyframe_without_a_gap() {
    let (engine, mut events) = engine().await;
    let (publisher_id, mut publisher, mut subs, mut seq) =
        video_call(&engine, &mut events, 2).await;
    let ids: Vec<Uuid> = subs.keys().copied().collect();
    let (pausing, watching) = (ids[0], ids[1]);
    let mut send = |publisher: &Client, payload: Bytes| {
        publisher.send(seq, u32::from(seq) * 3000, payload);
        seq = seq.wrapping_add(1);
    };
    send(&publisher, numbered(1, 1000));
    let before = received(subs.get_mut(&pausing).unwrap(), Duration::from_millis(300)).await;
    let last_seq = before.last().expect("a packet before the pause").1;
    while subs
        .get_mut(&watching)
        .unwrap()
        .next(Duration::from_millis(100))
        .await
        .is_some()
    {}

    engine
        .set_subscription(pausing, publisher_id, Source::Camera, pausing_with(true))
        .await
        .unwrap();
    for n in 100..120 {
        send(&publisher, numbered(n, 1000));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let paused = received(subs.get_mut(&pausing).unwrap(), Duration::from_millis(400)).await;
    assert_eq!(paused, vec![], "nothing reaches the subscriber that paused");
    let watched = received(subs.get_mut(&watching).unwrap(), Duration::from_millis(100)).await;
    assert_eq!(watched.len(), 20, "the other subscriber gets every packet");
    assert!(
        engine
            .set_subscription(pausing, Uuid::new_v4(), Source::Camera, pausing_with(true))
            .await
            .is_ok(),
        "a publisher not in the call yet is kept for later"
    );
    assert!(engine
        .set_subscription(
            Uuid::new_v4(),
            publisher_id,
            Source::Camera,
            pausing_with(true)
        )
        .await
        .is_err());

    engine
        .set_subscription(pausing, publisher_id, Source::Camera, pausing_with(false))
        .await
        .unwrap();
    let asked = loop {
        match publisher.next(Duration::from_secs(1)).await {
            Some(ClientEvent::KeyframeRequested { .. }) => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(asked, "resuming asks the publisher for a keyframe");
    // A frame it cannot decode from is not sent; from the keyframe on,
    // the numbering runs on from before the pause.
    send(&publisher, numbered(200, 1000));
    send(&publisher, vp8_keyframe(201));
    send(&publisher, numbered(202, 1000));
    let resumed = received(subs.get_mut(&pausing).unwrap(), Duration::from_millis(400)).await;
    assert_eq!(
        resumed,
        vec![
            (Some(201), last_seq.wrapping_add(1)),
            (Some(202), last_seq.wrapping_add(2))
        ]
    );
}

#[tokio::test]
async fn a_moderators_stop_reaches_no_subscriber_and_going_on_starts_at_a_keyframe() {
    let (engine, mut events) = engine().await;
    let (publisher_id, mut publisher, mut subs, mut seq) =
        video_call(&engine, &mut events, 2).await;
    let ids: Vec<Uuid> = subs.keys().copied().collect();
    let mut send = |publisher: &Client, payload: Bytes| {
        publisher.send(seq, u32::from(seq) * 3000, payload);
        seq = seq.wrapping_add(1);
    };
    send(&publisher, numbered(1, 1000));
    let mut last = Vec::new();
    for id in &ids {
        let before = received(subs.get_mut(id).unwrap(), Duration::from_millis(300)).await;
        last.push(before.last().expect("a packet before the stop").1);
    }

    // Of another source, nothing changes.
    engine.stop_forwarding(publisher_id, &[Source::Microphone], true);
    engine.stop_forwarding(publisher_id, &[Source::Camera], true);
    // The word goes to the loops beside the datagrams; let it arrive first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for n in 100..120 {
        send(&publisher, numbered(n, 1000));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in &ids {
        let got = received(subs.get_mut(id).unwrap(), Duration::from_millis(300)).await;
        assert_eq!(got, vec![], "a stopped track reaches no one");
    }

    engine.stop_forwarding(publisher_id, &[Source::Camera], false);
    let asked = loop {
        match publisher.next(Duration::from_secs(1)).await {
            Some(ClientEvent::KeyframeRequested { .. }) => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(asked, "going on asks the publisher for a keyframe");
    send(&publisher, numbered(200, 1000));
    send(&publisher, vp8_keyframe(201));
    send(&publisher, numbered(202, 1000));
    for (id, last_seq) in ids.iter().zip(last) {
        let got = received(subs.get_mut(id).unwrap(), Duration::from_millis(400)).await;
        assert_eq!(
            got,
            vec![
                (Some(201), last_seq.wrapping_add(1)),
                (Some(202), last_seq.wrapping_add(2))
            ],
            "from the keyframe on, numbered on from before the stop"
        );
    }
}

/// A VP8 payload that starts a keyframe (descriptor with S set, partition
/// 0; frame header with P clear), numbered like [`numbered`] after it.
fn vp8_keyframe(n: u32) -> Bytes {
    let mut p = vec![0x10, 0x00];
    p.extend_from_slice(&numbered(n, 1000));
    Bytes::from(p)
}

#[tokio::test]
async fn offers_name_each_tracks_sender_and_source_and_the_sender_hears_when_it_plays() {
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let publisher_id = Uuid::new_v4();
    engine.join(call, publisher_id).await.unwrap();
    let mut publisher = client(Some(Kind::Video)).await;
    let offer = publisher.offer().await.unwrap();
    let mid = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("the offer has a mid")
        .trim()
        .to_owned();
    let answer = engine
        .publish_sources(publisher_id, offer, vec![(mid, Source::Screen)])
        .await
        .unwrap();
    publisher.accept_answer(answer).await.unwrap();
    assert!(publisher.connected(Duration::from_secs(10)).await);

    let viewer = Uuid::new_v4();
    engine.join(call, viewer).await.unwrap();
    let mut sub = client(None).await;
    let mut seq = 1u16;
    let deadline = Instant::now() + Duration::from_secs(10);
    let tracks = loop {
        assert!(Instant::now() < deadline, "no offer came");
        publisher.send(seq, u32::from(seq) * 3000, numbered(0, 1000));
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        match events.try_recv() {
            Ok(EngineEvent::SubscriberOffer {
                participant,
                sdp,
                tracks,
            }) if participant == viewer => {
                let answer = sub.answer(sdp.clone()).await.unwrap();
                engine.subscriber_answer(viewer, answer).await.unwrap();
                let offered_mid = sdp
                    .lines()
                    .find_map(|l| l.strip_prefix("a=mid:"))
                    .unwrap()
                    .trim()
                    .to_owned();
                assert_eq!(
                    tracks,
                    vec![OfferedTrack {
                        mid: offered_mid,
                        publisher: publisher_id,
                        kind: Kind::Video,
                        source: Source::Screen,
                    }],
                    "the offer says whose its one section is and what it carries"
                );
                break tracks;
            }
            Ok(EngineEvent::Receiving { .. }) => panic!("a Receiving before the viewer connected"),
            _ => {}
        }
    };
    assert_eq!(tracks.len(), 1);
    assert!(sub.connected(Duration::from_secs(10)).await);

    // Delta frames reach the viewer, but it cannot play them: nothing said.
    for _ in 0..10 {
        publisher.send(seq, u32::from(seq) * 3000, numbered(1, 1000));
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, EngineEvent::Receiving { .. }),
            "told the viewer plays before a keyframe went out"
        );
    }
    // The keyframe: the publisher hears that the viewer plays its screen, once.
    for _ in 0..3 {
        publisher.send(seq, u32::from(seq) * 3000, vp8_keyframe(2));
        seq += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut heard = Vec::new();
    while Instant::now() < deadline {
        if let Ok(e @ EngineEvent::Receiving { .. }) = events.try_recv() {
            heard.push(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(
            heard.as_slice(),
            [EngineEvent::Receiving { call: c, subscriber, publisher: p, kind: Kind::Video, source: Source::Screen }]
                if *c == call && *subscriber == viewer && *p == publisher_id
        ),
        "one Receiving for the viewer: {heard:?}"
    );
}

#[tokio::test]
async fn new_viewers_keyframe_requests_are_spaced_so_the_encoder_takes_each() {
    // Two viewers join at once. Each needs a keyframe once its connection is
    // up; a second request within an encoder's minimum spacing would be
    // ignored by it, so it must come later, not at once and not never.
    let (engine, mut events) = engine().await;
    let call = Uuid::new_v4();
    let mut publisher = open_video_track(&engine, call).await;

    let mut viewers = HashMap::new();
    for _ in 0..2 {
        let id = Uuid::new_v4();
        engine.join(call, id).await.unwrap();
        viewers.insert(id, client(None).await);
    }
    negotiate(&engine, &mut events, &viewers, || {}).await;
    let mut requests = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Some(ClientEvent::KeyframeRequested { at }) =
            publisher.next(Duration::from_millis(50)).await
        {
            requests.push(at);
        }
    }
    assert!(
        !requests.is_empty(),
        "the new viewers' keyframe was requested"
    );
    for pair in requests.windows(2) {
        let gap = pair[1].saturating_duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(300),
            "requests {gap:?} apart: the encoder would ignore the second ({} requests)",
            requests.len()
        );
    }
}

// In memory: one media loop and clients on the same stack, datagrams handed
// across by the test, the clients' time advanced by the test.

mod in_memory {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use roost_media::client::{ice_credentials, nominating_request};
    use roost_media::harness::{Loop, ENGINE};
    use roost_media::peer::{Peer, PeerEvent, PeerSetup, Rtp, SenderId};
    use roost_media::{EngineEvent, Kind, MediaError, OfferedTrack, Source};
    use uuid::Uuid;

    const BINDING_REQUEST: u16 = 0x0001;
    const BINDING_SUCCESS: u16 = 0x0101;

    fn stun_type(datagram: &[u8]) -> Option<u16> {
        (datagram.len() >= 20 && datagram[4..8] == [0x21, 0x12, 0xA4, 0x42])
            .then(|| u16::from_be_bytes([datagram[0], datagram[1]]))
    }

    fn transaction_id(datagram: &[u8]) -> &[u8] {
        &datagram[8..20]
    }

    struct Member {
        id: Uuid,
        peer: Peer,
        addr: SocketAddr,
        sender: Option<(SenderId, String, u32)>,
        connected: bool,
        /// Payloads of the RTP packets received.
        received: Vec<Bytes>,
        /// The audio level its packets carry (RFC 6464, -dBov).
        level: Option<u8>,
        /// When its peer reported a keyframe request, on the call's clock.
        keyframe_requests: Vec<Instant>,
        /// A member that vanished neither sends nor receives.
        vanished: bool,
        /// RTP datagrams from the loop its network loses next.
        lose: usize,
        /// The RTP packets received, with their track.
        packets: Vec<(String, Rtp)>,
        /// Its own ICE credentials and the loop's, on its receiving
        /// connection, once it answered an offer.
        ice: Option<((String, String), (String, String))>,
    }

    impl Member {
        fn new(port: u16, send: Option<Kind>, now: Instant) -> Member {
            let addr = SocketAddr::from(([127, 0, 0, 3], port));
            let mut peer = Peer::new(&PeerSetup::client(addr), now).unwrap();
            let sender = send.map(|kind| {
                let codec = roost_media::client::codec(kind);
                let ssrc = u32::from(port) * 7 + 1;
                let id = peer
                    .add_sender(kind, &codec, ssrc, None, "test", &format!("t{port}"))
                    .unwrap();
                (id, codec.mime_type, ssrc)
            });
            Member {
                id: Uuid::new_v4(),
                peer,
                addr,
                sender,
                connected: false,
                received: Vec::new(),
                level: None,
                keyframe_requests: Vec::new(),
                vanished: false,
                lose: 0,
                packets: Vec::new(),
                ice: None,
            }
        }

        /// Sends a packet numbered `n`, as the socket tests' publishers do.
        fn send_numbered(&mut self, seq: u16, n: u32, now: Instant) {
            if let Some((id, mime, ssrc)) = &self.sender {
                let packet = Rtp {
                    ssrc: *ssrc,
                    seq,
                    ts: u32::from(seq) * 3000,
                    marker: false,
                    payload_type: 0,
                    payload: super::numbered(n, 1200),
                    audio_level: None,
                    layer: 0,
                };
                let _ = self.peer.send_rtp(*id, &packet, mime, now);
            }
        }

        fn send(&mut self, seq: u16, payload: &'static [u8], now: Instant) {
            if let Some((id, mime, ssrc)) = &self.sender {
                let packet = Rtp {
                    ssrc: *ssrc,
                    seq,
                    ts: u32::from(seq) * 960,
                    marker: false,
                    payload_type: 0,
                    payload: Bytes::from_static(payload),
                    audio_level: self.level,
                    layer: 0,
                };
                let _ = self.peer.send_rtp(*id, &packet, mime, now);
            }
        }
    }

    /// A call on one media loop (or spread over two), and every datagram
    /// the loops sent.
    struct Call {
        lp: Loop,
        /// A second loop the call is spread over, and the members on it.
        far: Option<Loop>,
        far_members: HashSet<Uuid>,
        call: Uuid,
        now: Instant,
        sent: Vec<BytesMut>,
        /// The loop's events other than offers, with the time they came.
        events: Vec<(Instant, EngineEvent)>,
    }

    impl Call {
        fn new() -> Call {
            Call {
                lp: Loop::new(),
                far: None,
                far_members: HashSet::new(),
                call: Uuid::new_v4(),
                now: Instant::now(),
                sent: Vec::new(),
                events: Vec::new(),
            }
        }

        /// A call spread over two loops, as the engine's placement spreads
        /// a large one: the loop that joins hears of it first.
        fn spread() -> Call {
            let mut call = Call::new();
            let mut far = Loop::numbered(1, call.lp.now());
            far.spread(call.call, 1, vec![0, 1]);
            call.lp.spread(call.call, 1, vec![0, 1]);
            call.far = Some(far);
            call
        }

        /// The loop a member is on.
        fn loop_of(&mut self, member: Uuid) -> &mut Loop {
            match &mut self.far {
                Some(far) if self.far_members.contains(&member) => far,
                _ => &mut self.lp,
            }
        }

        /// Joins `m` on the second loop.
        fn join_far(&mut self, m: &mut Member) {
            self.far_members.insert(m.id);
            self.join(m);
        }

        /// Joins `m`; with a track to send, offers it and takes the answer.
        fn join(&mut self, m: &mut Member) {
            let call = self.call;
            self.loop_of(m.id).join(call, m.id).unwrap();
            if m.sender.is_some() {
                let offer = m.peer.offer(self.now).unwrap().unwrap();
                let answer = self.loop_of(m.id).publish(m.id, offer).unwrap();
                m.peer.accept_answer(answer, self.now).unwrap();
            }
        }

        /// Hands what each loop has for the other over, until neither has more.
        fn hand_over(&mut self) {
            let Some(far) = &mut self.far else {
                return;
            };
            loop {
                let (near_out, far_out) = (self.lp.take_handoffs(), far.take_handoffs());
                if near_out.is_empty() && far_out.is_empty() {
                    return;
                }
                for h in near_out {
                    assert_eq!(h.to, 1, "loop 0 hands only to loop 1");
                    far.hand(h);
                }
                for h in far_out {
                    assert_eq!(h.to, 0, "loop 1 hands only to loop 0");
                    self.lp.hand(h);
                }
            }
        }

        /// One step: each client's timers and datagrams to the loop, the
        /// loop's datagrams to the clients; the clients' clock moves 10 ms.
        fn step(&mut self, members: &mut [&mut Member]) {
            self.now += Duration::from_millis(10);
            let now = self.now;
            for m in members.iter_mut().filter(|m| !m.vanished) {
                if m.peer.poll_timeout().is_some_and(|t| t <= now) {
                    m.peer.handle_timeout(now).unwrap();
                }
                while let Some((to, d)) = m.peer.poll_transmit() {
                    if to == ENGINE {
                        self.loop_of(m.id).datagram(d, m.addr);
                    }
                }
            }
            self.lp.timeouts(now);
            if let Some(far) = &mut self.far {
                far.timeouts(now);
            }
            self.hand_over();
            self.deliver(members);
        }

        /// Hands the loop's datagrams to the clients they are for.
        fn deliver(&mut self, members: &mut [&mut Member]) {
            let now = self.now;
            let mut outbox = self.lp.take_outbox();
            if let Some(far) = &mut self.far {
                outbox.extend(far.take_outbox());
            }
            for (to, d) in outbox {
                self.sent.push(d.clone());
                if let Some(m) = members.iter_mut().find(|m| m.addr == to && !m.vanished) {
                    // RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the second byte).
                    let is_rtp =
                        d.len() > 1 && (128..192).contains(&d[0]) && !(192..224).contains(&d[1]);
                    if is_rtp && m.lose > 0 {
                        m.lose -= 1;
                        continue;
                    }
                    let _ = m.peer.handle_datagram(d, ENGINE, now);
                }
            }
            for m in members.iter_mut() {
                while let Some(event) = m.peer.poll_event() {
                    match event {
                        PeerEvent::Connected => m.connected = true,
                        PeerEvent::Rtp { packet, track } => {
                            m.received.push(packet.payload.clone());
                            m.packets.push((track, packet));
                        }
                        PeerEvent::KeyframeRequested { .. } => m.keyframe_requests.push(now),
                        _ => {}
                    }
                }
            }
        }

        /// The offers the loop made since the last call, by participant.
        fn offers(&mut self) -> Vec<(Uuid, String)> {
            let mut offers = Vec::new();
            let mut events = self.lp.events();
            if let Some(far) = &mut self.far {
                events.extend(far.events());
            }
            for event in events {
                match event {
                    EngineEvent::SubscriberOffer {
                        participant, sdp, ..
                    } => offers.push((participant, sdp)),
                    other => self.events.push((self.now, other)),
                }
            }
            offers
        }

        /// Steps until every member is connected and each one without a
        /// track of its own has received `packets` of the sender's, the
        /// sender sending one packet a step from when it is connected, and
        /// answering every offer; panics after 20 s of the call's time.
        fn connect(&mut self, sender: &mut Member, others: &mut [&mut Member], packets: usize) {
            let deadline = self.now + Duration::from_secs(20);
            let mut seq = 0u16;
            loop {
                assert!(self.now < deadline, "the call did not set up");
                if sender.connected {
                    seq += 1;
                    sender.send(seq, b"\x10\x00\x00\x00 a keyframe", self.now);
                }
                let mut all: Vec<&mut Member> = vec![&mut *sender];
                all.extend(others.iter_mut().map(|m| &mut **m));
                self.step(&mut all);
                for (participant, sdp) in self.offers() {
                    if let Some(m) = others.iter_mut().find(|m| m.id == participant) {
                        let theirs = ice_credentials(&sdp).unwrap();
                        let answer = m.peer.answer(sdp, self.now).unwrap();
                        m.ice = Some((ice_credentials(&answer).unwrap(), theirs));
                        self.loop_of(m.id).subscriber_answer(m.id, answer).unwrap();
                    }
                }
                let done = sender.connected
                    && others
                        .iter()
                        .all(|m| m.connected && m.received.len() >= packets);
                if done {
                    return;
                }
            }
        }

        /// Binding requests among the datagrams the loop sent.
        fn checks_sent(&self) -> usize {
            self.sent
                .iter()
                .filter(|d| stun_type(d) == Some(BINDING_REQUEST))
                .count()
        }
    }

    /// Steps the call for `steps` steps of 10 ms, `sender` sending a packet
    /// each step from `seq` on.
    fn run(
        call: &mut Call,
        sender: &mut Member,
        others: &mut [&mut Member],
        seq: &mut u16,
        steps: usize,
    ) {
        for _ in 0..steps {
            *seq = seq.wrapping_add(1);
            sender.send(*seq, b"\x10\x00\x00\x00 a keyframe", call.now);
            let mut all: Vec<&mut Member> = vec![&mut *sender];
            all.extend(others.iter_mut().map(|m| &mut **m));
            call.step(&mut all);
            for (participant, sdp) in call.offers() {
                if let Some(m) = others.iter_mut().find(|m| m.id == participant) {
                    let theirs = ice_credentials(&sdp).unwrap();
                    let answer = m.peer.answer(sdp, call.now).unwrap();
                    m.ice = Some((ice_credentials(&answer).unwrap(), theirs));
                    call.loop_of(m.id).subscriber_answer(m.id, answer).unwrap();
                }
            }
        }
    }

    // The socket tests' twins: the same behaviour, on the loop's clock.

    #[test]
    fn a_member_that_vanishes_leaves_on_the_loops_clock_and_the_others_go_on() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_010, Some(Kind::Audio), call.now);
        let mut stays = Member::new(30_011, None, call.now);
        let mut goes = Member::new(30_012, None, call.now);
        for m in [&mut publisher, &mut stays, &mut goes] {
            call.join(m);
        }
        call.connect(&mut publisher, &mut [&mut stays, &mut goes], 5);
        goes.vanished = true;
        let gone_at = call.now;
        let before = stays.received.len();
        let mut seq = 1_000;
        // 30 s of the call's time; the default liveness is 5 + 10 s.
        run(
            &mut call,
            &mut publisher,
            &mut [&mut stays, &mut goes],
            &mut seq,
            3_000,
        );
        let left: Vec<(Instant, Uuid)> = call
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                EngineEvent::Disconnected { participant } => Some((*at, *participant)),
                _ => None,
            })
            .collect();
        assert_eq!(left.len(), 1, "only the one that vanished leaves: {left:?}");
        let (at, who) = left[0];
        assert_eq!(who, goes.id);
        let silent = at - gone_at;
        assert!(
            silent >= Duration::from_secs(12) && silent <= Duration::from_secs(16),
            "it left {silent:?} after it went silent"
        );
        assert_eq!(call.lp.participants(), 2);
        assert!(
            stays.received.len() >= before + 2_900,
            "the other subscriber kept receiving: {} packets",
            stays.received.len() - before
        );
    }

    #[test]
    fn a_member_that_moves_to_another_path_stays_and_keeps_receiving_on_the_loops_clock() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_030, Some(Kind::Video), call.now);
        let mut stays = Member::new(30_031, None, call.now);
        let mut mover = Member::new(30_032, None, call.now);
        for m in [&mut publisher, &mut stays, &mut mover] {
            call.join(m);
        }
        call.connect(&mut publisher, &mut [&mut stays, &mut mover], 5);
        // It moves to another path (another interface, a NAT that
        // rebinds): everything it sends comes from there now, only what
        // the loop sends there reaches it, and it nominates the new pair
        // with a check, as a browser does.
        mover.addr = SocketAddr::from(([127, 0, 0, 4], 40_032));
        let (ours, theirs) = mover.ice.clone().expect("it answered an offer");
        let check = nominating_request(&ours, &theirs).unwrap();
        call.lp.datagram(BytesMut::from(&check[..]), mover.addr);
        let moved = mover.received.len();
        let mut seq = 1_000;
        // 20 s of the call's time, longer than the loop's 5 + 10 s of
        // liveness: the old path is silent all along.
        run(
            &mut call,
            &mut publisher,
            &mut [&mut stays, &mut mover],
            &mut seq,
            2_000,
        );
        let late = mover.received.len() - moved;
        assert!(
            late >= 1_900,
            "the moved member received {late} of the 2,000 packets sent after it moved"
        );
        let left = call
            .events
            .iter()
            .filter(|(_, e)| matches!(e, EngineEvent::Disconnected { .. }))
            .count();
        assert_eq!(left, 0, "no one left");
        assert_eq!(call.lp.participants(), 3);
    }

    #[test]
    fn offers_name_each_tracks_sender_and_source_and_the_sender_hears_when_it_plays_on_the_loops_clock(
    ) {
        const DELTA: &[u8] = b"\x10\x01\x00\x00 a delta frame";
        const KEYFRAME: &[u8] = b"\x10\x00\x00\x00 a keyframe";
        let mut call = Call::new();
        let mut publisher = Member::new(30_040, Some(Kind::Video), call.now);
        let mut viewer = Member::new(30_041, None, call.now);
        call.lp.join(call.call, publisher.id).unwrap();
        let offer = publisher.peer.offer(call.now).unwrap().unwrap();
        let mid = offer
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .expect("the offer has a mid")
            .trim()
            .to_owned();
        let answer = call
            .lp
            .publish_sources(publisher.id, offer, &[(mid, Source::Screen)])
            .unwrap();
        publisher.peer.accept_answer(answer, call.now).unwrap();
        call.lp.join(call.call, viewer.id).unwrap();

        // Delta frames only, until the viewer is connected and has some.
        let deadline = call.now + Duration::from_secs(20);
        let mut seq = 0u16;
        let mut offered = Vec::new();
        let mut receiving = Vec::new();
        let mut step = |call: &mut Call,
                        publisher: &mut Member,
                        viewer: &mut Member,
                        payload: &'static [u8],
                        offered: &mut Vec<OfferedTrack>,
                        receiving: &mut Vec<EngineEvent>| {
            if publisher.connected {
                seq += 1;
                publisher.send(seq, payload, call.now);
            }
            call.step(&mut [&mut *publisher, &mut *viewer]);
            for event in call.lp.events() {
                match event {
                    EngineEvent::SubscriberOffer {
                        participant,
                        sdp,
                        tracks,
                    } if participant == viewer.id => {
                        let answer = viewer.peer.answer(sdp, call.now).unwrap();
                        call.lp.subscriber_answer(viewer.id, answer).unwrap();
                        offered.extend(tracks);
                    }
                    e @ EngineEvent::Receiving { .. } => receiving.push(e),
                    _ => {}
                }
            }
        };
        while !(viewer.connected && viewer.received.len() >= 10) {
            assert!(call.now < deadline, "the viewer did not connect");
            step(
                &mut call,
                &mut publisher,
                &mut viewer,
                DELTA,
                &mut offered,
                &mut receiving,
            );
        }
        assert_eq!(offered.len(), 1, "one offered track: {offered:?}");
        assert_eq!(
            (offered[0].publisher, offered[0].kind, offered[0].source),
            (publisher.id, Kind::Video, Source::Screen),
            "the offer says whose its one section is and what it carries"
        );
        // Delta frames reach the viewer, but it cannot play them: nothing said.
        assert!(receiving.is_empty(), "{receiving:?}");

        // Keyframes: the publisher hears that the viewer plays its screen, once.
        for _ in 0..100 {
            step(
                &mut call,
                &mut publisher,
                &mut viewer,
                KEYFRAME,
                &mut offered,
                &mut receiving,
            );
        }
        assert!(
            matches!(
                receiving.as_slice(),
                [EngineEvent::Receiving { call: c, subscriber, publisher: p, kind: Kind::Video, source: Source::Screen }]
                    if *c == call.call && *subscriber == viewer.id && *p == publisher.id
            ),
            "one Receiving for the viewer: {receiving:?}"
        );
    }

    #[test]
    fn who_speaks_is_announced_once_per_change_on_the_loops_clock() {
        let mut call = Call::new();
        let mut speaker = Member::new(30_013, Some(Kind::Audio), call.now);
        let mut listener = Member::new(30_014, None, call.now);
        call.join(&mut speaker);
        call.join(&mut listener);
        call.connect(&mut speaker, &mut [&mut listener], 5);
        let mut seq = 1_000;
        // -10 dBov for 3 s, then silence for 3 s.
        speaker.level = Some(10);
        let loud_at = call.now;
        run(&mut call, &mut speaker, &mut [&mut listener], &mut seq, 300);
        speaker.level = Some(127);
        let quiet_at = call.now;
        run(&mut call, &mut speaker, &mut [&mut listener], &mut seq, 300);
        let announced: Vec<(Instant, Vec<Uuid>)> = call
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                EngineEvent::Speaking { call: c, speakers } if *c == call.call => {
                    Some((*at, speakers.iter().map(|s| s.0).collect()))
                }
                _ => None,
            })
            .collect();
        let who: Vec<&Vec<Uuid>> = announced.iter().map(|(_, w)| w).collect();
        assert_eq!(
            who,
            [&vec![speaker.id], &vec![]],
            "once per change: {announced:?}"
        );
        // Each change is told within a tick (250 ms) of being heard; a fall
        // to silence is smoothed over a few packets first.
        assert!(announced[0].0 - loud_at <= Duration::from_millis(300));
        assert!(announced[1].0 - quiet_at <= Duration::from_millis(500));
    }

    #[test]
    fn new_viewers_keyframe_requests_are_spaced_on_the_loops_clock() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_015, Some(Kind::Video), call.now);
        let mut a = Member::new(30_016, None, call.now);
        let mut b = Member::new(30_017, None, call.now);
        for m in [&mut publisher, &mut a, &mut b] {
            call.join(m);
        }
        call.connect(&mut publisher, &mut [&mut a, &mut b], 1);
        let mut seq = 1_000;
        run(
            &mut call,
            &mut publisher,
            &mut [&mut a, &mut b],
            &mut seq,
            150,
        );
        // One request as the first viewer's connection comes up, and the
        // second viewer's held until it is far enough from the first (the
        // clients see the loop's datagrams only once a step).
        let requests = &publisher.keyframe_requests;
        assert!(
            requests.len() >= 2,
            "each new viewer's keyframe was requested: {requests:?}"
        );
        for pair in requests.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(300),
                "requests {gap:?} apart: the encoder would ignore the second ({requests:?})"
            );
        }
    }

    /// A call larger than one loop: the publisher's loop hands each packet
    /// once to the other loop, whose members get it as those of the
    /// publisher's own loop do; their keyframe requests reach the
    /// publisher, and the track leaves both loops with its publisher.
    #[test]
    fn a_call_spread_over_two_loops_reaches_the_members_of_both_on_the_loops_clock() {
        let mut call = Call::spread();
        let mut publisher = Member::new(30_040, Some(Kind::Video), call.now);
        let mut near = Member::new(30_041, None, call.now);
        let mut far_a = Member::new(30_042, None, call.now);
        let mut far_b = Member::new(30_043, None, call.now);
        call.join(&mut publisher);
        call.join(&mut near);
        call.join_far(&mut far_a);
        call.join_far(&mut far_b);
        call.connect(&mut publisher, &mut [&mut near, &mut far_a, &mut far_b], 1);

        let mut seq = 1_000u16;
        for n in 0..200 {
            seq += 1;
            publisher.send_numbered(seq, n, call.now);
            call.step(&mut [&mut publisher, &mut near, &mut far_a, &mut far_b]);
        }
        for m in [&near, &far_a, &far_b] {
            let numbers: Vec<u32> = m
                .received
                .iter()
                .filter_map(|p| super::number_of(p))
                .collect();
            assert_eq!(
                numbers,
                (0..200).collect::<Vec<_>>(),
                "every packet once, in order, on either loop"
            );
        }
        let (near_stats, far_stats) = (call.lp.stats(), call.far.as_ref().unwrap().stats());
        assert!(
            near_stats.packets_relayed >= 200 && near_stats.packets_relayed < 300,
            "once per packet to the other loop: {near_stats:?}"
        );
        assert_eq!(
            (near_stats.tracks, far_stats.tracks),
            (1, 0),
            "the track counts on its publisher's loop alone"
        );
        assert!(far_stats.packets_forwarded >= 400, "{far_stats:?}");

        // A member of the far loop loses a frame and asks: the publisher hears it once.
        run(
            &mut call,
            &mut publisher,
            &mut [&mut near, &mut far_a, &mut far_b],
            &mut seq,
            100,
        );
        publisher.keyframe_requests.clear();
        let track = far_a.packets.last().expect("a packet received").0.clone();
        far_a.peer.request_keyframe(&track, call.now).unwrap();
        run(
            &mut call,
            &mut publisher,
            &mut [&mut near, &mut far_a, &mut far_b],
            &mut seq,
            30,
        );
        assert_eq!(publisher.keyframe_requests.len(), 1);

        // A late joiner on the far loop is offered the publisher's track there.
        let mut late = Member::new(30_044, None, call.now);
        call.join_far(&mut late);
        let offered: Vec<Uuid> = call.offers().into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            offered,
            vec![late.id],
            "the late joiner is offered the track"
        );

        // The publisher leaves: its track leaves the far loop too, and
        // nothing more crosses.
        call.lp.leave(vec![publisher.id]);
        publisher.vanished = true;
        call.hand_over();
        let mut later = Member::new(30_045, None, call.now);
        call.join_far(&mut later);
        assert!(
            call.offers().iter().all(|(id, _)| *id != later.id),
            "a joiner after the publisher left is offered nothing"
        );
        let relayed = call.lp.stats().packets_relayed;
        run(
            &mut call,
            &mut publisher,
            &mut [&mut near, &mut far_a, &mut far_b],
            &mut seq,
            10,
        );
        assert_eq!(call.lp.stats().packets_relayed, relayed);
        assert_eq!(call.far.as_ref().unwrap().stats().participants, 4);
    }

    /// A subscriber that asks again for every packet of the last second,
    /// every 20 ms, gets little more than the stream; an honest one in the
    /// same call still has its loss repaired.
    #[test]
    fn a_subscriber_that_nacks_everything_gets_little_more_than_the_stream_on_the_loops_clock() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_050, Some(Kind::Video), call.now);
        let mut abuser = Member::new(30_051, None, call.now);
        let mut honest = Member::new(30_052, None, call.now);
        for m in [&mut publisher, &mut abuser, &mut honest] {
            call.join(m);
        }
        call.connect(&mut publisher, &mut [&mut abuser, &mut honest], 1);
        let mut seq = 1_000u16;
        run(
            &mut call,
            &mut publisher,
            &mut [&mut abuser, &mut honest],
            &mut seq,
            100,
        );
        abuser.packets.clear();
        honest.packets.clear();
        honest.lose = 1;

        // Two seconds of 1,200-byte packets every 10 ms (about 1 Mbit/s).
        const FIRST: u32 = 1_000;
        const SENT: u32 = 200;
        for n in 0..SENT {
            seq = seq.wrapping_add(1);
            publisher.send_numbered(seq, FIRST + n, call.now);
            call.step(&mut [&mut publisher, &mut abuser, &mut honest]);
            if n % 2 == 1 {
                if let Some((track, _)) = abuser.packets.last() {
                    let track = track.clone();
                    let recent: Vec<u16> = abuser
                        .packets
                        .iter()
                        .rev()
                        .take(100)
                        .map(|(_, p)| p.seq)
                        .collect();
                    abuser.peer.nack(&track, &recent, call.now).unwrap();
                }
            }
        }
        for _ in 0..50 {
            call.step(&mut [&mut publisher, &mut abuser, &mut honest]);
        }
        let numbered = |m: &Member| -> Vec<(u32, usize)> {
            m.packets
                .iter()
                .filter_map(|(_, p)| {
                    let n = super::number_of(&p.payload).filter(|n| *n >= FIRST)?;
                    Some((n, p.payload.len()))
                })
                .collect()
        };
        let abused = numbered(&abuser);
        let stream_bytes = SENT as usize * 1_200;
        let abused_bytes: usize = abused.iter().map(|(_, len)| len).sum();
        // The default share is 30 % of what was sent over the last second,
        // plus a burst of about ten packets; the stream lasts two such windows.
        assert!(
            abused.len() > SENT as usize,
            "the abuser's requests were answered at all: {} packets",
            abused.len()
        );
        assert!(
            abused_bytes <= stream_bytes + stream_bytes * 35 / 100 + 30 * 1_200,
            "the abuser received {abused_bytes} bytes for a stream of {stream_bytes}"
        );
        let repaired = numbered(&honest);
        let copies = repaired.iter().filter(|(n, _)| *n == FIRST).count();
        assert!(
            (1..=3).contains(&copies),
            "the honest subscriber's lost packet is resent, within the budget: {copies}"
        );
        let all: std::collections::BTreeSet<u32> = repaired.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            all.len(),
            SENT as usize,
            "the honest subscriber has every packet"
        );
    }

    #[test]
    fn subscribers_keyframe_requests_reach_the_publisher_merged_on_the_loops_clock() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_020, Some(Kind::Video), call.now);
        let mut a = Member::new(30_021, None, call.now);
        let mut b = Member::new(30_022, None, call.now);
        let mut c = Member::new(30_023, None, call.now);
        for m in [&mut publisher, &mut a, &mut b, &mut c] {
            call.join(m);
        }
        call.connect(&mut publisher, &mut [&mut a, &mut b, &mut c], 1);
        let mut seq = 1_000;
        // Let the new viewers' own requests go out first.
        run(
            &mut call,
            &mut publisher,
            &mut [&mut a, &mut b, &mut c],
            &mut seq,
            150,
        );
        publisher.keyframe_requests.clear();
        // All three lose a frame at once and ask (PLI).
        for m in [&mut a, &mut b, &mut c] {
            let track = m.packets.last().expect("a packet received").0.clone();
            m.peer.request_keyframe(&track, call.now).unwrap();
        }
        let asked = call.now;
        run(
            &mut call,
            &mut publisher,
            &mut [&mut a, &mut b, &mut c],
            &mut seq,
            30,
        );
        assert_eq!(
            publisher.keyframe_requests.len(),
            1,
            "three requests reach the publisher as one: {:?}",
            publisher.keyframe_requests
        );
        // Another, after the interval (500 ms), goes through.
        run(
            &mut call,
            &mut publisher,
            &mut [&mut a, &mut b, &mut c],
            &mut seq,
            30,
        );
        let track = a.packets.last().unwrap().0.clone();
        a.peer.request_keyframe(&track, call.now).unwrap();
        run(
            &mut call,
            &mut publisher,
            &mut [&mut a, &mut b, &mut c],
            &mut seq,
            10,
        );
        let requests = &publisher.keyframe_requests;
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(requests[1] - asked >= Duration::from_millis(500));
    }

    #[test]
    fn a_lost_packet_is_resent_when_the_subscriber_asks_on_the_loops_clock() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_018, Some(Kind::Video), call.now);
        let mut viewer = Member::new(30_019, None, call.now);
        call.join(&mut publisher);
        call.join(&mut viewer);
        call.connect(&mut publisher, &mut [&mut viewer], 5);
        // The viewer's network loses the next packet; 40 numbered ones
        // follow, and the viewer's stack asks for the lost one (NACK).
        viewer.lose = 1;
        viewer.packets.clear();
        for n in 0..40u32 {
            publisher.send_numbered(2_000 + n as u16, n, call.now);
            call.step(&mut [&mut publisher, &mut viewer]);
        }
        for _ in 0..20 {
            call.step(&mut [&mut publisher, &mut viewer]);
        }
        let arrived: Vec<(u32, u16)> = viewer
            .packets
            .iter()
            .filter_map(|(_, p)| Some((super::number_of(&p.payload)?, p.seq)))
            .collect();
        let numbers: std::collections::BTreeSet<u32> = arrived.iter().map(|a| a.0).collect();
        assert_eq!(numbers.len(), 40, "every packet arrives: {arrived:?}");
        let first: Vec<&(u32, u16)> = arrived.iter().filter(|a| a.0 == 0).collect();
        // The client's stack asks again every 100 ms for a packet that came
        // back on the retransmission stream (its NACK log follows the media
        // stream alone); the engine resends it at most 3 times
        // (`media.retransmit_attempts`).
        assert!(
            (1..=3).contains(&first.len()),
            "the lost packet is resent, within the budget: {arrived:?}"
        );
        let at = |n: u32| arrived.iter().position(|a| a.0 == n).unwrap();
        assert!(
            at(0) > at(1),
            "the lost packet came again, after the next: {arrived:?}"
        );
        let next = arrived[at(1)].1;
        assert_eq!(
            first[0].1,
            next.wrapping_sub(1),
            "resent under its own number"
        );
    }

    #[test]
    fn a_clients_first_nominating_check_is_answered_at_once() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_001, Some(Kind::Audio), call.now);
        call.lp.join(call.call, publisher.id).unwrap();
        let offer = publisher.peer.offer(call.now).unwrap().unwrap();
        let answer = call.lp.publish(publisher.id, offer.clone()).unwrap();
        // Aggressive nomination (aiortc): the first check carries USE-CANDIDATE.
        let ours = ice_credentials(&offer).unwrap();
        let theirs = ice_credentials(&answer).unwrap();
        let check = nominating_request(&ours, &theirs).unwrap();
        call.lp.datagram(BytesMut::from(&check[..]), publisher.addr);
        let out = call.lp.take_outbox();
        let answers: Vec<_> = out
            .iter()
            .filter(|(to, d)| {
                *to == publisher.addr
                    && stun_type(d) == Some(BINDING_SUCCESS)
                    && transaction_id(d) == transaction_id(&check)
            })
            .collect();
        assert_eq!(
            answers.len(),
            1,
            "the check is answered in the step it arrived in, without a retransmission"
        );
        assert!(
            out.iter()
                .all(|(_, d)| stun_type(d) != Some(BINDING_REQUEST)),
            "an ICE-lite engine sends no checks of its own"
        );
    }

    #[test]
    fn a_call_sets_up_without_a_check_from_the_engine() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_002, Some(Kind::Audio), call.now);
        let mut subscriber = Member::new(30_003, None, call.now);
        call.join(&mut publisher);
        call.join(&mut subscriber);
        let mut seq = 0u16;
        let mut answered = false;
        for _ in 0..2_000 {
            if publisher.connected {
                seq += 1;
                let now = call.now;
                publisher.send(seq, b"hello", now);
            }
            call.step(&mut [&mut publisher, &mut subscriber]);
            for (participant, sdp) in call.offers() {
                assert_eq!(participant, subscriber.id);
                let answer = subscriber.peer.answer(sdp, call.now).unwrap();
                call.lp.subscriber_answer(subscriber.id, answer).unwrap();
                answered = true;
            }
            if subscriber.connected && subscriber.received.len() >= 10 {
                break;
            }
        }
        assert!(answered && publisher.connected && subscriber.connected);
        assert!(
            subscriber.received.len() >= 10,
            "media flows: {} packets",
            subscriber.received.len()
        );
        assert!(!call.sent.is_empty());
        assert_eq!(call.checks_sent(), 0, "the engine sent connectivity checks");
    }

    #[test]
    fn checks_that_come_before_the_answer_are_answered_at_once() {
        let mut call = Call::new();
        let mut publisher = Member::new(30_004, Some(Kind::Audio), call.now);
        let mut subscriber = Member::new(30_005, None, call.now);
        call.join(&mut publisher);
        call.join(&mut subscriber);
        // The subscriber is offered the track once it opens.
        let mut seq = 0u16;
        let offer = 'offered: {
            for _ in 0..2_000 {
                if publisher.connected {
                    seq += 1;
                    let now = call.now;
                    publisher.send(seq, b"hello", now);
                }
                call.step(&mut [&mut publisher]);
                if let Some((_, sdp)) = call.offers().pop() {
                    break 'offered sdp;
                }
            }
            panic!("no offer came");
        };
        // The subscriber answers and starts checking; the answer is still
        // on its way through signaling when its checks arrive.
        let answer = subscriber.peer.answer(offer, call.now).unwrap();
        let mut early = Vec::new();
        for _ in 0..100 {
            call.now += Duration::from_millis(10);
            let now = call.now;
            if subscriber.peer.poll_timeout().is_some_and(|t| t <= now) {
                subscriber.peer.handle_timeout(now).unwrap();
            }
            while let Some((to, d)) = subscriber.peer.poll_transmit() {
                if to == ENGINE && stun_type(&d) == Some(BINDING_REQUEST) {
                    early.push(transaction_id(&d).to_vec());
                    call.lp.datagram(d, subscriber.addr);
                }
            }
            if !early.is_empty() {
                break;
            }
        }
        assert!(
            !early.is_empty(),
            "the subscriber checks before its answer is in"
        );
        // An ICE-lite side signs its answer with its own password alone:
        // the checks are answered before the client's answer is in.
        let answered = call
            .lp
            .take_outbox()
            .into_iter()
            .filter(|(to, d)| {
                *to == subscriber.addr
                    && stun_type(d) == Some(BINDING_SUCCESS)
                    && early.iter().any(|t| t[..] == *transaction_id(d))
            })
            .count();
        assert!(
            answered >= early.len(),
            "{answered} of {} early checks answered at once",
            early.len()
        );
        // And the connection comes up once the answer is in.
        call.lp.subscriber_answer(subscriber.id, answer).unwrap();
        for _ in 0..300 {
            seq += 1;
            let now = call.now;
            publisher.send(seq, b"hello", now);
            call.step(&mut [&mut publisher, &mut subscriber]);
            if !subscriber.received.is_empty() {
                break;
            }
        }
        assert!(
            !subscriber.received.is_empty(),
            "the subscriber receives once its answer is in"
        );
    }

    #[test]
    fn an_answer_from_another_connection_is_refused_and_the_right_one_still_works() {
        let mut call = Call::new();
        let mut first = Member::new(30_006, Some(Kind::Audio), call.now);
        let mut subscriber = Member::new(30_007, None, call.now);
        call.join(&mut first);
        call.join(&mut subscriber);
        let mut seq = 0u16;
        let mut offers = 0;
        let mut stranger = Member::new(30_008, None, call.now);
        let mut second: Option<Member> = None;
        let mut refused = None;
        for _ in 0..4_000 {
            seq += 1;
            let now = call.now;
            if first.connected {
                first.send(seq, b"hello", now);
            }
            if let Some(s) = second.as_mut().filter(|s| s.connected) {
                s.send(seq, b"second", now);
            }
            let mut members: Vec<&mut Member> = vec![&mut first, &mut subscriber];
            if let Some(s) = second.as_mut() {
                members.push(s);
            }
            call.step(&mut members);
            for (participant, sdp) in call.offers() {
                // The publishers only send: offers to them stay unanswered.
                if participant != subscriber.id {
                    continue;
                }
                offers += 1;
                if offers == 2 {
                    // A re-offer (a second publisher's track), answered by
                    // another peer connection than the one connected.
                    let wrong = stranger.peer.answer(sdp.clone(), call.now).unwrap();
                    refused = Some(call.lp.subscriber_answer(subscriber.id, wrong));
                }
                let answer = subscriber.peer.answer(sdp, call.now).unwrap();
                call.lp.subscriber_answer(subscriber.id, answer).unwrap();
            }
            if offers == 1 && subscriber.connected && second.is_none() {
                let mut s = Member::new(30_009, Some(Kind::Audio), call.now);
                call.join(&mut s);
                second = Some(s);
            }
            if subscriber.received.iter().any(|p| p[..] == b"second"[..]) {
                break;
            }
        }
        match refused {
            Some(Err(MediaError::Mismatch(why))) => {
                assert!(why.contains("fingerprint"), "{why}")
            }
            other => panic!("the stranger's answer was not refused: {other:?}"),
        }
        assert!(
            subscriber.received.iter().any(|p| p[..] == b"second"[..]),
            "after the refusal, the right answer brings the second track"
        );
    }
}

/// What `call.subscribe` with only `paused` asks.
fn pausing_with(paused: bool) -> Subscription {
    Subscription {
        paused,
        max_size: None,
    }
}
