//! What every puller of telemetry shares (scrape targets, Redfish BMCs): a task that fetches
//! series on an interval, hands them to the mappings, records failures on its source and retries
//! them on the common schedule.
use super::series::Counts;
use super::{IngestContext, Series, Telemetry};
use crate::clock::Clock;
use crate::domain::Grant;
use crate::storage::logged::LoggedTable;
use crate::storage::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a puller writes with.
#[derive(Clone)]
pub struct Sinks {
    pub telemetry: Arc<Telemetry>,
    pub registry: Arc<Registry>,
    pub readings: Arc<LoggedTable>,
    pub functional_units: Arc<LoggedTable>,
    pub meters: Arc<LoggedTable>,
    pub clock: Arc<dyn Clock>,
    pub max_power_w: f64,
}

impl Sinks {
    /// What a pull writes with, at `now`.
    pub fn context(&self, now: chrono::DateTime<chrono::Utc>) -> IngestContext<'_> {
        IngestContext {
            registry: &self.registry,
            readings: &self.readings,
            functional_units: &self.functional_units,
            meters: &self.meters,
            grant: &Grant::Admin,
            now,
            max_power_w: self.max_power_w,
        }
    }
}

/// Writes, every `interval`, the windows that waited long enough for a later sample of their
/// target (`Telemetry::write_waiting_windows`); a failure is retried at the next turn.
pub fn spawn_quiet_window_writer(interval: Duration, sinks: Sinks) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let context = sinks.context(sinks.clock.now());
            if let Err(error) = sinks.telemetry.write_waiting_windows(context, false).await {
                tracing::warn!(%error, "writing the windows that waited failed");
            }
        }
    })
}

/// A credential from the environment variable a setting names.
pub fn env(name: &Option<String>) -> Option<String> {
    name.as_ref().and_then(|n| std::env::var(n).ok())
}

/// Runs `fetch` (given the time in ms) every `interval` until the task is aborted.
pub fn spawn_puller<F, Fut>(
    source: String,
    interval: Duration,
    sinks: Sinks,
    fetch: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Series>, String>> + Send,
{
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let now = sinks.clock.now();
            let outcome = match fetch(now.timestamp_millis()).await {
                Ok(series) => sinks
                    .telemetry
                    .ingest(&source, series, Counts::default(), sinks.context(now))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(reason) => {
                    sinks.telemetry.seen.note_failure(&source, &reason);
                    Err(reason)
                }
            };
            let wait = match outcome {
                Ok(()) => {
                    failures = 0;
                    interval
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%source, %reason, "telemetry pull failed");
                    super::schedule::backoff(failures, interval, None)
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}
