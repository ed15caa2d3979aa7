//! A lease in the shared store, so that one replica at a time does a job that would conflict if
//! two did it (compacting a table: two rewrites of the same files fail each other's commits and
//! waste the work). Built from the one atomic step every store has, the conditional create: each
//! grant is a new object `{name}/{epoch:020}.json` naming its holder and expiry. The holder renews
//! by creating the next epoch; anyone may take a lease whose newest grant has expired. Expiry is
//! judged by the reader's clock, so `ttl` must be well above clock skew and the job's length.
use super::location::{Created, Location};
use super::StorageError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Grant {
    epoch: u64,
    holder: String,
    expires_at: DateTime<Utc>,
}

pub struct Lease {
    location: Location,
    dir: Path,
    holder: String,
    ttl: Duration,
    held: AtomicBool,
}

impl Lease {
    pub fn new(location: &Location, name: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            location: location.clone(),
            dir: location.path_of(&format!("leases/{name}")),
            holder: holder.to_owned(),
            ttl,
            held: AtomicBool::new(false),
        }
    }

    /// Whether this replica held the lease at its last `acquire`.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    async fn newest(&self) -> Result<Option<Grant>, StorageError> {
        let grants = self.location.list_after(&self.dir, None).await?;
        let Some(path) = grants.last() else {
            return Ok(None);
        };
        let Some(bytes) = self.location.get(path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StorageError::Corrupt {
                path: path.to_string().into(),
                reason: error.to_string(),
            })
    }

    /// Takes or renews the lease; `false` while another replica holds it.
    pub async fn acquire(&self, now: DateTime<Utc>) -> Result<bool, StorageError> {
        let newest = self.newest().await?;
        let epoch = match &newest {
            Some(grant) if grant.holder != self.holder && grant.expires_at > now => {
                self.held.store(false, Ordering::Relaxed);
                return Ok(false);
            }
            Some(grant) => grant.epoch + 1,
            None => 1,
        };
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let grant = Grant {
            epoch,
            holder: self.holder.clone(),
            expires_at: now + ttl,
        };
        let bytes = serde_json::to_vec(&grant).map_err(|error| StorageError::Corrupt {
            path: "lease grant".into(),
            reason: error.to_string(),
        })?;
        let path = self.dir.clone().join(format!("{epoch:020}.json"));
        let won = self.location.create(&path, Bytes::from(bytes)).await? == Created::Written;
        self.held.store(won, Ordering::Relaxed);
        if won && epoch > 1 {
            // Earlier grants are history nobody reads: the newest one decides.
            let previous = self.dir.clone().join(format!("{:020}.json", epoch - 1));
            self.location.delete(&previous).await?;
        }
        Ok(won)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_stores::TestStore;

    #[tokio::test]
    async fn one_holder_at_a_time_until_its_grant_expires_on_every_store() {
        for place in TestStore::all() {
            let ttl = Duration::from_secs(60);
            let a = Lease::new(&place.location, "compaction-readings", "a", ttl);
            let b = Lease::new(&place.location, "compaction-readings", "b", ttl);
            let t0: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().unwrap();
            assert!(a.acquire(t0).await.unwrap());
            assert!(!b.acquire(t0).await.unwrap(), "a holds it");
            let renewed = t0 + chrono::Duration::seconds(30);
            assert!(a.acquire(renewed).await.unwrap(), "the holder renews");
            let before_expiry = t0 + chrono::Duration::seconds(80);
            assert!(
                !b.acquire(before_expiry).await.unwrap(),
                "renewed until 90 s"
            );
            let expired = t0 + chrono::Duration::seconds(91);
            assert!(b.acquire(expired).await.unwrap(), "a stopped renewing");
            assert!(!a.acquire(expired).await.unwrap());
            assert!(b.held() && !a.held());
        }
    }
}
