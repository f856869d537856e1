//! The on-disk spool: an append-only log of events with a delivery cursor.
//!
//! Every event the relay accepts is appended here before it is acknowledged, and a sender
//! reads the log in order, emits, and moves the cursor past what was delivered. So a relay
//! killed with SIGKILL, or a dashboard that is down for an hour, loses nothing acknowledged:
//! the next relay resumes from the cursor (events sent but not yet committed are sent again:
//! at least once). A hook that cannot reach any relay appends here too.
//!
//! Record: `b"SLU1"`, length (u32 LE), CRC-32 of the payload (u32 LE), payload. A torn or
//! corrupt record (a crash mid-write) is detected by its length or CRC and skipped: the reader
//! resynchronises on the next magic. All writers and readers take `spool.lock` (the data file
//! itself is replaced when compacted, so it cannot carry the lock).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SLU1";
const HEADER: usize = 12;
/// A record larger than this is corrupt, whatever its header says.
const MAX_RECORD: usize = 4 << 20;

/// A spool in one directory.
#[derive(Debug, Clone)]
pub struct Spool {
    data: PathBuf,
    cursor: PathBuf,
    lock: PathBuf,
    max_bytes: u64,
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Found {
    /// Payloads with the offset just past each.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Corrupt or torn records skipped.
    pub skipped: u64,
}

/// The spool's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub bytes: u64,
    pub records: u64,
}

