//! `sluice-hook install` / `uninstall`: the Claude Code settings entries that run this binary,
//! merged into (or taken out of) a settings file with a backup, keeping the user's key order.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Whether a handler runs sluice-hook with the settings `install` writes: the program
/// alone, named `sluice-hook`, from any path (an install from another path is ours too,
/// and is replaced). A handler with arguments or variables of its own (a second
/// dashboard, say) is the user's. `install` and `uninstall` agree on this.
fn is_ours(handler: &Value) -> bool {
    let Some(run) = handler.get("command").and_then(Value::as_str) else {
        return false;
    };
    match shlex::split(run).as_deref() {
        Some([program]) => Path::new(program)
            .file_name()
            .is_some_and(|name| name == "sluice-hook"),
        _ => false,
    }
}

/// What [`merge`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Events that gained a handler.
    pub added: usize,
    /// Handlers of ours that now run `command` (an install from another path).
    pub updated: usize,
    /// Extra handlers of ours taken out (an event that ran sluice-hook twice).
    pub doubles: usize,
}

impl Merged {
    pub fn changed(self) -> bool {
        self != Self::default()
    }
}

/// Merges our entries into `settings`, keeping every other hook and setting in place. An
/// event that already runs sluice-hook keeps that handler, in its place, now running
/// `command`; any further copy goes.
pub fn merge(settings: &mut Value, command: &str, events: &[&HookEvent]) -> Merged {
    let mut merged = Merged::default();
    if !settings.is_object() {
        *settings = json!({});
    }
    let Some(root) = settings.as_object_mut() else {
        return merged;
    };
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    if !hooks.is_object() {
        *hooks = json!({});
    }
    let Some(hooks) = hooks.as_object_mut() else {
        return merged;
    };
    for event in events {
        let list = hooks.entry(event.name).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let Some(groups) = list.as_array_mut() else {
            continue;
        };
        let mut found = false;
        groups.retain_mut(|group| {
            let Some(handlers) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let had = handlers.len();
            handlers.retain_mut(|handler| {
                if !is_ours(handler) {
                    return true;
                }
                if std::mem::replace(&mut found, true) {
                    merged.doubles += 1;
                    return false;
                }
                if handler["command"] != command {
                    handler["command"] = json!(command);
                    merged.updated += 1;
                }
                true
            });
            !(handlers.is_empty() && had > 0)
        });
        if !found {
            groups.push(entry(command, event));
            merged.added += 1;
        }
    }
    merged
}

/// Takes every handler that runs sluice-hook out of `settings`, then the groups and event
/// lists this left empty (and `hooks` itself if it ends empty); returns how many handlers.
pub fn remove(settings: &mut Value) -> usize {
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
            handlers.retain(|h| !is_ours(h));
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

/// The command Claude Code should run: this binary, quoted for the POSIX shell Claude Code
/// runs it with (a path with a space is one word).
pub fn command() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let path = exe
        .to_str()
        .ok_or_else(|| format!("this binary's path is not UTF-8: {}", exe.display()))?;
    shlex::try_quote(path)
        .map(|quoted| quoted.into_owned())
        .map_err(|e| format!("cannot quote {path} for a shell: {e}"))
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
    let merged = merge(&mut settings, &command, events);
    if !merged.changed() {
        return Ok(format!(
            "{} already runs {command} for these {} events; nothing changed",
            path.display(),
            events.len()
        ));
    }
    let backup = save(&path, &settings)?;
    let mut did = Vec::new();
    if merged.added > 0 {
        did.push(format!("added {command} for {} events", merged.added));
    }
    if merged.updated > 0 {
        did.push(format!(
            "pointed {} handlers of an earlier install at {command}",
            merged.updated
        ));
    }
    if merged.doubles > 0 {
        did.push(format!("removed {} extra copies", merged.doubles));
    }
    Ok(format!(
        "{} in {}{}",
        did.join(", "),
        path.display(),
        backup_note(backup.as_deref())
    ))
}

