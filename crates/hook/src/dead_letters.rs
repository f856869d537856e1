//! `sluice-hook dead-letters`: the events the relay set aside because the dashboard failed
//! them alone (see the relay's `blame` module), listed, put back in the queue, or deleted.
//!
//! Exit codes as the other commands: 0 done (an empty list too), 1 the store cannot be
//! read or an id names no dead letter.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::json;

use crate::cli::DeadLettersArgs;
use sluice_relay::config::Config;
use sluice_store::{DeadLetter, Store};

/// Runs the command; returns its exit code.
pub fn run(config: &Config, args: &DeadLettersArgs) -> i32 {
    let path = config.store_path();
    let opened = if path.exists() {
        Store::open(&path, config.spool_max_bytes, Duration::from_secs(2)).map(Some)
    } else {
        Ok(None)
    };
    let mut store = match opened {
        Ok(store) => store,
        Err(error) => {
            eprintln!(
                "sluice-hook: cannot open {}: {}",
                path.display(),
                sluice_store::error_chain(&error)
            );
            return 1;
        }
    };
    let letters = match store.as_ref().map(|store| store.dead_letters(&args.ids)) {
        None => Vec::new(),
        Some(Ok(letters)) => letters,
        Some(Err(error)) => {
            eprintln!("sluice-hook: {}", sluice_store::error_chain(&error));
            return 1;
        }
    };
    let missing: Vec<&String> = args
        .ids
        .iter()
        .filter(|id| !letters.iter().any(|letter| &letter.event_id == *id))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|id| id.as_str()).collect();
        eprintln!("sluice-hook: no dead letter with id {}", names.join(", "));
        return 1;
    }
    let json = args.json || !std::io::stdout().is_terminal();
    if !args.retry && !args.drop {
        say(&if json {
            listing_json(&letters)
        } else {
            listing(&letters)
        });
        return 0;
    }
    let Some(store) = store.as_mut() else {
        say(&done(
            json,
            if args.retry { "retried" } else { "dropped" },
            0,
        ));
        return 0;
    };
    let changed = if args.retry {
        store.retry_dead_letters(&args.ids)
    } else {
        store.drop_dead_letters(&args.ids)
    };
    match changed {
        Ok(n) if args.retry => {
            say(&done(json, "retried", n));
            0
        }
        Ok(n) => {
            say(&done(json, "dropped", n));
            0
        }
        Err(error) => {
            eprintln!("sluice-hook: {}", sluice_store::error_chain(&error));
            1
        }
    }
}

fn done(json: bool, what: &str, n: u64) -> String {
    if json {
        return format!("{}\n", json!({ what: n }));
    }
    match what {
        "retried" => format!(
            "put {n} dead letters back at the end of the queue; the relay sends them next \
             (a running one at once, otherwise the one the next hook starts)\n"
        ),
        _ => format!("deleted {n} dead letters\n"),
    }
}

/// The age of something that happened at `ms` (Unix milliseconds), in whole seconds.
fn age_secs(ms: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    u64::try_from(now.saturating_sub(ms) / 1000).unwrap_or(0)
}

fn listing_json(letters: &[DeadLetter]) -> String {
    let rows: Vec<_> = letters
        .iter()
        .map(|letter| {
            json!({
                "event_id": letter.event_id,
                "event": letter.event,
                "size": letter.size,
                "attempts": letter.attempts,
                "last_error": letter.last_error,
                "age_secs": age_secs(letter.set_aside_ms),
            })
        })
        .collect();
    format!("{}\n", json!(rows))
}

fn listing(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_string();
    }
    let mut out = format!(
        "{} dead letters (the dashboard failed each alone; --retry puts them back, --drop deletes them)\n",
        letters.len()
    );
    for letter in letters {
        out.push_str(&format!(
            "{}  {}  {} bytes  {} attempts  set aside {}s ago  {}\n",
            letter.event_id,
            letter.event,
            letter.size,
            letter.attempts,
            age_secs(letter.set_aside_ms),
            letter.last_error.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// Writes to stdout; a reader that went away is no failure.
fn say(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
