//! `[[scrape]]` targets: carbon-ledger scrapes an exporter's `/metrics` itself (Kepler,
//! Scaphandre, a PDU exporter), as Prometheus would, and hands the series to the mappings like a
//! remote-write.
use super::exposition::{self, Flavour};
use super::pull::{env, spawn_puller, Sinks};
use super::Labels;
use serde::Deserialize;
use std::collections::BTreeMap;
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
        let mut labels: BTreeMap<&str, &str> = one.labels.iter().collect();
        labels.entry("job").or_insert(&target.name);
        labels.entry("instance").or_insert(&instance);
        labels.extend(target.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        one.labels = Labels::from_pairs(labels);
    }
    Ok(series)
}

/// Starts one task per target; the caller owns the handles.
pub fn spawn_scrapers(
    targets: &[ScrapeSettings],
    sinks: &Sinks,
) -> Vec<tokio::task::JoinHandle<()>> {
    targets
        .iter()
        .cloned()
        .map(|target| {
            let client = reqwest::Client::new();
            let source = format!("scrape:{}", target.name);
            let interval = Duration::from_secs(target.interval_s.max(1));
            spawn_puller(source, interval, sinks.clone(), move |now_ms| {
                let (client, target) = (client.clone(), target.clone());
                async move { scrape(&client, &target, now_ms).await }
            })
        })
        .collect()
}
