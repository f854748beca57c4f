//! File uploads and downloads through a real `roost serve`, over loopback.
//!
//! For each size in `--sizes` (MiB), a fresh server with local storage gets
//! `--turns` uploads of a plain-text file as one raw streamed body
//! (chunked, generated as it is sent, never held whole by the tool), each
//! followed by its download, which the tool reads as a stream and checks
//! byte for byte against what it sent without keeping it. Then, on another
//! fresh server, `--concurrent` uploads of `--concurrent-mib` at once, and
//! their downloads at once. Reports per size: upload and download MiB/s (the
//! median of the turns), the server's CPU seconds per GiB moved (from
//! `/proc/<pid>/stat`), its resident memory after a warm-up, and the peak
//! growth of that memory during a transfer (sampled every `--sample-ms`
//! from `/proc/<pid>/status`). `--json` writes the results; Markdown table
//! rows go to stdout. `--smoke` runs one size just over a storage part and
//! two small concurrent uploads, so CI keeps the tool working; it asserts
//! only that the bytes come back as sent.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use roost_bench::{cpu_secs, register, rss_kib, Server};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
const GIB: f64 = (1024 * 1024 * 1024) as f64;

#[derive(Parser, Debug)]
#[command(about = "Upload and download throughput and memory of Roost's files")]
struct Args {
    /// The roost binary to start (build it with --release first).
    #[arg(long, default_value = "target/release/roost")]
    roost: PathBuf,
    /// File sizes in MiB, each measured on a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    sizes: Vec<u64>,
    /// Uploads (each followed by its download) per size.
    #[arg(long, default_value_t = 5)]
    turns: usize,
    /// Uploads at once in the concurrent run; 0 skips it.
    #[arg(long, default_value_t = 4)]
    concurrent: usize,
    /// MiB of each upload in the concurrent run.
    #[arg(long, default_value_t = 64)]
    concurrent_mib: u64,
    /// Bytes of each piece of the streamed request body; at most the
    /// pattern's period, 65,521.
    #[arg(long, default_value_t = PERIOD)]
    chunk_bytes: usize,
    /// Milliseconds between samples of the server's memory: a 1 MiB
    /// transfer takes 3-9 ms here, and samples 20 ms apart missed its peak.
    #[arg(long, default_value_t = 2)]
    sample_ms: u64,
    /// One size just over a storage part, one turn, two small concurrent
    /// uploads: checks the tool and the round trip, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Write the results (a JSON array, one object per size, then the
    /// concurrent run) here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The repeating unit of every file: ASCII lines, so the server sniffs
/// `text/plain`. Its length is prime, so a piece served from the wrong
/// offset fails the byte check instead of matching an earlier period.
const PERIOD: usize = 65_521;

/// The unit, followed by enough of itself that a piece of up to `PERIOD`
/// bytes can start anywhere in the first period and still be one slice:
/// body pieces are borrowed from it, not copied.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut p = Vec::with_capacity(2 * PERIOD + 64);
    let mut line = 0u64;
    while p.len() < PERIOD {
        p.extend_from_slice(
            format!("roost files bench, line {line:08}: the quick brown fox jumps\n").as_bytes(),
        );
        line += 1;
    }
    p.truncate(PERIOD);
    p.extend_from_within(..);
    p
});

/// A request body of `size` bytes of the pattern, made piece by piece as
/// the connection takes it.
fn body(size: u64, chunk: usize) -> reqwest::Body {
    let chunk = chunk.clamp(1, PERIOD) as u64;
    let pieces = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= size {
            return None;
        }
        let n = chunk.min(size - sent) as usize;
        let at = (sent % PERIOD as u64) as usize;
        let piece: &'static [u8] = &PATTERN[at..at + n];
        Some((Ok::<_, std::io::Error>(piece), sent + n as u64))
    });
    reqwest::Body::wrap_stream(pieces)
}

/// Whether `got`, found at `offset` of a file, is what the pattern has there.
fn matches_pattern(mut offset: u64, mut got: &[u8]) -> bool {
    while !got.is_empty() {
        let at = (offset % PERIOD as u64) as usize;
        let n = got.len().min(PERIOD - at);
        if got[..n] != PATTERN[at..at + n] {
            return false;
        }
        got = &got[n..];
        offset += n as u64;
    }
    true
}

/// The peak of a process's resident memory while it runs, sampled from
/// its own thread so that a busy runtime cannot delay the samples.
struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssPeak {
    fn start(pid: u32, every: Duration) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                // Sampled once more after the stop, to catch the end of the transfer.
                let last = flag.load(Ordering::Relaxed);
                match rss_kib(pid) {
                    Ok(kib) => peak = peak.max(kib),
                    Err(_) => break,
                }
                if last {
                    break;
                }
                std::thread::sleep(every);
            }
            peak
        });
        RssPeak { stop, thread }
    }

    /// The peak, in KiB.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Uploads `size` bytes; returns the file's id.
