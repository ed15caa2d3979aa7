//! WattTime v3: `/login` with basic auth gives a bearer token valid 30 minutes (renewed after 25,
//! and at once on a 401); `/v3/historical` (at most 32 days per request) and `/v3/forecast` for
//! `co2_moer`, the marginal signal, in lbs/MWh, converted to g/kWh. Points start at `point_time`
//! and last `data_point_period_seconds`.
use super::{iso, provider_zone, BoxFuture, FeedError, FeedSettings, Http, Provider, Puller};
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use crate::domain::ZoneCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::time::Instant;
use tokio::sync::Mutex;

const DEFAULT_BASE_URL: &str = "https://api.watttime.org";
/// 1 lb/MWh in g/kWh.
pub const LBS_PER_MWH_IN_G_PER_KWH: f64 = 0.45359237;
const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(25 * 60);

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
}

#[derive(Debug, Deserialize)]
struct Point {
    point_time: DateTime<Utc>,
    value: f64,
}

#[derive(Debug, Deserialize, Default)]
struct Model {
    date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    data_point_period_seconds: i64,
    #[serde(default)]
    units: Option<String>,
    #[serde(default)]
    model: Option<Model>,
}

#[derive(Debug, Deserialize)]
struct Signals {
    data: Vec<Point>,
    meta: Meta,
}

pub struct WattTime {
    settings: FeedSettings,
    http: Http,
    username: String,
    password: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl WattTime {
    pub fn new(
        settings: FeedSettings,
        username: String,
        password: String,
    ) -> Result<Self, FeedError> {
        let http = Http::new(
            settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            settings.timeout_s,
        )?;
        Ok(Self {
            settings,
            http,
            username,
            password,
            token: Mutex::new(None),
        })
    }

    async fn token(&self, renew: bool) -> Result<String, FeedError> {
        let mut cached = self.token.lock().await;
        if let Some((token, at)) = cached.as_ref() {
            if !renew && at.elapsed() < TOKEN_LIFETIME {
                return Ok(token.clone());
            }
        }
        let request = self
            .http
            .client
            .get(self.http.url("/login"))
            .basic_auth(&self.username, Some(&self.password));
        let login: Login = self.http.json(request).await?;
        *cached = Some((login.token.clone(), Instant::now()));
        Ok(login.token)
    }

    /// A signal request with the bearer token, logging in again once if it was refused.
    async fn signals(&self, path: &str, query: &[(&str, String)]) -> Result<Signals, FeedError> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let request = self
                .http
                .client
                .get(self.http.url(path))
                .bearer_auth(token)
                .query(query);
            match self.http.json(request).await {
                Err(FeedError::Unauthorized(401)) if !renew => renew = true,
                other => return other,
            }
        }
    }

    fn points(
        zone: &ZoneCode,
        signals: Signals,
        kind: PointKind,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<IntensityPoint>, FeedError> {
        if signals
            .meta
            .units
            .as_deref()
            .is_some_and(|u| u != "lbs_co2_per_mwh")
        {
            return Err(FeedError::Malformed(format!(
                "unexpected units {:?}",
                signals.meta.units
            )));
        }
        let period = Duration::seconds(signals.meta.data_point_period_seconds.max(1));
        let model = signals
            .meta
            .model
            .and_then(|m| m.date)
            .map(|d| format!("co2_moer model {d}"));
        Ok(signals
            .data
            .into_iter()
            .map(|p| IntensityPoint {
                zone: zone.clone(),
                start: p.point_time,
                end: p.point_time + period,
                gco2e_per_kwh: p.value * LBS_PER_MWH_IN_G_PER_KWH,
                kind,
                signal: Signal::Marginal,
                source: Provider::Watttime.as_str().to_owned(),
                source_detail: model.clone(),
                received_at,
                written_by: None,
            })
            .collect())
    }
}

/// Points of a `/v3/historical` answer (also used to load the demo data set).
pub fn historical_points(
    zone: &ZoneCode,
    body: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<IntensityPoint>, FeedError> {
    let signals: Signals =
        serde_json::from_str(body).map_err(|e| FeedError::Malformed(e.to_string()))?;
    WattTime::points(zone, signals, PointKind::Actual, received_at)
}

impl Puller for WattTime {
    fn provider(&self) -> Provider {
        Provider::Watttime
    }

    fn max_span(&self) -> Duration {
        Duration::days(30)
    }

    fn history<'a>(
        &'a self,
        zone: &'a ZoneCode,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let query = [
                ("region", provider_zone(&self.settings, zone)),
                ("signal_type", "co2_moer".to_owned()),
                ("start", iso(from)),
                ("end", iso(to)),
            ];
            let signals = self.signals("/v3/historical", &query).await?;
            Self::points(zone, signals, PointKind::Actual, received_at)
        })
    }

    fn forecast<'a>(
        &'a self,
        zone: &'a ZoneCode,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let query = [
                ("region", provider_zone(&self.settings, zone)),
                ("signal_type", "co2_moer".to_owned()),
            ];
            let signals = self.signals("/v3/forecast", &query).await?;
            Self::points(zone, signals, PointKind::Forecast, now)
        })
    }
}
