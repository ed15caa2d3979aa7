//! `[[scrape]]` targets: carbon-ledger scrapes an exporter's `/metrics` itself (Kepler,
//! Scaphandre, a PDU exporter), as Prometheus would, and hands the series to the mappings like a
//! remote-write. Failures are recorded on the source and retried with exponential backoff.
use super::exposition::{self, Flavour};
use super::series::Counts;
use super::{IngestContext, Telemetry};
use crate::clock::Clock;
use crate::domain::Grant;
use crate::storage::logged::LoggedTable;
use crate::storage::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `[[scrape]]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeSettings {
    /// Shown as the source `scrape:<name>`; also the `job` label, as in Prometheus.
    pub name: String,
    pub url: String,
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Added to every scraped series (they win over the exporter's own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// Environment variables holding basic-auth credentials.
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_interval_s() -> u64 {
    15
}
fn default_timeout_s() -> u64 {
    5
}

/// What a scraper writes with.
#[derive(Clone)]
pub struct Sinks {
    pub telemetry: Arc<Telemetry>,
    pub registry: Arc<Registry>,
    pub readings: Arc<LoggedTable>,
    pub clock: Arc<dyn Clock>,
    pub max_power_w: f64,
}

/// The longest wait between two tries of a failing target.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

fn env(name: &Option<String>) -> Option<String> {
    name.as_ref().and_then(|n| std::env::var(n).ok())
}

/// One scrape: the body's series with the target's labels, or why there are none.
async fn scrape(
    client: &reqwest::Client,
    target: &ScrapeSettings,
    now_ms: i64,
) -> Result<Vec<super::Series>, String> {
    let mut request = client
        .get(&target.url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .timeout(Duration::from_secs(target.timeout_s.max(1)));
    if let Some(token) = env(&target.bearer_env) {
        request = request.bearer_auth(token);
    } else if let Some(user) = env(&target.username_env) {
        request = request.basic_auth(user, env(&target.password_env));
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot scrape {}: {e}", target.url))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{} answered HTTP {}", target.url, status.as_u16()));
    }
    let flavour = Flavour::of_content_type(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading {}: {e}", target.url))?;
    let instance = url::Url::parse(&target.url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_default();
    let mut series =
        exposition::parse(&body, flavour, now_ms).map_err(|e| format!("{}: {e}", target.url))?;
    for one in &mut series {
        let mut labels: BTreeMap<String, String> = one.labels.drain(..).collect();
        labels
            .entry("job".into())
            .or_insert_with(|| target.name.clone());
        labels
            .entry("instance".into())
            .or_insert_with(|| instance.clone());
        labels.extend(target.labels.clone());
        one.labels = labels.into_iter().collect();
    }
    Ok(series)
}

/// Starts one task per target; the caller owns the handles.
pub fn spawn_scrapers(
    targets: &[ScrapeSettings],
    sinks: Sinks,
) -> Vec<tokio::task::JoinHandle<()>> {
    targets
        .iter()
        .cloned()
        .map(|target| {
            let sinks = sinks.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let source = format!("scrape:{}", target.name);
                let interval = Duration::from_secs(target.interval_s.max(1));
                let mut failures = 0u32;
                loop {
                    let now = sinks.clock.now();
                    let outcome = match scrape(&client, &target, now.timestamp_millis()).await {
                        Ok(series) => {
                            let context = IngestContext {
                                registry: &sinks.registry,
                                readings: &sinks.readings,
                                grant: &Grant::Admin,
                                now,
                                max_power_w: sinks.max_power_w,
                            };
                            sinks
                                .telemetry
                                .ingest(&source, series, Counts::default(), context)
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        }
                        Err(reason) => {
                            sinks.telemetry.note_failure(&source, &reason);
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
                            tracing::warn!(%source, %reason, "scrape failed");
                            (interval * 2u32.saturating_pow(failures.min(8)))
                                .min(MAX_BACKOFF.max(interval))
                        }
                    };
                    tokio::time::sleep(wait).await;
                }
            })
        })
        .collect()
}
