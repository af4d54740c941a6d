//! Helpers for the black-box tests: where the plugins built from source are, and how to load
//! them.
//!
//! `build.rs` compiles every crate under `plugins/` and `tests/plugins/` to `wasm32-wasip2`
//! before these tests compile; [`component`] reads the result.

use std::path::PathBuf;
use sync_engine::sandbox::{Plugin, Sandbox};

/// The directory the build script put the components in.
pub const ARTIFACTS: &str = env!("PLUGIN_ARTIFACTS");

/// The path of the component built from the crate `package` (a library's hyphens become
/// underscores; a binary keeps its name).
pub fn component_path(package: &str) -> PathBuf {
    let library = PathBuf::from(ARTIFACTS).join(format!("{}.wasm", package.replace('-', "_")));
    if library.exists() {
        library
    } else {
        PathBuf::from(ARTIFACTS).join(format!("{package}.wasm"))
    }
}

/// The bytes of the component built from the crate `package`.
pub fn component(package: &str) -> Vec<u8> {
    let path = component_path(package);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Loads the component built from `package` into `sandbox` under the package's name.
pub fn load(sandbox: &Sandbox, package: &str) -> Plugin {
    sandbox
        .load(package, &component(package))
        .unwrap_or_else(|e| panic!("cannot load {package}: {e}"))
}
