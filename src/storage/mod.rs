//! What the service keeps: the tables and the registry in one object store that replicas share
//! (`location`), and what stays on this replica's disk (its write-ahead log, its id).
pub mod decoded;
mod durable;
pub mod follower;
pub mod functional_units;
pub mod intensity;
pub mod keys;
pub mod lease;
pub mod location;
pub mod logged;
pub mod meters;
pub mod periods;
pub mod readings;
pub mod registry;
pub mod replica;
pub mod rollups;
pub mod shared_document;
pub mod table;
pub mod usage;
pub mod wal;

pub use durable::DurableDocument;
pub use keys::KeyStore;
pub use registry::{Entity, Registry, RegistryError};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid document: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("shared store: {0}")]
    Store(String),
}

/// The stores every storage contract test runs against: a local directory, memory, and S3 when
/// `CARBON_LEDGER_TEST_S3_URL` names a bucket (`.ci/run` starts SeaweedFS and sets it, with the
/// usual `AWS_*` variables for its endpoint and keys).
#[cfg(test)]
pub mod test_stores {
    use super::location::Location;
    use super::replica::Replica;

    pub struct TestStore {
        pub location: Location,
        pub replica: Replica,
        wal: tempfile::TempDir,
        /// Holds the directory of a `file://` location until the test ends.
        _tables: Option<tempfile::TempDir>,
    }

    impl TestStore {
        fn new(location: Location, tables: Option<tempfile::TempDir>) -> Self {
            Self {
                location,
                replica: Replica {
                    replica_id: "test".into(),
                    legacy_wal: false,
                },
                wal: tempfile::tempdir().expect("a temporary directory"),
                _tables: tables,
            }
        }

        pub fn file() -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let location = Location::open(
                dir.path().to_str().expect("a UTF-8 path"),
                &Default::default(),
            )
            .expect("a directory opens");
            Self::new(location, Some(dir))
        }

        pub fn wal(&self) -> &std::path::Path {
            self.wal.path()
        }

        pub fn all() -> Vec<Self> {
            let mut stores = vec![Self::file(), Self::new(Location::memory(), None)];
            if let Ok(bucket) = std::env::var("CARBON_LEDGER_TEST_S3_URL") {
                // A fresh prefix per test: tests share the bucket and run at once.
                let prefix = format!(
                    "{}/test-{}",
                    bucket.trim_end_matches('/'),
                    rand::random::<u64>()
                );
                let location = Location::open(&prefix, &Default::default())
                    .expect("CARBON_LEDGER_TEST_S3_URL opens");
                stores.push(Self::new(location, None));
            }
            stores
        }
    }
}
