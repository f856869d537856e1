//! [`Machine`]: one machine of a team for the NATS tests: its own HOME tree, relay and store,
//! its hooks publishing to a NATS URL under a host name of its own.

use std::path::PathBuf;
use std::process::Output;

use crate::{prompt, unused_addr, HookEnv};

/// A machine's hook environment with `SLUICE_URL` and `SLUICE_HOST` set; its relay is
/// stopped on drop.
#[derive(Debug)]
pub struct Machine {
    env: HookEnv,
    vars: Vec<(String, String)>,
}

impl Machine {
    /// The machine `name` (also its host name), running the hook binary `bin` against `url`.
    pub fn new(bin: impl Into<PathBuf>, name: &str, url: &str) -> Self {
        Self {
            env: HookEnv::new(bin, name, unused_addr()),
            vars: vec![
                ("SLUICE_URL".to_string(), url.to_string()),
                ("SLUICE_HOST".to_string(), name.to_string()),
            ],
        }
    }

    fn vars(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Runs the hook with the numbered prompt `n`.
    ///
    /// # Panics
    ///
    /// If the hook fails, or says it could not hand the event on (it exits 0 then too, so
    /// as not to trouble Claude Code).
    pub fn hook(&self, n: usize) {
        let output = self.env.hook_with(&self.vars(), &prompt(n));
        assert!(output.status.success(), "{output:?}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!said.contains("not delivered"), "event {n}: {said}");
    }

    /// What this machine's relay logged (`relay.log` in its state directory), for a failing
    /// test to show.
    pub fn relay_log(&self) -> String {
        std::fs::read_to_string(self.env.state_dir().join("relay.log")).unwrap_or_default()
    }

    /// Runs `sluice-hook ARGS` on this machine.
    pub fn run(&self, args: &[&str]) -> Output {
        self.env.run(args, &self.vars(), b"")
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}
