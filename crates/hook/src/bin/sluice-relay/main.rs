//! `sluice-relay`: the heavy half of `sluice-hook`, with the Socket.IO sink and an async
//! runtime. `sluice-hook relay`, `dashboard` and `demo` run it; the hook itself never loads it
//! unless it must send directly.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::exit)] // a command prints its answers and exits

mod dashboard;
mod deliver;
mod demo;
mod direct;
mod ingest;
mod relay;
mod store_worker;

use std::io::Read;
use std::time::Duration;

use sluice_hook::config::Config;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, rest) = match Config::from_args(args) {
        Ok(parsed) => parsed,
        Err(problem) => {
            eprintln!("sluice-relay: {problem}");
            std::process::exit(2);
        }
    };
    let code = match rest.first().map(String::as_str).unwrap_or("relay") {
        "relay" => {
            relay::init_logging(&config);
            relay::run(config, rest.iter().any(|a| a == "--notify-ready"))
        }
        "direct" => {
            let budget = rest
                .iter()
                .position(|a| a == "--budget-ms")
                .and_then(|i| rest.get(i + 1))
                .and_then(|ms| ms.parse().ok())
                .map_or(Duration::from_millis(500), Duration::from_millis);
            let mut input = String::new();
            let _ = std::io::stdin().read_to_string(&mut input);
            let lines: Vec<String> = input.lines().map(str::to_string).collect();
            match direct::send(&config, &lines, budget) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        "dashboard" => {
            let addr = rest
                .get(1)
                .map_or("127.0.0.1:8765", String::as_str)
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 8765).into());
            dashboard::run(addr)
        }
        "demo" => {
            let flag = |name: &str| {
                rest.iter()
                    .position(|a| a == name)
                    .and_then(|i| rest.get(i + 1))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let events = flag("--events").unwrap_or(2_000) as usize;
            let outage = Duration::from_secs(flag("--outage-secs").unwrap_or(3));
            demo::run(events, outage)
        }
        other => {
            eprintln!("sluice-relay: unknown command {other:?}");
            2
        }
    };
    std::process::exit(code);
}
