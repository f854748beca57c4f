//! TURN credentials against a real coturn running the shipped
//! `turn-config/turnserver.conf` on loopback.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::TestApp;
use roost_core::turn::{Turn, TurnConfig};

const SECRET: &str = "a secret shared with coturn, 32+ bytes";

#[tokio::test]
async fn without_a_secret_no_turn_server_is_offered() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let res = app.get("/v1/turn/credentials", &ada.token).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["ice_servers"], serde_json::json!([]));
    assert!(res.body.get("expires_at").is_none());
    let res = app.get("/v1/turn/credentials", "not-a-token").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn coturn_accepts_roosts_credential_and_refuses_expired_and_forged_ones() {
    let relay = Coturn::start(true);
    let peer = EchoPeer::start();
    let url = format!("turn:127.0.0.1:{}?transport=udp", relay.port);
    let app = TestApp::with(|core, _| {
        core.turn = TurnConfig {
            urls: vec![url.clone()],
            secret: Some(SECRET.as_bytes().to_vec()),
            ttl: Duration::from_secs(3600),
        };
    })
    .await;
    let ada = app.register("ada").await;

    let res = app.get("/v1/turn/credentials", &ada.token).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let server = &res.body["ice_servers"][0];
    assert_eq!(server["urls"], serde_json::json!([url]));
    let username = server["username"].as_str().unwrap();
    let credential = server["credential"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, ada.id, "coturn's REST form: <expiry>:<user_id>");
    let expiry: i64 = expiry.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert!(res.body["expires_at"].is_string());

    let ok = relay.allocate(username, credential, peer.port);
    assert_eq!(
        ok.code,
        Some(0),
        "coturn refused Roost's credential:\n{}",
        ok.log
    );
    assert!(
        ok.log.contains("Total lost packets 0 "),
        "data relayed to the peer and back:\n{}",
        ok.log
    );

    // Issued two hours ago for one hour: past its expiry.
    let turn = app.core.turn.clone();
    let user_id = ada.id.parse().unwrap();
    let stale = turn
        .credentials(user_id, chrono::Utc::now() - chrono::Duration::hours(2))
        .unwrap();
    let refused = relay.allocate(&stale.username, &stale.credential, peer.port);
    assert_eq!(
        refused.code,
        Some(255),
        "an expired credential worked:\n{}",
        refused.log
    );

    // Made with another secret.
    let forged = Turn::new(TurnConfig {
        urls: vec![url.clone()],
        secret: Some(b"not the secret coturn knows at all".to_vec()),
        ttl: Duration::from_secs(3600),
    })
    .credentials(user_id, chrono::Utc::now())
    .unwrap();
    let refused = relay.allocate(&forged.username, &forged.credential, peer.port);
    assert_eq!(
        refused.code,
        Some(255),
        "a forged credential worked:\n{}",
        refused.log
    );
}

#[tokio::test]
async fn the_shipped_configuration_refuses_to_relay_into_loopback() {
    let relay = Coturn::start(false);
    let peer = EchoPeer::start();
    let turn = Turn::new(TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{}", relay.port)],
        secret: Some(SECRET.as_bytes().to_vec()),
        ttl: Duration::from_secs(3600),
    });
    let c = turn
        .credentials(uuid::Uuid::new_v4(), chrono::Utc::now())
        .unwrap();
    let run = relay.allocate(&c.username, &c.credential, peer.port);
    assert_ne!(run.code, Some(0), "relayed into loopback:\n{}", run.log);
    assert!(
        run.log.contains("403"),
        "refused as a forbidden peer:\n{}",
        run.log
    );
}

#[tokio::test]
async fn the_readmes_command_starts_coturn_with_the_shipped_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, stdout) = Coturn::from_readme(dir.path());
    let secret = std::fs::read_to_string(dir.path().join("roost/turn_secret"))
        .expect("the README's command writes the secret");
    // Roost is given `$(cat turn_secret)`: the shell drops the newline.
    let turn = Turn::new(TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{}", relay.port)],
        secret: Some(secret.trim_end().as_bytes().to_vec()),
        ttl: Duration::from_secs(3600),
    });
    let c = turn
        .credentials(uuid::Uuid::new_v4(), chrono::Utc::now())
        .unwrap();
    let peer = EchoPeer::start();
    let run = relay.allocate(&c.username, &c.credential, peer.port);
    // Accepted (an unknown or unchecked credential is a 401), then refused
    // the loopback peer by the file's `denied-peer-ip`.
    assert!(
        !run.log.contains("401"),
        "coturn did not take Roost's credential:\n{}",
        run.log
    );
    assert_ne!(run.code, Some(0), "relayed into loopback:\n{}", run.log);
    assert!(
        run.log.contains("403"),
        "refused as a forbidden peer:\n{}",
        run.log
    );
    let log = std::fs::read_to_string(&stdout).unwrap_or_default();
    assert!(
        log.contains("no-tcp-relay"),
        "coturn runs without the file's settings:\n{log}"
    );
}

