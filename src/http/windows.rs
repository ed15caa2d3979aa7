//! When to run: the greenest windows of a zone, natively and in the Carbon Aware SDK's own shape
//! (`GET /emissions/forecasts/current`), so SDK clients and the tools built on them work unchanged.
use super::auth::Caller;
use super::problem::{ApiError, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::intensity::Signal;
use crate::domain::ZoneCode;
use crate::insights::curve::{Curve, KindShares};
use crate::insights::windows::{greenest, optimal, rolling, Candidate};
use crate::insights::zone_curve;
use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Farthest ahead (or back) one search looks.
const MAX_SEARCH: Duration = Duration::days(93);
/// Candidate starts lie on this UTC grid: every provider's interval is a multiple of it.
const STEP: Duration = Duration::minutes(5);
const MAX_JOB_MIN: i64 = 7 * 24 * 60;
const MAX_LIMIT: usize = 50;

pub fn configure(config: &mut ServiceConfig) {
    config.service(zone_windows);
}

pub fn configure_carbon_aware_sdk(config: &mut ServiceConfig) {
    config.service(sdk_current_forecast);
}

fn signal(raw: Option<&str>) -> Result<Signal, ApiError> {
    match raw {
        None => Ok(Signal::Average),
        Some(raw) => Signal::parse(raw).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("signal {raw:?} is not one of average, marginal"),
            )
        }),
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, detail)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// How long the job runs, in minutes (1 to 10,080).
    #[param(example = 120, minimum = 1, maximum = 10080)]
    pub duration_min: i64,
    /// Earliest start, RFC 3339 (default: now).
    #[param(example = "2026-03-01T09:00:00Z")]
    pub from: Option<DateTime<Utc>>,
    /// Latest end, RFC 3339 (default: where the zone's data ends, at most 93 days after `from`).
    #[param(example = "2026-03-03T09:00:00Z")]
    pub to: Option<DateTime<Utc>>,
    /// How many windows (1 to 50, default 5).
    #[param(example = 3, minimum = 1, maximum = 50)]
    pub limit: Option<usize>,
    /// `average` (the default) or `marginal`.
    #[param(example = "average", pattern = "^(average|marginal)$")]
    pub signal: Option<String>,
    /// The job's energy, to state savings in grams as well as per kWh.
    #[param(example = 12.5, minimum = 0)]
    pub energy_kwh: Option<f64>,
}

/// A window to run in and what it saves against starting at `from`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GreenWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Time-weighted average of the points in force over the window.
    pub average_gco2e_per_kwh: f64,
    /// Time shares of the window by the kind of point it rests on.
    pub kinds: KindShares,
    /// Against running from `from`: per kWh, in percent, and in grams for `energy_kwh`.
    pub saving_gco2e_per_kwh: Option<f64>,
    pub saving_percent: Option<f64>,
    pub saving_gco2e: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"zone": "GB", "signal": "average", "basis": "location",
    "duration_min": 120, "from": "2026-03-01T09:00:00Z", "to": "2026-03-03T09:00:00Z",
    "step_min": 5, "candidates": 553, "energy_kwh": 12.5,
    "run_now": {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T11:00:00Z",
        "average_gco2e_per_kwh": 210.0, "kinds": {"actual": 0.5, "estimated": 0.0, "forecast": 0.5},
        "saving_gco2e_per_kwh": 0.0, "saving_percent": 0.0, "saving_gco2e": 0.0},
    "windows": [{"start": "2026-03-02T02:00:00Z", "end": "2026-03-02T04:00:00Z",
        "average_gco2e_per_kwh": 84.0, "kinds": {"actual": 0.0, "estimated": 0.0, "forecast": 1.0},
        "saving_gco2e_per_kwh": 126.0, "saving_percent": 60.0, "saving_gco2e": 1575.0}]}))]
pub struct WindowsResponse {
    pub zone: String,
    /// The intensity signal searched (`average` or `marginal`): location-based, never market.
    pub signal: Signal,
    pub basis: &'static str,
    pub duration_min: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Candidate starts lie on this UTC grid (minutes).
    pub step_min: i64,
    /// Windows fully covered by points; windows over a gap are never guessed.
    pub candidates: usize,
    pub energy_kwh: Option<f64>,
    /// Starting right at `from`, where points cover it: the baseline of every saving.
    pub run_now: Option<GreenWindow>,
    /// Lowest average first, none overlapping another.
    pub windows: Vec<GreenWindow>,
}

