//! The rules a plugin's output must follow: one definition, used by the engine's sandbox when a
//! plugin runs and by the SDK's test harness when a plugin author runs `cargo test`, so a plugin
//! that breaks a rule fails its own tests with the error code the engine would record.
//!
//! A plugin's output is refused as a whole when:
//! - it is larger than its output limit ([`Refusal::TooLarge`], code `output-too-large`):
//!   a transformer's payload, or the sum of its actions' sizes ([`Action::size`]);
//! - an action breaks a rule ([`Refusal::Malformed`], code `malformed-output`): an empty or
//!   over-long name, key or drop reason; a control character in one; a content type that is not
//!   a media type; a version over 2^63 - 1; an event type outside the [event type
//!   grammar](check_event_type); a header that is not valid HTTP, or that the engine sets itself
//!   ([`is_reserved_header`]).
//!
//! Destinations may set headers of their own in the engine's configuration; a plugin may not set
//! those either. The engine checks that against the destination, which a plugin's own tests do
//! not know.

use std::fmt;

/// The longest entity key, destination name or drop reason a plugin may return, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// The longest event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// The output limit a plugin runs under unless its configuration sets another, in bytes.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;
/// How many actions a handler may return for one event, unless its limits say otherwise: each
/// becomes a row the engine stores in the event's transaction.
pub const DEFAULT_ACTION_LIMIT: usize = 256;
/// What each action counts against the output limit beyond its own bytes: the row the engine
/// stores for it. So a flood of empty actions (`drop("")`) is bounded by the output limit too.
pub const ACTION_OVERHEAD: usize = 64;
/// The longest single log line a plugin may write, in bytes; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;
/// How many log lines a plugin may write per event; later ones are dropped.
pub const MAX_LOG_LINES: usize = 256;

/// Headers the engine sets itself (or that HTTP reserves), which a plugin may not set.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "cookie",
    "idempotency-key",
    "user-agent",
];

/// Prefixes of header names the engine owns: the Standard Webhooks headers (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`) and the HMS metadata headers (`hms-origin`,
/// `hms-hops`, `hms-path`, `hms-key`, `hms-version`, `hms-timestamp`, `hms-source-event`).
pub const RESERVED_PREFIXES: &[&str] = &["webhook-", "hms-"];

