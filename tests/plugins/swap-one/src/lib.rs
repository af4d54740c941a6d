//! Version "one" of a swappable transformer (its code is `tests/plugins/swap.rs`).

const VERSION: &str = "one";

include!("../../swap.rs");
