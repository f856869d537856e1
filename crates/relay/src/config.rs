//! Settings, from flags over the environment: one field of [`Config`] per setting, with its
//! flag, its variable and its default in one `#[arg]` (adding a setting is one place).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{FalseyValueParser, OsStringValueParser, TypedValueParser};
use clap::{ArgAction, Args, Command, FromArgMatches, ValueEnum};

/// Where the dashboard is, and where the relay keeps its socket and spool.
///
/// Every flag is global (it may come before or after the subcommand) and tied to its
/// environment variable, which `--help` shows.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Settings (any command; a flag overrides its variable)")]
pub struct Config {
    /// The dashboard (http, https, ws or wss), or a NATS JetStream server (nats or tls, with a
    /// user and password or a token in it if needed); the default comes from
    /// CLAUDE_MPM_SERVER_HOST, CLAUDE_MPM_SERVER_PORT or CLAUDE_MPM_SOCKETIO_PORT when set
    #[arg(long, global = true, env = "SLUICE_URL", value_name = "URL",
          value_parser = parse_url, default_value_t = reference_url())]
    pub url: String,
    /// Directory of the relay's socket and lock (only the user can open it); by default
    /// $XDG_RUNTIME_DIR/sluice, else `run` in the state directory
    #[arg(
        long = "runtime-dir",
        global = true,
        env = "SLUICE_RUNTIME_DIR",
        value_name = "DIR"
    )]
    pub runtime_dir_set: Option<PathBuf>,
    /// Directory of the spool and the relay's log.
    #[arg(long, global = true, env = "SLUICE_STATE_DIR", value_name = "DIR",
          default_value_os_t = default_state_dir(), hide_default_value = true,
          value_parser = OsStringValueParser::new().map(PathBuf::from))]
    pub state_dir: PathBuf,
    /// Never start a relay: events go to the spool for the next one.
    #[arg(long = "no-spawn", global = true, env = "SLUICE_NO_SPAWN", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new().map(|no_spawn| !no_spawn))]
    pub spawn_relay: bool,
    /// The most time one hook takes, whatever happens (milliseconds).
    #[arg(long = "budget-ms", global = true, env = "SLUICE_BUDGET_MS", value_name = "MS",
          value_parser = parse_millis, default_value = DEFAULT_BUDGET_MS)]
    pub budget: Duration,
    /// How long the relay lives without events (seconds).
    #[arg(long, global = true, env = "SLUICE_IDLE_SECS", value_name = "SECS",
          value_parser = parse_secs, default_value = DEFAULT_IDLE_SECS)]
    pub idle: Duration,
    /// The spool's cap in bytes: when full, the oldest events are dropped and counted.
    #[arg(long, global = true, env = "SLUICE_SPOOL_MAX_BYTES", value_name = "BYTES",
          value_parser = parse_bytes, default_value = DEFAULT_SPOOL_MAX_BYTES)]
    pub spool_max_bytes: u64,
    /// The largest event payload sent, in bytes; bigger events are shrunk (copies dropped,
    /// long strings cut and marked) and counted.
    #[arg(long, global = true, env = "SLUICE_MAX_EVENT_BYTES", value_name = "BYTES",
          value_parser = parse_event_bytes, default_value_t = crate::size::DEFAULT_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// When the dashboard has an event: once it acknowledged it, or, for a server that never
    /// acknowledges, once it was written to its websocket
    #[arg(long, global = true, env = "SLUICE_DELIVERY", value_name = "WHEN",
          value_enum, default_value_t = Delivery::Acknowledged)]
    pub delivery: Delivery,
    /// Every SECS seconds the relay sends its own state (breaker, store depth, dead letters)
    /// as a `sluice_status` event asking no ack, on a connection of its own; 0: never
    #[arg(long = "status-every", global = true, env = "SLUICE_STATUS_EVERY", value_name = "SECS",
          value_parser = parse_secs, default_value = "0")]
    pub status_every: Duration,
    /// The token of sluice's own dashboard: the relay sends it (in an `x-sluice-token`
    /// header), which that dashboard needs off loopback; `dashboard` makes it its web view's
    /// token (random when unset)
    #[arg(long, global = true, env = "SLUICE_TOKEN", value_name = "TOKEN", hide_env_values = true,
          value_parser = parse_token)]
    pub token: Option<Token>,
    /// A NATS credentials file (for a nats:// or tls:// URL)
    #[arg(long, global = true, env = "SLUICE_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Log to stderr (SLUICE_LOG is also the log filter, e.g. `debug`).
    #[arg(short, long, global = true, env = "SLUICE_LOG", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    pub verbose: bool,
}

