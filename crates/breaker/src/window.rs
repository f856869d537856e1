//! Lock-free sliding windows for the rate policies.
//!
//! Both windows take O(1) memory in traffic: a count window is a ring of `n` one-byte slots,
//! a time window a ring of buckets. Recording never locks; a reset (on closing) races benignly
//! with concurrent recorders: a call recorded during a reset is either wiped or counted.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::policy::Window;

/// Bits of one recorded call.
pub(crate) const RECORDED: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const SLOW: u8 = 4;

/// What a window holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

#[derive(Debug)]
pub(crate) enum SlidingWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl SlidingWindow {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => Self::Count(CountWindow::new(n as usize)),
            Window::Time { span, buckets } => {
                let width = (span / buckets).as_nanos().max(1);
                Self::Time(TimeWindow::new(
                    u64::try_from(width).unwrap_or(u64::MAX),
                    buckets as usize,
                ))
            }
        }
    }

    /// Records one call (`bits` of [`FAILED`] and [`SLOW`]) at `now` nanoseconds.
    pub(crate) fn record(&self, bits: u8, now: u64) {
        match self {
            Self::Count(w) => w.record(bits),
            Self::Time(w) => w.record(bits, now),
        }
    }

    pub(crate) fn tally(&self, now: u64) -> Tally {
        match self {
            Self::Count(w) => w.tally(),
            Self::Time(w) => w.tally(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }

    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }
}

/// The last `n` calls: a ring of slots, each swapped atomically, and three counters kept equal
/// to the ring's contents by applying each swap's difference.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    calls: AtomicU64,
    failed: AtomicU64,
    slow: AtomicU64,
}

impl CountWindow {
    fn new(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    fn record(&self, bits: u8) {
        let len = self.slots.len() as u64;
        // The remainder is below `len`, which came from a usize.
        let index = (self.next.fetch_add(1, Relaxed) % len) as usize;
        let old = self.slots[index].swap(bits | RECORDED, Relaxed);
        self.apply(old, bits | RECORDED);
    }

    fn apply(&self, old: u8, new: u8) {
        for (bit, counter) in [
            (RECORDED, &self.calls),
            (FAILED, &self.failed),
            (SLOW, &self.slow),
        ] {
            match (old & bit != 0, new & bit != 0) {
                (false, true) => {
                    counter.fetch_add(1, Relaxed);
                }
                (true, false) => {
                    counter.fetch_sub(1, Relaxed);
                }
                _ => {}
            }
        }
    }

    fn tally(&self) -> Tally {
        // A racing record may show a counter one off for an instant; clamp so a rate never
        // exceeds 1.
        let calls = self.calls.load(Relaxed);
        Tally {
            calls,
            failed: self.failed.load(Relaxed).min(calls),
            slow: self.slow.load(Relaxed).min(calls),
        }
    }

    fn reset(&self) {
        for slot in &self.slots {
            let old = slot.swap(0, Relaxed);
            self.apply(old, 0);
        }
    }
}

/// The calls of the last `buckets * width` nanoseconds. Each bucket keeps three words, each
/// `epoch << 32 | count`: a word whose epoch is not the current one is stale and restarts at
/// the next record, so no sweeper is needed.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    width: u64,
    buckets: Box<[[AtomicU64; 3]]>,
}

const COUNT_MASK: u64 = u32::MAX as u64;

impl TimeWindow {
    fn new(width: u64, buckets: usize) -> Self {
        Self {
            width,
            buckets: (0..buckets.max(1))
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    /// The epoch is truncated to 32 bits; comparisons wrap, so only a bucket untouched for
    /// 2^32 widths could be mistaken for a current one.
    fn epoch(&self, now: u64) -> u32 {
        (now / self.width) as u32
    }

    fn record(&self, bits: u8, now: u64) {
        let epoch = self.epoch(now);
        let bucket = &self.buckets[epoch as usize % self.buckets.len()];
        bump(&bucket[0], epoch);
        if bits & FAILED != 0 {
            bump(&bucket[1], epoch);
        }
        if bits & SLOW != 0 {
            bump(&bucket[2], epoch);
        }
    }

    fn tally(&self, now: u64) -> Tally {
        let epoch = self.epoch(now);
        let span = self.buckets.len() as u64;
        let count = |word: &AtomicU64| {
            let value = word.load(Relaxed);
            let age = u64::from(epoch.wrapping_sub((value >> 32) as u32));
            if age < span {
                value & COUNT_MASK
            } else {
                0
            }
        };
        let mut tally = Tally::default();
        for [calls, failed, slow] in &self.buckets {
            tally.calls += count(calls);
            tally.failed += count(failed);
            tally.slow += count(slow);
        }
        tally.failed = tally.failed.min(tally.calls);
        tally.slow = tally.slow.min(tally.calls);
        tally
    }

    fn reset(&self) {
        for bucket in &self.buckets {
            for word in bucket {
                word.store(0, Relaxed);
            }
        }
    }
}

fn bump(word: &AtomicU64, epoch: u32) {
    let _ = word.fetch_update(Relaxed, Relaxed, |value| {
        if (value >> 32) as u32 == epoch {
            // Saturate rather than carry into the epoch.
            (value & COUNT_MASK != COUNT_MASK).then_some(value + 1)
        } else {
            Some(u64::from(epoch) << 32 | 1)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn count_window_keeps_only_the_last_n() {
        let w = SlidingWindow::new(Window::last_calls(3));
        w.record(FAILED, 0);
        w.record(FAILED, 0);
        w.record(0, 0);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 3,
                failed: 2,
                slow: 0
            }
        );
        w.record(SLOW, 0);
        w.record(0, 0);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 3,
                failed: 0,
                slow: 1
            }
        );
        w.reset();
        assert_eq!(w.tally(0), Tally::default());
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let w = SlidingWindow::new(Window::last_in_buckets(Duration::from_nanos(100), 4));
        w.record(FAILED, 0);
        w.record(0, 30);
        assert_eq!(w.tally(30).calls, 2);
        // Buckets are 25 ns wide: at 99 the first bucket is still inside.
        assert_eq!(w.tally(99).failed, 1);
        // At 100 the bucket of time 0 has left the window; the one of time 30 has not.
        assert_eq!(
            w.tally(100),
            Tally {
                calls: 1,
                failed: 0,
                slow: 0
            }
        );
        assert_eq!(w.tally(125), Tally::default());
        // A record after the ring wrapped restarts the bucket instead of adding to it.
        w.record(0, 400);
        assert_eq!(w.tally(400).calls, 1);
    }
}
