//! A WebRTC client on the same stack as the engine: a full (not lite) peer
//! connection on a UDP socket of its own, driven by a task of its own. The
//! engine's tests, the gateway's tests and the load tool use it as a real
//! peer: it negotiates, runs ICE and DTLS-SRTP, sends numbered RTP and reports
//! what it receives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::peer::{Codec, Kind, Peer, PeerEvent, PeerSetup, Rtp, SenderId, TrackId};
use crate::MediaError;

/// What the client saw.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Connected,
    Failed,
    TrackOpened {
        track: TrackId,
        kind: Kind,
    },
    Rtp {
        track: TrackId,
        packet: Rtp,
        at: Instant,
    },
    /// The other side asked for a keyframe of this client's track.
    KeyframeRequested {
        at: Instant,
    },
}

enum Cmd {
    Offer(oneshot::Sender<Result<String, MediaError>>),
    AcceptAnswer(String, oneshot::Sender<Result<(), MediaError>>),
    Answer(String, oneshot::Sender<Result<String, MediaError>>),
    Send {
        seq: u16,
        ts: u32,
        payload: Bytes,
        marker: bool,
        audio_level: Option<u8>,
    },
    Lose(usize),
    Nack {
        track: TrackId,
        seqs: Vec<u16>,
    },
    KeyframeRequest {
        track: TrackId,
    },
    /// Stop at once, without a word to the other side.
    Vanish,
    RestartIce,
    Move,
}

/// A running client.
pub struct Client {
    cmd: mpsc::UnboundedSender<Cmd>,
    pub events: mpsc::UnboundedReceiver<ClientEvent>,
    /// The SSRC of the track it sends, if any.
    pub ssrc: Option<u32>,
    local: SocketAddr,
}

/// Opus and VP8, the codecs the client sends.
pub fn codec(kind: Kind) -> Codec {
    match kind {
        Kind::Audio => Codec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            fmtp: "minptime=10;useinbandfec=1".into(),
        },
        Kind::Video => Codec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            fmtp: String::new(),
        },
    }
}

impl Client {
    /// A client bound to `ip` that sends one track of `send`, or only receives.
    pub async fn start(ip: std::net::IpAddr, send: Option<Kind>) -> Result<Client, MediaError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut peer = Peer::new(&PeerSetup::client(local), Instant::now())?;
        let mut sender = None;
        let mut ssrc = None;
        if let Some(kind) = send {
            let s: u32 = rand::random();
            let c = codec(kind);
            let id = peer.add_sender(kind, &c, s, None, "roost-client", &format!("client-{s}"))?;
            sender = Some((id, c.mime_type));
            ssrc = Some(s);
        }
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(drive(peer, socket, sender, ssrc, cmd_rx, events_tx));
        Ok(Client {
            cmd,
            events,
            ssrc,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)
    }

    /// An offer of this client's connection.
    pub async fn offer(&self) -> Result<String, MediaError> {
        self.ask(Cmd::Offer).await?
    }

    pub async fn accept_answer(&self, sdp: String) -> Result<(), MediaError> {
        self.ask(|tx| Cmd::AcceptAnswer(sdp, tx)).await?
    }

    /// Answers the other side's offer.
    pub async fn answer(&self, offer: String) -> Result<String, MediaError> {
        self.ask(|tx| Cmd::Answer(offer, tx)).await?
    }

    /// Sends one RTP packet on the client's track.
    pub fn send(&self, seq: u16, ts: u32, payload: impl Into<Bytes>) {
        self.send_with_level(seq, ts, payload, None);
    }

    /// Sends one RTP packet with an audio level (RFC 6464, -dBov: 0 is loudest).
    pub fn send_with_level(&self, seq: u16, ts: u32, payload: impl Into<Bytes>, level: Option<u8>) {
        let _ = self.cmd.send(Cmd::Send {
            seq,
            ts,
            payload: payload.into(),
            marker: false,
            audio_level: level,
        });
    }

    /// Drops the next `n` RTP datagrams that arrive, as a lossy network would.
    pub fn lose(&self, n: usize) {
        let _ = self.cmd.send(Cmd::Lose(n));
    }

