//! Forwards packets through one in-memory media loop (`roost_media::bench::Call`,
//! the `forward` bench's call), for instruction counts per forwarded copy
//! under callgrind, which repeat exactly on a busy machine:
//!
//! ```text
//! cargo build --release -p roost-bench --example forward_copies
//! for n in 200 1200; do
//!   valgrind --tool=callgrind --toggle-collect='roost_media::bench::Call::forward' \
//!     --callgrind-out-file=/tmp/cg.$n target/release/examples/forward_copies video 10 $n
//! done
//! ```
//!
//! The difference of the two totals over 1,000 packets times 10 subscribers
//! is the steady state's instructions per copy; the first packets' one-off
//! work cancels out. With `owned` as a fourth argument it runs the model of
//! a packet path Roost owns instead (`benches/benches/owned/mod.rs`); count
//! it with `--toggle-collect='*OwnedFanout::forward'`.
//!
//! With `cold` as a fourth argument, 64 MiB are written over between two
//! packets, so every copy finds its subscriber's state out of the caches,
//! as the server does at a few packets a second per publisher; it prints
//! the time spent forwarding alone, per copy.
//!
//! Arguments: `video` or `audio`, the number of subscribers, the number of
//! packets, and `owned`, `cold` or nothing.

use std::time::Instant;

use roost_media::bench::Call;
use roost_media::Kind;

#[path = "../benches/owned/mod.rs"]
mod owned;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.get(3).is_some_and(|a| a == "owned") {
        return run_owned(&args);
    }
    let (kind, payload) = match args.first().map(String::as_str) {
        Some("audio") => (Kind::Audio, 100),
        _ => (Kind::Video, 1200),
    };
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (subscribers, packets) = (number(1, 10), number(2, 1000));
    let mut call = Call::new(subscribers, kind).expect("the call connects");
    let payload = vec![0x5Au8; payload];
    let cold = args.get(3).is_some_and(|a| a == "cold");
    let mut evict = if cold {
        vec![0u8; 64 << 20]
    } else {
        Vec::new()
    };
    let mut copies = 0;
    let mut forwarding = std::time::Duration::ZERO;
    for _ in 0..packets {
        let packet = call.packet(&payload);
        for byte in evict.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(1);
        }
        let started = Instant::now();
        copies += call.forward(packet);
        forwarding += started.elapsed();
    }
    assert_eq!(
        copies,
        subscribers * packets,
        "every subscriber gets every packet"
    );
    println!(
        "{copies} copies, {:.0} ns per copy forwarding{}",
        forwarding.as_nanos() as f64 / copies as f64,
        if cold {
            " (caches evicted between packets)"
        } else {
            ""
        }
    );
}

/// The model of an owned packet path, driven the same way.
fn run_owned(args: &[String]) {
    let payload = match args.first().map(String::as_str) {
        Some("audio") => 100,
        _ => 1200,
    };
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (subscribers, packets) = (number(1, 10), number(2, 1000));
    let mut fanout = owned::OwnedFanout::new(subscribers);
    let payload = vec![0x5Au8; payload];
    let mut out = Vec::with_capacity(subscribers);
    let mut copies = 0;
    for _ in 0..packets {
        let packet = fanout.packet(&payload);
        out.clear();
        copies += forward_owned(&mut fanout, &packet, &mut out);
    }
    assert_eq!(
        copies,
        subscribers * packets,
        "every subscriber gets every packet"
    );
    println!("{copies} copies");
}

#[inline(never)]
fn forward_owned(
    fanout: &mut owned::OwnedFanout,
    packet: &[u8],
    out: &mut Vec<bytes::BytesMut>,
) -> usize {
    fanout.forward(packet, Instant::now(), out)
}
