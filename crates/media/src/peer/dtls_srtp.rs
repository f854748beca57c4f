//! DTLS-SRTP assembled from the stack's parts (ADR 0020, step 1): a DTLS
//! endpoint of `rtc-dtls` driven with the loop's time, the other side's
//! certificate checked against the fingerprint its SDP gave, and, once the
//! handshake is done, SRTP and SRTCP contexts of `rtc-srtp` made from the
//! exported keying material (RFC 5764), as `rtc`'s own DTLS handler makes
//! them. One [`Identity`] serves every connection of an engine, where each
//! `RTCPeerConnection` makes a certificate of its own.
//!
//! Nothing here reads a clock or touches a socket: datagrams and time come
//! in, datagrams to send come out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc::dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc::dtls::crypto::Certificate;
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::shared::TransportProtocol;
use rtc::srtp::config::{Config as SrtpConfig, LABEL_EXTRACTOR_DTLS_SRTP};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

use crate::MediaError;

/// The SRTP profiles offered, in order: AES-GCM first, then AES-CM for
/// clients that offer nothing else. Which one wins is the client's choice
/// (docs/webrtc.md, "SRTP ciphers").
pub const SRTP_PROFILES: [SrtpProtectionProfile; 4] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
];

fn stack(e: impl std::fmt::Display) -> MediaError {
    MediaError::Stack(e.to_string())
}

/// A DTLS certificate and its SHA-256 fingerprint as SDP writes it
/// (`a=fingerprint:sha-256 AB:CD:...`).
#[derive(Clone)]
pub struct Identity {
    certificate: Certificate,
    fingerprint: String,
    provider: Arc<dyn RTCCryptoProvider>,
}

impl Identity {
    /// A new self-signed certificate.
    pub fn generate() -> Result<Identity, MediaError> {
        let provider = rtc::crypto::default_provider().map_err(stack)?;
        let certificate =
            Certificate::generate_self_signed(vec!["roost".to_owned()], provider.crypto())
                .map_err(stack)?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| MediaError::Stack("a certificate without a body".into()))?;
        let fingerprint = fingerprint_of(provider.as_ref(), der)?;
        Ok(Identity {
            certificate,
            fingerprint,
            provider,
        })
    }

    /// The SHA-256 fingerprint, upper-case hex pairs joined by colons.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The crypto provider, for the ICE-lite side's message integrity.
    pub fn crypto(&self) -> &dyn rtc::crypto::RTCCrypto {
        self.provider.crypto()
    }
}

/// The name the endpoint knows the other side by, wherever its records
/// come from.
const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    9,
);

/// The endpoint's own address only labels what it hands back.
const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The handshake's configuration: `identity`'s certificate, the other
/// side's checked against `expected` (upper-case SHA-256 pairs), `profiles`
/// offered.
fn handshake_config(
    identity: &Identity,
    expected: &str,
    role: DtlsRole,
    profiles: &[SrtpProtectionProfile],
) -> Result<HandshakeConfig, MediaError> {
    let provider = identity.provider.clone();
    let hasher = provider.clone();
    let expected = expected.to_owned();
    let verify: VerifyPeerCertificateFn = Arc::new(move |certs: &[Vec<u8>], _| {
        let first = certs
            .first()
            .ok_or(rtc::shared::error::Error::ErrNonCertificate)?;
        let seen = fingerprint_of(hasher.as_ref(), first)
            .map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?;
        if seen == expected {
            Ok(())
        } else {
            Err(rtc::shared::error::Error::ErrNoMatchingCertificateFingerprint)
        }
    });
    ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![identity.certificate.clone()])
        .with_srtp_protection_profiles(profiles.to_vec())
        .with_client_auth(ClientAuthType::RequireAnyClientCert)
        // WebRTC checks the fingerprint from SDP, not a chain of authorities.
        .with_insecure_skip_verify(true)
        .with_verify_peer_certificate(Some(verify))
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        // No name is verified (the fingerprint is); this is the stack's own
        // default, named so that it does not warn on every connection.
        .with_server_name("localhost".into())
        .build(role == DtlsRole::Client, None)
        .map_err(stack)
}

/// Reads big-endian fields off the front of a byte string; `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// The longest ClientHello gathered: browsers' hellos with post-quantum
/// key shares run to about 1.5 KB, in two fragments.
const MAX_HELLO: usize = 16 * 1024;
/// Datagrams held while a hello is gathered.
const MAX_HELD: usize = 8;

