//! The release as an agency gets it, and nothing of the checkout: `dist/` (which
//! `scripts/release` makes, and `scripts/test` runs first) verifies against its checksums; its
//! tarball's `sync-engine`, copied to an empty directory outside the checkout and run with an
//! empty `HOME` and no variable that points into the checkout, writes a plugin project in Rust,
//! JavaScript, TypeScript and Python that builds and passes its own tests with only the
//! language's public toolchain and registry, passes `plugin check`, and goes live in a running
//! engine by upload; and `sdk export` writes packages that npm, pip and cargo install as they are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use sync_engine_tests::{Receiver, post_json, wait_healthy};

const ADMIN: &str = "admin-token-of-the-release-test";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The release `scripts/release` made.
fn dist() -> PathBuf {
    let dist = repository().join("dist");
    assert!(
        dist.join("SHA256SUMS").exists(),
        "no release in {}: run scripts/release (scripts/test runs it before the tests)",
        dist.display()
    );
    dist
}

/// The environment a machine with only the release has: the language toolchains and their
/// caches (none of them inside the checkout), an empty `HOME`, and nothing that points into the
/// checkout.
struct Kit {
    dir: tempfile::TempDir,
    engine: PathBuf,
    env: Vec<(String, String)>,
}

impl Kit {
    fn unpack() -> Kit {
        let dist = dist();
        let dir = tempfile::tempdir().unwrap();
        let checkout = repository();
        assert!(
            !dir.path().starts_with(&checkout),
            "the kit is outside the checkout"
        );
        let tarball = std::fs::read_dir(&dist)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-x86_64-linux.tar.gz"))
            .expect("the release's tarball");
        let unpacked = dir.path().join("unpacked");
        std::fs::create_dir(&unpacked).unwrap();
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(status.success());
        let binary = std::fs::read_dir(&unpacked)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("sync-engine");
        // The binary alone, in a directory of its own.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let engine = bin.join("sync-engine");
        std::fs::copy(&binary, &engine).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        let var =
            |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
        let path: Vec<String> = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .filter(|p| !p.starts_with(&checkout))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut env = vec![
            ("PATH".to_owned(), path.join(":")),
            ("HOME".to_owned(), home.to_string_lossy().into_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ];
        // The toolchains and the registries' caches, where this machine keeps them.
        for (name, value) in [
            ("CARGO_HOME", var("CARGO_HOME", real_home.join(".cargo"))),
            ("RUSTUP_HOME", var("RUSTUP_HOME", real_home.join(".rustup"))),
            ("npm_config_cache", real_home.join(".npm")),
            ("PIP_CACHE_DIR", real_home.join(".cache/pip")),
            ("PYENV_ROOT", var("PYENV_ROOT", real_home.join(".pyenv"))),
        ] {
            env.push((name.to_owned(), value.to_string_lossy().into_owned()));
        }
        for (name, value) in &env {
            assert!(
                !value.contains(&*checkout.to_string_lossy()),
                "{name} points into the checkout: {value}"
            );
        }
        Kit { dir, engine, env }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Runs `program` with `args` in `dir` in the kit's environment; panics with its output
    /// when it fails. Returns stdout.
    fn run(&self, dir: &Path, program: &str, args: &[&str]) -> String {
        sync_engine_tests::run_ok(
            Command::new(program)
                .args(args)
                .current_dir(dir)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v))),
        )
    }

    fn engine(&self, dir: &Path, args: &[&str]) -> String {
        self.run(dir, &self.engine.to_string_lossy(), args)
    }
}

