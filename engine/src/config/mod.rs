//! The engine's configuration: YAML in the seed's shape (`hmsEvents`, `externalWebhooks`),
//! extended with where to listen, the HMS core, the store, plugins, destinations and retries.
//!
//! Loading is strict: an unknown key, a value of the wrong type, a bad duration or size, a
//! missing environment variable, or a route that names a plugin or destination that does not
//! exist is an error naming the key. `${NAME}` in a URL, token, header value, path or plugin
//! setting is replaced by the environment variable `NAME` (`$$` is a literal `$`). Relative
//! paths are relative to the configuration file's directory.
//!
//! # Layout
//!
//! - `schema`: the sections of the file, as serde structs with their defaults (`listeners`:
//!   `http` and `admin`; `bus`: the HMS bus; `store`: the store's section; `plugins`: `sandbox`
//!   and `plugins`);
//! - `values`: `${ENV}` expansion, durations, sizes, paths;
//! - `checks`: what serde cannot check, and warnings.

mod bus;
mod checks;
mod listeners;
mod plugins;
#[cfg(test)]
mod reference;
mod schema;
mod store;
mod values;

pub use bus::{BusConfig, BusKind, BusNatsConfig, DeliverFrom};
pub use checks::MIN_SECRET_BYTES;
pub use listeners::{AdminConfig, HttpConfig};
pub use plugins::{IsolationConfig, LimitsConfig, PluginConfig, SandboxConfig};
pub use schema::*;
pub use store::{NatsConfig, RetentionConfig, StoreConfig, StoreKind};
pub use values::{Expanded, ExpandedPath};

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a path such as `destinations.state-api.url` or `hmsEvents[0].handler`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{} is not a valid configuration:", file.display())?,
            None => f.write_str("the configuration is not valid:")?,
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// [`Config::max_clock_skew`] in milliseconds, as timestamps are compared.
    pub fn max_clock_skew_ms(&self) -> i64 {
        i64::try_from(self.max_clock_skew.as_millis()).unwrap_or(i64::MAX)
    }

    /// How the plugin `name` runs: its `config` settings and its limits (its own, else the
    /// sandbox's defaults, else the built-in ones). The one place a plugin's setup is built
    /// from the configuration. `name` must be a configured plugin.
    pub fn plugin_setup(&self, name: &str) -> crate::sandbox::PluginSetup {
        let plugin = &self.plugins[name];
        crate::sandbox::PluginSetup {
            settings: std::sync::Arc::new(
                plugin
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            ),
            limits: plugin.limits.resolve(&self.sandbox.limits),
            isolation: plugin.isolation.resolve(),
        }
    }

    /// Reads and checks a configuration file. Relative paths in it become relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_listening(path, None)
    }

    /// Loads a configuration file as [`Config::load`] does, listening on `listen` instead of
    /// the file's `listen` when given (`sync-engine run --listen`): the checks, those of an
    /// exposed address among them, are of the address the engine will use.
    pub fn load_listening(
        path: &Path,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: Some(path.to_owned()),
            problems: vec![Problem {
                key: String::new(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_listening(&text, base, listen).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and checks configuration text; relative paths become relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        Self::parse_listening(text, base, None)
    }

    /// [`Config::parse`], listening on `listen` when given.
    fn parse_listening(
        text: &str,
        base: &Path,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let message = if key == "." {
                    e.inner().to_string()
                } else {
                    format!("{key}{KEY_SEPARATOR}{}", e.inner())
                };
                <serde_saphyr::Error as serde::de::Error>::custom(message)
            })
        })
        .map_err(|e| ConfigError {
            file: None,
            problems: vec![yaml_problem(&e)],
        })?;
        config.resolve_paths(base);
        if let Some(listen) = listen {
            config.listen = listen;
        }
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: None,
                problems,
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut ExpandedPath| {
            if p.0.is_relative() {
                p.0 = base.join(&p.0);
            }
        };
        resolve(&mut self.store.path);
        if let Some(credentials) = self
            .store
            .nats
            .as_mut()
            .and_then(|nats| nats.credentials.as_mut())
        {
            resolve(credentials);
        }
        if let Some(credentials) = self
            .bus
            .nats
            .as_mut()
            .and_then(|nats| nats.credentials.as_mut())
        {
            resolve(credentials);
        }
        if let Some(dir) = &mut self.plugin_dir {
            resolve(dir);
        }
        for plugin in self.plugins.values_mut() {
            resolve(&mut plugin.path);
            if let Some(fixtures) = &mut plugin.fixtures {
                resolve(fixtures);
            }
        }
    }
}

/// Separates the key path from the message in a typing error's text.
const KEY_SEPARATOR: &str = ": ";

/// Turns a YAML or typing error into a problem. A typing error's text starts with the key path
/// our wrapper put in it (see [`Config::parse`]); the YAML crate adds the line and column.
fn yaml_problem(err: &serde_saphyr::Error) -> Problem {
    let text = err.to_string();
    let is_key = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| !c.is_whitespace() && c != '`' && c != '\'')
    };
    match text.split_once(KEY_SEPARATOR) {
        Some((key, message)) if is_key(key) => Problem {
            key: key.to_owned(),
            message: message.trim().to_owned(),
        },
        _ => Problem {
            key: String::new(),
            message: text.trim().to_owned(),
        },
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever text a configuration file holds, it is read or refused with problems that
        /// each say what is wrong; nothing panics.
        #[test]
        fn any_text_is_read_or_refused_with_reasons(
            text in "\\PC{0,80}|([a-zA-Z]{1,10}: [a-zA-Z0-9:/.${}]{0,12}\n){0,6}",
        ) {
            if let Err(error) = Config::parse(&text, Path::new("/nowhere")) {
                prop_assert!(!error.problems.is_empty());
                prop_assert!(error.problems.iter().all(|p| !p.message.is_empty()));
            }
        }

        /// A webhook path is taken only when it is one the router can serve as it is.
        #[test]
        fn webhook_paths_that_pass_are_absolute_and_plain(path in "\\PC{0,30}|/[a-z/{}*.-]{0,20}") {
            let text = format!(
                "plugins:\n  p:\n    path: p.wasm\nexternalWebhooks:\n  - path: {:?}\n    handler: p\n    system: s\n",
                path
            );
            if let Ok(config) = Config::parse(&text, Path::new("/nowhere")) {
                let path = &config.external_webhooks[0].path;
                prop_assert!(path.starts_with('/'), "{path}");
                prop_assert!(!path.contains(['{', '}', '*', '?', '#']), "{path}");
            }
        }
    }
}
