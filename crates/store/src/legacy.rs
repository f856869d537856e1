//! The one-time import of the spool format that came before the database: `spool.log`
//! (records of `SLU1`, length, CRC-32, payload) with its cursor in `spool.pos`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::{now_secs, NewEvent, Result, Store};

const MAGIC: &[u8; 4] = b"SLU1";
const HEADER: usize = 12;
const MAX_RECORD: usize = 4 << 20;

/// Imports the undelivered records of `dir/spool.log` into `store`, then renames the log to
/// `spool.log.imported-SECS` and removes its cursor. Unreadable records count as damaged.
pub(super) fn import(dir: &Path, store: &mut Store) -> Result<u64> {
    let log = dir.join("spool.log");
    let bytes = match fs::read(&log) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error.into()),
    };
    let cursor = fs::read(dir.join("spool.pos"))
        .ok()
        .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
        .and_then(|c| usize::try_from(c).ok())
        .filter(|&c| c <= bytes.len())
        .unwrap_or(0);
    let (payloads, torn) = decode_all(&bytes[cursor..]);
    let records = payloads.len();
    let events: Vec<(String, String)> = payloads
        .into_iter()
        .filter_map(|payload| {
            let text = String::from_utf8(payload).ok()?;
            let value: Value = serde_json::from_str(&text).ok()?;
            let event_id = value
                .pointer("/data/event_id")
                .and_then(Value::as_str)
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
            Some((event_id, text))
        })
        .collect();
    // Intact records that are not a JSON payload are damage too.
    let damaged = torn + (records - events.len()) as u64;
    let new = NewEvent::from_pairs(&events);
    let (stored, _) = store.append(&new)?;
    store.note_damaged(damaged)?;
    let mut imported = log.as_os_str().to_owned();
    imported.push(format!(".imported-{}", now_secs()));
    fs::rename(&log, imported)?;
    let _ = fs::remove_file(dir.join("spool.pos"));
    let _ = fs::remove_file(dir.join("spool.lock"));
    tracing::info!(
        events = stored.len(),
        damaged,
        "imported the legacy spool.log"
    );
    Ok(stored.len() as u64)
}

/// Every intact record's payload, and how many torn or corrupt stretches were skipped.
fn decode_all(bytes: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut out = Vec::new();
    let mut damaged = 0;
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Some((payload, len)) => {
                out.push(payload.to_vec());
                at += len;
            }
            None => {
                damaged += 1;
                match bytes[at + 1..].windows(4).position(|w| w == MAGIC) {
                    Some(next) => at += 1 + next,
                    None => break,
                }
            }
        }
    }
    (out, damaged)
}

fn decode(bytes: &[u8]) -> Option<(&[u8], usize)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    if len > MAX_RECORD || bytes.len() < HEADER + len {
        return None;
    }
    let payload = &bytes[HEADER..HEADER + len];
    (crate::checksum::crc32(payload) == crc).then_some((payload, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crate::checksum::crc32(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn imports_the_records_past_the_cursor_once_and_counts_torn_ones() {
        let dir = std::env::temp_dir().join(format!("sluice-legacy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut log = Vec::new();
        for i in 0..4 {
            log.extend(record(
                format!(r#"{{"data":{{"event_id":"id-{i}","n":{i}}}}}"#).as_bytes(),
            ));
        }
        let cursor = record(br#"{"data":{"event_id":"id-0","n":0}}"#).len() as u64;
        log.extend_from_slice(b"SLU1\x40\x00\x00\x00torn");
        log.extend(record(br#"{"data":{"n":4}}"#));
        log.extend(record(b"intact, but not a payload"));
        fs::write(dir.join("spool.log"), &log).unwrap();
        fs::write(dir.join("spool.pos"), cursor.to_le_bytes()).unwrap();

        let path = dir.join("spool.db");
        let (store, opened) = Store::open_checked(&path, 1 << 20).unwrap();
        assert_eq!(
            opened.imported, 4,
            "records 1, 2, 3 and the one after the tear"
        );
        let rows = store.take(100, usize::MAX, &[]).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(&ids[..3], ["id-1", "id-2", "id-3"]);
        assert!(rows[3].payload.contains(r#""n":4"#));
        assert_eq!(
            store.counters().unwrap().damaged,
            2,
            "the torn record and the one that is not JSON"
        );
        assert!(!dir.join("spool.log").exists());
        drop(store);
        let (_, again) = Store::open_checked(&path, 1 << 20).unwrap();
        assert_eq!(again.imported, 0, "imported once");
        let _ = fs::remove_dir_all(dir);
    }
}
