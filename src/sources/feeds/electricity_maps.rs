//! Electricity Maps v3: `auth-token` header; `past-range` for backfill (at most 10 days hourly per
//! request), `history` (the last 24 h, with revisions) for polling, `forecast`. Hourly points start
//! at `datetime`; `isEstimated` marks estimates; `emissionFactorType` (lifecycle or direct) is kept.
use super::{iso, provider_zone, BoxFuture, FeedError, FeedSettings, Http, Provider, Puller};
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use crate::domain::ZoneCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

const DEFAULT_BASE_URL: &str = "https://api.electricitymaps.com";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    carbon_intensity: Option<f64>,
    datetime: DateTime<Utc>,
    #[serde(default)]
    emission_factor_type: Option<String>,
    #[serde(default)]
    is_estimated: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PastRange {
    data: Vec<Point>,
}

#[derive(Debug, Deserialize)]
struct History {
    history: Vec<Point>,
}

#[derive(Debug, Deserialize)]
struct Forecast {
    forecast: Vec<Point>,
}

pub struct ElectricityMaps {
    settings: FeedSettings,
    http: Http,
    token: String,
}

impl ElectricityMaps {
    pub fn new(settings: FeedSettings, token: String) -> Result<Self, FeedError> {
        let http = Http::new(
            settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            settings.timeout_s,
        )?;
        Ok(Self {
            settings,
            http,
            token,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, FeedError> {
        let request = self
            .http
            .client
            .get(self.http.url(path))
            .header("auth-token", &self.token)
            .query(query);
        self.http.json(request).await
    }

    fn points(
        zone: &ZoneCode,
        points: Vec<Point>,
        forecast: bool,
        received_at: DateTime<Utc>,
    ) -> Vec<IntensityPoint> {
        points
            .into_iter()
            .filter_map(|p| {
                let kind = match (forecast, p.is_estimated) {
                    (true, _) => PointKind::Forecast,
                    (false, Some(true)) => PointKind::Estimated,
                    (false, _) => PointKind::Actual,
                };
                Some(IntensityPoint {
                    zone: zone.clone(),
                    start: p.datetime,
                    end: p.datetime + Duration::hours(1),
                    gco2e_per_kwh: p.carbon_intensity?,
                    kind,
                    signal: Signal::Average,
                    source: Provider::ElectricityMaps.as_str().to_owned(),
                    source_detail: Some(
                        p.emission_factor_type
                            .unwrap_or_else(|| "lifecycle".to_owned()),
                    ),
                    received_at,
                    written_by: None,
                })
            })
            .collect()
    }
}

/// Points of a `history` answer (also used to load the demo data set).
pub fn history_points(
    zone: &ZoneCode,
    body: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<IntensityPoint>, FeedError> {
    let history: History =
        serde_json::from_str(body).map_err(|e| FeedError::Malformed(e.to_string()))?;
    Ok(ElectricityMaps::points(
        zone,
        history.history,
        false,
        received_at,
    ))
}

impl Puller for ElectricityMaps {
    fn provider(&self) -> Provider {
        Provider::ElectricityMaps
    }

    fn max_span(&self) -> Duration {
        Duration::days(10)
    }

    fn history<'a>(
        &'a self,
        zone: &'a ZoneCode,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let their_zone = provider_zone(&self.settings, zone);
            // The last day comes from `history`, which carries revisions; older from `past-range`.
            let points = if received_at - from <= Duration::hours(24) {
                let answer: History = self
                    .get("/v3/carbon-intensity/history", &[("zone", their_zone)])
                    .await?;
                answer.history
            } else {
                let query = [("zone", their_zone), ("start", iso(from)), ("end", iso(to))];
                let answer: PastRange = self.get("/v3/carbon-intensity/past-range", &query).await?;
                answer.data
            };
            Ok(Self::points(zone, points, false, received_at))
        })
    }

    fn forecast<'a>(
        &'a self,
        zone: &'a ZoneCode,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let query = [("zone", provider_zone(&self.settings, zone))];
            let answer: Forecast = self.get("/v3/carbon-intensity/forecast", &query).await?;
            Ok(Self::points(zone, answer.forecast, true, now))
        })
    }
}