/// The fenced shell block of `turn-config/README.md` that starts coturn.
fn readme_command() -> String {
    let readme = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../turn-config/README.md"),
    )
    .unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        let fence = line.trim_start();
        match current.as_mut() {
            None if fence == "```sh" => current = Some(Vec::new()),
            None => {}
            Some(_) if fence == "```" => blocks.push(current.take().unwrap().join("\n")),
            Some(lines) => lines.push(line.trim_start()),
        }
    }
    blocks
        .into_iter()
        .find(|b| b.lines().any(|l| l.starts_with("turnserver ")))
        .expect("the README has a shell block that runs turnserver")
}

/// A coturn on loopback with `turn-config/turnserver.conf`.
struct Coturn {
    child: Child,
    port: u16,
}

impl Coturn {
    /// `allow_loopback_peers` relaxes the shipped denial of loopback peers,
    /// which every test peer here is.
    fn start(allow_loopback_peers: bool) -> Coturn {
        let conf =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../turn-config/turnserver.conf");
        let port = free_port();
        // Relay ports apart from other tests' coturns.
        let relay_min = 40_000 + (port % 200) * 50;
        let mut cmd = Command::new("turnserver");
        cmd.arg("-c")
            .arg(&conf)
            .arg(format!("--static-auth-secret={SECRET}"))
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relay_min}"))
            .arg(format!("--max-port={}", relay_min + 49))
            .args(["--no-tls", "--no-dtls", "--realm=roost.test"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if allow_loopback_peers {
            cmd.args(["--allow-loopback-peers", "--allowed-peer-ip=127.0.0.1"]);
        }
        let child = cmd.spawn().expect(
            "coturn's turnserver must be installed (apt-get install coturn; scripts/test does it)",
        );
        let relay = Coturn { child, port };
        relay.wait_listening();
        relay
    }

    /// Runs the README's command as written, with its paths under `dir` and
    /// coturn's ports moved to loopback (arguments after the README's own,
    /// which coturn lets override the file). Also gives coturn's log file.
    fn from_readme(dir: &std::path::Path) -> (Coturn, PathBuf) {
        let conf =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../turn-config/turnserver.conf");
        let command = readme_command()
            .replace("/etc/turnserver.conf", &conf.display().to_string())
            .replace("/etc/roost", &dir.join("roost").display().to_string());
        let port = free_port();
        let relay_min = 40_000 + (port % 200) * 50;
        let script = format!(
            "turnserver() {{ exec turnserver \"$@\" --listening-ip=127.0.0.1 \
             --relay-ip=127.0.0.1 --listening-port={port} --min-port={relay_min} \
             --max-port={} --no-tls --no-dtls; }}\n{command}\n",
            relay_min + 49
        );
        let stdout = dir.join("coturn.log");
        let child = Command::new("sh")
            .args(["-ec", &script])
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let relay = Coturn { child, port };
        // The command writes the secret before it starts coturn: wait for
        // both, so that a port another process answers on first is not
        // taken for this coturn.
        let secret = dir.join("roost/turn_secret");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !secret.exists() {
            assert!(
                Instant::now() < deadline,
                "the README's command wrote no secret"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        relay.wait_listening();
        (relay, stdout)
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "coturn did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Allocates a relay with the credential and sends a few packets through
    /// it to the peer and back (`turnutils_uclient`; it exits 255 when refused).
    fn allocate(&self, username: &str, password: &str, peer_port: u16) -> Outcome {
        let out = Command::new("timeout")
            .args([
                "30",
                "turnutils_uclient",
                "-c",
                "-n",
                "3",
                "-e",
                "127.0.0.1",
            ])
            .arg("-r")
            .arg(peer_port.to_string())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-u", username, "-w", password, "127.0.0.1"])
            .output()
            .expect("turnutils_uclient comes with coturn");
        Outcome {
            code: out.status.code(),
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    code: Option<i32>,
    log: String,
}

/// coturn's UDP echo peer.
struct EchoPeer {
    child: Child,
    port: u16,
}

impl EchoPeer {
    fn start() -> EchoPeer {
        let port = free_port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer comes with coturn");
        std::thread::sleep(Duration::from_millis(200));
        EchoPeer { child, port }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP on loopback right now.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
