//! Grid-intensity feeds: one puller per provider, same anatomy (settings, a reqwest client with a
//! timeout and base URL, private response DTOs, conversion to domain points), run by a scheduler
//! that backfills, polls, and retries failures with jittered exponential backoff. A failing feed is
//! reported in `/v1/feeds`; it never stops ingest or reports.
pub mod electricity_maps;
mod scheduler;
pub mod uk_carbon_intensity;
pub mod watttime;

pub use scheduler::{spawn_feeds, FeedStatus, FeedsStatus};

use crate::domain::intensity::IntensityPoint;
use crate::domain::ZoneCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[[feeds]]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    pub provider: Provider,
    /// The provider's API root; tests point it at a stub on 127.0.0.1.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Our zone codes to pull.
    pub zones: Vec<String>,
    /// Our zone -> the provider's zone, region id or balancing area; identity where absent.
    #[serde(default)]
    pub zone_map: BTreeMap<String, String>,
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: u64,
    #[serde(default = "default_backfill_h")]
    pub backfill_h: u64,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Environment variable holding the Electricity Maps token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Environment variables holding the WattTime login.
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_poll_interval_s() -> u64 {
    1800
}
fn default_backfill_h() -> u64 {
    48
}
fn default_timeout_s() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    UkCarbonIntensity,
    ElectricityMaps,
    Watttime,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UkCarbonIntensity => "uk_carbon_intensity",
            Self::ElectricityMaps => "electricity_maps",
            Self::Watttime => "watttime",
        }
    }
}

/// Why a pull failed; each kind is retried, `RateLimited` no sooner than the provider asks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    #[error("timed out")]
    Timeout,
    #[error("refused credentials (HTTP {0})")]
    Unauthorized(u16),
    #[error("rate limited (HTTP 429), retry after {0:?}")]
    RateLimited(Option<std::time::Duration>),
    #[error("provider error (HTTP {status}): {body}")]
    Http { status: u16, body: String },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("cannot reach the provider: {0}")]
    Transport(String),
    #[error("not configured: {0}")]
    Config(String),
}

/// An instant as providers take it in query strings: RFC 3339, whole seconds, `Z`.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A provider's pulls. Ranges are split to `max_span` by the scheduler.
pub trait Puller: Send + Sync {
    fn provider(&self) -> Provider;
    /// Longest range one history request may cover.
    fn max_span(&self) -> Duration;
    /// Points of `zone` over [from, to) as known now (actuals and estimates).
    fn history<'a>(
        &'a self,
        zone: &'a ZoneCode,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>>;
    /// Forecast points of `zone` from `now`.
    fn forecast<'a>(
        &'a self,
        zone: &'a ZoneCode,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>>;
}

/// A boxed future, so pullers can be held as `dyn Puller`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A client for one provider: base URL, timeout, shared error handling.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    fn new(base_url: &str, timeout_s: u64) -> Result<Self, FeedError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(timeout_s.max(1)))
            .user_agent(concat!("carbon-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeedError::Config(e.to_string()))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends and decodes a JSON body, classifying every failure.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, FeedError> {
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                FeedError::Timeout
            } else {
                FeedError::Transport(e.without_url().to_string())
            }
        })?;
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_secs);
            return Err(FeedError::RateLimited(retry_after));
        }
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                FeedError::Timeout
            } else {
                FeedError::Transport(e.without_url().to_string())
            }
        })?;
        match status {
            200..=299 => {
                serde_json::from_slice(&body).map_err(|e| FeedError::Malformed(e.to_string()))
            }
            401 | 403 => Err(FeedError::Unauthorized(status)),
            _ => Err(FeedError::Http {
                status,
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }
}

/// The provider's name for one of our zones.
fn provider_zone(settings: &FeedSettings, zone: &ZoneCode) -> String {
    settings
        .zone_map
        .get(zone.as_str())
        .cloned()
        .unwrap_or_else(|| zone.to_string())
}

fn secret(name: &Option<String>, what: &str) -> Result<String, FeedError> {
    let name = name
        .as_deref()
        .ok_or_else(|| FeedError::Config(format!("{what} is not set in the feed's config")))?;
    std::env::var(name)
        .map_err(|_| FeedError::Config(format!("environment variable {name} is not set")))
}

/// Builds the puller a feed's settings describe.
pub fn puller(settings: &FeedSettings) -> Result<Box<dyn Puller>, FeedError> {
    Ok(match settings.provider {
        Provider::UkCarbonIntensity => Box::new(uk_carbon_intensity::UkCarbonIntensity::new(
            settings.clone(),
        )?),
        Provider::ElectricityMaps => Box::new(electricity_maps::ElectricityMaps::new(
            settings.clone(),
            secret(&settings.token_env, "token_env")?,
        )?),
        Provider::Watttime => Box::new(watttime::WattTime::new(
            settings.clone(),
            secret(&settings.username_env, "username_env")?,
            secret(&settings.password_env, "password_env")?,
        )?),
    })
}
