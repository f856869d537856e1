//! A model-based property test of the store on a real SQLite file: random interleavings of
//! appends under a small cap, takes, confirms, failed deliveries, reopens (a crash: the
//! connection is dropped mid-way), a second writer and events stored again (a hook and its
//! relay both storing one), checked after every step against a `VecDeque`. Nothing is lost
//! but counted drops of the oldest, an event waits once however often it is stored, order is
//! kept, and the counters are exact. An event delivered is not stored again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use sluice_store::{NewEvent, Store};

const CAP: u64 = 600;

#[derive(Debug, Clone)]
enum Op {
    /// Events of these payload sizes, in one transaction, by the first or second writer.
    Append { sizes: Vec<usize>, second: bool },
    /// Take up to n of the oldest (a round in flight).
    Take(usize),
    /// The dashboard confirmed the first k of the round in flight; the rest failed.
    Confirm(usize),
    /// The round failed entirely.
    Fail,
    /// Crash and reopen.
    Reopen,
    /// The event appended `back` appends ago is appended again, by the first or second writer.
    Repeat { back: usize, second: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec(1usize..120, 1..4), any::<bool>())
            .prop_map(|(sizes, second)| Op::Append { sizes, second }),
        2 => (1usize..8).prop_map(Op::Take),
        2 => (0usize..8).prop_map(Op::Confirm),
        1 => Just(Op::Fail),
        1 => Just(Op::Reopen),
        2 => (0usize..6, any::<bool>()).prop_map(|(back, second)| Op::Repeat { back, second }),
    ]
}

#[derive(Debug, Default)]
struct Model {
    /// (event id, payload size), oldest first.
    waiting: VecDeque<(String, usize)>,
    dropped: u64,
    /// Events confirmed while they were waiting (the store remembers the latest 10,000).
    delivered: std::collections::HashSet<String>,
}

impl Model {
    fn bytes(&self) -> usize {
        self.waiting.iter().map(|(_, size)| size).sum()
    }

    fn append(&mut self, id: String, size: usize) {
        if self.delivered.contains(&id) || self.waiting.iter().any(|(waiting, _)| *waiting == id) {
            return;
        }
        let bytes = self.bytes() as u64;
        if bytes > 0 && bytes + size as u64 > CAP {
            let need = bytes + size as u64 - CAP;
            let mut freed = 0u64;
            while freed < need {
                let Some((_, old)) = self.waiting.pop_front() else {
                    break;
                };
                freed += old as u64;
                self.dropped += 1;
            }
        }
        self.waiting.push_back((id, size));
    }
}

fn open(path: &std::path::Path) -> Store {
    Store::open(path, CAP, Duration::from_secs(5)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_keeps_what_the_model_keeps(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempdir();
        let path = dir.join("spool.db");
        let mut store = open(&path);
        let mut second = open(&path);
        let mut model = Model::default();
        // The round in flight: keys and ids, in order.
        let mut in_flight: Vec<(i64, String)> = Vec::new();
        let mut next_id = 0u64;
        // Every event appended so far, (id, payload), in order.
        let mut appended: Vec<(String, String)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { sizes, second: by_second } => {
                    let events: Vec<(String, String)> = sizes
                        .iter()
                        .map(|&size| {
                            next_id += 1;
                            let id = format!("e{next_id:05}");
                            let payload = format!("{id}{}", "x".repeat(size.saturating_sub(6)));
                            (id, payload)
                        })
                        .collect();
                    let new: Vec<NewEvent<'_>> = events
                        .iter()
                        .map(|(id, payload)| NewEvent { event_id: id, payload, oversized: false })
                        .collect();
                    let writer = if by_second { &mut second } else { &mut store };
                    writer.append(&new).unwrap();
                    for (id, payload) in &events {
                        model.append(id.clone(), payload.len());
                    }
                    appended.extend(events);
                }
                Op::Take(n) => {
                    in_flight = store
                        .take(n, usize::MAX, &[])
                        .unwrap()
                        .into_iter()
                        .map(|row| (row.key, row.event_id))
                        .collect();
                    let expected: Vec<&String> = model.waiting.iter().take(n).map(|(id, _)| id).collect();
                    let got: Vec<&String> = in_flight.iter().map(|(_, id)| id).collect();
                    prop_assert_eq!(got, expected, "a take is the oldest, in order");
                }
                Op::Confirm(k) => {
                    let k = k.min(in_flight.len());
                    let keys: Vec<i64> = in_flight[..k].iter().map(|(key, _)| *key).collect();
                    store.confirm(&keys).unwrap();
                    for (_, id) in &in_flight[..k] {
                        match model.waiting.iter().position(|(waiting, _)| waiting == id) {
                            Some(at) => {
                                model.waiting.remove(at);
                                model.delivered.insert(id.clone());
                            }
                            // The cap dropped it while in flight; it arrived after all.
                            None => model.dropped -= 1,
                        }
                    }
                    in_flight.clear();
                }
                Op::Repeat { back, second: by_second } => {
                    let Some((id, payload)) = appended.iter().rev().nth(back) else {
                        continue;
                    };
                    let writer = if by_second { &mut second } else { &mut store };
                    writer
                        .append(&[NewEvent { event_id: id, payload, oversized: false }])
                        .unwrap();
                    model.append(id.clone(), payload.len());
                }
                Op::Fail => in_flight.clear(),
                Op::Reopen => {
                    drop(store);
                    store = open(&path);
                    in_flight.clear();
                }
            }
            let rows = store.take(usize::MAX, usize::MAX, &[]).unwrap();
            let ids: Vec<&String> = rows.iter().map(|row| &row.event_id).collect();
            let expected: Vec<&String> = model.waiting.iter().map(|(id, _)| id).collect();
            prop_assert_eq!(ids, expected);
            let keys: Vec<i64> = rows.iter().map(|row| row.key).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys in arrival order");
            let counters = store.counters().unwrap();
            prop_assert_eq!(counters.depth, model.waiting.len() as u64);
            prop_assert_eq!(counters.bytes, model.bytes() as u64);
            prop_assert_eq!(counters.dropped, model.dropped);
            prop_assert!(counters.bytes <= CAP || counters.depth == 1, "within the cap");
        }
        drop((store, second));
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-store-model-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
