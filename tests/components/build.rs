//! Builds every plugin crate (`plugins/*` and `tests/plugins/*`) to WebAssembly from source, so
//! the tests run real plugins and no `.wasm` file is ever checked in.
//!
//! Plugins build for `wasm32-unknown-unknown`, as the SDK recommends (a core module carrying its
//! world, which the engine makes a component at load); a crate that needs WASI, to show the
//! sandbox refusing it, says so in its manifest with
//! `[package.metadata.sync-engine] target = "wasm32-wasip2"` and builds as a component.
//!
//! The plugins are built by a nested `cargo build` per target into their own target directory
//! (`<target>/wasm-plugins`), so it never waits on the lock of the build that runs this script.
//! Every result is copied into `<target>/wasm-plugins/plugins`, passed to the tests as
//! `PLUGIN_ARTIFACTS`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where plugins build, unless their manifest says otherwise.
const DEFAULT_TARGET: &str = "wasm32-unknown-unknown";
/// For the crates that say they need WASI.
const WASI_TARGET: &str = "wasm32-wasip2";
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

    let packages: Vec<(String, String)> =
        plugin_dirs.iter().flat_map(|dir| packages(dir)).collect();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    let artifacts = target_dir.join("plugins");
    // Rebuilt whole each time, so a plugin crate removed or renamed leaves nothing behind.
    let _ = fs::remove_dir_all(&artifacts);
    fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", artifacts.display()));

    for target in [DEFAULT_TARGET, WASI_TARGET] {
        let names: Vec<&str> = packages
            .iter()
            .filter(|(_, t)| t == target)
            .map(|(name, _)| name.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        build(&root, &target_dir, target, &names);
        let built = target_dir.join(target).join(PROFILE);
        for entry in fs::read_dir(&built)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", built.display()))
            .flatten()
        {
            let path = entry.path();
            let is_plugin = path.extension().is_some_and(|e| e == "wasm")
                && names.iter().any(|name| {
                    let stem = path.file_stem().unwrap_or_default();
                    stem == *name || stem.to_string_lossy() == name.replace('-', "_")
                });
            if is_plugin {
                let to = artifacts.join(entry.file_name());
                fs::copy(&path, &to).unwrap_or_else(|e| {
                    panic!("cannot copy {} to {}: {e}", path.display(), to.display())
                });
            }
        }
    }
    println!("cargo:rustc-env=PLUGIN_ARTIFACTS={}", artifacts.display());
}

/// Builds `packages` for `target` with a nested cargo.
fn build(root: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target")
        .arg(target)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--locked");
    for package in packages {
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
    cmd.env("CARGO_TARGET_DIR", target_dir);

    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for {target} failed (see above). If the target is missing, \
             run `rustup target add {target}`."
        );
    }
}

/// The package name of every crate directly under `dir`, with the target it builds for.
fn packages(dir: &Path) -> Vec<(String, String)> {
    let mut packages: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let manifest = entry.ok()?.path().join("Cargo.toml");
            let text = fs::read_to_string(manifest).ok()?;
            let name = text
                .lines()
                .find_map(|line| line.trim().strip_prefix("name = "))?
                .trim_matches('"')
                .to_owned();
            // `target = "..."` in `[package.metadata.sync-engine]`.
            let target = text
                .split_once("[package.metadata.sync-engine]")
                .and_then(|(_, table)| {
                    table
                        .lines()
                        .take_while(|line| !line.trim_start().starts_with('['))
                        .find_map(|line| line.trim().strip_prefix("target = "))
                })
                .map_or(DEFAULT_TARGET, |target| target.trim_matches('"'))
                .to_owned();
            Some((name, target))
        })
        .collect();
    packages.sort();
    packages
}