fn green(candidate: &Candidate, baseline: Option<f64>, energy_kwh: Option<f64>) -> GreenWindow {
    let saving = baseline.map(|b| b - candidate.average_gco2e_per_kwh);
    GreenWindow {
        start: candidate.start,
        end: candidate.end,
        average_gco2e_per_kwh: candidate.average_gco2e_per_kwh,
        kinds: candidate.kinds,
        saving_gco2e_per_kwh: saving,
        saving_percent: baseline
            .zip(saving)
            .and_then(|(b, s)| (b > 0.0).then(|| 100.0 * s / b)),
        saving_gco2e: saving.zip(energy_kwh).map(|(s, e)| s * e),
    }
}

/// The first instant on the step grid at or after `t`.
fn on_grid(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.duration_trunc(STEP).unwrap_or(t);
    if floor < t {
        floor + STEP
    } else {
        floor
    }
}

/// The greenest windows to run a job
///
/// Windows of `duration_min` with the lowest time-weighted average intensity over [from, to):
/// a rolling average over the points in force (actual > estimated > forecast, forecasts
/// included), so a job is never placed on one clean point beside dirty ones. Starts lie on the
/// 5-minute UTC grid; windows do not overlap one another; a window over a gap in the data is not
/// offered. Location-based (average or marginal signal), never market-based. Any key may ask:
/// grid intensity is public data.
#[utoipa::path(tag = "insights", security(("bearer" = [])),
    params(("zone" = String, Path, description = "Grid zone code", example = "GB"), WindowParams),
    responses((status = 200, description = "The windows", body = WindowsResponse), CommonErrors))]
#[get("/zones/{zone}/windows")]
async fn zone_windows(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<WindowParams>,
) -> Result<HttpResponse, ApiError> {
    let zone = ZoneCode::parse(&path).map_err(|reason| ApiError::invalid_path("zone", reason))?;
    let params = query.into_inner();
    let signal = signal(params.signal.as_deref())?;
    if !(1..=MAX_JOB_MIN).contains(&params.duration_min) {
        return Err(invalid("duration_min must be from 1 to 10080 (a week)"));
    }
    let limit = params.limit.unwrap_or(5);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit must be from 1 to 50"));
    }
    if let Some(energy) = params.energy_kwh {
        if !(energy.is_finite() && energy >= 0.0) {
            return Err(invalid("energy_kwh must be a number of at least 0"));
        }
    }
    let from = params.from.unwrap_or_else(|| state.clock.now());
    let horizon = params.to.unwrap_or(from + MAX_SEARCH);
    if horizon <= from {
        return Err(invalid("from must be before to"));
    }
    if horizon - from > MAX_SEARCH {
        return Err(ApiError::new(
            ErrorCode::RangeTooLong,
            "search at most 93 days at a time",
        ));
    }
    let curve = zone_curve(&state.reports, &zone, signal, from, horizon).await?;
    let to = params
        .to
        .unwrap_or_else(|| curve.end().map_or(from, |end| end.min(horizon)));
    let length = Duration::minutes(params.duration_min);
    let candidates = rolling(&curve, on_grid(from), to, length, STEP);
    let run_now = (from + length <= to)
        .then(|| curve.average(from, from + length))
        .flatten()
        .map(|(average, kinds)| Candidate {
            start: from,
            end: from + length,
            average_gco2e_per_kwh: average,
            kinds,
        });
    let baseline = run_now.as_ref().map(|c| c.average_gco2e_per_kwh);
    let count = candidates.len();
    let windows = greenest(candidates, limit)
        .iter()
        .map(|c| green(c, baseline, params.energy_kwh))
        .collect();
    Ok(HttpResponse::Ok().json(WindowsResponse {
        zone: zone.to_string(),
        signal,
        basis: "location",
        duration_min: params.duration_min,
        from,
        to: to.max(from),
        step_min: STEP.num_minutes(),
        candidates: count,
        energy_kwh: params.energy_kwh,
        run_now: run_now.map(|c| green(&c, baseline, params.energy_kwh)),
        windows,
    }))
}

