//! The SDK packages this binary carries (`scripts/release` builds them in, see `build.rs`): what
//! `plugin new` vendors into a project, so that it builds with nothing but its language's own
//! toolchain and public registry, and what `sync-engine sdk export` writes out for an agency
//! that keeps its own registry or mirror.
//!
//! They are the packages each language's own tool made (`cargo package`, `npm pack`,
//! `python -m build`), byte for byte; a Rust crate is unpacked where a project needs its source.

use anyhow::{Context, bail};
use std::path::Path;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_packages.rs"));
}

/// The SDK packages of one release, by file name.
#[derive(Clone, Copy)]
pub(super) struct Packages {
    files: &'static [(&'static str, &'static [u8])],
}

/// What a package is, by the start and end of its file name.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `hms-sync-sdk-<v>.crate`
    RustSdk,
    /// `hms-sync-rules-<v>.crate`
    RustRules,
    /// `hms-sync-sdk-<v>.tgz` (`@hms/sync-sdk`)
    Js,
    /// `hms_sync-<v>-py3-none-any.whl`
    PythonWheel,
    /// `hms_sync-<v>.tar.gz`
    PythonSdist,
    /// `sync.wit`
    Wit,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::RustSdk,
        Kind::RustRules,
        Kind::Js,
        Kind::PythonWheel,
        Kind::PythonSdist,
        Kind::Wit,
    ];

    fn matches(self, name: &str) -> bool {
        let (start, end) = match self {
            Kind::RustSdk => ("hms-sync-sdk-", ".crate"),
            Kind::RustRules => ("hms-sync-rules-", ".crate"),
            Kind::Js => ("hms-sync-sdk-", ".tgz"),
            Kind::PythonWheel => ("hms_sync-", "-py3-none-any.whl"),
            Kind::PythonSdist => ("hms_sync-", ".tar.gz"),
            Kind::Wit => ("sync", ".wit"),
        };
        name.starts_with(start) && name.ends_with(end)
    }
}

impl Packages {
    /// The packages built into this binary; `None` in a development build, which has none.
    pub(super) fn embedded() -> Option<Packages> {
        Self::of(embedded::FILES)
    }

    fn of(files: &'static [(&'static str, &'static [u8])]) -> Option<Packages> {
        (!files.is_empty()).then_some(Packages { files })
    }

    /// The package of `kind`: its file name and bytes.
    fn get(&self, kind: Kind) -> anyhow::Result<(&'static str, &'static [u8])> {
        self.files
            .iter()
            .find(|(name, _)| kind.matches(name))
            .copied()
            .with_context(|| {
                format!(
                    "this binary's SDK packages lack the {kind:?} package: it was built from an \
                     incomplete scripts/sdk-packages"
                )
            })
    }

    /// Writes the Rust crates' sources into `dir`: `dir/hms-sync-sdk` and `dir/hms-sync-rules`
    /// (as `cargo package` made them, manifests normalised for use outside this workspace).
    pub(super) fn unpack_rust(&self, dir: &Path) -> anyhow::Result<()> {
        for (kind, into) in [
            (Kind::RustSdk, "hms-sync-sdk"),
            (Kind::RustRules, "hms-sync-rules"),
        ] {
            let (name, bytes) = self.get(kind)?;
            unpack_crate(bytes, &dir.join(into))
                .with_context(|| format!("cannot unpack {name}"))?;
        }
        Ok(())
    }