/// Every file under `dir`, but what a build or an install wrote.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if ["node_modules", ".venv", "target", "dist"].contains(&name.as_ref()) {
            continue;
        }
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A plugin project of `lang` made by the release, built and tested as its README says;
/// answers the component it built.
fn new_project(kit: &Kit, lang: &str) -> PathBuf {
    let projects = kit.path("projects");
    std::fs::create_dir_all(&projects).unwrap();
    let name = format!("contacts-{lang}");
    let said = kit.engine(&projects, &["plugin", "new", &name, "--lang", lang]);
    assert!(said.contains("transformer plugin"), "{said}");
    let dir = projects.join(&name);
    // Nothing it holds names the checkout; its SDK is in vendor/.
    let checkout = repository().to_string_lossy().into_owned();
    for file in files(&dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&checkout),
            "{} names the checkout",
            file.display()
        );
    }
    assert!(dir.join("vendor").is_dir(), "{lang}: no vendor/");
    let local = |program: &str| dir.join(program).to_string_lossy().into_owned();
    match lang {
        "rust" => {
            kit.run(
                &dir,
                "cargo",
                &["build", "--release", "--target", "wasm32-unknown-unknown"],
            );
            let tested = kit.run(&dir, "cargo", &["test"]);
            assert!(tested.contains("test result: ok. 2 passed"), "{tested}");
            dir.join("target/wasm32-unknown-unknown/release")
                .join(format!("{}.wasm", name.replace('-', "_")))
        }
        "js" | "ts" => {
            kit.run(&dir, "npm", &["install", "--no-audit", "--no-fund"]);
            kit.run(&dir, "npm", &["run", "build"]);
            let tested = kit.run(&dir, "npm", &["test"]);
            assert!(tested.contains("# fail 0"), "{tested}");
            dir.join(format!("dist/{name}.wasm"))
        }
        "python" => {
            kit.run(&dir, "python3", &["-m", "venv", ".venv"]);
            kit.run(
                &dir,
                &local(".venv/bin/pip"),
                &["install", "--quiet", "-r", "requirements.txt"],
            );
            kit.run(&dir, &local("build"), &[]);
            let tested = kit.run(
                &dir,
                &local(".venv/bin/pytest"),
                &["-q", "-p", "no:cacheprovider"],
            );
            assert!(tested.contains("passed"), "{tested}");
            dir.join(format!("dist/{name}.wasm"))
        }
        other => panic!("no language {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_the_release_an_agency_builds_tests_checks_and_ships_a_plugin_in_each_language() {
    if sync_engine_tests::on_nats() {
        return; // nothing here touches a store the second pass would change
    }
    // The release verifies against its checksums.
    let dist = dist();
    let checked = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&dist)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let kit = Kit::unpack();
    let version = kit.engine(kit.dir.path(), &["--version"]);
    assert!(
        version
            .starts_with("sync-engine 0.1.0 (loads plugins built against hms:sync@0.1.0; commit "),
        "{version}"
    );

    // An engine from the release, with a plugin per language, all a first version that is not
    // the agency's (the seed's tax-rate transformer): the agency's upload replaces it.
    let first = kit.path("first.wasm");
    std::fs::copy(test_components::component_path("tax-rate-outbound"), &first).unwrap();
    let receiver = Receiver::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let langs = ["rust", "js", "ts", "python"];
    let mut yaml = format!(
        "listen: 127.0.0.1:{port}\nstore:\n  path: {}\nadmin:\n  token: {ADMIN}\n\
         destinations:\n  crm:\n    url: {}\nplugins:\n",
        kit.path("data").display(),
        receiver.url("/contacts")
    );
    for lang in langs {
        yaml.push_str(&format!(
            "  contacts-{lang}:\n    path: {}\n",
            first.display()
        ));
    }
    yaml.push_str("hmsEvents:\n");
    for lang in langs {
        yaml.push_str(&format!(
            "  - event: person.updated.{lang}\n    handler: contacts-{lang}\n    destination: crm\n"
        ));
    }
    std::fs::write(kit.path("engine.yaml"), yaml).unwrap();
    let log = std::fs::File::create(kit.path("engine.log")).unwrap();
    let mut engine = Command::new(&kit.engine)
        .args(["run", "--config"])
        .arg(kit.path("engine.yaml"))
        .current_dir(kit.dir.path())
        .env_clear()
        .envs(kit.env.iter().map(|(k, v)| (k, v)))
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, Duration::from_secs(60)).await;

    for (n, lang) in langs.into_iter().enumerate() {
        let wasm = new_project(&kit, lang);
        let dir = kit.path(&format!("projects/contacts-{lang}"));
        let wasm_path = wasm.to_string_lossy().into_owned();
        let checked = kit.engine(&dir, &["plugin", "check", &wasm_path]);
        assert!(
            checked.contains("implements the transformer world"),
            "{lang}: {checked}"
        );
        let uploaded = kit.engine(
            &dir,
            &[
                "plugin",
                "upload",
                &format!("contacts-{lang}"),
                &wasm_path,
                "--fixtures",
                "fixtures.json",
                "--url",
                &url,
                "--token",
                ADMIN,
            ],
        );
        assert!(uploaded.contains("active"), "{lang}: {uploaded}");
        // An event flows through the new version.
        let (status, answer) = post_json(
            &format!("{url}/events/person.updated.{lang}"),
            r#"{"firstName": "Ada", "lastName": "Lovelace"}"#,
            &[],
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        let received = receiver.wait_for(n + 1, Duration::from_secs(30)).await;
        assert_eq!(
            received[n].json(),
            serde_json::json!({"fullName": "Ada Lovelace"}),
            "{lang}"
        );
    }
    engine.kill().unwrap();
    engine.wait().unwrap();

    // `sdk export` writes packages each language's installer takes as they are.
    let export = kit.path("export");
    let said = kit.engine(
        kit.dir.path(),
        &["sdk", "export", &export.to_string_lossy()],
    );
    assert!(said.contains("hms:sync@0.1.0"), "{said}");
    assert_eq!(
        std::fs::read(export.join("wit/sync.wit")).unwrap(),
        std::fs::read(repository().join("wit/sync.wit")).unwrap()
    );
    let find = |start: &str, end: &str| {
        std::fs::read_dir(&export)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(start) && n.ends_with(end))
            .unwrap_or_else(|| panic!("no {start}*{end} in the export"))
    };
    let npm = kit.path("npm-install");
    std::fs::create_dir(&npm).unwrap();
    std::fs::write(
        npm.join("package.json"),
        r#"{"name": "t", "private": true}"#,
    )
    .unwrap();
    let tgz = export.join(find("hms-sync-sdk-", ".tgz"));
    kit.run(
        &npm,
        "npm",
        &["install", "--no-audit", "--no-fund", &tgz.to_string_lossy()],
    );
    assert!(npm.join("node_modules/@hms/sync-sdk/wit/sync.wit").exists());
    let venv = kit.path("pip-install");
    kit.run(
        kit.dir.path(),
        "python3",
        &["-m", "venv", &venv.to_string_lossy()],
    );
    let wheel = export.join(find("hms_sync-", ".whl"));
    kit.run(
        kit.dir.path(),
        &venv.join("bin/pip").to_string_lossy(),
        &["install", "--quiet", &wheel.to_string_lossy()],
    );
    let imported = kit.run(
        kit.dir.path(),
        &venv.join("bin/python").to_string_lossy(),
        &[
            "-c",
            "import hms_sync, hms_sync.build; print(hms_sync.build.wit_dir())",
        ],
    );
    assert!(
        Path::new(imported.trim()).join("sync.wit").exists(),
        "{imported}"
    );
    let crate_dir = kit.path("cargo-build");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"uses-the-sdk\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nhms-sync-sdk = {{ path = {:?} }}\n\n\
             [patch.crates-io]\nhms-sync-rules = {{ path = {:?} }}\n\n[workspace]\n",
            export.join("rust/hms-sync-sdk"),
            export.join("rust/hms-sync-rules")
        ),
    )
    .unwrap();
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        "//! Uses the exported SDK.\n\n/// The SDK's event type.\npub type Event = hms_sync_sdk::Event;\n",
    )
    .unwrap();
    kit.run(&crate_dir, "cargo", &["build"]);
}
