//! How values are written to columns and read back. Rows are always read by column name.

use crate::sandbox::event::Header;
use crate::store::StoreError;
use rusqlite::Row;

/// Headers as stored: JSON `[[name, value], ...]`.
pub(super) fn headers_json(headers: &[Header]) -> String {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    serde_json::to_string(&pairs).expect("string pairs serialise")
}

/// Headers read back from their JSON.
pub(super) fn headers_from_json(raw: &str) -> Result<Vec<Header>, StoreError> {
    let pairs: Vec<(String, String)> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("headers `{raw}`: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect())
}

/// A path of systems as stored: comma-separated, oldest first.
pub(super) fn path_text(path: &[String]) -> String {
    path.join(",")
}

/// A stored path read back.
pub(super) fn path_from_text(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Integers as a JSON array: a list for one `json_each(?)` parameter (SQLite takes at most
/// 32,766 parameters; one array holds any number).
pub(super) fn json_ints(values: &[i64]) -> String {
    let values: Vec<String> = values.iter().map(i64::to_string).collect();
    format!("[{}]", values.join(","))
}

/// A version as SQLite keeps it (a signed integer; versions over 2^63 - 1 are refused earlier).
pub(super) fn from_u64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A version read back.
pub(super) fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// A count or index as SQLite keeps it.
pub(super) fn from_usize(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count or index read back.
pub(super) fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// A text column parsed into a name type (`parse` returns `None` for names it does not know).
pub(super) fn named<T>(
    row: &Row<'_>,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unknown {column} `{text}`")))
}

/// Every row of a query, each read by `read`.
pub(super) fn read_all<T>(
    mut rows: rusqlite::Rows<'_>,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(row)?);
    }
    Ok(out)
}
