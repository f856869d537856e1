//! Every hook event Claude Code 2.1.337 knows, one fixture each, run through the built hook
//! into the embedded dashboard, subtype and fields checked. Eight fixtures are real captures
//! of 2.1.332; the others are written to the input types of the agent SDK built for the
//! release that added them.

use std::time::Duration;

use serde_json::Value;
use sluice_dashboard::Dashboard;

use sluice_test_support::HookEnv;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// Fixture (under tests/fixtures/events), the subtype the dashboard must see, and the
/// fields of its own the event always carries, space-separated: the required fields of its
/// input type in `@anthropic-ai/claude-agent-sdk` 0.3.332 (`sdk.d.ts`, built for Claude Code
/// 2.1.332; `Interrupt`'s from 0.3.337), besides the common `session_id`,
/// `transcript_path`, `cwd` and `hook_event_name`.
const EVENTS: [(&str, &str, &str); 35] = [
    ("pre_tool_use", "pre_tool", "tool_name tool_input tool_use_id"),
    ("post_tool_use", "post_tool", "tool_name tool_input tool_response tool_use_id"),
    ("post_tool_use_failure", "post_tool", "tool_name tool_input tool_use_id error"),
    ("post_tool_batch", "post_tool_batch", "tool_calls"),
    ("notification", "notification", "message notification_type"),
    ("user_prompt_submit", "user_prompt", "prompt"),
    ("user_prompt_expansion", "user_prompt_expansion", "expansion_type command_name command_args prompt"),
    ("session_start", "session_start", "source"),
    ("session_end", "session_end", "reason"),
    ("stop", "stop", "stop_hook_active"),
    ("stop_failure", "stop_failure", "error"),
    ("interrupt", "interrupt", "source reason"),
    ("subagent_start", "subagent_start", "agent_id agent_type"),
    ("subagent_stop", "subagent_stop", "stop_hook_active agent_id agent_transcript_path agent_type"),
    ("pre_compact", "pre_compact", "trigger custom_instructions"),
    ("post_compact", "post_compact", "trigger compact_summary"),
    ("pre_model_switch", "pre_model_switch", "from_model to_model requested_model source context_tokens prompt_cache_warm cache_ttl estimated_cache_write_usd pricing"),
    ("post_model_switch", "post_model_switch", "from_model to_model requested_model source context_tokens prompt_cache_warm cache_ttl estimated_cache_write_usd pricing"),
    ("permission_request", "permission_request", "tool_name tool_input"),
    ("permission_denied", "permission_denied", "tool_name tool_input tool_use_id reason"),
    ("setup", "setup", "trigger"),
    ("teammate_idle", "teammate_idle", "teammate_name team_name"),
    ("task_created", "task_created", "task_id task_subject"),
    ("task_completed", "task_completed", "task_id task_subject"),
    ("elicitation", "elicitation", "mcp_server_name message"),
    ("elicitation_result", "elicitation_result", "mcp_server_name action"),
    ("config_change", "config_change", "source"),
    ("worktree_create", "worktree_create", "name"),
    ("worktree_remove", "worktree_remove", "worktree_path"),
    ("instructions_loaded", "instructions_loaded", "file_path memory_type load_reason"),
    ("cwd_changed", "cwd_changed", "old_cwd new_cwd"),
    ("file_changed", "file_changed", "file_path event"),
    ("directory_added", "directory_added", "directory source"),
    ("message_display", "message_display", "turn_id message_id index final delta"),
    ("pre_skill_shell_command", "pre_skill_shell_command", "tool_name tool_input tool_use_id command_name invoked_by"),
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
    for (file, _, _) in EVENTS {
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
    let total = EVENTS.len() + 1;
    assert_eq!(log.wait_for(total, Duration::from_secs(20)).await, total);
    let events = log.events();
    for (n, (file, subtype, fields)) in EVENTS.iter().enumerate() {
        let event = &events[n].data;
        assert_eq!(event["subtype"], *subtype, "{file}");
        let data = event["data"].as_object().unwrap();
        for field in fields.split_whitespace() {
            assert!(data.contains_key(field), "{file}: {field} did not arrive");
        }
        assert_eq!(event["data"]["hook_event_name"], names[n], "{file}");
        assert_eq!(
            event["data"]["session_id"], "5e637825-90c8-4fca-9cea-04d717d5923f",
            "{file}"
        );
    }
    let future = &events[EVENTS.len()].data;
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
    let interrupt = of("Interrupt");
    assert_eq!(
        (
            &interrupt["source"],
            &interrupt["reason"],
            &interrupt["via"]
        ),
        (&"user".into(), &"stop".into(), &"terminal".into())
    );
    dashboard.stop().await;
}

#[test]
fn the_fixtures_carry_the_fields_claude_code_sends() {
    for (file, _, fields) in EVENTS {
        let input: Value = serde_json::from_slice(&fixture(file)).unwrap();
        for field in ["session_id", "transcript_path", "cwd", "hook_event_name"] {
            assert!(input[field].is_string(), "{file}: {field}");
        }
        let own = input.as_object().unwrap();
        for field in fields.split_whitespace() {
            assert!(own.contains_key(field), "{file}: {field}");
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
