//! The store's own thread: it owns the database connection (SQLite calls block), commits the
//! events of concurrent clients in one transaction, and reopens the store at its path if its
//! directory was removed under the relay, carrying the waiting events over.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use sluice_hook::error_chain;
use sluice_hook::safety;
use sluice_hook::store::{Counters, NewEvent, Row, Store};

/// The most events committed in one transaction.
const GROUP: usize = 512;
/// How often the thread checks that its file is still the one at the store's path.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// An event a client handed over.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) event_id: String,
    pub(crate) json: String,
    pub(crate) oversized: bool,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    Append(Incoming, Reply<()>),
    Take(usize, usize, Reply<Vec<Row>>),
    Confirm(Vec<i64>, Reply<u64>),
    Counters(Reply<Counters>),
    /// Makes sure the events are in the file at the store's path, then ends the thread.
    Close(Reply<()>),
}

/// A handle on the store's thread; the thread ends when every handle is gone.
#[derive(Debug, Clone)]
pub(crate) struct StoreWorker {
    commands: mpsc::Sender<Command>,
}

impl StoreWorker {
    pub(crate) fn spawn(store: Store, path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        let (commands, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("sluice-store".to_string())
            .spawn(move || run(store, &path, max_bytes, &received))?;
        Ok(Self { commands })
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| "the store is closed".to_string())?;
        answer
            .await
            .map_err(|_| "the store is closed".to_string())?
    }

    pub(crate) async fn append(&self, event: Incoming) -> Result<(), String> {
        self.ask(|reply| Command::Append(event, reply)).await
    }

    pub(crate) async fn take(&self, limit: usize, max_bytes: usize) -> Result<Vec<Row>, String> {
        self.ask(|reply| Command::Take(limit, max_bytes, reply))
            .await
    }

    pub(crate) async fn confirm(&self, keys: Vec<i64>) -> Result<u64, String> {
        self.ask(|reply| Command::Confirm(keys, reply)).await
    }

    pub(crate) async fn counters(&self) -> Result<Counters, String> {
        self.ask(Command::Counters).await
    }

    /// Ends the thread once the events it holds are in the file at the store's path.
    pub(crate) async fn close(&self) -> Result<(), String> {
        self.ask(Command::Close).await
    }
}

fn run(
    mut store: Store,
    path: &std::path::Path,
    max_bytes: u64,
    received: &mpsc::Receiver<Command>,
) {
    let mut checked = Instant::now();
    let mut next = None;
    loop {
        let command = match next.take() {
            Some(command) => command,
            None => match received.recv_timeout(CHECK_EVERY) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    reopen_if_gone(&mut store, path, max_bytes);
                    checked = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        match command {
            Command::Append(first, reply) => {
                let mut group = vec![(first, reply)];
                while group.len() < GROUP {
                    match received.try_recv() {
                        Ok(Command::Append(event, reply)) => group.push((event, reply)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // A ghost file would take the events with it when the relay exits.
                reopen_if_gone(&mut store, path, max_bytes);
                append_group(&mut store, group);
            }
            Command::Take(limit, max, reply) => {
                let _ = reply.send(store.take(limit, max).map_err(|e| error_chain(&e)));
            }
            Command::Confirm(keys, reply) => {
                let _ = reply.send(store.confirm(&keys).map_err(|e| error_chain(&e)));
            }
            Command::Counters(reply) => {
                let _ = reply.send(store.counters().map_err(|e| error_chain(&e)));
            }
            Command::Close(reply) => {
                reopen_if_gone(&mut store, path, max_bytes);
                let _ = reply.send(Ok(()));
                return;
            }
        }
        if checked.elapsed() >= CHECK_EVERY {
            reopen_if_gone(&mut store, path, max_bytes);
            checked = Instant::now();
        }
    }
}

fn append_group(store: &mut Store, group: Vec<(Incoming, Reply<()>)>) {
    let events: Vec<NewEvent<'_>> = group
        .iter()
        .map(|(event, _)| NewEvent {
            event_id: &event.event_id,
            payload: &event.json,
            oversized: event.oversized,
        })
        .collect();
    let outcome = store.append(&events).map_err(|e| error_chain(&e));
    if let Ok((_, dropped)) = &outcome {
        if *dropped > 0 {
            tracing::warn!(dropped, "spool full: the oldest events were dropped");
        }
    }
    for (_, reply) in group {
        let _ = reply.send(outcome.as_ref().map(drop).map_err(Clone::clone));
    }
}

/// A removed or replaced store file is a ghost no other process sees: open a new store at
/// the path and move the waiting events into it.
fn reopen_if_gone(store: &mut Store, path: &std::path::Path, max_bytes: u64) {
    if store.is_current() {
        return;
    }
    let fresh = path
        .parent()
        .map_or(Ok(()), safety::private_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            Store::open(path, max_bytes, Duration::from_secs(2)).map_err(|e| error_chain(&e))
        });
    match fresh {
        Ok(mut fresh) => match store.move_into(&mut fresh) {
            Ok(moved) => {
                tracing::error!(path = %path.display(), moved, "the store's file was removed: reopened it");
                *store = fresh;
            }
            Err(error) => tracing::error!(
                error = error_chain(&error),
                "cannot move events to the reopened store"
            ),
        },
        Err(error) => {
            tracing::error!(%error, path = %path.display(), "the store's file was removed and cannot be made again");
        }
    }
}