    /// Writes the npm package (the tarball `npm pack` made) into `dir`; answers its file name.
    pub(super) fn write_js(&self, dir: &Path) -> anyhow::Result<&'static str> {
        self.write(Kind::Js, dir)
    }

    /// Writes the Python wheel into `dir`; answers its file name.
    pub(super) fn write_python(&self, dir: &Path) -> anyhow::Result<&'static str> {
        self.write(Kind::PythonWheel, dir)
    }

    fn write(&self, kind: Kind, dir: &Path) -> anyhow::Result<&'static str> {
        let (name, bytes) = self.get(kind)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(name)
    }

    /// Writes every package into `dir` (which must not exist or be empty), the WIT, the Rust
    /// crates' sources, and a README on how to install or publish each; answers what it wrote.
    pub(super) fn export(&self, dir: &Path) -> anyhow::Result<String> {
        super::ensure_empty(dir, "choose another directory")?;
        let mut written = Vec::new();
        for kind in Kind::ALL {
            let into = match kind {
                Kind::Wit => dir.join("wit"),
                _ => dir.to_path_buf(),
            };
            let name = self.write(kind, &into)?;
            written.push(match kind {
                Kind::Wit => format!("wit/{name}"),
                _ => name.to_owned(),
            });
        }
        self.unpack_rust(&dir.join("rust"))?;
        written.push("rust/hms-sync-sdk/, rust/hms-sync-rules/".to_owned());
        let readme = self.readme()?;
        std::fs::write(dir.join("README.md"), readme)
            .with_context(|| format!("cannot write {}", dir.join("README.md").display()))?;
        written.push("README.md".to_owned());
        Ok(format!(
            "wrote the SDK packages of {} into {}:\n{}",
            wit_package(),
            dir.display(),
            written
                .iter()
                .map(|w| format!("  {w}\n"))
                .collect::<String>()
        ))
    }

    /// The export's README, naming its files.
    fn readme(&self) -> anyhow::Result<String> {
        let name = |kind| self.get(kind).map(|(name, _)| name);
        Ok(EXPORT_README
            .replace("{{wit}}", &wit_package())
            .replace("{{rust_sdk}}", name(Kind::RustSdk)?)
            .replace("{{rust_rules}}", name(Kind::RustRules)?)
            .replace("{{js}}", name(Kind::Js)?)
            .replace("{{wheel}}", name(Kind::PythonWheel)?)
            .replace("{{sdist}}", name(Kind::PythonSdist)?))
    }
}

/// `hms:sync@<version>`: the WIT package the SDKs implement.
pub(super) fn wit_package() -> String {
    format!(
        "{}@{}",
        crate::sandbox::WIT_PACKAGE,
        crate::sandbox::WIT_VERSION
    )
}

const EXPORT_README: &str = include_str!("../../templates/sdk-export/README.md");

/// Unpacks a `.crate` (a gzipped tar holding `<name>-<version>/...`) into `into`, without its
/// top directory.
fn unpack_crate(bytes: &[u8], into: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        // Every path is under the crate's own directory, and none leaves it.
        let mut parts = path.components();
        parts.next();
        let inner = parts.as_path();
        if inner.as_os_str().is_empty() {
            continue;
        }
        if inner
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("the crate holds a path that leaves it: {}", path.display());
        }
        let target = into.join(inner);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_package_carries_the_engines_wit() {
        let engine = include_str!("../../../wit/sync.wit");
        for (copy, text) in [
            (
                "sdk/wit/sync.wit",
                include_str!("../../../sdk/wit/sync.wit"),
            ),
            (
                "sdk/js/wit/sync.wit",
                include_str!("../../../sdk/js/wit/sync.wit"),
            ),
            (
                "sdk/python/hms_sync/wit/sync.wit",
                include_str!("../../../sdk/python/hms_sync/wit/sync.wit"),
            ),
        ] {
            assert!(
                text == engine,
                "{copy} differs from wit/sync.wit: copy it (cp wit/sync.wit {copy})"
            );
        }
    }

    #[test]
    fn the_sdk_packages_are_versioned_with_the_wit() {
        let version = crate::sandbox::WIT_VERSION;
        let line = format!("version = \"{version}\"");
        for (manifest, text) in [
            ("sdk/Cargo.toml", include_str!("../../../sdk/Cargo.toml")),
            (
                "sdk/rules/Cargo.toml",
                include_str!("../../../sdk/rules/Cargo.toml"),
            ),
            (
                "sdk/python/pyproject.toml",
                include_str!("../../../sdk/python/pyproject.toml"),
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{manifest}: {line}");
        }
        let js: serde_json::Value =
            serde_json::from_str(include_str!("../../../sdk/js/package.json")).unwrap();
        assert_eq!(js["version"], version, "sdk/js/package.json");
    }

    #[test]
    fn a_crate_unpacks_without_its_top_directory_and_never_outside() {
        let mut tarball = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut tarball, flate2::Compression::fast());
            let mut builder = tar::Builder::new(gz);
            let mut add = |path: &str, text: &[u8]| {
                let mut header = tar::Header::new_gnu();
                header.set_size(text.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                builder.append_data(&mut header, path, text).unwrap();
            };
            add("hms-sync-sdk-0.1.0/Cargo.toml", b"[package]\n");
            add("hms-sync-sdk-0.1.0/src/lib.rs", b"//! x\n");
            builder.into_inner().unwrap().finish().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        unpack_crate(&tarball, &dir.path().join("sdk")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sdk/src/lib.rs")).unwrap(),
            "//! x\n"
        );
        assert!(dir.path().join("sdk/Cargo.toml").exists());
        assert!(Packages::of(&[]).is_none(), "no files: no packages");
    }
}
