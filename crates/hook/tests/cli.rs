//! The built `sluice-hook` binary's command line: help without side effects, refusals that
//! name the value and exit 2, the hook path that never exits 2, install and uninstall on a
//! real settings file, and the readable answers of `stats` and `stop`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_dashboard::Dashboard;

use sluice_test_support::{feed, unused_addr, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

fn run(env: &HookEnv, args: &[&str]) -> Output {
    env.command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path().display().to_string());
            found.extend(files_under(&entry.path()));
        }
    }
    found.sort();
    found
}

const SETTINGS: &str = r#"{
  "model": "opus",
  "hooks": {
    "Stop": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "notify-send done"
          }
        ]
      }
    ],
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [
          {
            "type": "command",
            "command": "audit-bash"
          }
        ]
      }
    ]
  },
  "env": {
    "ZED": "1",
    "ALPHA": "2"
  }
}
"#;

#[test]
fn help_on_every_subcommand_has_no_side_effect() {
    let addr = unused_addr();
    let env = HookEnv::new(BIN, "cli-help", addr);
    let settings = env.dir.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, SETTINGS).unwrap();
    let tmp = env.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let before = files_under(&env.dir);
    let port = addr.port().to_string();
    let cases: [&[&str]; 12] = [
        &["--help"],
        &["-h"],
        &["help"],
        &["relay", "--help"],
        &["stats", "--help"],
        &["stop", "--help"],
        &["install", "--write", "--help"],
        &["uninstall", "--help"],
        &["dashboard", &port, "--help"],
        &["demo", "--help"],
        &["demo", "--events", "10", "--help"],
        &["help", "install"],
    ];
    for args in cases {
        let output = env
            .command()
            .args(args)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert!(stdout.contains("Usage: sluice-hook"), "{args:?}: {stdout}");
        assert!(
            output.stderr.is_empty(),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    // Nothing written, no relay, no port taken.
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), SETTINGS);
    assert_eq!(files_under(&env.dir), before);
    assert!(std::net::TcpListener::bind(addr).is_ok(), "{addr} is free");
    assert!(env.stats().is_null(), "no relay: {}", env.stats());
}

