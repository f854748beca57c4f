//! The kernel's share of forwarding on this machine: what it costs a
//! sender's thread to put one datagram on the loopback to one of many
//! receivers, with nothing else in the path (no SRTP, no WebRTC stack).
//!
//! One thread sends `--rate` rounds a second; a round is one `--size`-byte
//! datagram to each of `--receivers` sockets, drained by their own threads,
//! as an SFU sends one packet to every subscriber. The tool measures the
//! sending thread's CPU time (user + system, from `getrusage`) per datagram,
//! with one `sendto` per datagram and with `sendmmsg` per round, in turns
//! within one run so that both see the same machine. On loopback the kernel
//! delivers each datagram to its receiver inside the sender's system call,
//! so this is the floor under any SFU's CPU per packet measured here.
//!
//! `udp_floor --receivers 50 --rate 400 --secs 3 --turns 3`

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Kernel cost of a loopback UDP send, per datagram, with sendto and sendmmsg")]
struct Args {
    #[arg(long, default_value_t = 50)]
    receivers: usize,
    /// Rounds a second (one datagram to every receiver per round).
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Seconds per turn.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Turns of each way of sending, alternated.
    #[arg(long, default_value_t = 3)]
    turns: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    SendTo,
    SendMmsg,
}

fn thread_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    let us = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(us(usage.user_time()) + us(usage.system_time()))
}

/// Sends one round; returns the datagrams sent.
fn round(
    socket: &UdpSocket,
    way: Way,
    payload: &[u8],
    to: &[SocketAddr],
    storage: &[Option<SockaddrStorage>],
    headers: &mut MultiHeaders<SockaddrStorage>,
) -> usize {
    match way {
        Way::SendTo => to
            .iter()
            .filter(|a| socket.send_to(payload, a).is_ok())
            .count(),
        Way::SendMmsg => {
            let slices: Vec<[IoSlice<'_>; 1]> =
                to.iter().map(|_| [IoSlice::new(payload)]).collect();
            sendmmsg(
                socket.as_raw_fd(),
                headers,
                &slices,
                storage,
                [],
                MsgFlags::empty(),
            )
            .map(|r| r.count())
            .unwrap_or(0)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::with_capacity(args.receivers);
    let mut threads = Vec::new();
    for _ in 0..args.receivers {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        addrs.push(socket.local_addr()?);
        let (stop, received) = (stop.clone(), received.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let storage: Vec<Option<SockaddrStorage>> = addrs
        .iter()
        .map(|a| Some(SockaddrStorage::from(*a)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(addrs.len(), None);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let payload = vec![0x5A; args.size];
    let every = Duration::from_secs_f64(1.0 / args.rate);

    let mut results = Vec::new();
    for turn in 0..args.turns * 2 {
        let way = if turn % 2 == 0 {
            Way::SendTo
        } else {
            Way::SendMmsg
        };
        let before_rx = received.load(Ordering::Relaxed);
        let cpu_before = thread_cpu()?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut next = start;
        while start.elapsed() < Duration::from_secs(args.secs) {
            sent += round(&socket, way, &payload, &addrs, &storage, &mut headers) as u64;
            next += every;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let cpu = thread_cpu()? - cpu_before;
        std::thread::sleep(Duration::from_millis(200));
        let got = received.load(Ordering::Relaxed) - before_rx;
        let per = cpu.as_secs_f64() * 1e6 / sent.max(1) as f64;
        eprintln!("{way:?}: {sent} datagrams, {got} received, {per:.2} µs CPU each");
        results.push(json!({
            "way": format!("{way:?}"),
            "receivers": args.receivers,
            "size": args.size,
            "datagrams": sent,
            "received": got,
            "sender_cpu_us_per_datagram": per,
        }));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let mean = |way: &str| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r["way"] == way)
            .filter_map(|r| r["sender_cpu_us_per_datagram"].as_f64())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    println!("| receivers | size | sendto µs/datagram | sendmmsg µs/datagram |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} | {:.2} |",
        args.receivers,
        args.size,
        mean("SendTo"),
        mean("SendMmsg")
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}
