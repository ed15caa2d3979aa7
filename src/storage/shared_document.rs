//! A document every replica shares (the registry, the API keys): an append-only log of its versions
//! in the object store, `{name}/_log/{version:020}.json`. A change is written as the next version
//! with a conditional create, so of two replicas writing the same version one wins and the other
//! catches up, checks its change again against what won, and tries the version after. Replicas poll
//! for versions written elsewhere.
//!
//! Each entry holds the whole document after its change, not the change alone: every entry is its
//! own checkpoint, catching up reads only the newest, and the log is the document's history (which
//! closed periods will name by version). Registry documents are kilobytes, so this costs little.
use super::location::{Created, Location, LocationError};
use super::{DurableDocument, StorageError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Versions tried in a row before a change gives up (each loss means another replica just wrote).
const MAX_ATTEMPTS: usize = 100;

/// One version of the document, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry<T> {
    pub version: u64,
    pub written_at: DateTime<Utc>,
    /// The replica that wrote it.
    pub replica: String,
    /// Who made the change: an API key id, or what the service did on its own (`migration`,
    /// `bootstrap`, `demo`, `telemetry`).
    #[serde(default)]
    pub by: String,
    pub document: T,
}

pub struct SharedDocument<T> {
    location: Location,
    log_dir: Path,
    replica: String,
    document: RwLock<T>,
    version: AtomicU64,
    writer: tokio::sync::Mutex<()>,
}

impl<T> std::fmt::Debug for SharedDocument<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDocument")
            .field("log_dir", &self.log_dir)
            .field("version", &self.version.load(Ordering::Acquire))
            .finish()
    }
}

impl From<LocationError> for StorageError {
    fn from(error: LocationError) -> Self {
        StorageError::Store(error.to_string())
    }
}

fn entry_name(version: u64) -> String {
    format!("{version:020}.json")
}