pub const DEFAULT_URL: &str = "http://localhost:8765";

/// The header that carries [`Config::token`] (what sluice's embedded dashboard reads).
pub const TOKEN_HEADER: &str = "x-sluice-token";

/// A dashboard's token: kept out of `Debug`, so that no log shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token itself, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn parse_token(value: &str) -> Result<Token, String> {
    // It goes in an HTTP header: visible ASCII only.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected visible ASCII characters, no spaces".to_string());
    }
    Ok(Token(value.to_string()))
}
const DEFAULT_BUDGET_MS: &str = "1000";
const DEFAULT_IDLE_SECS: &str = "600";
const DEFAULT_SPOOL_MAX_BYTES: &str = "67108864";

/// When an event counts as delivered, and so leaves the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// The dashboard acknowledged it (claude-mpm and python-socketio do; Node socket.io
    /// when the handler calls its ack callback).
    Acknowledged,
    /// It was written to the dashboard's websocket (for servers that never acknowledge).
    Written,
}

impl Delivery {
    /// Its value as `--delivery` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Written => "written",
        }
    }
}

impl From<Delivery> for sluice_socketio_sink::Delivery {
    fn from(delivery: Delivery) -> Self {
        match delivery {
            Delivery::Acknowledged => Self::Acknowledged,
            Delivery::Written => Self::Written,
        }
    }
}

/// One relay per dashboard URL: its socket, lock and store are named after the URL, so a
/// hook configured for another dashboard never hands its events to this one's relay.
fn url_tag(url: &str) -> String {
    let url = without_credentials(url);
    format!("{:08x}", sluice_store::checksum::crc32(url.as_bytes()))
}

/// `url` without the user, password or token in it, for names and for what is shown: a new
/// password must not orphan a backlog, and no log or stats line may show one. A URL
/// without credentials is returned as it is (the names of earlier releases are kept); a
/// NATS URL may list several servers, separated by commas.
pub fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    if !url.contains('@') {
        return std::borrow::Cow::Borrowed(url);
    }
    let servers: Vec<String> = url
        .split(',')
        .map(|server| match url::Url::parse(server.trim()) {
            Ok(mut parsed) if parsed.has_authority() => {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            // Not a URL we can read: show nothing of it that could be a secret.
            _ => server.rsplit('@').next().unwrap_or_default().to_string(),
        })
        .collect();
    std::borrow::Cow::Owned(servers.join(","))
}

/// Whether `url` names a NATS server (`nats://`, `tls://`) rather than a dashboard.
pub fn is_nats(url: &str) -> bool {
    matches!(url.split("://").next(), Some("nats" | "tls"))
}

/// The store of the relay for `url` in `state_dir`.
pub fn relay_store(state_dir: &std::path::Path, url: &str) -> PathBuf {
    state_dir.join(format!("spool-{}.db", url_tag(url)))
}

/// The socket of the relay for `url` in `runtime_dir`.
pub fn relay_socket(runtime_dir: &std::path::Path, url: &str) -> PathBuf {
    runtime_dir.join(format!("relay-{}.sock", url_tag(url)))
}

/// The lock that makes one relay the owner of the store for `url` in `state_dir`: only the
/// relay holding it delivers that store, whatever runtime directory its socket is in.
pub fn store_lock(state_dir: &std::path::Path, url: &str) -> PathBuf {
    state_dir.join(format!("spool-{}.lock", url_tag(url)))
}

impl Config {
    /// The directory of the relay's socket and lock: `--runtime-dir`, else
    /// `$XDG_RUNTIME_DIR/sluice`, else `run` in the state directory. Never a name in a
    /// world-writable directory such as `/tmp`, which another user could take first.
    pub fn runtime_dir(&self) -> PathBuf {
        if let Some(dir) = &self.runtime_dir_set {
            return dir.clone();
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("sluice"),
            None => self.state_dir.join("run"),
        }
    }

    pub fn socket(&self) -> PathBuf {
        relay_socket(&self.runtime_dir(), &self.url)
    }

    pub fn relay_lock(&self) -> PathBuf {
        self.runtime_dir()
            .join(format!("relay-{}.lock", url_tag(&self.url)))
    }

    /// See [`store_lock`].
    pub fn store_lock(&self) -> PathBuf {
        store_lock(&self.state_dir, &self.url)
    }

