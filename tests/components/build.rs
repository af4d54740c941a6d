//! Builds every plugin crate (`plugins/*` and `tests/plugins/*`) to `wasm32-wasip2` from source,
//! so the tests run real components and no `.wasm` file is ever checked in.
//!
//! The plugins are built by a nested `cargo build` into their own target directory
//! (`<target>/wasm-plugins`), so it never waits on the lock of the build that runs this script.
//! The directory holding the components is passed to the tests as `PLUGIN_ARTIFACTS`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/components/ is inside the workspace")
        .to_path_buf();
    let plugin_dirs = [root.join("plugins"), root.join("tests").join("plugins")];

    for watched in [
        &plugin_dirs[0],
        &plugin_dirs[1],
        &root.join("sdk"),
        &root.join("wit"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );

    let packages: Vec<String> = plugin_dirs
        .iter()
        .flat_map(|dir| package_names(dir))
        .collect();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--locked");
    for package in &packages {
        cmd.arg("-p").arg(package);
    }
    // What cargo sets for this build script must not leak into the nested build: the clippy
    // wrapper, this build's rustflags and target directory.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir);

    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for {TARGET} failed (see above). If the target is missing, \
             run `rustup target add {TARGET}`."
        );
    }
    let artifacts = target_dir.join(TARGET).join(PROFILE);
    println!("cargo:rustc-env=PLUGIN_ARTIFACTS={}", artifacts.display());
}

/// The package name of every crate directly under `dir`.
fn package_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let manifest = entry.ok()?.path().join("Cargo.toml");
            let text = fs::read_to_string(manifest).ok()?;
            text.lines()
                .find_map(|line| line.trim().strip_prefix("name = "))
                .map(|name| name.trim_matches('"').to_owned())
        })
        .collect();
    names.sort();
    names
}
