//! The spool: a SQLite database (WAL, `synchronous=NORMAL`) of the events the dashboard has not
//! yet confirmed, in arrival order, with lifetime counters that survive restarts.
//!
//! An event is inserted before the relay acknowledges it to the hook, and deleted by its key in
//! the transaction that records the dashboard's confirmation, so a SIGKILL of any process loses
//! nothing acknowledged (a power loss can cost the last transactions before the OS wrote the WAL
//! out: `synchronous=NORMAL` does not fsync each commit). The byte cap deletes the oldest rows
//! inside the insert's transaction and counts them. Hook and relay may both write; SQLite's
//! locking and a busy timeout keep them apart.
//!
//! Not a public API: the library of `sluice-relay`, `sluice-hook` and the bridge.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)] // an internal library of the relay and the hook

pub mod checksum;
mod damage;
mod legacy;
mod schema;

use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::wal::CheckpointMode;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

pub use self::damage::Opened;

/// An event waiting in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Arrival order; never reused.
    pub key: i64,
    pub event_id: String,
    /// The `claude_event` payload, as JSON text.
    pub payload: String,
    /// How often it was sent alone to a server that acknowledged others, and failed.
    pub alone: u32,
}

/// An event set aside: it failed alone too often (see `dead_letters` in the relay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub event_id: String,
    /// The hook event's name (`PostToolUse`), or its subtype when the payload has no name.
    pub event: String,
    /// The payload's size in bytes.
    pub size: u64,
    /// How often it was sent and not confirmed.
    pub attempts: u64,
    pub last_error: Option<String>,
    /// When it was set aside, in milliseconds since the Unix epoch.
    pub set_aside_ms: i64,
    pub payload: String,
}

/// An event to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub payload: &'a str,
    /// Whether the size guard had to shrink it (counted under `oversized`).
    pub oversized: bool,
}

impl<'a> NewEvent<'a> {
    /// Events to insert from `(event_id, payload)` pairs, none of them oversized.
    pub fn from_pairs(pairs: &'a [(String, String)]) -> Vec<Self> {
        pairs
            .iter()
            .map(|(event_id, payload)| NewEvent {
                event_id,
                payload,
                oversized: false,
            })
            .collect()
    }
}

/// What the store holds and has done, from its own tables (never by reading the backlog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events waiting.
    pub depth: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Events deleted unsent by the byte cap, oldest first.
    pub dropped: u64,
    /// Events shrunk by the size guard.
    pub oversized: u64,
    /// Damaged stores set aside, and unreadable records of an imported legacy spool.
    pub damaged: u64,
    /// Events set aside after failing alone (not in `depth`).
    pub dead_letters: u64,
}

/// A failure of the store.
#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    Sqlite(rusqlite::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(_) => f.write_str("spool file error"),
            Self::Sqlite(_) => f.write_str("spool database error"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Sqlite(error) => Some(error),
        }
    }
}

impl StoreError {
    /// Whether another connection held the lock this one needed (past its busy timeout).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
        )
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error and its causes on one line: `outer: inner: innermost`. A cause whose text the
/// line already holds is left out (some errors print their cause in their own text).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One connection to a store file.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    /// Device and inode of the file opened, to notice it was removed or replaced.
    file: (u64, u64),
    /// Shared with the checkpoint thread, if any.
    checkpoints: Arc<Checkpoints>,
}

/// What a store's connection and its checkpoint thread share.
#[derive(Debug, Default)]
struct Checkpoints {
    /// Set by a commit that found the WAL longer than the background checkpoints keep it.
    long_wal: AtomicBool,
    /// Held while a checkpoint runs, so that one run in a commit waits for the thread's.
    running: Mutex<()>,
}

