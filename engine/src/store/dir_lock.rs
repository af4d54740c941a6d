//! One engine per data directory: two engines on the same store would deliver everything twice.
//! The engine holds an exclusive lock on `engine.lock` in the data directory while it runs (the
//! operating system releases it when the process ends, however it ends), with its process id
//! inside, so a second engine can say which process holds it.

use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "engine.lock";

/// The data directory, held by this process until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the data directory `dir` (creating it), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let io = |what: &str, e: std::io::Error| {
            StoreError::Io(format!(
                "cannot {what} {}: {e}",
                dir.join(LOCK_FILE).display()
            ))
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| io("open", e))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(|e| io("write", e))?;
                file.rewind().map_err(|e| io("write", e))?;
                write!(file, "{}", std::process::id()).map_err(|e| io("write", e))?;
                Ok(DirLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder may be writing its id this very moment: then it is not named.
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("process {pid}"),
                };
                Err(StoreError::Io(format!(
                    "the data directory {} is in use by another engine ({holder}); two engines \
                     on one store would deliver everything twice: stop that one, or give this \
                     one another `store.path`",
                    dir.display()
                )))
            }
            Err(TryLockError::Error(e)) => Err(io("lock", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let refused = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!(
                "in use by another engine (process {})",
                std::process::id()
            )),
            "{refused}"
        );
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
