//! The store's tables: `events` in arrival order; `meta`, the lifetime counters that
//! triggers keep exact whoever writes; and `delivered`, the ids of the latest events
//! delivered.

use rusqlite::{Connection, TransactionBehavior};

use super::Counters;

/// Bumped when the tables change. 2: one row per `event_id`; 3: `delivered`; 4: `delivered`
/// by key (3 had other shapes on the way); 5: each event's attempts and last error, and
/// `dead_letters`.
const VERSION: i64 = 5;

/// How many ids of delivered events `delivered` keeps at least, the latest delivered; it is
/// cut back to that many once it holds twice as many.
pub(super) const DELIVERED_KEPT: i64 = 10_000;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('depth', 0), ('bytes', 0), ('dropped', 0), ('oversized', 0), ('damaged', 0);
CREATE TRIGGER IF NOT EXISTS events_in AFTER INSERT ON events BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'depth';
    UPDATE meta SET value = value + new.size WHERE name = 'bytes';
END;
CREATE TRIGGER IF NOT EXISTS events_out AFTER DELETE ON events BEGIN
    UPDATE meta SET value = value - 1 WHERE name = 'depth';
    UPDATE meta SET value = value - old.size WHERE name = 'bytes';
END;
-- A store of version 1 can hold an event twice (a hook stored it while the relay it had
-- sent it to was slow, and the relay then stored it too): the later copies go.
DELETE FROM events WHERE id NOT IN (SELECT min(id) FROM events GROUP BY event_id);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_event_id ON events (event_id);
-- The ids of the latest events delivered, with their keys in `events` (the order they were
-- delivered in): a hook's own copy of an event its slow relay stored and delivered meanwhile
-- is not stored again. Version 3 had other shapes: what dropping it forgets is at most a
-- few duplicates.
DROP TABLE IF EXISTS delivered;
CREATE TABLE delivered (
    event_id TEXT PRIMARY KEY,
    key      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('remembered', 0);
UPDATE meta SET value = 0 WHERE name = 'remembered';
";

/// Version 5 over version 4: per event, how often it was sent and not confirmed
/// (`attempts`), how often of those it was sent alone to a server that acknowledged others
/// (`alone`), and the last error; and the events set aside, with their own counter.
const DEAD_LETTERS: &str = "
CREATE TABLE IF NOT EXISTS dead_letters (
    key         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    payload     TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT,
    set_aside_ms INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('dead_letters', 0);
CREATE TRIGGER IF NOT EXISTS dead_letters_in AFTER INSERT ON dead_letters BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'dead_letters';
END;
CREATE TRIGGER IF NOT EXISTS dead_letters_out AFTER DELETE ON dead_letters BEGIN
    UPDATE meta SET value = value - 1 WHERE name = 'dead_letters';
END;
";

/// The columns version 5 adds to `events` (each added unless there).
const EVENT_COLUMNS: [(&str, &str); 3] = [
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("alone", "INTEGER NOT NULL DEFAULT 0"),
    ("last_error", "TEXT"),
];

/// Sets WAL mode, and creates or upgrades the tables once (a reader of `user_version`
/// otherwise). A store of a later version is left as it is.
///
/// The version is read inside the write transaction that upgrades: two processes opening
/// an old store at once upgrade it once, the second finding it current.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "the spool is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if user_version(conn)? >= VERSION {
        return Ok(()); // the common case, without taking the write lock
    }
    let upgrade = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let version = user_version(&upgrade)?;
    if version < 4 {
        upgrade.execute_batch(TABLES)?;
    }
    if version < 5 {
        for (column, definition) in EVENT_COLUMNS {
            let exists: bool = upgrade.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = ?1",
                [column],
                |row| row.get(0),
            )?;
            if !exists {
                upgrade.execute_batch(&format!(
                    "ALTER TABLE events ADD COLUMN {column} {definition};"
                ))?;
            }
        }
        upgrade.execute_batch(DEAD_LETTERS)?;
    }
    if version < VERSION {
        upgrade.execute_batch(&format!("PRAGMA user_version = {VERSION};"))?;
    }
    upgrade.commit()
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// One counter. Cached, as every statement run per event or per look is: parsing one anew
/// costs more than running it.
pub(super) fn counter(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
}

pub(super) fn add(conn: &Connection, name: &str, n: i64) -> rusqlite::Result<()> {
    if n != 0 {
        conn.prepare_cached("UPDATE meta SET value = value + ?2 WHERE name = ?1")?
            .execute(rusqlite::params![name, n])?;
    }
    Ok(())
}

/// Counts `n` ids newly in `delivered`, and cuts it back to the latest [`DELIVERED_KEPT`]
/// delivered (the largest keys) once it holds twice as many: one large delete now and then
/// rather than one per event.
pub(super) fn remember_delivered(conn: &Connection, n: i64) -> rusqlite::Result<()> {
    add(conn, "remembered", n)?;
    if counter(conn, "remembered")? >= 2 * DELIVERED_KEPT {
        let forgotten = conn
            .prepare_cached(
                "DELETE FROM delivered WHERE key <
                     (SELECT key FROM delivered ORDER BY key DESC LIMIT 1 OFFSET ?1 - 1)",
            )?
            .execute([DELIVERED_KEPT])?;
        add(conn, "remembered", -(forgotten as i64))?;
    }
    Ok(())
}

