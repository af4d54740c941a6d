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
//!
//! Plugins in other languages are built with their own tools, by the build command their
//! project declares, into the same directory as `<directory name>.wasm`: a directory with a
//! `package.json` is a JavaScript or TypeScript plugin (`npm run build -- --out FILE`), one with a
//! `build` script beside a Python module a Python plugin (`./build --out FILE`). Their tools come from
//! `scripts/install-plugin-toolchains` (npm packages in `node_modules/`, componentize-py in
//! `target/python`); without them the build fails and says so.

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
    for file in [
        "Cargo.lock",
        "package-lock.json",
        "sdk/python/requirements.txt",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
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
    build_other_languages(&root, &plugin_dirs, &artifacts);
    println!("cargo:rustc-env=PLUGIN_ARTIFACTS={}", artifacts.display());
}

/// A plugin written in another language than Rust: its directory and its build command.
struct Foreign {
    dir: PathBuf,
    language: &'static str,
    command: Command,
}

/// Builds every JavaScript, TypeScript and Python plugin under `plugin_dirs` into `artifacts`,
/// all at once (each build is mostly one process waiting on another).
fn build_other_languages(root: &Path, plugin_dirs: &[PathBuf], artifacts: &Path) {
    let python_bin = root.join("target").join("python").join("bin");
    let mut foreign: Vec<Foreign> = Vec::new();
    for dir in plugin_dirs {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for dir in entries {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let out = artifacts.join(format!("{name}.wasm"));
            if dir.join("package.json").exists() {
                require(
                    &root.join("node_modules").join(".installed"),
                    "the npm packages",
                );
                let mut command = Command::new("npm");
                command
                    .args(["run", "--silent", "build", "--", "--out"])
                    .arg(&out);
                foreign.push(Foreign {
                    dir,
                    language: "JavaScript",
                    command,
                });
            } else if dir.join("build").exists() && has_python(&dir) {
                require(&python_bin.join("componentize-py"), "componentize-py");
                let mut command = Command::new(dir.join("build"));
                command.arg("--out").arg(&out);
                let path = env::var_os("PATH").unwrap_or_default();
                let mut paths = vec![python_bin.clone()];
                paths.extend(env::split_paths(&path));
                command.env("PATH", env::join_paths(paths).expect("a valid PATH"));
                // What is written into the watched plugin directory makes the next build run this
                // script again: the host's Python writes no bytecode (componentize-py's own
                // interpreter leaves one `__pycache__`, once, ignored by git).
                command.env("PYTHONDONTWRITEBYTECODE", "1");
                foreign.push(Foreign {
                    dir,
                    language: "Python",
                    command,
                });
            }
        }
    }
    let running: Vec<(Foreign, std::process::Child)> = foreign
        .into_iter()
        .map(|mut plugin| {
            let child = plugin
                .command
                .current_dir(&plugin.dir)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot build the {} plugin {}: {e}",
                        plugin.language,
                        plugin.dir.display()
                    )
                });
            (plugin, child)
        })
        .collect();
    for (plugin, mut child) in running {
        let status = child.wait().expect("the plugin build runs");
        if !status.success() {
            panic!(
                "building the {} plugin {} failed (see above)",
                plugin.language,
                plugin.dir.display()
            );
        }
    }
}

/// Whether `dir` holds a Python module.
fn has_python(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "py"))
}

/// Fails the build, saying how to fix it, when a language's tools are not installed.
fn require(marker: &Path, what: &str) {
    if !marker.exists() {
        panic!(
            "{what} needed to build the plugins in other languages are not installed \
             ({} is missing): run ./scripts/install-plugin-toolchains",
            marker.display()
        );
    }
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