impl Store {
    /// Opens (creating, mode 0600) the store at `path` without an integrity check: the hook's
    /// way in. `busy` bounds how long it waits for another writer.
    pub fn open(path: &Path, max_bytes: u64, busy: Duration) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        // Closing the last connection would checkpoint the WAL, with an fsync: a hook closes
        // after every event. Checkpoints still run as the WAL grows (every 1,000 pages).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        schema::prepare(&conn)?;
        truncate_long_wal(&conn, path);
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            max_bytes,
            file: (meta.dev(), meta.ino()),
            checkpoints: Arc::default(),
        })
    }

    /// Sets how long a call waits for another connection's lock before it fails busy.
    pub fn set_busy_timeout(&self, busy: Duration) -> Result<()> {
        Ok(self.conn.busy_timeout(busy)?)
    }

    /// Moves this connection's WAL checkpoints to a thread of their own, with a connection
    /// of their own; the thread ends with this store. A checkpoint copies the WAL back into
    /// the database and syncs both files, about 10 ms on the disks measured: run inside the
    /// committing call, as SQLite does by default every 1,000 pages, it stalled one append in
    /// a few hundred, with a hook waiting for the answer. A background checkpoint never waits
    /// for a lock, and appends go on meanwhile; but it cannot catch up with a burst that never
    /// pauses, so past 4,000 pages (16 MiB) an append or a confirmation runs one itself, after
    /// the thread's, and the WAL stays bounded.
    pub fn checkpoint_in_background(&mut self) -> Result<()> {
        let checkpointer = Connection::open(&self.path)?;
        checkpointer.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        // A connection finds the WAL on its first read; until then it cannot checkpoint.
        let mode: String = checkpointer.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(()); // nothing to checkpoint: leave SQLite's own way
        }
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let shared = Arc::clone(&self.checkpoints);
        std::thread::Builder::new()
            .name("sluice-checkpoint".to_string())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let _running = shared
                        .running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let _ = checkpointer.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
                }
            })?;
        let shared = Arc::clone(&self.checkpoints);
        // Replaces SQLite's own checkpointing. An error returned here would fail the commit's
        // statement, though the commit stands: none is.
        self.conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages >= INLINE_CHECKPOINT_PAGES {
                    shared.long_wal.store(true, Ordering::Relaxed);
                } else if pages >= CHECKPOINT_PAGES {
                    let _ = ask.try_send(());
                }
                Ok(())
            },
        ))?;
        Ok(())
    }

    /// After a commit: a WAL the background checkpoints did not keep short is checkpointed
    /// here, once the thread's checkpoint (if one runs) is over. Passive, as SQLite's own: it
    /// keeps no other writer waiting, and being this process's only writer's, it reaches the
    /// WAL's end unless a reader elsewhere still needs part of it; the next commit then
    /// starts the WAL over. Otherwise the next commit past the bound tries again.
    fn shorten_long_wal(&self) {
        if self.checkpoints.long_wal.swap(false, Ordering::Relaxed) {
            let _running = self
                .checkpoints
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let _ = self
                .conn
                .wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
        }
    }

    /// Opens the store for the relay: checks its integrity, sets a damaged store aside (and
    /// copies what can still be read into a fresh one), and imports a legacy `spool.log`.
    pub fn open_checked(path: &Path, max_bytes: u64) -> Result<(Self, Opened)> {
        damage::open_checked(path, max_bytes)
    }

    /// Inserts events in one transaction, after deleting as many of the oldest rows as the
    /// cap needs (the newest event is always kept, even alone over the cap). An event whose
    /// `event_id` is waiting already, or was among the latest delivered, is skipped: a hook
    /// stores an event itself when the relay it sent it to is slow to answer, and the relay
    /// may store (and deliver) it too. Returns the new keys and how many old rows the cap
    /// deleted.
    pub fn append(&mut self, events: &[NewEvent<'_>]) -> Result<(Vec<i64>, u64)> {
        let max = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut bytes = schema::counter(&tx, "bytes")?;
        let (mut dropped, mut oversized) = (0u64, 0i64);
        let mut keys = Vec::with_capacity(events.len());
        {
            let mut oldest = tx.prepare_cached("SELECT id, size FROM events ORDER BY id")?;
            let mut delete = tx.prepare_cached("DELETE FROM events WHERE id <= ?1")?;
            let mut insert = tx.prepare_cached(INSERT)?;
            let mut known = tx.prepare_cached(KNOWN)?;
            for event in events {
                if known.exists([event.event_id])? {
                    continue;
                }
                let size = i64::try_from(event.payload.len()).unwrap_or(i64::MAX);
                if bytes > 0 && bytes.saturating_add(size) > max {
                    let need = bytes.saturating_add(size) - max;
                    let (mut freed, mut count, mut last) = (0i64, 0u64, None);
                    let mut rows = oldest.query([])?;
                    while let Some(row) = rows.next()? {
                        last = Some(row.get::<_, i64>(0)?);
                        freed += row.get::<_, i64>(1)?;
                        count += 1;
                        if freed >= need {
                            break;
                        }
                    }
                    drop(rows);
                    if let Some(last) = last {
                        delete.execute([last])?;
                    }
                    bytes -= freed;
                    dropped += count;
                }
                insert.execute(params![event.event_id, event.payload, size, now_ms()])?;
                keys.push(tx.last_insert_rowid());
                bytes += size;
                oversized += i64::from(event.oversized);
            }
        }
        schema::add(&tx, "dropped", i64::try_from(dropped).unwrap_or(i64::MAX))?;
        schema::add(&tx, "oversized", oversized)?;
        tx.commit()?;
        self.shorten_long_wal();
        Ok((keys, dropped))
    }

    /// Up to `limit` of the oldest events, and no more than `max_bytes` of payload (the first
    /// always, whatever its size), leaving out the keys in `skip`.
    pub fn take(&self, limit: usize, max_bytes: usize, skip: &[i64]) -> Result<Vec<Row>> {
        let mut statement = self.conn.prepare_cached(TAKE)?;
        let mut rows = statement.query([])?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let key = row.get(0)?;
            if skip.contains(&key) {
                continue;
            }
            let payload: String = row.get(2)?;
            if !out.is_empty() && bytes + payload.len() > max_bytes {
                break;
            }
            bytes += payload.len();
            out.push(Row {
                key,
                event_id: row.get(1)?,
                payload,
                alone: row.get(3)?,
            });
        }
        Ok(out)
    }

    /// The waiting event with this key, if it still waits.
    pub fn row(&self, key: i64) -> Result<Option<Row>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT id, event_id, payload, alone FROM events WHERE id = ?1")?;
        Ok(statement
            .query_row([key], |row| {
                Ok(Row {
                    key: row.get(0)?,
                    event_id: row.get(1)?,
                    payload: row.get(2)?,
                    alone: row.get(3)?,
                })
            })
            .optional()?)
    }

    /// Records that the event with this key was sent and not confirmed (`alone`: sent by
    /// itself to a server that acknowledged others), with the error. Returns how often it
    /// failed alone, if it still waits.
    pub fn failed(&self, key: i64, alone: bool, error: &str) -> Result<Option<u32>> {
        let mut statement = self.conn.prepare_cached(
            "UPDATE events SET attempts = attempts + 1, alone = alone + ?2, last_error = ?3
             WHERE id = ?1 RETURNING alone",
        )?;
        Ok(statement
            .query_row(params![key, i64::from(alone), error], |row| row.get(0))
            .optional()?)
    }

    /// Moves the event with this key to `dead_letters`, in one transaction; false if it no
    /// longer waits.
    pub fn set_aside(&mut self, key: i64) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = tx.execute(
            "INSERT OR REPLACE INTO dead_letters
                 (key, event_id, payload, size, enqueued_ms, attempts, last_error, set_aside_ms)
             SELECT id, event_id, payload, size, enqueued_ms, attempts, last_error, ?2
             FROM events WHERE id = ?1",
            params![key, now_ms()],
        )?;
        tx.execute("DELETE FROM events WHERE id = ?1", [key])?;
        tx.commit()?;
        Ok(moved > 0)
    }

    /// The events set aside, oldest first; only those with these ids when `ids` is not
    /// empty.
    pub fn dead_letters(&self, ids: &[String]) -> Result<Vec<DeadLetter>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT event_id, payload, size, attempts, last_error, set_aside_ms
             FROM dead_letters ORDER BY key",
        )?;
        let mut rows = statement.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let event_id: String = row.get(0)?;
            if !ids.is_empty() && !ids.contains(&event_id) {
                continue;
            }
            let payload: String = row.get(1)?;
            out.push(DeadLetter {
                event: event_name(&payload),
                event_id,
                size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                attempts: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                last_error: row.get(4)?,
                set_aside_ms: row.get(5)?,
                payload,
            });
        }
        Ok(out)
    }

    /// Puts the events set aside (those with these ids, or all when `ids` is empty) back
    /// at the end of the queue, their counts reset; returns how many.
    pub fn retry_dead_letters(&mut self, ids: &[String]) -> Result<u64> {
        self.take_dead_letters(ids, true)
    }

    /// Deletes the events set aside (those with these ids, or all when `ids` is empty);
    /// returns how many.
    pub fn drop_dead_letters(&mut self, ids: &[String]) -> Result<u64> {
        self.take_dead_letters(ids, false)
    }

    fn take_dead_letters(&mut self, ids: &[String], requeue: bool) -> Result<u64> {
        let chosen: Vec<String> = self
            .dead_letters(ids)?
            .into_iter()
            .map(|letter| letter.event_id)
            .collect();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut done = 0;
        for event_id in &chosen {
            if requeue {
                tx.prepare_cached(
                    "INSERT INTO events (event_id, payload, size, enqueued_ms)
                     SELECT event_id, payload, size, ?2 FROM dead_letters WHERE event_id = ?1",
                )?
                .execute(params![event_id, now_ms()])?;
            }
            done += tx
                .prepare_cached("DELETE FROM dead_letters WHERE event_id = ?1")?
                .execute([event_id])? as u64;
        }
        tx.commit()?;
        Ok(done)
    }

    /// Deletes the events the dashboard confirmed, in one transaction. A key already gone was
    /// deleted by the cap while in flight: it arrived after all, so it no longer counts as
    /// dropped. The ids of the deleted events are remembered (at least the latest 10,000),
    /// so that they are not stored again. Returns how many rows were deleted.
    pub fn confirm(&mut self, keys: &[i64]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Two statements for all the keys, not two per key: a statement that fires the
        // counters' triggers writes a statement journal, which SQLite allocates and frees per
        // statement; per key, that (malloc, page faults, the arena trimmed) was much of a
        // replay's time.
        let keys_json = keys_as_json(keys);
        let deleted = {
            let remembered = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO delivered (event_id, key)
                     SELECT event_id, id FROM events
                     WHERE id IN (SELECT value FROM json_each(?1))",
                )?
                .execute([&keys_json])?;
            let deleted = tx
                .prepare_cached("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?1))")?
                .execute([&keys_json])?;
            schema::remember_delivered(&tx, remembered as i64)?;
            deleted as u64
        };
        let arrived_after_drop = keys.len() as u64 - deleted;
        if arrived_after_drop > 0 {
            schema::add(&tx, "dropped", -(arrived_after_drop as i64))?;
        }
        tx.commit()?;
        self.shorten_long_wal();
        Ok(deleted)
    }

    /// The store's counters, from its `meta` table.
    pub fn counters(&self) -> Result<Counters> {
        Ok(schema::counters(&self.conn)?)
    }

    /// SQLite's `data_version`: it changes when another connection commits to the file.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?)
    }

    /// Adds to the `damaged` counter.
    pub fn note_damaged(&self, n: u64) -> Result<()> {
        schema::add(&self.conn, "damaged", i64::try_from(n).unwrap_or(i64::MAX))?;
        Ok(())
    }

    /// Whether `path` still names the file this connection has open (a removed or replaced
    /// state directory makes it a ghost that no new process can see).
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file)
    }

    /// Moves every waiting event into `other`, oldest first; returns how many.
    pub fn move_into(&mut self, other: &mut Self) -> Result<u64> {
        let rows = self.take(usize::MAX, usize::MAX, &[])?;
        let events: Vec<NewEvent<'_>> = rows
            .iter()
            .map(|row| NewEvent {
                event_id: &row.event_id,
                payload: &row.payload,
                oversized: false,
            })
            .collect();
        other.append(&events)?;
        let keys: Vec<i64> = rows.iter().map(|row| row.key).collect();
        self.confirm(&keys)?;
        Ok(rows.len() as u64)
    }

    /// The key of the newest event, if any (for tests and diagnostics).
    pub fn newest_key(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT max(id) FROM events", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten())
    }
}

