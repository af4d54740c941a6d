//! `sync-engine plugin new --sdk <checkout>`: every template (Rust, JavaScript, TypeScript and
//! Python; transformer, handler and resolver) is generated from the checkout's SDKs, built,
//! tested and checked end to end with the language's own tools and the engine's `plugin check`
//! and `plugin test`, unchanged, as its README says. (`tests/release.rs` does the same from a
//! release, with the SDK packages it carries.)
//!
//! The JavaScript and TypeScript projects link the checkout's SDK, whose npm packages
//! `scripts/install-plugin-toolchains` installs; the Python projects make their own virtual
//! environment from their requirements (componentize-py and pytest come from PyPI or pip's
//! cache); the Rust projects build into one shared target directory under `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENGINE: &str = env!("CARGO_BIN_EXE_sync-engine-e2e");
const WORLDS: [&str; 3] = ["transformer", "handler", "resolver"];

/// Runs `program` with `args` in `dir`; panics with its output when it fails. Returns stdout.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    sync_engine_tests::run_ok(&mut command)
}

/// The templates touch no store: the suite's second pass, on the NATS backend, has nothing new
/// to show with them.
fn second_pass() -> bool {
    sync_engine_tests::on_nats()
}

/// `sync-engine plugin new` into a fresh directory; returns the project's directory.
fn generate(parent: &Path, name: &str, lang: &str, world: &str) -> PathBuf {
    let checkout = repository();
    let said = run(
        parent,
        ENGINE,
        &[
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--world",
            world,
            "--sdk",
            checkout.to_str().unwrap(),
        ],
        &[],
    );
    assert!(said.contains(&format!("{world} plugin")), "{said}");
    let dir = parent.join(name);
    for file in ["README.md", ".gitignore"] {
        assert!(dir.join(file).exists(), "{lang} {world}: no {file}");
    }
    assert_eq!(
        dir.join("fixtures.json").exists(),
        world != "resolver",
        "{lang} {world}: a fixtures file for transformers and handlers only"
    );
    dir
}

/// What the engine says of the built component: its world, and its fixtures all passing.
fn check_in_the_engine(dir: &Path, wasm: &Path, world: &str) {
    let wasm = wasm.to_str().unwrap();
    let said = run(dir, ENGINE, &["plugin", "check", wasm], &[]);
    assert!(
        said.contains(&format!("implements the {world} world")),
        "{said}"
    );
    if world != "resolver" {
        let said = run(
            dir,
            ENGINE,
            &["plugin", "test", wasm, "--fixtures", "fixtures.json"],
            &[],
        );
        assert!(!said.contains("FAIL"), "{said}");
        assert!(said.contains("case(s) passed"), "{said}");
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_rust_templates_build_test_and_pass_their_fixtures() {
    if second_pass() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    // One target directory for every run, so dependencies build once.
    let target = repository().join("target").join("template-tests");
    for world in WORLDS {
        let name = format!("rust-{world}");
        let dir = generate(parent.path(), &name, "rust", world);
        let env = [("CARGO_TARGET_DIR", target.as_path())];
        run(
            &dir,
            "cargo",
            &["build", "--release", "--target", "wasm32-unknown-unknown"],
            &env,
        );
        let tested = run(&dir, "cargo", &["test"], &env);
        assert!(tested.contains("test result: ok"), "{tested}");
        let wasm = target
            .join("wasm32-unknown-unknown/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        check_in_the_engine(&dir, &wasm, world);
    }
}

#[test]
fn the_javascript_and_typescript_templates_build_test_and_pass_their_fixtures() {
    if second_pass() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    for lang in ["js", "ts"] {
        for world in WORLDS {
            let name = format!("{lang}-{world}");
            let dir = generate(parent.path(), &name, lang, world);
            run(&dir, "npm", &["install", "--no-audit", "--no-fund"], &[]);
            run(&dir, "npm", &["run", "build"], &[]);
            let tested = run(&dir, "npm", &["test"], &[]);
            assert!(tested.contains("# fail 0"), "{tested}");
            check_in_the_engine(&dir, &dir.join(format!("dist/{name}.wasm")), world);
        }
    }
}

#[test]
fn the_python_templates_build_test_and_pass_their_fixtures() {
    if second_pass() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    for world in WORLDS {
        let name = format!("python-{world}");
        let dir = generate(parent.path(), &name, "python", world);
        run(&dir, "python3", &["-m", "venv", ".venv"], &[]);
        // Programs by absolute path: a relative one is not looked up in the child's directory.
        let local = |program: &str| dir.join(program).to_string_lossy().into_owned();
        run(
            &dir,
            &local(".venv/bin/pip"),
            &[
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ],
            &[],
        );
        run(&dir, &local("build"), &[], &[]);
        let tested = run(
            &dir,
            &local(".venv/bin/pytest"),
            &["-q", "-p", "no:cacheprovider"],
            &[],
        );
        assert!(tested.contains("passed"), "{tested}");
        check_in_the_engine(&dir, &dir.join(format!("dist/{name}.wasm")), world);
    }
}

#[test]
fn a_project_is_never_written_over_and_bad_names_are_refused() {
    let parent = tempfile::tempdir().unwrap();
    let output = Command::new(ENGINE)
        .args(["plugin", "new", "Bad_Name", "--lang", "js"])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("lower-case letters"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/keep.txt"), "mine").unwrap();
    let output = Command::new(ENGINE)
        .args(["plugin", "new", "taken", "--lang", "rust"])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(parent.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}
