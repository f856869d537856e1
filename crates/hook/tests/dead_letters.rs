//! Dead letters: a dashboard whose handler fails on one payload, and one that acknowledges
//! nothing, with the built `sluice-hook`, its relay and a real dashboard on 127.0.0.1; the
//! other events numbered and counted at the dashboard.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_dashboard::{Acks, Dashboard, Log};
use sluice_test_support::{eventually, prompt, prompt_number, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// The payload the dashboard fails on.
fn poison() -> Vec<u8> {
    json!({
        "session_id": "s", "cwd": "/tmp", "hook_event_name": "UserPromptSubmit",
        "prompt": "poison"
    })
    .to_string()
    .into_bytes()
}

fn numbers(log: &Log) -> Vec<usize> {
    log.events()
        .iter()
        .filter_map(|e| prompt_number(&e.data["data"]))
        .collect()
}

fn dead_letters(env: &HookEnv, args: &[&str]) -> (i32, Value) {
    let output = env
        .command()
        .arg("dead-letters")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), value)
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Sends `before` numbered events, the poison, then `after` more, one every few ms; checks
/// that the others all arrive in order within 30 s of the poison, that it is set aside
/// after three failures alone and sent no more, and that `--retry` brings it back.
async fn poison_among(before: usize, after: usize, idle_secs: &str) {
    let dashboard = Dashboard::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Log::default(),
        Acks::Refusing("poison"),
    )
    .await
    .unwrap();
    let addr = dashboard.addr();
    let log = dashboard.received().clone();
    let env = HookEnv::new(BIN, &format!("poison-{before}-{after}"), addr);
    let vars = [("SLUICE_IDLE_SECS", idle_secs)];
    let hook = |input: &[u8]| {
        let output = env.hook_with(&vars, input);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{output:?}"
        );
        std::thread::sleep(Duration::from_millis(3));
    };
    for n in 0..before {
        hook(&prompt(n));
    }
    let poisoned = Instant::now();
    hook(&poison());
    for n in before..before + after {
        hook(&prompt(n));
    }
    let all = before + after;
    assert!(
        eventually(Duration::from_secs(30), || numbers(&log).len() == all).await,
        "the others did not arrive within 30 s of the poison: {:?}",
        numbers(&log)
    );
    assert!(poisoned.elapsed() < Duration::from_secs(30));
    let mut first = numbers(&log);
    first.dedup();
    assert_eq!(
        first,
        (0..all).collect::<Vec<_>>(),
        "first arrivals in order"
    );

    // Set aside: listed, counted, and sent no more.
    let listed = || dead_letters(&env, &[]).1;
    assert!(
        eventually(Duration::from_secs(40), || listed()
            .as_array()
            .is_some_and(|letters| letters.len() == 1))
        .await,
        "never set aside: {}",
        listed()
    );
    let letters = listed();
    let letter = &letters[0];
    assert_eq!(letter["event"], "UserPromptSubmit");
    assert!(letter["attempts"].as_u64().unwrap() >= 3, "{letter}");
    assert!(
        letter["last_error"].as_str().unwrap().contains("ack"),
        "{letter}"
    );
    assert!(letter["size"].as_u64().unwrap() > 0);
    let sends = log.duplicates_seen();
    let pid = env.stats()["relay_pid"].as_u64();
    if idle_secs == "1" {
        // Dead letters do not keep a relay from its idle exit.
        let pid = pid.expect("a relay runs");
        assert!(
            eventually(Duration::from_secs(10), || !alive(pid)).await,
            "the relay stayed for its dead letter"
        );
    } else {
        let stats = env.stats();
        assert_eq!(stats["dead_letters"], 1, "{stats}");
        assert_eq!(stats["spool_depth"], 0, "{stats}");
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            log.duplicates_seen(),
            sends,
            "sent again after it was set aside"
        );
    }

    // The dashboard is mended; --retry puts the event back and it arrives.
    dashboard.stop().await;
    let dashboard = Dashboard::start_with(addr, log.clone(), Acks::Immediate)
        .await
        .unwrap();
    let event_id = letter["event_id"].as_str().unwrap().to_string();
    let (code, retried) = dead_letters(&env, &["--retry", &event_id]);
    assert_eq!((code, retried), (0, json!({"retried": 1})));
    // A hook (the relay may have exited) and the retried event go out.
    hook(&prompt(all));
    assert!(
        eventually(Duration::from_secs(15), || {
            env.stats()["delivered"].as_u64().is_some_and(|d| d >= 1)
                && listed().as_array().is_some_and(Vec::is_empty)
                && env.stats()["spool_depth"] == 0
        })
        .await,
        "the retried event was not delivered: {}",
        env.stats()
    );
    assert_eq!(
        dead_letters(&env, &["--drop", "nope"]).0,
        1,
        "an unknown id is refused"
    );
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_never_acked_in_the_middle_is_set_aside_and_the_rest_flows() {
    // Today's main sent it again every few seconds for ever, and the events behind it
    // waited behind it.
    poison_among(10, 10, "60").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_never_acked_last_is_set_aside_and_the_relay_still_idles_out() {
    poison_among(10, 0, "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_acks_nothing_gets_nothing_set_aside() {
    let dashboard =
        Dashboard::start_with("127.0.0.1:0".parse().unwrap(), Log::default(), Acks::Never)
            .await
            .unwrap();
    let env = HookEnv::new(BIN, "acks-nothing", dashboard.addr());
    for n in 0..5 {
        assert!(env.hook(&prompt(n)).status.success());
    }
    // Longer than an event the server acks others around takes to be set aside (about
    // 20 s), and past the first unproven isolation.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let stats = env.stats();
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    assert_eq!(stats["spool_depth"], 5, "{stats}");
    assert!(
        stats["last_delivery_error"]
            .as_str()
            .is_some_and(|error| error.contains("SLUICE_DELIVERY=written")),
        "the hint stays: {stats}"
    );
    assert_eq!(dead_letters(&env, &[]), (0, json!([])));
    dashboard.stop().await;
}
