//! Calls through the SFU of a real `roost serve`, with real WebRTC peers
//! (ICE, DTLS-SRTP) over loopback and the real signalling on the gateway.
//!
//! `--publishers` participants each send one track (`--kind audio`: Opus-
//! sized packets at 50 a second; `--kind video`: 1,200-byte packets at
//! `--rate`); they and `--listeners` receive-only participants receive every
//! track but their own. Each payload carries its publisher and send time.
//! After a warm-up, the tool counts for `--secs` what goes into and out of
//! the server and reports: packets per second in and out, loss, send-to-
//! receive latency (p50, p99), the server's CPU time per forwarded packet
//! and its memory per participant (both from `/proc`). `--json` writes the
//! result; a Markdown table row goes to stdout. `--smoke` runs a few peers
//! for a few seconds, so CI keeps the tool working; it asserts no timing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use roost_bench::{create_room, open, percentile, register, Server, Ws};
use roost_media::client::{Client, ClientEvent};
use roost_media::Kind;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Media {
    Audio,
    Video,
}

#[derive(Parser, Debug)]
#[command(about = "SFU forwarding benchmark of Roost with real WebRTC peers")]
struct Args {
    /// The roost binary to start (build it with --release first).
    #[arg(long, default_value = "target/release/roost")]
    roost: PathBuf,
    /// Participants that send a track (and receive the others').
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Participants that only receive.
    #[arg(long, default_value_t = 10)]
    listeners: usize,
    #[arg(long, value_enum, default_value_t = Media::Audio)]
    kind: Media,
    /// Packets per second each publisher sends (default: 50 for audio, 100 for video).
    #[arg(long)]
    rate: Option<f64>,
    /// Payload bytes per packet (default: 160 for audio, 1,200 for video).
    #[arg(long)]
    size: Option<usize>,
    /// Seconds measured, after a warm-up.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// A few peers for a few seconds: checks the tool, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the receivers saw, shared by every participant's task.
#[derive(Default)]
struct Tally {
    /// Counting only between the start and the end of the measured window.
    counting: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

const MARK: &[u8; 2] = b"RB";

/// A payload of `size` bytes: a mark, whether it counts, and its send time.
fn payload(size: usize, counted: bool, sent_ns: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(11));
    p.extend_from_slice(MARK);
    p.push(u8::from(counted));
    p.extend_from_slice(&sent_ns.to_be_bytes());
    p.resize(size.max(11), 0x5A);
    p
}

fn read_payload(p: &[u8]) -> Option<(bool, u64)> {
    let rest = p.strip_prefix(MARK)?;
    let counted = *rest.first()? == 1;
    let sent = u64::from_be_bytes(rest.get(1..9)?.try_into().ok()?);
    Some((counted, sent))
}

async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

/// Reads frames until the answer to request `id`, answering the server's
/// offers for `receiver` on the way.
async fn answer_of(
    ws: &mut Ws,
    id: &str,
    receiver: &Client,
    call: &mut Option<String>,
) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .context("no answer from the server within 20 s")?
            .context("the socket closed")??;
        let Message::Text(text) = msg else { continue };
        let frame: Value = serde_json::from_str(&text)?;
        if frame["id"] == id && (frame["type"] == "ack" || frame["type"] == "nack") {
            anyhow::ensure!(frame["type"] == "ack", "{id} refused: {frame}");
            return Ok(frame["result"].clone());
        }
        offer_answered(ws, &frame, receiver, call).await?;
    }
}

/// Answers a server `sfu.offer` with `receiver`'s answer.
async fn offer_answered(
    ws: &mut Ws,
    frame: &Value,
    receiver: &Client,
    call: &mut Option<String>,
) -> anyhow::Result<()> {
    if frame["type"] != "sfu.offer" {
        return Ok(());
    }
    let call_id = frame["call_id"]
        .as_str()
        .context("sfu.offer without call_id")?;
    *call = Some(call_id.to_owned());
    let sdp = receiver
        .answer(
            frame["sdp"]
                .as_str()
                .context("sfu.offer without sdp")?
                .to_owned(),
        )
        .await?;
    send(ws, json!({"type": "sfu.answer", "id": format!("a{}", rand_id()), "call_id": call_id, "sdp": sdp})).await
}

