//! A JSON document on disk that is replaced whole and atomically: written to a temporary file,
//! fsynced, renamed over the old one, and the directory fsynced, so a crash leaves the old or the new
//! document, never a torn one.
use super::StorageError;
use serde::{de::DeserializeOwned, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DurableDocument {
    path: PathBuf,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Io {
        action,
        path,
        source,
    }
}

impl DurableDocument {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The stored document, or `None` before the first write.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.load_bytes()? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StorageError::Corrupt {
                path: self.path.clone(),
                reason: err.to_string(),
            })
    }

    /// The stored bytes, or `None` before the first write.
    pub fn load_bytes(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error("reading", &self.path)(err)),
        }
    }

    /// Renames the document out of the way (`name.json.migrated`) once its content lives
    /// elsewhere, so that nobody edits a file that is no longer read.
    pub fn retire(&self) -> Result<(), StorageError> {
        let mut retired = self.path.clone().into_os_string();
        retired.push(".migrated");
        match fs::rename(&self.path, &retired) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("renaming", &self.path)(err))
            }
            _ => Ok(()),
        }
    }

    pub fn store<T: Serialize>(&self, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|err| StorageError::Corrupt {
            path: self.path.clone(),
            reason: err.to_string(),
        })?;
        self.store_bytes(&bytes)
    }

    /// Replaces the document with `bytes`, atomically.
    pub fn store_bytes(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let temp = self.path.with_extension("tmp");
        let mut file = File::create(&temp).map_err(io_error("creating", &temp))?;
        file.write_all(bytes).map_err(io_error("writing", &temp))?;
        file.sync_all().map_err(io_error("syncing", &temp))?;
        fs::rename(&temp, &self.path).map_err(io_error("renaming", &temp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("syncing", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_document_reads_back_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let doc = DurableDocument::new(dir.path().join("sub/doc.json"));
        assert_eq!(doc.load::<Vec<u32>>().unwrap(), None);
        doc.store(&vec![1, 2, 3]).unwrap();
        doc.store(&vec![4]).unwrap();
        assert_eq!(doc.load::<Vec<u32>>().unwrap(), Some(vec![4]));
        assert!(!dir.path().join("sub/doc.tmp").exists());
    }

    #[test]
    fn a_corrupt_document_is_an_error_not_an_empty_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        fs::write(&path, b"{not json").unwrap();
        let err = DurableDocument::new(path).load::<Vec<u32>>().unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }));
    }
}
