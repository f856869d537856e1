//! `sluice-demo`: the embedded dashboard and the demo, which `sluice-hook dashboard` and
//! `sluice-hook demo` run. Kept out of `sluice-relay` so that the production relay ships no
//! Socket.IO server and sluice-hook needs no unpublished crate at run time.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::exit)] // a command prints its answers and exits

mod dashboard;
mod demo;
mod report;
mod script;
mod teardown;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice_hook::cli::{DashboardArgs, DemoArgs};
use sluice_relay::config::{self, Config};

/// The embedded Socket.IO dashboard and the demo of sluice-hook.
#[derive(Debug, Parser)]
#[command(name = "sluice-demo", version, max_term_width = 100)]
struct DemoCli {
    /// Accepted (and unused) so that `sluice-hook [SETTINGS] dashboard|demo` can hand its
    /// arguments on as they are.
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: DemoCommand,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Run an embedded dashboard that prints each event it receives as a line
    Dashboard(DashboardArgs),
    /// Play a Claude Code session through real hooks against an embedded dashboard that
    /// goes down midway, then report what arrived
    Demo(DemoArgs),
}

fn main() {
    let mut command = config::ignore_empty_env(DemoCli::command());
    let cli = command
        .clone()
        .try_get_matches_from(std::env::args_os())
        .and_then(|mut matches| DemoCli::from_arg_matches_mut(&mut matches))
        .map_err(|error| error.format(&mut command))
        .unwrap_or_else(|error| error.exit());
    let code = match cli.command {
        DemoCommand::Dashboard(args) => dashboard::run(args.addr, cli.config.token),
        DemoCommand::Demo(args) => {
            if let Err(problem) = args.check() {
                command.error(ErrorKind::ValueValidation, problem).exit();
            }
            demo::run(&args)
        }
    };
    std::process::exit(code);
}
