//! [`HookEnv`]: a private runtime and state directory and a dashboard address for one test
//! or bench run of the `sluice-hook` binary; it stops the relay it started when dropped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One isolated environment: the hook's relay, socket and store live under [`HookEnv::dir`].
#[derive(Debug)]
pub struct HookEnv {
    /// The directory that holds everything of this environment; removed when dropped.
    pub dir: PathBuf,
    bin: PathBuf,
    url: String,
}

impl HookEnv {
    /// An environment named `name` (unique per test process) for the binary at `bin` (a test
    /// passes `env!("CARGO_BIN_EXE_sluice-hook")`), pointed at the dashboard at `addr`.
    pub fn new(bin: impl Into<PathBuf>, name: &str, addr: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            bin: bin.into(),
            url: format!("http://{addr}"),
        }
    }

    /// The dashboard's URL, as the hook is given it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The binary this environment runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The state directory: the relay's store and log.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A command for the binary with this environment's variables set.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .env("SLUICE_RUNTIME_DIR", self.dir.join("run"))
            .env("SLUICE_STATE_DIR", self.state_dir())
            .env("SLUICE_URL", &self.url)
            .env("SLUICE_IDLE_SECS", "60")
            .env_remove("SLUICE_LOG")
            .env("HOME", &self.dir);
        command
    }

    /// One hook invocation with `stdin`.
    pub fn hook(&self, stdin: &[u8]) -> Output {
        self.hook_with(&[], stdin)
    }

    /// One hook invocation with `stdin` and these variables set.
    pub fn hook_with(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Output {
        self.run(&[], vars, stdin)
    }

    /// One run of the binary with these arguments, these variables set and `stdin`.
    pub fn run(&self, args: &[&str], vars: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut command = self.command();
        command.args(args).envs(vars.iter().copied());
        feed(command, stdin)
    }

    /// The relay's stats (`Null` without a relay).
    pub fn stats(&self) -> serde_json::Value {
        let output = self.command().arg("stats").output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Asks the relay to exit, and waits until it has.
    pub fn stop_relay(&self) {
        let _ = self.command().arg("stop").output();
    }
}

/// Runs `command` as Claude Code runs a hook: `stdin` written to it, stdout and stderr read.
pub fn feed(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Numbered hook input `n`: a `UserPromptSubmit` whose prompt is `prompt n`.
pub fn prompt(n: usize) -> Vec<u8> {
    serde_json::json!({
        "session_id": "s", "cwd": "/tmp", "hook_event_name": "UserPromptSubmit",
        "prompt": format!("prompt {n}")
    })
    .to_string()
    .into_bytes()
}

/// The number `n` of a [`prompt`] event, from the `data` of the payload that arrived.
pub fn prompt_number(data: &serde_json::Value) -> Option<usize> {
    data["prompt"]
        .as_str()?
        .strip_prefix("prompt ")?
        .parse()
        .ok()
}

/// A loopback address nothing listens on (a dashboard that is down).
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Drop for HookEnv {
    fn drop(&mut self) {
        let pid = self.stats()["relay_pid"].as_u64();
        self.stop_relay();
        if let Some(pid) = pid {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
