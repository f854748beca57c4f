//! roost-bench: load tools that drive a real `roost serve` over loopback.
//!
//! - `fanout`: chat fan-out through the WebSocket gateway: deliveries per
//!   second, send-to-delivery latency, memory per idle connection.
//! - `sfu`: calls through the SFU with real WebRTC peers: packets in and
//!   out, loss, latency, server CPU per forwarded packet, memory per
//!   participant; with `--janus`, the same against Janus's VideoRoom
//!   ([`janus`]) in the same run.
//! - `files`: uploads and downloads of files of growing size: MiB/s each
//!   way, server CPU per GiB, and the server's peak memory per transfer.
//! - `udp_floor`: the kernel's cost of one loopback send, the floor under
//!   any SFU's CPU per packet measured here.
//! - `plot`: SVG charts of `sfu` results against room size.
//! - `benches/hot_path.rs`: criterion benches of the media engine's
//!   per-packet work, without sockets.

use std::io::{BufRead, BufReader};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tokio_tungstenite::tungstenite::Message;

pub mod floor;
pub mod janus;

/// A `roost serve` started for a run, on a free port and a fresh data directory.
pub struct Server {
    pub child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary` with generous rate limits (the tool registers many users
    /// from one address) and the given extra environment.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("ROOST_LOG__LEVEL", "warn")
            .env("ROOST_MEDIA__LISTEN", "127.0.0.1:0")
            .env(
                "ROOST_HTTP__RATE_LIMITS__REGISTER_PER_IP",
                "{requests=1000000,period_secs=1}",
            )
            .env(
                "ROOST_HTTP__RATE_LIMITS__LOGIN_PER_IP",
                "{requests=1000000,period_secs=1}",
            )
            .env("ROOST_GATEWAY__REQUESTS_PER_SEC", "10000")
            .env("ROOST_GATEWAY__REQUEST_BURST", "10000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("Roost is listening on ")
            .ok_or_else(|| anyhow::anyhow!("unexpected first line from roost: {line:?}"))?
            .to_owned();
        Ok(Server {
            child,
            url,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A process's resident memory, in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// A process's CPU time so far (user + system, all threads), in seconds, from `/proc`.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    Ok(cpu_time(pid)?.total())
}

/// A process's CPU time so far, in seconds: its own code's (user) and the
/// kernel's on its behalf (system), which for a forwarder is mostly sending.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;
    fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - other.user,
            system: self.system - other.system,
        }
    }
}

impl std::iter::Sum for CpuTime {
    fn sum<I: Iterator<Item = CpuTime>>(times: I) -> CpuTime {
        times.fold(CpuTime::default(), |a, b| a + b)
    }
}

/// The user and system CPU time of process `pid` (`/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted after the name's
    // closing parenthesis, in clock ticks (100 a second on Linux).
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    Ok(CpuTime {
        user: ticks(11) / 100.0,
        system: ticks(12) / 100.0,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers a user; returns its access token and id.
pub async fn register(
    http: &reqwest::Client,
    url: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let body = json!({"email": format!("{name}@bench.example"), "username": name, "password": "a benchmark passphrase"});
    let res: Value = http
        .post(format!("{url}/v1/auth/register"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let token = res["access_token"]
        .as_str()
        .context("registering")?
        .to_owned();
    let id = res["user"]["id"]
        .as_str()
        .context("registering")?
        .to_owned();
    Ok((token, id))
}

/// Creates a room owned by the first account, with the others as members;
/// returns its id.
pub async fn create_room(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    accounts: &[(String, String)],
) -> anyhow::Result<String> {
    let owner = &accounts.first().context("a room needs an owner")?.0;
    let room: Value = http
        .post(format!("{url}/v1/rooms"))
        .bearer_auth(owner)
        .json(&json!({"name": name}))
        .send()
        .await?
        .json()
        .await?;
    let room_id = room["id"].as_str().context("creating a room")?.to_owned();
    for (_, id) in &accounts[1..] {
        http.post(format!("{url}/v1/rooms/{room_id}/members"))
            .bearer_auth(owner)
            .json(&json!({"user_id": id}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(room_id)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the gateway's socket and says hello.
pub async fn open(url: &str, token: &str) -> anyhow::Result<Ws> {
    let ws_url = format!(
        "{}/v1/ws?access_token={token}",
        url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, None, true).await?;
    ws.send(Message::Text(r#"{"type":"hello","id":"h"}"#.into()))
        .await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            if t.contains(r#""id":"h""#) {
                return Ok(ws);
            }
        }
    }
    anyhow::bail!("the socket closed before hello was acknowledged")
}

/// The `p`th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