/// Takes our entries out of the `scope`'s settings file; says what it did.
pub fn uninstall(scope: Scope) -> Result<String, String> {
    let path = scope.path()?;
    if !path.exists() {
        return Ok(format!(
            "{} does not exist; nothing to remove",
            path.display()
        ));
    }
    let mut settings = read(&path)?;
    let removed = remove(&mut settings);
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

/// Backs the file up (when there is one) under a fresh name, then writes `settings` in its
/// place. A symlink (a dotfiles repository) is followed and stays a link: the file it
/// points to is what changes. The new file keeps the old one's mode, and so does the
/// backup; it is written to a temporary file in the same directory, which is fsynced, then
/// renamed over, and the directory fsynced. Returns the backup's path.
fn save(path: &Path, settings: &Value) -> Result<Option<PathBuf>, String> {
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(error) => return Err(format!("cannot resolve {}: {error}", path.display())),
    };
    let mode = fs::metadata(&target)
        .ok()
        .map(|meta| meta.permissions().mode());
    let backup = match mode {
        Some(_) => Some(backup(&target)?),
        None => None,
    };
    let dir = match target.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            dir.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let text = serde_json::to_string_pretty(settings).map_err(|e| e.to_string())? + "\n";
    let temporary = target.with_extension("json.sluice-tmp");
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode.unwrap_or(0o644) & 0o7777)
            .open(&temporary)?;
        // The mode asked for at creation is cut by the umask: set it as it was.
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &target)?;
        fs::File::open(&dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        format!("cannot write {}: {e}", target.display())
    })?;
    Ok(backup)
}

/// Copies `file` to a fresh `<name>.bak.<seconds>` beside it (its mode goes with it).
fn backup(file: &Path) -> Result<PathBuf, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut backup = file.with_extension(format!("json.bak.{stamp}"));
    let mut n = 1;
    while backup.exists() {
        backup = file.with_extension(format!("json.bak.{stamp}.{n}"));
        n += 1;
    }
    fs::copy(file, &backup).map_err(|e| format!("backup failed, nothing written: {e}"))?;
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
        assert_eq!(
            merge(&mut settings, "/bin/sluice-hook", &defaults).added,
            10
        );
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
            !merge(&mut settings, "/bin/sluice-hook", &defaults).changed(),
            "a second merge changes nothing"
        );
        assert_eq!(settings["hooks"].as_object().unwrap().len(), 10);
    }

    #[test]
    fn ours_is_sluice_hook_alone_from_any_path_quoted_or_not() {
        let handler = |command: &str| json!({"type": "command", "command": command});
        for ours in [
            "/bin/sluice-hook",
            "'/opt/my tools/sluice-hook'",
            "/opt/my\\ tools/sluice-hook",
            "sluice-hook",
        ] {
            assert!(is_ours(&handler(ours)), "{ours}");
        }
        for theirs in [
            "/bin/sluice-hook --url http://other:8765",
            "SLUICE_URL=http://other:8765 /bin/sluice-hook",
            "/bin/other-hook",
            "'/bin/sluice-hook",
        ] {
            assert!(!is_ours(&handler(theirs)), "{theirs}");
        }
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
        // The old install's handler now runs this binary, in its place: not a second one.
        assert_eq!(settings["hooks"]["Stop"].as_array().unwrap().len(), 1);
        assert_eq!(
            settings["hooks"]["Stop"][0]["hooks"][1]["command"],
            "/bin/sluice-hook"
        );
        assert_eq!(remove(&mut settings), events::ALL.len());
        let mut expected = original;
        expected["hooks"]["Stop"][0]["hooks"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(settings, expected);
        let keys: Vec<_> = settings.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["zeta", "hooks", "alpha"], "the user's order is kept");
        assert_eq!(remove(&mut settings), 0);
    }
}
