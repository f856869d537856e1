//! `sluice-hook`: the command Claude Code runs for every hook event, and the commands people
//! run around it (`sluice-hook --help` lists them). The command line is clap's
//! ([`sluice_hook::cli::Cli`]); this file dispatches it.
//!
//! Exit codes: 0 done; 1 failed (and, on the hook path, a bad flag or variable: Claude Code
//! shows exit 1 as a non-blocking error); 2 a bad command line typed by a person. The hook
//! path never exits 2, which Claude Code reads as "block this tool call".

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::exit)] // a command prints its answers and exits

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use serde_json::Value;
use sluice_hook::cli::{Cli, HookCommand, StatsArgs};
use sluice_hook::{client, dead_letters, install};
use sluice_relay::config::{self, Config};
use sluice_relay::stats;
use sluice_store::Store;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The bare hook, as Claude Code runs it: the settings are read from the environment
    // without building clap's command, which costs a tenth of the hook's time (see
    // `Config::from_env_quick`). A bad variable falls through to the full parse, which
    // reports it.
    if args.len() == 1 {
        if let Some(config) = Config::from_env_quick() {
            client::run(&config);
            std::process::exit(0);
        }
    }
    let mut command = config::ignore_empty_env(Cli::command());
    let parsed = command
        .clone()
        .try_get_matches_from(&args)
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches))
        .map_err(|error| error.format(&mut command));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => std::process::exit(refuse(error, &args)),
    };
    let code = match cli.command {
        None => {
            client::run(&cli.config);
            0
        }
        Some(HookCommand::Relay(_)) => exec_sibling("sluice-relay", &args),
        Some(HookCommand::Dashboard(_)) => exec_sibling("sluice-demo", &args),
        // The NATS client lives in the relay's binary, not in the hook's.
        Some(HookCommand::Nats(_) | HookCommand::Bridge(_)) => exec_sibling("sluice-relay", &args),
        Some(HookCommand::Demo(demo)) => match demo.check() {
            Ok(()) => exec_sibling("sluice-demo", &args),
            Err(problem) => command.error(ErrorKind::ValueValidation, problem).exit(),
        },
        Some(HookCommand::Stats(how)) => show_stats(&cli.config, &how),
        Some(HookCommand::Stop) => stop(&cli.config),
        Some(HookCommand::DeadLetters(args)) => dead_letters::run(&cli.config, &args),
        Some(HookCommand::Install(install)) => {
            let events = &install.events.0;
            let done = if install.write {
                install::write(install.scope, events)
            } else {
                install::print(events)
            };
            answer("install", done)
        }
        Some(HookCommand::Uninstall(uninstall)) => {
            answer("uninstall", install::uninstall(uninstall.scope))
        }
    };
    std::process::exit(code);
}

/// What a command line clap refused comes to. Help and version are printed (exit 0). On the
/// hook path (no subcommand named) with an event waiting on stdin, the problem is one line
/// on stderr, the event is handed on with the settings that are valid, and the exit is 1:
/// never 2, which would block Claude Code's tool call. Anything else: clap's message, exit 2.
fn refuse(error: clap::Error, args: &[OsString]) -> i32 {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        error.exit();
    }
    let names_a_command = args
        .iter()
        .skip(1)
        .any(|arg| HookCommand::NAMES.iter().any(|name| arg == name));
    if names_a_command || !event_waiting() {
        with_variable_named(error, args).exit();
    }
    let rendered = error.render().to_string();
    let problem = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let (config, skipped) = Config::lenient();
    let ignored: Vec<String> = skipped
        .iter()
        .map(|variable| variable.to_string_lossy().into_owned())
        .collect();
    let ignored = if ignored.is_empty() {
        String::new()
    } else {
        format!("; ignored {}", ignored.join(", "))
    };
    eprintln!(
        "sluice-hook: {problem}{ignored}; the event is handed on with the other settings, to {}",
        config.url
    );
    // A relay this hook starts inherits its environment: without the bad variables, it
    // starts (instead of refusing them) and delivers the event. The hook has no other
    // thread yet, so changing its environment is safe.
    for variable in skipped {
        std::env::remove_var(variable);
    }
    client::run(&config);
    1
}

/// Adds a tip naming the variable a refused value came from, when it came from one (clap
/// names the flag only).
fn with_variable_named(mut error: clap::Error, args: &[OsString]) -> clap::Error {
    let Some(ContextValue::String(bad)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let long = bad
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let given = args.iter().any(|arg| {
        arg.to_str()
            .is_some_and(|arg| arg == long || arg.starts_with(&format!("{long}=")))
    });
    let command = Cli::command();
    let variable = command
        .get_arguments()
        .find(|arg| {
            arg.get_long()
                .is_some_and(|name| long == format!("--{name}"))
        })
        .and_then(|arg| arg.get_env())
        .filter(|variable| std::env::var_os(variable).is_some_and(|v| !v.is_empty()));
    if let (false, Some(variable)) = (given, variable) {
        let tip = format!("the value comes from {}", variable.to_string_lossy());
        error.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![StyledStr::from(tip)]),
        );
    }
    error
}

