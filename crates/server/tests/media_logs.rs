//! What an operator sees at the default log level while calls are set up:
//! a normal call through the media engine (ICE, DTLS, SRTP, media both
//! ways) writes no warning and no error, so those that do appear need
//! someone's attention.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roost_media::client::{Client, ClientEvent};
use roost_media::{Engine, EngineConfig, EngineEvent, Kind};

/// Log output gathered in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn a_call_set_up_through_the_engine_logs_no_warning_at_the_default_level() {
    let captured = Captured::default();
    // As `roost` sets logging up (the `log` records of the WebRTC stack
    // included), with the default filter.
    let level = roost::config::Config::default().log.level;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&level))
        .with_ansi(false)
        .with_writer(captured.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let (engine, mut events) = Engine::start(EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("the engine starts");
    // Ids as signaling would hand them over (UUIDs); one engine, one call.
    let id = |n: u8| format!("00000000-0000-4000-8000-0000000000{n:02x}").parse();
    let (call, alice, bob) = (id(1).unwrap(), id(2).unwrap(), id(3).unwrap());
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    engine.join(call, alice).await.unwrap();
    engine.join(call, bob).await.unwrap();
    let mut publisher = Client::start(loopback, Some(Kind::Video)).await.unwrap();
    let mut subscriber = Client::start(loopback, None).await.unwrap();
    let offer = publisher.offer().await.unwrap();
    let answer = engine.publish(alice, offer).await.unwrap();
    publisher.accept_answer(answer).await.unwrap();
    assert!(publisher.connected(Duration::from_secs(10)).await);

    // The publisher's packets open its track; the engine then offers it to
    // the subscriber, who answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 1u16;
    let mut answered = false;
    let mut received = 0;
    while received < 20 {
        assert!(Instant::now() < deadline, "the call did not carry media");
        publisher.send(seq, u32::from(seq) * 3000, vec![0x10; 1000]);
        seq += 1;
        while let Ok(event) = events.try_recv() {
            if let EngineEvent::SubscriberOffer {
                participant, sdp, ..
            } = event
            {
                if participant == bob && !answered {
                    let answer = subscriber.answer(sdp).await.unwrap();
                    engine.subscriber_answer(bob, answer).await.unwrap();
                    answered = true;
                }
            }
        }
        while let Some(event) = subscriber.next(Duration::from_millis(20)).await {
            if let ClientEvent::Rtp { .. } = event {
                received += 1;
            }
        }
    }
    // Reports and keepalives go both ways for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        // The test's clients are DTLS clients, which the engine never is,
        // and `rtc` gives them no server name to check.
        .filter(|l| !(l.contains("rtc_dtls::config") && l.contains("server_name")))
        .collect();
    assert!(
        loud.is_empty(),
        "a normal call logged at the default level ({level}):\n{}",
        loud.join("\n")
    );
}
