//! A hook's stdin JSON, turned into the dashboard's `claude_event` payloads.

use std::fmt;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::{events, git, time};

/// The largest hook input read whole (1 MiB); a bigger one arrives as a stub.
pub use sluice_relay::protocol::MAX_INPUT;
/// Strings in `data` longer than this are cut and marked: the dashboard silently drops a
/// websocket message over 1,000,000 bytes.
const MAX_STRING: usize = 16 * 1024;
/// The most characters of a prompt or command kept in a preview.
const PREVIEW: usize = 200;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadInput {
    Empty,
    TooLarge(usize),
    NotUtf8,
    NotJson(String),
    NotAnObject,
    NoEventName,
    /// A big input still not read when the hook's budget ran out.
    TimedOut,
}

impl BadInput {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge(_) => "too_large",
            Self::NotUtf8 => "not_utf8",
            Self::NotJson(_) => "not_json",
            Self::NotAnObject => "not_an_object",
            Self::NoEventName => "no_hook_event_name",
            Self::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty input: expected the hook's JSON on stdin"),
            Self::TooLarge(n) => write!(f, "input of {n} bytes is over the 1 MiB limit"),
            Self::NotUtf8 => f.write_str("input is not UTF-8"),
            Self::NotJson(error) => write!(f, "input is not JSON: {error}"),
            Self::NotAnObject => f.write_str("input is not a JSON object"),
            Self::NoEventName => f.write_str("input has no hook_event_name"),
            Self::TimedOut => f.write_str("input not read to its end within the hook's budget"),
        }
    }
}

/// Parses stdin bytes into the hook's JSON object.
pub fn parse(input: &[u8]) -> Result<Map<String, Value>, BadInput> {
    if input.len() > MAX_INPUT {
        return Err(BadInput::TooLarge(input.len()));
    }
    let text = std::str::from_utf8(input).map_err(|_| BadInput::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(BadInput::Empty);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|error| BadInput::NotJson(error.to_string()))?;
    hook_object(value)
}

/// The hook's JSON object, if `value` is one that names its event.
pub fn hook_object(value: Value) -> Result<Map<String, Value>, BadInput> {
    let Value::Object(map) = value else {
        return Err(BadInput::NotAnObject);
    };
    // An empty name would reach the dashboard as an event with no subtype.
    if map
        .get("hook_event_name")
        .and_then(Value::as_str)
        .is_none_or(|name| name.trim().is_empty())
    {
        return Err(BadInput::NoEventName);
    }
    Ok(map)
}