    /// Why there is no state directory, when there is none: `HOME` and `XDG_STATE_HOME` are
    /// unset and the user has no home in the passwd database.
    pub fn missing_state_dir(&self) -> Option<String> {
        self.state_dir.as_os_str().is_empty().then(|| {
            format!(
                "no state directory: HOME and XDG_STATE_HOME are unset and uid {} has no home \
                 in the passwd database; set SLUICE_STATE_DIR",
                crate::safety::uid()
            )
        })
    }

    /// The spool database of this URL's relay.
    pub fn store_path(&self) -> PathBuf {
        relay_store(&self.state_dir, &self.url)
    }

    /// The bare hook's settings, read from the environment without building clap's command.
    /// Building it (every argument, every default) cost 0.05 ms warm and 0.12 to 0.22 ms
    /// cold (measured); this reads the same variables through the same parsers. `None` when
    /// a variable is bad: [`Config::from_env`] then reports it. `tests/settings_from_env.rs`
    /// checks that both agree, variable by variable.
    pub fn from_env_quick() -> Option<Self> {
        match Self::read_env() {
            (config, skipped) if skipped.is_empty() => Some(config),
            _ => None,
        }
    }

    /// The settings from the environment alone (no flags), read by clap: what
    /// [`Config::from_env_quick`] must agree with, and the reading that reports a bad variable.
    pub fn from_env() -> Result<Self, clap::Error> {
        let command = Self::augment_args(Command::new("sluice-hook").no_binary_name(true));
        ignore_empty_env(command)
            .try_get_matches_from(Vec::<OsString>::new())
            .and_then(|matches| Self::from_arg_matches(&matches))
    }

    /// The settings from the environment alone, skipping each variable whose value is bad
    /// (its default is used instead): what the hook falls back to after a bad flag. Also
    /// returns the variables skipped. Never fails: every default is valid, and a bad default
    /// URL computed from claude-mpm's variables gives way to [`DEFAULT_URL`].
    pub fn lenient() -> (Self, Vec<OsString>) {
        Self::read_env()
    }

    /// The environment's settings, each bad variable skipped (and named) for its default.
    fn read_env() -> (Self, Vec<OsString>) {
        let mut env = EnvReader::default();
        let url = env.get("SLUICE_URL", || None, |v| parsed(v, parse_url).map(Some));
        let url = url.unwrap_or_else(|| env.reference_url());
        let config = Self {
            url,
            runtime_dir_set: env.get(
                "SLUICE_RUNTIME_DIR",
                || None,
                |v| Some(Some(PathBuf::from(v))),
            ),
            state_dir: env.get("SLUICE_STATE_DIR", default_state_dir, |v| {
                Some(PathBuf::from(v))
            }),
            spawn_relay: !env.get("SLUICE_NO_SPAWN", || false, flag),
            budget: env.parse("SLUICE_BUDGET_MS", DEFAULT_BUDGET_MS, parse_millis),
            idle: env.parse("SLUICE_IDLE_SECS", DEFAULT_IDLE_SECS, parse_secs),
            spool_max_bytes: env.parse(
                "SLUICE_SPOOL_MAX_BYTES",
                DEFAULT_SPOOL_MAX_BYTES,
                parse_bytes,
            ),
            max_event_bytes: env.get(
                "SLUICE_MAX_EVENT_BYTES",
                || crate::size::DEFAULT_MAX_EVENT_BYTES,
                |v| parsed(v, parse_event_bytes),
            ),
            delivery: env.get(
                "SLUICE_DELIVERY",
                || Delivery::Acknowledged,
                |v| Delivery::from_str(v.to_str()?, false).ok(),
            ),
            status_every: env.parse("SLUICE_STATUS_EVERY", "0", parse_secs),
            token: env.get(
                "SLUICE_TOKEN",
                || None,
                |v| parsed(v, parse_token).map(Some),
            ),
            nats_creds: env.get(
                "SLUICE_NATS_CREDS",
                || None,
                |v| Some(Some(PathBuf::from(v))),
            ),
            verbose: env.get("SLUICE_LOG", || false, flag),
        };
        (config, env.skipped)
    }
}

/// Reads settings from the environment as clap does (an empty variable is unset), using
/// the default for each bad one and naming it.
#[derive(Default)]
struct EnvReader {
    skipped: Vec<OsString>,
}

impl EnvReader {
    /// `name`'s value through `parse`; `default` when it is unset, empty or bad (then named).
    fn get<T>(
        &mut self,
        name: &str,
        default: impl FnOnce() -> T,
        parse: impl FnOnce(&OsStr) -> Option<T>,
    ) -> T {
        let Some(value) = std::env::var_os(name).filter(|value| !value.is_empty()) else {
            return default();
        };
        parse(&value).unwrap_or_else(|| {
            self.skipped.push(OsString::from(name));
            default()
        })
    }

