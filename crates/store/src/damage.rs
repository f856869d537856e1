//! Opening the relay's store: an integrity check, a damaged store set aside with what can
//! still be read copied into a fresh one, and the one-time import of a legacy `spool.log`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{legacy, now_secs, NewEvent, Result, Store, StoreError};

/// How long the relay waits for a hook that holds the write lock.
const BUSY: Duration = Duration::from_secs(2);

/// What opening the relay's store found.
#[derive(Debug, Default)]
pub struct Opened {
    /// A damaged store set aside: where it went, and why.
    pub damaged: Option<(PathBuf, String)>,
    /// Events read back out of the damaged store.
    pub salvaged: u64,
    /// Events imported from a legacy `spool.log`.
    pub imported: u64,
}

enum Failure {
    Damaged(String),
    Other(StoreError),
}

pub(super) fn open_checked(path: &Path, max_bytes: u64) -> Result<(Store, Opened)> {
    let mut opened = Opened::default();
    let mut store = match checked(path, max_bytes) {
        Ok(store) => store,
        Err(Failure::Other(error)) => return Err(error),
        Err(Failure::Damaged(cause)) => {
            let aside = set_aside(path)?;
            let mut store = Store::open(path, max_bytes, BUSY)?;
            store.note_damaged(1)?;
            opened.salvaged = salvage(&aside, &mut store);
            opened.damaged = Some((aside, cause));
            store
        }
    };
    if let Some(dir) = path.parent() {
        opened.imported = legacy::import(dir, &mut store)?;
    }
    Ok((store, opened))
}

fn checked(path: &Path, max_bytes: u64) -> Result<Store, Failure> {
    let store = Store::open(path, max_bytes, BUSY).map_err(classify)?;
    let check: String = store
        .conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|error| classify(error.into()))?;
    if check == "ok" {
        Ok(store)
    } else {
        Err(Failure::Damaged(check))
    }
}

/// A file that is not a database, a corrupt one, or a directory in its place is damage; a
/// busy or locked database, a missing directory or a permission problem is not (setting a
/// healthy store aside for those would hide its events).
fn classify(error: StoreError) -> Failure {
    let damaged = match &error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
            failure.code,
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt
        ),
        StoreError::Io(io) => io.kind() == std::io::ErrorKind::IsADirectory,
        StoreError::Sqlite(_) => false,
    };
    if damaged {
        Failure::Damaged(crate::error_chain(&error))
    } else {
        Failure::Other(error)
    }
}

/// Renames the store (and its WAL, which belongs to it) to `NAME.damaged-SECS`.
fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{}", now_secs()));
    let aside = PathBuf::from(name);
    std::fs::rename(path, &aside)?;
    let with_suffix = |base: &Path, suffix: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let _ = std::fs::rename(with_suffix(path, "-wal"), with_suffix(&aside, "-wal"));
    let _ = std::fs::remove_file(with_suffix(path, "-shm"));
    Ok(aside)
}

/// Copies the events that can still be read from a damaged store; stops at the first
/// unreadable row.
fn salvage(aside: &Path, into: &mut Store) -> u64 {
    let Ok(conn) = Connection::open_with_flags(aside, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    let mut rows = Vec::new();
    if let Ok(mut statement) = conn.prepare("SELECT event_id, payload FROM events ORDER BY id") {
        if let Ok(mut cursor) = statement.query([]) {
            while let Ok(Some(row)) = cursor.next() {
                match (row.get::<_, String>(0), row.get::<_, String>(1)) {
                    (Ok(event_id), Ok(payload)) => rows.push((event_id, payload)),
                    _ => break,
                }
            }
        }
    }
    let events = NewEvent::from_pairs(&rows);
    // Counted as stored: a copy of an event already there is not.
    into.append(&events)
        .map_or(0, |(keys, _)| keys.len() as u64)
}
