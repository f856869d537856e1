//! `sluice-hook install` / `uninstall`: the Claude Code settings entries that run this binary,
//! merged into (or taken out of) a settings file with a backup, keeping the user's key order.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::events::HookEvent;

/// Which settings file: Claude Code reads all three, the narrower winning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    // `~/.claude/settings.json` (or `$CLAUDE_CONFIG_DIR/settings.json`): every project.
    User,
    // `.claude/settings.json` in the current directory: the project, shared through git.
    Project,
    // `.claude/settings.local.json` in the current directory: the project, for you only.
    Local,
}

impl Scope {
    /// The settings file of this scope.
    pub fn path(self) -> Result<PathBuf, String> {
        match self {
            Self::User => {
                if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
                    return Ok(PathBuf::from(dir).join("settings.json"));
                }
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|home| Path::new(&home).join(".claude/settings.json"))
                    .ok_or_else(|| "no HOME: cannot find Claude Code's user settings".to_string())
            }
            Self::Project => Ok(PathBuf::from(".claude/settings.json")),
            Self::Local => Ok(PathBuf::from(".claude/settings.local.json")),
        }
    }
}

/// The `hooks` block pointing at `command`, for `events`.
pub fn hooks_block(command: &str, events: &[&HookEvent]) -> Value {
    let mut hooks = Map::new();
    for event in events {
        hooks.insert(event.name.to_string(), json!([entry(command, event)]));
    }
    json!({ "hooks": hooks })
}

fn entry(command: &str, event: &HookEvent) -> Value {
    let hook = json!({ "type": "command", "command": command });
    if event.matcher {
        json!({ "matcher": "*", "hooks": [hook] })
    } else {
        json!({ "hooks": [hook] })
    }
}

/// Whether a handler in settings runs sluice-hook: `command` exactly, or a program named
/// `sluice-hook` with no arguments (an earlier install from another path is ours too).
fn is_ours(handler: &Value, command: &str) -> bool {
    let Some(run) = handler.get("command").and_then(Value::as_str) else {
        return false;
    };
    run == command
        || (run.split_whitespace().count() == 1
            && Path::new(run)
                .file_name()
                .is_some_and(|name| name == "sluice-hook"))
}

/// Merges our entries into `settings`, keeping every other hook and setting in place;
/// returns how many events gained an entry.
pub fn merge(settings: &mut Value, command: &str, events: &[&HookEvent]) -> usize {
    if !settings.is_object() {
        *settings = json!({});
    }
    let Some(root) = settings.as_object_mut() else {
        return 0;
    };
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    let Some(hooks) = hooks.as_object_mut() else {
        return 0;
    };
    let mut added = 0;
    for event in events {
        let list = hooks.entry(event.name).or_insert_with(|| json!([]));
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
            list.push(entry(command, event));
            added += 1;
        }
    }
    added
}

/// Takes every handler that runs sluice-hook out of `settings`, then the groups and event
/// lists this left empty (and `hooks` itself if it ends empty); returns how many handlers.
pub fn remove(settings: &mut Value, command: &str) -> usize {
    let Some(hooks) = settings.get_mut("hooks").and_then(Value::as_object_mut) else {
        return 0;
    };
    let mut removed = 0;
    let mut emptied = Vec::new();
    for (event, list) in hooks.iter_mut() {
        let Some(groups) = list.as_array_mut() else {
            continue;
        };
        let before = removed;
        groups.retain_mut(|group| {
            let Some(handlers) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let had = handlers.len();
            handlers.retain(|h| !is_ours(h, command));
            removed += had - handlers.len();
            !(handlers.is_empty() && had > 0)
        });
        if groups.is_empty() && removed > before {
            emptied.push(event.clone());
        }
    }
    for event in emptied {
        hooks.shift_remove(&event);
    }
    if hooks.is_empty() && removed > 0 {
        if let Some(root) = settings.as_object_mut() {
            root.shift_remove("hooks");
        }
    }
    removed
}

/// The command Claude Code should run: this binary.
pub fn command() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    Ok(exe.display().to_string())
}

