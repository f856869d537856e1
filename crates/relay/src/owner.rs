//! One owner per store, and a socket path that stays ours.
//!
//! The store file is the unit of ownership: the relay that holds the lock beside it (in the
//! state directory) delivers it. Two relays can share one store when their hooks run with
//! different runtime directories (one context with `XDG_RUNTIME_DIR`, one without): the
//! second stores its hooks' events in the shared store and delivers nothing, and the
//! owner, which notices another process's commits (see `store_worker`), sends them. The
//! second takes over once the owner exits. Vector locks its disk buffer's directory the
//! same way.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;

/// The store's lock, held: dropping it lets another relay take over delivery.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

/// The store's lock, once this relay holds it: at once, or when its holder exits.
pub(crate) enum Ownership {
    Held(StoreLock),
    Waiting(oneshot::Receiver<io::Result<StoreLock>>),
}

impl Ownership {
    /// Takes the lock at `path` if it is free, else waits for it on a thread of its own (a
    /// `flock` blocks, and the runtime must never wait for it at shutdown).
    pub(crate) fn claim(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        if file.try_lock().is_ok() {
            return Ok(Self::Held(StoreLock { _file: file }));
        }
        let (held, waiting) = oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-store-lock".to_string())
            .spawn(move || {
                let _ = held.send(file.lock().map(|()| StoreLock { _file: file }));
            })?;
        Ok(Self::Waiting(waiting))
    }

    pub(crate) fn is_held(&self) -> bool {
        matches!(self, Self::Held(_))
    }

    /// The lock, once held.
    pub(crate) async fn held(self) -> io::Result<StoreLock> {
        match self {
            Self::Held(lock) => Ok(lock),
            Self::Waiting(waiting) => waiting
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the store lock's thread ended"))),
        }
    }
}

/// The relay's socket, as bound: a path is ours only while it names the file we bound (the
/// runtime directory can be removed under a relay, and another relay bind the same path).
#[derive(Debug)]
pub(crate) struct BoundSocket {
    pub(crate) path: PathBuf,
    id: (u64, u64),
}

impl BoundSocket {
    /// Records the file just bound at `path`.
    pub(crate) fn new(path: PathBuf) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(Self {
            path,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Whether the path still names the socket this relay bound.
    pub(crate) fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.id)
    }

    /// Removes the socket file, unless it is another relay's by now.
    pub(crate) fn remove(&self) {
        if self.is_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
