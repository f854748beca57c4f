//! The media engine's hot path, piece by piece and whole, without sockets:
//!
//! - `route`: which peer a datagram belongs to, with 10 to 10,000 peers on
//!   the port (one hash lookup by address: it should not grow);
//! - `rewrite`: a subscriber's view of a packet (SSRC, sequence number,
//!   timestamp);
//! - `srtp`: the stack's SRTP protect and unprotect of a 1,200-byte packet,
//!   for the two profiles browsers offer;
//! - `forward`: one publisher's packet through a media loop to N
//!   subscribers: demux, SRTP unprotect, fan-out, rewrite, SRTP protect per
//!   subscriber (`roost_media::bench::Call`, every peer a real connection
//!   held in memory);
//! - `owned`: the same fan-out with the stack's component crates called
//!   directly (`owned/mod.rs`), the model of a packet path Roost owns.
//!
//! `cargo bench -p roost-bench --bench hot_path`; results in `docs/benchmarks.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roost_media::bench::Call;
use roost_media::demux::Demux;
use roost_media::munger::Munger;
use roost_media::Kind;
use rtc::srtp::context::Context;
use rtc::srtp::option::srtp_no_replay_protection;
use rtc::srtp::protection_profile::ProtectionProfile;

mod owned;

fn address(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40_000))
}

/// An RTP packet of `payload` bytes: version 2, payload type 96.
fn rtp_packet(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.resize(12 + payload, 0xAB);
    p
}

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    let datagram = rtp_packet(1, 1200);
    for peers in [10usize, 100, 1_000, 10_000] {
        let mut demux: Demux<u64> = Demux::new(8);
        for i in 0..peers {
            let ufrag = format!("ufrag{i:08}");
            demux.add(&ufrag, i as u64);
            demux.learn(address(i), i as u64);
        }
        assert_eq!(demux.addresses(), peers);
        let mut i = 0usize;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, &peers| {
            b.iter(|| {
                // A stride through the table, so no lookup finds the last one's cache lines.
                i = (i + 7_919) % peers;
                demux.route(&datagram, address(i))
            })
        });
    }
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    let mut track = Munger::new(0xCAFE, 90_000);
    let now = Instant::now();
    let mut seq = 0u16;
    c.bench_function("rewrite", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            track.rewrite(0x1234_5678, seq, u32::from(seq) * 3000, now)
        })
    });
}

fn srtp(c: &mut Criterion) {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let crypto = provider.crypto();
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    for (name, profile) in [
        (
            "aes128-cm-hmac-sha1-80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        ("aead-aes128-gcm", ProtectionProfile::AeadAes128Gcm),
    ] {
        let key = vec![7u8; profile.key_len()];
        let salt = vec![9u8; profile.salt_len()];
        let context = || {
            Context::new(
                &key,
                &salt,
                profile,
                Some(srtp_no_replay_protection()),
                None,
                crypto,
            )
            .expect("an SRTP context")
        };
        let (mut sender, mut receiver) = (context(), context());
        let plain = rtp_packet(1, 1200);
        group.bench_function(BenchmarkId::new("protect", name), |b| {
            b.iter(|| sender.encrypt_rtp(&plain).expect("protects"))
        });
        let protected = sender.encrypt_rtp(&plain).expect("protects");
        group.bench_function(BenchmarkId::new("unprotect", name), |b| {
            b.iter(|| receiver.decrypt_rtp(&protected).expect("unprotects"))
        });
    }
    group.finish();
}

/// Packets generated (untimed) and forwarded (timed) in chunks of this many.
const CHUNK: u64 = 256;

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (kind, name, payload) in [(Kind::Video, "video", 1200), (Kind::Audio, "audio", 100)] {
        for subscribers in [1usize, 10, 50] {
            let mut call = Call::new(subscribers, kind).expect("the call connects");
            let payload = vec![0x5Au8; payload];
            let first = call.packet(&payload);
            assert_eq!(
                call.forward(first),
                subscribers,
                "every subscriber gets the packet"
            );
            // Per forwarded copy: the throughput is packets out of the loop.
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_function(BenchmarkId::new(name, subscribers), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let packets: Vec<_> = (0..n).map(|_| call.packet(&payload)).collect();
                        let start = Instant::now();
                        for p in packets {
                            criterion::black_box(call.forward(p));
                        }
                        spent += start.elapsed();
                        left -= n;
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

fn owned(c: &mut Criterion) {
    let mut group = c.benchmark_group("owned");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, payload) in [("video", 1200), ("audio", 100)] {
        for subscribers in [1usize, 10, 50] {
            let mut fanout = owned::OwnedFanout::new(subscribers);
            let payload = vec![0x5Au8; payload];
            let mut out = Vec::with_capacity(subscribers);
            let first = fanout.packet(&payload);
            assert_eq!(
                fanout.forward(&first, Instant::now(), &mut out),
                subscribers
            );
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_function(BenchmarkId::new(name, subscribers), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let packets: Vec<_> = (0..n).map(|_| fanout.packet(&payload)).collect();
                        let start = Instant::now();
                        for p in packets {
                            out.clear();
                            criterion::black_box(fanout.forward(&p, Instant::now(), &mut out));
                        }
                        spent += start.elapsed();
                        left -= n;
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, route, rewrite, srtp, forward, owned);
criterion_main!(benches);