async fn upload(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    size: u64,
    chunk: usize,
) -> anyhow::Result<String> {
    let res = http
        .post(format!("{url}/v1/files?name=bench-{size}.txt"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(body(size, chunk))
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::CREATED,
        "upload of {size} bytes: {status}: {text}"
    );
    let file: Value = serde_json::from_str(&text)?;
    anyhow::ensure!(
        file["size"].as_u64() == Some(size),
        "upload of {size} bytes: the server stored {}",
        file["size"]
    );
    Ok(file["id"]
        .as_str()
        .context("the upload's answer has no id")?
        .to_owned())
}

/// Downloads a file of `size` bytes, checking every byte as it arrives
/// and keeping none.
async fn download(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    size: u64,
) -> anyhow::Result<()> {
    let mut res = http
        .get(format!("{url}/v1/files/{id}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut got = 0u64;
    while let Some(piece) = res.chunk().await? {
        anyhow::ensure!(
            matches_pattern(got, &piece),
            "download of {id}: the bytes at {got}..{} differ from those uploaded",
            got + piece.len() as u64
        );
        got += piece.len() as u64;
    }
    anyhow::ensure!(got == size, "download of {id}: {got} bytes of {size}");
    Ok(())
}

/// A fresh server that takes files of up to `max_bytes`, with a user.
async fn start(
    args: &Args,
    http: &reqwest::Client,
    max_bytes: u64,
) -> anyhow::Result<(Server, String)> {
    let max = max_bytes.max(MIB).to_string();
    let server = Server::start(
        &args.roost,
        &[
            ("ROOST_FILES__MAX_UPLOAD_BYTES", &max),
            ("ROOST_FILES__QUOTA_BYTES_PER_USER", "0"),
        ],
    )?;
    let (token, _) = register(http, &server.url, "uploader").await?;
    // One small round trip first, so the memory of first use (database
    // connections, the storage directory, worker threads) is in the baseline
    // rather than counted against the first size measured.
    let id = upload(http, &server.url, &token, 64 * 1024, args.chunk_bytes).await?;
    download(http, &server.url, &token, &id, 64 * 1024).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((server, token))
}

/// What one transfer cost the server.
struct Cost {
    secs: f64,
    cpu_secs: f64,
    /// The peak resident memory during the transfer less the memory before it.
    rss_growth_kib: u64,
}

/// Runs `transfer` while watching the server.
async fn watched<F, T>(server: &Server, sample: Duration, transfer: F) -> anyhow::Result<(T, Cost)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let pid = server.pid();
    let rss_before = rss_kib(pid)?;
    let cpu_before = cpu_secs(pid)?;
    let peak = RssPeak::start(pid, sample);
    let started = Instant::now();
    let out = transfer.await;
    let secs = started.elapsed().as_secs_f64();
    let peak = peak.finish();
    let cpu = cpu_secs(pid)? - cpu_before;
    Ok((
        out?,
        Cost {
            secs,
            cpu_secs: cpu,
            rss_growth_kib: peak.saturating_sub(rss_before),
        },
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `--turns` round trips of one size on a fresh server.
async fn run_size(args: &Args, http: &reqwest::Client, mib: u64) -> anyhow::Result<Value> {
    let size = mib * MIB;
    let (server, token) = start(args, http, size).await?;
    let baseline = rss_kib(server.pid())?;
    let sample = Duration::from_millis(args.sample_ms);
    let mut turns = Vec::new();
    for turn in 0..args.turns.max(1) {
        let (id, up) = watched(
            &server,
            sample,
            upload(http, &server.url, &token, size, args.chunk_bytes),
        )
        .await?;
        let ((), down) = watched(
            &server,
            sample,
            download(http, &server.url, &token, &id, size),
        )
        .await?;
        eprintln!(
            "{mib} MiB, turn {}: up {:.1} MiB/s (+{} KiB), down {:.1} MiB/s (+{} KiB)",
            turn + 1,
            mib as f64 / up.secs,
            up.rss_growth_kib,
            mib as f64 / down.secs,
            down.rss_growth_kib
        );
        turns.push((up, down));
    }
    let moved = (size as f64 / GIB) * turns.len() as f64;
    let ups = || turns.iter().map(|(u, _)| u);
    let downs = || turns.iter().map(|(_, d)| d);
    Ok(json!({
        "scenario": "one at a time",
        "size_mib": mib,
        "files_at_once": 1,
        "turns": turns.len(),
        "upload_mib_per_sec": median(ups().map(|c| mib as f64 / c.secs).collect()),
        "download_mib_per_sec": median(downs().map(|c| mib as f64 / c.secs).collect()),
        // Summed over the turns: /proc counts CPU in 10 ms ticks.
        "server_cpu_secs_per_gib_up": ups().map(|c| c.cpu_secs).sum::<f64>() / moved,
        "server_cpu_secs_per_gib_down": downs().map(|c| c.cpu_secs).sum::<f64>() / moved,
        "server_rss_baseline_kib": baseline,
        // The largest over the turns (the first, usually: later ones reuse freed memory).
        "server_rss_growth_kib_up": ups().map(|c| c.rss_growth_kib).max(),
        "server_rss_growth_kib_down": downs().map(|c| c.rss_growth_kib).max(),
        "per_turn": turns.iter().map(|(u, d)| json!({
            "upload_secs": u.secs, "upload_cpu_secs": u.cpu_secs, "upload_rss_growth_kib": u.rss_growth_kib,
            "download_secs": d.secs, "download_cpu_secs": d.cpu_secs, "download_rss_growth_kib": d.rss_growth_kib,
        })).collect::<Vec<_>>(),
    }))
}

/// `--concurrent` uploads at once, then their downloads at once, on a fresh server.
async fn run_concurrent(args: &Args, http: &reqwest::Client) -> anyhow::Result<Value> {
    let (n, mib) = (args.concurrent, args.concurrent_mib);
    let size = mib * MIB;
    let (server, token) = start(args, http, size).await?;
    let baseline = rss_kib(server.pid())?;
    let sample = Duration::from_millis(args.sample_ms);
    let uploads = (0..n).map(|_| upload(http, &server.url, &token, size, args.chunk_bytes));
    let (ids, up) = watched(&server, sample, async {
        futures_util::future::try_join_all(uploads).await
    })
    .await?;
    let downloads = ids
        .iter()
        .map(|id| download(http, &server.url, &token, id, size));
    let (_, down) = watched(&server, sample, async {
        futures_util::future::try_join_all(downloads).await
    })
    .await?;
    let total_mib = (n as u64 * mib) as f64;
    eprintln!(
        "{n} × {mib} MiB at once: up {:.1} MiB/s (+{} KiB), down {:.1} MiB/s (+{} KiB)",
        total_mib / up.secs,
        up.rss_growth_kib,
        total_mib / down.secs,
        down.rss_growth_kib
    );
    let moved = total_mib / 1024.0;
    Ok(json!({
        "scenario": "at once",
        "size_mib": mib,
        "files_at_once": n,
        "turns": 1,
        "upload_mib_per_sec": total_mib / up.secs,
        "download_mib_per_sec": total_mib / down.secs,
        "server_cpu_secs_per_gib_up": up.cpu_secs / moved,
        "server_cpu_secs_per_gib_down": down.cpu_secs / moved,
        "server_rss_baseline_kib": baseline,
        "server_rss_growth_kib_up": up.rss_growth_kib,
        "server_rss_growth_kib_down": down.rss_growth_kib,
        "server_rss_growth_kib_per_upload": up.rss_growth_kib as f64 / n.max(1) as f64,
    }))
}

fn row(r: &Value) -> String {
    let num = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let n = r["files_at_once"].as_u64().unwrap_or(1);
    let what = if n == 1 {
        format!("{} MiB", r["size_mib"])
    } else {
        format!("{n} × {} MiB at once", r["size_mib"])
    };
    format!(
        "| {what} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
        r["turns"],
        num("upload_mib_per_sec"),
        num("download_mib_per_sec"),
        num("server_cpu_secs_per_gib_up"),
        num("server_cpu_secs_per_gib_down"),
        num("server_rss_baseline_kib") / 1024.0,
        num("server_rss_growth_kib_up") / 1024.0,
        num("server_rss_growth_kib_down") / 1024.0,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        // Over one 5 MiB storage part, so the multipart path round-trips too.
        args.sizes = vec![6];
        args.turns = 1;
        args.concurrent = args.concurrent.min(2);
        args.concurrent_mib = 1;
    }
    anyhow::ensure!(!args.sizes.contains(&0), "sizes are whole MiB, at least 1");
    let http = reqwest::Client::new();
    let mut results = Vec::new();
    for &mib in &args.sizes {
        results.push(run_size(&args, &http, mib).await?);
    }
    if args.concurrent > 0 {
        results.push(run_concurrent(&args, &http).await?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    eprintln!("{}", serde_json::to_string_pretty(&results)?);
    println!("| size | turns | upload MiB/s | download MiB/s | server CPU s/GiB up | s/GiB down | server RSS MiB | peak RSS growth up, MiB | down, MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!("{}", row(r));
    }
    // Every transfer above already checked its bytes; reaching here is the smoke test's pass.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_checks_pieces_at_any_offset() {
        let file: Vec<u8> = (0..3 * PERIOD as u64 + 17)
            .map(|i| PATTERN[(i % PERIOD as u64) as usize])
            .collect();
        assert!(matches_pattern(0, &file));
        assert!(matches_pattern(
            PERIOD as u64 - 3,
            &file[PERIOD - 3..2 * PERIOD + 5]
        ));
        assert!(!matches_pattern(1, &file[..100]));
        let mut bad = file[..2 * PERIOD].to_vec();
        bad[PERIOD + 9] ^= 1;
        assert!(!matches_pattern(0, &bad));
        assert!(PATTERN.is_ascii() && !PATTERN.contains(&0));
    }
}
