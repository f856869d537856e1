//! [`BridgeProcess`]: a `sluice-hook bridge` as a real process, for the bridge's tests and
//! benchmarks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sluice-hook bridge` process, killed (SIGKILL) on drop; its log in its own state directory.
#[derive(Debug)]
pub struct BridgeProcess {
    bin: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    vars: Vec<(String, String)>,
    child: Option<Child>,
}

impl BridgeProcess {
    /// Starts `bin bridge --from FROM --to TO --durable DURABLE` (`bin` is `sluice-hook`),
    /// in a state directory of its own named after `name`.
    pub fn start(bin: &str, name: &str, from: &str, to: &str, durable: &str) -> Self {
        Self::start_with(bin, name, from, to, durable, &[])
    }

    /// As [`start`](Self::start), with these environment variables set as well.
    pub fn start_with(
        bin: &str,
        name: &str,
        from: &str,
        to: &str,
        durable: &str,
        vars: &[(&str, &str)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-bridge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let args = ["bridge", "--from", from, "--to", to, "--durable", durable]
            .map(String::from)
            .to_vec();
        let mut bridge = Self {
            bin: PathBuf::from(bin),
            dir,
            args,
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            child: None,
        };
        bridge.start_again();
        bridge
    }

    /// Starts it (again), killing the one running.
    pub fn start_again(&mut self) {
        self.kill();
        self.child = Some(
            Command::new(&self.bin)
                .args(&self.args)
                .env("HOME", &self.dir)
                .env("SLUICE_STATE_DIR", self.dir.join("state"))
                .env("SLUICE_RUNTIME_DIR", self.dir.join("run"))
                .env_remove("SLUICE_URL")
                .env_remove("SLUICE_LOG")
                .envs(self.vars.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sluice-hook bridge"),
        );
    }

    /// SIGKILL: what it had not acked comes back after the consumer's ack wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM once it is up (within `within`), and its exit status within `within`.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + within;
        // A bridge just started may not have its signal handlers yet, and SIGTERM would kill
        // it outright: wait for its first stats line, logged once they are set.
        let started = format!("\"pid\":{},", child.id());
        while Instant::now() < deadline && !self.log().contains(&started) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// What `sluice-hook stats --bridge --json` says of it: its counters and its sink's, as
    /// the running bridge answers them.
    ///
    /// # Panics
    ///
    /// If the command fails or prints no JSON.
    pub fn stats(&self) -> serde_json::Value {
        let output = Command::new(&self.bin)
            .args(["stats", "--bridge", "--json"])
            .env("HOME", &self.dir)
            .env("SLUICE_STATE_DIR", self.dir.join("state"))
            .env("SLUICE_RUNTIME_DIR", self.dir.join("run"))
            .output()
            .expect("sluice-hook stats --bridge");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(text.lines().next().unwrap_or_default()).expect("one line of JSON")
    }

    /// Its log (`bridge.log` in its state directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("state/bridge.log")).unwrap_or_default()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
