//! `sync-engine plugin new`: writes a ready plugin project from the templates built into the
//! binary (`engine/templates/`), for one language and one world. Its SDK comes from the packages
//! the binary carries, written into the project's `vendor/` (a release), or from a checkout of
//! the engine's repository (`--sdk`, for work on the SDKs); the two projects differ only there.

use super::sdk::Packages;
use anyhow::{Context, bail};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

/// The languages a plugin project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Language {
    /// Rust, with the `hms-sync-sdk` crate.
    Rust,
    /// JavaScript, with the `@hms/sync-sdk` npm package.
    Js,
    /// TypeScript, with the `@hms/sync-sdk` npm package.
    Ts,
    /// Python, with the `hms-sync` package.
    Python,
}

/// The world a new plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum NewWorld {
    /// One payload in, one payload out.
    Transformer,
    /// One event in, a list of actions out.
    Handler,
    /// Two versions of an entity in, which to deliver out.
    Resolver,
}

impl NewWorld {
    fn as_str(self) -> &'static str {
        match self {
            NewWorld::Transformer => "transformer",
            NewWorld::Handler => "handler",
            NewWorld::Resolver => "resolver",
        }
    }
}

/// One file of a template: where it goes in the project, and its text for each world (`None`
/// where the world has no such file).
struct File {
    path: &'static str,
    text: fn(NewWorld) -> Option<&'static str>,
}

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../templates/", $path))
    };
}

/// The same text for every world.
macro_rules! every_world {
    ($path:literal) => {
        |_| Some(template!($path))
    };
}

/// A text per world: `<stem>.<world>.<extension>`.
macro_rules! per_world {
    ($stem:literal, $ext:literal) => {
        |world| {
            Some(match world {
                NewWorld::Transformer => {
                    include_str!(concat!("../../templates/", $stem, ".transformer.", $ext))
                }
                NewWorld::Handler => {
                    include_str!(concat!("../../templates/", $stem, ".handler.", $ext))
                }
                NewWorld::Resolver => {
                    include_str!(concat!("../../templates/", $stem, ".resolver.", $ext))
                }
            })
        }
    };
}

/// The fixtures every language's template shares; a resolver has none (fixtures test
/// transformers and handlers).
fn fixtures(world: NewWorld) -> Option<&'static str> {
    match world {
        NewWorld::Transformer => Some(template!("common/fixtures.transformer.json")),
        NewWorld::Handler => Some(template!("common/fixtures.handler.json")),
        NewWorld::Resolver => None,
    }
}

/// What a language's project holds and how it is built and tested.
struct Template {
    language: &'static str,
    files: &'static [File],
    build: &'static str,
    test: &'static str,
    /// Where the build writes the component (`{{module}}` and `{{name}}` are filled in).
    wasm: &'static str,
    source: &'static str,
    tests: &'static str,
    /// Files to make executable (a build script).
    executables: &'static [&'static str],
    /// Text replaced in every file of the language (a template shared with another language).
    rewrites: &'static [(&'static str, &'static str)],
}

const RUST: Template = Template {
    language: "Rust",
    files: &[
        File {
            path: "Cargo.toml",
            text: every_world!("rust/Cargo.toml"),
        },
        File {
            path: "src/lib.rs",
            text: per_world!("rust/lib", "rs"),
        },
        File {
            path: ".gitignore",
            text: every_world!("rust/gitignore"),
        },
    ],
    build: "cargo build --release --target wasm32-unknown-unknown",
    test: "cargo test",
    wasm: "target/wasm32-unknown-unknown/release/{{module}}.wasm",
    source: "src/lib.rs",
    tests: "src/lib.rs",
    executables: &[],
    rewrites: &[],
};

const JS: Template = Template {
    language: "JavaScript",
    files: &[
        File {
            path: "package.json",
            text: every_world!("js/package.json"),
        },
        File {
            path: "src/index.js",
            text: per_world!("js/index", "js"),
        },
        File {
            path: "test/index.test.js",
            text: per_world!("js/test/index.test", "js"),
        },
        File {
            path: ".gitignore",
            text: every_world!("js/gitignore"),
        },
    ],
    build: "npm install && npm run build",
    test: "npm test",
    wasm: "dist/{{name}}.wasm",
    source: "src/index.js",
    tests: "test/index.test.js",
    executables: &[],
    rewrites: &[],
};

