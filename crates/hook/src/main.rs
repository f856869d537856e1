//! `sluice-hook`: the command Claude Code runs for every hook event.
//!
//! ```text
//! sluice-hook                 read a hook event on stdin and hand it to the relay (the hook)
//! sluice-hook relay           run the relay (started on demand by the hook)
//! sluice-hook stats           print the relay's stats as JSON
//! sluice-hook stop            ask the relay to deliver what it has and exit
//! sluice-hook install [--write]  print (or merge into ~/.claude/settings.json) the hooks block
//! sluice-hook dashboard [ADDR]   run an embedded dashboard that prints each event
//! sluice-hook demo            play a Claude Code session against an embedded dashboard
//! ```
//!
//! Options: `--url URL` (or `SLUICE_URL`, `CLAUDE_MPM_SERVER_HOST`/`_PORT`,
//! `CLAUDE_MPM_SOCKETIO_PORT`; default `http://localhost:8765`), `--verbose` (logs to stderr),
//! `--no-spawn` (never start a relay), `--idle SECS` (relay's idle exit).

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::exit)] // a command prints its answers and exits

use std::os::unix::process::CommandExt;
use std::time::Duration;

use sluice_hook::config::Config;
use sluice_hook::{client, install};

const USAGE: &str =
    "usage: sluice-hook [relay|stats|stop|install [--write]|dashboard [ADDR]|demo] \
[--url URL] [--verbose] [--no-spawn] [--idle SECS]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, rest) = match Config::from_args(args) {
        Ok(parsed) => parsed,
        Err(problem) => {
            eprintln!("sluice-hook: {problem}\n{USAGE}");
            // Even a bad flag must not stop Claude Code.
            std::process::exit(0);
        }
    };
    let command = rest.first().map(String::as_str).unwrap_or("");
    let code = match command {
        "" => {
            client::run(&config);
            0
        }
        "relay" | "dashboard" | "demo" => {
            // The heavy half lives in its own binary, so that the hook starts fast.
            let Some(binary) = client::relay_binary() else {
                std::process::exit(1);
            };
            let error = std::process::Command::new(&binary)
                .args(std::env::args().skip(1))
                .exec();
            eprintln!("sluice-hook: cannot run {}: {error}", binary.display());
            1
        }
        "stats" => match client::request(&config, "S", Duration::from_secs(2)) {
            Ok(stats) => {
                print!("{stats}");
                0
            }
            Err(error) => {
                eprintln!(
                    "sluice-hook: no relay at {} ({error})",
                    config.socket().display()
                );
                1
            }
        },
        "stop" => match client::send_lines(&config, &["Q".to_string()], Duration::from_secs(5)) {
            Ok(()) => {
                // The relay holds its lock until it has flushed and exited.
                if !client::wait_for_relay_exit(&config, Duration::from_secs(5)) {
                    eprintln!("sluice-hook: the relay is still flushing");
                }
                0
            }
            Err(_) => {
                eprintln!("sluice-hook: no relay running");
                0
            }
        },
        "install" => match install::run(rest.iter().any(|a| a == "--write")) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(problem) => {
                eprintln!("sluice-hook install: {problem}");
                1
            }
        },
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("sluice-hook: unknown command {other:?}\n{USAGE}");
            0
        }
    };
    std::process::exit(code);
}
