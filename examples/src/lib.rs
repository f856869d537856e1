//! Nothing here: the examples live in `examples/`.
