//! Chat fan-out through the WebSocket gateway of a real `roost serve`.
//!
//! Clients in rooms of `--room-size` each send `--rate` messages a second for
//! `--secs`; every member receives every message of its room. Reports
//! deliveries per second, send-to-delivery latency (p50, p99), server CPU per
//! delivery, and the server's memory per idle connection. Everything runs on
//! loopback and stops by itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use roost_bench::{cpu_secs, create_room, open, percentile, register, rss_kib, Server};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(about = "Chat fan-out benchmark of the Roost WebSocket gateway")]
struct Args {
    /// The roost binary to start (build it with --release first).
    #[arg(long, default_value = "target/release/roost")]
    roost: PathBuf,
    #[arg(long, default_value_t = 4)]
    rooms: usize,
    #[arg(long, default_value_t = 50)]
    room_size: usize,
    /// Messages per second each client sends.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds of sending that are measured.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Idle connections opened to measure memory per connection.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args.roost, &[])?;
    let http = reqwest::Client::new();
    let users = args.rooms * args.room_size;
    eprintln!("registering {users} users");
    let mut accounts = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(8) {
        let names: Vec<String> = chunk.iter().map(|i| format!("bench{i}")).collect();
        let batch = names.iter().map(|name| register(&http, &server.url, name));
        for r in futures_util::future::join_all(batch).await {
            accounts.push(r?);
        }
    }
    let mut room_of = Vec::with_capacity(users);
    for r in 0..args.rooms {
        let members = &accounts[r * args.room_size..(r + 1) * args.room_size];
        let room_id = create_room(&http, &server.url, &format!("bench room {r}"), members).await?;
        room_of.extend(std::iter::repeat_n(room_id, args.room_size));
    }

    eprintln!("opening {} idle connections", args.idle);
    // Measured first, on a fresh server, so memory freed by other phases cannot hide the cost.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server.pid())?;
    let (idle_token, _) = register(&http, &server.url, "idle").await?;
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        idle.push(open(&server.url, &idle_token).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(server.pid())?;
    let per_idle_kib = (rss_after.saturating_sub(rss_before)) as f64 / args.idle.max(1) as f64;
    drop(idle);

    eprintln!("connecting {users} clients");
    let measuring = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (i, (token, _)) in accounts.iter().enumerate() {
        let ws = open(&server.url, token).await?;
        let (mut tx, mut rx) = ws.split();
        let measuring_r = measuring.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies: Vec<u64> = Vec::new();
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(t) = msg else { continue };
                if !t.contains(r#""type":"message.new""#) {
                    continue;
                }
                let now = now_nanos();
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                let Some(sent) = v["message"]["body"]
                    .as_str()
                    .and_then(|b| b.strip_prefix("bench "))
                else {
                    continue;
                };
                let Ok(sent) = sent.parse::<u128>() else {
                    continue;
                };
                if measuring_r.load(Ordering::Relaxed) {
                    latencies.push(((now.saturating_sub(sent)) / 1000) as u64);
                }
            }
            latencies
        }));
        let room = room_of[i].clone();
        let rate = args.rate;
        let secs = args.secs;
        senders.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / rate);
            // Spread the clients' sends over the period.
            tokio::time::sleep(period.mul_f64((i % 97) as f64 / 97.0)).await;
            let mut tick = tokio::time::interval(period);
            let end = Instant::now() + Duration::from_secs(secs + 2);
            let mut n = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                n += 1;
                let frame = json!({"type": "message.send", "id": format!("s{n}"), "room_id": room,
                    "body": format!("bench {}", now_nanos()), "client_msg_id": format!("{i}-{n}")});
                if tx
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            tx
        }));
    }

    // Two seconds of warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_start = cpu_secs(server.pid())?;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(server.pid())? - cpu_start;

    let mut sinks = Vec::new();
    for s in senders {
        sinks.push(s.await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await?);
    }
    latencies.sort_unstable();
    let deliveries = latencies.len() as f64;

    let result = json!({
        "rooms": args.rooms, "room_size": args.room_size, "clients": users, "rate_per_client": args.rate,
        "window_secs": window,
        "deliveries": deliveries, "deliveries_per_sec": deliveries / window,
        "latency_ms": {"p50": percentile(&latencies, 50.0) as f64 / 1000.0, "p99": percentile(&latencies, 99.0) as f64 / 1000.0,
                       "max": latencies.last().copied().unwrap_or(0) as f64 / 1000.0},
        "server_cpu_secs": cpu, "server_cpu_us_per_delivery": if deliveries > 0.0 { cpu * 1e6 / deliveries } else { 0.0 },
        "idle_connections": args.idle, "memory_kib_per_idle_connection": per_idle_kib,
    });
    println!("| clients | room size | sends/s | deliveries/s | p50 ms | p99 ms | server CPU µs/delivery | KiB/idle conn |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
        users,
        args.room_size,
        users as f64 * args.rate,
        deliveries / window,
        result["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        result["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        result["server_cpu_us_per_delivery"].as_f64().unwrap_or(0.0),
        per_idle_kib
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    eprintln!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