/// The Carbon Aware SDK's `EmissionsData`: `duration` in minutes, `value` in gCO2e/kWh.
#[derive(Debug, Serialize, ToSchema)]
pub struct SdkEmissionsData {
    pub location: String,
    pub timestamp: DateTime<Utc>,
    pub duration: i64,
    pub value: f64,
}

/// The Carbon Aware SDK's `EmissionsForecast`, field for field.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!([{"generatedAt": "2026-03-01T08:30:00Z",
    "requestedAt": "2026-03-01T09:00:00Z", "location": "GB",
    "dataStartAt": "2026-03-01T09:00:00Z", "dataEndAt": "2026-03-01T11:00:00Z", "windowSize": 60,
    "optimalDataPoints": [{"location": "GB", "timestamp": "2026-03-01T10:00:00Z",
        "duration": 60, "value": 120.0}],
    "forecastData": [
        {"location": "GB", "timestamp": "2026-03-01T09:00:00Z", "duration": 60, "value": 180.0},
        {"location": "GB", "timestamp": "2026-03-01T09:30:00Z", "duration": 60, "value": 150.0},
        {"location": "GB", "timestamp": "2026-03-01T10:00:00Z", "duration": 60, "value": 120.0}]}]))]
pub struct SdkEmissionsForecast {
    pub generated_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub location: String,
    pub data_start_at: DateTime<Utc>,
    pub data_end_at: DateTime<Utc>,
    pub window_size: i64,
    pub optimal_data_points: Vec<SdkEmissionsData>,
    pub forecast_data: Vec<SdkEmissionsData>,
}

/// The SDK's query: `location` may repeat.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct SdkForecastParams {
    /// Zone code; repeat for several (`location=GB&location=DE`).
    #[param(example = "GB")]
    pub location: Vec<String>,
    /// Ignore points before this (default: now).
    #[param(example = "2026-03-01T09:00:00Z")]
    pub data_start_at: Option<DateTime<Utc>>,
    /// Ignore points after this (default: where the forecast ends).
    #[param(example = "2026-03-01T11:00:00Z")]
    pub data_end_at: Option<DateTime<Utc>>,
    /// The job's length in minutes (default: one point's length).
    #[param(example = 60, minimum = 1, maximum = 10080)]
    pub window_size: Option<i64>,
}

/// The query as the SDK's clients send it, repeated `location` included.
fn sdk_params(query: &str) -> Result<SdkForecastParams, ApiError> {
    let pairs = url::form_urlencoded::parse(query.as_bytes());
    let mut params = SdkForecastParams {
        location: Vec::new(),
        data_start_at: None,
        data_end_at: None,
        window_size: None,
    };
    let instant = |name: &str, raw: &str| {
        raw.parse::<DateTime<Utc>>()
            .map_err(|e| invalid(format!("{name} {raw:?} is not an RFC 3339 time: {e}")))
    };
    for (name, value) in pairs {
        match name.as_ref() {
            "location" => params.location.push(value.into_owned()),
            "dataStartAt" => params.data_start_at = Some(instant(&name, &value)?),
            "dataEndAt" => params.data_end_at = Some(instant(&name, &value)?),
            "windowSize" => {
                params.window_size = Some(value.parse().map_err(|_| {
                    invalid(format!(
                        "windowSize {value:?} is not a whole number of minutes"
                    ))
                })?)
            }
            other => return Err(invalid(format!("unknown query parameter {other:?}"))),
        }
    }
    if params.location.is_empty() {
        return Err(invalid(
            "location is required (a zone code; repeat for several)",
        ));
    }
    if params
        .window_size
        .is_some_and(|w| !(1..=MAX_JOB_MIN).contains(&w))
    {
        return Err(invalid("windowSize must be from 1 to 10080 minutes"));
    }
    Ok(params)
}

