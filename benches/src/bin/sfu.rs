//! Calls through the SFU of a real `roost serve`, with real WebRTC peers
//! (ICE, DTLS-SRTP) over loopback and the real signalling on the gateway.
//!
//! `--publishers` participants each send one track (`--kind audio`: Opus-
//! sized packets at 50 a second; `--kind video`: 1,200-byte packets at
//! `--rate`); they and `--listeners` receive-only participants receive every
//! track but their own. Each payload carries its publisher and send time.
//! After a warm-up, the tool counts for `--secs` what goes into and out of
//! the server and reports: packets per second in and out, loss, send-to-
//! receive latency (p50, p99), the server's CPU time per forwarded packet,
//! in all and split into user (Roost's own work) and system (the kernel's,
//! mostly sending), and its memory per participant (both from `/proc`).
//! After each turn the kernel's floor for the same fan-out (one `sendmmsg`
//! round per packet to every other participant, [`roost_bench::floor`]) is
//! measured in the same sitting, and each result carries it and the
//! server's CPU as a multiple of it. `--json` writes the
//! result; a Markdown table row goes to stdout. `--smoke` runs a few peers
//! for a few seconds, so CI keeps the tool working; it asserts no timing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use roost_bench::floor::{self, Way};
use roost_bench::{
    cpu_time, create_room, janus, open, percentile, register, rss_kib, CpuTime, Server, Ws,
};
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
    /// Packets each publisher sends back to back, as an encoder that does
    /// not pace (aiortc, GStreamer) sends a video frame's; `--rate` stays
    /// the packets per second.
    #[arg(long, default_value_t = 1)]
    burst: u32,
    /// Payload bytes per packet (default: 160 for audio, 1,200 for video).
    #[arg(long)]
    size: Option<usize>,
    /// Seconds measured, after a warm-up.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// A few peers for a few seconds: checks the tool, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Write the results (a JSON array, one object per run) here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Running Roost nodes to use instead of starting one; participants
    /// are spread over them in turn. Their rate limits must allow the
    /// tool's registrations (see `Server::start`).
    #[arg(long)]
    url: Vec<String>,
    /// Processes whose CPU and memory are measured, with `--url`.
    #[arg(long)]
    pid: Vec<u32>,
    /// Janus's HTTP API (`http://127.0.0.1:8088/janus`): each turn runs the
    /// scenario against Roost, then against Janus's VideoRoom.
    #[arg(long)]
    janus: Option<String>,
    /// Janus's processes, whose CPU and memory are measured.
    #[arg(long)]
    janus_pid: Vec<u32>,
    /// Runs of each server, alternated, so both see the same machine.
    #[arg(long, default_value_t = 1)]
    turns: usize,
    /// Calls of this shape at once, each in its own room (Roost only).
    /// With more than one, memory per participant is what the calls after
    /// the first added: a warm server's cost of one more participant,
    /// without the memory the first call's use brought in once (thread
    /// arenas, tables, buffers).
    #[arg(long, default_value_t = 1)]
    calls: usize,
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
        // A thousand joining at once queue behind each other's database
        // writes and DTLS handshakes: on two cores the last one waits
        // about 20 s for its answer.
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .with_context(|| format!("no answer to {id} from the server within 60 s"))?
            .context("the socket closed")??;
        let text = match msg {
            Message::Text(text) => text,
            Message::Close(close) => anyhow::bail!("the server closed the socket: {close:?}"),
            _ => continue,
        };
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

/// Where the tool's peers bind.
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[derive(Clone, Copy)]
struct Plan {
    kind: Kind,
    rate: f64,
    /// Packets sent back to back each time.
    burst: u32,
    size: usize,
}

/// One participant's peers once set up: what it sends with, if it
/// publishes, and what it receives with.
struct Peers {
    sender: Option<(Client, Plan)>,
    receiver: Client,
}

