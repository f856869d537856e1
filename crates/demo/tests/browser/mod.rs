//! Headless Chromium, driven over the DevTools protocol (CDP) for the web view's tests.
//!
//! Why not `chromiumoxide` or `headless_chrome`: both compile a generated binding of the
//! whole protocol (hundreds of thousands of lines), minutes on CI's two cores, for the five
//! methods used here (`Target.attachToTarget`, `Page.navigate`, `Page.reload`,
//! `Runtime.evaluate`, `Page.captureScreenshot`). Those are plain JSON over one websocket,
//! and the websocket client (tokio-tungstenite, the one rust_socketio already builds) is in
//! the tree. `--dump-dom` and `--screenshot` alone cannot scroll, reload mid-stream or time
//! frames.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Debian's package, as `.ci/run` installs it.
const CHROMIUM: &str = "chromium";

/// The flags these machines need (root, no network): without the networking ones Chromium
/// floods the closed network with refused connections.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
];

/// One headless Chromium with one page; killed, and its profile removed, when dropped.
pub(crate) struct Browser {
    child: Child,
    profile: PathBuf,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with a fresh, empty profile and attaches to its page. Fails (with an
    /// install hint) when Chromium is missing.
    pub(crate) async fn launch(name: &str) -> Self {
        let profile =
            std::env::temp_dir().join(format!("sluice-chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(CHROMIUM)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--window-size=1280,800")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{CHROMIUM}` ({error}): the web view's tests need Debian's \
                     Chromium: apt-get install chromium"
                )
            });
        // It says where its DevTools endpoint is on stderr; the rest of stderr is drained so
        // that it never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (found, endpoint) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.trim().to_string());
                    }
                }
            }
        });
        let endpoint =
            tokio::task::spawn_blocking(move || endpoint.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap()
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!("Chromium did not open its DevTools endpoint within 30 s")
                });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap();
        let mut browser = Self {
            child,
            profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let targets = browser.send(None, "Target.getTargets", json!({})).await;
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": page, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({})).await;
        browser
    }

    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::Text(message.to_string()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(message) = self.socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["id"] == id {
                    return value;
                }
            }
            panic!("Chromium closed its DevTools connection");
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within 60 s"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// A method on the page.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// The value of `expression` in the page (a promise is awaited).
    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Opens `url` and waits until it has loaded.
    pub(crate) async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.loaded().await;
    }

    /// Reloads the page and waits until it has loaded again.
    pub(crate) async fn reload(&mut self) {
        self.eval("document.body.dataset.reloading = 'yes'").await;
        self.call("Page.reload", json!({"ignoreCache": true})).await;
        self.wait_until(
            "document.readyState === 'complete' && document.body.dataset.reloading !== 'yes'",
            Duration::from_secs(20),
        )
        .await;
    }

    async fn loaded(&mut self) {
        self.wait_until(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await;
    }

    /// Evaluates `expression` every 20 ms until it is truthy; its value. Fails at `timeout`.
    pub(crate) async fn wait_until(&mut self, expression: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let wrapped =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()");
        loop {
            let value = self.eval(&wrapped).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {timeout:?}: {expression}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The page, as a PNG, written to `path`.
    pub(crate) async fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Every event the timeline can show under the current filters, as `[seq, summary]`,
    /// found by scrolling it from top to bottom (it only renders the rows in sight).
    pub(crate) async fn timeline_rows(&mut self) -> Vec<(u64, String)> {
        let rows = self
            .eval(
                r#"(async () => {
                const box = document.getElementById('timeline');
                const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
                const seen = new Map();
                box.scrollTop = 0;
                await frame();
                for (;;) {
                  for (const row of document.querySelectorAll('#spacer .row')) {
                    seen.set(Number(row.dataset.seq), row.querySelector('.sum').textContent);
                  }
                  if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) break;
                  box.scrollTop += box.clientHeight;
                  await frame();
                }
                return [...seen.entries()].sort((a, b) => a[0] - b[0]);
              })()"#,
            )
            .await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row[0].as_u64().unwrap(),
                    row[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
