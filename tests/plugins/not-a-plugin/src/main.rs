//! A plain WASI command (the `wasi:cli/command` world), which the engine must refuse.

#[allow(clippy::print_stdout)]
fn main() {
    println!("hello from a command, not a plugin");
}
