//! The breaker's states, and the packed state word that holds the state, its generation and
//! the half-open probe and success counts in one `AtomicU64`.

use std::fmt;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted against the trip policy.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probes pass; their outcomes close or reopen the breaker.
    HalfOpen,
    /// Rejects every call until [`BreakerHandle::reset`](crate::BreakerHandle::reset).
    ForcedOpen,
    /// Admits every call and records metrics, but never trips, until
    /// [`BreakerHandle::reset`](crate::BreakerHandle::reset).
    Disabled,
}

impl State {
    /// The state's name in snake case (`"closed"`, `"half_open"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }

    const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Layout of the state word: the state in bits 0..8, the probes in flight in 8..16, the probe
// successes in 16..32, the generation in 32..64. Every transition bumps the generation and
// clears the counts.
const STATE_MASK: u64 = 0xff;
/// One more probe in flight.
pub(crate) const PROBE_ONE: u64 = 1 << 8;
const PROBE_MASK: u64 = 0xff << 8;
/// One more probe success.
pub(crate) const SUCCESS_ONE: u64 = 1 << 16;
const SUCCESS_MASK: u64 = 0xffff << 16;
const GEN_SHIFT: u32 = 32;

#[inline]
pub(crate) const fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}

#[inline]
pub(crate) const fn gen_of(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[inline]
pub(crate) const fn probes_of(word: u64) -> u32 {
    ((word & PROBE_MASK) >> 8) as u32
}

#[inline]
pub(crate) const fn successes_of(word: u64) -> u32 {
    ((word & SUCCESS_MASK) >> 16) as u32
}

/// The word of a state just entered: no probes, no successes.
#[inline]
pub(crate) const fn pack(gen: u32, state: State) -> u64 {
    (gen as u64) << GEN_SHIFT | state.code()
}

/// A closed admission made by `poll_ready`, to be checked at `call`: the state word it was
/// made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClosedTicket(pub(crate) u64);

impl ClosedTicket {
    #[inline]
    pub(crate) const fn generation(self) -> u32 {
        gen_of(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_packs_and_unpacks_every_field() {
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
        ] {
            for gen in [0, 1, 7, u32::MAX] {
                let word = pack(gen, state);
                assert_eq!((state_of(word), gen_of(word)), (state, gen));
                assert_eq!((probes_of(word), successes_of(word)), (0, 0));
                let busy = word + 255 * PROBE_ONE + 65_535 * SUCCESS_ONE;
                assert_eq!((state_of(busy), gen_of(busy)), (state, gen));
                assert_eq!((probes_of(busy), successes_of(busy)), (255, 65_535));
            }
        }
        assert_eq!(ClosedTicket(pack(9, State::Closed)).generation(), 9);
    }

    #[test]
    fn names_are_snake_case() {
        assert_eq!(State::HalfOpen.to_string(), "half_open");
        assert_eq!(State::ForcedOpen.as_str(), "forced_open");
    }
}
