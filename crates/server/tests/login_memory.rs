//! Password hashing stays within its memory budget under bursts of failed
//! logins: the real binary, its login limits lifted, is sent bursts of eight
//! concurrent wrong-password logins while its resident memory is read from
//! `/proc`. Each hash works in 19 MiB, so `auth.hash_concurrency` hashes at
//! once may hold `hash_concurrency × 19 MiB`; more than that, or growth from
//! burst to burst, is memory kept by the allocator that nothing gives back.

mod common;

use std::process::Stdio;

use common::Server;
use serde_json::json;

const HASH_CONCURRENCY: u64 = 4;
const HASH_MIB: u64 = 19;
/// Room for what a few hundred requests leave behind besides hashing:
/// connection buffers, the database's page cache, the log.
const MARGIN_MIB: u64 = 24;
const BURSTS: usize = 10;
const PER_BURST: usize = 8;

fn start(dir: &std::path::Path) -> Server {
    let config = dir.join("roost.toml");
    let limit = "requests = 1000000\nperiod_secs = 1\n";
    std::fs::write(
        &config,
        format!(
            "[auth]\nhash_concurrency = {HASH_CONCURRENCY}\n\
             [http.rate_limits.login_per_ip]\n{limit}\
             [http.rate_limits.login_per_account]\n{limit}\
             [http.rate_limits.register_per_ip]\n{limit}"
        ),
    )
    .unwrap();
    let mut cmd = common::serve(&dir.join("data"));
    // The allocator under test is the one the binary ships with.
    for (key, _) in std::env::vars() {
        if key.starts_with("MALLOC_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--config")
        .arg(&config)
        .env("ROOST_LOG__LEVEL", "warn")
        .stderr(Stdio::null());
    Server::spawned(cmd)
}

/// The process's resident memory in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_keep_hashing_memory_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let pid = server.child.id();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/v1/auth/register", server.url))
        .json(&json!({
            "email": "ada@roost.test",
            "username": "ada",
            "password": "correct horse battery staple",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let baseline = rss_mib(pid);

    let mut after = Vec::new();
    for burst in 0..BURSTS {
        let logins = (0..PER_BURST).map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/auth/login", server.url);
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({
                        "email": "ada@roost.test",
                        "password": format!("wrong guess {burst}-{i}"),
                    }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        });
        for login in futures_util::future::join_all(logins).await {
            assert_eq!(login.unwrap(), 401, "a wrong password is refused");
        }
        after.push(rss_mib(pid));
    }
    eprintln!("RSS baseline {baseline} MiB, after each burst {after:?} MiB");

    let budget = HASH_CONCURRENCY * HASH_MIB + MARGIN_MIB;
    let last = after[BURSTS - 1];
    assert!(
        last <= baseline + budget,
        "RSS went from {baseline} MiB to {last} MiB, past the budget of \
         {HASH_CONCURRENCY} × {HASH_MIB} MiB + {MARGIN_MIB} MiB: {after:?}"
    );
    assert!(
        last <= after[2] + MARGIN_MIB / 3,
        "RSS kept growing after the third burst: {after:?}"
    );
}
