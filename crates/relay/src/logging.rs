//! The relay's log: a size-capped file in the state directory, or stderr when verbose.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::config::Config;
use crate::safety;
use tracing_subscriber::EnvFilter;

/// Sends logs to a size-capped file in the state directory (or stderr when verbose).
pub fn init_logging(config: &Config) {
    init_logging_to(config, "relay.log");
}

/// As [`init_logging`], to the file `name` in the state directory (the bridge's is
/// `bridge.log`, so that a bridge and a relay on one machine keep their own).
pub fn init_logging_to(config: &Config, name: &str) {
    // The breaker's state changes repeat every second or so while a dashboard is down.
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sluice_breaker=warn"));
    if config.verbose {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    if safety::private_dir(&config.state_dir).is_err() {
        return; // the relay says why when it checks the directory
    }
    if let Some(log) = CappedLog::open(config.state_dir.join(name)) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Mutex::new(log))
            .try_init();
    }
}

/// The relay's log file (mode 0600), moved to `relay.log.1` whenever it passes 1 MiB.
struct CappedLog {
    path: PathBuf,
    file: File,
    size: u64,
}

impl CappedLog {
    const MAX: u64 = 1 << 20;

    fn open(path: PathBuf) -> Option<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .ok()?;
        let size = file.metadata().ok()?.len();
        Some(Self { path, file, size })
    }
}

impl Write for CappedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.size > Self::MAX {
            let _ = fs::rename(&self.path, self.path.with_extension("log.1"));
            if let Some(fresh) = Self::open(self.path.clone()) {
                *self = fresh;
            }
        }
        let written = self.file.write(bytes)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
