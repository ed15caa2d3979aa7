//! Runs each feed as a tokio task: backfill on the first run, then poll; failures are recorded and
//! retried with jittered exponential backoff (no sooner than a 429's Retry-After).
use super::{puller, FeedError, FeedSettings, Puller};
use crate::clock::Clock;
use crate::domain::ZoneCode;
use crate::storage::intensity;
use crate::storage::logged::LoggedTable;
use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};

/// Revisions of recent points are picked up by re-reading this much before the last pull's end.
const REVISION_OVERLAP: Duration = Duration::hours(2);

/// What `/v1/feeds` shows of one feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedStatus {
    pub provider: &'static str,
    pub zones: Vec<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub next_run: Option<DateTime<Utc>>,
    pub points_stored: u64,
}

pub type FeedsStatus = Arc<Mutex<Vec<FeedStatus>>>;

struct Feed {
    index: usize,
    settings: FeedSettings,
    status: FeedsStatus,
    table: Arc<LoggedTable>,
    clock: Arc<dyn Clock>,
}

impl Feed {
    fn update(&self, change: impl FnOnce(&mut FeedStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = all.get_mut(self.index) {
            change(status);
        }
    }

    fn fail(&self, error: &FeedError, now: DateTime<Utc>, next: Option<DateTime<Utc>>) {
        tracing::warn!(provider = self.settings.provider.as_str(), error = %error, "feed pull failed");
        self.update(|s| {
            s.last_error = Some(error.to_string());
            s.last_error_at = Some(now);
            s.consecutive_failures += 1;
            s.next_run = next;
        });
    }

    /// Pulls history over [from, to) in spans the provider accepts, then the forecast.
    async fn pull(
        &self,
        puller: &dyn Puller,
        zones: &[ZoneCode],
        from: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, FeedError> {
        let mut stored = 0;
        for zone in zones {
            let mut start = from;
            while start < now {
                let end = (start + puller.max_span()).min(now);
                let points = puller.history(zone, start, end, now).await?;
                stored += self.store(points).await?;
                start = end;
            }
            let forecast = puller.forecast(zone, now).await?;
            stored += self.store(forecast).await?;
        }
        Ok(stored)
    }

    async fn store(
        &self,
        points: Vec<crate::domain::intensity::IntensityPoint>,
    ) -> Result<u64, FeedError> {
        let count = points.len() as u64;
        if count > 0 {
            intensity::append(&self.table, points)
                .await
                .map_err(|e| FeedError::Config(format!("cannot store points: {e}")))?;
        }
        Ok(count)
    }

    async fn run(self) {
        let now = self.clock.now();
        let zones: Result<Vec<ZoneCode>, FeedError> = self
            .settings
            .zones
            .iter()
            .map(|z| {
                ZoneCode::parse(z)
                    .map_err(|reason| FeedError::Config(format!("zone {z:?}: {reason}")))
            })
            .collect();
        let (puller, zones) = match (puller(&self.settings), zones) {
            (Ok(puller), Ok(zones)) => (puller, zones),
            (Err(error), _) | (_, Err(error)) => {
                // Configuration does not heal by retrying: report it and stop this feed only.
                self.fail(&error, now, None);
                return;
            }
        };
        let poll = std::time::Duration::from_secs(self.settings.poll_interval_s.max(1));
        let mut covered_until: Option<DateTime<Utc>> = None;
        let mut failures: u32 = 0;
        loop {
            let now = self.clock.now();
            let from = covered_until.map_or_else(
                || now - Duration::hours(self.settings.backfill_h as i64),
                |until| until - REVISION_OVERLAP,
            );
            let delay = match self.pull(puller.as_ref(), &zones, from, now).await {
                Ok(stored) => {
                    failures = 0;
                    covered_until = Some(now);
                    let next = now + Duration::from_std(poll).unwrap_or_default();
                    self.update(|s| {
                        s.last_success = Some(now);
                        s.consecutive_failures = 0;
                        s.next_run = Some(next);
                        s.points_stored += stored;
                    });
                    poll
                }
                Err(error) => {
                    failures += 1;
                    let retry_after = match &error {
                        FeedError::RateLimited(after) => *after,
                        _ => None,
                    };
                    let delay = crate::sources::schedule::backoff(failures, poll, retry_after);
                    self.fail(
                        &error,
                        now,
                        Some(now + Duration::from_std(delay).unwrap_or_default()),
                    );
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// Starts every configured feed; returns the status board `/v1/feeds` reads, and the tasks (the
/// caller owns them).
pub fn spawn_feeds(
    settings: &[FeedSettings],
    table: Arc<LoggedTable>,
    clock: Arc<dyn Clock>,
) -> (FeedsStatus, Vec<tokio::task::JoinHandle<()>>) {
    let status: FeedsStatus = Arc::new(Mutex::new(
        settings
            .iter()
            .map(|s| FeedStatus {
                provider: s.provider.as_str(),
                zones: s.zones.clone(),
                last_success: None,
                last_error: None,
                last_error_at: None,
                consecutive_failures: 0,
                next_run: Some(clock.now()),
                points_stored: 0,
            })
            .collect(),
    ));
    let tasks = settings
        .iter()
        .enumerate()
        .map(|(index, settings)| {
            let feed = Feed {
                index,
                settings: settings.clone(),
                status: status.clone(),
                table: table.clone(),
                clock: clock.clone(),
            };
            tokio::spawn(feed.run())
        })
        .collect();
    (status, tasks)
}
