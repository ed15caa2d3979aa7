//! UK Carbon Intensity API (NESO): national `GB` and regions `GB-1`..`GB-17` (region ids). Times
//! are minute precision (`2018-01-20T12:00Z`); values are gCO2/kWh, CO2 only. National periods carry
//! `actual` once measured, else only `forecast`; regional periods only ever `forecast`.
use super::{provider_zone, BoxFuture, FeedError, FeedSettings, Http, Provider, Puller};
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use crate::domain::ZoneCode;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Deserialize;

const DEFAULT_BASE_URL: &str = "https://api.carbonintensity.org.uk";
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%MZ";

#[derive(Debug, Deserialize)]
struct Intensity {
    forecast: Option<f64>,
    #[serde(default)]
    actual: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Period {
    from: String,
    to: String,
    intensity: Intensity,
}

#[derive(Debug, Deserialize)]
struct National {
    data: Vec<Period>,
}

#[derive(Debug, Deserialize)]
struct Region {
    data: Vec<Period>,
}

/// The regional answer's `data` is an object for one region id, an array elsewhere: accept both.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Regional {
    One { data: Region },
    Many { data: Vec<Region> },
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, FeedError> {
    NaiveDateTime::parse_from_str(raw, TIME_FORMAT)
        .map(|t| t.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .map_err(|_| FeedError::Malformed(format!("time {raw:?} is not YYYY-MM-DDThh:mmZ")))
}

pub struct UkCarbonIntensity {
    settings: FeedSettings,
    http: Http,
}

impl UkCarbonIntensity {
    pub fn new(settings: FeedSettings) -> Result<Self, FeedError> {
        let http = Http::new(
            settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            settings.timeout_s,
        )?;
        Ok(Self { settings, http })
    }

    /// `None` for the national series, else the region id.
    fn region(&self, zone: &ZoneCode) -> Result<Option<String>, FeedError> {
        let mapped = provider_zone(&self.settings, zone);
        if mapped == "GB" {
            return Ok(None);
        }
        let id = mapped.strip_prefix("GB-").unwrap_or(&mapped);
        match id.parse::<u8>() {
            Ok(n) if (1..=18).contains(&n) => Ok(Some(n.to_string())),
            _ => Err(FeedError::Config(format!(
                "zone {zone} maps to {mapped:?}, not GB or a region id 1-17 (set zone_map)"
            ))),
        }
    }

    async fn periods(&self, zone: &ZoneCode, range: &str) -> Result<Vec<Period>, FeedError> {
        let request = |path: String| {
            self.http
                .client
                .get(self.http.url(&path))
                .header("accept", "application/json")
        };
        match self.region(zone)? {
            None => Ok(self
                .http
                .json::<National>(request(format!("/intensity/{range}")))
                .await?
                .data),
            Some(id) => {
                let answer: Regional = self
                    .http
                    .json(request(format!(
                        "/regional/intensity/{range}/regionid/{id}"
                    )))
                    .await?;
                Ok(match answer {
                    Regional::One { data } => data.data,
                    Regional::Many { data } => data.into_iter().flat_map(|r| r.data).collect(),
                })
            }
        }
    }
}

/// Points of a national `/intensity/...` answer (also used to load the demo data set).
pub fn national_points(
    zone: &ZoneCode,
    body: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<IntensityPoint>, FeedError> {
    let national: National =
        serde_json::from_str(body).map_err(|e| FeedError::Malformed(e.to_string()))?;
    points(zone, national.data, received_at)
}

fn points(
    zone: &ZoneCode,
    periods: Vec<Period>,
    received_at: DateTime<Utc>,
) -> Result<Vec<IntensityPoint>, FeedError> {
    let mut points: Vec<IntensityPoint> = Vec::with_capacity(periods.len());
    for period in periods {
        let start = parse_time(&period.from)?;
        // A `from` on a boundary may also return the period ending there: keep one per start.
        if points.iter().any(|p| p.start == start) {
            continue;
        }
        let (value, kind) = match (period.intensity.actual, period.intensity.forecast) {
            (Some(actual), _) => (actual, PointKind::Actual),
            (None, Some(forecast)) => (forecast, PointKind::Forecast),
            (None, None) => continue,
        };
        points.push(IntensityPoint {
            zone: zone.clone(),
            start,
            end: parse_time(&period.to)?,
            gco2e_per_kwh: value,
            kind,
            signal: Signal::Average,
            source: Provider::UkCarbonIntensity.as_str().to_owned(),
            source_detail: Some("co2_generation".to_owned()),
            received_at,
            written_by: None,
        });
    }
    Ok(points)
}

impl Puller for UkCarbonIntensity {
    fn provider(&self) -> Provider {
        Provider::UkCarbonIntensity
    }

    fn max_span(&self) -> Duration {
        Duration::days(14)
    }

    fn history<'a>(
        &'a self,
        zone: &'a ZoneCode,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let range = format!("{}/{}", from.format(TIME_FORMAT), to.format(TIME_FORMAT));
            let periods = self.periods(zone, &range).await?;
            points(zone, periods, received_at)
        })
    }

    fn forecast<'a>(
        &'a self,
        zone: &'a ZoneCode,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<IntensityPoint>, FeedError>> {
        Box::pin(async move {
            let range = format!("{}/fw48h", now.format(TIME_FORMAT));
            let periods = self.periods(zone, &range).await?;
            points(zone, periods, now)
        })
    }
}