/// A ClientHello gathered from its fragments (RFC 6347 §4.2.3), so that the
/// server can read the SRTP profiles it offers before the handshake sees
/// it. `rtc-dtls` keeps its parsed hello to itself, so the few fields on the
/// way are walked here.
#[derive(Debug, Default)]
pub struct HelloParts {
    body: Vec<u8>,
    /// Bytes of the body filled, by fragments that do not overlap.
    filled: usize,
    ranges: Vec<(usize, usize)>,
}

impl HelloParts {
    /// Takes the ClientHello fragments in one datagram's records. `None`
    /// when the datagram holds something else, or a fragment that does not
    /// fit the ones before.
    pub fn add(&mut self, datagram: &[u8]) -> Option<()> {
        let mut records = Reader(datagram);
        let mut any = false;
        while !records.0.is_empty() {
            // The record: handshake (22), version, epoch and sequence number, length.
            if records.u8()? != 22 {
                return None;
            }
            records.take(10)?;
            let len = records.u16()?;
            let mut r = Reader(records.take(len)?);
            // A ClientHello (1) fragment.
            if r.u8()? != 1 {
                return None;
            }
            let length = r.u24()?;
            r.take(2)?; // message sequence
            let (offset, fragment) = (r.u24()?, r.u24()?);
            let data = r.take(fragment)?;
            if length > MAX_HELLO || offset + fragment > length {
                return None;
            }
            if self.body.is_empty() {
                self.body = vec![0; length];
            } else if self.body.len() != length {
                return None;
            }
            let range = (offset, offset + fragment);
            if !self.ranges.contains(&range) {
                if self.ranges.iter().any(|r| r.0 < range.1 && range.0 < r.1) {
                    return None;
                }
                self.ranges.push(range);
                self.body[range.0..range.1].copy_from_slice(data);
                self.filled += fragment;
            }
            any = true;
        }
        any.then_some(())
    }

    /// Whether every byte of the hello is here.
    pub fn complete(&self) -> bool {
        !self.body.is_empty() && self.filled == self.body.len()
    }

    /// The SRTP profiles the whole hello offers in its `use_srtp`
    /// extension (RFC 5764 §4.1.1), in the client's order.
    pub fn offered_profiles(&self) -> Option<Vec<u16>> {
        if !self.complete() {
            return None;
        }
        let mut r = Reader(&self.body);
        r.take(2 + 32)?; // version, random
        let session = r.u8()?;
        r.take(session)?;
        let cookie = r.u8()?;
        r.take(cookie)?;
        let suites = r.u16()?;
        r.take(suites)?;
        let compression = r.u8()?;
        r.take(compression)?;
        let extensions = r.u16()?;
        let mut r = Reader(r.take(extensions)?);
        while let (Some(kind), Some(len)) = (r.u16(), r.u16()) {
            let body = r.take(len)?;
            if kind == 14 {
                let mut e = Reader(body);
                let list = e.u16()?;
                let list = e.take(list)?;
                return Some(
                    list.chunks_exact(2)
                        .map(|p| u16::from_be_bytes([p[0], p[1]]))
                        .collect(),
                );
            }
        }
        None
    }
}

/// The profile a server takes for a client that offers `offered`: the
/// first of `ours` that it offers, so this side's order wins.
pub fn server_choice(
    ours: &[SrtpProtectionProfile],
    offered: &[u16],
) -> Option<SrtpProtectionProfile> {
    ours.iter()
        .copied()
        .find(|p| offered.contains(&(*p as u16)))
}

fn fingerprint_of(provider: &dyn RTCCryptoProvider, der: &[u8]) -> Result<String, MediaError> {
    let hash = provider
        .crypto()
        .hash(HashAlgorithm::Sha256, der)
        .map_err(stack)?;
    let pairs: Vec<String> = hash.iter().map(|b| format!("{b:02X}")).collect();
    Ok(pairs.join(":"))
}

/// Which end of the handshake this side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// Waits for the other side's ClientHello (`a=setup:passive`).
    Server,
    /// Sends the ClientHello (`a=setup:active`).
    Client,
}

