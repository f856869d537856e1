//! `sluice-hook dashboard`: the embedded dashboard on its own, one readable line per event.

use std::net::SocketAddr;

use sluice_dashboard::{Dashboard, Log, Received, DEFAULT_HISTORY};
use sluice_relay::config::Token;

/// How many of the last event ids the dashboard remembers to tell a repeat: a relay sends an
/// event again within seconds to minutes of the first time, well within this many events.
const REMEMBERED_IDS: usize = 50_000;

/// One line for a received event: time, subtype, session, and what happened.
pub(crate) fn describe(received: &Received) -> String {
    let event = &received.data;
    let data = &event["data"];
    let time = event["timestamp"]
        .as_str()
        .and_then(|t| t.get(11..19))
        .unwrap_or("--:--:--");
    let subtype = event["subtype"].as_str().unwrap_or(&received.event);
    let session: String = data["session_id"]
        .as_str()
        .unwrap_or("-")
        .chars()
        .take(8)
        .collect();
    let text = |key: &str| {
        data[key]
            .as_str()
            .map(|s| s.chars().take(80).collect::<String>())
    };
    let detail = match subtype {
        "pre_tool" | "post_tool" => {
            let tool = data["tool_name"].as_str().unwrap_or("?");
            let what = text("command_preview")
                .or_else(|| {
                    data["tool_parameters"]["file_path"]
                        .as_str()
                        .map(str::to_string)
                })
                .or_else(|| {
                    data["tool_parameters"]["description"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_default();
            match data["success"].as_bool() {
                Some(ok) => format!("{tool} {} {what}", if ok { "ok" } else { "FAILED" }),
                None => format!("{tool} {what}"),
            }
        }
        "user_prompt" => format!("\"{}\"", text("prompt").unwrap_or_default()),
        "notification" => text("message").unwrap_or_default(),
        "subagent_start" => data["tool_parameters"]["subagent_type"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    };
    let branch = data["git_branch"]
        .as_str()
        .map(|b| format!(" [{b}]"))
        .unwrap_or_default();
    format!("{time} {subtype:<14} {session}{branch} {detail}")
}

/// `token`: the page's (SLUICE_TOKEN, the one relays send), random when not given.
pub(crate) fn run(addr: SocketAddr, token: Option<Token>) -> i32 {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return 1;
    };
    runtime.block_on(async {
        // It runs for as long as someone watches: it keeps the web view's history and the
        // ids needed to tell a relay's repeats, not every event.
        let mut builder = Dashboard::builder().log(Log::bounded(DEFAULT_HISTORY, REMEMBERED_IDS));
        if let Some(token) = token {
            builder = builder.token(token.expose());
        }
        let dashboard = match builder.start(addr).await {
            Ok(dashboard) => dashboard,
            Err(error) => {
                eprintln!("sluice-hook dashboard: cannot listen on {addr}: {error}");
                return 1;
            }
        };
        // Listen for Ctrl-C and SIGTERM before saying we listen: one that comes right after
        // the line must stop us cleanly, with the summary (a service manager sends SIGTERM).
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            eprintln!("sluice-hook dashboard: cannot listen for Ctrl-C and SIGTERM");
            return 1;
        };
        println!(
            "sluice dashboard listening on {} (Socket.IO, namespace /); Ctrl-C to stop",
            dashboard.url()
        );
        println!("point the hook at it with: SLUICE_URL={}", dashboard.url());
        println!("open the web view: {}", dashboard.page_url());
        let mut feed = dashboard.received().subscribe();
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(received) => println!("{}", describe(&received)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        println!("... {n} events not shown (printing fell behind)");
                    }
                    Err(_) => break,
                },
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        let total = dashboard.received().len();
        dashboard.stop().await;
        println!("{total} events received");
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_readable() {
        let received = Received {
            namespace: "/".into(),
            event: "claude_event".into(),
            args: 1,
            data: json!({"subtype": "post_tool", "timestamp": "2026-11-28T05:06:26.758504+00:00",
                "data": {"session_id": "3f1c2a9e-5b7d", "tool_name": "Bash", "success": false,
                         "command_preview": "cargo test", "git_branch": "main"}}),
        };
        assert_eq!(
            describe(&received),
            "05:06:26 post_tool      3f1c2a9e [main] Bash FAILED cargo test"
        );
    }
}