impl<T> SharedDocument<T>
where
    T: Serialize + DeserializeOwned + Clone + Default + Send + Sync,
{
    /// Opens the log at `name/_log` and reads its newest version. A log that is still empty takes
    /// `legacy` (the single-file document of earlier releases) as its first version.
    pub async fn open(
        location: &Location,
        name: &str,
        replica: &str,
        legacy: Option<DurableDocument>,
    ) -> Result<Self, StorageError> {
        let shared = Self {
            location: location.clone(),
            log_dir: location.path_of(&format!("{name}/_log")),
            replica: replica.to_owned(),
            document: RwLock::new(T::default()),
            version: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(()),
        };
        shared.catch_up().await?;
        if let Some(legacy) = legacy.filter(|_| shared.version() == 0) {
            if let Some(document) = legacy.load::<T>()? {
                // Another replica may migrate at the same moment: one entry wins, both read it.
                shared.write_entry(1, "migration", &document).await?;
                shared.catch_up().await?;
                legacy.retire()?;
                tracing::info!(name, "moved the document into the shared log");
            }
        }
        Ok(shared)
    }

    /// The document as of the newest version this replica has read.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.document
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The newest version read (0: none written yet).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn install(&self, version: u64, document: T) {
        *self
            .document
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = document;
        self.version.store(version, Ordering::Release);
    }

    async fn write_entry(
        &self,
        version: u64,
        by: &str,
        document: &T,
    ) -> Result<Created, StorageError> {
        let entry = Entry {
            version,
            #[allow(clippy::disallowed_methods)] // audit metadata, not accounting time
            written_at: Utc::now(),
            replica: self.replica.clone(),
            by: by.to_owned(),
            document,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|error| StorageError::Corrupt {
            path: entry_name(version).into(),
            reason: error.to_string(),
        })?;
        let path = self.log_dir.clone().join(entry_name(version));
        Ok(self.location.create(&path, Bytes::from(bytes)).await?)
    }

    async fn read_entry(&self, path: &Path) -> Result<Entry<T>, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_string().into(),
            reason,
        };
        let bytes = self
            .location
            .get(path)
            .await?
            .ok_or_else(|| corrupt("listed but gone".into()))?;
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))
    }

    /// Version `version` as it was written (`None` for 0 and past the newest read).
    pub async fn at(&self, version: u64) -> Result<Option<Entry<T>>, StorageError> {
        if version == 0 || version > self.version() {
            return Ok(None);
        }
        let path = self.log_dir.clone().join(entry_name(version));
        self.read_entry(&path).await.map(Some)
    }

    /// Up to `limit` versions after `after`, oldest first: the document's history.
    pub async fn history(&self, after: u64, limit: usize) -> Result<Vec<Entry<T>>, StorageError> {
        let offset = (after > 0).then(|| self.log_dir.clone().join(entry_name(after)));
        let names = self
            .location
            .list_after(&self.log_dir, offset.as_ref())
            .await?;
        let mut entries = Vec::new();
        for name in names.iter().take(limit) {
            entries.push(self.read_entry(name).await?);
        }
        Ok(entries)
    }

    /// Reads versions written since the last call (by any replica). Returns whether it moved.
    pub async fn catch_up(&self) -> Result<bool, StorageError> {
        let current = self.version();
        let after = (current > 0).then(|| self.log_dir.clone().join(entry_name(current)));
        let newer = self
            .location
            .list_after(&self.log_dir, after.as_ref())
            .await?;
        let Some(newest) = newer.last() else {
            return Ok(false);
        };
        let entry = self.read_entry(newest).await?;
        if entry.version <= current {
            return Ok(false);
        }
        self.install(entry.version, entry.document);
        Ok(true)
    }

    /// Applies `change` to the newest version and writes the result as the next one; readers see
    /// it only once it is stored. When another replica wrote that version first, `change` runs
    /// again on what it wrote (so its checks see the latest state). A change that changes nothing
    /// writes nothing.
    pub async fn change<R, E: From<StorageError>>(
        &self,
        by: &str,
        mut change: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        let _writer = self.writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let current = self.read().clone();
            let mut next = current.clone();
            let outcome = change(&mut next)?;
            if serde_json::to_value(&next).ok() == serde_json::to_value(&current).ok() {
                return Ok(outcome);
            }
            let version = self.version() + 1;
            match self.write_entry(version, by, &next).await? {
                Created::Written => {
                    self.install(version, next);
                    return Ok(outcome);
                }
                Created::AlreadyExists => {
                    self.catch_up().await?;
                }
            }
        }
        Err(StorageError::Store(format!(
            "{}: {MAX_ATTEMPTS} versions in a row were written by other replicas first",
            self.log_dir
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn push(shared: &SharedDocument<Vec<u32>>, value: u32) -> Result<(), StorageError> {
        shared
            .change("test", |values: &mut Vec<u32>| {
                values.push(value);
                Ok::<_, StorageError>(())
            })
            .await
    }

    #[tokio::test]
    async fn two_writers_on_one_store_never_lose_a_change_and_each_sees_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let local = Location::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        for location in [local, Location::memory()] {
            let a = SharedDocument::<Vec<u32>>::open(&location, "doc", "a", None)
                .await
                .unwrap();
            let b = SharedDocument::<Vec<u32>>::open(&location, "doc", "b", None)
                .await
                .unwrap();
            let (ra, rb) = tokio::join!(
                async {
                    for i in 0..20 {
                        push(&a, i).await.unwrap();
                    }
                },
                async {
                    for i in 100..120 {
                        push(&b, i).await.unwrap();
                    }
                }
            );
            let ((), ()) = (ra, rb);
            a.catch_up().await.unwrap();
            b.catch_up().await.unwrap();
            assert_eq!(a.version(), 40);
            assert_eq!(*a.read(), *b.read());
            let mut all = a.read().clone();
            all.sort_unstable();
            assert_eq!(all, (0..20).chain(100..120).collect::<Vec<_>>());
            // A change that changes nothing writes no version.
            a.change("test", |_: &mut Vec<u32>| Ok::<_, StorageError>(()))
                .await
                .unwrap();
            assert_eq!(a.version(), 40);
        }
    }

    #[tokio::test]
    async fn a_legacy_document_becomes_version_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let legacy_path = dir.path().join("old.json");
        DurableDocument::new(legacy_path.clone())
            .store(&vec![7u32, 8])
            .unwrap();
        let location = Location::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let legacy = || Some(DurableDocument::new(legacy_path.clone()));
        let shared = SharedDocument::<Vec<u32>>::open(&location, "doc", "a", legacy())
            .await
            .unwrap();
        assert_eq!((shared.version(), shared.read().clone()), (1, vec![7, 8]));
        assert!(!legacy_path.exists());
        let again = SharedDocument::<Vec<u32>>::open(&location, "doc", "b", legacy())
            .await
            .unwrap();
        assert_eq!((again.version(), again.read().clone()), (1, vec![7, 8]));
    }
}