/// One connection's DTLS handshake and, after it, its SRTP contexts.
pub struct DtlsSrtp {
    endpoint: Endpoint,
    role: DtlsRole,
    config: Arc<HandshakeConfig>,
    identity: Identity,
    /// The other side's fingerprint, upper-case.
    expected: String,
    /// The profiles offered, this side's preference first.
    profiles: Vec<SrtpProtectionProfile>,
    /// As server, the client's first hello while it is gathered, and the
    /// datagrams that brought it; `None` once the handshake has it.
    hello: Option<(HelloParts, Vec<BytesMut>)>,
    /// The address the client was last heard from, or the one
    /// [`DtlsSrtp::connect`] was given: where its datagrams go.
    remote: Option<SocketAddr>,
    /// Whether the endpoint has a connection: the handshake began.
    began: bool,
    /// What this side protects with, and what it unprotects with.
    srtp: Option<(Context, Context)>,
    profile: Option<SrtpProtectionProfile>,
    outgoing: VecDeque<(SocketAddr, BytesMut)>,
}

impl DtlsSrtp {
    /// A connection presenting `identity`, accepting only a certificate
    /// whose SHA-256 fingerprint is `remote_fingerprint`, offering
    /// `profiles`. As DTLS client, the server picks among them; as server,
    /// the first of `profiles` that the client's hello offers wins
    /// ([`server_choice`]), whatever order the client lists them in.
    pub fn new(
        identity: &Identity,
        remote_fingerprint: &str,
        role: DtlsRole,
        profiles: &[SrtpProtectionProfile],
    ) -> Result<DtlsSrtp, MediaError> {
        let expected = remote_fingerprint.trim().to_ascii_uppercase();
        let config = Arc::new(handshake_config(identity, &expected, role, profiles)?);
        let server_config = (role == DtlsRole::Server).then(|| config.clone());
        Ok(DtlsSrtp {
            endpoint: Endpoint::new(UNSPECIFIED, TransportProtocol::UDP, server_config),
            role,
            config,
            identity: identity.clone(),
            expected,
            profiles: profiles.to_vec(),
            hello: (role == DtlsRole::Server).then(Default::default),
            remote: None,
            began: false,
            srtp: None,
            profile: None,
            outgoing: VecDeque::new(),
        })
    }

    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Whether the handshake has a remote address: a client that has
    /// connected, or a server that has heard from its client.
    pub fn started(&self) -> bool {
        self.began
    }

    /// Starts the handshake towards `remote` (the client's side).
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<(), MediaError> {
        if self.role != DtlsRole::Client {
            return Err(MediaError::Conflict("only a DTLS client connects".into()));
        }
        self.remote = Some(remote);
        self.began = true;
        self.endpoint
            .connect(now, PEER, self.config.clone(), None)
            .map_err(stack)?;
        self.collect();
        Ok(())
    }

