//! `sync-engine plugin new`: writes a ready plugin project from the templates built into the
//! binary (`engine/templates/`), for one language and one world.

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

/// The checkout whose SDKs a new project depends on: the one this binary was built from, when
/// it is still there.
pub(super) fn default_sdk_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    is_checkout(root).then(|| root.to_path_buf())
}

/// Whether `root` is a checkout of the engine's repository: it holds the SDKs.
fn is_checkout(root: &Path) -> bool {
    root.join("sdk").join("Cargo.toml").exists()
}

/// Writes a new plugin project `name` into `dir` (which must not exist or be empty); returns
/// what to run next.
pub(super) fn write_project(
    name: &str,
    language: Language,
    world: NewWorld,
    dir: &Path,
    sdk_root: &Path,
) -> anyhow::Result<String> {
    check_name(name)?;
    if !is_checkout(sdk_root) {
        bail!(
            "{} is not a checkout of the engine's repository (no sdk/ in it): pass --sdk with \
             the path of one",
            sdk_root.display()
        );
    }
    if dir.exists()
        && dir
            .read_dir()
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose another name or --dir",
            dir.display()
        );
    }
    let template = language.template();
    let module = name.replace('-', "_");
    let sdk = sdk_root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", sdk_root.display()))?;
    let wasm = template
        .wasm
        .replace("{{module}}", &module)
        .replace("{{name}}", name);
    let fill = |text: &str| {
        let text = template
            .rewrites
            .iter()
            .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{world}}", world.as_str())
            .replace("{{sdk}}", &sdk.to_string_lossy())
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