/// The settings block to paste, for `events`.
pub fn print(events: &[&HookEvent]) -> Result<String, String> {
    serde_json::to_string_pretty(&hooks_block(&command()?, events)).map_err(|e| e.to_string())
}

/// Merges our entries for `events` into the `scope`'s settings file; says what it did.
pub fn write(scope: Scope, events: &[&HookEvent]) -> Result<String, String> {
    let command = command()?;
    let path = scope.path()?;
    let mut settings = read(&path)?;
    let added = merge(&mut settings, &command, events);
    if added == 0 {
        return Ok(format!(
            "{} already runs {command} for these {} events; nothing changed",
            path.display(),
            events.len()
        ));
    }
    let backup = save(&path, &settings)?;
    Ok(format!(
        "added {command} to {} for {added} events{}",
        path.display(),
        backup_note(backup.as_deref())
    ))
}

/// Takes our entries out of the `scope`'s settings file; says what it did.
pub fn uninstall(scope: Scope) -> Result<String, String> {
    let command = command()?;
    let path = scope.path()?;
    if !path.exists() {
        return Ok(format!(
            "{} does not exist; nothing to remove",
            path.display()
        ));
    }
    let mut settings = read(&path)?;
    let removed = remove(&mut settings, &command);
    if removed == 0 {
        return Ok(format!(
            "{} does not run sluice-hook; nothing changed",
            path.display()
        ));
    }
    let backup = save(&path, &settings)?;
    Ok(format!(
        "removed {removed} sluice-hook entries from {}{}",
        path.display(),
        backup_note(backup.as_deref())
    ))
}

fn backup_note(backup: Option<&Path>) -> String {
    backup.map_or_else(String::new, |b| format!("; backup: {}", b.display()))
}

fn read(path: &Path) -> Result<Value, String> {
    match fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(json!({})),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON ({e}); left untouched", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Backs the file up (when there is one) under a fresh name, then writes `settings` through
/// a temporary file and a rename; returns the backup's path.
fn save(path: &Path, settings: &Value) -> Result<Option<PathBuf>, String> {
    let backup = if path.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut backup = path.with_extension(format!("json.bak.{stamp}"));
        let mut n = 1;
        while backup.exists() {
            backup = path.with_extension(format!("json.bak.{stamp}.{n}"));
            n += 1;
        }
        fs::copy(path, &backup).map_err(|e| format!("backup failed, nothing written: {e}"))?;
        Some(backup)
    } else {
        None
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(settings).map_err(|e| e.to_string())? + "\n";
    let temporary = path.with_extension("json.sluice-tmp");
    fs::write(&temporary, text)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[test]
    fn merging_keeps_other_hooks_and_is_idempotent() {
        let mut settings = json!({
            "model": "opus",
            "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "other"}]}]
            }
        });
        let defaults = events::defaults();
        assert_eq!(merge(&mut settings, "/bin/sluice-hook", &defaults), 10);
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
        assert_eq!(
            merge(&mut settings, "/bin/sluice-hook", &defaults),
            0,
            "a second merge changes nothing"
        );
        assert_eq!(settings["hooks"].as_object().unwrap().len(), 10);
    }

    #[test]
    fn removing_takes_out_exactly_ours() {
        let original = json!({
            "zeta": 1,
            "hooks": {
                "Stop": [{"hooks": [
                    {"type": "command", "command": "notify-send done"},
                    {"type": "command", "command": "/old/path/sluice-hook"}
                ]}],
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}]
            },
            "alpha": 2
        });
        let mut settings = original.clone();
        merge(
            &mut settings,
            "/bin/sluice-hook",
            &events::ALL.iter().collect::<Vec<_>>(),
        );
        assert_eq!(settings["hooks"]["Stop"].as_array().unwrap().len(), 2);
        // The old install's handler goes too: it runs sluice-hook.
        assert_eq!(remove(&mut settings, "/bin/sluice-hook"), 35);
        let mut expected = original;
        expected["hooks"]["Stop"][0]["hooks"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(settings, expected);
        let keys: Vec<_> = settings.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["zeta", "hooks", "alpha"], "the user's order is kept");
        assert_eq!(remove(&mut settings, "/bin/sluice-hook"), 0);
    }
}
