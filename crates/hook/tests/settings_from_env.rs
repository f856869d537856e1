//! The bare hook reads its settings without clap (`Config::from_env_quick`, for speed); clap
//! reads them for every other command (`Config::from_env`). Both must agree on every variable
//! clap knows, for good, bad, empty and unset values. (The defaults computed from other
//! variables, such as `CLAUDE_MPM_SERVER_PORT` or `HOME`, come from the same functions in
//! both; clap computes each once per process, so they cannot be varied here.)
//!
//! One test in its own binary: it changes the process environment, which no other test of
//! this binary may read meanwhile.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::{Args, Command};
use sluice_relay::config::Config;

/// Values tried in every variable: each parser meets numbers, words, URLs and paths.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "5",
    "250",
    "999",
    "1000000",
    "18446744073709551616",
    "-1",
    " 7 ",
    "abc",
    "true",
    "False",
    "no",
    "OFF",
    "acknowledged",
    "written",
    "Written",
    "http://127.0.0.1:9",
    "wss://[::1]:9/x",
    "ftp://host",
    "localhost:8765",
    "/tmp/sluice elsewhere",
];

fn readings() -> (Option<Config>, Option<Config>) {
    (Config::from_env_quick(), Config::from_env().ok())
}

#[test]
fn the_quick_reading_agrees_with_clap_on_every_variable() {
    let settings: Vec<String> = Config::augment_args(Command::new("t"))
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(settings.len() >= 10, "clap names {settings:?}");
    for name in &settings {
        let saved = std::env::var_os(name);
        let mut tried = 0;
        let mut values: Vec<OsString> = VALUES.iter().map(OsString::from).collect();
        values.push(OsString::from_vec(vec![b'/', 0xff, b'x'])); // not UTF-8
        for value in &values {
            std::env::set_var(name, value);
            let (quick, clap) = readings();
            assert_eq!(quick, clap, "{name}={value:?}");
            tried += usize::from(clap.is_some());
        }
        std::env::remove_var(name);
        let (quick, clap) = readings();
        assert_eq!(quick, clap, "{name} unset");
        assert!(clap.is_some(), "{name} unset");
        assert!(tried > 0, "{name}: no value was valid");
        if let Some(saved) = saved {
            std::env::set_var(name, saved);
        }
    }
}