/// Why the engine refuses a plugin's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The output is larger than the plugin's output limit.
    TooLarge {
        /// The output's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A handler returned more actions than its action limit.
    TooManyActions {
        /// How many it returned.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An action breaks a rule; the message names the action and the rule.
    Malformed(String),
}

impl Refusal {
    /// The error code the engine records: `output-too-large` or `malformed-output`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } | Refusal::TooManyActions { .. } => "output-too-large",
            Refusal::Malformed(_) => "malformed-output",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooLarge { size, limit } => write!(
                f,
                "the plugin returned {size} bytes of output, over its limit of {limit} bytes"
            ),
            Refusal::TooManyActions { count, limit } => write!(
                f,
                "the plugin returned {count} actions, over its limit of {limit} per event"
            ),
            Refusal::Malformed(reason) => {
                write!(f, "the plugin returned a malformed result: {reason}")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// One header a plugin sets, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name, as the plugin wrote it.
    pub name: &'a str,
    /// The value.
    pub value: &'a str,
}

/// One action a plugin returned, as the rules see it (borrowed from whichever type holds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// A delivery to a named destination.
    Deliver {
        /// The destination's name.
        destination: &'a str,
        /// The body.
        body: &'a [u8],
        /// The body's media type, when set.
        content_type: Option<&'a str>,
        /// Extra request headers.
        headers: Vec<Header<'a>>,
        /// The entity key, when set.
        key: Option<&'a str>,
        /// The entity version, when set.
        version: Option<u64>,
    },
    /// An event emitted on the HMS bus.
    Emit {
        /// The event type.
        event_type: &'a str,
        /// The payload.
        payload: &'a [u8],
        /// The payload's media type, when set.
        content_type: Option<&'a str>,
        /// The entity key, when set.
        key: Option<&'a str>,
        /// The entity version, when set.
        version: Option<u64>,
    },
    /// The event dropped on purpose.
    Drop {
        /// Why.
        reason: &'a str,
    },
}

impl Action<'_> {
    /// What the action counts against the output limit: [`ACTION_OVERHEAD`] plus its bodies,
    /// names, keys, content type and headers, in bytes.
    pub fn size(&self) -> usize {
        let opt = |s: &Option<&str>| s.map_or(0, str::len);
        ACTION_OVERHEAD
            + match self {
                Action::Deliver {
                    destination,
                    body,
                    content_type,
                    headers,
                    key,
                    ..
                } => {
                    destination.len()
                        + body.len()
                        + opt(content_type)
                        + opt(key)
                        + headers
                            .iter()
                            .map(|h| h.name.len() + h.value.len())
                            .sum::<usize>()
                }
                Action::Emit {
                    event_type,
                    payload,
                    content_type,
                    key,
                    ..
                } => event_type.len() + payload.len() + opt(content_type) + opt(key),
                Action::Drop { reason } => reason.len(),
            }
    }

    /// Checks the action against every rule; the error says which it breaks.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Action::Deliver {
                destination,
                content_type,
                headers,
                key,
                version,
                ..
            } => {
                check_name("destination", destination)?;
                check_version(*version)?;
                if let Some(key) = key {
                    check_name("key", key)?;
                }
                if let Some(content_type) = content_type {
                    check_content_type(content_type)?;
                }
                for header in headers {
                    check_header(header.name, header.value)?;
                }
            }
            Action::Emit {
                event_type,
                content_type,
                key,
                version,
                ..
            } => {
                check_event_type(event_type)?;
                check_version(*version)?;
                if let Some(key) = key {
                    check_name("key", key)?;
                }
                if let Some(content_type) = content_type {
                    check_content_type(content_type)?;
                }
            }
            Action::Drop { reason } => {
                if reason.len() > MAX_NAME_LEN {
                    return Err(format!(
                        "the drop reason is {} bytes long; the limit is {MAX_NAME_LEN}",
                        reason.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks a handler's actions: their count against `max_actions`, their total size against
/// `limit`, then each action.
pub fn check_actions<'a>(
    actions: impl IntoIterator<Item = Action<'a>>,
    limit: usize,
    max_actions: usize,
) -> Result<(), Refusal> {
    let actions: Vec<Action<'a>> = actions.into_iter().collect();
    if actions.len() > max_actions {
        return Err(Refusal::TooManyActions {
            count: actions.len(),
            limit: max_actions,
        });
    }
    let size = actions.iter().map(Action::size).sum();
    check_size(size, limit)?;
    for (i, action) in actions.iter().enumerate() {
        action
            .check()
            .map_err(|reason| Refusal::Malformed(format!("action {i}: {reason}")))?;
    }
    Ok(())
}

/// Checks the size of a payload (a transformer's result, a resolver's merged payload) against
/// `limit`.
pub fn check_size(size: usize, limit: usize) -> Result<(), Refusal> {
    if size > limit {
        Err(Refusal::TooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// Checks an event type: one or more segments separated by single dots, each made of ASCII
/// letters, digits, `_` and `-`, at most [`MAX_EVENT_TYPE_LEN`] bytes in all (`tax.rate.updated`,
/// `policy_v2-updated`). So `.`, `..`, a leading or trailing dot and an empty type are refused:
/// an event type becomes part of the HMS core's URL.
pub fn check_event_type(event_type: &str) -> Result<(), String> {
    if event_type.is_empty() {
        return Err("the event type is empty".into());
    }
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(format!(
            "the event type is {} bytes long; the limit is {MAX_EVENT_TYPE_LEN}",
            event_type.len()
        ));
    }
    if let Some(c) = event_type
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the event type `{}` contains {c:?}; only ASCII letters, digits, `.`, `_` and `-` are allowed",
            event_type.escape_debug()
        ));
    }
    if event_type.split('.').any(str::is_empty) {
        return Err(format!(
            "the event type `{event_type}` has an empty segment: dots separate names, as in \
             `tax.rate.updated`, and cannot start or end it or stand next to each other"
        ));
    }
    Ok(())
}

/// Checks a destination name, entity key or similar: 1 to [`MAX_NAME_LEN`] bytes, no control
/// characters. `what` names it in the error.
pub fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {MAX_NAME_LEN}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the {what} `{}` contains a control character",
            value.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a version: stores keep versions as signed 64-bit integers, so at most 2^63 - 1.
pub fn check_version(version: Option<u64>) -> Result<(), String> {
    match version {
        Some(v) if i64::try_from(v).is_err() => Err(format!(
            "the version {v} is over the largest the engine keeps (2^63 - 1)"
        )),
        _ => Ok(()),
    }
}

/// Checks a content type: a valid header value of the form `type/subtype`, parameters allowed.
pub fn check_content_type(value: &str) -> Result<(), String> {
    let valid = http::HeaderValue::from_str(value).is_ok()
        && value.split(';').next().is_some_and(|essence| {
            essence
                .trim()
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the content type `{}` is not a media type such as `application/json`",
            value.escape_debug()
        ))
    }
}

/// Whether the engine sets a header itself (see [`RESERVED_HEADERS`] and
/// [`RESERVED_PREFIXES`]); `name` is compared case-insensitively.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&name.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Checks a header a plugin sets: a valid HTTP name and value, and not one the engine sets.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "the header name `{}` is not a valid HTTP header name",
            name.escape_debug()
        ));
    }
    if is_reserved_header(name) {
        return Err(format!(
            "the header `{}` is set by the engine and cannot be set by a plugin",
            name.to_ascii_lowercase()
        ));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "the value of header `{}` is not a valid HTTP header value: `{}`",
            name.to_ascii_lowercase(),
            value.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a header a plugin sets on a delivery against the headers the destination's
/// configuration sets (`configured`, any case): a plugin may not replace those.
pub fn check_destination_header(name: &str, configured: &[String]) -> Result<(), String> {
    if configured.iter().any(|c| c.eq_ignore_ascii_case(name)) {
        Err(format!(
            "the header `{}` is set by the destination's configuration and cannot be set by a plugin",
            name.to_ascii_lowercase()
        ))
    } else {
        Ok(())
    }
}

/// Cuts a log line to at most [`MAX_LOG_LINE`] bytes (on a character boundary), saying how much
/// was cut.
pub fn truncate_log_line(line: String) -> String {
    truncate(line, MAX_LOG_LINE)
}

/// Cuts `s` to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("… ({cut} bytes cut)"));
    s
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An event type that passes is a dotted name that cannot change the core's URL: no
        /// `/`, no `.` or `..` segment, nothing to escape. Every dotted name of allowed
        /// characters passes.
        #[test]
        fn event_types_that_pass_are_safe_path_segments(any in "\\PC{0,40}", dotted in "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,8}){0,4}") {
            if check_event_type(&any).is_ok() {
                prop_assert!(!any.is_empty() && any.len() <= MAX_EVENT_TYPE_LEN);
                prop_assert!(any.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                prop_assert!(any.split('.').all(|segment| !segment.is_empty()));
            }
            prop_assert_eq!(check_event_type(&dotted), Ok(()));
        }

        /// A header a plugin may set is a valid HTTP header the engine does not set.
        #[test]
        fn headers_that_pass_are_valid_and_not_the_engines(name in "\\PC{0,20}|[a-zA-Z-]{1,20}", value in "\\PC{0,20}") {
            if check_header(&name, &value).is_ok() {
                prop_assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok());
                prop_assert!(http::HeaderValue::from_str(&value).is_ok());
                prop_assert!(!is_reserved_header(&name));
            }
        }

        /// Truncating keeps a prefix, cut on a character boundary, and says how much went.
        #[test]
        fn truncation_keeps_a_prefix_on_a_character_boundary(text in "\\PC{0,64}", max in 0usize..80) {
            let cut = truncate(text.clone(), max);
            if text.len() <= max {
                prop_assert_eq!(cut, text);
            } else {
                let (kept, note) = cut.rsplit_once('…').unwrap();
                prop_assert!(text.starts_with(kept) && kept.len() <= max);
                prop_assert_eq!(note.to_owned(), format!(" ({} bytes cut)", text.len() - kept.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_dotted_names() {
        assert!(check_event_type("tax.rate.updated").is_ok());
        assert!(check_event_type("policy_v2-updated").is_ok());
        assert!(check_event_type("").unwrap_err().contains("empty"));
        assert!(check_event_type("a/b").unwrap_err().contains("'/'"));
        assert!(check_event_type("tax rate").unwrap_err().contains("' '"));
        assert!(
            check_event_type(&"a".repeat(129))
                .unwrap_err()
                .contains("129")
        );
        for bad in [".", "..", "a..b", ".a", "a."] {
            assert!(
                check_event_type(bad).unwrap_err().contains("empty segment"),
                "{bad}"
            );
        }
    }

    #[test]
    fn reserved_headers_include_the_engines_metadata() {
        for name in [
            "Authorization",
            "idempotency-key",
            "webhook-signature",
            "hms-hops",
            "HMS-Origin",
            "content-type",
        ] {
            assert!(is_reserved_header(name), "{name}");
            assert!(
                check_header(name, "x")
                    .unwrap_err()
                    .contains("set by the engine")
            );
        }
        assert!(check_header("x-agency", "irs").is_ok());
        assert!(
            check_header("bad name", "x")
                .unwrap_err()
                .contains("not a valid")
        );
        assert!(
            check_header("x-a", "line\nbreak")
                .unwrap_err()
                .contains("value")
        );
        assert!(
            check_destination_header("X-Api-Key", &["x-api-key".into()])
                .unwrap_err()
                .contains("destination's configuration")
        );
    }

    #[test]
    fn output_is_checked_for_size_then_for_each_action() {
        let deliver = |destination: &'static str| Action::Deliver {
            destination,
            body: b"{}",
            content_type: None,
            headers: vec![Header {
                name: "x-a",
                value: "1",
            }],
            key: Some("k"),
            version: Some(1),
        };
        assert_eq!(deliver("state").size(), ACTION_OVERHEAD + 5 + 2 + 1 + 3 + 1);
        assert!(check_actions([deliver("state")], 1000, 10).is_ok());
        assert_eq!(
            check_actions([deliver("state")], 5, 10),
            Err(Refusal::TooLarge {
                size: ACTION_OVERHEAD + 12,
                limit: 5
            })
        );
        let refused = check_actions([deliver("state"), deliver("")], 1000, 10).unwrap_err();
        assert_eq!(refused.code(), "malformed-output");
        assert!(
            refused
                .to_string()
                .contains("action 1: the destination is empty")
        );
        // Too many, even when each is tiny: counted before anything else.
        let drops = (0..11).map(|_| Action::Drop { reason: "" });
        let refused = check_actions(drops, usize::MAX, 10).unwrap_err();
        assert_eq!(
            refused,
            Refusal::TooManyActions {
                count: 11,
                limit: 10
            }
        );
        assert_eq!(refused.code(), "output-too-large");
        let emit = Action::Emit {
            event_type: "..",
            payload: b"{}",
            content_type: Some("text"),
            key: None,
            version: None,
        };
        assert!(emit.check().unwrap_err().contains("empty segment"));
        let huge = Action::Drop {
            reason: &"r".repeat(MAX_NAME_LEN + 1),
        };
        assert!(huge.check().unwrap_err().contains("drop reason"));
        assert!(check_version(Some(u64::MAX)).unwrap_err().contains("2^63"));
        assert!(check_content_type("application/json; charset=utf-8").is_ok());
        assert!(check_content_type("json").is_err());
    }

    #[test]
    fn long_log_lines_are_cut_on_a_character_boundary() {
        let line = "é".repeat(MAX_LOG_LINE);
        let cut = truncate_log_line(line);
        assert!(cut.ends_with("bytes cut)"), "{cut}");
        assert!(cut.len() < MAX_LOG_LINE + 32);
        assert_eq!(truncate_log_line("short".into()), "short");
    }
}
