//! What the engine takes as a JSON payload: one definition, applied where an event is accepted
//! (the bus over HTTP or NATS, webhooks) and where a route's pointers read an entity's key,
//! version and timestamp, so that whatever acceptance lets in, the pointers read the same way
//! and a plugin is handed no payload the engine itself could not read.
//!
//! A payload is JSON (RFC 8259) in UTF-8, and also:
//! - every string is valid Unicode: an escaped lone surrogate (`"\ud800"`) is refused, as an
//!   invalid UTF-8 byte is;
//! - no object names a member twice (as I-JSON, RFC 7493, asks): parsers disagree on which of
//!   the two counts, so a route's pointer and a plugin could read different values;
//! - it is nested at most `maxJsonDepth` levels deep (arrays and objects; 128 by default);
//! - every number is one a 64-bit float or integer holds.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// How deep a payload may nest when the configuration does not say (`maxJsonDepth`).
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The deepest nesting the configuration may allow: reading is recursive, and this keeps it far
/// from the end of a thread's stack.
pub const MAX_DEPTH_LIMIT: usize = 256;

/// Why a payload is not one the engine takes, as a sentence (with the line and column, where
/// the parser knows them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

/// Checks that `bytes` is a payload the engine takes, nested at most `max_depth` levels deep.
pub fn check(bytes: &[u8], max_depth: usize) -> Result<(), Invalid> {
    let text = utf8(bytes)?;
    let mut reader = serde_json::Deserializer::from_str(text);
    // The depth is bounded by `Checked` instead, which may allow more than serde_json's 128.
    reader.disable_recursion_limit();
    Checked {
        levels_left: max_depth,
        max_depth,
    }
    .deserialize(&mut reader)
    .and_then(|()| reader.end())
    .map_err(|e| Invalid(e.to_string()))
}

/// Reads `bytes` as a JSON value, if it is a payload the engine takes ([`check`]).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<serde_json::Value, Invalid> {
    check(bytes, max_depth)?;
    let mut reader = serde_json::Deserializer::from_str(utf8(bytes)?);
    reader.disable_recursion_limit();
    serde_json::Value::deserialize(&mut reader).map_err(|e| Invalid(e.to_string()))
}

fn utf8(bytes: &[u8]) -> Result<&str, Invalid> {
    std::str::from_utf8(bytes).map_err(|e| {
        Invalid(format!(
            "it is not UTF-8 from the byte at offset {}",
            e.valid_up_to()
        ))
    })
}

/// A value checked as it is read, with `levels_left` more levels of nesting allowed.
#[derive(Clone, Copy)]
struct Checked {
    levels_left: usize,
    max_depth: usize,
}

