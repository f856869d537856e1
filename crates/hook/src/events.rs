//! Claude Code's hook events (2.1.337 knows these 35): the dashboard subtype of each, which
//! take a tool matcher, and which `install` registers by default. An event missing here
//! still arrives, under its name in snake case (see [`crate::normalize::subtype`]).

/// One hook event Claude Code can run a command for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookEvent {
    /// Its `hook_event_name`, as in settings.json.
    pub name: &'static str,
    /// The dashboard's `subtype` for it.
    pub subtype: &'static str,
    /// Whether its settings entry takes a tool matcher (`"matcher": "*"`).
    pub matcher: bool,
    /// Whether `install` registers it by default: the events every current Claude Code
    /// accepts (a settings file naming an event an older version does not know may be
    /// refused).
    pub default: bool,
}

const fn event(
    name: &'static str,
    subtype: &'static str,
    matcher: bool,
    default: bool,
) -> HookEvent {
    HookEvent {
        name,
        subtype,
        matcher,
        default,
    }
}

/// Every event, in the order `install` writes them.
pub const ALL: [HookEvent; 35] = [
    event("PreToolUse", "pre_tool", true, true),
    event("PostToolUse", "post_tool", true, true),
    // A failed tool call is a post-tool event that failed: `success: false`, `error` kept.
    event("PostToolUseFailure", "post_tool", true, false),
    event("PostToolBatch", "post_tool_batch", false, false),
    event("Notification", "notification", false, true),
    event("UserPromptSubmit", "user_prompt", false, true),
    event("UserPromptExpansion", "user_prompt_expansion", false, false),
    event("SessionStart", "session_start", false, true),
    event("SessionEnd", "session_end", false, true),
    event("Stop", "stop", false, true),
    event("StopFailure", "stop_failure", false, false),
    // New in 2.1.337: an interrupt ended the main turn (`source`, `reason`, `via`); its
    // output is ignored.
    event("Interrupt", "interrupt", false, false),
    event("SubagentStart", "subagent_start", false, true),
    event("SubagentStop", "subagent_stop", false, true),
    event("PreCompact", "pre_compact", false, true),
    event("PostCompact", "post_compact", false, false),
    event("PreModelSwitch", "pre_model_switch", false, false),
    event("PostModelSwitch", "post_model_switch", false, false),
    event("PermissionRequest", "permission_request", true, false),
    event("PermissionDenied", "permission_denied", true, false),
    event("Setup", "setup", false, false),
    event("TeammateIdle", "teammate_idle", false, false),
    event("TaskCreated", "task_created", false, false),
    event("TaskCompleted", "task_completed", false, false),
    event("Elicitation", "elicitation", false, false),
    event("ElicitationResult", "elicitation_result", false, false),
    event("ConfigChange", "config_change", false, false),
    event("WorktreeCreate", "worktree_create", false, false),
    event("WorktreeRemove", "worktree_remove", false, false),
    event("InstructionsLoaded", "instructions_loaded", false, false),
    event("CwdChanged", "cwd_changed", false, false),
    event("FileChanged", "file_changed", false, false),
    event("DirectoryAdded", "directory_added", false, false),
    event("MessageDisplay", "message_display", false, false),
    event(
        "PreSkillShellCommand",
        "pre_skill_shell_command",
        false,
        false,
    ),
];

/// The event named `name` (exactly as Claude Code spells it).
pub fn find(name: &str) -> Option<&'static HookEvent> {
    ALL.iter().find(|event| event.name == name)
}

/// The events `install` registers without `--events`.
pub fn defaults() -> Vec<&'static HookEvent> {
    ALL.iter().filter(|event| event.default).collect()
}

/// Parses `--events`: `default`, `all`, or names separated by commas (any case).
pub fn parse_list(value: &str) -> Result<Vec<&'static HookEvent>, String> {
    match value.trim() {
        "default" => return Ok(defaults()),
        "all" => return Ok(ALL.iter().collect()),
        _ => {}
    }
    let mut chosen: Vec<&'static HookEvent> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(event) = ALL.iter().find(|e| e.name.eq_ignore_ascii_case(name)) else {
            return Err(format!(
                "unknown hook event {name:?}; known: {}",
                ALL.map(|e| e.name).join(", ")
            ));
        };
        if !chosen.contains(&event) {
            chosen.push(event);
        }
    }
    if chosen.is_empty() {
        return Err("no hook event named".to_string());
    }
    // Settings list them in the table's order, whatever the order given.
    chosen.sort_by_key(|e| ALL.iter().position(|a| a == *e));
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sound() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
            assert!(a
                .subtype
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        let names: Vec<_> = defaults().iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "PreToolUse",
                "PostToolUse",
                "Notification",
                "UserPromptSubmit",
                "SessionStart",
                "SessionEnd",
                "Stop",
                "SubagentStart",
                "SubagentStop",
                "PreCompact"
            ]
        );
    }

    #[test]
    fn lists_parse_by_name_in_any_case_and_order() {
        let chosen = parse_list("stop, PreToolUse,Stop").unwrap();
        let names: Vec<_> = chosen.iter().map(|e| e.name).collect();
        assert_eq!(names, ["PreToolUse", "Stop"]);
        assert_eq!(parse_list("all").unwrap().len(), 35);
        assert_eq!(parse_list("default").unwrap().len(), 10);
        let error = parse_list("PreToolUse,Bogus").unwrap_err();
        assert!(error.contains("\"Bogus\""), "{error}");
        assert!(parse_list(" , ").is_err());
    }
}