    /// Asks the sender of `track` to send packet `seq` again.
    pub fn nack(&self, track: TrackId, seq: u16) {
        self.nack_all(track, vec![seq]);
    }

    /// Asks the sender of `track` to send packets `seqs` again, in one NACK
    /// (in ascending order, as a receiver lists its gaps).
    pub fn nack_all(&self, track: TrackId, seqs: Vec<u16>) {
        let _ = self.cmd.send(Cmd::Nack { track, seqs });
    }

    /// Asks the sender of `track` for a keyframe (a PLI).
    pub fn request_keyframe(&self, track: TrackId) {
        let _ = self.cmd.send(Cmd::KeyframeRequest { track });
    }

    /// Moves to a new local port, as a browser switching to another of its
    /// network paths does: the old socket closes, and a binding request that
    /// nominates the new path (USE-CANDIDATE) goes out from the new one.
    pub fn move_to_new_port(&self) {
        let _ = self.cmd.send(Cmd::Move);
    }

    /// Restarts ICE with its next offer ([`Client::offer`]): new
    /// credentials of its own, and the other side's new ones from the answer.
    pub fn restart_ice(&self) {
        let _ = self.cmd.send(Cmd::RestartIce);
    }

    /// Goes silent without closing anything, as a client whose network
    /// vanished does.
    pub fn vanish(&self) {
        let _ = self.cmd.send(Cmd::Vanish);
    }

    /// The next event within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(wait, self.events.recv()).await.ok()?
    }

    /// Waits until the connection is up; false if it failed or took longer than `wait`.
    pub async fn connected(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ClientEvent::Connected)) => return true,
                Ok(Some(ClientEvent::Failed)) | Ok(None) | Err(_) => return false,
                Ok(Some(_)) => continue,
            }
        }
    }
}

