//! A WebRTC client for the engine's tests: a full (not lite) `rtc` peer
//! connection on its own UDP socket on loopback, driven by a task of its own.
//! It publishes numbered RTP packets and reports what it receives.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// What a client saw.
#[derive(Debug, Clone)]
pub enum Seen {
    Connected,
    Rtp {
        ssrc: u32,
        seq: u16,
        ts: u32,
        payload: Bytes,
        at: Instant,
    },
    KeyframeRequest {
        at: Instant,
    },
}

enum Cmd {
    Offer(oneshot::Sender<String>),
    Answer(String),
    AnswerOffer(String, oneshot::Sender<String>),
    Send {
        seq: u16,
        ts: u32,
        payload: Bytes,
    },
    /// Drop the next `n` RTP datagrams that arrive (simulated loss).
    Lose(usize),
    /// Ask the sender of a received stream to resend a packet.
    Nack {
        media_ssrc: u32,
        seq: u16,
    },
}

pub struct Client {
    cmd: mpsc::UnboundedSender<Cmd>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub ssrc: u32,
}

impl Client {
    /// A client that sends one track of `kind` (or none) and receives.
    pub async fn start(kind: Option<RtpCodecKind>) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let registry = Registry::new().with(Slot::from(14_000), Pli::default());
        let registry = register_default_interceptors(registry, &mut media).unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(SettingEngineBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .unwrap();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let ssrc: u32 = rand::random();
        let sender = kind.map(|kind| {
            let (mime, rate, channels) = match kind {
                RtpCodecKind::Audio => (MIME_TYPE_OPUS, 48_000, 2),
                _ => (MIME_TYPE_VP8, 90_000, 0),
            };
            let track = MediaStreamTrack::new(
                "client-stream".into(),
                format!("client-{kind}"),
                format!("client-{kind}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: RTCRtpCodec {
                        mime_type: mime.into(),
                        clock_rate: rate,
                        channels,
                        sdp_fmtp_line: String::new(),
                        rtcp_feedback: vec![],
                    },
                    ..Default::default()
                }],
            );
            (pc.add_track(track).unwrap(), mime)
        });
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(drive(pc, socket, local, sender, cmd_rx, seen_tx));
        Client { cmd, seen, ssrc }
    }

    pub async fn offer(&self) -> String {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Offer(tx)).unwrap();
        rx.await.unwrap()
    }

    pub fn accept_answer(&self, sdp: String) {
        self.cmd.send(Cmd::Answer(sdp)).unwrap();
    }

    pub async fn answer(&self, offer: String) -> String {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::AnswerOffer(offer, tx)).unwrap();
        rx.await.unwrap()
    }

    pub fn send(&self, seq: u16, ts: u32, payload: Bytes) {
        self.cmd.send(Cmd::Send { seq, ts, payload }).unwrap();
    }

    pub fn lose(&self, n: usize) {
        self.cmd.send(Cmd::Lose(n)).unwrap();
    }

    pub fn nack(&self, media_ssrc: u32, seq: u16) {
        self.cmd.send(Cmd::Nack { media_ssrc, seq }).unwrap();
    }

    /// The next thing seen within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Seen> {
        tokio::time::timeout(wait, self.seen.recv()).await.ok()?
    }

    /// Waits until the connection is up.
    pub async fn connected(&mut self) {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Seen::Connected) => return,
                Some(_) => continue,
                None => panic!("the client did not connect within 10 s"),
            }
        }
    }
}

async fn drive(
    mut pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    sender: Option<(RTCRtpSenderId, &'static str)>,
    mut cmd: mpsc::UnboundedReceiver<Cmd>,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = vec![0u8; 2048];
    let mut lose = 0usize;
    loop {
        while let Some(out) = pc.poll_write() {
            let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
        }
        while let Some(event) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = event
            {
                let _ = seen.send(Seen::Connected);
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_, p) => {
                    let _ = seen.send(Seen::Rtp {
                        ssrc: p.header.ssrc,
                        seq: p.header.sequence_number,
                        ts: p.header.timestamp,
                        payload: p.payload,
                        at: Instant::now(),
                    });
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in packets {
                        if p.as_any().is::<PictureLossIndication>() {
                            let _ = seen.send(Seen::KeyframeRequest { at: Instant::now() });
                        }
                    }
                }
                _ => {}
            }
        }
        let deadline = pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            c = cmd.recv() => {
                let now = Instant::now();
                match c {
                    None => break,
                    Some(Cmd::Offer(reply)) => {
                        let offer = pc.create_offer(None).unwrap();
                        pc.set_local_description(now, offer).unwrap();
                        let _ = reply.send(pc.local_description().unwrap().sdp);
                    }
                    Some(Cmd::Answer(sdp)) => {
                        pc.set_remote_description(now, RTCSessionDescription::answer(sdp).unwrap()).unwrap();
                    }
                    Some(Cmd::AnswerOffer(sdp, reply)) => {
                        pc.set_remote_description(now, RTCSessionDescription::offer(sdp).unwrap()).unwrap();
                        let answer = pc.create_answer(None).unwrap();
                        pc.set_local_description(now, answer).unwrap();
                        let _ = reply.send(pc.local_description().unwrap().sdp);
                    }
                    Some(Cmd::Send { seq, ts, payload }) => {
                        let (id, mime) = sender.expect("a publishing client");
                        let mut s = pc.rtp_sender(id).unwrap();
                        let pt = s.get_parameters().rtp_parameters.codecs.iter()
                            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                            .map(|c| c.payload_type)
                            .unwrap_or(96);
                        let ssrc = s.track().ssrcs().last().unwrap();
                        let packet = rtc::rtp::Packet {
                            header: rtc::rtp::header::Header {
                                version: 2,
                                payload_type: pt,
                                sequence_number: seq,
                                timestamp: ts,
                                ssrc,
                                ..Default::default()
                            },
                            payload,
                        };
                        let _ = s.write_rtp(now, packet);
                    }
                    Some(Cmd::Lose(n)) => lose = n,
                    Some(Cmd::Nack { media_ssrc, seq }) => {
                        use rtc::rtcp::transport_feedbacks::transport_layer_nack::{nack_pairs_from_sequence_numbers, TransportLayerNack};
                        let receiver = pc.get_receivers().next().expect("a receiving client");
                        let nack = TransportLayerNack {
                            sender_ssrc: 0,
                            media_ssrc,
                            nacks: nack_pairs_from_sequence_numbers(&[seq]),
                        };
                        pc.rtp_receiver(receiver).unwrap().write_rtcp(now, vec![Box::new(nack)]).unwrap();
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { break };
                let is_rtp = (128..192).contains(&buf[0]) && n > 1 && !(192..224).contains(&buf[1]);
                if lose > 0 && is_rtp {
                    lose -= 1;
                    continue;
                }
                let _ = pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: from,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&buf[..n]),
                });
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = pc.handle_timeout(Instant::now());
            }
        }
    }
    let _ = pc.close();
}

/// Hands PLIs to the client so a test can see them.
#[derive(Default)]
struct Pli {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Pli {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets
                .iter()
                .any(|p| p.as_any().is::<PictureLossIndication>())
            {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for Pli {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
