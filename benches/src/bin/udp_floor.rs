//! The kernel's cost of one loopback send to one of many receivers, with
//! `sendto` and with `sendmmsg` in alternating turns: the floor under any
//! SFU's CPU per packet measured here ([`roost_bench::floor`]).
//!
//! `udp_floor --receivers 50 --rate 400 --secs 3 --turns 3`

use clap::Parser;
use roost_bench::floor::{measure, Load, Way};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Kernel cost of a loopback UDP send, per datagram, with sendto and sendmmsg")]
struct Args {
    #[arg(long, default_value_t = 50)]
    receivers: usize,
    /// Rounds a second (one datagram to every receiver per round).
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Seconds per turn.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Turns of each way of sending, alternated.
    #[arg(long, default_value_t = 3)]
    turns: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ways: Vec<Way> = (0..args.turns)
        .flat_map(|_| [Way::SendTo, Way::SendMmsg])
        .collect();
    let load = Load {
        receivers: args.receivers,
        size: args.size,
        rate: args.rate,
        secs: args.secs as f64,
    };
    let mut results = Vec::new();
    for turn in measure(load, &ways)? {
        let way = turn.way;
        eprintln!(
            "{way:?}: {} datagrams, {} received, {:.2} µs CPU each",
            turn.sent, turn.received, turn.cpu_us_per_datagram
        );
        results.push(json!({
            "way": format!("{way:?}"),
            "receivers": args.receivers,
            "size": args.size,
            "datagrams": turn.sent,
            "received": turn.received,
            "sender_cpu_us_per_datagram": turn.cpu_us_per_datagram,
        }));
    }
    let mean = |way: &str| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r["way"] == way)
            .filter_map(|r| r["sender_cpu_us_per_datagram"].as_f64())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    println!("| receivers | size | sendto µs/datagram | sendmmsg µs/datagram |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} | {:.2} |",
        args.receivers,
        args.size,
        mean("SendTo"),
        mean("SendMmsg")
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}