impl Checked {
    /// The check of what an array or object holds, one level further down.
    fn inner<E: de::Error>(self) -> Result<Checked, E> {
        match self.levels_left.checked_sub(1) {
            Some(levels_left) => Ok(Checked {
                levels_left,
                ..self
            }),
            None => Err(E::custom(format_args!(
                "it nests deeper than {} levels (`maxJsonDepth`)",
                self.max_depth
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    // Strings arrive decoded: a lone surrogate escape has already been refused.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while items.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        let mut names = Names::default();
        while let Some(name) = members.next_key_seed(Name)? {
            if let Some(twice) = names.insert(name) {
                return Err(de::Error::custom(format_args!(
                    "an object names `{twice}` twice"
                )));
            }
            members.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object's member name, borrowed from the payload when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
    }
}

/// The names of one object so far: a list while it is short, a set beyond.
#[derive(Default)]
struct Names<'de> {
    few: Vec<Cow<'de, str>>,
    many: Option<HashSet<Cow<'de, str>>>,
}

/// Objects with more members than this keep their names in a set.
const FEW: usize = 16;

impl<'de> Names<'de> {
    /// Adds `name`; answers it back if the object named it already.
    fn insert(&mut self, name: Cow<'de, str>) -> Option<Cow<'de, str>> {
        match &mut self.many {
            Some(many) => {
                if many.contains(&name) {
                    return Some(name);
                }
                many.insert(name);
            }
            None => {
                if self.few.contains(&name) {
                    return Some(name);
                }
                self.few.push(name);
                if self.few.len() > FEW {
                    self.many = Some(self.few.drain(..).collect());
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn what_serde_json_reads_as_a_value_is_taken() {
        for ok in [
            r#"{"rate": 0.09, "year": 2061}"#,
            r#"{"name": "caf\u00e9 \ud83d\ude00", "tags": [1, -2, 3.5e10, true, null]}"#,
            r#""just a string""#,
            "  42  ",
            r#"{"a": {"a": {"a": 1}}}"#,
        ] {
            assert_eq!(check(ok.as_bytes(), DEFAULT_MAX_DEPTH), Ok(()), "{ok}");
            assert_eq!(
                parse(ok.as_bytes(), DEFAULT_MAX_DEPTH).unwrap(),
                serde_json::from_str::<serde_json::Value>(ok).unwrap()
            );
        }
    }

    #[test]
    fn what_the_pointers_could_not_read_is_refused_saying_why() {
        for (bad, why) in [
            (&br#"{"rate": "\ud800"}"#[..], "hex escape"),
            (br#"{"rate": "\udc00"}"#, "surrogate"),
            (
                b"{\"rate\": \"\xff\"}",
                "not UTF-8 from the byte at offset 10",
            ),
            (br#"{"rate": 1, "rate": 2}"#, "names `rate` twice"),
            (br#"{"a": 1e400}"#, "number out of range"),
            (br#"{"a": 1} x"#, "trailing characters"),
            (b"", "EOF while parsing"),
        ] {
            let e = check(bad, DEFAULT_MAX_DEPTH).unwrap_err().to_string();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
            assert!(parse(bad, DEFAULT_MAX_DEPTH).is_err());
        }
    }

    #[test]
    fn nesting_is_bounded_by_the_setting_not_by_the_parser() {
        assert_eq!(check(nested(128).as_bytes(), 128), Ok(()));
        let e = check(nested(129).as_bytes(), 128).unwrap_err().to_string();
        assert!(e.contains("nests deeper than 128 levels"), "{e}");
        assert!(check(nested(200).as_bytes(), 128).is_err());
        // Deeper than serde_json's own limit, when the configuration allows it.
        assert_eq!(
            check(nested(MAX_DEPTH_LIMIT).as_bytes(), MAX_DEPTH_LIMIT),
            Ok(())
        );
        assert!(parse(nested(MAX_DEPTH_LIMIT).as_bytes(), MAX_DEPTH_LIMIT).is_ok());
        let objects = format!("{}1{}", r#"{"a":"#.repeat(3), "}".repeat(3));
        assert_eq!(check(objects.as_bytes(), 3), Ok(()));
        assert!(check(objects.as_bytes(), 2).is_err());
        // A million levels are refused without reading them all (nor overflowing the stack).
        assert!(check(nested(1_000_000).as_bytes(), 128).is_err());
    }

    #[test]
    fn duplicate_names_are_found_in_large_objects_too() {
        let members: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        let unique = format!("{{{}}}", members.join(","));
        assert_eq!(check(unique.as_bytes(), 8), Ok(()));
        let twice = format!("{{{}, \"k7\": 0}}", members.join(","));
        let e = check(twice.as_bytes(), 8).unwrap_err().to_string();
        assert!(e.contains("names `k7` twice"), "{e}");
        // An escaped name is the same name.
        assert!(check(br#"{"k": 1, "\u006b": 2}"#, 8).is_err());
    }

    proptest! {
        /// Whatever the bytes, the check answers (never panics), and what it takes serde_json
        /// reads as a value.
        #[test]
        fn anything_taken_is_a_value(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if check(&bytes, DEFAULT_MAX_DEPTH).is_ok() {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
            }
        }

        /// Every value serde_json writes (no duplicate names, shallow) is taken.
        #[test]
        fn every_written_value_is_taken(text in "\\PC{0,16}", n in any::<i64>(), b in any::<bool>()) {
            let value = serde_json::json!({"text": text, "n": n, "list": [b, null, [n]]});
            let bytes = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(parse(&bytes, DEFAULT_MAX_DEPTH).unwrap(), value);
        }
    }
}