/// One location's forecast, the SDK's way: points in force from `dataStartAt`, a window sliding by
/// one point's length, every window's average in `forecastData`, the lowest in `optimalDataPoints`.
fn sdk_forecast(
    zone: &ZoneCode,
    curve: &Curve,
    generated_at: DateTime<Utc>,
    requested_at: DateTime<Utc>,
    asked_start: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    window_size: Option<i64>,
) -> SdkEmissionsForecast {
    let tick = curve.first_point_span().unwrap_or(STEP);
    let start = asked_start.unwrap_or(requested_at);
    let data_start = curve.first_start_from(start).unwrap_or(start);
    let length = window_size.map_or(tick, Duration::minutes);
    let candidates = rolling(curve, data_start, end, length, tick);
    let data = |c: &Candidate| SdkEmissionsData {
        location: zone.to_string(),
        timestamp: c.start,
        duration: length.num_minutes(),
        value: c.average_gco2e_per_kwh,
    };
    SdkEmissionsForecast {
        generated_at,
        requested_at,
        location: zone.to_string(),
        data_start_at: asked_start.unwrap_or(data_start),
        data_end_at: end,
        window_size: window_size.unwrap_or(0),
        optimal_data_points: optimal(&candidates).iter().map(data).collect(),
        forecast_data: candidates.iter().map(data).collect(),
    }
}

/// Carbon Aware SDK: current forecast
///
/// Compatible with the Carbon Aware SDK WebAPI's `GET /emissions/forecasts/current`: the same
/// parameters and the same JSON (an array, one forecast per `location`). A location is a grid
/// zone code. The data are the location-based average intensity in force from `dataStartAt`
/// (forecasts where nothing better exists yet); `generatedAt` is when the newest forecast used
/// was received. Send an API key as for every other endpoint.
#[utoipa::path(tag = "insights", security(("bearer" = [])),
    params(SdkForecastParams),
    responses((status = 200, description = "One forecast per location",
        body = Vec<SdkEmissionsForecast>), CommonErrors))]
#[get("/forecasts/current")]
async fn sdk_current_forecast(
    _caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = sdk_params(request.query_string())?;
    let now = state.clock.now();
    let start = params.data_start_at.unwrap_or(now);
    let mut answers = Vec::with_capacity(params.location.len());
    for raw in &params.location {
        let zone = ZoneCode::parse(raw)
            .map_err(|reason| invalid(format!("location {raw:?}: {reason}")))?;
        let horizon = params.data_end_at.unwrap_or(start + MAX_SEARCH);
        if horizon <= start {
            return Err(invalid("dataStartAt must be before dataEndAt"));
        }
        if horizon - start > MAX_SEARCH {
            return Err(ApiError::new(
                ErrorCode::RangeTooLong,
                "ask for at most 93 days at a time",
            ));
        }
        let points = crate::insights::zone_points(
            &state.reports,
            std::slice::from_ref(&zone),
            start,
            horizon,
        )
        .await?;
        let generated_at = points
            .iter()
            .filter(|p| p.signal == Signal::Average && p.end > start && p.start < horizon)
            .map(|p| p.received_at)
            .max()
            .unwrap_or(now);
        let curve = Curve::of_signal(&points, Signal::Average);
        let end = params
            .data_end_at
            .unwrap_or_else(|| curve.end().map_or(start, |e| e.min(horizon)));
        answers.push(sdk_forecast(
            &zone,
            &curve,
            generated_at,
            now,
            params.data_start_at,
            end,
            params.window_size,
        ));
    }
    Ok(HttpResponse::Ok().json(answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives, the SDK query parser answers a value or a refusal, never a panic,
        /// and what it accepts is within bounds.
        #[test]
        fn the_sdk_query_parser_never_panics(query in ".{0,80}", size in any::<i64>()) {
            for raw in [query.clone(), format!("location=GB&windowSize={size}&{query}")] {
                if let Ok(params) = sdk_params(&raw) {
                    prop_assert!(!params.location.is_empty());
                    prop_assert!(params.window_size.is_none_or(|w| (1..=MAX_JOB_MIN).contains(&w)));
                }
            }
        }
    }

    #[test]
    fn repeated_locations_and_times_parse_as_the_sdk_sends_them() {
        let params = sdk_params(
            "location=GB&location=DE&dataStartAt=2026-03-01T09%3A00%3A00Z&windowSize=30",
        )
        .unwrap();
        assert_eq!(params.location, ["GB", "DE"]);
        assert_eq!(params.window_size, Some(30));
        assert_eq!(
            params.data_start_at,
            Some("2026-03-01T09:00:00Z".parse().unwrap())
        );
    }
}
