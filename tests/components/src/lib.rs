//! The plugin components the tests and benchmarks run, built from source.
//!
//! The build script compiles every crate under `plugins/` and `tests/plugins/` to
//! WebAssembly (see `build.rs` for which target) before anything that depends on this crate compiles, so no `.wasm` file is
//! ever checked in. A test or benchmark takes this crate as a dev-dependency and asks it for a
//! component by its crate's name.

use std::path::PathBuf;

/// The directory the build script put the plugins in (components, or core modules that carry
/// their world, which the engine makes components at load).
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