/// Whether stdin holds something to read (a hook's event): not a terminal, not empty. The
/// bytes looked at stay in stdin's buffer for the hook to read.
fn event_waiting() -> bool {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    let mut lock = stdin.lock();
    lock.fill_buf().is_ok_and(|buffer| !buffer.is_empty())
}

/// Runs a sibling binary (`sluice-relay`, `sluice-demo`) with these arguments, in place.
fn exec_sibling(name: &str, args: &[OsString]) -> i32 {
    let Some(binary) = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(name))
    else {
        eprintln!("sluice-hook: cannot find my own path");
        return 1;
    };
    if !binary.exists() {
        let package = if name == "sluice-demo" {
            "sluice-demo: `cargo install --path crates/demo` (in a checkout: `cargo build --release -p sluice-demo`)"
        } else {
            "sluice-hook: `cargo install --path crates/hook`"
        };
        eprintln!(
            "sluice-hook: {} is missing; it comes with the package {package}",
            binary.display()
        );
        return 1;
    }
    let error = std::process::Command::new(&binary)
        .args(args.iter().skip(1))
        .exec();
    eprintln!("sluice-hook: cannot run {}: {error}", binary.display());
    1
}

/// Writes an answer on stdout. A reader that went away early (`| grep -q`, `| head`) is no
/// failure of ours: `println!` would panic on the closed pipe.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn answer(command: &str, done: Result<String, String>) -> i32 {
    match done {
        Ok(text) => {
            say(&format!("{text}\n"));
            0
        }
        Err(problem) => {
            eprintln!("sluice-hook {command}: {problem}");
            1
        }
    }
}

/// `1 event`, `2 events`, `? events`.
fn events(n: Option<u64>) -> String {
    match n {
        Some(1) => "1 event".to_string(),
        Some(n) => format!("{n} events"),
        None => "? events".to_string(),
    }
}

fn relay_stats(config: &Config) -> std::io::Result<String> {
    client::request(config, "S", Duration::from_secs(2))
}

fn show_stats(config: &Config, how: &StatsArgs) -> i32 {
    if how.bridge {
        return show_bridge_stats(config, how);
    }
    let line = match relay_stats(config) {
        Ok(line) => line,
        Err(error) => {
            eprintln!(
                "sluice-hook: no relay at {} ({error}); {} in the spool",
                config.socket().display(),
                events(spool_left(config))
            );
            return 1;
        }
    };
    let json = how.json || (!how.pretty && !std::io::stdout().is_terminal());
    match serde_json::from_str::<Value>(&line) {
        Ok(value) if json => say(&format!("{value}\n")),
        Ok(value) => say(&stats::pretty(&value)),
        Err(_) => say(&line),
    }
    0
}

fn show_bridge_stats(config: &Config, how: &StatsArgs) -> i32 {
    let dir = config.runtime_dir();
    let all = match sluice_relay::bridge::query_all(&dir) {
        Ok(all) => all,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            eprintln!(
                "sluice-hook: cannot ask the bridges in {}: {error}",
                dir.display()
            );
            return 1;
        }
    };
    if all.is_empty() {
        eprintln!(
            "sluice-hook: no bridge running as this user (none answered in {})",
            dir.display()
        );
        return 1;
    }
    let json = how.json || (!how.pretty && !std::io::stdout().is_terminal());
    for stats in all {
        if json {
            say(&format!("{stats}\n"));
        } else {
            say(&format!(
                "{}\n",
                serde_json::to_string_pretty(&stats).unwrap_or_default()
            ));
        }
    }
    0
}

/// Events still in the spool (read from the store's counters, so also with no relay).
fn spool_left(config: &Config) -> Option<u64> {
    let path = config.store_path();
    if !path.exists() {
        return Some(0);
    }
    Store::open(&path, config.spool_max_bytes, Duration::from_millis(500))
        .and_then(|store| store.counters())
        .ok()
        .map(|counters| counters.depth)
}

fn stop(config: &Config) -> i32 {
    let pid = relay_stats(config)
        .ok()
        .and_then(|line| serde_json::from_str::<Value>(&line).ok())
        .map_or_else(|| "?".to_string(), |stats| stats["relay_pid"].to_string());
    let left = |config: &Config| events(spool_left(config));
    if client::send_lines(config, &["Q".to_string()], Duration::from_secs(5)).is_err() {
        say(&format!(
            "no relay running; {} in the spool\n",
            left(config)
        ));
        return 0;
    }
    // The relay holds its lock until it has delivered what it can and exited.
    if client::wait_for_relay_exit(config, Duration::from_secs(5)) {
        say(&format!(
            "relay {pid} stopped; {} left in the spool\n",
            left(config)
        ));
        0
    } else {
        eprintln!(
            "sluice-hook: relay {pid} is still delivering after 5 s ({} in the spool); it exits when done",
            left(config)
        );
        1
    }
}
