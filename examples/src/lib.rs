//! Nothing here: the examples live in `examples/`.

// Compile and run the README's code blocks as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
