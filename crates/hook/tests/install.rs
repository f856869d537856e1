//! `install --write` as users run it: an upgrade from another path (one with a space), into a
//! settings file that is a 0600 symlink into a dotfiles repository, beside the user's own
//! hooks and a second dashboard's handler; then the command Claude Code runs, under `sh -c`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_dashboard::Dashboard;
use sluice_test_support::{prompt, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// A copy of the built `sluice-hook` and `sluice-relay` in `dir`, as `cargo install` leaves them.
fn installed_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let bin = Path::new(BIN);
    for name in ["sluice-hook", "sluice-relay"] {
        std::fs::copy(bin.with_file_name(name), dir.join(name)).unwrap();
    }
    dir.join("sluice-hook")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every handler's command, per event.
fn commands(settings: &Value, event: &str) -> Vec<String> {
    settings["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["hooks"].as_array().into_iter().flatten())
        .filter_map(|handler| handler["command"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_another_path_replaces_the_handler_and_keeps_the_link() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "install-upgrade", dashboard.addr());
    let old = installed_in(&env.dir.join("old bin"));
    let new = installed_in(&env.dir.join("new tools/bin"));
    let second = "SLUICE_URL=http://127.0.0.1:9 /usr/local/bin/sluice-hook";
    let user = json!({
        "env": {"ZED": "1", "ALPHA": "2"},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-bash"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": second}]}]
        }
    });
    let dotfiles = env.dir.join("dotfiles/settings.json");
    std::fs::create_dir_all(dotfiles.parent().unwrap()).unwrap();
    std::fs::write(&dotfiles, serde_json::to_string_pretty(&user).unwrap()).unwrap();
    std::fs::set_permissions(&dotfiles, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = env.dir.join(".claude/settings.json");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../dotfiles/settings.json", &link).unwrap();

    for binary in [&old, &new] {
        let output = Command::new(binary)
            .env("HOME", &env.dir)
            .env_remove("CLAUDE_CONFIG_DIR")
            .args(["install", "--write"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    assert!(link.is_symlink(), "the link is still a link");
    assert_eq!(mode(&dotfiles), 0o600, "the file keeps its mode");
    let backups: Vec<PathBuf> = std::fs::read_dir(dotfiles.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().contains(".bak."))
        .collect();
    assert!(!backups.is_empty(), "a backup beside the file");
    for backup in &backups {
        assert_eq!(mode(backup), 0o600, "{}", backup.display());
    }
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&dotfiles).unwrap()).unwrap();
    assert_eq!(settings["env"], user["env"], "the user's env kept");
    let quoted = shell_quoted(&new);
    for event in [
        "PreToolUse",
        "PostToolUse",
        "UserPromptSubmit",
        "Notification",
        "Stop",
        "SubagentStart",
        "SubagentStop",
        "SessionStart",
        "SessionEnd",
        "PreCompact",
    ] {
        let ours: Vec<String> = commands(&settings, event)
            .into_iter()
            .filter(|command| command.contains("sluice-hook") && command != second)
            .collect();
        assert_eq!(
            ours,
            std::slice::from_ref(&quoted),
            "{event}: one handler, the new path"
        );
    }
    assert_eq!(commands(&settings, "PreToolUse")[0], "audit-bash");
    assert!(
        commands(&settings, "Stop").contains(&second.to_string()),
        "a second dashboard's handler stays"
    );

    // The command runs as Claude Code runs it: under `sh -c`, the event on stdin.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(&quoted)
        .env("HOME", &env.dir)
        .env("SLUICE_RUNTIME_DIR", env.dir.join("run"))
        .env("SLUICE_STATE_DIR", env.state_dir())
        .env("SLUICE_URL", env.url());
    let output = sluice_test_support::feed(sh, &prompt(7));
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(1, Duration::from_secs(10)).await, 1);

    // Uninstall agrees: ours go, the user's and the second dashboard's stay.
    let output = Command::new(&new)
        .env("HOME", &env.dir)
        .env_remove("CLAUDE_CONFIG_DIR")
        .arg("uninstall")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&dotfiles).unwrap()).unwrap();
    assert_eq!(settings, user, "back to the user's settings");
    assert!(link.is_symlink());
    assert_eq!(mode(&dotfiles), 0o600);
}

fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}
