//! The engine's logs, on standard error: text lines or JSON objects, at the level `RUST_LOG`
//! says (default `info`).
//!
//! Log lines carry text the engine does not write itself (a plugin's log messages and prints,
//! a sender's header values in an error, a receiver's answer), so every control character in a
//! text line is escaped (`\n`, `\r`, `\u{1b}`, ...): such text cannot end its line and forge the
//! next one, nor move a terminal's cursor. (JSON lines escape them by themselves.) The lines have
//! no colours for the same reason. reqwest's own debug lines name whole request URLs, query
//! values included, so it logs at `info` at most unless `RUST_LOG` names it.

use super::LogFormat;
use std::io::{self, Write};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the engine's logger.
pub(super) fn init(format: LogFormat) {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = Some(asked.trim())
        .filter(|asked| !asked.is_empty())
        .and_then(|asked| EnvFilter::try_new(asked).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if !asked.contains("reqwest") {
        filter = filter.add_directive("reqwest=info".parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(EscapedStderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Standard error, written one escaped line at a time.
struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = Escaping<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping(io::stderr())
    }
}

/// A writer that escapes every control character but the final newline of each write: the
/// formatter writes each event's whole line at once.
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (line, newline) = match buf.strip_suffix(b"\n") {
            Some(line) => (line, true),
            None => (buf, false),
        };
        let mut out = escape(&String::from_utf8_lossy(line))
            .into_owned()
            .into_bytes();
        if newline {
            out.push(b'\n');
        }
        // One write per line, so lines from several threads never interleave.
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether a log line must not carry `c` as it is: C0 and C1 controls (but the tab), and the
/// Unicode line and paragraph separators.
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` with its control characters escaped as Rust writes them (`\n`, `\r`, `\u{1b}`).
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_control(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cannot_start_another_nor_steer_a_terminal() {
        let mut out = Vec::new();
        let forged = "2026-12-04T00:00:00Z  INFO console: logged in by=admin:0123";
        let line =
            format!("INFO plugin: warn line\n{forged}\r\u{1b}[2K\u{85}\u{2028} and\ttab é\n");
        let n = Escaping(&mut out).write(line.as_bytes()).unwrap();
        assert_eq!(n, line.len());
        let written = String::from_utf8(out).unwrap();
        assert_eq!(
            written,
            format!(
                "INFO plugin: warn line\\n{forged}\\r\\u{{1b}}[2K\\u{{85}}\\u{{2028}} and\ttab é\n"
            )
        );
        assert_eq!(written.lines().count(), 1);
        assert_eq!(escape("plain text"), "plain text");
    }
}
