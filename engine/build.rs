//! What the `sync-engine` binary carries from its build:
//!
//! - `SYNC_ENGINE_COMMIT`: the commit it was built from (`git rev-parse`), or `unknown` when the
//!   source is not a git checkout; `sync-engine --version` names it.
//! - the SDK packages, when `SYNC_ENGINE_SDK_PACKAGES` names the directory `scripts/sdk-packages`
//!   wrote (as `scripts/release` does): every file in it is built into the binary, for
//!   `plugin new` to vendor into projects and `sdk export` to write out. Without it (a
//!   development build) the binary carries none, and `plugin new` uses a checkout's SDKs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    println!(
        "cargo:rustc-env=SYNC_ENGINE_COMMIT={}",
        commit(&manifest_dir)
    );
    println!("cargo:rerun-if-env-changed=SYNC_ENGINE_SDK_PACKAGES");
    let mut entries = String::new();
    if let Some(dir) = std::env::var_os("SYNC_ENGINE_SDK_PACKAGES").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "SYNC_ENGINE_SDK_PACKAGES={}: {e} (scripts/sdk-packages writes it)",
                    dir.display()
                )
            })
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "SYNC_ENGINE_SDK_PACKAGES={} holds no packages: run scripts/sdk-packages",
            dir.display()
        );
        for file in files {
            let file = file.canonicalize().expect("a file that exists");
            println!("cargo:rerun-if-changed={}", file.display());
            let name = file.file_name().expect("a file name").to_string_lossy();
            entries.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                file.display().to_string()
            ));
        }
    }
    let code = format!(
        "/// The SDK packages built into this binary, by file name (none in a development build).\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n{entries}];\n"
    );
    std::fs::write(out_dir.join("sdk_packages.rs"), code).expect("OUT_DIR is writable");
}

/// The commit the source is at, shortened; or `unknown`. Rebuilt when the checkout moves to
/// another commit.
fn commit(manifest_dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        let head = git_dir.join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Some(reference) = std::fs::read_to_string(&head)
            .ok()
            .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
        {
            // Watched only when they exist: a path that does not would run this every build.
            for path in [git_dir.join(reference), git_dir.join("packed-refs")] {
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    commit
}
