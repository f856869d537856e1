//! Events the dashboard fails on: tried alone, and set aside after a few failures alone.
//!
//! As the relay does between itself and its destination (`crate::blame`), with the stream's
//! sequence as the key and the stream as the place an event stays:
//!
//! - **Isolate.** After a round failed on an event that was sent and not confirmed, the
//!   next round sends one event at a time, so that a failure names its event.
//! - **Blame only a working dashboard.** A failure alone counts against the event only if
//!   the dashboard acknowledged something within [`BLAME_WINDOW`]: a dashboard that
//!   acknowledges nothing, or an outage, sets nothing aside.
//! - **Suspects go alone.** A suspect is nak'd with [`SUSPECT_RETRY`] and comes back alone;
//!   when the dashboard saw it and did not acknowledge it, the events behind it go on, since
//!   its first arrival was at its place in order.
//! - **Set aside after [`SET_ASIDE_AFTER`] failures alone**: terminated, so the consumer
//!   never redelivers it, logged once with its stream sequence, and counted. It stays in the
//!   stream (`nats stream get SLUICE_HOOKS SEQ`) for as long as the stream keeps messages.

use std::collections::HashMap;

use tokio::time::Instant;

pub(super) use crate::blame::{BLAME_WINDOW, SET_ASIDE_AFTER, SUSPECT_RETRY};

/// The most suspects tracked at once: beyond, a failure alone is an ordinary failure.
const MAX_SUSPECTS: usize = 1024;

/// What a failure alone means for its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not counted against it: the dashboard proved nothing lately.
    NotBlamed,
    /// Counted: this many failures alone so far; it is tried alone again.
    Suspect(u32),
    /// The last failure alone it is allowed: set it aside.
    SetAside,
}

/// The suspects, by stream sequence, with their failures alone; and the last acknowledgement.
#[derive(Debug, Default)]
pub(super) struct Suspects {
    failures: HashMap<u64, u32>,
    last_ack: Option<Instant>,
}

impl Suspects {
    /// The dashboard acknowledged the event at `sequence` just now.
    pub(super) fn acked(&mut self, sequence: Option<u64>) {
        self.last_ack = Some(Instant::now());
        if let Some(sequence) = sequence {
            if !self.failures.is_empty() {
                self.failures.remove(&sequence);
            }
        }
    }

    /// Whether the event at `sequence` must go alone.
    pub(super) fn is_suspect(&self, sequence: Option<u64>) -> bool {
        !self.failures.is_empty() && sequence.is_some_and(|s| self.failures.contains_key(&s))
    }

    /// Whether any event must go alone (to spare the sequence lookup when none does).
    pub(super) fn any(&self) -> bool {
        !self.failures.is_empty()
    }

    /// The event at `sequence` failed alone.
    pub(super) fn failed_alone(&mut self, sequence: u64) -> Verdict {
        let works = self.last_ack.is_some_and(|at| at.elapsed() < BLAME_WINDOW);
        if !works || (self.failures.len() >= MAX_SUSPECTS && !self.failures.contains_key(&sequence))
        {
            return Verdict::NotBlamed;
        }
        let failures = self.failures.entry(sequence).or_insert(0);
        *failures += 1;
        if *failures >= SET_ASIDE_AFTER {
            self.failures.remove(&sequence);
            Verdict::SetAside
        } else {
            Verdict::Suspect(*failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blames_only_a_dashboard_that_acknowledged_lately() {
        let mut suspects = Suspects::default();
        assert_eq!(suspects.failed_alone(7), Verdict::NotBlamed);
        suspects.acked(Some(1));
        assert_eq!(suspects.failed_alone(7), Verdict::Suspect(1));
        assert!(suspects.is_suspect(Some(7)) && !suspects.is_suspect(Some(8)));
        assert_eq!(suspects.failed_alone(7), Verdict::Suspect(2));
        assert_eq!(suspects.failed_alone(7), Verdict::SetAside);
        assert!(!suspects.any());

        suspects.failed_alone(9);
        suspects.acked(Some(9));
        assert!(!suspects.is_suspect(Some(9)), "acked: no longer a suspect");

        tokio::time::advance(BLAME_WINDOW).await;
        assert_eq!(suspects.failed_alone(9), Verdict::NotBlamed);
    }
}
