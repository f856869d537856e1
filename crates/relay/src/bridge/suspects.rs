//! Events the dashboard fails on: tried alone, and set aside after a few failures alone.
//!
//! As the relay does between itself and its destination (`crate::blame`), with the stream's
//! sequence as the key and the stream as the place an event stays:
//!
//! - **Isolate.** After a round failed on an event that was sent and not confirmed, the
//!   next round sends one event at a time, so that a failure names its event.
//! - **Blame only a working dashboard.** A first failure alone counts against the event only
//!   if the dashboard acknowledged something within [`BLAME_WINDOW`]; each later one only if
//!   it acknowledged another event since the event's previous failure. A dashboard that
//!   acknowledges nothing, is down, or stops acknowledging sets nothing aside.
//! - **Suspects go alone.** An event that failed alone is nak'd with [`SUSPECT_RETRY`] and
//!   comes back alone, counted or not; when the dashboard saw it and did not acknowledge it,
//!   the events behind it go on, since its first arrival was at its place in order. Acks are
//!   cumulative: an event followed within the ack timeout by one the dashboard acknowledges
//!   is confirmed with it, so only an event with nothing right behind it can fail alone.
//! - **Set aside after [`SET_ASIDE_AFTER`] counted failures alone**: terminated, so the
//!   consumer never redelivers it, logged once with its stream sequence, and counted. It
//!   stays in the stream (`nats stream get SLUICE_HOOKS SEQ`) for as long as the stream keeps
//!   messages.

use std::collections::HashMap;

use tokio::time::Instant;

pub(super) use crate::blame::{BLAME_WINDOW, SET_ASIDE_AFTER, SUSPECT_RETRY};

/// The most suspects tracked at once: beyond, a failure alone is an ordinary failure.
const MAX_SUSPECTS: usize = 1024;

/// What a failure alone means for its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not counted against it: no acknowledgement proves the dashboard works meanwhile.
    NotBlamed,
    /// Counted: this many failures alone so far.
    Suspect(u32),
    /// The last failure alone it is allowed: set it aside.
    SetAside,
}

/// A suspect: its counted failures alone, and the count of acknowledgements at its last
/// failure.
#[derive(Debug, Clone, Copy)]
struct Suspect {
    failures: u32,
    acks_at: u64,
}

/// The suspects, by stream sequence; and the dashboard's acknowledgements.
#[derive(Debug, Default)]
pub(super) struct Suspects {
    suspects: HashMap<u64, Suspect>,
    acks: u64,
    last_ack: Option<Instant>,
}

impl Suspects {
    /// The dashboard acknowledged the event at `sequence` just now.
    pub(super) fn acked(&mut self, sequence: Option<u64>) {
        self.acks += 1;
        self.last_ack = Some(Instant::now());
        if let Some(sequence) = sequence {
            if !self.suspects.is_empty() {
                self.suspects.remove(&sequence);
            }
        }
    }

    /// Whether the event at `sequence` must go alone.
    pub(super) fn is_suspect(&self, sequence: Option<u64>) -> bool {
        !self.suspects.is_empty() && sequence.is_some_and(|s| self.suspects.contains_key(&s))
    }

    /// The event at `sequence` failed alone.
    pub(super) fn failed_alone(&mut self, sequence: u64) -> Verdict {
        let acks = self.acks;
        let full = self.suspects.len() >= MAX_SUSPECTS;
        let counted = match self.suspects.get_mut(&sequence) {
            Some(suspect) => {
                let proven = acks > suspect.acks_at;
                suspect.acks_at = acks;
                if proven {
                    suspect.failures += 1;
                }
                proven.then_some(suspect.failures)
            }
            None if !full => {
                let works = self.last_ack.is_some_and(|at| at.elapsed() < BLAME_WINDOW);
                let failures = u32::from(works);
                self.suspects.insert(
                    sequence,
                    Suspect {
                        failures,
                        acks_at: acks,
                    },
                );
                works.then_some(failures)
            }
            None => None,
        };
        match counted {
            None => Verdict::NotBlamed,
            Some(failures) if failures >= SET_ASIDE_AFTER => {
                self.suspects.remove(&sequence);
                Verdict::SetAside
            }
            Some(failures) => Verdict::Suspect(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_poison_between_acknowledged_events_is_set_aside_on_its_third_failure() {
        let mut suspects = Suspects::default();
        suspects.acked(Some(1));
        assert_eq!(suspects.failed_alone(7), Verdict::Suspect(1));
        assert!(suspects.is_suspect(Some(7)) && !suspects.is_suspect(Some(8)));
        suspects.acked(Some(8));
        assert_eq!(suspects.failed_alone(7), Verdict::Suspect(2));
        suspects.acked(Some(9));
        assert_eq!(suspects.failed_alone(7), Verdict::SetAside);
        assert!(!suspects.is_suspect(Some(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dashboard_that_stops_acknowledging_sets_nothing_aside() {
        let mut suspects = Suspects::default();
        suspects.acked(Some(1));
        // Every event then fails alone, well within the blame window: only the first failure
        // of each counts, since no acknowledgement came after it.
        for _ in 0..5 {
            for sequence in 2..6 {
                assert_ne!(suspects.failed_alone(sequence), Verdict::SetAside);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_failure_with_no_acknowledgement_lately_is_tracked_not_counted() {
        let mut suspects = Suspects::default();
        assert_eq!(suspects.failed_alone(7), Verdict::NotBlamed);
        assert!(suspects.is_suspect(Some(7)), "it goes alone from now on");
        suspects.acked(Some(8));
        assert_eq!(suspects.failed_alone(7), Verdict::Suspect(1));

        suspects.acked(Some(7));
        assert!(
            !suspects.is_suspect(Some(7)),
            "acknowledged: no longer a suspect"
        );
        tokio::time::advance(BLAME_WINDOW).await;
        assert_eq!(suspects.failed_alone(9), Verdict::NotBlamed);
    }
}