pub(super) fn counters(conn: &Connection) -> rusqlite::Result<Counters> {
    let mut counters = Counters::default();
    let mut statement = conn.prepare_cached("SELECT name, value FROM meta")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let value = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        match row.get_ref(0)?.as_str()? {
            "depth" => counters.depth = value,
            "bytes" => counters.bytes = value,
            "dropped" => counters.dropped = value,
            "oversized" => counters.oversized = value,
            "damaged" => counters.damaged = value,
            "dead_letters" => counters.dead_letters = value,
            _ => {}
        }
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{NewEvent, Store};

    fn empty_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_delivered_event_is_not_stored_again_while_among_the_latest_delivered() {
        let dir = empty_dir("delivered");
        let mut store =
            Store::open(&dir.join("spool.db"), 1 << 30, Duration::from_secs(1)).unwrap();
        let kept = super::DELIVERED_KEPT as usize;
        // Ids in the reverse of their text order: the cut goes by the order of delivery.
        let ids: Vec<String> = (0..2 * kept)
            .map(|n| format!("e{:06}", 2 * kept - n))
            .collect();
        let append = |store: &mut Store, ids: &[String]| {
            let new: Vec<NewEvent<'_>> = ids
                .iter()
                .map(|id| NewEvent {
                    event_id: id,
                    payload: id,
                    oversized: false,
                })
                .collect();
            store.append(&new).unwrap().0
        };
        let keys = append(&mut store, &ids[..1]);
        store.confirm(&keys).unwrap();
        assert!(
            append(&mut store, &ids[..1]).is_empty(),
            "delivered: not stored again"
        );
        // Twice the bound delivered: cut back to the latest 10,000 delivered.
        let keys = append(&mut store, &ids[1..]);
        assert_eq!(store.confirm(&keys).unwrap(), 2 * kept as u64 - 1);
        for remembered in [kept, 2 * kept - 1] {
            assert!(append(&mut store, &ids[remembered..=remembered]).is_empty());
        }
        for forgotten in [0, kept - 1] {
            assert_eq!(append(&mut store, &ids[forgotten..=forgotten]).len(), 1);
        }
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_3_store_of_either_shape_confirms_after_the_upgrade() {
        for shape in [
            "event_id TEXT NOT NULL UNIQUE",
            "event_id TEXT PRIMARY KEY) WITHOUT ROWID; SELECT (1",
        ] {
            let dir = empty_dir("v3");
            let path = dir.join("spool.db");
            drop(Store::open(&path, 1 << 20, Duration::from_secs(1)).unwrap());
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "DROP TABLE delivered; CREATE TABLE delivered ({shape});
                 DELETE FROM meta WHERE name = 'remembered'; PRAGMA user_version = 3;"
            ))
            .unwrap();
            drop(conn);

            let mut store = Store::open(&path, 1 << 20, Duration::from_secs(1)).unwrap();
            let event = NewEvent {
                event_id: "a",
                payload: "{}",
                oversized: false,
            };
            let keys = store.append(&[event]).unwrap().0;
            assert_eq!(store.confirm(&keys).unwrap(), 1, "{shape}");
            assert!(store.append(&[event]).unwrap().0.is_empty(), "{shape}");
            drop(store);
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn two_processes_opening_an_old_store_upgrade_it_once() {
        let dir = empty_dir("upgrade-once");
        let path = dir.join("spool.db");
        drop(Store::open(&path, 1 << 20, Duration::from_secs(1)).unwrap());
        let first = rusqlite::Connection::open(&path).unwrap();
        first.execute_batch("PRAGMA user_version = 3;").unwrap();
        // The first process upgrades: it holds the write lock while the second opens.
        first.execute_batch("BEGIN IMMEDIATE;").unwrap();
        let second = std::thread::spawn(move || {
            Store::open(&path, 1 << 20, Duration::from_secs(10)).map(drop)
        });
        // Time for the second to read the version and queue for the lock (it may only
        // help a wrong reading happen, never hide one).
        std::thread::sleep(Duration::from_millis(300));
        first
            .execute_batch(&format!(
                "INSERT INTO delivered (event_id, key) VALUES ('kept', 1);
                 PRAGMA user_version = {}; COMMIT;",
                super::VERSION
            ))
            .unwrap();
        second.join().unwrap().unwrap();
        // Today's main read the version before its transaction and upgraded again,
        // dropping what the first upgrade had written.
        let kept: i64 = first
            .query_row(
                "SELECT count(*) FROM delivered WHERE event_id = 'kept'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1, "the second process upgraded the store again");
        drop(first);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_1_store_keeps_the_first_copy_of_an_event_stored_twice() {
        let dir = empty_dir("schema");
        let path = dir.join("spool.db");
        drop(Store::open(&path, 1 << 20, Duration::from_secs(1)).unwrap());
        // As version 1 left it: no unique index, and an event stored by a hook and its relay.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX events_by_event_id; PRAGMA user_version = 1;
             INSERT INTO events (event_id, payload, size, enqueued_ms) VALUES
                 ('a', 'first', 5, 0), ('b', 'bb', 2, 0), ('a', 'again', 5, 0);",
        )
        .unwrap();
        drop(conn);

        let store = Store::open(&path, 1 << 20, Duration::from_secs(1)).unwrap();
        let rows = store.take(10, usize::MAX, &[]).unwrap();
        let kept: Vec<(&str, &str)> = rows
            .iter()
            .map(|row| (row.event_id.as_str(), row.payload.as_str()))
            .collect();
        assert_eq!(kept, [("a", "first"), ("b", "bb")]);
        let counters = store.counters().unwrap();
        assert_eq!((counters.depth, counters.bytes), (2, 7));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
