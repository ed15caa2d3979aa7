//! API keys, shared by every replica as a log of versions in the store: hashed tokens, never the
//! tokens themselves; revoked keys are kept for audit. A key revoked on one replica stops working
//! on the others once they catch up (`registry_poll_s`).
use super::location::Location;
use super::shared_document::SharedDocument;
use super::{DurableDocument, StorageError};
use crate::domain::{ApiKey, Grant, Id};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Id of the admin key that `CARBON_LEDGER_ADMIN_TOKEN` or the first start provides.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap-admin";
const TOKEN_PREFIX: &str = "cl_";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A fresh token: 256 random bits from the operating system.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

#[derive(Debug)]
pub struct KeyStore {
    document: SharedDocument<Vec<ApiKey>>,
}

/// How the bootstrap admin key came to be, so the caller can tell the operator.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A key already existed, or the configured token was already stored.
    Unchanged,
    /// The configured `CARBON_LEDGER_ADMIN_TOKEN` is now the bootstrap key.
    FromEnvironment,
    /// No admin key existed: this token was generated and must be shown once.
    Generated(String),
}

impl KeyStore {
    /// Opens the key log in `location`; `legacy_dir` holds the `api_keys.json` of earlier
    /// releases, moved into the log on the first start.
    pub async fn open(
        location: &Location,
        replica: &str,
        legacy_dir: Option<&Path>,
    ) -> Result<Self, StorageError> {
        let legacy = legacy_dir.map(|dir| DurableDocument::new(dir.join("api_keys.json")));
        Ok(Self {
            document: SharedDocument::open(location, "keys", replica, legacy).await?,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ApiKey>> {
        self.document.read()
    }

    async fn change<T>(
        &self,
        by: &str,
        mut change: impl FnMut(&mut Vec<ApiKey>) -> T,
    ) -> Result<T, StorageError> {
        self.document
            .change(by, |keys| Ok::<_, StorageError>(change(keys)))
            .await
    }

    /// Reads keys created or revoked on other replicas; whether there were any.
    pub async fn catch_up(&self) -> Result<bool, StorageError> {
        self.document.catch_up().await
    }

    /// The key-log version this replica has read.
    pub fn version(&self) -> u64 {
        self.document.version()
    }

    /// The grant of an active key with this token.
    pub fn authenticate(&self, token: &str) -> Option<(Id, Grant)> {
        let hash = hash_token(token);
        self.read()
            .iter()
            .find(|key| key.revoked_at.is_none() && key.token_sha256 == hash)
            .map(|key| (key.id.clone(), key.grant.clone()))
    }

    pub fn list(&self) -> Vec<ApiKey> {
        self.read().clone()
    }

    /// Stores a new key, made `by` an admin key, and returns it with its token, which is not kept.
    pub async fn create(
        &self,
        by: &str,
        grant: Grant,
        now: DateTime<Utc>,
    ) -> Result<(ApiKey, String), StorageError> {
        let token = new_token();
        let id = Id::parse(&format!("key_{}", random_hex(8))).map_err(|reason| {
            StorageError::Corrupt {
                path: "api key id".into(),
                reason,
            }
        })?;
        let key = ApiKey {
            id,
            grant,
            token_sha256: hash_token(&token),
            created_at: now,
            revoked_at: None,
        };
        self.change(by, |keys| keys.push(key.clone())).await?;
        Ok((key, token))
    }

    /// Revokes a key; `Ok(None)` when no key has this id, the key (revoked) otherwise.
    pub async fn revoke(
        &self,
        by: &str,
        id: &Id,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>, StorageError> {
        if !self.read().iter().any(|key| &key.id == id) {
            return Ok(None);
        }
        self.change(by, |keys| {
            keys.iter_mut().find(|key| &key.id == id).map(|key| {
                key.revoked_at.get_or_insert(now);
                key.clone()
            })
        })
        .await
    }

    /// Makes sure an admin can get in: the configured token becomes the bootstrap key, or, on a
    /// first start without one, a token is generated.
    pub async fn bootstrap(
        &self,
        configured: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Bootstrap, StorageError> {
        let bootstrap_id = Id::parse(BOOTSTRAP_KEY_ID).map_err(|reason| StorageError::Corrupt {
            path: "bootstrap key id".into(),
            reason,
        })?;
        let (token, outcome) = match configured {
            Some(token)
                if self
                    .authenticate(token)
                    .is_some_and(|(_, g)| g == Grant::Admin) =>
            {
                return Ok(Bootstrap::Unchanged)
            }
            Some(token) => (token.to_owned(), Bootstrap::FromEnvironment),
            None if self
                .read()
                .iter()
                .any(|key| key.grant == Grant::Admin && key.revoked_at.is_none()) =>
            {
                return Ok(Bootstrap::Unchanged)
            }
            None => {
                let token = new_token();
                (token.clone(), Bootstrap::Generated(token))
            }
        };
        let key = ApiKey {
            id: bootstrap_id.clone(),
            grant: Grant::Admin,
            token_sha256: hash_token(&token),
            created_at: now,
            revoked_at: None,
        };
        self.change(BOOTSTRAP_KEY_ID, |keys| {
            keys.retain(|existing| existing.id != bootstrap_id);
            keys.push(key.clone());
        })
        .await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_stores::TestStore;

    fn now() -> DateTime<Utc> {
        "2026-11-24T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn a_created_key_authenticates_until_revoked_and_its_token_is_not_stored() {
        let dir = TestStore::file();
        let store = KeyStore::open(&dir.location, "a", None).await.unwrap();
        let (key, token) = store
            .create("test", Grant::Ingest { sites: None }, now())
            .await
            .unwrap();
        assert_eq!(token.len(), 3 + 64);
        assert_eq!(store.authenticate(&token).unwrap().0, key.id);
        let log = dir.location.path_of("keys/_log/00000000000000000001.json");
        let stored = dir.location.get(&log).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains(&token));

        store.revoke("test", &key.id, now()).await.unwrap().unwrap();
        assert!(store.authenticate(&token).is_none());
        let reopened = KeyStore::open(&dir.location, "b", None).await.unwrap();
        assert!(reopened.authenticate(&token).is_none());
        assert!(reopened.list()[0].revoked_at.is_some());
    }

    #[tokio::test]
    async fn the_first_start_generates_one_admin_token_and_later_starts_keep_it() {
        let dir = TestStore::file();
        let store = KeyStore::open(&dir.location, "a", None).await.unwrap();
        let Bootstrap::Generated(token) = store.bootstrap(None, now()).await.unwrap() else {
            panic!("expected a generated token");
        };
        assert_eq!(store.authenticate(&token).unwrap().1, Grant::Admin);
        let reopened = KeyStore::open(&dir.location, "b", None).await.unwrap();
        assert_eq!(
            reopened.bootstrap(None, now()).await.unwrap(),
            Bootstrap::Unchanged
        );
    }

    #[tokio::test]
    async fn a_configured_admin_token_replaces_the_generated_one() {
        let dir = TestStore::file();
        let store = KeyStore::open(&dir.location, "a", None).await.unwrap();
        let Bootstrap::Generated(generated) = store.bootstrap(None, now()).await.unwrap() else {
            panic!("expected a generated token");
        };
        assert_eq!(
            store
                .bootstrap(Some("my-admin-token-123"), now())
                .await
                .unwrap(),
            Bootstrap::FromEnvironment
        );
        assert!(store.authenticate(&generated).is_none());
        assert!(store.authenticate("my-admin-token-123").is_some());
        assert_eq!(
            store
                .bootstrap(Some("my-admin-token-123"), now())
                .await
                .unwrap(),
            Bootstrap::Unchanged
        );
    }
}
