//! A gateway on 127.0.0.1:0 over a fresh database, and a WebSocket client for it.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roost_core::auth::{ClientInfo, Registration};
use roost_core::store::{testing, Store, StoreOptions};
use roost_core::{Core, CoreConfig};
use roost_signaling::{Gateway, GatewayConfig};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestServer {
    pub core: Core,
    pub gateway: Gateway,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    pub async fn with(tune: impl FnOnce(&mut GatewayConfig)) -> TestServer {
        TestServer::with_core(|_| {}, tune).await
    }

    pub async fn with_core(
        core: impl FnOnce(&mut CoreConfig),
        tune: impl FnOnce(&mut GatewayConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::fresh_database_url(dir.path()).await;
        TestServer::node(dir, &url, None, core, tune, None).await
    }

    /// A gateway whose calls move to a media engine on loopback past `mesh_max`.
    pub async fn with_media(calls: roost_signaling::calls::CallsConfig) -> TestServer {
        TestServer::with_media_quick(calls, false).await
    }

    /// As [`TestServer::with_media`]; with `quick`, the engine gives up on a
    /// silent connection after 2 s.
    pub async fn with_media_quick(
        calls: roost_signaling::calls::CallsConfig,
        quick: bool,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::fresh_database_url(dir.path()).await;
        TestServer::node(dir, &url, None, |_| {}, |_| {}, Some((calls, quick))).await
    }

    /// Two nodes sharing one PostgreSQL database and one Redis (at
    /// `ROOST_TEST_REDIS_URL`, default the local one), under a fresh key prefix.
    pub async fn pair() -> (TestServer, TestServer) {
        let redis = redis_url();
        TestServer::pair_on(&redis).await
    }

    /// Two nodes over Redis, each with a media engine on loopback.
    pub async fn pair_with_calls(
        calls: roost_signaling::calls::CallsConfig,
    ) -> (TestServer, TestServer) {
        TestServer::pair_of(&redis_url(), Some(calls)).await
    }

    pub async fn pair_on(redis: &str) -> (TestServer, TestServer) {
        TestServer::pair_of(redis, None).await
    }

    async fn pair_of(
        redis: &str,
        calls: Option<roost_signaling::calls::CallsConfig>,
    ) -> (TestServer, TestServer) {
        let url = testing::fresh_postgres_url().await;
        let prefix = format!("roost-test-{}:", uuid::Uuid::new_v4().simple());
        let config = roost_core::cluster::ClusterConfig {
            url: redis.to_owned(),
            prefix,
        };
        let a = TestServer::node(
            tempfile::tempdir().unwrap(),
            &url,
            Some(&config),
            |_| {},
            |_| {},
            calls.clone().map(|c| (c, false)),
        )
        .await;
        let b = TestServer::node(
            tempfile::tempdir().unwrap(),
            &url,
            Some(&config),
            |_| {},
            |_| {},
            calls.map(|c| (c, false)),
        )
        .await;
        (a, b)
    }

    async fn node(
        dir: tempfile::TempDir,
        url: &str,
        cluster: Option<&roost_core::cluster::ClusterConfig>,
        tune_core: impl FnOnce(&mut CoreConfig),
        tune: impl FnOnce(&mut GatewayConfig),
        // The calls, and whether the engine gives up on silence quickly.
        calls: Option<(roost_signaling::calls::CallsConfig, bool)>,
    ) -> TestServer {
        let store = Store::connect(&StoreOptions {
            url: url.to_owned(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let mut cc = CoreConfig::default();
        cc.auth.hash_concurrency = 2;
        cc.files.storage = roost_core::files::StorageConfig::Local {
            root: dir.path().join("files"),
        };
        tune_core(&mut cc);
        let secret = b"a test secret that is at least thirty-two bytes";
        let core = match cluster {
            None => Core::new(store, secret, cc).await.unwrap(),
            Some(c) => {
                let cluster = roost_core::cluster::Cluster::connect(c)
                    .await
                    .unwrap_or_else(|e| panic!("Redis at {} does not answer: {e}", c.url));
                Core::clustered(store, &cluster, secret, cc).await.unwrap()
            }
        };
        let mut config = GatewayConfig::default();
        tune(&mut config);
        let gateway = match calls {
            None => Gateway::start(core.clone(), config),
            Some((calls, quick)) => {
                let mut engine = roost_media::EngineConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..Default::default()
                };
                if quick {
                    engine.peer_disconnected = Duration::from_secs(1);
                    engine.peer_failed = Duration::from_secs(1);
                }
                let media = roost_media::Engine::start(engine)
                    .await
                    .expect("the media engine starts on loopback");
                Gateway::with_media(core.clone(), config, calls, Some(media))
            }
        };
        let app = roost_signaling::router(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            core,
            gateway,
            addr,
            _dir: dir,
        }
    }

    pub async fn user(&self, name: &str) -> User {
        let s = self
            .core
            .auth
            .register(
                Registration {
                    email: format!("{name}@example.org"),
                    username: name.into(),
                    password: "a perfectly fine passphrase".into(),
                    display_name: None,
                },
                &ClientInfo::default(),
            )
            .await
            .unwrap();
        User {
            id: s.user.id.to_string(),
            token: s.tokens.access_token,
        }
    }

    pub async fn actor(&self, user: &User) -> roost_core::model::Actor {
        self.core.auth.authenticate(&user.token).await.unwrap()
    }

    /// A group room of `owner` with `members`.
    pub async fn room(&self, owner: &User, members: &[&User]) -> String {
        let actor = self.actor(owner).await;
        let room = self
            .core
            .rooms
            .create(
                &actor,
                roost_core::rooms::NewRoom {
                    name: "room".into(),
                    topic: None,
                    visibility: roost_core::model::Visibility::Private,
                    max_call_participants: None,
                    call_self_unmute: true,
                },
            )
            .await
            .unwrap();
        for m in members {
            self.core
                .rooms
                .add_member(&actor, room.room.id, m.id.parse().unwrap())
                .await
                .unwrap();
        }
        room.room.id.to_string()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Connects with the token as a subprotocol, the way browsers do.
    pub async fn connect(&self, user: &User) -> Client {
        let mut req = self.url().into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("roost.v1, bearer.{}", user.token)).unwrap(),
        );
        let (ws, res) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connecting");
        assert_eq!(res.headers()["sec-websocket-protocol"], "roost.v1");
        Client {
            ws,
            next_id: 0,
            backlog: Default::default(),
        }
    }

    /// Connects and says hello with `resume`; returns the client and the welcome.
    pub async fn join(&self, user: &User, resume: Value) -> (Client, Value) {
        let mut c = self.connect(user).await;
        let welcome = c.request(json!({"type": "hello", "resume": resume})).await;
        assert_eq!(welcome["type"], "ack", "{welcome}");
        (c, welcome["result"].clone())
    }
}

/// The Redis the two-node tests use.
pub fn redis_url() -> String {
    std::env::var("ROOST_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames that arrived while a request waited for its answer, in order.
    backlog: std::collections::VecDeque<Value>,
}

impl Client {
    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a message (`message.send`) that must be acked; returns its id.
    pub async fn post_message(&mut self, room: &str, body: &str, client_msg_id: &str) -> String {
        let ack = self
            .request(json!({"type": "message.send", "room_id": room, "body": body, "client_msg_id": client_msg_id}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        ack["result"]["message"]["id"].as_str().unwrap().to_owned()
    }

    /// Sends a request with a fresh id and returns its `ack` or `nack`, skipping events.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send_raw(&frame.to_string()).await;
        let mut skipped = Vec::new();
        loop {
            let f = self
                .read_within(Duration::from_secs(5))
                .await
                .expect("an answer within 5 s");
            if f["id"] == json!(id)
                && (f["type"] == "ack" || f["type"] == "nack" || f["type"] == "pong")
            {
                self.backlog.extend(skipped);
                return f;
            }
            skipped.push(f);
        }
    }

    /// The next JSON frame, within 5 s.
    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("a frame within 5 s")
    }

    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        if let Some(f) = self.backlog.pop_front() {
            return Some(f);
        }
        self.read_within(wait).await
    }

    /// The next frame from the socket itself.
    async fn read_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(e) => panic!("socket error {e}"),
            }
        }
    }

    /// The next frame of type `ty`, skipping others.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["type"] == ty {
                return f;
            }
        }
    }

    /// Frames until none arrives for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.next_within(quiet).await {
            out.push(f);
        }
        out
    }

    /// Closes the socket from the client's side, as a user closing the page.
    pub async fn close(&mut self) {
        // As a page that leaves does: 1000, so the server takes it for a
        // leave, not a drop.
        let normal = CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.ws.close(Some(normal)).await;
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await
        {}
    }

    /// Waits for the server to close; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("not closed within 5 s"),
                Ok(None) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map(|f: CloseFrame| f.code.into())
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) => return None,
            }
        }
    }
}

