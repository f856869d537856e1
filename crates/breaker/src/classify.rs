//! Deciding whether a call succeeded, failed, or does not count.

/// What a finished call means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked; in half-open it counts toward closing.
    Success,
    /// The call failed; it counts toward opening.
    Failure,
    /// The call says nothing about the inner service's health (a 404, a cancelled request).
    Ignore,
}

/// Classifies a call's result as an [`Outcome`].
///
/// Implemented for [`ErrIsFailure`] (the default) and for every
/// `Fn(&Result<Resp, Err>) -> Outcome + Clone`, so a closure works:
///
/// ```
/// use sluice_breaker::Outcome;
/// // An HTTP-like status: 5xx fails, 404 says nothing, everything else succeeds.
/// let classify = |result: &Result<u16, std::io::Error>| match result {
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(404) => Outcome::Ignore,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// # let _ = sluice_breaker::CircuitBreakerLayer::builder().classifier(classify).build();
/// ```
pub trait Classify<Resp, Err> {
    /// Classifies one finished call.
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome;
}

/// The default classifier: `Ok` is a success and `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrIsFailure;

impl<Resp, Err> Classify<Resp, Err> for ErrIsFailure {
    #[inline]
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<Resp, Err, F> Classify<Resp, Err> for F
where
    F: Fn(&Result<Resp, Err>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome {
        self(result)
    }
}
