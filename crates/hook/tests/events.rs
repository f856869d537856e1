//! Every hook event Claude Code 2.1.332 knows, one fixture each (the real captures where
//! there are some), run through the built hook into the embedded dashboard, subtype checked.

use std::time::Duration;

use serde_json::Value;
use sluice_dashboard::Dashboard;

use sluice_test_support::HookEnv;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// Fixture (under tests/fixtures/events) and the subtype the dashboard must see.
const EVENTS: [(&str, &str); 34] = [
    ("pre_tool_use", "pre_tool"),
    ("post_tool_use", "post_tool"),
    ("post_tool_use_failure", "post_tool"),
    ("post_tool_batch", "post_tool_batch"),
    ("notification", "notification"),
    ("user_prompt_submit", "user_prompt"),
    ("user_prompt_expansion", "user_prompt_expansion"),
    ("session_start", "session_start"),
    ("session_end", "session_end"),
    ("stop", "stop"),
    ("stop_failure", "stop_failure"),
    ("subagent_start", "subagent_start"),
    ("subagent_stop", "subagent_stop"),
    ("pre_compact", "pre_compact"),
    ("post_compact", "post_compact"),
    ("pre_model_switch", "pre_model_switch"),
    ("post_model_switch", "post_model_switch"),
    ("permission_request", "permission_request"),
    ("permission_denied", "permission_denied"),
    ("setup", "setup"),
    ("teammate_idle", "teammate_idle"),
    ("task_created", "task_created"),
    ("task_completed", "task_completed"),
    ("elicitation", "elicitation"),
    ("elicitation_result", "elicitation_result"),
    ("config_change", "config_change"),
    ("worktree_create", "worktree_create"),
    ("worktree_remove", "worktree_remove"),
    ("instructions_loaded", "instructions_loaded"),
    ("cwd_changed", "cwd_changed"),
    ("file_changed", "file_changed"),
    ("directory_added", "directory_added"),
    ("message_display", "message_display"),
    ("pre_skill_shell_command", "pre_skill_shell_command"),
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_dashboard_with_its_subtype() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "events", dashboard.addr());
    let mut names = Vec::new();
    for (file, _) in EVENTS {
        let input = fixture(file);
        let parsed: Value = serde_json::from_slice(&input).unwrap();
        names.push(parsed["hook_event_name"].as_str().unwrap().to_string());
        let output = env.hook(&input);
        assert!(output.status.success(), "{file}: {output:?}");
        assert!(
            output.stdout.is_empty() && output.stderr.is_empty(),
            "{file}: {output:?}"
        );
    }
    // An event no version documents yet is still forwarded.
    let future =
        br#"{"session_id":"s","cwd":"/tmp","hook_event_name":"BranchSwitched","to":"main"}"#;
    assert!(env.hook(future).status.success());

    let log = dashboard.received();
    assert_eq!(log.wait_for(35, Duration::from_secs(20)).await, 35);
    let events = log.events();
    for (n, (file, subtype)) in EVENTS.iter().enumerate() {
        let event = &events[n].data;
        assert_eq!(event["subtype"], *subtype, "{file}");
        assert_eq!(event["data"]["hook_event_name"], names[n], "{file}");
        assert_eq!(
            event["data"]["session_id"], "5e637825-90c8-4fca-9cea-04d717d5923f",
            "{file}"
        );
    }
    let future = &events[34].data;
    assert_eq!(future["subtype"], "branch_switched");
    assert_eq!(future["data"]["to"], "main");

    let of = |name: &str| &events[names.iter().position(|n| n == name).unwrap()].data["data"];
    // A failed tool call: a post-tool failure, its error text kept.
    let failure = of("PostToolUseFailure");
    assert_eq!(failure["success"], false);
    assert!(failure["error"].as_str().unwrap().contains("test failed"));
    assert_eq!(failure["tool_name"], "Bash");
    assert_eq!(
        of("PostToolUse")["success"],
        true,
        "the real capture succeeded"
    );
    assert_eq!(of("SessionStart")["source"], "startup");
    assert_eq!(of("SessionEnd")["reason"], "other");
    assert_eq!(of("PreToolUse")["tool_use_id"], "toolu_msg_1");
    assert_eq!(of("Stop")["effort"]["level"], "medium");
    assert_eq!(of("MessageDisplay")["delta"], "done");
    dashboard.stop().await;
}

#[test]
fn the_fixtures_carry_the_fields_claude_code_sends() {
    for (file, _) in EVENTS {
        let input: Value = serde_json::from_slice(&fixture(file)).unwrap();
        for field in ["session_id", "transcript_path", "cwd", "hook_event_name"] {
            assert!(input[field].is_string(), "{file}: {field}");
        }
        // Every event but the four real captures without them carries these too.
        if ![
            "session_start",
            "session_end",
            "message_display",
            "user_prompt_submit",
        ]
        .contains(&file)
        {
            assert!(input["prompt_id"].is_string(), "{file}: prompt_id");
            assert!(
                input["permission_mode"].is_string(),
                "{file}: permission_mode"
            );
            assert!(input["effort"]["level"].is_string(), "{file}: effort");
        }
    }
}
