//! Values as the configuration writes them: `${ENV}` references, durations (`500ms`, `10s`),
//! byte sizes (`512KiB`, `1MiB`), paths relative to the file.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// A string with `${ENV}` references replaced.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Expanded(pub String);

impl fmt::Debug for Expanded {
    // Expanded strings often hold secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Expanded(..)")
    }
}

impl std::ops::Deref for Expanded {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Expanded {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(Expanded)
            .map_err(serde::de::Error::custom)
    }
}

/// A path with `${ENV}` references replaced; made absolute against the configuration file's
/// directory when the file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ExpandedPath(pub PathBuf);

impl<'de> Deserialize<'de> for ExpandedPath {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        Expanded::deserialize(de).map(|e| ExpandedPath(PathBuf::from(e.0)))
    }
}

/// Replaces `${NAME}` with `lookup(NAME)` and `$$` with `$`; any other `$` stays as it is.
pub(super) fn expand_env(
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{raw}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not an environment variable reference: names are letters, digits and `_`"
                ));
            }
            let value = lookup(name)
                .ok_or_else(|| format!("the environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Durations written as `500ms`, `10s`, `5m`, `1h 30m`.
pub(super) mod duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(in crate::config) fn parse(raw: &str) -> Result<Duration, String> {
        humantime::parse_duration(raw).map_err(|e| {
            format!("`{raw}` is not a duration ({e}); write a number and a unit, such as `500ms`, `10s` or `5m`")
        })
    }

    pub(in crate::config) fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Duration, D::Error> {
        parse(&String::deserialize(de)?).map_err(serde::de::Error::custom)
    }
}

/// Optional durations; see [`duration`].
pub(super) mod opt_duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(in crate::config) fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(de)?
            .map(|raw| super::duration::parse(&raw).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses a byte size: a number of bytes, or a number with `KiB`, `MiB` or `GiB`.
pub(super) fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "`{raw}` is not a size: the unit `{other}` is not one of B, KiB, MiB, GiB"
            ));
        }
    };
    let n: usize = digits.parse().map_err(|_| {
        format!("`{raw}` is not a size; write a number of bytes or, say, `512KiB` or `1MiB`")
    })?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{raw}` is too large"))
}

/// A size given as a YAML number or string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Number(u64),
    Text(String),
}

pub(super) fn size<'de, D: serde::Deserializer<'de>>(de: D) -> Result<usize, D::Error> {
    match RawSize::deserialize(de)? {
        RawSize::Number(n) => usize::try_from(n).map_err(serde::de::Error::custom),
        RawSize::Text(raw) => parse_size(&raw).map_err(serde::de::Error::custom),
    }
}

pub(super) fn opt_size<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<usize>, D::Error> {
    match Option::<RawSize>::deserialize(de)? {
        None => Ok(None),
        Some(RawSize::Number(n)) => usize::try_from(n)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(RawSize::Text(raw)) => parse_size(&raw).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every size written with a unit reads back as that many bytes; anything else is an
        /// error with a message, never a panic.
        #[test]
        fn sizes_read_back_or_are_refused(n in 0usize..1 << 20, unit in 0usize..5, junk in "\\PC{0,12}") {
            let (suffix, shift) = [("", 0), ("B", 0), ("KiB", 10), ("MiB", 20), ("GiB", 30)][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n << shift));
            if let Err(message) = parse_size(&junk) {
                prop_assert!(message.contains(junk.trim()));
            }
        }

        /// Text without `$` expands to itself; any text expands or says why not.
        #[test]
        fn env_expansion_is_total(text in "\\PC{0,40}") {
            let env = |name: &str| (name == "SET").then(|| "value".to_owned());
            let expanded = expand_env(&text, env);
            if !text.contains('$') {
                prop_assert_eq!(expanded, Ok(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_expand() {
        let env = |name: &str| (name == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(expand_env("Bearer ${TOKEN}", env).unwrap(), "Bearer s3cret");
        assert_eq!(
            expand_env("cost $$5 and $x", env).unwrap(),
            "cost $5 and $x"
        );
        assert_eq!(expand_env("plain", env).unwrap(), "plain");
        assert!(
            expand_env("${MISSING}", env)
                .unwrap_err()
                .contains("`MISSING` is not set")
        );
        assert!(expand_env("${TOKEN", env).unwrap_err().contains("closing"));
        assert!(
            expand_env("${A-B}", env)
                .unwrap_err()
                .contains("not an environment variable")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert!(parse_size("1MB").unwrap_err().contains("`MB`"));
        assert!(parse_size("lots").is_err());
    }
}