    /// Takes a DTLS record from `from`, wherever it comes from: which
    /// addresses may speak is for the ICE side to say.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: BytesMut,
    ) -> Result<(), MediaError> {
        // The handshake rides on whichever path ICE has chosen: the
        // client may move to another mid-way. Which addresses may speak is
        // the ICE side's business; the endpoint knows the client by one name.
        self.remote = Some(from);
        if let Some((parts, held)) = self.hello.as_mut() {
            // Gathered until whole, then the server is set up for it.
            let taken = held.len() < MAX_HELD && parts.add(&datagram).is_some();
            held.push(datagram);
            if taken && !parts.complete() {
                return Ok(());
            }
            let (parts, held) = self.hello.take().unwrap_or_default();
            self.prefer_own_profile(&parts)?;
            for datagram in held {
                self.read(now, datagram)?;
            }
            return Ok(());
        }
        self.read(now, datagram)
    }

    fn read(&mut self, now: Instant, datagram: BytesMut) -> Result<(), MediaError> {
        self.began = true;
        let read = self.endpoint.read(now, PEER, None, datagram);
        self.collect();
        for event in read.map_err(stack)? {
            if let EndpointEvent::HandshakeComplete = event {
                self.keys()?;
            }
        }
        Ok(())
    }

    /// `rtc-dtls` as server takes the first profile of the client's list
    /// that it has; Chromium lists AES-CM before AES-GCM. Before the
    /// client's hello reaches the handshake, the server is configured with
    /// the one profile this side prefers of those the hello offers.
    fn prefer_own_profile(&mut self, hello: &HelloParts) -> Result<(), MediaError> {
        let Some(choice) = hello
            .offered_profiles()
            .and_then(|offered| server_choice(&self.profiles, &offered))
        else {
            return Ok(());
        };
        let config = Arc::new(handshake_config(
            &self.identity,
            &self.expected,
            self.role,
            &[choice],
        )?);
        self.endpoint = Endpoint::new(UNSPECIFIED, TransportProtocol::UDP, Some(config.clone()));
        self.config = config;
        Ok(())
    }

    /// Makes the SRTP contexts from the finished handshake.
    fn keys(&mut self) -> Result<(), MediaError> {
        let state = self
            .endpoint
            .get_connection_state(PEER)
            .ok_or(MediaError::NotFound("DTLS connection"))?;
        let negotiated = state.srtp_protection_profile();
        let profile = match negotiated {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                ProtectionProfile::Aes128CmHmacSha1_80
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => {
                ProtectionProfile::Aes128CmHmacSha1_32
            }
            other => return Err(MediaError::Stack(format!("SRTP profile {other:?}"))),
        };
        let mut config = SrtpConfig {
            profile,
            ..Default::default()
        };
        let material = state
            .export_keying_material(LABEL_EXTRACTOR_DTLS_SRTP, &[], config.keying_material_len())
            .map_err(stack)?;
        config
            .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
            .map_err(stack)?;
        let crypto = self.identity.provider.crypto();
        let keys = &config.keys;
        let local = Context::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            profile,
            None,
            None,
            crypto,
        )
        .map_err(stack)?;
        let remote = Context::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            profile,
            None,
            None,
            crypto,
        )
        .map_err(stack)?;
        self.srtp = Some((local, remote));
        self.profile = Some(negotiated);
        Ok(())
    }

    fn collect(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            let to = self.remote.unwrap_or(t.transport.peer_addr);
            self.outgoing.push_back((to, t.message));
        }
    }

    /// The next datagram to send, and where: the address the client was
    /// last heard from (the ICE side may send it elsewhere).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.outgoing.pop_front()
    }

    /// When the handshake resends a flight if no answer came.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.began {
            return None;
        }
        self.endpoint.poll_timeout(&PEER)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MediaError> {
        if !self.began {
            return Ok(());
        }
        let handled = self.endpoint.handle_timeout(PEER, now);
        self.collect();
        handled.map_err(stack)
    }

    /// The SRTP profile the handshake settled on, once it is done.
    pub fn profile(&self) -> Option<SrtpProtectionProfile> {
        self.profile
    }

    fn contexts(&mut self) -> Result<&mut (Context, Context), MediaError> {
        self.srtp.as_mut().ok_or(MediaError::NotNegotiated)
    }

    /// Protects an RTP packet (header and payload) for sending.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<BytesMut, MediaError> {
        self.contexts()?.0.encrypt_rtp(packet).map_err(stack)
    }

    /// Protects an RTP packet whose header the caller already holds parsed
    /// (as [`super::rtp_writer::RtpWriter`] keeps it), without parsing it again.
    pub fn protect_rtp_with_header(
        &mut self,
        packet: &[u8],
        header: &rtc::rtp::header::Header,
    ) -> Result<BytesMut, MediaError> {
        self.contexts()?
            .0
            .encrypt_rtp_with_header(packet, header)
            .map_err(stack)
    }

    /// Opens an SRTP packet received.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<BytesMut, MediaError> {
        self.contexts()?.1.decrypt_rtp(packet).map_err(stack)
    }

    /// Protects an RTCP compound packet for sending.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<BytesMut, MediaError> {
        self.contexts()?.0.encrypt_rtcp(packet).map_err(stack)
    }

    /// Opens an SRTCP packet received.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<BytesMut, MediaError> {
        self.contexts()?.1.decrypt_rtcp(packet).map_err(stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SERVER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);
    const CLIENT: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);

    /// Runs the handshake between two sides on a clock of its own, handing
    /// each one's datagrams to the other, until both have keys or 5 s pass.
    fn handshake(server: &mut DtlsSrtp, client: &mut DtlsSrtp) -> Instant {
        let now = Instant::now();
        client.connect(now, SERVER).unwrap();
        finish(server, client, now)
    }

    /// Hands each side's datagrams to the other from `now` on, until both
    /// have keys or 10 s pass.
    fn finish(server: &mut DtlsSrtp, client: &mut DtlsSrtp, mut now: Instant) -> Instant {
        let deadline = now + Duration::from_secs(10);
        while now < deadline && (server.profile().is_none() || client.profile().is_none()) {
            while let Some((to, d)) = client.poll_transmit() {
                assert_eq!(to, SERVER);
                let _ = server.handle_datagram(now, CLIENT, d);
            }
            while let Some((to, d)) = server.poll_transmit() {
                assert_eq!(to, CLIENT);
                let _ = client.handle_datagram(now, SERVER, d);
            }
            now += Duration::from_millis(10);
            for side in [&mut *server, &mut *client] {
                if side.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = side.handle_timeout(now);
                }
            }
        }
        now
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// A receiver report (RFC 3550) with no report blocks.
    fn rtcp() -> Vec<u8> {
        vec![0x80, 201, 0, 1, 0xCA, 0xFE, 0xBA, 0xBE]
    }

    #[test]
    fn both_sides_agree_on_gcm_keys_and_media_flows_each_way() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let mut client = DtlsSrtp::new(
            &b,
            &a.fingerprint().to_lowercase(),
            DtlsRole::Client,
            &SRTP_PROFILES,
        )
        .unwrap();
        assert!(
            server.protect_rtp(&rtp(1, b"early")).is_err(),
            "no keys before the handshake"
        );
        handshake(&mut server, &mut client);
        assert_eq!(
            server.profile(),
            Some(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm)
        );
        assert_eq!(client.profile(), server.profile());
        let plain = rtp(7, &[0x5A; 1200]);
        let protected = server.protect_rtp(&plain).unwrap();
        assert_ne!(&protected[12..], &plain[12..], "the payload is encrypted");
        assert_eq!(&client.unprotect_rtp(&protected).unwrap()[..], &plain[..]);
        let report = client.protect_rtcp(&rtcp()).unwrap();
        assert_eq!(&server.unprotect_rtcp(&report).unwrap()[..], &rtcp()[..]);
        // A packet altered on the way is refused.
        let mut altered = server.protect_rtp(&rtp(8, b"hello")).unwrap();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(client.unprotect_rtp(&altered).is_err());
    }

    /// The whole of step 1 against a real peer: the stack's own client
    /// (`RTCPeerConnection`, full ICE, DTLS client) answers an offer naming
    /// this side's ICE credentials and fingerprint; its checks are answered
    /// by [`super::super::ice_lite`], its handshake by [`DtlsSrtp`], and what
    /// this side protects reaches it as RTP of the offered track.
    #[test]
    fn the_stacks_own_client_connects_and_receives_what_is_protected_here() {
        use crate::peer::ice_lite;
        use crate::peer::{Peer, PeerEvent, PeerSetup};
        let identity = Identity::generate().unwrap();
        let provider = rtc::crypto::default_provider().unwrap();
        let (ufrag, pwd) = ("roostlite", "roost-lite-password-0123456789");
        let ssrc: u32 = 0x1234;
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             a=ice-lite\r\nm=video 7882 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\n\
             a=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\n\
             a=ice-pwd:{pwd}\r\na=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n\
             a=rtpmap:96 VP8/90000\r\na=msid:roost t0\r\na=ssrc:{ssrc} cname:roost\r\n\
             a=ssrc:{ssrc} msid:roost t0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\na=end-of-candidates\r\n",
            fp = identity.fingerprint()
        );
        let mut now = Instant::now();
        let mut client = Peer::new(&PeerSetup::client(CLIENT), now).unwrap();
        let answer = client.answer(offer, now).unwrap();
        // The handshake runs whichever role the client's answer leaves us.
        let theirs = crate::peer::subscriber::remote_side_of(&answer);
        let role = theirs.role;
        let mut server =
            DtlsSrtp::new(&identity, &theirs.fingerprint, role, &SRTP_PROFILES).unwrap();
        if role == DtlsRole::Client {
            server.connect(now, CLIENT).unwrap();
        }
        let (mut connected, mut received, mut reports, mut seq) = (false, Vec::new(), 0, 0u16);
        for _ in 0..3_000 {
            while let Some((to, d)) = client.poll_transmit() {
                assert_eq!(to, SERVER, "the client sends to the offered candidate");
                if ice_lite::is_stun(&d) {
                    if let Some(r) = ice_lite::answer(&d, CLIENT, ufrag, pwd, provider.crypto()) {
                        client.handle_datagram(r.response, SERVER, now).unwrap();
                    }
                } else if (20..64).contains(&d[0]) {
                    let _ = server.handle_datagram(now, CLIENT, d);
                } else if server.unprotect_rtcp(&d).is_ok() {
                    reports += 1;
                }
            }
            while let Some((to, d)) = server.poll_transmit() {
                assert_eq!(to, CLIENT);
                let _ = client.handle_datagram(d, SERVER, now);
            }
            if server.profile().is_some() {
                seq += 1;
                let mut packet = rtp(seq, b"\x10\x00\x00\x00vp8");
                packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
                let protected = server.protect_rtp(&packet).unwrap();
                let _ = client.handle_datagram(protected, SERVER, now);
            }
            while let Some(event) = client.poll_event() {
                match event {
                    PeerEvent::Connected => connected = true,
                    PeerEvent::Rtp { packet, .. } => received.push(packet),
                    _ => {}
                }
            }
            if connected && received.len() >= 100 && reports > 0 {
                break;
            }
            now += Duration::from_millis(10);
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now).unwrap();
            }
            if server.poll_timeout().is_some_and(|t| t <= now) {
                let _ = server.handle_timeout(now);
            }
        }
        assert!(connected, "the client's ICE and DTLS came up");
        assert_eq!(
            server.profile(),
            Some(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm)
        );
        assert!(
            received.len() >= 100,
            "{} packets reached the client",
            received.len()
        );
        assert!(received
            .iter()
            .all(|p| p.ssrc == ssrc && &p.payload[4..] == b"vp8"));
        assert!(reports > 0, "the client's RTCP opened here");
    }

    #[test]
    fn a_client_offering_only_aes_cm_gets_aes_cm() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let only_cm = [SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
        let mut client = DtlsSrtp::new(&b, a.fingerprint(), DtlsRole::Client, &only_cm).unwrap();
        handshake(&mut server, &mut client);
        assert_eq!(
            server.profile(),
            Some(SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80)
        );
        let plain = rtp(1, b"cm");
        let protected = server.protect_rtp(&plain).unwrap();
        assert_eq!(&client.unprotect_rtp(&protected).unwrap()[..], &plain[..]);
    }

    /// Chromium lists AES-CM before AES-GCM; as server, this side's order wins.
    #[test]
    fn a_client_listing_aes_cm_first_gets_gcm_from_this_server() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let chromium_order = [
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
        ];
        let mut client =
            DtlsSrtp::new(&b, a.fingerprint(), DtlsRole::Client, &chromium_order).unwrap();
        handshake(&mut server, &mut client);
        assert_eq!(
            server.profile(),
            Some(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm)
        );
        assert_eq!(client.profile(), server.profile());
        let plain = rtp(3, b"gcm");
        let protected = server.protect_rtp(&plain).unwrap();
        assert_eq!(&client.unprotect_rtp(&protected).unwrap()[..], &plain[..]);
    }

    /// A one-record hello cut into two records of its own datagrams, at
    /// `at` bytes of the handshake body (as a browser's long hello comes).
    fn fragmented(hello: &[u8], at: usize) -> (Vec<u8>, Vec<u8>) {
        let (record, handshake, body) = (&hello[..11], &hello[13..19], &hello[25..]);
        // Each record has a sequence number of its own: the second, 1 (the
        // client's next record, also 1, is then dropped as a replay, and
        // its resend goes through).
        let part = |offset: usize, data: &[u8]| {
            let mut d = record.to_vec();
            d[10] = u8::from(offset > 0);
            d.extend_from_slice(&((12 + data.len()) as u16).to_be_bytes());
            d.extend_from_slice(handshake);
            d.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
            d.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            d.extend_from_slice(data);
            d
        };
        (part(0, &body[..at]), part(at, &body[at..]))
    }

    #[test]
    fn the_profiles_of_a_client_hello_are_read_whole_or_in_fragments() {
        let b = Identity::generate().unwrap();
        let order = [
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ];
        let mut client = DtlsSrtp::new(&b, "AA", DtlsRole::Client, &order).unwrap();
        client.connect(Instant::now(), SERVER).unwrap();
        let (_, hello) = client.poll_transmit().unwrap();
        let mut whole = HelloParts::default();
        whole.add(&hello).unwrap();
        assert_eq!(whole.offered_profiles(), Some(vec![0x0001, 0x0007]));
        let (first, second) = fragmented(&hello, 40);
        let mut parts = HelloParts::default();
        parts.add(&second).unwrap();
        assert!(!parts.complete());
        assert_eq!(parts.offered_profiles(), None, "not before it is whole");
        parts.add(&second).unwrap(); // a resend changes nothing
        parts.add(&first).unwrap();
        assert_eq!(parts.offered_profiles(), Some(vec![0x0001, 0x0007]));
        assert_eq!(
            server_choice(&SRTP_PROFILES, &[0x0001, 0x0007]),
            Some(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm)
        );
        assert_eq!(server_choice(&SRTP_PROFILES, &[0x0009]), None);
        // Every truncation, and noise, is refused or incomplete, never a panic.
        for end in 0..hello.len() {
            let mut cut = HelloParts::default();
            if cut.add(&hello[..end]).is_some() {
                assert_eq!(cut.offered_profiles(), None, "cut at {end}");
            }
        }
        assert!(HelloParts::default().add(&[]).is_none());
        assert!(HelloParts::default().add(&[22; 64]).is_none());
        let mut altered = hello.to_vec();
        altered[13] = 2; // a ServerHello
        assert!(HelloParts::default().add(&altered).is_none());
    }

    /// A browser's hello in two datagrams: the server waits for both, then
    /// answers with the profile it prefers.
    #[test]
    fn a_fragmented_hello_gets_this_servers_choice() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let chromium_order = [
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ];
        let mut client =
            DtlsSrtp::new(&b, a.fingerprint(), DtlsRole::Client, &chromium_order).unwrap();
        let now = Instant::now();
        client.connect(now, SERVER).unwrap();
        let (_, hello) = client.poll_transmit().unwrap();
        let (first, second) = fragmented(&hello, 50);
        server
            .handle_datagram(now, CLIENT, BytesMut::from(&first[..]))
            .unwrap();
        assert!(
            server.poll_transmit().is_none(),
            "half a hello is not answered"
        );
        server
            .handle_datagram(now, CLIENT, BytesMut::from(&second[..]))
            .unwrap();
        finish(&mut server, &mut client, now);
        assert_eq!(
            server.profile(),
            Some(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm)
        );
        assert_eq!(client.profile(), server.profile());
    }

    #[test]
    fn a_certificate_other_than_the_fingerprint_names_gets_no_keys() {
        let (a, b, c) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        // The server expects b's certificate; c presents its own.
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let mut client =
            DtlsSrtp::new(&c, a.fingerprint(), DtlsRole::Client, &SRTP_PROFILES).unwrap();
        handshake(&mut server, &mut client);
        assert_eq!(server.profile(), None, "the server made no keys");
        assert!(server.protect_rtp(&rtp(1, b"x")).is_err());
    }

    /// The client moves to another path in the middle of the handshake
    /// (it nominated another pair): the handshake goes on there.
    #[test]
    fn the_handshake_follows_the_client_to_another_address() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut server =
            DtlsSrtp::new(&a, b.fingerprint(), DtlsRole::Server, &SRTP_PROFILES).unwrap();
        let mut client =
            DtlsSrtp::new(&b, a.fingerprint(), DtlsRole::Client, &SRTP_PROFILES).unwrap();
        let mut now = Instant::now();
        client.connect(now, SERVER).unwrap();
        let elsewhere = SocketAddr::from(([192, 0, 2, 2], 40_000));
        for step in 0..300 {
            let from = if step < 2 { CLIENT } else { elsewhere };
            while let Some((_, d)) = client.poll_transmit() {
                server.handle_datagram(now, from, d).unwrap();
            }
            while let Some((to, d)) = server.poll_transmit() {
                assert_eq!(to, from, "the answer goes where the client was last heard");
                let _ = client.handle_datagram(now, SERVER, d);
            }
            if server.profile().is_some() && client.profile().is_some() {
                break;
            }
            now += Duration::from_millis(10);
            for side in [&mut server, &mut client] {
                if side.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = side.handle_timeout(now);
                }
            }
        }
        assert!(server.profile().is_some(), "the handshake finished");
    }
}
