//! The `sync-engine` command; everything it does lives in [`sync_engine::cli`].

fn main() -> std::process::ExitCode {
    sync_engine::cli::main()
}
