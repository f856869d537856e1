//! The `sluice-hook` command line (clap): its subcommands and their options, with the
//! checks made while parsing. `sluice-relay` and `sluice-demo` reuse the pieces they share.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::events::{self, HookEvent};
use crate::install::Scope;
use sluice_relay::config::Config;

/// Sends every Claude Code hook event to the monitoring dashboard, through a long-lived
/// relay, without blocking Claude and without losing events.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-hook",
    version,
    after_help = "Without a command, sluice-hook is the hook: it reads one event on stdin, hands it \
                  to the relay (starting one if needed) and exits 0 with nothing on stdout."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<HookCommand>,
}

/// What `sluice-hook` was asked to do besides being the hook.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Run the relay in the foreground (the hook starts one on demand)
    Relay(RelayArgs),
    /// Show the relay's stats: readable on a terminal, one JSON line otherwise
    Stats(StatsArgs),
    /// Stop the relay after the round it is sending (the rest waits in the spool)
    Stop,
    /// List the events set aside because the dashboard failed them alone; --retry puts
    /// them back in the queue, --drop deletes them
    DeadLetters(DeadLettersArgs),
    /// Set up NATS JetStream for relays that publish to it (SLUICE_URL nats:// or tls://)
    #[command(subcommand)]
    Nats(NatsCommand),
    /// Deliver the events of the JetStream stream to a dashboard: a durable pull consumer
    /// that acks each message once the dashboard acknowledged its event
    Bridge(BridgeArgs),
    /// Print the Claude Code hooks that run sluice-hook, or merge them into a settings file
    Install(InstallArgs),
    /// Take sluice-hook's hooks out of a Claude Code settings file (a backup is kept)
    Uninstall(UninstallArgs),
    /// Run an embedded dashboard that prints each event it receives as a line
    Dashboard(DashboardArgs),
    /// Play a Claude Code session through real hooks against an embedded dashboard that
    /// goes down midway, then report what arrived
    Demo(DemoArgs),
}

impl HookCommand {
    /// Every subcommand's name (the hook path is the one without).
    pub const NAMES: [&'static str; 11] = [
        "relay",
        "stats",
        "stop",
        "dead-letters",
        "nats",
        "bridge",
        "install",
        "uninstall",
        "dashboard",
        "demo",
        "help",
    ];
}

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Print `ready` on stdout once a relay listens (how a hook waits for the one it started)
    #[arg(long)]
    pub notify_ready: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// One line of JSON, whatever stdout is
    #[arg(long, conflicts_with = "pretty")]
    pub json: bool,
    /// The readable form, whatever stdout is
    #[arg(long)]
    pub pretty: bool,
    /// The stats of the bridges (`sluice-hook bridge`) running as this user instead, one
    /// each
    #[arg(long)]
    pub bridge: bool,
}

