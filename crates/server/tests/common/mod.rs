//! What the tests of the `roost` binary share: starting it as an operator
//! would, reading the line that says where it listens, and talking to it
//! over HTTP and the WebSocket as a client does.

// Each test binary compiles this module and uses its own part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "a perfectly fine passphrase";

/// The `roost` binary, free of the test run's own `ROOST_` settings, which
/// must not leak into the server under test.
pub fn roost() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ROOST_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `roost serve` on `data_dir`; tests run side by side, so its HTTP and
/// media ports are free ones.
pub fn serve(data_dir: &Path) -> Command {
    let mut cmd = roost();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("ROOST_MEDIA__LISTEN", "127.0.0.1:0");
    cmd
}

/// A running `roost serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub client: reqwest::Client,
    log: Option<PathBuf>,
}

impl Server {
    /// Starts `cmd` and waits for the line that says where it listens.
    pub fn spawned(cmd: Command) -> Server {
        Server::spawn(cmd, None)
    }

    /// As [`Server::spawned`], its stderr written to `log`, which a failed
    /// start shows.
    pub fn spawned_logging(mut cmd: Command, log: &Path) -> Server {
        cmd.stderr(std::fs::File::create(log).unwrap());
        Server::spawn(cmd, Some(log.to_owned()))
    }

    fn spawn(mut cmd: Command, log: Option<PathBuf>) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("starting roost");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading roost's stdout");
        let url = line
            .trim()
            .strip_prefix("Roost is listening on ")
            .unwrap_or_else(|| {
                let log = log.as_ref().map(std::fs::read_to_string);
                panic!("unexpected first line {line:?}; log: {log:?}")
            })
            .to_owned();
        Server {
            child,
            url,
            // A server that hangs fails the test instead of hanging it.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            log,
        }
    }

    /// A request; the status and the JSON body (null when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Registers `name` (`name@example.org`); the answer, tokens included.
    pub async fn register(&self, name: &str) -> (u16, Value) {
        self.post(
            "/v1/auth/register",
            None,
            json!({"email": format!("{name}@example.org"), "username": name, "password": PASSWORD}),
        )
        .await
    }

    /// Registers `name` and returns the login's answer (tokens).
    pub async fn account(&self, name: &str) -> Value {
        let (status, body) = self.register(name).await;
        assert_eq!(status, 201, "{body}");
        let (status, login) = self
            .post(
                "/v1/auth/login",
                None,
                json!({"email": format!("{name}@example.org"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "{login}");
        login
    }

    /// A socket that said hello.
    pub async fn socket(&self, token: &str) -> Socket {
        let url = format!(
            "{}/v1/ws?access_token={token}",
            self.url.replace("http://", "ws://")
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the socket opens");
        let mut socket = Socket(ws);
        let welcome = socket
            .request(json!({"type": "hello", "id": "hello"}))
            .await;
        assert_eq!(welcome["type"], "ack", "{welcome}");
        socket
    }

    /// Sends a signal (`-TERM`, `-INT`, `-KILL`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("roost did not exit within {within:?}");
    }

    /// Sends a signal and returns the exit code, which must come within 10 s.
    pub async fn stop(mut self, signal: &str) -> Option<i32> {
        self.signal(signal);
        self.exit_code(Duration::from_secs(10)).await
    }

    /// What the server wrote to the log given to [`Server::spawned_logging`].
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.as_ref().expect("a server started with a log")).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client's WebSocket to a running server.
pub struct Socket(
    pub tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Socket {
    pub async fn send(&mut self, frame: Value) {
        self.0
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame the client reads, the socket's own pongs included, within 10 s.
    pub async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(10), self.0.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a frame")
    }

    /// Sends a request and returns its answer, skipping events.
    pub async fn request(&mut self, frame: Value) -> Value {
        let id = frame["id"].clone();
        self.send(frame).await;
        loop {
            if let Message::Text(text) = self.next().await {
                let f: Value = serde_json::from_str(&text).unwrap();
                if f["id"] == id {
                    return f;
                }
            }
        }
    }

    /// The next JSON frame within `wait`; a close comes as a frame of type
    /// `<close>` with its code; `None` when nothing came or the socket broke.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.0.next())
                .await
                .ok()??
            {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(c)) => {
                    return Some(json!({"type": "<close>", "code": c.map(|c| u16::from(c.code))}))
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next frame of type `ty`, within 10 s.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        self.next_of_any(&[ty]).await
    }

    /// The next frame of one of these types, within 10 s.
    pub async fn next_of_any(&mut self, types: &[&str]) -> Value {
        loop {
            let f = self
                .next_within(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("none of {types:?} within 10 s"));
            if types.iter().any(|t| f["type"] == *t) {
                return f;
            }
        }
    }

    /// The next text message's body, skipping system messages and other frames.
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.next_within(left).await?;
            if f["type"] == "message.new" && f["message"]["kind"] == "text" {
                return f["message"]["body"].as_str().map(str::to_owned);
            }
        }
    }
}
