//! `sluice-hook install`: the Claude Code settings that run this binary for every event.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The hook events registered, and whether they take a tool matcher.
const EVENTS: [(&str, bool); 7] = [
    ("PreToolUse", true),
    ("PostToolUse", true),
    ("UserPromptSubmit", false),
    ("Notification", false),
    ("Stop", false),
    ("SubagentStop", false),
    ("SubagentStart", false),
];

/// The `hooks` block pointing at `command`.
pub fn hooks_block(command: &str) -> Value {
    let mut hooks = Map::new();
    for (event, matcher) in EVENTS {
        hooks.insert(event.to_string(), json!([entry(command, matcher)]));
    }
    json!({ "hooks": hooks })
}

fn entry(command: &str, matcher: bool) -> Value {
    let hook = json!({ "type": "command", "command": command });
    if matcher {
        json!({ "matcher": "*", "hooks": [hook] })
    } else {
        json!({ "hooks": [hook] })
    }
}

/// Merges our hooks into `settings`, keeping every other hook and setting; returns whether
/// anything changed.
pub fn merge(settings: &mut Value, command: &str) -> bool {
    if !settings.is_object() {
        *settings = json!({});
    }
    let Some(root) = settings.as_object_mut() else {
        return false;
    };
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    let Some(hooks) = hooks.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (event, matcher) in EVENTS {
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        let present = list.iter().any(|group| {
            group["hooks"]
                .as_array()
                .is_some_and(|hs| hs.iter().any(|h| h["command"] == command))
        });
        if !present {
            list.push(entry(command, matcher));
            changed = true;
        }
    }
    changed
}

fn settings_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("settings.json"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".claude/settings.json"))
}

/// Prints the block, or with `write` merges it into the user's settings (backing them up).
pub fn run(write: bool) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let command = exe.display().to_string();
    if !write {
        return serde_json::to_string_pretty(&hooks_block(&command)).map_err(|e| e.to_string());
    }
    let path = settings_path().ok_or("no HOME: cannot find Claude Code's settings")?;
    let mut settings = match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON ({e}); left untouched", path.display()))?,
        Err(_) => json!({}),
    };
    if !merge(&mut settings, &command) {
        return Ok(format!("{} already runs {command}", path.display()));
    }
    if path.exists() {
        let backup = path.with_extension(format!(
            "json.bak.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        fs::copy(&path, &backup).map_err(|e| format!("backup failed: {e}"))?;
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&settings).map_err(|e| e.to_string())?;
    fs::write(&path, text + "\n").map_err(|e| e.to_string())?;
    Ok(format!("added sluice-hook to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_hooks_and_is_idempotent() {
        let mut settings = json!({
            "model": "opus",
            "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "other"}]}]
            }
        });
        assert!(merge(&mut settings, "/bin/sluice-hook"));
        assert_eq!(settings["model"], "opus");
        let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0]["hooks"][0]["command"], "other");
        assert_eq!(pre[1]["matcher"], "*");
        assert_eq!(
            settings["hooks"]["Stop"][0]["hooks"][0]["command"],
            "/bin/sluice-hook"
        );
        assert!(settings["hooks"]["Stop"][0].get("matcher").is_none());
        assert!(
            !merge(&mut settings, "/bin/sluice-hook"),
            "a second merge changes nothing"
        );
        assert_eq!(settings["hooks"].as_object().unwrap().len(), 7);
    }
}
