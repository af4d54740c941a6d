//! Version "two" of a swappable transformer (its code is `tests/plugins/swap.rs`).

const VERSION: &str = "two";

include!("../../swap.rs");
