//! A model of the packet path owned by Roost: one publisher's SRTP packet
//! forwarded to N subscribers with the stack's component crates called
//! directly (`rtc-srtp` to unprotect and protect, `rtc-rtp` to read the
//! publisher's header), Roost's munger for the numbers and its own header
//! writer (`roost_media::peer::rtp_writer`), without `RTCPeerConnection`'s
//! handler chain and interceptors. Each copy carries the `mid` header extension, as
//! the engine's do, and goes into a retransmission ring of 512 packets per
//! subscriber, as the NACK responder keeps. No server runs this; it is the
//! measure behind ADR 0020, beside `forward` (the same work through the
//! stack's connections).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use roost_media::munger::Munger;
use roost_media::peer::rtp_writer::{RtpWriter, StreamHeader};
use rtc::rtp::header::Header;
use rtc::shared::marshal::{MarshalSize, Unmarshal};
use rtc::srtp::context::Context;
use rtc::srtp::option::srtp_no_replay_protection;
use rtc::srtp::protection_profile::ProtectionProfile;

/// The `mid` extension's id, as browsers negotiate it.
const MID_ID: u8 = 4;
/// Packets kept per subscriber for retransmission.
const RING: usize = 512;

struct Subscriber {
    srtp: Context,
    munger: Munger,
    writer: RtpWriter,
    ring: Vec<Option<Bytes>>,
}

pub struct OwnedFanout {
    /// The publisher's side, which protects what it sends.
    client: Context,
    /// The engine's side of the publisher's connection.
    publisher: Context,
    subscribers: Vec<Subscriber>,
    seq: u16,
    scratch: Vec<u8>,
}

fn context(profile: ProtectionProfile, seed: u8) -> Context {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let key = vec![seed; profile.key_len()];
    let salt = vec![seed.wrapping_add(1); profile.salt_len()];
    Context::new(
        &key,
        &salt,
        profile,
        Some(srtp_no_replay_protection()),
        None,
        provider.crypto(),
    )
    .expect("an SRTP context")
}

impl OwnedFanout {
    pub fn new(subscribers: usize) -> OwnedFanout {
        let profile = ProtectionProfile::AeadAes128Gcm;
        OwnedFanout {
            client: context(profile, 1),
            publisher: context(profile, 1),
            subscribers: (0..subscribers)
                .map(|i| Subscriber {
                    srtp: context(profile, 10 + i as u8),
                    munger: Munger::new(0xD000 + i as u32, 90_000),
                    writer: RtpWriter::new(StreamHeader {
                        payload_type: 96,
                        mid: Some((MID_ID, i.to_string().into_bytes())),
                        audio_level: None,
                        transport_cc: None,
                        abs_send_time: None,
                    }),
                    ring: vec![None; RING],
                })
                .collect(),
            seq: 0,
            scratch: Vec::with_capacity(1500),
        }
    }

    /// The publisher's next packet, protected, with `payload`.
    pub fn packet(&mut self, payload: &[u8]) -> BytesMut {
        self.seq = self.seq.wrapping_add(1);
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(self.seq) * 3000).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.client.encrypt_rtp(&p).expect("protects")
    }

    /// Forwards one protected packet to every subscriber; returns the copies.
    pub fn forward(&mut self, datagram: &[u8], now: Instant, out: &mut Vec<BytesMut>) -> usize {
        let Ok(plain) = self.publisher.decrypt_rtp(datagram) else {
            return 0;
        };
        let plain = plain.freeze();
        let Ok(header) = Header::unmarshal(&mut &plain[..]) else {
            return 0;
        };
        let payload = plain.slice(header.marshal_size()..);
        for sub in &mut self.subscribers {
            let rewritten =
                sub.munger
                    .rewrite(header.ssrc, header.sequence_number, header.timestamp, now);
            let written = sub.writer.write(
                &mut self.scratch,
                header.marker,
                rewritten,
                Default::default(),
                &payload,
            );
            if let Ok(protected) = sub.srtp.encrypt_rtp_with_header(&self.scratch, written) {
                sub.ring[usize::from(rewritten.seq) % RING] = Some(payload.clone());
                out.push(protected);
            }
        }
        out.len()
    }
}