async fn drive(
    mut peer: Peer,
    socket: UdpSocket,
    sender: Option<(SenderId, String)>,
    ssrc: Option<u32>,
    mut cmd: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<ClientEvent>,
) {
    let mut buf = vec![0u8; 2048];
    let mut lose = 0usize;
    // ICE credentials from the SDPs: ours, and the remote side's (ufrag, pwd).
    let mut ours: Option<(String, String)> = None;
    let mut theirs: Option<(String, String)> = None;
    let mut socket = socket;
    let mut remote: Option<SocketAddr> = None;
    // Nominating requests still to send after a move: the server answers one
    // only once the new pair has passed a check of its own, so, like a
    // browser's pings on its selected pair, they repeat.
    let mut nominations = 0u8;
    loop {
        while let Some((to, datagram)) = peer.poll_transmit() {
            let _ = socket.send_to(&datagram, to).await;
        }
        while let Some(event) = peer.poll_event() {
            let out = match event {
                PeerEvent::Connected => ClientEvent::Connected,
                PeerEvent::Failed => ClientEvent::Failed,
                PeerEvent::TrackOpened { track, kind, .. } => {
                    ClientEvent::TrackOpened { track, kind }
                }
                PeerEvent::Rtp { track, packet } => ClientEvent::Rtp {
                    track,
                    packet,
                    at: Instant::now(),
                },
                PeerEvent::KeyframeRequested { .. } => {
                    ClientEvent::KeyframeRequested { at: Instant::now() }
                }
                PeerEvent::TrackClosed { .. } => continue,
            };
            if events.send(out).is_err() {
                return;
            }
        }
        let mut deadline = peer
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        if nominations > 0 {
            deadline = deadline.min(Instant::now() + Duration::from_millis(100));
        }
        tokio::select! {
            c = cmd.recv() => {
                let now = Instant::now();
                match c {
                    None => break,
                    Some(Cmd::Offer(reply)) => {
                        let offer = peer.offer(now).and_then(|o| o.ok_or(MediaError::Conflict("an offer is already out".into())));
                        if let Ok(sdp) = &offer { ours = ice_credentials(sdp); }
                        let _ = reply.send(offer);
                    }
                    Some(Cmd::AcceptAnswer(sdp, reply)) => {
                        theirs = ice_credentials(&sdp);
                        let _ = reply.send(peer.accept_answer(sdp, now));
                    }
                    Some(Cmd::Answer(sdp, reply)) => {
                        theirs = ice_credentials(&sdp);
                        let answer = peer.answer(sdp, now);
                        if let Ok(sdp) = &answer { ours = ice_credentials(sdp); }
                        let _ = reply.send(answer);
                    }
                    Some(Cmd::Send { seq, ts, payload, marker, audio_level }) => {
                        if let (Some((id, mime)), Some(ssrc)) = (&sender, ssrc) {
                            let packet = Rtp { ssrc, seq, ts, marker, payload_type: 0, payload, audio_level, layer: 0 };
                            let _ = peer.send_rtp(*id, &packet, mime, now);
                        }
                    }
                    Some(Cmd::Lose(n)) => lose = n,
                    Some(Cmd::Nack { track, seqs }) => { let _ = peer.nack(&track, &seqs, now); }
                    Some(Cmd::KeyframeRequest { track }) => { let _ = peer.request_keyframe(&track, now); }
                    Some(Cmd::Vanish) => return,
                    Some(Cmd::RestartIce) => peer.restart_ice(),
                    Some(Cmd::Move) => {
                        let Ok(moved) = UdpSocket::bind(SocketAddr::new(socket.local_addr().map(|a| a.ip()).unwrap_or([127, 0, 0, 1].into()), 0)).await else { break };
                        socket = moved;
                        nominations = 10;
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { break };
                remote = Some(from);
                let datagram = &buf[..n];
                // RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the second byte).
                let is_rtp = n > 1 && (128..192).contains(&datagram[0]) && !(192..224).contains(&datagram[1]);
                if lose > 0 && is_rtp {
                    lose -= 1;
                    continue;
                }
                let _ = peer.handle_datagram(BytesMut::from(datagram), from, Instant::now());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = peer.handle_timeout(Instant::now());
                if nominations > 0 {
                    nominations -= 1;
                    if let (Some(ours), Some(theirs), Some(to)) = (&ours, &theirs, remote) {
                        if let Some(request) = nominating_request(ours, theirs) {
                            let _ = socket.send_to(&request, to).await;
                        }
                    }
                }
            }
        }
    }
    peer.close();
}

/// `a=ice-ufrag` and `a=ice-pwd` of an SDP.
pub fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(str::to_owned)
    };
    Some((value("a=ice-ufrag:")?, value("a=ice-pwd:")?))
}

/// A binding request that nominates the path it is sent on, as a
/// controlling agent sends it: USERNAME `theirs:ours`, USE-CANDIDATE,
/// ICE-CONTROLLING, PRIORITY, MESSAGE-INTEGRITY with their password,
/// FINGERPRINT. Credentials are (ufrag, pwd). A client that nominates with
/// its very first check (aggressive nomination, as aiortc does) sends this
/// before anything else.
pub fn nominating_request(ours: &(String, String), theirs: &(String, String)) -> Option<Vec<u8>> {
    use rtc::ice::attributes::{
        control::AttrControlling, priority::PriorityAttr, use_candidate::UseCandidateAttr,
    };
    use rtc::stun::{attributes::ATTR_USERNAME, fingerprint::FINGERPRINT};
    use rtc::stun::{integrity::MessageIntegrity, message, textattrs::Username};
    let provider = rtc::crypto::default_provider().ok()?;
    let mut msg = message::Message::new();
    msg.build(&[
        Box::new(message::BINDING_REQUEST),
        Box::new(message::TransactionId::new()),
        Box::new(Username::new(
            ATTR_USERNAME,
            format!("{}:{}", theirs.0, ours.0),
        )),
        Box::<UseCandidateAttr>::default(),
        Box::new(AttrControlling(rand::random())),
        Box::new(PriorityAttr(2_130_706_431)),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            theirs.1.clone(),
            provider.crypto(),
        )),
        Box::new(FINGERPRINT),
    ])
    .ok()?;
    Some(msg.raw)
}
