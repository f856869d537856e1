//! The demo's script: a realistic stream of Claude Code hook inputs over three sessions,
//! the same on every run (a fixed xorshift seed), each tagged with `demo_seq`.

use serde_json::{json, Value};

const SESSIONS: [&str; 3] = [
    "3f1c2a9e-5b7d-4e21-9c4a-0d8e6f1b2a37",
    "8a2d4c61-0f3e-4b59-a7c2-61e9d0b3f4a8",
    "c5e7f9a1-2b4d-4c6e-8f0a-1b3c5d7e9f02",
];
const PROMPTS: [&str; 6] = [
    "Fix the failing test in src/lib.rs",
    "Add a --verbose flag to the CLI",
    "Why is the build slow? Profile it",
    "Refactor the parser into its own module",
    "Write docs for the public API",
    "Review the last commit for bugs",
];
const COMMANDS: [&str; 6] = [
    "cargo test",
    "git status --short",
    "cargo build --release",
    "rg TODO src/",
    "git diff HEAD~1",
    "ls -la",
];
const FILES: [&str; 5] = [
    "src/lib.rs",
    "src/main.rs",
    "src/parser.rs",
    "README.md",
    "Cargo.toml",
];

/// A realistic stream of hook inputs: prompts, tool calls in pairs, subagents,
/// notifications and stops, over a few sessions; every input tagged with `demo_seq`.
pub(crate) fn script(events: usize) -> Vec<Value> {
    let mut inputs = Vec::with_capacity(events);
    let mut rng = fastrand_like(42);
    let mut step = 0usize;
    while inputs.len() < events {
        let session = SESSIONS[step % SESSIONS.len()];
        let base = |name: &str| {
            json!({
                "session_id": session,
                "transcript_path": format!("/home/user/.claude/projects/demo/{session}.jsonl"),
                "cwd": "/home/user/demo",
                "permission_mode": "default",
                "hook_event_name": name,
            })
        };
        let mut prompt = base("UserPromptSubmit");
        prompt["prompt"] = json!(PROMPTS[rng() % PROMPTS.len()]);
        inputs.push(prompt);
        for _ in 0..(3 + rng() % 5) {
            let (tool, input, response) = match rng() % 6 {
                0 | 1 => {
                    let command = COMMANDS[rng() % COMMANDS.len()];
                    let failed = rng().is_multiple_of(5);
                    (
                        "Bash",
                        json!({"command": command, "description": format!("Run {command}")}),
                        json!({"stdout": "ok\n", "stderr": if failed { "error: failed\n" } else { "" },
                               "interrupted": false, "isImage": false}),
                    )
                }
                2 => (
                    "Read",
                    json!({"file_path": FILES[rng() % FILES.len()]}),
                    json!({"content": "fn main() {}\n"}),
                ),
                3 => (
                    "Edit",
                    json!({"file_path": FILES[rng() % FILES.len()],
                                      "old_string": "a", "new_string": "b"}),
                    json!({"success": true}),
                ),
                4 => (
                    "Grep",
                    json!({"pattern": "TODO", "path": "src"}),
                    json!({"content": "3 matches"}),
                ),
                _ => (
                    "Task",
                    json!({"subagent_type": "research", "description": "Survey the code",
                                      "prompt": "List the modules under src/"}),
                    json!({"content": "done"}),
                ),
            };
            let mut pre = base("PreToolUse");
            pre["tool_name"] = json!(tool);
            pre["tool_input"] = input.clone();
            inputs.push(pre);
            if tool == "Task" {
                let mut stop = base("SubagentStop");
                stop["stop_hook_active"] = json!(false);
                inputs.push(stop);
            }
            let mut post = base("PostToolUse");
            post["tool_name"] = json!(tool);
            post["tool_input"] = input;
            post["tool_response"] = response;
            inputs.push(post);
        }
        if rng().is_multiple_of(3) {
            let mut note = base("Notification");
            note["message"] = json!("Claude needs your permission to use Bash");
            inputs.push(note);
        }
        let mut stop = base("Stop");
        stop["stop_hook_active"] = json!(false);
        inputs.push(stop);
        step += 1;
    }
    inputs.truncate(events);
    for (seq, input) in inputs.iter_mut().enumerate() {
        input["demo_seq"] = json!(seq);
    }
    inputs
}

/// A small deterministic generator (xorshift), so every demo plays the same session.
fn fastrand_like(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 33) as usize
    }
}

/// How many dashboard events an input makes: a Task's PreToolUse also starts a subagent.
pub(crate) fn expected_events(input: &Value) -> usize {
    if input["hook_event_name"] == "PreToolUse" && input["tool_name"] == "Task" {
        2
    } else {
        1
    }
}
