//! This replica's identity, kept on its own write-ahead log volume. Each replica marks its commits
//! with its own Delta transaction id, so that replaying its log after a crash skips exactly the
//! batches it committed itself, whatever the other replicas committed meanwhile.
use super::{DurableDocument, StorageError};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub replica_id: String,
    /// The log was written by a release that had one transaction id for every process: its
    /// committed position is found under that id too.
    #[serde(default)]
    pub legacy_wal: bool,
}

const FILE: &str = "replica.json";

impl Replica {
    /// The id stored in `wal_dir`, or `configured`, or a new one; stored on first use. A log
    /// volume belongs to one replica: a configured id that differs from the stored one is refused.
    pub fn open(wal_dir: &Path, configured: Option<&str>) -> Result<Self, StorageError> {
        let document = DurableDocument::new(wal_dir.join(FILE));
        if let Some(stored) = document.load::<Replica>()? {
            return match configured {
                Some(id) if id != stored.replica_id => Err(StorageError::Corrupt {
                    path: wal_dir.join(FILE),
                    reason: format!(
                        "this log belongs to replica {:?}, not {id:?}: give each replica its own wal_dir",
                        stored.replica_id
                    ),
                }),
                _ => Ok(stored),
            };
        }
        let legacy_wal =
            std::fs::read_dir(wal_dir).is_ok_and(|mut entries| entries.next().is_some());
        let replica = Replica {
            replica_id: match configured {
                Some(id) => id.to_owned(),
                None => new_id(),
            },
            legacy_wal,
        };
        document.store(&replica)?;
        Ok(replica)
    }

    /// The Delta transaction id this replica commits `table` under.
    pub fn app_id(&self, table: &str) -> String {
        format!("carbon-ledger-{table}-wal-{}", self.replica_id)
    }

    /// The id earlier releases committed `table` under, when this replica's log comes from one.
    pub fn legacy_app_id(&self, table: &str) -> Option<String> {
        self.legacy_wal
            .then(|| format!("carbon-ledger-{table}-wal"))
    }
}

fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("r-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_on_its_volume_and_a_different_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Replica::open(dir.path(), None).unwrap();
        assert!(!first.legacy_wal);
        assert_eq!(Replica::open(dir.path(), None).unwrap(), first);
        assert_eq!(
            Replica::open(dir.path(), Some(&first.replica_id)).unwrap(),
            first
        );
        assert!(Replica::open(dir.path(), Some("other")).is_err());
        assert_ne!(first.app_id("readings"), "carbon-ledger-readings-wal");
    }

    #[test]
    fn a_log_from_before_replica_ids_also_answers_to_the_old_transaction_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("readings")).unwrap();
        let replica = Replica::open(dir.path(), Some("r1")).unwrap();
        assert_eq!(
            replica.legacy_app_id("readings").as_deref(),
            Some("carbon-ledger-readings-wal")
        );
    }
}
