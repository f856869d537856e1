//! The built `sluice-hook` binary, as Claude Code runs it, against a real dashboard on
//! 127.0.0.1: real processes, a real relay, a real spool.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use sluice_dashboard::{Acks, Dashboard, Log};

use sluice_test_support::{eventually, prompt, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

fn prompts(log: &Log) -> Vec<String> {
    log.events()
        .iter()
        .filter_map(|r| r.data["data"]["prompt"].as_str().map(str::to_string))
        .collect()
}

fn assert_quiet_success(output: &Output) {
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "nothing on stdout: {output:?}");
}

async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_arrives_as_a_claude_event_with_its_subtype() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "fixtures", dashboard.addr());
    let fixtures = [
        ("pre_tool_use", vec!["pre_tool"]),
        ("post_tool_use", vec!["post_tool"]),
        ("pre_tool_use_task", vec!["pre_tool", "subagent_start"]),
        ("user_prompt_submit", vec!["user_prompt"]),
        ("notification", vec!["notification"]),
        ("stop", vec!["stop"]),
        ("subagent_stop", vec!["subagent_stop"]),
    ];
    let mut expected = Vec::new();
    for (name, subtypes) in &fixtures {
        let input = std::fs::read(format!(
            "{}/tests/fixtures/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let output = env.hook(&input);
        assert_quiet_success(&output);
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        expected.extend(subtypes.iter().map(|s| s.to_string()));
    }
    let log = dashboard.received();
    assert_eq!(
        log.wait_for(expected.len(), Duration::from_secs(10)).await,
        expected.len()
    );
    let events = log.events();
    let subtypes: Vec<String> = events
        .iter()
        .map(|r| r.data["subtype"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(subtypes, expected);
    for event in &events {
        assert_eq!(event.event, "claude_event");
        assert_eq!(event.namespace, "/");
        assert_eq!(event.data["type"], "hook");
        assert_eq!(
            event.data["data"]["session_id"],
            "3f1c2a9e-5b7d-4e21-9c4a-0d8e6f1b2a37"
        );
    }
    let post = events
        .iter()
        .find(|e| e.data["subtype"] == "post_tool")
        .unwrap();
    assert_eq!(
        post.data["data"]["success"], false,
        "the tests in the fixture failed"
    );
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_invocations_arrive_in_order_through_one_relay() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "two-hundred", dashboard.addr());
    for n in 0..200 {
        assert_quiet_success(&env.hook(&prompt(n)));
    }
    assert_eq!(
        dashboard
            .received()
            .wait_for(200, Duration::from_secs(10))
            .await,
        200
    );
    let expected: Vec<String> = (0..200).map(|n| format!("prompt {n}")).collect();
    assert_eq!(prompts(dashboard.received()), expected);
    let stats = env.stats();
    assert_eq!(
        stats["hook_events"], 200,
        "one relay received them all: {stats}"
    );
    assert_eq!(stats["active_connections"], 1, "{stats}");
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_spooled_while_the_dashboard_is_down_are_delivered_in_order() {
    let addr = free_addr().await;
    let env = HookEnv::new(BIN, "down", addr);
    for n in 0..50 {
        assert_quiet_success(&env.hook(&prompt(n)));
    }
    let stats = env.stats();
    assert_eq!(stats["hook_events"], 50, "{stats}");
    assert_eq!(stats["sent"], 0, "{stats}");
    assert_eq!(
        stats["spool_depth"], 50,
        "all 50 wait in the spool: {stats}"
    );
    let dashboard = Dashboard::start(addr).await.unwrap();
    assert_eq!(
        dashboard
            .received()
            .wait_for(50, Duration::from_secs(40))
            .await,
        50,
        "{}",
        env.stats()
    );
    let expected: Vec<String> = (0..50).map(|n| format!("prompt {n}")).collect();
    assert_eq!(prompts(dashboard.received()), expected);
    // The cursor moves past each batch once the sink reports it sent.
    eventually(Duration::from_secs(5), || env.stats()["spool_depth"] == 0).await;
    assert_eq!(env.stats()["spool_depth"], 0);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_loses_nothing_it_acknowledged() {
    let addr = free_addr().await;
    let env = HookEnv::new(BIN, "sigkill", addr);
    for n in 0..10 {
        assert_quiet_success(&env.hook(&prompt(n)));
    }
    let first = env.stats()["relay_pid"].as_u64().expect("a relay runs");
    Command::new("kill")
        .arg("-9")
        .arg(first.to_string())
        .status()
        .unwrap();
    let dashboard = Dashboard::start(addr).await.unwrap();
    for n in 10..20 {
        assert_quiet_success(&env.hook(&prompt(n)));
    }
    let second = env.stats()["relay_pid"].as_u64().expect("a new relay runs");
    assert_ne!(first, second);
    assert_eq!(
        dashboard
            .received()
            .wait_for(20, Duration::from_secs(40))
            .await,
        20
    );
    let expected: Vec<String> = (0..20).map(|n| format!("prompt {n}")).collect();
    assert_eq!(prompts(dashboard.received()), expected);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_exit_zero_with_one_line_on_stderr() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "malformed", dashboard.addr());
    // A relay is running, so the refusals are counted.
    assert_quiet_success(&env.hook(&prompt(0)));
    let huge = vec![b'{'; (1 << 20) + 10];
    let cases: [&[u8]; 6] = [
        b"",
        b"{not json",
        b"\xff\xfe\xfd",
        &huge,
        b"{\"a\":1}",
        b"[1,2,3]",
    ];
    for input in cases {
        let output = env.hook(input);
        assert_quiet_success(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("sluice-hook: ignored:"), "{stderr}");
    }
    assert_eq!(env.stats()["hook_bad_inputs"], 6);
    assert_eq!(
        dashboard
            .received()
            .wait_for(1, Duration::from_secs(5))
            .await,
        1
    );
    dashboard.stop().await;
}

/// Live `sluice-relay` processes serving `env` (by their environment).
fn relays_of(env: &HookEnv) -> usize {
    let marker = format!("SLUICE_RUNTIME_DIR={}", env.dir.join("run").display());
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    let path = entry.path();
                    let is_relay = std::fs::read(path.join("cmdline"))
                        .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("sluice-relay"));
                    let ours = std::fs::read(path.join("environ")).is_ok_and(|environ| {
                        environ
                            .split(|b| *b == 0)
                            .any(|var| var == marker.as_bytes())
                    });
                    is_relay && ours
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_starting_at_once_start_one_relay() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "at-once", dashboard.addr());
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let hooks: Vec<_> = (0..8)
            .map(|n| {
                scope.spawn({
                    let env = &env;
                    move || env.hook(&prompt(n))
                })
            })
            .collect();
        hooks.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for output in &outputs {
        assert_quiet_success(output);
    }
    assert_eq!(
        dashboard
            .received()
            .wait_for(8, Duration::from_secs(10))
            .await,
        8
    );
    // Relays that lost the race have exited by now; exactly one serves.
    eventually(Duration::from_secs(5), || relays_of(&env) == 1).await;
    assert_eq!(relays_of(&env), 1);
    dashboard.stop().await;
}

/// A dashboard on a free loopback port that records every event and acknowledges none.
async fn never_acking_dashboard() -> (Dashboard, Log) {
    let log = Log::default();
    let dashboard = Dashboard::start_with("127.0.0.1:0".parse().unwrap(), log.clone(), Acks::Never)
        .await
        .unwrap();
    (dashboard, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_send_honours_the_delivery_setting() {
    // Today's main: the direct send waited for acks whatever SLUICE_DELIVERY said, so a hook
    // with written delivery, no relay and no spool lost its event to a server that never acks.
    let (dashboard, log) = never_acking_dashboard().await;
    let env = HookEnv::new(BIN, "direct-delivery", dashboard.addr());
    // No relay may start and the state directory is a file: no spool either.
    let not_a_dir = env.dir.join("not-a-dir");
    std::fs::write(&not_a_dir, b"").unwrap();
    let no_spool = [
        ("SLUICE_STATE_DIR", not_a_dir.to_str().unwrap()),
        ("SLUICE_NO_SPAWN", "1"),
    ];
    let flag = env.run(&["--delivery", "written"], &no_spool, &prompt(0));
    assert_quiet_success(&flag);
    assert!(flag.stderr.is_empty(), "sent directly: {flag:?}");
    let variable = [no_spool.as_slice(), &[("SLUICE_DELIVERY", "written")]].concat();
    let variable = env.hook_with(&variable, &prompt(1));
    assert_quiet_success(&variable);
    assert!(variable.stderr.is_empty(), "sent directly: {variable:?}");
    assert_eq!(log.wait_for(2, Duration::from_secs(10)).await, 2);
    assert_eq!(prompts(&log), ["prompt 0", "prompt 1"]);
    // Acknowledged delivery from a server that never acks: written, never confirmed.
    let acknowledged = env.hook_with(&no_spool, &prompt(2));
    assert_quiet_success(&acknowledged);
    let stderr = String::from_utf8_lossy(&acknowledged.stderr);
    assert!(
        stderr.starts_with("sluice-hook: event not delivered:") && stderr.contains("direct send"),
        "{stderr}"
    );
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_that_never_acks_is_named_and_written_delivery_serves_it() {
    let (dashboard, log) = never_acking_dashboard().await;
    let env = HookEnv::new(BIN, "never-acks", dashboard.addr());
    for n in 0..3 {
        assert_quiet_success(&env.hook(&prompt(n)));
    }
    // The events reach the server, but without an ack none counts as delivered: the relay
    // must say what the user can do about it, where they look (`stats`).
    let hinted = |stats: &serde_json::Value| {
        stats["last_delivery_error"]
            .as_str()
            .is_some_and(|said| said.contains("SLUICE_DELIVERY=written"))
    };
    eventually(Duration::from_secs(15), || hinted(&env.stats())).await;
    let stats = env.stats();
    let said = stats["last_delivery_error"].as_str().unwrap_or_default();
    assert!(said.contains("SLUICE_DELIVERY=written"), "{stats}");
    assert_eq!(stats["spool_depth"], 3, "{stats}");
    assert_eq!(stats["delivered"], 0, "{stats}");

    // Told so, the user stops the relay, and the next hook starts one with written
    // delivery: the store drains.
    let stopped = env.command().arg("stop").output().unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    let written = [("SLUICE_DELIVERY", "written")];
    for n in 3..5 {
        assert_quiet_success(&env.hook_with(&written, &prompt(n)));
    }
    eventually(Duration::from_secs(15), || env.stats()["spool_depth"] == 0).await;
    let stats = env.stats();
    assert_eq!(stats["spool_depth"], 0, "{stats}");
    // Written is not received: the last events may still be on their way.
    assert_eq!(log.wait_for(5, Duration::from_secs(10)).await, 5);
    // Each event once under its id (the log keeps one copy per id; a copy under another id
    // would show here twice).
    let mut arrived = prompts(&log);
    arrived.sort();
    let expected: Vec<String> = (0..5).map(|n| format!("prompt {n}")).collect();
    assert_eq!(arrived, expected);
    dashboard.stop().await;
}
