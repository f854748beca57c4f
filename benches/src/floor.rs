//! The kernel's share of forwarding on this machine: what it costs a
//! sender's thread to put one datagram on the loopback to one of many
//! receivers, with nothing else in the path (no SRTP, no WebRTC stack).
//!
//! One thread sends `rate` rounds a second; a round is one `size`-byte
//! datagram to each of `receivers` sockets, drained by their own threads,
//! as an SFU sends one packet to every subscriber. The sending thread's CPU
//! time (user + system, from `getrusage`) is measured per datagram, with one
//! `sendto` per datagram or one `sendmmsg` per round. On loopback the kernel
//! delivers each datagram to its receiver inside the sender's system call,
//! so this is the floor under any SFU's CPU per packet measured here.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

/// How a round is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// One `sendto` per datagram.
    SendTo,
    /// One `sendmmsg` per round, as the engine sends a packet's copies.
    SendMmsg,
}

/// What one turn measured.
#[derive(Clone, Copy, Debug)]
pub struct Turn {
    pub way: Way,
    pub sent: u64,
    pub received: u64,
    /// The sending thread's CPU time per datagram sent, in µs.
    pub cpu_us_per_datagram: f64,
}

/// What is sent in each turn.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub receivers: usize,
    pub size: usize,
    /// Rounds a second.
    pub rate: f64,
    pub secs: f64,
}

/// Runs one turn of `load` for each of `ways`, in order, on one set of
/// receivers, so that every way sees the same machine.
pub fn measure(load: Load, ways: &[Way]) -> anyhow::Result<Vec<Turn>> {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::with_capacity(load.receivers);
    let mut threads = Vec::new();
    for _ in 0..load.receivers.max(1) {
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
    let payload = vec![0x5A; load.size];
    let every = Duration::from_secs_f64(1.0 / load.rate.max(1.0));
    let length = Duration::from_secs_f64(load.secs);

    let mut turns = Vec::with_capacity(ways.len());
    for &way in ways {
        let before_rx = received.load(Ordering::Relaxed);
        let cpu_before = thread_cpu()?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut next = start;
        while start.elapsed() < length {
            sent += round(&socket, way, &payload, &addrs, &storage, &mut headers) as u64;
            next += every;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let cpu = thread_cpu()? - cpu_before;
        std::thread::sleep(Duration::from_millis(200));
        turns.push(Turn {
            way,
            sent,
            received: received.load(Ordering::Relaxed) - before_rx,
            cpu_us_per_datagram: cpu.as_secs_f64() * 1e6 / sent.max(1) as f64,
        });
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(turns)
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