const TS: Template = Template {
    language: "TypeScript",
    files: &[
        File {
            path: "package.json",
            text: every_world!("ts/package.json"),
        },
        File {
            path: "tsconfig.json",
            text: every_world!("ts/tsconfig.json"),
        },
        File {
            path: "src/index.ts",
            text: per_world!("ts/index", "ts"),
        },
        // The JavaScript tests, importing the TypeScript module (see `rewrites`).
        File {
            path: "test/index.test.ts",
            text: per_world!("js/test/index.test", "js"),
        },
        File {
            path: ".gitignore",
            text: every_world!("ts/gitignore"),
        },
    ],
    build: "npm install && npm run build",
    test: "npm test",
    wasm: "dist/{{name}}.wasm",
    source: "src/index.ts",
    tests: "test/index.test.ts",
    executables: &[],
    rewrites: &[("../src/index.js", "../src/index.ts")],
};

const PYTHON: Template = Template {
    language: "Python",
    files: &[
        File {
            path: "app.py",
            text: per_world!("python/app", "py"),
        },
        File {
            path: "tests/conftest.py",
            text: every_world!("python/tests/conftest.py"),
        },
        File {
            path: "tests/test_app.py",
            text: per_world!("python/tests/test_app", "py"),
        },
        File {
            path: "build",
            text: every_world!("python/build"),
        },
        File {
            path: "requirements.txt",
            text: every_world!("python/requirements.txt"),
        },
        File {
            path: "pyproject.toml",
            text: every_world!("python/pyproject.toml"),
        },
        File {
            path: ".gitignore",
            text: every_world!("python/gitignore"),
        },
    ],
    build: "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && ./build",
    test: ".venv/bin/pytest",
    wasm: "dist/{{name}}.wasm",
    source: "app.py",
    tests: "tests/test_app.py",
    executables: &["build"],
    rewrites: &[],
};

impl Language {
    fn template(self) -> &'static Template {
        match self {
            Language::Rust => &RUST,
            Language::Js => &JS,
            Language::Ts => &TS,
            Language::Python => &PYTHON,
        }
    }
}

/// Where a new project's SDK comes from.
pub(super) enum Sdk {
    /// The packages this binary carries, written into the project's `vendor/`.
    Packages(Packages),
    /// A checkout of the engine's repository, whose `sdk/` the project depends on by path.
    Checkout(PathBuf),
}

impl Sdk {
    /// `--sdk`'s checkout when given; else the packages this binary carries; else (a
    /// development build) the checkout it was built from, while it is there.
    pub(super) fn choose(checkout: Option<PathBuf>) -> anyhow::Result<Sdk> {
        if let Some(root) = checkout {
            if !is_checkout(&root) {
                bail!(
                    "{} is not a checkout of the engine's repository (no sdk/ in it): pass \
                     --sdk with the path of one",
                    root.display()
                );
            }
            let root = root
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", root.display()))?;
            return Ok(Sdk::Checkout(root));
        }
        if let Some(packages) = Packages::embedded() {
            return Ok(Sdk::Packages(packages));
        }
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
        match built_from.filter(|root| is_checkout(root)) {
            Some(root) => Ok(Sdk::Checkout(root.to_path_buf())),
            None => bail!(
                "this sync-engine is a development build, which carries no SDK packages, and \
                 the checkout it was built from is gone: use a release of the engine, or pass \
                 --sdk with the path of a checkout"
            ),
        }
    }