/// Joins a Roost call over the gateway, publishes if asked; returns the
/// peers and the socket, which must go on answering the server's offers.
async fn join_roost(
    url: &str,
    token: &str,
    room: &str,
    publishes: Option<Plan>,
) -> anyhow::Result<(Peers, Ws)> {
    let mut ws = open(url, token).await?;
    let receiver = Client::start(LOOPBACK, None).await?;
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
    if let Some(plan) = publishes {
        let mut client = Client::start(LOOPBACK, Some(plan.kind)).await?;
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
        anyhow::ensure!(
            client.connected(Duration::from_secs(20)).await,
            "the publisher did not connect"
        );
        sender = Some((client, plan));
    }
    Ok((Peers { sender, receiver }, ws))
}

/// Publishes one track into a Janus VideoRoom; returns the session, the
/// connected sender and its feed id.
async fn publish_janus(
    http: &reqwest::Client,
    api: &str,
    room: u64,
    plan: Plan,
) -> anyhow::Result<(janus::Session, Client, u64)> {
    let session = janus::Session::create(http, api).await?;
    let handle = session.attach().await?;
    let mut client = Client::start(LOOPBACK, Some(plan.kind)).await?;
    let offer = client.offer().await?;
    let joined = session
        .message(
            handle,
            json!({"request": "joinandconfigure", "ptype": "publisher", "room": room}),
            Some(janus::jsep("offer", &offer)),
        )
        .await?;
    let feed = joined["plugindata"]["data"]["id"]
        .as_u64()
        .context("no publisher id")?;
    client.accept_answer(janus::sdp_of(&joined)?).await?;
    anyhow::ensure!(
        client.connected(Duration::from_secs(20)).await,
        "the publisher did not connect to Janus"
    );
    session.webrtc_up(handle).await?;
    Ok((session, client, feed))
}

/// Subscribes to `feeds` on a new handle of `session`; returns the receiver.
async fn subscribe_janus(
    session: &janus::Session,
    room: u64,
    feeds: &[u64],
) -> anyhow::Result<Client> {
    let receiver = Client::start(LOOPBACK, None).await?;
    if feeds.is_empty() {
        return Ok(receiver);
    }
    let handle = session.attach().await?;
    let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
    let attached = session
        .message(
            handle,
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
            None,
        )
        .await?;
    let answer = receiver.answer(janus::sdp_of(&attached)?).await?;
    session
        .message(
            handle,
            json!({"request": "start"}),
            Some(janus::jsep("answer", &answer)),
        )
        .await?;
    Ok(receiver)
}