impl Spool {
    pub fn new(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            data: dir.join("spool.log"),
            cursor: dir.join("spool.pos"),
            lock: dir.join("spool.lock"),
            max_bytes,
        })
    }

    fn locked(&self) -> io::Result<File> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        lock.lock()?;
        Ok(lock)
    }

    /// Appends one record; when the spool would exceed its cap, drops the oldest undelivered
    /// records first and returns how many.
    pub fn append(&self, payload: &[u8]) -> io::Result<u64> {
        let _lock = self.locked()?;
        let record_len = (HEADER + payload.len()) as u64;
        let size = fs::metadata(&self.data).map_or(0, |m| m.len());
        let dropped = if size + record_len > self.max_bytes {
            self.drop_oldest(record_len)?
        } else {
            0
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.data)?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        // One write: a crash leaves at most this record torn.
        file.write_all(&record)?;
        Ok(dropped)
    }

    /// Rewrites the spool without its oldest undelivered records, until `room` more bytes
    /// fit. Holds the lock.
    fn drop_oldest(&self, room: u64) -> io::Result<u64> {
        let cursor = self.read_cursor();
        let found = self.read_unlocked(cursor, usize::MAX)?;
        let total: u64 = fs::metadata(&self.data).map_or(0, |m| m.len());
        let mut keep_from = found.records.len();
        let mut kept_bytes = 0u64;
        // Keep the newest records that fit alongside `room`.
        for (i, (_, payload)) in found.records.iter().enumerate().rev() {
            let len = (HEADER + payload.len()) as u64;
            if kept_bytes + len + room > self.max_bytes {
                break;
            }
            kept_bytes += len;
            keep_from = i;
        }
        let dropped = keep_from as u64;
        let tmp = self.data.with_extension("tmp");
        {
            let mut out = File::create(&tmp)?;
            for (_, payload) in &found.records[keep_from..] {
                out.write_all(MAGIC)?;
                out.write_all(&(payload.len() as u32).to_le_bytes())?;
                out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
                out.write_all(payload)?;
            }
        }
        fs::rename(&tmp, &self.data)?;
        self.write_cursor(0)?;
        tracing::warn!(
            dropped,
            was_bytes = total,
            "spool full: oldest events dropped"
        );
        Ok(dropped)
    }

    /// Reads up to `max` records from `offset`.
    pub fn read(&self, offset: u64, max: usize) -> io::Result<Found> {
        let _lock = self.locked()?;
        self.read_unlocked(offset, max)
    }

    fn read_unlocked(&self, offset: u64, max: usize) -> io::Result<Found> {
        let mut file = match File::open(&self.data) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Found::default()),
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut out = Found::default();
        let mut at = 0usize;
        while at < bytes.len() && out.records.len() < max {
            match decode(&bytes[at..]) {
                Some((payload, len)) => {
                    at += len;
                    out.records.push((offset + at as u64, payload.to_vec()));
                }
                None => {
                    // Torn or corrupt: skip to the next magic, if any.
                    out.skipped += 1;
                    match find_magic(&bytes[at + 1..]) {
                        Some(next) => at += 1 + next,
                        None => {
                            at = bytes.len();
                        }
                    }
                    if let Some((last, _)) = out.records.last_mut() {
                        // Committing up to here skips the bad bytes for good.
                        *last = offset + at as u64;
                    } else if at == bytes.len() {
                        out.records.push((offset + at as u64, Vec::new()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The delivery cursor: the offset of the first undelivered record.
    pub fn read_cursor(&self) -> u64 {
        fs::read(&self.cursor)
            .ok()
            .and_then(|bytes| {
                bytes
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            })
            .unwrap_or(0)
    }

    fn write_cursor(&self, offset: u64) -> io::Result<()> {
        let tmp = self.cursor.with_extension("tmp");
        fs::write(&tmp, offset.to_le_bytes())?;
        fs::rename(tmp, &self.cursor)
    }

    /// Moves the cursor past delivered records; when everything is delivered, empties the
    /// spool.
    pub fn commit(&self, offset: u64) -> io::Result<()> {
        let _lock = self.locked()?;
        let size = fs::metadata(&self.data).map_or(0, |m| m.len());
        if offset >= size {
            if size > 0 {
                File::create(&self.data)?;
            }
            self.write_cursor(0)
        } else {
            self.write_cursor(offset)
        }
    }

    /// Undelivered bytes: cheap (file size and cursor only).
    pub fn bytes(&self) -> u64 {
        fs::metadata(&self.data)
            .map_or(0, |m| m.len())
            .saturating_sub(self.read_cursor())
    }

    /// Undelivered bytes and records: reads the whole backlog, so call it rarely.
    pub fn depth(&self) -> Depth {
        let cursor = self.read_cursor();
        match self.read(cursor, usize::MAX) {
            Ok(found) => Depth {
                bytes: fs::metadata(&self.data)
                    .map_or(0, |m| m.len())
                    .saturating_sub(cursor),
                records: found.records.iter().filter(|(_, p)| !p.is_empty()).count() as u64,
            },
            Err(_) => Depth::default(),
        }
    }
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
    (crc32fast::hash(payload) == crc).then_some((payload, HEADER + len))
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(name: &str, max: u64) -> (Spool, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sluice-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (Spool::new(&dir, max).unwrap(), dir)
    }

    fn payloads(found: &Found) -> Vec<String> {
        found
            .records
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
            .collect()
    }

    #[test]
    fn appends_reads_in_order_and_commits() {
        let (spool, dir) = spool("order", 1 << 20);
        for i in 0..5 {
            spool.append(format!("event {i}").as_bytes()).unwrap();
        }
        let found = spool.read(0, 3).unwrap();
        assert_eq!(payloads(&found), ["event 0", "event 1", "event 2"]);
        spool.commit(found.records[2].0).unwrap();
        let rest = spool.read(spool.read_cursor(), 10).unwrap();
        assert_eq!(payloads(&rest), ["event 3", "event 4"]);
        assert_eq!(spool.depth().records, 2);
        spool.commit(rest.records[1].0).unwrap();
        assert_eq!(spool.depth(), Depth::default());
        assert_eq!(
            fs::metadata(dir.join("spool.log")).unwrap().len(),
            0,
            "emptied"
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_torn_record_is_skipped_not_fatal() {
        let (spool, dir) = spool("torn", 1 << 20);
        spool.append(b"first").unwrap();
        // A crash in the middle of a write: a header that promises more than is there.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join("spool.log"))
            .unwrap();
        file.write_all(b"SLU1\x40\x00\x00\x00\x01\x02\x03\x04partial")
            .unwrap();
        drop(file);
        spool.append(b"after the crash").unwrap();
        let found = spool.read(0, 10).unwrap();
        assert_eq!(payloads(&found), ["first", "after the crash"]);
        assert_eq!(found.skipped, 1);
        // Corruption at the very end is skipped too, and committing passes it.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join("spool.log"))
            .unwrap();
        file.write_all(b"SLU1\x05\x00").unwrap();
        drop(file);
        let found = spool.read(0, 10).unwrap();
        assert_eq!(payloads(&found), ["first", "after the crash"]);
        spool.commit(found.records.last().unwrap().0).unwrap();
        assert_eq!(spool.depth().records, 0);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_spool_drops_the_oldest() {
        let (spool, dir) = spool("full", 200);
        let mut dropped = 0;
        for i in 0..20 {
            dropped += spool
                .append(format!("event number {i:02}").as_bytes())
                .unwrap();
        }
        let kept = payloads(&spool.read(spool.read_cursor(), 100).unwrap());
        assert!(dropped > 0);
        assert_eq!(kept.len() as u64 + dropped, 20);
        assert_eq!(
            kept.last().unwrap(),
            "event number 19",
            "the newest are kept"
        );
        assert!(fs::metadata(dir.join("spool.log")).unwrap().len() <= 200);
        let _ = fs::remove_dir_all(dir);
    }
}