/// The dashboard subtype of an event: `PreToolUse` → `pre_tool`, and so on for every event
/// Claude Code documents (see [`crate::events`]); any other name in snake case.
pub fn subtype(hook_event_name: &str) -> String {
    match events::find(hook_event_name) {
        Some(event) => event.subtype.to_string(),
        None => snake_case(hook_event_name),
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c == '-' || c == ' ' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// The payloads to send for one hook input: one, or two for a `Task` tool's `PreToolUse`
/// (which also starts a subagent).
pub fn payloads(input: Map<String, Value>) -> Vec<Value> {
    let name = input
        .get("hook_event_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let subtype = subtype(&name);
    let timestamp = time::now_rfc3339();
    let mut data = input;
    let cwd = data.get("cwd").and_then(Value::as_str).map(str::to_string);
    if let Some(cwd) = &cwd {
        data.insert("working_directory".to_string(), json!(cwd));
        if let Some(branch) = git::branch(Path::new(cwd)) {
            data.insert("git_branch".to_string(), json!(branch));
        }
    }
    data.insert("timestamp".to_string(), json!(timestamp));
    let tool = data
        .get("tool_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(input) = data.get("tool_input").cloned() {
        data.insert("tool_parameters".to_string(), input);
    }
    match subtype.as_str() {
        "user_prompt" => {
            if let Some(prompt) = data.get("prompt").and_then(Value::as_str) {
                let (preview, length) = (preview(prompt), prompt.chars().count());
                data.insert("prompt_preview".to_string(), json!(preview));
                data.insert("prompt_length".to_string(), json!(length));
            }
        }
        "pre_tool" => summarize_tool(&mut data, tool.as_deref()),
        "post_tool" => {
            summarize_tool(&mut data, tool.as_deref());
            let response = data.get("tool_response");
            // PostToolUseFailure: the call failed, and its `error` text stays in `data`.
            let failed = name == "PostToolUseFailure";
            let success = !failed && response.is_none_or(succeeded);
            let size = response.map_or(0, output_size);
            data.insert("success".to_string(), json!(success));
            data.insert("output_size".to_string(), json!(size));
        }
        _ => {}
    }
    let mut data = Value::Object(data);
    truncate_strings(&mut data);
    let event = |subtype: &str, data: Value| {
        json!({
            "event": "claude_event",
            "source": "hook",
            "type": "hook",
            "subtype": subtype,
            "timestamp": timestamp,
            "data": data,
        })
    };
    let mut out = vec![event(&subtype, data.clone())];
    if subtype == "pre_tool" && tool.as_deref() == Some("Task") {
        out.push(event("subagent_start", data));
    }
    out
}

fn preview(text: &str) -> String {
    let mut preview: String = text.chars().take(PREVIEW).collect();
    if preview.len() < text.len() {
        preview.push('…');
    }
    preview
}

fn summarize_tool(data: &mut Map<String, Value>, tool: Option<&str>) {
    let input = data.get("tool_input").and_then(Value::as_object);
    let keys: Vec<String> = input
        .map(|i| i.keys().cloned().collect())
        .unwrap_or_default();
    let command = input
        .and_then(|i| i.get("command"))
        .and_then(Value::as_str)
        .map(preview);
    let file_operation = matches!(
        tool,
        Some("Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit")
    );
    data.insert("parameter_keys".to_string(), json!(keys));
    if let Some(command) = command {
        data.insert("command_preview".to_string(), json!(command));
    }
    data.insert("is_file_operation".to_string(), json!(file_operation));
}

/// Whether a tool's response says it worked: an explicit `success`, `is_error`/`isError`,
/// `error`, `interrupted` or exit code decides; for output with `stderr` and no exit code,
/// a non-empty `stderr` counts as a failure.
fn succeeded(response: &Value) -> bool {
    let Some(response) = response.as_object() else {
        return true;
    };
    if let Some(success) = response.get("success").and_then(Value::as_bool) {
        return success;
    }
    for key in ["is_error", "isError", "interrupted"] {
        if response.get(key).and_then(Value::as_bool) == Some(true) {
            return false;
        }
    }
    if response
        .get("error")
        .is_some_and(|e| !e.is_null() && e != "")
    {
        return false;
    }
    for key in ["exit_code", "exitCode", "returnCode", "return_code"] {
        if let Some(code) = response.get(key).and_then(Value::as_i64) {
            return code == 0;
        }
    }
    response
        .get("stderr")
        .and_then(Value::as_str)
        .is_none_or(|stderr| stderr.trim().is_empty())
}

fn output_size(response: &Value) -> usize {
    match response {
        Value::String(text) => text.len(),
        Value::Object(map) => ["stdout", "stderr", "output", "content"]
            .iter()
            .filter_map(|key| map.get(*key))
            .map(|value| match value {
                Value::String(text) => text.len(),
                other => other.to_string().len(),
            })
            .sum(),
        other => other.to_string().len(),
    }
}

/// Cuts every string longer than `MAX_STRING` and marks the event `truncated`.
fn truncate_strings(data: &mut Value) {
    fn walk(value: &mut Value, cut: &mut bool) {
        match value {
            Value::String(text) if text.len() > MAX_STRING => {
                let mut end = MAX_STRING;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str("…[truncated]");
                *cut = true;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, cut)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, cut)),
            _ => {}
        }
    }
    let mut cut = false;
    walk(data, &mut cut);
    if cut {
        if let Some(map) = data.as_object_mut() {
            map.insert("truncated".to_string(), json!(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Map<String, Value> {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn every_fixture_becomes_a_claude_event_with_its_subtype() {
        for (name, subtype) in [
            ("pre_tool_use", "pre_tool"),
            ("post_tool_use", "post_tool"),
            ("user_prompt_submit", "user_prompt"),
            ("notification", "notification"),
            ("stop", "stop"),
            ("subagent_stop", "subagent_stop"),
        ] {
            let out = payloads(fixture(name));
            assert_eq!(out.len(), 1, "{name}");
            let event = &out[0];
            assert_eq!(event["event"], "claude_event");
            assert_eq!(event["type"], "hook");
            assert_eq!(event["source"], "hook");
            assert_eq!(event["subtype"], subtype, "{name}");
            assert_eq!(
                event["data"]["session_id"],
                "3f1c2a9e-5b7d-4e21-9c4a-0d8e6f1b2a37"
            );
            assert_eq!(event["data"]["working_directory"], "/home/user/demo");
            assert!(event["timestamp"].as_str().unwrap().ends_with("+00:00"));
        }
    }

    #[test]
    fn tools_are_summarized_and_success_comes_from_the_response() {
        let pre = &payloads(fixture("pre_tool_use"))[0];
        assert_eq!(pre["data"]["tool_name"], "Bash");
        assert_eq!(
            pre["data"]["tool_parameters"]["command"],
            "git status --short"
        );
        assert_eq!(pre["data"]["command_preview"], "git status --short");
        assert_eq!(pre["data"]["is_file_operation"], false);
        let post = &payloads(fixture("post_tool_use"))[0];
        // The tests failed: stderr says so. The reference always claimed success.
        assert_eq!(post["data"]["success"], false);
        assert!(post["data"]["output_size"].as_u64().unwrap() > 0);
        let prompt = &payloads(fixture("user_prompt_submit"))[0];
        assert_eq!(prompt["data"]["prompt_length"], 34);
    }

    #[test]
    fn a_task_pre_tool_use_also_starts_a_subagent() {
        let out = payloads(fixture("pre_tool_use_task"));
        let subtypes: Vec<_> = out.iter().map(|e| e["subtype"].clone()).collect();
        assert_eq!(subtypes, ["pre_tool", "subagent_start"]);
    }

    #[test]
    fn unknown_events_and_fields_are_forwarded() {
        let input = parse(
            br#"{"hook_event_name":"PreCompact","session_id":"s","custom":{"x":1},"trigger":"auto"}"#,
        )
        .unwrap();
        let event = &payloads(input)[0];
        assert_eq!(event["subtype"], "pre_compact");
        assert_eq!(event["data"]["custom"]["x"], 1);
        assert_eq!(event["data"]["trigger"], "auto");
        assert_eq!(subtype("SessionStart"), "session_start");
    }

    #[test]
    fn long_strings_are_cut_and_marked() {
        let big = "x".repeat(100_000);
        let input = parse(
            json!({"hook_event_name":"PostToolUse","tool_name":"Read","tool_response":{"content": big}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let event = &payloads(input)[0];
        assert_eq!(event["data"]["truncated"], true);
        assert!(event.to_string().len() < 40_000);
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(parse(b""), Err(BadInput::Empty));
        assert_eq!(parse(b"  \n"), Err(BadInput::Empty));
        assert_eq!(parse(b"\xff\xfe"), Err(BadInput::NotUtf8));
        assert!(matches!(parse(b"{not json"), Err(BadInput::NotJson(_))));
        assert_eq!(parse(b"[1,2]"), Err(BadInput::NotAnObject));
        assert_eq!(parse(b"{\"a\":1}"), Err(BadInput::NoEventName));
        assert_eq!(
            parse(br#"{"hook_event_name":" "}"#),
            Err(BadInput::NoEventName),
            "an empty name is no name"
        );
        let huge = vec![b' '; MAX_INPUT + 1];
        assert_eq!(parse(&huge), Err(BadInput::TooLarge(MAX_INPUT + 1)));
    }
}