    /// `name` through `parse`, whose `default` text is what clap shows and parses too.
    fn parse<T: Default>(
        &mut self,
        name: &str,
        default: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> T {
        // The defaults are valid (clap parses them too), so `unwrap_or_default` never bites.
        let default = || parse(default).unwrap_or_default();
        self.get(name, default, |value| parsed(value, parse))
    }

    /// The default URL from claude-mpm's variables, or [`DEFAULT_URL`] (naming them) when
    /// they make a bad one: clap would refuse it, and the hook must go on.
    fn reference_url(&mut self) -> String {
        let reference = reference_url();
        if parse_url(&reference).is_ok() {
            return reference;
        }
        let port = ["CLAUDE_MPM_SERVER_PORT", "CLAUDE_MPM_SOCKETIO_PORT"]
            .into_iter()
            .find(|name| env_text(name).is_some());
        let used = ["CLAUDE_MPM_SERVER_HOST"]
            .into_iter()
            .filter(|name| env_text(name).is_some())
            .chain(port);
        self.skipped.extend(used.map(OsString::from));
        DEFAULT_URL.to_string()
    }
}

fn parsed<T>(value: &OsStr, parse: fn(&str) -> Result<T, String>) -> Option<T> {
    parse(value.to_str()?).ok()
}

/// A true-or-false variable, as clap's `FalseyValueParser` reads it.
fn flag(value: &OsStr) -> Option<bool> {
    FalseyValueParser::new()
        .parse_ref(&Command::new("sluice-hook"), None, value)
        .ok()
}

/// A variable's text, if it is set, not empty and UTF-8 (as [`reference_url`] reads them).
fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Treats a variable set to the empty string as unset, as the shell idiom `VAR= cmd` means.
pub fn ignore_empty_env(command: Command) -> Command {
    command.mut_args(|arg| {
        let empty = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|value| value.is_empty());
        if empty {
            arg.env(None)
        } else {
            arg
        }
    })
}