/// The measured part of one participant, until `stop`: sends its track if it
/// publishes, counts what it receives, and keeps Roost's socket answering.
async fn media(
    peers: Peers,
    mut ws: Option<Ws>,
    base: Instant,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let Peers {
        sender,
        mut receiver,
    } = peers;
    let (rate, burst) = sender
        .as_ref()
        .map_or((1.0, 1), |(_, plan)| (plan.rate, plan.burst.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(f64::from(burst) / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq: u16 = 0;
    let mut frame: u32 = 0;
    let mut call = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick(), if sender.is_some() => {
                if let Some((client, plan)) = &sender {
                    let counted = tally.counting.load(Ordering::Relaxed);
                    let sent_ns = base.elapsed().as_nanos() as u64;
                    frame = frame.wrapping_add(960);
                    for _ in 0..burst {
                        seq = seq.wrapping_add(1);
                        client.send(seq, frame, payload(plan.size, counted, sent_ns));
                    }
                    if counted {
                        tally.sent.fetch_add(u64::from(burst), Ordering::Relaxed);
                    }
                }
            }
            event = receiver.next(Duration::from_millis(200)) => {
                if let Some(ClientEvent::Rtp { packet, at, .. }) = event {
                    if let Some((true, sent_ns)) = read_payload(&packet.payload) {
                        tally.received.fetch_add(1, Ordering::Relaxed);
                        let at_ns = at.duration_since(base).as_nanos() as u64;
                        tally.latencies_us.lock().expect("not poisoned").push(at_ns.saturating_sub(sent_ns) / 1_000);
                    }
                }
            }
            msg = next_frame(ws.as_mut()) => {
                let (Some(ws), Some(Ok(msg))) = (ws.as_mut(), msg) else { break };
                match msg {
                    Message::Text(text) => {
                        let frame: Value = serde_json::from_str(&text)?;
                        offer_answered(ws, &frame, &receiver, &mut call).await?;
                    }
                    Message::Close(close) => anyhow::bail!("the server closed the socket: {close:?}"),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// The next frame of Roost's socket; never, without one.
async fn next_frame(
    ws: Option<&mut Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Which SFU a run measures.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Roost,
    Janus,
}

/// One measured run against `target`.
async fn run(args: &Args, target: Target, plan: Plan) -> anyhow::Result<Value> {
    let people = args.publishers + args.listeners;
    let http = reqwest::Client::new();
    let base = Instant::now();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Kept until the end of the run: the server, the Janus room's session.
    let mut _server = None;
    let mut admin_keepalive = None;
    // Each participant's task sets it up, counts it ready and goes on
    // into the measured part at once, so no socket goes unread.
    let mut tasks = Vec::new();
    let ready = Arc::new(AtomicU64::new(0));
    let pids: Vec<u32>;
    let rss_before;
    // Participants the memory growth is divided among.
    let mut counted = people;
    match target {
        Target::Roost => {
            let urls = if args.url.is_empty() {
                // The whole scenario in one call, and at least the usual large room.
                let call_size = (args.publishers + args.listeners).max(1000).to_string();
                let server = Server::start(
                    &args.roost,
                    &[
                        ("ROOST_CALLS__MESH_MAX", "0"),
                        ("ROOST_CALLS__MAX_PARTICIPANTS", &call_size),
                        // Every join is announced to everyone: a large room joining at once is a burst.
                        ("ROOST_GATEWAY__OUTBOUND_QUEUE", "8192"),
                        ("ROOST_ROOMS__MAX_CALL_PARTICIPANTS_LIMIT", &call_size),
                        // Packets that race the DTLS handshake are the stack's business.
                        ("ROOST_LOG__LEVEL", "warn,rtc=error"),
                    ],
                )?;
                let url = server.url.clone();
                _server = Some(server);
                vec![url]
            } else {
                args.url.clone()
            };
            pids = match &_server {
                Some(server) => vec![server.pid()],
                None => args.pid.clone(),
            };
            let calls = args.calls.max(1);
            eprintln!("roost: registering {calls} × {people} participants");
            let mut rooms = Vec::with_capacity(calls);
            for _ in 0..calls {
                let mut accounts = Vec::with_capacity(people);
                for i in 0..people {
                    let url = &urls[i % urls.len()];
                    let name = format!("caller{i}-{}", rand_id());
                    accounts.push(register(&http, url, &name).await?);
                }
                let room = create_room(&http, &urls[0], "bench call", &accounts).await?;
                rooms.push((room, accounts));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut before = memory(&pids)?;
            for (c, (room, accounts)) in rooms.into_iter().enumerate() {
                if c == 1 {
                    // The first call is up and its media flows: from here
                    // on, what each participant adds to a warm server.
                    wait_ready(&ready, people as u64, &mut tasks).await?;
                    tokio::time::sleep(Duration::from_secs(if args.smoke { 1 } else { 3 })).await;
                    before = memory(&pids)?;
                    counted = people * (calls - 1);
                }
                for (i, (token, _)) in accounts.into_iter().enumerate() {
                    let url = urls[i % urls.len()].clone();
                    let room = room.clone();
                    let publishes = (i < args.publishers).then_some(plan);
                    let (tally, ready, stop) = (tally.clone(), ready.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let (peers, ws) = join_roost(&url, &token, &room, publishes).await?;
                        ready.fetch_add(1, Ordering::Relaxed);
                        media(peers, Some(ws), base, tally, stop).await
                    }));
                }
            }
            rss_before = before;
        }
        Target::Janus => {
            let api = args
                .janus
                .clone()
                .context("--janus names Janus's API for a Janus run")?;
            pids = args.janus_pid.clone();
            rss_before = memory(&pids)?;
            let admin = janus::Session::create(&http, &api).await?;
            let handle = admin.attach().await?;
            let room = admin.create_room(handle, args.publishers).await?;
            eprintln!("janus: room {room}, {people} participants");
            let mut published = Vec::new();
            for _ in 0..args.publishers {
                let (http, api) = (http.clone(), api.clone());
                published.push(tokio::spawn(async move {
                    publish_janus(&http, &api, room, plan).await
                }));
            }
            let mut sessions = Vec::new();
            for p in published {
                sessions.push(p.await??);
            }
            let feeds: Vec<u64> = sessions.iter().map(|(_, _, feed)| *feed).collect();
            let mut sessions = sessions.into_iter();
            for _ in 0..people {
                let (session, sender, own) = match sessions.next() {
                    Some((session, client, feed)) => (session, Some((client, plan)), Some(feed)),
                    None => (janus::Session::create(&http, &api).await?, None, None),
                };
                let others: Vec<u64> = feeds.iter().copied().filter(|f| Some(*f) != own).collect();
                let (tally, ready, stop) = (tally.clone(), ready.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let receiver = subscribe_janus(&session, room, &others).await?;
                    // From now on the long-poll only keeps the session alive.
                    let keepalive =
                        tokio::spawn(async move { while session.poll().await.is_ok() {} });
                    ready.fetch_add(1, Ordering::Relaxed);
                    let done = media(Peers { sender, receiver }, None, base, tally, stop).await;
                    keepalive.abort();
                    done
                }));
            }
            admin_keepalive = Some(tokio::spawn(
                async move { while admin.poll().await.is_ok() {} },
            ));
        }
    }

    let calls = match target {
        Target::Roost => args.calls.max(1),
        Target::Janus => 1,
    };
    let joining = Instant::now();
    wait_ready(&ready, (people * calls) as u64, &mut tasks).await?;
    eprintln!(
        "{target:?}: {calls} × {people} participants in the call after {:.1} s; warming up",
        joining.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(if args.smoke { 1 } else { 3 })).await;
    let rss_after = memory(&pids)?;

    let cpu_before = cpu(&pids)?;
    let started = Instant::now();
    tally.counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    tally.counting.store(false, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    // What was sent in the window arrives within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu(&pids)? - cpu_before;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    if let Some(k) = admin_keepalive {
        k.abort();
    }

    let sent = tally.sent.load(Ordering::Relaxed);
    let received = tally.received.load(Ordering::Relaxed);
    // Each publisher's packets go to everyone else in its call.
    let expected = sent * (people as u64 - 1);
    let mut latencies = std::mem::take(&mut *tally.latencies_us.lock().expect("not poisoned"));
    latencies.sort_unstable();
    let per_packet = |secs: f64| {
        if received == 0 || pids.is_empty() {
            Value::Null
        } else {
            json!(secs * 1e6 / received as f64)
        }
    };
    let loss = if expected == 0 {
        0.0
    } else {
        1.0 - received as f64 / expected as f64
    };
    Ok(json!({
        "server": format!("{target:?}").to_lowercase(),
        "kind": format!("{:?}", args.kind).to_lowercase(),
        "publishers": args.publishers,
        "listeners": args.listeners,
        "calls": calls,
        "payload_bytes": plan.size,
        "rate_per_publisher": plan.rate,
        "burst": plan.burst,
        "seconds": window,
        "packets_in_per_sec": sent as f64 / window,
        "packets_out_per_sec": received as f64 / window,
        "loss": loss,
        "latency_p50_us": percentile(&latencies, 50.0),
        "latency_p99_us": percentile(&latencies, 99.0),
        "server_cpu_us_per_packet_out": per_packet(cpu.total()),
        "server_user_us_per_packet_out": per_packet(cpu.user),
        "server_system_us_per_packet_out": per_packet(cpu.system),
        "server_kib_per_participant": if pids.is_empty() { Value::Null } else { json!(rss_after.saturating_sub(rss_before) as f64 / counted as f64) },
    }))
}

/// Waits until `n` participants are ready, for a minute and more for
/// large rooms; fails if one stops early.
async fn wait_ready(
    ready: &AtomicU64,
    n: u64,
    tasks: &mut Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let ready_within = Duration::from_secs(60 + n / 4);
    let deadline = Instant::now() + ready_within;
    while ready.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} participants were ready within {ready_within:?}",
            ready.load(Ordering::Relaxed)
        );
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            tasks.swap_remove(i).await??;
            anyhow::bail!("a participant stopped early");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The summed resident memory of `pids`, in KiB.
fn memory(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// The summed CPU time of `pids`.
fn cpu(pids: &[u32]) -> anyhow::Result<CpuTime> {
    pids.iter().map(|p| cpu_time(*p)).sum()
}

/// The kernel's CPU per datagram for the fan-out of `plan` on this machine
/// now: each publisher's packets, one `sendmmsg` round to every other
/// participant (what the engine does), without SRTP or WebRTC.
async fn floor_now(args: &Args, plan: Plan) -> anyhow::Result<f64> {
    let people = args.publishers + args.listeners;
    let load = floor::Load {
        receivers: people.saturating_sub(1).max(1),
        size: plan.size,
        rate: plan.rate * args.publishers as f64,
        secs: (args.secs as f64).min(3.0),
    };
    let turns =
        tokio::task::spawn_blocking(move || floor::measure(load, &[Way::SendMmsg])).await??;
    Ok(turns[0].cpu_us_per_datagram)
}

fn row(r: &Value) -> String {
    let num = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
        r["server"].as_str().unwrap_or_default(),
        r["kind"].as_str().unwrap_or_default(),
        r["publishers"],
        r["listeners"],
        num("packets_in_per_sec"),
        num("packets_out_per_sec"),
        num("loss") * 100.0,
        num("latency_p50_us") / 1000.0,
        num("latency_p99_us") / 1000.0,
        num("server_cpu_us_per_packet_out"),
        num("server_user_us_per_packet_out"),
        num("server_system_us_per_packet_out"),
        num("floor_us_per_datagram"),
        num("cpu_over_floor"),
        num("server_kib_per_participant"),
    )
}

/// The mean CPU per packet of `target`'s runs.
fn mean_cpu(results: &[Value], target: &str) -> Option<f64> {
    let v: Vec<f64> = results
        .iter()
        .filter(|r| r["server"] == target)
        .filter_map(|r| r["server_cpu_us_per_packet_out"].as_f64())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.publishers = args.publishers.min(2);
        args.listeners = args.listeners.min(3);
        args.secs = args.secs.min(2);
        args.turns = 1;
    }
    let kind = match args.kind {
        Media::Audio => Kind::Audio,
        Media::Video => Kind::Video,
    };
    let plan = Plan {
        kind,
        rate: args.rate.unwrap_or(match args.kind {
            Media::Audio => 50.0,
            Media::Video => 100.0,
        }),
        burst: args.burst,
        size: args.size.unwrap_or(match args.kind {
            Media::Audio => 160,
            Media::Video => 1200,
        }),
    };
    let mut results = Vec::new();
    for _ in 0..args.turns.max(1) {
        let mut turn = vec![run(&args, Target::Roost, plan).await?];
        if args.janus.is_some() {
            turn.push(run(&args, Target::Janus, plan).await?);
        }
        // The floor of the same sitting, right after the turn it stands beside.
        let floor = floor_now(&args, plan).await?;
        for r in &mut turn {
            r["floor_us_per_datagram"] = json!(floor);
            if let Some(cpu) = r["server_cpu_us_per_packet_out"].as_f64() {
                r["cpu_over_floor"] = json!(cpu / floor);
            }
        }
        results.extend(turn);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    eprintln!("{}", serde_json::to_string_pretty(&results)?);
    println!("| server | kind | publishers | listeners | in/s | out/s | loss | p50 ms | p99 ms | server µs/packet out | user µs | system µs | floor µs | × floor | KiB/participant |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!("{}", row(r));
    }
    if let (Some(roost), Some(janus)) = (mean_cpu(&results, "roost"), mean_cpu(&results, "janus")) {
        println!(
            "\nCPU per packet out: Roost {roost:.2} µs, Janus {janus:.2} µs, ratio {:.2}",
            roost / janus
        );
    }
    if args.smoke {
        anyhow::ensure!(
            results
                .iter()
                .all(|r| r["packets_out_per_sec"].as_f64() > Some(0.0)),
            "no packet went through the SFU"
        );
        anyhow::ensure!(
            results
                .iter()
                .all(|r| r["server_user_us_per_packet_out"].is_number()
                    && r["server_system_us_per_packet_out"].is_number()
                    && r["floor_us_per_datagram"].is_number()),
            "a result lacks the split of the server's CPU or the floor beside it"
        );
    }
    Ok(())
}