#[test]
fn every_subcommand_has_a_one_line_description_and_the_variables_show() {
    let env = HookEnv::new(BIN, "cli-help-text", unused_addr());
    let help = text(&run(&env, &["--help"]).stdout);
    for command in sluice_hook::cli::HookCommand::NAMES {
        let line = help
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("{command} in {help}"));
        assert!(line.split_whitespace().count() > 3, "{line}");
    }
    for variable in [
        "SLUICE_URL",
        "SLUICE_RUNTIME_DIR",
        "SLUICE_STATE_DIR",
        "SLUICE_NO_SPAWN",
        "SLUICE_BUDGET_MS",
        "SLUICE_IDLE_SECS",
        "SLUICE_SPOOL_MAX_BYTES",
        "SLUICE_LOG",
        "CLAUDE_MPM_SERVER_HOST",
    ] {
        assert!(help.contains(variable), "{variable} in {help}");
    }
    let version = run(&env, &["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("sluice-hook {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_values_exit_2_and_name_the_value() {
    let env = HookEnv::new(BIN, "cli-values", unused_addr());
    let cases: [(&[&str], &str); 10] = [
        (&["stats", "--url", "not-a-url"], "'not-a-url'"),
        (&["--url", "ftp://host"], "'ftp://host'"),
        (&["dashboard", "not-an-addr"], "'not-an-addr'"),
        (&["dashboard", "127.0.0.1:99999"], "'127.0.0.1:99999'"),
        (&["demo", "--events", "0"], "'0'"),
        (&["demo", "--events", "10", "--outage-secs", "5"], "'5'"),
        (&["demo", "--outage-secs", "soon"], "'soon'"),
        (&["install", "--events", "PreToolUse,Bogus"], "\"Bogus\""),
        (&["install", "--scope", "galaxy"], "'galaxy'"),
        (&["stop", "--idle", "forever"], "'forever'"),
    ];
    for (args, named) in cases {
        let output = run(&env, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} names {named}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // A variable is checked like its flag.
    let output = env
        .command()
        .arg("stats")
        .env("SLUICE_URL", "localhost:8765")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("'localhost:8765'"), "{stderr}");
    assert!(
        stderr.contains("the value comes from SLUICE_URL"),
        "{stderr}"
    );
}

#[test]
fn unknown_commands_and_flags_exit_2() {
    let env = HookEnv::new(BIN, "cli-unknown", unused_addr());
    for args in [
        &["bogus"][..],
        &["stats", "--bogus"],
        &["install", "extra"],
        &["--bogus"],
    ] {
        let output = run(&env, args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

fn event(n: usize) -> Vec<u8> {
    json!({"session_id": "s", "cwd": "/tmp", "hook_event_name": "UserPromptSubmit",
           "prompt": format!("prompt {n}")})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_path_never_exits_2_and_still_hands_the_event_on() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "cli-hook-path", dashboard.addr());
    let hook = |args: &[&str], vars: &[(&str, &str)], stdin: &[u8]| env.run(args, vars, stdin);
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    // The bad variable first, with no relay yet: the relay the hook starts must not
    // inherit it (it would refuse to start, and the event would wait in the spool).
    let cases: [Case<'_>; 4] = [
        (&[], &[("SLUICE_IDLE_SECS", "abc")]),
        (&["--url", "bad"], &[]),
        (&["--bogus"], &[]),
        (&["bogus"], &[]),
    ];
    for (n, (args, vars)) in cases.iter().enumerate() {
        let output = hook(args, vars, &event(n));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?} {vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("sluice-hook: "), "{stderr}");
        if let Some((variable, _)) = vars.first() {
            assert!(
                stderr.contains(&format!("; ignored {variable};")),
                "{stderr}"
            );
        }
        assert!(output.stdout.is_empty());
        // Each arrives before the next hook runs (the first through the relay it started).
        let arrived = dashboard
            .received()
            .wait_for(n + 1, Duration::from_secs(10))
            .await;
        assert_eq!(arrived, n + 1, "{args:?} {vars:?}: {stderr}");
    }
    // Every event arrived, under the settings that were valid (the test's URL).
    let log = dashboard.received();
    assert_eq!(log.wait_for(4, Duration::from_secs(10)).await, 4);
    let prompts: Vec<String> = log
        .events()
        .iter()
        .map(|r| r.data["data"]["prompt"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(prompts, ["prompt 0", "prompt 1", "prompt 2", "prompt 3"]);
    // Bad stdin with good settings keeps its contract: exit 0, one line, nothing on stdout.
    let output = hook(&[], &[], b"{not json");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stderr).lines().count(), 1);
    assert!(output.stdout.is_empty());
    dashboard.stop().await;
}

#[test]
fn a_bad_reference_port_never_exits_2_and_the_event_waits_for_the_default_url() {
    // Before: the bare hook exited 0 silently, its event stored for `http://localhost:abc`,
    // which no relay can serve; with a flag, it exited 2 (Claude Code: "block the tool").
    let env = HookEnv::new(BIN, "cli-bad-port", unused_addr());
    for (n, args) in [&[][..], &["--budget-ms", "1000"][..]]
        .into_iter()
        .enumerate()
    {
        let mut command = env.command();
        command
            .args(args)
            .env_remove("SLUICE_URL")
            .env("CLAUDE_MPM_SERVER_PORT", "abc")
            .env("SLUICE_NO_SPAWN", "1");
        let output = feed(command, &event(n));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("CLAUDE_MPM_SERVER_PORT"), "{stderr}");
        assert!(
            stderr.contains(sluice_relay::config::DEFAULT_URL),
            "{stderr}"
        );
    }
    let prompts = stored_prompts(&env, sluice_relay::config::DEFAULT_URL);
    assert_eq!(prompts, ["prompt 0", "prompt 1"]);
}

#[test]
fn a_variable_that_is_not_utf8_is_skipped_alone_and_the_others_are_kept() {
    // Before: every variable was dropped (the event went to the default URL's store under
    // ~/.local/state, and a relay was started despite SLUICE_NO_SPAWN); with a bad
    // claude-mpm port too, the hook exited 2.
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff");
    let env = HookEnv::new(BIN, "cli-not-utf8", unused_addr());
    let cases = [(true, env.url().to_string(), "SLUICE_BUDGET_MS;")];
    let cases = cases.into_iter().chain([(
        false,
        sluice_relay::config::DEFAULT_URL.to_string(),
        "CLAUDE_MPM_SERVER_PORT, SLUICE_BUDGET_MS;",
    )]);
    for (n, (keep_url, url, ignored)) in cases.enumerate() {
        let mut command = env.command();
        if !keep_url {
            command.env_remove("SLUICE_URL");
        }
        command
            .env("SLUICE_BUDGET_MS", not_utf8)
            .env("CLAUDE_MPM_SERVER_PORT", "abc")
            .env("SLUICE_NO_SPAWN", "1");
        let output = feed(command, &event(n));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("; ignored {ignored}")), "{stderr}");
        assert!(stderr.ends_with(&format!("to {url}\n")), "{stderr}");
        assert_eq!(stored_prompts(&env, &url), [format!("prompt {n}")], "{url}");
    }
    assert!(
        relays(&env).is_empty(),
        "SLUICE_NO_SPAWN was kept: no relay"
    );
}

/// The prompts of the events waiting in `env`'s store for the dashboard at `url`.
fn stored_prompts(env: &HookEnv, url: &str) -> Vec<String> {
    let store = sluice_relay::config::relay_store(&env.state_dir(), url);
    let store = sluice_store::Store::open(&store, 1 << 20, Duration::from_secs(1)).unwrap();
    let rows = store.take(10, usize::MAX, &[]).unwrap();
    rows.iter()
        .map(|row| {
            let payload: Value = serde_json::from_str(&row.payload).unwrap();
            payload["data"]["prompt"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The relay sockets in `env`'s runtime directory.
fn relays(env: &HookEnv) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(env.dir.join("run"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn keys(value: &Value) -> Vec<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn install_and_uninstall_round_trip_keeps_everything_else() {
    let env = HookEnv::new(BIN, "cli-install", unused_addr());
    let settings = env.dir.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, SETTINGS).unwrap();

    let output = run(&env, &["install", "--write"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let said = text(&output.stdout);
    let backup = said
        .split("backup: ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("the backup's path in {said:?}"));
    assert_eq!(std::fs::read_to_string(backup).unwrap(), SETTINGS);
    assert!(said.contains("for 10 events"), "{said}");
    let installed: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(
        keys(&installed),
        ["model", "hooks", "env"],
        "the user's key order"
    );
    assert_eq!(keys(&installed["env"]), ["ZED", "ALPHA"]);
    let events = keys(&installed["hooks"]);
    assert_eq!(
        &events[..2],
        ["Stop", "PreToolUse"],
        "existing events first"
    );
    assert_eq!(events.len(), 10);
    for name in ["SessionStart", "SessionEnd", "PreCompact", "SubagentStart"] {
        assert!(events.contains(&name.to_string()), "{name}");
    }
    assert_eq!(
        installed["hooks"]["PreToolUse"][0]["hooks"][0]["command"],
        "audit-bash"
    );
    assert_eq!(installed["hooks"]["PreToolUse"][1]["matcher"], "*");
    assert_eq!(installed["hooks"]["Stop"][1]["hooks"][0]["command"], BIN);

    // Again: nothing changes, no backup.
    let again = text(&run(&env, &["install", "--write"]).stdout);
    assert!(again.contains("nothing changed"), "{again}");

    let output = run(&env, &["uninstall"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let said = text(&output.stdout);
    assert!(said.starts_with("removed 10 sluice-hook entries"), "{said}");
    let backup = said.split("backup: ").nth(1).map(str::trim).unwrap();
    assert!(std::fs::read_to_string(backup).unwrap().contains(BIN));
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        SETTINGS,
        "back to the user's file, byte for byte"
    );
    let nothing = text(&run(&env, &["uninstall"]).stdout);
    assert!(nothing.contains("nothing changed"), "{nothing}");
}

#[test]
fn scopes_and_event_sets() {
    let env = HookEnv::new(BIN, "cli-scopes", unused_addr());
    let project = env.dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let in_project = |args: &[&str]| -> Output {
        env.command()
            .args(args)
            .current_dir(&project)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let output = in_project(&[
        "install", "--write", "--scope", "project", "--events", "all",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let shared: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join(".claude/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&shared["hooks"]).len(), 35);
    let output = in_project(&[
        "install",
        "--write",
        "--scope",
        "local",
        "--events",
        "stop,PreToolUse",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let local: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join(".claude/settings.local.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&local["hooks"]), ["PreToolUse", "Stop"]);
    assert!(
        !env.dir.join(".claude").exists(),
        "the user's settings untouched"
    );
    // Printing writes nothing and shows the chosen set.
    let printed: Value =
        serde_json::from_slice(&in_project(&["install", "--events", "SessionEnd"]).stdout).unwrap();
    assert_eq!(keys(&printed["hooks"]), ["SessionEnd"]);
    let output = in_project(&["uninstall", "--scope", "project"]);
    assert!(
        text(&output.stdout).starts_with("removed 35 "),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_read_well_and_stop_says_what_it_did() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = HookEnv::new(BIN, "cli-stats", dashboard.addr());
    assert!(env.hook(&event(0)).status.success());
    assert_eq!(
        dashboard
            .received()
            .wait_for(1, Duration::from_secs(10))
            .await,
        1
    );
    let json = run(&env, &["stats", "--json"]);
    let line = text(&json.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    let stats: Value = serde_json::from_str(&line).unwrap();
    let pid = stats["relay_pid"].as_u64().unwrap();
    let pretty = text(&run(&env, &["stats", "--pretty"]).stdout);
    assert!(pretty.starts_with(&format!("relay {pid} up ")), "{pretty}");
    for part in [
        "breaker      closed",
        "spool        0 events waiting",
        "last error   none",
    ] {
        assert!(pretty.contains(part), "{part} in {pretty}");
    }
    let stop = run(&env, &["stop"]);
    assert_eq!(stop.status.code(), Some(0), "{stop:?}");
    assert_eq!(
        text(&stop.stdout).trim(),
        format!("relay {pid} stopped; 0 events left in the spool")
    );
    let again = run(&env, &["stop"]);
    assert!(
        text(&again.stdout).starts_with("no relay running"),
        "{again:?}"
    );
    assert_eq!(run(&env, &["stats"]).status.code(), Some(1));
    dashboard.stop().await;
}

#[test]
fn the_hook_binary_links_no_nats_client() {
    // Its start-up cost must not grow: the NATS client's code is in sluice-relay only (type
    // names may appear in debug info; functions may not).
    let functions = |binary: &Path| {
        let listed = Command::new("nm")
            .arg("--demangle")
            .arg("--defined-only")
            .arg(binary)
            .output()
            .expect("nm lists a binary's symbols: apt-get install binutils");
        text(&listed.stdout)
            .lines()
            .filter(|line| line.contains("async_nats::"))
            .count()
    };
    assert_eq!(
        functions(Path::new(BIN)),
        0,
        "async_nats code in sluice-hook"
    );
    let relay = Path::new(BIN).with_file_name("sluice-relay");
    assert!(functions(&relay) > 0, "the check finds it where it is");
}

#[test]
fn the_hook_binary_needs_no_shared_library_but_libc() {
    // Each library the loader maps costs every start of the hook. SQLite's FTS5 wanted libm's
    // `log`: the workspace builds SQLite without it (.cargo/config.toml).
    let dynamic = Command::new("readelf")
        .arg("--dynamic")
        .arg(BIN)
        .output()
        .expect("readelf reads a binary's dynamic section: apt-get install binutils");
    assert!(dynamic.status.success(), "{dynamic:?}");
    let needed: Vec<String> = text(&dynamic.stdout)
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| {
            line.split('[')
                .nth(1)?
                .split(']')
                .next()
                .map(str::to_string)
        })
        .collect();
    // The check reads what it should: cargo's build is linked dynamically, against libc.
    assert!(
        needed.iter().any(|library| library.starts_with("libc.so")),
        "{needed:?}"
    );
    for library in &needed {
        assert!(
            library.starts_with("libc.so") || library.starts_with("ld-linux"),
            "sluice-hook needs {library} (all: {needed:?})"
        );
    }
}

#[test]
fn the_relay_binary_has_a_command_line_too() {
    let relay = Path::new(BIN).with_file_name("sluice-relay");
    let help = Command::new(&relay).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Usage: sluice-relay"));
    let commands: Vec<String> = text(&help.stdout)
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // A command's line, not the wrapped rest of a description.
        .filter(|line| !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(commands, ["relay", "direct", "nats", "bridge", "help"]);
    // The production relay ships no Socket.IO server (the dashboard's is socketioxide).
    let binary = std::fs::read(&relay).unwrap();
    assert!(
        !binary.windows(12).any(|w| w == b"socketioxide"),
        "socketioxide is linked into sluice-relay"
    );
    let bogus = Command::new(&relay).arg("demo").output().unwrap();
    assert_eq!(bogus.status.code(), Some(2));
}

#[test]
fn the_readme_shows_the_real_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let shown = readme
        .split("`sluice-hook --help`:\n\n```text\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README shows `sluice-hook --help`");
    let output = Command::new(BIN)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(text(&output.stdout).trim_end(), shown);
}

#[test]
fn a_reader_that_stops_early_is_no_failure() {
    // `sluice-hook install | grep -q PreToolUse` failed in CI: grep left after its match and
    // the next line's println! panicked on the closed pipe (exit 101).
    let env = HookEnv::new(BIN, "closed-pipe", unused_addr());
    let mut child = env
        .command()
        .arg("install")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        !text(&output.stderr).contains("panicked"),
        "{}",
        text(&output.stderr)
    );
}