/// The WAL's length, in pages, at which a commit asks for a background checkpoint (SQLite's
/// default for its own).
const CHECKPOINT_PAGES: std::ffi::c_int = 1_000;
/// The WAL's length at which a commit checkpoints itself after all.
const INLINE_CHECKPOINT_PAGES: std::ffi::c_int = 4 * CHECKPOINT_PAGES;

/// A new event.
const INSERT: &str =
    "INSERT INTO events (event_id, payload, size, enqueued_ms) VALUES (?1, ?2, ?3, ?4)";
/// Whether an event id is waiting, or was delivered or set aside lately.
const KNOWN: &str = "SELECT 1 FROM events WHERE event_id = ?1 UNION ALL
    SELECT 1 FROM delivered WHERE event_id = ?1 UNION ALL
    SELECT 1 FROM dead_letters WHERE event_id = ?1";
/// The oldest events, read only as far as the caller steps. No `LIMIT ?`: SQLite's planner
/// reads a bound limit, so binding one recompiled the statement on every call.
const TAKE: &str = "SELECT id, event_id, payload, alone FROM events ORDER BY id";

/// The WAL past which a connection empties it into the database.
const LONG_WAL: u64 = 1 << 20;

/// Empties a long WAL into the database. A connection that finds no other open rebuilds the
/// WAL's index by reading the whole WAL, and with only hooks writing (no relay) nothing else
/// ever restarts it: each hook would read more. Costs a checkpoint's fsync once per MiB of
/// events; a busy database (a relay reading) is left for its own checkpoints.
fn truncate_long_wal(conn: &Connection, path: &Path) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > LONG_WAL) {
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// A payload's hook event name (`data.hook_event_name`), else its `subtype`, else `?`.
fn event_name(payload: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let name = value["data"]["hook_event_name"]
        .as_str()
        .or_else(|| value["subtype"].as_str());
    name.unwrap_or("?").to_string()
}

/// Keys as a JSON array, for `json_each`.
fn keys_as_json(keys: &[i64]) -> String {
    let mut json = String::with_capacity(keys.len() * 8 + 2);
    json.push('[');
    for (n, key) in keys.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(&key.to_string());
    }
    json.push(']');
    json
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// A fresh directory for one test's store.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// How often SQLite compiled the cached statement `sql` again since it was cached.
    fn reprepared(store: &Store, sql: &str) -> i32 {
        let statement = store.conn.prepare_cached(sql).unwrap();
        statement.get_status(StatementStatus::RePrepare)
    }

    /// The statements run per event stay compiled. A bound parameter SQLite's planner looks
    /// at (a `LIMIT ?`, say) makes every bind recompile the statement: for `take`, that was
    /// a tenth of the relay's time per event.
    #[test]
    fn the_statements_run_per_event_are_compiled_once() {
        let dir = scratch("prepare");
        let mut store = Store::open(&dir.join("spool.db"), 1 << 20, Duration::ZERO).unwrap();
        for n in 0..5 {
            let id = format!("e{n}");
            let (keys, _) = store
                .append(&[NewEvent {
                    event_id: &id,
                    payload: "{}",
                    oversized: false,
                }])
                .unwrap();
            let rows = store
                .take(50 + n, 1 << 20, &keys[..usize::from(n % 2 == 0)])
                .unwrap();
            assert!(rows.len() <= 1);
            store.confirm(&keys).unwrap();
        }
        for sql in [TAKE, INSERT, KNOWN] {
            assert_eq!(reprepared(&store, sql), 0, "{sql}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn append_and_confirm(store: &mut Store, n: usize, payload: &str) {
        let id = format!("e{n}");
        let (keys, _) = store
            .append(&[NewEvent {
                event_id: &id,
                payload,
                oversized: false,
            }])
            .unwrap();
        store.confirm(&keys).unwrap();
    }

    /// A store that checkpoints in the background does none in its own commits (SQLite's
    /// default does one there every 1,000 pages of WAL, about 10 ms with its syncs); its
    /// thread does them, and a burst too long for it is still bounded.
    #[test]
    fn a_store_checkpointing_in_the_background_keeps_its_wal_bounded() {
        let dir = scratch("checkpoint");
        let path = dir.join("spool.db");
        let mut store = Store::open(&path, 1 << 30, Duration::from_secs(1)).unwrap();
        store.checkpoint_in_background().unwrap();
        let inline: i64 = store
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
            .unwrap();
        assert_eq!(inline, 0, "the appends' own commits checkpoint");

        // Over 1,000 pages of WAL and well under 4,000: the background thread's to copy
        // into the database file, which nothing else writes.
        let payload = "x".repeat(8 << 10);
        let before = std::fs::metadata(&path).unwrap().len();
        for n in 0..300 {
            append_and_confirm(&mut store, n, &payload);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint copied the WAL into the database"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // 4,000 more without a pause: over 12,000 pages, more than the background can keep
        // up with while appends go on.
        for n in 300..4_300 {
            append_and_confirm(&mut store, n, &payload);
        }
        let wal = std::fs::metadata(dir.join("spool.db-wal")).unwrap().len();
        assert!(
            wal < 2 * INLINE_CHECKPOINT_PAGES as u64 * 4_096,
            "the WAL grew to {wal} bytes"
        );
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
