//! The watched plugin directory: a `<name>.wasm` file there becomes a new version of the
//! configured plugin `<name>` when its content is new to the store.

use super::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the watched plugin directory is read.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Watches a directory: a `<name>.wasm` file there, for a configured plugin `<name>`, becomes a
/// new version of it (with `<name>.fixtures.json` beside it, if there is one) when its content
/// is a version the store has never seen. A file is taken once it has stopped changing for one
/// scan (so a half-copied file is not taken); a changed fixtures file counts as a change. Runs
/// until `shutdown`.
pub async fn watch(
    registry: Arc<Registry>,
    dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    type Stamp = Vec<(std::time::SystemTime, u64)>;
    // What each file looked like at the last scan, and whether it was handled in that state.
    let mut seen: HashMap<String, (Stamp, bool)> = HashMap::new();
    loop {
        let scan = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || scan_plugin_dir(&dir)).await
        };
        let files = scan.unwrap_or_default();
        seen.retain(|name, _| files.contains_key(name));
        for (name, stamp) in files {
            let entry = seen.entry(name.clone()).or_insert((Vec::new(), false));
            if entry.0 != stamp {
                // Changed since the last scan: wait until it holds still.
                *entry = (stamp, false);
                continue;
            }
            if entry.1 {
                continue;
            }
            entry.1 = true;
            take_plugin_file(&registry, &dir, &name).await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
}

/// Every `<name>.wasm` in `dir`, with the modification time and length of it and of its
/// fixtures file.
fn scan_plugin_dir(dir: &std::path::Path) -> HashMap<String, Vec<(std::time::SystemTime, u64)>> {
    let stamp = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len()))
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "wasm") {
                return None;
            }
            let name = path.file_stem()?.to_string_lossy().into_owned();
            let fixtures = dir.join(format!("{name}.fixtures.json"));
            Some((
                name,
                [stamp(&path), stamp(&fixtures)]
                    .into_iter()
                    .flatten()
                    .collect(),
            ))
        })
        .collect()
}

async fn take_plugin_file(registry: &Arc<Registry>, dir: &std::path::Path, name: &str) {
    let path = dir.join(format!("{name}.wasm"));
    if !registry.is_configured(name) {
        tracing::warn!(file = %path.display(), "a plugin file for no configured plugin; ignored");
        return;
    }
    let max = registry.max_component_size();
    let read = {
        let (path, fixtures) = (path.clone(), dir.join(format!("{name}.fixtures.json")));
        tokio::task::spawn_blocking(move || {
            // The size is checked before anything is read.
            let size = std::fs::metadata(&path)?.len();
            if size > u64::try_from(max).unwrap_or(u64::MAX) {
                return Ok(Err(size));
            }
            let fixtures_size = std::fs::metadata(&fixtures).map_or(0, |m| m.len());
            let fixtures = (fixtures_size <= u64::try_from(max).unwrap_or(u64::MAX))
                .then(|| std::fs::read_to_string(fixtures).ok())
                .flatten();
            Ok::<_, std::io::Error>(Ok((std::fs::read(path)?, fixtures)))
        })
        .await
    };
    let (bytes, fixtures) = match read {
        Ok(Ok(Ok(read))) => read,
        Ok(Ok(Err(size))) => {
            tracing::error!(file = %path.display(), size, max, "a plugin file larger than admin.maxUploadSize; ignored until it changes");
            return;
        }
        _ => {
            tracing::warn!(file = %path.display(), "cannot read a plugin file; it is tried again when it changes");
            return;
        }
    };
    use sha2::Digest;
    if registry
        .knows(name, &hex::encode(sha2::Sha256::digest(&bytes)))
        .await
    {
        // Already a version the store holds: an activation or a rollback decides about it,
        // not the file's presence (so a restart does not undo them).
        return;
    }
    if let Err(refused) = registry
        .submit(name, bytes, fixtures, "watch", "watch")
        .await
    {
        tracing::error!(
            file = %path.display(),
            plugin = %name,
            reason = %refused,
            "a new version in the watched directory was refused; the active version stays"
        );
    }
}