/// `sluice-hook nats ...`: run by `sluice-relay`, which links the NATS client.
#[derive(Debug, Clone, Subcommand)]
pub enum NatsCommand {
    /// Create or update the stream SLUICE_HOOKS on the server of SLUICE_URL (or --url): its
    /// subjects, file storage, replicas, limits and duplicate window; safe to run twice
    Setup(NatsSetupArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NatsSetupArgs {
    /// Copies of each message: 1 on one server, 3 in a cluster of three or more
    #[arg(long, value_name = "N", default_value = "1",
          value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
}

/// `sluice-hook bridge`: run by `sluice-relay`, which links the NATS client.
#[derive(Debug, Clone, Args)]
pub struct BridgeArgs {
    /// The NATS server (or servers, separated by commas) holding the stream SLUICE_HOOKS;
    /// credentials in the URL or in SLUICE_NATS_CREDS
    #[arg(long, value_name = "URL", value_parser = parse_nats_url)]
    pub from: String,
    /// The dashboard to deliver to (its token, if it needs one, in SLUICE_TOKEN)
    #[arg(long, value_name = "URL", value_parser = parse_dashboard_url)]
    pub to: String,
    /// The durable consumer's name: bridges on one durable share the work; a bridge on
    /// a durable of its own receives everything (for a second dashboard)
    #[arg(long, value_name = "NAME", default_value = sluice_relay::bridge::DEFAULT_DURABLE)]
    pub durable: String,
}

fn parse_nats_url(value: &str) -> Result<String, String> {
    let url = sluice_relay::config::parse_url(value)?;
    if !sluice_relay::config::is_nats(&url) {
        return Err("expected a NATS server: nats://host:4222 or tls://...".to_string());
    }
    Ok(url)
}

fn parse_dashboard_url(value: &str) -> Result<String, String> {
    let url = sluice_relay::config::parse_url(value)?;
    if sluice_relay::config::is_nats(&url) {
        return Err("expected a dashboard: http://host:8765 or https://...".to_string());
    }
    Ok(url)
}

impl BridgeArgs {
    /// What the bridge library runs.
    pub fn bridge(&self) -> sluice_relay::bridge::Bridge {
        sluice_relay::bridge::Bridge {
            from: self.from.clone(),
            to: self.to.clone(),
            durable: self.durable.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DeadLettersArgs {
    /// Put them back at the end of the queue (their order among the others is lost)
    #[arg(long, conflicts_with = "drop")]
    pub retry: bool,
    /// Delete them
    #[arg(long)]
    pub drop: bool,
    /// One line of JSON, whatever stdout is
    #[arg(long)]
    pub json: bool,
    /// Only these events (their `event_id`s); all of them by default
    #[arg(value_name = "EVENT_ID")]
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Merge the hooks into the settings file (a backup is kept) instead of printing them
    #[arg(long)]
    pub write: bool,
    /// Which settings file: user = ~/.claude/settings.json, project = .claude/settings.json,
    /// local = .claude/settings.local.json
    #[arg(long, value_enum, default_value = "user")]
    pub scope: Scope,
    /// `default` (10 events all current Claude Codes accept), `all` (35), or names
    /// separated by commas, e.g. PreToolUse,PostToolUse,Stop
    #[arg(long, value_name = "EVENTS", default_value = "default", value_parser = parse_events)]
    pub events: EventList,
}

#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// Which settings file: user = ~/.claude/settings.json, project = .claude/settings.json,
    /// local = .claude/settings.local.json
    #[arg(long, value_enum, default_value = "user")]
    pub scope: Scope,
}

/// The events chosen with `--events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventList(pub Vec<&'static HookEvent>);

fn parse_events(value: &str) -> Result<EventList, String> {
    events::parse_list(value).map(EventList)
}

#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Where to listen: an address (`0.0.0.0:8765`, `[::1]:9000`) or a bare port
    /// (`9000` means 127.0.0.1:9000)
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8765", value_parser = parse_listen_addr)]
    pub addr: SocketAddr,
}

/// A `SocketAddr`, or a bare port on 127.0.0.1.
pub fn parse_listen_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err("expected an address such as 127.0.0.1:8765, or a port from 0 to 65535".to_string())
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Hook invocations to play (at least 1)
    #[arg(long, value_name = "N", default_value = "2000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// How long the dashboard stays down, from 30 % of the run on; it must come back before
    /// the last hook runs (fractions allowed)
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_outage)]
    pub outage_secs: f64,
    /// Also write what the run observed, as JSON, to this file (the report's inputs)
    #[arg(long, value_name = "FILE", hide = true)]
    pub record: Option<std::path::PathBuf>,
}

impl DemoArgs {
    /// The demo starts one hook at most every `PACE`.
    pub const PACE: Duration = Duration::from_millis(4);

    /// Hooks played before the dashboard goes down.
    pub fn outage_at(&self) -> u64 {
        self.events * 3 / 10
    }

    /// The outage's length.
    pub fn outage(&self) -> Duration {
        Duration::from_secs_f64(self.outage_secs)
    }

    /// The shortest time the hooks after the outage's start take to play.
    pub fn rest_of_run(&self) -> Duration {
        Self::PACE * u32::try_from(self.events - self.outage_at()).unwrap_or(u32::MAX)
    }

    /// Checks that the outage ends within the run; the message names the value.
    pub fn check(&self) -> Result<(), String> {
        if self.outage() < self.rest_of_run() {
            return Ok(());
        }
        Err(format!(
            "invalid value '{}' for '--outage-secs <SECS>': the dashboard must be back before \
             the run ends, and the {} hooks after it goes down take {:.2} s at one per {} ms; \
             use less than that, or more --events",
            self.outage_secs,
            self.events - self.outage_at(),
            self.rest_of_run().as_secs_f64(),
            Self::PACE.as_millis()
        ))
    }
}

fn parse_outage(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=3600.0).contains(&secs) => Ok(secs),
        _ => Err("expected seconds from 0 to 3600, e.g. 3 or 0.5".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .chain(["help".to_string()])
            .collect();
        assert_eq!(names, HookCommand::NAMES);
    }

    #[test]
    fn addresses_and_ports() {
        assert_eq!(
            parse_listen_addr("9999"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9999)))
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:1"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 1)))
        );
        for bad in ["127.0.0.1:99999", "not-an-addr", "99999", ""] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_outage_must_end_within_the_run() {
        let demo = |events, outage_secs| DemoArgs {
            events,
            outage_secs,
            record: None,
        };
        assert!(demo(2000, 3.0).check().is_ok());
        assert_eq!(demo(2000, 3.0).rest_of_run(), Duration::from_millis(5600));
        let error = demo(100, 3.0).check().unwrap_err();
        assert!(error.contains("'3'") && error.contains("0.28 s"), "{error}");
        assert!(demo(100, 0.2).check().is_ok());
    }
}
