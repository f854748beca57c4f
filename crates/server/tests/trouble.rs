//! The real binary when things go wrong around it: asked to stop behind a
//! load balancer, its database gone, its log turned up to `trace`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, PASSWORD};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// `roost serve` with `args` and `env`, on a fresh data directory in `dir`,
/// its stderr in `dir/stderr.log`.
fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = common::serve(&dir.join("data"));
    cmd.args(args).envs(env.iter().copied());
    Server::spawned_logging(cmd, &dir.join("stderr.log"))
}

#[tokio::test]
async fn sigterm_drains_readiness_first_and_still_serves_until_the_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[], &[("ROOST_SHUTDOWN_DRAIN_SECS", "3")]);
    assert_eq!(server.get("/readyz", None).await.0, 200);
    let login = server.account("ada").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let mut socket = server.socket(&token).await;

    let asked = Instant::now();
    server.signal("-TERM");
    let (status, body) = loop {
        let (status, body) = server.get("/readyz", None).await;
        if status != 200 || asked.elapsed() > Duration::from_secs(2) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("draining")),
        "readiness fails as soon as the node drains: {body}"
    );
    // The load balancer has not noticed yet: what it still sends is served.
    let (status, me) = server.get("/v1/auth/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    let (status, _) = server.register("bea").await;
    assert_eq!(status, 201, "new connections are accepted while draining");
    let pong = socket.request(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(pong["type"], "pong", "open sockets are served too");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "all of this happened within the window"
    );

    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "the listener stayed open for the whole window"
    );
    assert!(
        server.logs().contains("draining"),
        "the drain is logged: {}",
        server.logs()
    );
}

#[tokio::test]
async fn sigint_skips_the_drain_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[], &[("ROOST_SHUTDOWN_DRAIN_SECS", "60")]);
    assert_eq!(server.get("/healthz", None).await.0, 200);
    server.signal("-INT");
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn no_log_level_writes_a_token_a_password_or_a_message_body() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[],
        &[
            ("ROOST_LOG__LEVEL", "trace"),
            ("ROOST_SHUTDOWN_DRAIN_SECS", "0"),
        ],
    );
    let login = server.account("ada").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = server
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let fresh = refreshed["access_token"].as_str().unwrap().to_owned();
    let (status, room) = server
        .post("/v1/rooms", Some(&token), json!({"name": "Book club"}))
        .await;
    assert_eq!(status, 201, "{room}");

    let body = "the heron flies at midnight 7c1e";
    let mut socket = server.socket(&token).await;
    let sent = socket
        .request(
            json!({"type": "message.send", "id": "m", "room_id": room["id"],
            "body": body, "client_msg_id": "c1"}),
        )
        .await;
    assert_eq!(sent["type"], "ack", "{sent}");
    let renewed = socket
        .request(json!({"type": "auth.refresh", "id": "r", "access_token": fresh}))
        .await;
    assert_eq!(renewed["type"], "ack", "{renewed}");
    let _ = socket.0.close(None).await;
    server.signal("-TERM");
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));

    let logs = server.logs();
    assert!(
        logs.contains("TRACE"),
        "trace lines are written: {}",
        &logs[..logs.len().min(2000)]
    );
    let secrets = [
        ("the password", PASSWORD),
        ("the message body", body),
        ("the access token", &token),
        ("the refreshed access token", &fresh),
        (
            "the refresh token",
            login["refresh_token"].as_str().unwrap(),
        ),
        (
            "the rotated refresh token",
            refreshed["refresh_token"].as_str().unwrap(),
        ),
    ];
    for (what, secret) in secrets {
        assert!(!logs.contains(secret), "{what} reached the log");
    }
}

