//! Settings, from flags and the environment.

use std::path::PathBuf;
use std::time::Duration;

/// Where the dashboard is, and where the relay keeps its socket and spool.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    /// Directory of the relay's socket and lock (only the user can open it).
    pub runtime_dir: PathBuf,
    /// Directory of the spool and the relay's log.
    pub state_dir: PathBuf,
    /// Whether a hook may start a relay.
    pub spawn_relay: bool,
    /// How long a hook may take in all.
    pub budget: Duration,
    /// How long the relay lives without events.
    pub idle: Duration,
    pub spool_max_bytes: u64,
    /// The largest payload sent; bigger events are shrunk by the size guard.
    pub max_event_bytes: usize,
    pub verbose: bool,
}

pub const DEFAULT_URL: &str = "http://localhost:8765";

impl Config {
    /// Reads flags (`--url`, `--verbose`, `--no-spawn`, `--idle SECS`) over the
    /// environment; returns the rest of the arguments.
    pub fn from_args(args: Vec<String>) -> Result<(Self, Vec<String>), String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Self {
            url: url_from_env(&env),
            runtime_dir: env("SLUICE_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(default_runtime_dir),
            state_dir: env("SLUICE_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(default_state_dir),
            spawn_relay: env("SLUICE_NO_SPAWN").is_none(),
            budget: Duration::from_millis(
                env("SLUICE_BUDGET_MS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_000),
            ),
            idle: Duration::from_secs(
                env("SLUICE_IDLE_SECS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(600),
            ),
            spool_max_bytes: env("SLUICE_SPOOL_MAX_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(64 << 20),
            max_event_bytes: env("SLUICE_MAX_EVENT_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::size::DEFAULT_MAX_EVENT_BYTES),
            verbose: env("SLUICE_LOG").is_some(),
        };
        let mut rest = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--url" => config.url = args.next().ok_or("--url needs a value")?,
                "--verbose" | "-v" => config.verbose = true,
                "--no-spawn" => config.spawn_relay = false,
                "--idle" => {
                    let secs = args.next().ok_or("--idle needs seconds")?;
                    config.idle = Duration::from_secs(
                        secs.parse()
                            .map_err(|_| format!("--idle: not a number: {secs}"))?,
                    );
                }
                _ => rest.push(arg),
            }
        }
        Ok((config, rest))
    }

    /// One relay per dashboard URL: its socket, lock and store are named after the URL, so a
    /// hook configured for another dashboard never hands its events to this one's relay.
    fn url_tag(&self) -> String {
        format!("{:08x}", crc32fast::hash(self.url.as_bytes()))
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir
            .join(format!("relay-{}.sock", self.url_tag()))
    }

    pub fn relay_lock(&self) -> PathBuf {
        self.runtime_dir
            .join(format!("relay-{}.lock", self.url_tag()))
    }

    /// The spool database of this URL's relay.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join(format!("spool-{}.db", self.url_tag()))
    }
}

/// `SLUICE_URL`, else the reference's `CLAUDE_MPM_SERVER_HOST`/`_PORT` or
/// `CLAUDE_MPM_SOCKETIO_PORT`, else `http://localhost:8765`.
fn url_from_env(env: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(url) = env("SLUICE_URL") {
        return url;
    }
    let host = env("CLAUDE_MPM_SERVER_HOST").unwrap_or_else(|| "localhost".to_string());
    match env("CLAUDE_MPM_SERVER_PORT").or_else(|| env("CLAUDE_MPM_SOCKETIO_PORT")) {
        Some(port) => format!("http://{host}:{port}"),
        None if env("CLAUDE_MPM_SERVER_HOST").is_some() => format!("http://{host}:8765"),
        None => DEFAULT_URL.to_string(),
    }
}

fn user_id() -> String {
    std::env::var("UID")
        .ok()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "user".to_string())
}

fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("sluice"),
        _ => std::env::temp_dir().join(format!("sluice-{}", user_id())),
    }
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("sluice");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/sluice"),
        None => std::env::temp_dir().join(format!("sluice-state-{}", user_id())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            url_from_env(&env(&[
                ("SLUICE_URL", "http://h:1"),
                ("CLAUDE_MPM_SOCKETIO_PORT", "9")
            ])),
            "http://h:1"
        );
    }
}