fn rand_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Plan {
    kind: Kind,
    rate: f64,
    size: usize,
}

/// One participant, until `stop`: joins the call, publishes if asked, answers
/// the server's offers, counts what it receives.
#[allow(clippy::too_many_arguments)]
async fn participant(
    url: String,
    token: String,
    room: String,
    publishes: Option<Plan>,
    base: Instant,
    tally: Arc<Tally>,
    ready: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut ws = open(&url, &token).await?;
    let mut receiver = Client::start(loopback, None).await?;
    let mut call = None;
    send(
        &mut ws,
        json!({"type": "call.join", "id": "join", "room_id": room}),
    )
    .await?;
    let joined = answer_of(&mut ws, "join", &receiver, &mut call).await?;
    let call_id = joined["call_id"]
        .as_str()
        .context("call.join without call_id")?
        .to_owned();
    anyhow::ensure!(
        joined["topology"] == "sfu",
        "the call is not on the SFU: {joined}"
    );

    let mut sender = None;
    if let Some(plan) = &publishes {
        let client = Client::start(loopback, Some(plan.kind)).await?;
        let offer = client.offer().await?;
        send(
            &mut ws,
            json!({"type": "sfu.offer", "id": "publish", "call_id": call_id, "sdp": offer}),
        )
        .await?;
        let answer = answer_of(&mut ws, "publish", &receiver, &mut call).await?;
        client
            .accept_answer(answer["sdp"].as_str().context("no answer sdp")?.to_owned())
            .await?;
        let mut client = client;
        anyhow::ensure!(
            client.connected(Duration::from_secs(20)).await,
            "the publisher did not connect"
        );
        sender = Some(client);
    }
    ready.fetch_add(1, Ordering::Relaxed);

    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / publishes.as_ref().map_or(1.0, |p| p.rate),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick(), if sender.is_some() => {
                if let (Some(client), Some(plan)) = (&sender, &publishes) {
                    seq = seq.wrapping_add(1);
                    let counted = tally.counting.load(Ordering::Relaxed);
                    let sent_ns = base.elapsed().as_nanos() as u64;
                    client.send(seq, u32::from(seq).wrapping_mul(960), payload(plan.size, counted, sent_ns));
                    if counted {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            event = receiver.next(Duration::from_millis(200)) => {
                if let Some(ClientEvent::Rtp { packet, at, .. }) = event {
                    if let Some((true, sent_ns)) = read_payload(&packet.payload) {
                        tally.received.fetch_add(1, Ordering::Relaxed);
                        let latency = at.duration_since(base).as_nanos() as u64 - sent_ns.min(at.duration_since(base).as_nanos() as u64);
                        tally.latencies_us.lock().expect("not poisoned").push(latency / 1_000);
                    }
                }
            }
            msg = ws.next() => {
                let Some(Ok(Message::Text(text))) = msg else { break };
                let frame: Value = serde_json::from_str(&text)?;
                offer_answered(&mut ws, &frame, &receiver, &mut call).await?;
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.publishers = args.publishers.min(2);
        args.listeners = args.listeners.min(3);
        args.secs = args.secs.min(2);
    }
    let kind = match args.kind {
        Media::Audio => Kind::Audio,
        Media::Video => Kind::Video,
    };
    let rate = args.rate.unwrap_or(match args.kind {
        Media::Audio => 50.0,
        Media::Video => 100.0,
    });
    let size = args.size.unwrap_or(match args.kind {
        Media::Audio => 160,
        Media::Video => 1200,
    });
    let server = Server::start(
        &args.roost,
        &[
            ("ROOST_CALLS__MESH_MAX", "0"),
            ("ROOST_CALLS__MAX_PARTICIPANTS", "1000"),
            ("ROOST_ROOMS__MAX_CALL_PARTICIPANTS_LIMIT", "1000"),
            // Packets that race the DTLS handshake are the stack's business.
            ("ROOST_LOG__LEVEL", "warn,rtc=error"),
        ],
    )?;
    let http = reqwest::Client::new();
    let people = args.publishers + args.listeners;
    eprintln!("registering {people} participants");
    let mut accounts = Vec::with_capacity(people);
    for i in 0..people {
        accounts.push(register(&http, &server.url, &format!("caller{i}")).await?);
    }
    let room_id = create_room(&http, &server.url, "bench call", &accounts).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib()?;

    let base = Instant::now();
    let tally = Arc::new(Tally::default());
    let ready = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, (token, _)) in accounts.iter().enumerate() {
        let plan = (i < args.publishers).then_some(Plan { kind, rate, size });
        tasks.push(tokio::spawn(participant(
            server.url.clone(),
            token.clone(),
            room_id.clone(),
            plan,
            base,
            tally.clone(),
            ready.clone(),
            stop.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < people as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {people} participants were ready in 60 s",
            ready.load(Ordering::Relaxed)
        );
        if let Some(t) = tasks.iter().find(|t| t.is_finished()) {
            anyhow::bail!("a participant stopped early: {t:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{people} participants in the call; warming up");
    tokio::time::sleep(Duration::from_secs(if args.smoke { 1 } else { 3 })).await;
    let rss_after = server.rss_kib()?;

    let cpu_before = server.cpu_secs()?;
    let started = Instant::now();
    tally.counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    tally.counting.store(false, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    // What was sent in the window arrives within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_secs = server.cpu_secs()? - cpu_before;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }

    let sent = tally.sent.load(Ordering::Relaxed);
    let received = tally.received.load(Ordering::Relaxed);
    // Each publisher's packets go to everyone else in the call.
    let expected = sent * (people as u64 - 1);
    let mut latencies = std::mem::take(&mut *tally.latencies_us.lock().expect("not poisoned"));
    latencies.sort_unstable();
    let loss = if expected == 0 {
        0.0
    } else {
        1.0 - received as f64 / expected as f64
    };
    let result = json!({
        "kind": format!("{:?}", args.kind).to_lowercase(),
        "publishers": args.publishers,
        "listeners": args.listeners,
        "payload_bytes": size,
        "rate_per_publisher": rate,
        "seconds": window,
        "packets_in_per_sec": sent as f64 / window,
        "packets_out_per_sec": received as f64 / window,
        "loss": loss,
        "latency_p50_us": percentile(&latencies, 50.0),
        "latency_p99_us": percentile(&latencies, 99.0),
        "server_cpu_us_per_packet_out": if received == 0 { 0.0 } else { cpu_secs * 1e6 / received as f64 },
        "server_kib_per_participant": rss_after.saturating_sub(rss_before) as f64 / people as f64,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    eprintln!("{}", serde_json::to_string_pretty(&result)?);
    println!("| kind | publishers | listeners | in/s | out/s | loss | p50 ms | p99 ms | server µs/packet out | KiB/participant |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.0} |",
        result["kind"].as_str().unwrap_or_default(),
        args.publishers,
        args.listeners,
        sent as f64 / window,
        received as f64 / window,
        loss * 100.0,
        percentile(&latencies, 50.0) as f64 / 1000.0,
        percentile(&latencies, 99.0) as f64 / 1000.0,
        result["server_cpu_us_per_packet_out"]
            .as_f64()
            .unwrap_or_default(),
        result["server_kib_per_participant"]
            .as_f64()
            .unwrap_or_default(),
    );
    if args.smoke {
        anyhow::ensure!(received > 0, "no packet went through the SFU");
    }
    Ok(())
}
