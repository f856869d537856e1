//! A real `nats-server` with JetStream, on a free loopback port, for the tests of the NATS
//! sink, the relay and the bridge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The one line a test prints when the binary is missing.
pub const NATS_SERVER_MISSING: &str =
    "nats-server is missing: install it: apt-get install nats-server";

/// A `nats-server -js -sd <dir>` on `127.0.0.1`, killed (and its directory removed) on drop.
/// [`kill`](Self::kill) and [`start_again`](Self::start_again) take it down with SIGKILL and
/// bring it back on the same port and store, as a crash and a restart would.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port, in a fresh store directory, and
    /// waits until it is ready.
    ///
    /// # Panics
    ///
    /// With [`NATS_SERVER_MISSING`] when `nats-server` is not installed, and when the
    /// server does not get ready within 20 s.
    pub fn start() -> Self {
        Self::with_args(&[])
    }

    /// As [`start`](Self::start), with more command-line arguments (`--user`, `--auth`).
    pub fn with_args(args: &[&str]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let port = crate::unused_addr().port();
        let mut server = Self {
            port,
            dir,
            args: args.iter().map(ToString::to_string).collect(),
            child: None,
            starts: 0,
        };
        server.start_again();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the JetStream store and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server with SIGSTOP: it keeps its connections but reads and answers
    /// nothing, so what a client writes waits in the kernel's buffers. [`kill`](Self::kill)
    /// it next, and those writes are gone without ever reaching the server.
    pub fn freeze(&mut self) {
        if let Some(child) = &self.child {
            let pid = rustix::process::Pid::from_child(child);
            rustix::process::kill_process(pid, rustix::process::Signal::STOP)
                .expect("SIGSTOP to nats-server");
            // kill(2) returns once the signal is queued; a thread running on another core
            // goes on serving for a moment. Wait until every thread has stopped.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !thread_states(child.id()).iter().all(|&state| state == 'T') {
                assert!(
                    Instant::now() < deadline,
                    "nats-server not stopped within 5 s of SIGSTOP"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Kills the server with SIGKILL (no chance to flush or say goodbye) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and store, and waits until it is ready.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_again(&mut self) {
        self.kill();
        self.starts += 1;
        let log = self.dir.join(format!("server-{}.log", self.starts));
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("{NATS_SERVER_MISSING}")
            }
            Err(error) => panic!("cannot start nats-server: {error}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready within 20 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The state letter of every thread of `pid` (`/proc/PID/task/*/stat`); none once it is gone.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        // The name, in parentheses, may hold anything: the state follows the last ") ".
        .filter_map(|stat| stat.rsplit_once(") ")?.1.chars().next())
        .collect()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three [`NatsServer`]s in one JetStream cluster on loopback (`-n n0..n2`, `--cluster_name
/// sluice`, each with its own route port and all three routes), for R3 streams. Each node
/// can be killed and started again on its port and store, as a machine lost and back.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each is ready (JetStream's meta leader may
    /// take a few seconds more: retry what needs it).
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn start() -> Self {
        let routes: Vec<u16> = (0..3).map(|_| crate::unused_addr().port()).collect();
        let all = routes
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = routes
            .iter()
            .enumerate()
            .map(|(k, port)| {
                NatsServer::with_args(&[
                    "-n",
                    &format!("n{k}"),
                    "--cluster_name",
                    "sluice",
                    "--cluster",
                    &format!("nats://127.0.0.1:{port}"),
                    "--routes",
                    &all,
                ])
            })
            .collect();
        Self { nodes }
    }

    /// The three client URLs, separated by commas (as `SLUICE_URL` takes them).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name` (`n0`, `n1` or `n2`, as the server reports a stream's leader).
    ///
    /// # Panics
    ///
    /// For another name.
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let k: usize = name
            .strip_prefix('n')
            .and_then(|k| k.parse().ok())
            .filter(|k| *k < 3)
            .unwrap_or_else(|| panic!("no node {name}"));
        &mut self.nodes[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_server_has_stopped_every_thread_when_freeze_returns() {
        for _ in 0..5 {
            let mut server = NatsServer::start();
            let pid = server.child.as_ref().map(Child::id).expect("running");
            server.freeze();
            let states = thread_states(pid);
            assert!(
                !states.is_empty() && states.iter().all(|&s| s == 'T'),
                "thread states right after freeze: {states:?}"
            );
        }
    }
}