/// A dashboard URL: http, https, ws or wss, with a host.
pub fn parse_url(value: &str) -> Result<String, String> {
    // A NATS URL may list several servers of one cluster.
    let servers: Vec<&str> = if is_nats(value) {
        value.split(',').map(str::trim).collect()
    } else {
        vec![value]
    };
    for server in servers {
        let url = url::Url::parse(server).map_err(|error| {
            format!("not a URL ({error}); expected e.g. {DEFAULT_URL} or nats://127.0.0.1:4222")
        })?;
        if !matches!(
            url.scheme(),
            "http" | "https" | "ws" | "wss" | "nats" | "tls"
        ) {
            return Err(format!(
                "the scheme {:?} is not http, https, ws, wss, nats or tls",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".to_string());
        }
    }
    Ok(value.to_string())
}

fn parse_number(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    parse_number(value).map(Duration::from_secs)
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    parse_number(value).map(Duration::from_millis)
}

fn parse_bytes(value: &str) -> Result<u64, String> {
    parse_number(value)
}

fn parse_event_bytes(value: &str) -> Result<usize, String> {
    let bytes = usize::try_from(parse_number(value)?).map_err(|e| e.to_string())?;
    let min = crate::size::MIN_MAX_EVENT_BYTES;
    if bytes < min {
        return Err(format!(
            "{value} is below the smallest event limit, {min} bytes"
        ));
    }
    Ok(bytes)
}

/// `CLAUDE_MPM_SERVER_HOST`/`_PORT` or `CLAUDE_MPM_SOCKETIO_PORT` (the reference's), else
/// `http://localhost:8765`: the default under `SLUICE_URL`.
fn reference_url() -> String {
    url_from_env(&env_text)
}

fn url_from_env(env: &dyn Fn(&str) -> Option<String>) -> String {
    let host = env("CLAUDE_MPM_SERVER_HOST").unwrap_or_else(|| "localhost".to_string());
    match env("CLAUDE_MPM_SERVER_PORT").or_else(|| env("CLAUDE_MPM_SOCKETIO_PORT")) {
        Some(port) => format!("http://{host}:{port}"),
        None if env("CLAUDE_MPM_SERVER_HOST").is_some() => format!("http://{host}:8765"),
        None => DEFAULT_URL.to_string(),
    }
}

/// `$XDG_STATE_HOME/sluice`, else `.local/state/sluice` in `$HOME` or, without one, in the
/// home the passwd database gives the user (never a guessable name under `/tmp`). Empty when
/// there is none: [`Config::missing_state_dir`] says so.
fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("sluice");
    }
    // `home_dir` reads `HOME`, and the passwd entry when `HOME` is unset or empty.
    std::env::home_dir()
        .filter(|home| !home.as_os_str().is_empty())
        .map_or_else(PathBuf::new, |home| home.join(".local/state/sluice"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_relay_keeps_its_names_across_releases() {
        // A relay's socket and store are found by these names: a new hook must find the
        // store an older one filled (the CRC-32 of the URL).
        let url = "http://localhost:8765";
        let dir = std::path::Path::new("/d");
        assert_eq!(relay_socket(dir, url), dir.join("relay-995879c2.sock"));
        assert_eq!(relay_store(dir, url), dir.join("spool-995879c2.db"));
    }

    #[test]
    fn credentials_change_no_name_and_show_nowhere() {
        let dir = std::path::Path::new("/d");
        let plain = "nats://n1:4222";
        let with = "nats://alice:s3cret@n1:4222";
        assert_eq!(
            relay_store(dir, with),
            relay_store(dir, "nats://bob:other@n1:4222")
        );
        assert_eq!(without_credentials(with), "nats://n1:4222");
        assert_eq!(without_credentials(plain), plain, "as it was");
        let two = without_credentials("nats://tok@n1:4222, nats://u:p@n2:4222");
        assert!(!two.contains("tok") && !two.contains("u:p"), "{two}");
        assert!(is_nats(with) && is_nats("tls://n1") && !is_nats(DEFAULT_URL));
    }

    #[test]
    fn the_url_comes_from_the_reference_variables_too() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(url_from_env(&env(&[])), DEFAULT_URL);
        assert_eq!(
            url_from_env(&env(&[("CLAUDE_MPM_SOCKETIO_PORT", "9000")])),
            "http://localhost:9000"
        );
        assert_eq!(
            url_from_env(&env(&[
                ("CLAUDE_MPM_SERVER_HOST", "dashboard.local"),
                ("CLAUDE_MPM_SERVER_PORT", "8766")
            ])),
            "http://dashboard.local:8766"
        );
    }

    #[test]
    fn urls_need_a_known_scheme_and_a_host() {
        for good in [
            "http://localhost:8765",
            "https://dash.example:443/x",
            "ws://127.0.0.1:1",
            "wss://[::1]:9",
        ] {
            assert_eq!(parse_url(good).as_deref(), Ok(good));
        }
        for nats in ["nats://127.0.0.1:4222", "tls://u:p@n1:4222,tls://n2:4222"] {
            assert_eq!(parse_url(nats).as_deref(), Ok(nats));
        }
        for bad in [
            "not-a-url",
            "nats://",
            "ftp://host",
            "http://",
            "localhost:8765",
            "file:///tmp/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lenient_settings_skip_only_the_bad_variables() {
        // The test's own variables: no other test reads these.
        std::env::set_var("SLUICE_IDLE_SECS", "soon");
        std::env::set_var("SLUICE_BUDGET_MS", "250");
        let (config, skipped) = Config::lenient();
        std::env::remove_var("SLUICE_IDLE_SECS");
        std::env::remove_var("SLUICE_BUDGET_MS");
        assert_eq!(config.idle, Duration::from_secs(600));
        assert_eq!(config.budget, Duration::from_millis(250));
        assert_eq!(skipped, [OsString::from("SLUICE_IDLE_SECS")]);
    }

    #[test]
    fn flags_parse_into_the_resolved_settings() {
        let command = Config::augment_args(Command::new("t")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from([
                "t",
                "--url",
                "ws://h:1",
                "--no-spawn",
                "--idle",
                "5",
                "--budget-ms",
                "250",
                "-v",
            ])
            .unwrap();
        let config = Config::from_arg_matches(&matches).unwrap();
        assert_eq!(config.url, "ws://h:1");
        assert!(!config.spawn_relay);
        assert_eq!(config.idle, Duration::from_secs(5));
        assert_eq!(config.budget, Duration::from_millis(250));
        assert!(config.verbose);
        assert_eq!(config.spool_max_bytes, 64 << 20);
        let command = Config::augment_args(Command::new("t")).mut_args(|arg| arg.env(None));
        let defaults =
            Config::from_arg_matches(&command.try_get_matches_from(["t"]).unwrap()).unwrap();
        assert!(defaults.spawn_relay);
        assert!(!defaults.verbose);
        assert_eq!(defaults.idle, Duration::from_secs(600));
    }
}