    /// Writes what `language`'s project needs of the SDK into `dir` (its `vendor/`, from
    /// packages), and answers the templates' placeholders that say where the SDK is.
    fn provide(
        &self,
        language: Language,
        dir: &Path,
    ) -> anyhow::Result<[(&'static str, String); 5]> {
        let vendor = dir.join("vendor");
        let (mut rust_sdk, mut rust_patch) = (String::new(), String::new());
        let (mut js_sdk, mut python_sdk) = (String::new(), String::new());
        let note = match self {
            Sdk::Packages(packages) => {
                match language {
                    Language::Rust => {
                        packages.unpack_rust(&vendor)?;
                        rust_sdk = r#"{ path = "vendor/hms-sync-sdk" }"#.into();
                        rust_patch = RUST_PATCH.into();
                    }
                    Language::Js | Language::Ts => {
                        js_sdk = format!("file:vendor/{}", packages.write_js(&vendor)?);
                    }
                    Language::Python => {
                        python_sdk = format!("./vendor/{}[build]", packages.write_python(&vendor)?);
                    }
                }
                format!(
                    "The SDK ({}) is in `vendor/`, as this engine's release ships it: keep it \
                     with the project.",
                    super::sdk::wit_package()
                )
            }
            Sdk::Checkout(root) => {
                let at = |sub: &str| root.join("sdk").join(sub).to_string_lossy().into_owned();
                rust_sdk = format!("{{ path = {:?} }}", at(""));
                js_sdk = format!("file:{}", at("js"));
                python_sdk = format!("-e {}[build]", at("python"));
                format!(
                    "The SDK comes from the engine's checkout at `{}` (made with `--sdk`).",
                    root.display()
                )
            }
        };
        Ok([
            ("{{rust_sdk}}", rust_sdk),
            ("{{rust_patch}}", rust_patch),
            ("{{js_sdk}}", js_sdk),
            ("{{python_sdk}}", python_sdk),
            ("{{sdk_note}}", note),
        ])
    }
}

/// How a project from a release finds the output rules its SDK's test harness applies: the
/// vendored crate, since it is not on crates.io.
const RUST_PATCH: &str = "
# The SDK's test harness applies the engine's output rules, from this crate (vendored too).
[patch.crates-io]
hms-sync-rules = { path = \"vendor/hms-sync-rules\" }
";

/// Whether `root` is a checkout of the engine's repository: it holds the SDKs.
fn is_checkout(root: &Path) -> bool {
    root.join("sdk").join("Cargo.toml").exists()
}

/// Writes a new plugin project `name` into `dir` (which must not exist or be empty), its SDK
/// from `sdk`; returns what to run next.
pub(super) fn write_project(
    name: &str,
    language: Language,
    world: NewWorld,
    dir: &Path,
    sdk: &Sdk,
) -> anyhow::Result<String> {
    check_name(name)?;
    super::ensure_empty(dir, "choose another name or --dir")?;
    let template = language.template();
    let module = name.replace('-', "_");
    let sdk_fill = sdk.provide(language, dir)?;
    let wasm = template
        .wasm
        .replace("{{module}}", &module)
        .replace("{{name}}", name);
    let fill = |text: &str| {
        let text = template
            .rewrites
            .iter()
            .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
        let text = sdk_fill
            .iter()
            .fold(text, |text, (from, to)| text.replace(from, to));
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{world}}", world.as_str())
            .replace("{{language}}", template.language)
            .replace("{{build}}", template.build)
            .replace("{{test}}", template.test)
            .replace("{{wasm}}", &wasm)
            .replace("{{source}}", template.source)
            .replace("{{tests}}", template.tests)
    };
    let mut files: Vec<(&str, &str)> = template
        .files
        .iter()
        .filter_map(|file| Some((file.path, (file.text)(world)?)))
        .collect();
    files.push(("README.md", template!("common/README.md")));
    if let Some(fixtures) = fixtures(world) {
        files.push(("fixtures.json", fixtures));
    }
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(unix)]
    for path in template.executables {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(format!(
        "wrote a {} {} plugin in {}\n  build: cd {} && {}\n  test:  {}\n  then:  sync-engine plugin test {} --fixtures fixtures.json",
        template.language,
        world.as_str(),
        dir.display(),
        dir.display(),
        template.build,
        template.test,
        wasm,
    ))
}

/// A project name: it becomes a package name in every language, so lower-case letters, digits
/// and `-`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "`{name}` cannot name a plugin project: use lower-case letters, digits and `-`, \
             starting with a letter (such as `my-rates`)"
        );
    }
    Ok(())
}
