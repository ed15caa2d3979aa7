//! Keeps this replica's registry, keys and closed periods up with the versions other replicas
//! write, so that a key revoked anywhere stops working here within one poll.
use super::periods::Periods;
use super::{KeyStore, Registry, StorageError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Follower {
    registry: Arc<Registry>,
    keys: Arc<KeyStore>,
    periods: Arc<Periods>,
    interval: Duration,
    caught_up_at: Mutex<Instant>,
    failures: AtomicU64,
}

impl Follower {
    /// Both documents were read when they were opened: the follower starts caught up.
    pub fn new(
        registry: Arc<Registry>,
        keys: Arc<KeyStore>,
        periods: Arc<Periods>,
        interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            keys,
            periods,
            interval,
            caught_up_at: Mutex::new(Instant::now()),
            failures: AtomicU64::new(0),
        })
    }

    pub async fn catch_up(&self) -> Result<(), StorageError> {
        self.keys.catch_up().await?;
        self.registry.catch_up().await?;
        self.periods.catch_up().await?;
        *self.caught_up_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// How long since the registry and keys were last known current.
    pub fn lag(&self) -> Duration {
        self.caught_up_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Polls that failed (the store out of reach) since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether this replica's view is recent enough to serve: a few polls may fail in a row.
    pub fn current(&self) -> bool {
        self.lag() <= self.interval * 3 + Duration::from_secs(5)
    }

    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let follower = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(this) = follower.upgrade() else {
                    return;
                };
                if let Err(error) = this.catch_up().await {
                    this.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, "reading registry changes failed; retrying");
                }
            }
        })
    }
}
