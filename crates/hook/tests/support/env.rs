//! A private runtime and state directory and a dashboard address for one test or bench run
//! of the `sluice-hook` binary; stops the relay it started when dropped. Shared by the
//! integration tests and the benchmark (`#[path]`-included).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

pub(crate) struct Env {
    pub(crate) dir: PathBuf,
    url: String,
}

impl Env {
    pub(crate) fn new(name: &str, addr: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            url: format!("http://{addr}"),
        }
    }

    /// The relay's store for this URL.
    #[allow(dead_code)] // not every test binary looks at the store
    pub(crate) fn store_path(&self) -> PathBuf {
        self.dir.join("state").join(format!(
            "spool-{:08x}.db",
            crc32fast::hash(self.url.as_bytes())
        ))
    }

    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("SLUICE_RUNTIME_DIR", self.dir.join("run"))
            .env("SLUICE_STATE_DIR", self.dir.join("state"))
            .env("SLUICE_URL", &self.url)
            .env("SLUICE_IDLE_SECS", "60")
            .env_remove("SLUICE_LOG")
            .env("HOME", &self.dir);
        command
    }

    /// One hook invocation with `stdin`.
    pub(crate) fn hook(&self, stdin: &[u8]) -> Output {
        self.hook_with(&[], stdin)
    }

    /// One hook invocation with `stdin` and these variables set.
    pub(crate) fn hook_with(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut command = self.command();
        command.envs(vars.iter().copied());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The relay's stats (`Null` without a relay).
    pub(crate) fn stats(&self) -> serde_json::Value {
        let output = self.command().arg("stats").output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Asks the relay to exit, and waits until it has.
    pub(crate) fn stop_relay(&self) {
        let _ = self.command().arg("stop").output();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pid = self.stats()["relay_pid"].as_u64();
        self.stop_relay();
        if let Some(pid) = pid {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
