//! The web view under load, in headless Chromium: 10,000 events injected straight into the
//! dashboard, then a page opened on them while 500 more arrive every second. Alone in its
//! test binary, so that no other test shares the cores while frames are timed.
//!
//! Figures (BENCHMARKS.md): `cargo test -p sluice-demo --test web_load -- --nocapture`.

#![allow(clippy::print_stdout)] // the figures, for BENCHMARKS.md

mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use rust_socketio::Payload;
use serde_json::{json, Value};
use sluice_dashboard::Dashboard;

const HISTORY: usize = 10_000;
/// Events per second while frames are timed, sent 10 at a time.
const RATE: usize = 500;
const STREAM_SECS: usize = 8;
/// 33 ms: 30 frames a second. Chromium's frames last whole vsync intervals (16.7 ms), so a
/// frame is 16.7, 33.3 or 50 ms (timer jitter adds up to 0.1): p95 within two intervals.
const FRAME_BUDGET_MS: f64 = 1000.0 / 30.0 + 0.1;
/// Frames are timed in this many windows.
const WINDOWS: usize = 5;

fn payload(n: usize) -> Value {
    let session = ["3f1c2a9e-5b7d", "8a2d4c61-0f3e", "c5e7f9a1-2b4d"][n % 3];
    let (name, subtype) = if n.is_multiple_of(2) {
        ("PreToolUse", "pre_tool")
    } else {
        ("PostToolUse", "post_tool")
    };
    json!({"event": "claude_event", "source": "hook", "type": "hook", "subtype": subtype,
           "timestamp": "2026-12-07T06:00:00.000000+00:00",
           "data": {"session_id": session, "hook_event_name": name, "tool_name": "Bash",
                    "tool_use_id": format!("t{}", n / 2), "event_id": format!("e{n}"),
                    "command_preview": format!("cargo test n={n}"), "duration_ms": n % 300,
                    "tool_parameters": {"command": format!("cargo test n={n}")}}})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_paints_within_a_second_and_frames_keep_up_at_500_events_a_second() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = common::sender(&dashboard.url(), |_| {}).await;
    for n in 0..HISTORY {
        client
            .emit("claude_event", Payload::from(payload(n)))
            .await
            .unwrap();
    }
    let log = dashboard.received();
    assert_eq!(
        log.wait_for(HISTORY, Duration::from_secs(60)).await,
        HISTORY
    );

    let mut browser = Browser::launch("load").await;
    browser.goto(&dashboard.page_url()).await;
    browser
        .wait_until(
            "document.body.dataset.history === 'painted'",
            Duration::from_secs(30),
        )
        .await;
    let painted = browser
        .eval("performance.getEntriesByName('history-painted')[0].startTime")
        .await
        .as_f64()
        .unwrap();
    let marks = browser
        .eval("performance.getEntriesByType('mark').map((m) => m.name + ' ' + Math.round(m.startTime)).join(', ')")
        .await;
    let last_row = browser
        .eval("[...document.querySelectorAll('#spacer .row')].pop().dataset.seq")
        .await;
    assert_eq!(last_row, HISTORY.to_string(), "the newest event in sight");

    // 500 events a second, while the page times its frames.
    let stream = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        let per_tick = RATE / 50;
        for tick in 0..STREAM_SECS * 50 {
            every.tick().await;
            for n in 0..per_tick {
                let n = HISTORY + tick * per_tick + n;
                client
                    .emit("claude_event", Payload::from(payload(n)))
                    .await
                    .unwrap();
            }
        }
        client
    });
    // Half a second in, for the stream to be flowing; timed for most of the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timed_ms = (STREAM_SECS as u64 - 2) * 1000;
    let frames = browser
        .eval(&format!(
            "new Promise((done) => {{ const gaps = []; let last = null; \
             const end = performance.now() + {timed_ms}; \
             const tick = (t) => {{ if (last !== null) gaps.push(t - last); last = t; \
               if (t < end) requestAnimationFrame(tick); else done(gaps); }}; \
             requestAnimationFrame(tick); }})"
        ))
        .await;
    let gaps: Vec<f64> = frames
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    // Five windows of about 1.2 s: this machine is shared, and one burst of another
    // process's work stalls every frame in its window. The median window is the figure.
    let mut windows: Vec<f64> = gaps
        .chunks(gaps.len().div_ceil(WINDOWS))
        .map(|window| {
            let mut window = window.to_vec();
            window.sort_by(f64::total_cmp);
            percentile(&window, 0.95)
        })
        .collect();
    let each = format!("{windows:.1?}");
    windows.sort_by(f64::total_cmp);
    let p95 = windows[windows.len() / 2];
    let mut gaps = gaps;
    gaps.sort_by(f64::total_cmp);
    let client = stream.await.unwrap();
    let total = HISTORY + RATE * STREAM_SECS;
    assert_eq!(log.wait_for(total, Duration::from_secs(30)).await, total);
    browser
        .wait_until(
            &format!("document.body.dataset.seq === '{total}'"),
            Duration::from_secs(30),
        )
        .await;
    let (median, max) = (percentile(&gaps, 0.5), gaps[gaps.len() - 1]);
    println!(
        "web view: history of {HISTORY} events painted {painted:.0} ms after navigation; \
         at {RATE} events/s, {} frames: median {median:.1} ms, p95 {p95:.1} ms (median of \
         the windows' p95s {each} ms), max {max:.1} ms (page marks, ms after navigation: {})",
        gaps.len(),
        marks.as_str().unwrap_or_default()
    );
    assert!(painted <= 1_000.0, "history painted after {painted:.0} ms");
    assert!(
        gaps.len() >= 60,
        "too few frames ({}) to time: the page stalled",
        gaps.len()
    );
    assert!(p95 <= FRAME_BUDGET_MS, "p95 frame time {p95:.1} ms");
    client.disconnect().await.unwrap();
    dashboard.stop().await;
}
