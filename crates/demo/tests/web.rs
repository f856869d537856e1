//! The web view in a real browser (headless Chromium): every event once and in order through
//! real hooks and a real relay, filters kept in the URL, tool durations, untrusted text, a
//! reload mid-stream, the token, and the README's screenshot of a demo.

mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use common::sender;
use rust_socketio::asynchronous::Client;
use rust_socketio::Payload;
use serde_json::{json, Value};
use sluice_dashboard::Dashboard;
use sluice_test_support::HookEnv;

const SESSIONS: [&str; 3] = [
    "3f1c2a9e-5b7d-4e21-9c4a-0d8e6f1b2a37",
    "8a2d4c61-0f3e-4b59-a7c2-61e9d0b3f4a8",
    "c5e7f9a1-2b4d-4c6e-8f0a-1b3c5d7e9f02",
];

async fn dashboard() -> Dashboard {
    Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Waits until the dashboard kept `n` distinct events.
async fn arrived(dashboard: &Dashboard, n: usize) {
    assert_eq!(
        dashboard
            .received()
            .wait_for(n, Duration::from_secs(30))
            .await,
        n
    );
}

/// A `claude_event` payload as the hook sends it, numbered `n` (its `event_id` is `e<n>`).
fn payload(n: usize, session: &str, name: &str, mut data: Value) -> Value {
    let subtype = match name {
        "PreToolUse" => "pre_tool",
        "PostToolUse" | "PostToolUseFailure" => "post_tool",
        "UserPromptSubmit" => "user_prompt",
        _ => "notification",
    };
    data["session_id"] = json!(session);
    data["hook_event_name"] = json!(name);
    data["event_id"] = json!(format!("e{n}"));
    let timestamp = "2026-12-07T06:00:00.000000+00:00";
    data["timestamp"] = json!(timestamp);
    json!({"event": "claude_event", "source": "hook", "type": "hook", "subtype": subtype,
           "timestamp": timestamp, "data": data})
}

async fn emit_all(client: &Client, payloads: &[Value]) {
    for payload in payloads {
        client
            .emit("claude_event", Payload::from(payload.clone()))
            .await
            .unwrap();
    }
}

/// Opens the page of `dashboard` and waits until its history is painted.
async fn open(browser: &mut Browser, url: &str) {
    browser.goto(url).await;
    browser
        .wait_until(
            "document.body.dataset.history === 'painted'",
            Duration::from_secs(20),
        )
        .await;
}

async fn wait_seq(browser: &mut Browser, seq: usize) {
    browser
        .wait_until(
            &format!("Number(document.body.dataset.seq) >= {seq}"),
            Duration::from_secs(60),
        )
        .await;
}

/// A hook input numbered `n`: a prompt `n=<n>`, in one of three sessions.
fn prompt(n: usize, cwd: &str) -> Vec<u8> {
    json!({"session_id": SESSIONS[n % 3], "hook_event_name": "UserPromptSubmit",
           "prompt": format!("n={n}"), "cwd": cwd, "transcript_path": "/dev/null"})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_and_in_order_through_real_hooks_and_a_relay() {
    const EVENTS: usize = 500;
    let hook = common::hook_binary();
    let dashboard = dashboard().await;
    let env = HookEnv::new(hook, "web-500", dashboard.addr());
    let mut browser = Browser::launch("every-event").await;
    // Opened before the first event: everything comes live.
    open(&mut browser, &dashboard.page_url()).await;
    let cwd = env.dir.display().to_string();
    let env = tokio::task::spawn_blocking(move || {
        for n in 0..EVENTS {
            let output = env.hook(&prompt(n, &cwd));
            assert!(output.status.success(), "{output:?}");
        }
        env
    })
    .await
    .unwrap();
    let log = dashboard.received();
    assert_eq!(log.wait_for(EVENTS, Duration::from_secs(60)).await, EVENTS);
    wait_seq(&mut browser, EVENTS).await;

    let expected: Vec<(u64, String)> = (0..EVENTS)
        .map(|n| (n as u64 + 1, format!("n={n}")))
        .collect();
    assert_eq!(
        browser.timeline_rows().await,
        expected,
        "each event once, in order"
    );

    // 50 of them again, with their event_id: the dashboard drops them and says so.
    let replays: Vec<Value> = log.events()[..50].iter().map(|r| r.data.clone()).collect();
    let client = sender(&dashboard.url(), |_| {}).await;
    emit_all(&client, &replays).await;
    assert!(
        sluice_test_support::eventually(Duration::from_secs(20), || log.duplicates_seen() == 50)
            .await
    );
    browser
        .wait_until(
            "document.getElementById('c-duplicates').textContent === '50'",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.timeline_rows().await, expected, "still 500");
    assert_eq!(
        browser
            .eval("document.getElementById('c-events').textContent")
            .await,
        "500"
    );
    client.disconnect().await.unwrap();
    drop(env);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_and_a_link_reproduces_the_view() {
    let dashboard = dashboard().await;
    let tools = ["Bash", "Read"];
    // 3 sessions x 2 tools x 2 phases, 60 events; their numbers are their seqs.
    let payloads: Vec<Value> = (0..60)
        .map(|n| {
            let name = if n % 2 == 0 {
                "PreToolUse"
            } else {
                "PostToolUse"
            };
            let data = json!({"tool_name": tools[(n / 2) % 2], "tool_use_id": format!("t{}", n / 2),
                              "tool_parameters": {"command": format!("n={n}")}});
            payload(n, SESSIONS[(n / 4) % 3], name, data)
        })
        .collect();
    let client = sender(&dashboard.url(), |_| {}).await;
    emit_all(&client, &payloads).await;
    arrived(&dashboard, 60).await;
    let seqs_where = |keep: &dyn Fn(&Value) -> bool| -> Vec<u64> {
        (0..60)
            .filter(|&n| keep(&payloads[n]["data"]))
            .map(|n| n as u64 + 1)
            .collect()
    };
    let shown = |rows: Vec<(u64, String)>| rows.into_iter().map(|(seq, _)| seq).collect::<Vec<_>>();

    let mut browser = Browser::launch("filters").await;
    open(&mut browser, &dashboard.page_url()).await;
    wait_seq(&mut browser, 60).await;
    let choose = |id: &str, value: &str| {
        format!(
            "(() => {{ const s = document.getElementById('{id}'); s.value = '{value}'; \
             s.dispatchEvent(new Event('change')); return s.value; }})()"
        )
    };
    assert_eq!(
        browser.eval(&choose("f-session", SESSIONS[1])).await,
        SESSIONS[1]
    );
    let by_session = seqs_where(&|d| d["session_id"] == SESSIONS[1]);
    assert_eq!(by_session.len(), 20);
    assert_eq!(shown(browser.timeline_rows().await), by_session);

    // Combined with a tool and an event type.
    browser.eval(&choose("f-tool", "Bash")).await;
    browser.eval(&choose("f-type", "PostToolUse")).await;
    let combined = seqs_where(&|d| {
        d["session_id"] == SESSIONS[1]
            && d["tool_name"] == "Bash"
            && d["hook_event_name"] == "PostToolUse"
    });
    assert_eq!(combined.len(), 5);
    assert_eq!(shown(browser.timeline_rows().await), combined);

    // The URL holds the view: opened afresh, it shows the same.
    let link = browser.eval("location.href").await;
    let link = link.as_str().unwrap().to_string();
    assert!(link.contains(&format!("session={}", SESSIONS[1])), "{link}");
    let mut again = Browser::launch("filters-link").await;
    open(&mut again, &link).await;
    wait_seq(&mut again, 60).await;
    assert_eq!(shown(again.timeline_rows().await), combined);
    assert_eq!(
        again
            .eval("document.getElementById('f-session').value")
            .await,
        SESSIONS[1]
    );
    client.disconnect().await.unwrap();
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_pair_by_tool_use_id_with_their_duration_or_running() {
    let hook = common::hook_binary();
    let dashboard = dashboard().await;
    let env = HookEnv::new(hook, "web-tools", dashboard.addr());
    let cwd = env.dir.display().to_string();
    let tool = move |name: &str, id: &str, extra: Value| {
        let mut input = json!({"session_id": SESSIONS[0], "hook_event_name": name, "cwd": cwd,
                               "tool_name": "Bash", "tool_use_id": id,
                               "tool_input": {"command": format!("{id}")}});
        if name == "PostToolUse" {
            input["tool_response"] = json!({"stdout": "", "stderr": "", "interrupted": false});
        }
        for (key, value) in extra.as_object().unwrap() {
            input[key] = value.clone();
        }
        input.to_string().into_bytes()
    };
    let (env, timed) = tokio::task::spawn_blocking(move || {
        let run = |stdin: Vec<u8>| assert!(env.hook(&stdin).status.success());
        run(tool("PreToolUse", "toolu_a", json!({})));
        run(tool("PostToolUse", "toolu_a", json!({"duration_ms": 120})));
        // Timed by the timestamps the hooks stamp: measured here from hook to hook.
        let started = Instant::now();
        run(tool("PreToolUse", "toolu_b", json!({})));
        std::thread::sleep(Duration::from_millis(300));
        let timed = started.elapsed();
        run(tool("PostToolUse", "toolu_b", json!({})));
        run(tool("PreToolUse", "toolu_c", json!({})));
        (env, timed)
    })
    .await
    .unwrap();
    arrived(&dashboard, 5).await;

    let mut browser = Browser::launch("tools").await;
    let url = format!("{}&view=tools", dashboard.page_url());
    open(&mut browser, &url).await;
    wait_seq(&mut browser, 5).await;
    let call = |id: &str| {
        format!(
            "(() => {{ const r = document.querySelector('tr[data-tool-use-id=\"{id}\"]'); \
             return r && [r.querySelector('.status').textContent, \
             r.querySelector('.duration').textContent, r.querySelector('.duration').dataset.ms || null]; }})()"
        )
    };
    assert_eq!(
        browser.eval(&call("toolu_a")).await,
        json!(["ok", "120 ms", "120"])
    );
    let b = browser.eval(&call("toolu_b")).await;
    assert_eq!(b[0], "ok");
    let shown: f64 = b[2].as_str().unwrap().parse().unwrap();
    let measured = timed.as_secs_f64() * 1000.0;
    assert!(
        (shown - measured).abs() <= 20.0,
        "shown {shown} ms, measured {measured:.1} ms"
    );
    assert_eq!(b[1], format!("{} ms", shown.round()));
    assert_eq!(
        browser.eval(&call("toolu_c")).await,
        json!(["running", "", null])
    );
    drop(env);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_text_is_shown_as_text_and_never_run() {
    let dashboard = dashboard().await;
    let evil = "<img src=x onerror=\"document.body.dataset.pwned='img'\">\
                <script>document.body.dataset.pwned='script'</script>";
    let payloads = [
        payload(0, SESSIONS[0], "UserPromptSubmit", json!({"prompt": evil})),
        payload(
            1,
            "<b>session</b>",
            "PreToolUse",
            json!({"tool_name": "<i>Bash</i>", "tool_use_id": "<u>x</u>",
                   "tool_parameters": {"command": evil}}),
        ),
    ];
    let client = sender(&dashboard.url(), |_| {}).await;
    emit_all(&client, &payloads).await;
    arrived(&dashboard, 2).await;
    let mut browser = Browser::launch("xss").await;
    open(&mut browser, &dashboard.page_url()).await;
    wait_seq(&mut browser, 2).await;
    let rows = browser.timeline_rows().await;
    assert_eq!(rows[0].1, evil, "the prompt, as text");
    // The payload, pretty-printed, as text too; and the tools view.
    browser
        .eval("document.querySelector('#spacer .row').click()")
        .await;
    browser
        .wait_until(
            "!document.getElementById('detail').hidden",
            Duration::from_secs(5),
        )
        .await;
    let detail = browser
        .eval("document.getElementById('detail-body').textContent")
        .await;
    assert!(detail.as_str().unwrap().contains("<script>"), "{detail}");
    browser
        .eval("document.querySelector('#views button[data-view=tools]').click()")
        .await;
    browser
        .wait_until(
            "document.querySelector('#tools tbody tr')",
            Duration::from_secs(5),
        )
        .await;
    // Give an image's error, had it been created, time to fire.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let verdict = browser
        .eval(
            "[document.querySelectorAll('main img, main script, main b, main i, main u').length, \
             document.body.dataset.pwned || null, \
             document.querySelector('#tools tbody .tool').textContent]",
        )
        .await;
    assert_eq!(verdict, json!([0, null, "<i>Bash</i>"]));
    client.disconnect().await.unwrap();
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_stream_keeps_every_event_once() {
    const EVENTS: usize = 1_000;
    let dashboard = dashboard().await;
    let mut browser = Browser::launch("reload").await;
    open(&mut browser, &dashboard.page_url()).await;
    let client = sender(&dashboard.url(), |_| {}).await;
    let url = dashboard.url();
    let stream = tokio::spawn(async move {
        // 5 events every 40 ms, 8 s: a stream that outlasts the reload, even on a loaded
        // machine (at 4 s, a reload under load average 10 once outlasted it).
        let mut every = tokio::time::interval(Duration::from_millis(40));
        for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(5) {
            every.tick().await;
            let payloads: Vec<Value> = chunk
                .iter()
                .map(|&n| {
                    payload(
                        n,
                        SESSIONS[n % 3],
                        "UserPromptSubmit",
                        json!({"prompt": format!("n={n}")}),
                    )
                })
                .collect();
            emit_all(&client, &payloads).await;
        }
        drop(url);
        client
    });
    wait_seq(&mut browser, 100).await;
    let log = dashboard.received();
    let before = log.len();
    browser.reload().await;
    let after = log.len();
    assert!(
        after < EVENTS,
        "the reload ended before the stream: {before}..{after} of {EVENTS}"
    );
    let client = stream.await.unwrap();
    assert_eq!(log.wait_for(EVENTS, Duration::from_secs(30)).await, EVENTS);
    wait_seq(&mut browser, EVENTS).await;
    let expected: Vec<(u64, String)> = (0..EVENTS)
        .map(|n| (n as u64 + 1, format!("n={n}")))
        .collect();
    assert_eq!(browser.timeline_rows().await, expected);
    client.disconnect().await.unwrap();
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_page_and_the_socket_are_refused() {
    let dashboard = dashboard().await;
    let mut browser = Browser::launch("token").await;
    browser.goto(&format!("{}/", dashboard.url())).await;
    let refused = browser.eval("document.body.innerText").await;
    assert!(
        refused.as_str().unwrap().contains("needs its token"),
        "{refused}"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('timeline') === null")
            .await,
        true
    );
    // The socket, from this origin, without the token, with a wrong one, and with it.
    let socket = |query: &str| {
        format!(
            "new Promise((done) => {{ const ws = new WebSocket('ws://' + location.host + \
             '/socket.io/?EIO=4&transport=websocket{query}'); \
             ws.onopen = () => {{ ws.close(); done('open'); }}; ws.onerror = () => done('refused'); }})"
        )
    };
    assert_eq!(browser.eval(&socket("")).await, "refused");
    assert_eq!(browser.eval(&socket("&token=0123")).await, "refused");
    assert_eq!(
        browser
            .eval(&socket(&format!("&token={}", dashboard.token())))
            .await,
        "open"
    );

    // A relay-like client without the token may send, and receives only its own echo: no
    // history, no live events, no counters.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = {
        let heard = std::sync::Arc::clone(&heard);
        sender(&dashboard.url(), move |event| {
            heard.lock().unwrap().push(event);
        })
        .await
    };
    let other = sender(&dashboard.url(), |_| {}).await;
    emit_all(
        &other,
        &[payload(
            0,
            SESSIONS[0],
            "UserPromptSubmit",
            json!({"prompt": "hi"}),
        )],
    )
    .await;
    emit_all(
        &client,
        &[payload(
            1,
            SESSIONS[0],
            "UserPromptSubmit",
            json!({"prompt": "mine"}),
        )],
    )
    .await;
    arrived(&dashboard, 2).await;
    // Longer than the counters' period: they would have come.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(*heard.lock().unwrap(), ["claude_event"]);
    client.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_passes_its_token_and_reports_its_state() {
    let hook = common::hook_binary();
    // As off loopback: sending needs the token.
    let dashboard = Dashboard::builder()
        .senders_need_token(true)
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let with = HookEnv::new(hook.clone(), "web-token-with", dashboard.addr());
    let without = HookEnv::new(hook, "web-token-without", dashboard.addr());
    let token = dashboard.token().to_string();
    let (with, without) = tokio::task::spawn_blocking(move || {
        let cwd = with.dir.display().to_string();
        let vars = [
            ("SLUICE_TOKEN", token.as_str()),
            ("SLUICE_STATUS_EVERY", "1"),
        ];
        assert!(with.hook_with(&vars, &prompt(0, &cwd)).status.success());
        assert!(without.hook(&prompt(1, &cwd)).status.success());
        (with, without)
    })
    .await
    .unwrap();
    arrived(&dashboard, 1).await;
    let mut browser = Browser::launch("relay-status").await;
    open(&mut browser, &dashboard.page_url()).await;
    // The relay's state, within a couple of its periods, once the event has left its store
    // (a status sent before the dashboard's ack came back says "store 1").
    let relays = browser
        .wait_until(
            "(t => t.includes('store 0') && t)(document.getElementById('relays').textContent)",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        relays, "relay breaker closed store 0 dead letters 0",
        "one relay reports: the one with the token"
    );
    // Restarted (a crash, then back on its port): the relay reports again. Before, it went
    // on emitting into the closed connection, which still "succeeded", and was never seen.
    let (addr, token, log) = (
        dashboard.addr(),
        dashboard.token().to_string(),
        dashboard.received().clone(),
    );
    dashboard.stop().await;
    let dashboard = Dashboard::builder()
        .log(log)
        .token(token)
        .senders_need_token(true)
        .start(addr)
        .await
        .unwrap();
    assert!(
        sluice_test_support::eventually(Duration::from_secs(10), || dashboard.relays().len() == 1)
            .await,
        "no state from the relay after the restart"
    );
    assert_eq!(dashboard.relays()[0]["breaker"], "closed");
    // The relay without the token keeps its event, refused.
    let kept = without.stats();
    assert_eq!(kept["spool_depth"], 1, "{kept}");
    assert_eq!(dashboard.received().len(), 1);
    assert_eq!(
        browser.timeline_rows().await,
        [(1, "n=0".to_string())],
        "the status is not a Claude Code event"
    );
    drop((with, without));
    dashboard.stop().await;
}

/// The README's picture: the page during a real `sluice-demo demo`, written to
/// `target/tmp/web-view.png` (copied to `docs/web-view.png` by hand when the page changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_of_the_demo_for_the_readme() {
    common::hook_binary();
    let tmp = std::env::temp_dir().join(format!("sluice-web-shot-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let child = Command::new(common::DEMO)
        .args(["demo", "--events", "1500", "--outage-secs", "1"])
        .env("TMPDIR", &tmp)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Running { child, tmp };
    let mut lines = BufReader::new(demo.child.stdout.take().unwrap()).lines();
    let (mut page, mut expected) = (None, None);
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.strip_prefix("sluice demo: ") {
            expected = rest
                .split("; ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok());
        }
        if let Some(url) = line.trim_start().strip_prefix("web view:") {
            page = Some(url.trim().to_string());
            break;
        }
    }
    let (page, expected) = (
        page.expect("the demo prints its web view"),
        expected.unwrap(),
    );
    let drain = std::thread::spawn(move || lines.count());
    let mut browser = Browser::launch("screenshot").await;
    open(&mut browser, &page).await;
    // Most events, through the outage (the page reconnects by itself), while the demo still
    // runs: at its end it stops the dashboard.
    wait_seq(&mut browser, expected * 9 / 10).await;
    // The relay reports its state (the demo sets SLUICE_STATUS_EVERY=1).
    browser
        .wait_until(
            "document.getElementById('relays').textContent.includes('breaker')",
            Duration::from_secs(10),
        )
        .await;
    // A tool call picked, to show its payload too.
    browser
        .eval(
            "(() => { const rows = document.querySelectorAll('#spacer .row'); \
             rows[rows.length - 4].click(); })()",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view.png");
    browser.screenshot(&path).await;
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);
    assert!(demo.child.wait().unwrap().success());
    drain.join().unwrap();
}

/// The demo of a test: stopped (SIGINT, so that it stops its relay), and its temporary
/// directory removed, when the test ends, however it ends.
struct Running {
    child: std::process::Child,
    tmp: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