/// A TCP proxy in front of PostgreSQL that the test can pull out: while it
/// is down, connecting is refused and the open connections are cut, as when
/// the database host goes away.
struct Proxy {
    addr: std::net::SocketAddr,
    upstream: String,
    tasks: tokio::task::JoinSet<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            tasks: tokio::task::JoinSet::new(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        self.tasks.spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                links.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Closes the listener and every connection through it.
    fn down(&mut self) {
        self.tasks.abort_all();
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        while self.tasks.join_next().await.is_some() {}
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// `url` with its `host:port` replaced; and the `host:port` it had.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (format!("{scheme}://{user}{addr}/{path}"), host)
}

/// Times `f`.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

// Several threads: the proxy keeps working while the test waits on the server's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_at_once_and_sockets_stay_alive() {
    let database = roost_core::store::testing::fresh_postgres_url().await;
    let (_, upstream) = through(&database, "127.0.0.1:1".parse().unwrap());
    let mut proxy = Proxy::start(upstream).await;
    let (proxied, _) = through(&database, proxy.addr);
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--database-url", &proxied],
        &[("ROOST_SHUTDOWN_DRAIN_SECS", "0")],
    );
    let login = server.account("ada").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (status, room) = server
        .post("/v1/rooms", Some(&token), json!({"name": "Ops"}))
        .await;
    assert_eq!(status, 201, "{room}");
    let mut socket = server.socket(&token).await;

    proxy.down();

    // Readiness never waits on the pool: each answer comes within about a second.
    let outage = Instant::now();
    loop {
        let ((status, body), took) = timed(server.get("/readyz", None)).await;
        assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
        if status == 503 {
            assert_eq!(body["error"]["code"], "not_ready", "{body}");
            break;
        }
        assert!(
            outage.elapsed() < Duration::from_secs(5),
            "/readyz still answers {status}"
        );
    }
    // The node knows: requests fail fast with `unavailable`, not after the pool's 10 s.
    let ((status, body), took) = timed(server.get("/v1/auth/me", Some(&token))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "the 503 took {took:?}");

    // A request on the socket waits on the database, and meanwhile pings are answered.
    socket
        .send(
            json!({"type": "message.send", "id": "m", "room_id": room["id"],
            "body": "anyone there?", "client_msg_id": "c1"}),
        )
        .await;
    socket.send(json!({"type": "ping", "id": "p"})).await;
    socket
        .0
        .send(Message::Ping(b"keepalive".to_vec().into()))
        .await
        .unwrap();
    let mut order = Vec::new();
    let start = Instant::now();
    while order.len() < 3 {
        match socket.next().await {
            Message::Pong(data) if &data[..] == b"keepalive" => order.push("socket pong".into()),
            Message::Text(text) => {
                let f: Value = serde_json::from_str(&text).unwrap();
                match (f["type"].as_str(), f["id"].as_str()) {
                    (Some("pong"), Some("p")) => order.push("pong".to_owned()),
                    (Some("nack"), Some("m")) => {
                        assert_eq!(f["code"], "unavailable", "{f}");
                        order.push("nack".to_owned());
                    }
                    (Some("ack"), Some("m")) => panic!("sent with the database away: {f}"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the socket's answers took {:?}",
        start.elapsed()
    );
    assert_eq!(
        order.last().map(String::as_str),
        Some("nack"),
        "both pongs come while the request waits: {order:?}"
    );

    proxy.up().await;
    let back = Instant::now();
    loop {
        let (status, _) = server.get("/readyz", None).await;
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "/readyz still answers {status} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, me) = server.get("/v1/auth/me", Some(&token)).await;
    assert_eq!(status, 200, "REST recovers: {me}");
    let sent = socket
        .request(
            json!({"type": "message.send", "id": "m2", "room_id": room["id"],
            "body": "anyone there?", "client_msg_id": "c1"}),
        )
        .await;
    assert_eq!(sent["type"], "ack", "the same socket recovers: {sent}");
}

/// Runs `cmd`, which must refuse to start (exit code 1); what it wrote to stderr.
fn refusal(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
    err
}

#[test]
fn several_nodes_without_a_configured_jwt_secret_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &["config", "check"][..],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let err = refusal(
            common::roost()
                .args(command)
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--redis-url", "redis://127.0.0.1:6379"]),
        );
        assert!(
            err.contains("jwt_secret must be set when redis_url is"),
            "{command:?}: {err}"
        );
    }
}

#[test]
fn a_roost_variable_that_is_no_setting_is_named_in_the_refusal() {
    let err = refusal(
        common::roost()
            .args(["config", "check"])
            .env("ROOST_BIN", "/usr/local/bin/roost"),
    );
    assert!(
        err.contains("ROOST_BIN is not a Roost setting; unset it or rename it"),
        "{err}"
    );
}
