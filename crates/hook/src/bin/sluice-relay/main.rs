//! `sluice-relay`: the heavy half of `sluice-hook`, with the sinks and an async runtime, over
//! the `sluice-relay` library. `sluice-hook relay` runs it, and a hook starts it on demand;
//! the hook itself never loads it unless it must send directly. It ships no Socket.IO
//! server: the embedded dashboard and the demo are the separate `sluice-demo` package.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::exit)] // a command prints its answers and exits

use std::io::Read;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use sluice_hook::cli::{BridgeArgs, NatsCommand, RelayArgs};
use sluice_relay::config::{self, Config};

/// The long-lived relay of sluice-hook: keeps the dashboard connection, the breaker and the
/// spool across hook processes.
#[derive(Debug, Parser)]
#[command(name = "sluice-relay", version, max_term_width = 100)]
struct RelayCli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<RelayCommand>,
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Run the relay (the default)
    Relay(RelayArgs),
    /// Send the event lines on stdin straight to the dashboard within --budget-ms (what a
    /// hook does when it can reach neither a relay nor the spool)
    Direct,
    /// Set up NATS JetStream (`sluice-hook nats setup`)
    #[command(subcommand)]
    Nats(NatsCommand),
    /// Deliver the stream's events to a dashboard (`sluice-hook bridge`)
    Bridge(BridgeArgs),
}

fn main() {
    let mut command = config::ignore_empty_env(RelayCli::command());
    let cli = command
        .clone()
        .try_get_matches_from(std::env::args_os())
        .and_then(|mut matches| RelayCli::from_arg_matches_mut(&mut matches))
        .map_err(|error| error.format(&mut command))
        .unwrap_or_else(|error| error.exit());
    let code = match cli.command {
        None => {
            sluice_relay::init_logging(&cli.config);
            sluice_relay::run(cli.config, false)
        }
        Some(RelayCommand::Relay(args)) => {
            sluice_relay::init_logging(&cli.config);
            sluice_relay::run(cli.config, args.notify_ready)
        }
        Some(RelayCommand::Bridge(args)) => {
            sluice_relay::init_logging_to(&cli.config, "bridge.log");
            sluice_relay::bridge::run(cli.config, args.bridge())
        }
        Some(RelayCommand::Nats(NatsCommand::Setup(setup))) => {
            match sluice_relay::nats_setup(&cli.config, setup.replicas as usize) {
                Ok(said) => {
                    println!("{said}");
                    0
                }
                Err(error) => {
                    eprintln!("sluice-hook nats setup: {error}");
                    1
                }
            }
        }
        Some(RelayCommand::Direct) => {
            let mut input = String::new();
            let _ = std::io::stdin().read_to_string(&mut input);
            let lines: Vec<String> = input.lines().map(str::to_string).collect();
            match sluice_relay::send_direct(&cli.config, &lines, cli.config.budget) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
    };
    std::process::exit(code);
}