/// A client that completes the WebSocket handshake and then never writes a
/// byte: not even the pongs a WebSocket library sends on its own. What it
/// reads shows exactly what the server sent before closing.
pub struct SilentClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SilentClient {
    pub async fn connect(server: &TestServer, user: &User) -> SilentClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /v1/ws?access_token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            user.token, server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server hung up during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        SilentClient {
            stream,
            buf: buf[end..].to_vec(),
        }
    }

    /// Writes raw bytes: frames of the client's own making, broken ones included.
    pub async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads frames until the server's close frame (its code) or the end of
    /// the stream (`None`), within `wait`.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Server frames are unmasked: opcode, length (7, 16 or 64 bits), payload.
            if self.buf.len() >= 2 {
                let opcode = self.buf[0] & 0x0f;
                let (len, header) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    if opcode == 0x8 {
                        return (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("no close within {wait:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The media connections of [`sfu_audio_reaches`], to go on speaking.
pub struct AudioPath {
    /// The speaker's offer of its sending connection.
    pub offer: String,
    voice: roost_media::client::Client,
    ears: Vec<roost_media::client::Client>,
    seq: u16,
}

impl AudioPath {
    /// The speaker's connection goes silent, as a client whose network vanished.
    pub fn silence_speaker(&self) {
        self.voice.vanish();
    }

    /// The answer of listener `i` to a new offer of the server's.
    pub async fn answer(&mut self, i: usize, offer: &Value) -> String {
        self.ears[i]
            .answer(offer["sdp"].as_str().unwrap().to_owned())
            .await
            .unwrap()
    }

    /// Sends `n` packets numbered after `prefix`; returns how many of them
    /// the listener hearing fewest heard within half a second.
    pub async fn speak(&mut self, prefix: &[u8], n: u16) -> usize {
        use roost_media::client::ClientEvent;
        for i in 0..n {
            let mut payload = prefix.to_vec();
            payload.extend_from_slice(&i.to_be_bytes());
            self.voice
                .send(self.seq, u32::from(self.seq) * 960, payload);
            self.seq = self.seq.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut fewest = usize::MAX;
        for ear in self.ears.iter_mut() {
            let mut heard = std::collections::BTreeSet::new();
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
                match ear.next(left).await {
                    Some(ClientEvent::Rtp { packet, .. }) => {
                        if let Some(rest) = packet.payload.strip_prefix(prefix) {
                            heard.insert(u16::from_be_bytes([rest[0], rest[1]]));
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            fewest = fewest.min(heard.len());
        }
        fewest
    }
}

/// Media through the SFU with its signalling on the sockets: `speaker`
/// offers audio, each listener answers the server's offer (which names the
/// speaker as the sender of its one track), every listener hears all of 50
/// numbered packets, and the speaker is told each listener plays it.
pub async fn sfu_audio_reaches(
    speaker: &mut Client,
    listeners: &mut [&mut Client],
    call_id: &Value,
) -> AudioPath {
    use roost_media::client::{Client as MediaClient, ClientEvent};
    use roost_media::Kind;
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut voice = MediaClient::start(loopback, Some(Kind::Audio))
        .await
        .unwrap();
    let offer = voice.offer().await.unwrap();
    let ack = speaker
        .request(json!({"type": "sfu.offer", "call_id": call_id, "sdp": offer}))
        .await;
    assert_eq!(ack["result"]["type"], "answer", "{ack}");
    voice
        .accept_answer(ack["result"]["sdp"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert!(voice.connected(Duration::from_secs(10)).await);

    // Once its track flows, the server offers it to the others.
    let mut ears = Vec::new();
    for _ in 0..listeners.len() {
        ears.push(MediaClient::start(loopback, None).await.unwrap());
    }
    let mut answered = vec![false; listeners.len()];
    let mut senders = std::collections::BTreeSet::new();
    let mut seq: u16 = 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while answered.contains(&false) {
        assert!(std::time::Instant::now() < deadline, "no sfu.offer came");
        voice.send(seq, u32::from(seq) * 960, b"warm-up".to_vec());
        seq += 1;
        for (i, done) in answered.iter_mut().enumerate() {
            if *done {
                continue;
            }
            while let Some(f) = listeners[i].next_within(Duration::from_millis(20)).await {
                if f["type"] == "sfu.offer" {
                    assert_eq!(&f["call_id"], call_id);
                    let tracks = f["tracks"].as_array().expect("the offer lists its tracks");
                    assert_eq!(tracks.len(), 1, "{f}");
                    assert_eq!(tracks[0]["kind"], "audio");
                    assert_eq!(tracks[0]["source"], "microphone");
                    let mid = tracks[0]["mid"].as_str().unwrap();
                    assert!(
                        f["sdp"]
                            .as_str()
                            .unwrap()
                            .contains(&format!("a=mid:{mid}\r\n")),
                        "the track's mid is one of the offer's sections"
                    );
                    senders.insert(tracks[0]["participant_id"].to_string());
                    let sdp = ears[i]
                        .answer(f["sdp"].as_str().unwrap().to_owned())
                        .await
                        .unwrap();
                    let ack = listeners[i]
                        .request(json!({"type": "sfu.answer", "call_id": call_id, "sdp": sdp}))
                        .await;
                    assert_eq!(ack["type"], "ack", "{ack}");
                    *done = true;
                    break;
                }
            }
        }
    }
    for ear in ears.iter_mut() {
        assert!(
            ear.connected(Duration::from_secs(10)).await,
            "a listener connects"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..50u16 {
        let mut payload = b"voice#".to_vec();
        payload.extend_from_slice(&n.to_be_bytes());
        voice.send(seq, u32::from(seq) * 960, payload);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for ear in ears.iter_mut() {
        let mut heard = std::collections::BTreeSet::new();
        while heard.len() < 50 {
            match ear.next(Duration::from_secs(5)).await {
                Some(ClientEvent::Rtp { packet, .. }) => {
                    if let Some(rest) = packet.payload.strip_prefix(b"voice#") {
                        heard.insert(u16::from_be_bytes([rest[0], rest[1]]));
                    }
                }
                Some(_) => {}
                None => panic!("a listener heard {} of 50 packets", heard.len()),
            }
        }
    }
    assert_eq!(senders.len(), 1, "every listener is told the same sender");
    // The speaker hears that each listener plays its audio.
    let mut playing = std::collections::BTreeSet::new();
    while playing.len() < listeners.len() {
        let f = speaker
            .next_within(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{} sfu.receiving of {}", playing.len(), listeners.len()));
        if f["type"] == "sfu.receiving" {
            assert_eq!(&f["call_id"], call_id);
            assert_eq!(f["kind"], "audio");
            assert_eq!(f["source"], "microphone");
            assert!(
                !senders.contains(&f["participant_id"].to_string()),
                "a listener, not the speaker"
            );
            playing.insert(f["participant_id"].to_string());
        }
    }
    AudioPath {
        offer,
        voice,
        ears,
        seq,
    }
}

/// Joins the room's call; returns the answer.
pub async fn join_call(c: &mut Client, room: &str) -> Value {
    let ack = c
        .request(json!({"type": "call.join", "room_id": room}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["result"].clone()
}
