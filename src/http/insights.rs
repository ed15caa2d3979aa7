//! A customer's advice: what moving its runs would have saved, and what its next weeks will
//! look like. Customer keys see only their own workloads, exactly as in the footprint.
use super::auth::Caller;
use super::problem::{ApiError, CommonErrors, ErrorCode};
use super::AppState;
use crate::accounting::timeline::{Granularity, Window};
use crate::domain::intensity::Signal;
use crate::domain::{Id, ZoneCode};
use crate::insights::cache::ForecastKey;
use crate::insights::curve::Curve;
use crate::insights::footprint_forecast::{self, forecast_footprint, PROFILE_WEEKS};
use crate::insights::forecast::{
    Model, BACKTEST_HORIZON_H, BACKTEST_ORIGINS, MIN_HISTORY_H, WEEK_H,
};
use crate::insights::shift::{opportunities, WorkloadOpportunities};
use crate::insights::{hourly_energy, zone_points};
use crate::reports::{local_rfc3339, ReportSources};
use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Starts tried within +-flex lie this far apart.
const SHIFT_STEP: Duration = Duration::minutes(15);
const MAX_SHIFT_RANGE: Duration = Duration::days(31);
const MAX_FLEX_H: i64 = 24;
const MAX_HORIZON: Duration = Duration::days(90);

pub fn configure(config: &mut ServiceConfig) {
    config.service(shift_opportunities).service(forecast);
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, detail)
}

fn customer_of(caller: &Caller, raw: &str) -> Result<Id, ApiError> {
    let customer =
        Id::parse(raw).map_err(|_| ApiError::not_found(format_args!("customer {raw}")))?;
    caller.require_customer(&customer)?;
    Ok(customer)
}

fn workloads(raw: Option<&str>) -> Result<Vec<Id>, ApiError> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| Id::parse(w).map_err(|reason| invalid(format!("workload {w:?}: {reason}"))))
        .collect()
}

/// Every zone's stored points over [from, to), grouped by zone, each in stored order.
async fn points_by_zone(
    sources: &ReportSources,
    zones: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<String, Vec<crate::domain::intensity::IntensityPoint>>, ApiError> {
    let mut codes: Vec<ZoneCode> = zones
        .iter()
        .filter_map(|z| ZoneCode::parse(z).ok())
        .collect();
    codes.sort();
    codes.dedup();
    let mut grouped: HashMap<String, Vec<_>> = HashMap::new();
    if codes.is_empty() {
        return Ok(grouped);
    }
    for point in zone_points(sources, &codes, from, to).await? {
        grouped
            .entry(point.zone.to_string())
            .or_default()
            .push(point);
    }
    Ok(grouped)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShiftParams {
    /// Inclusive start, RFC 3339.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339 (at most 31 days after `from`).
    #[param(example = "2026-03-08T00:00:00Z")]
    pub to: DateTime<Utc>,
    /// How far each run could have moved, earlier or later, in hours (1 to 24; default 6).
    #[param(example = 6, minimum = 1, maximum = 24)]
    pub flex_h: Option<i64>,
    /// Only these workloads (comma list); all when absent.
    #[param(example = "batch")]
    pub workload: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShiftResponse {
    pub customer: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub flex_h: i64,
    pub step_min: i64,
    /// Attributional and location-based (average signal), never market-based.
    pub basis: &'static str,
    pub signal: Signal,
    pub method: &'static str,
    pub workloads: Vec<WorkloadOpportunities>,
    pub actual_gco2e: f64,
    pub best_gco2e: f64,
    pub saving_gco2e: f64,
    pub as_forecast_saving_gco2e: f64,
}

const SHIFT_METHOD: &str = "A run is a stretch of consecutive hours with facility energy at one \
site. It is moved whole, keeping its hourly energy profile, to every start within +-flex_h in \
15-minute steps; each hour of energy is priced at the time-weighted average of the location-based \
intensity in force over that hour. `best` is the lowest in hindsight; `as_forecast` is the start \
the forecasts stored before the run would have chosen, priced at what the grid then did.";

/// What shifting past runs would have saved
///
/// For each workload of the customer: its runs (consecutive hours with energy at one site) over
/// [from, to), and the best start within +-`flex_h` hours for the same hourly energy profile,
/// in hindsight (the intensity in force, actuals where they exist) and as the forecasts stored
/// before the run would have chosen; actual and best gCO2e, the saving in grams and percent, and
/// the sum per workload. Attributional, location-based.
#[utoipa::path(tag = "insights", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"), ShiftParams),
    responses((status = 200, description = "The opportunities", body = ShiftResponse),
        CommonErrors,
        (status = 422, description = "Range too long", body = super::problem::Problem,
         content_type = "application/problem+json")))]
#[get("/customers/{customer}/shift-opportunities")]
async fn shift_opportunities(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ShiftParams>,
) -> Result<HttpResponse, ApiError> {
    let customer = customer_of(&caller, &path)?;
    let params = query.into_inner();
    if params.from >= params.to {
        return Err(invalid("from must be before to"));
    }
    if params.to - params.from > MAX_SHIFT_RANGE {
        return Err(ApiError::new(
            ErrorCode::RangeTooLong,
            "ask for at most 31 days at a time",
        ));
    }
    let flex_h = params.flex_h.unwrap_or(6);
    if !(1..=MAX_FLEX_H).contains(&flex_h) {
        return Err(invalid("flex_h must be from 1 to 24"));
    }
    let flex = Duration::hours(flex_h);
    let series = hourly_energy(
        &state.reports,
        Some(customer.clone()),
        params.from,
        params.to,
        workloads(params.workload.as_deref())?,
    )
    .await?;
    let zones = series.iter().map(|s| s.zone.clone()).collect();
    let points =
        points_by_zone(&state.reports, zones, params.from - flex, params.to + flex).await?;
    let workloads = web::block(move || opportunities(&series, &points, flex, SHIFT_STEP))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let sum = |f: fn(&WorkloadOpportunities) -> f64| workloads.iter().map(f).sum::<f64>();
    Ok(HttpResponse::Ok().json(ShiftResponse {
        customer: customer.to_string(),
        from: params.from,
        to: params.to,
        flex_h,
        step_min: SHIFT_STEP.num_minutes(),
        basis: "location",
        signal: Signal::Average,
        method: SHIFT_METHOD,
        actual_gco2e: sum(|w| w.actual_gco2e),
        best_gco2e: sum(|w| w.best_gco2e),
        saving_gco2e: sum(|w| w.saving_gco2e),
        as_forecast_saving_gco2e: sum(|w| w.as_forecast_saving_gco2e),
        workloads,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastParams {
    /// How far ahead: hours, days or weeks (`48h`, `30d`, `4w`; at most 90 days; default 30d).
    #[param(example = "30d", pattern = "^[0-9]{1,4}[hdw]$")]
    pub horizon: Option<String>,
    /// `hour`, `day` (the default), `month` or `total`.
    #[param(example = "day", pattern = "^(hour|day|month|total)$")]
    pub granularity: Option<String>,
    /// `workload` (the default): a row per workload and bucket; `none`: only the bucket sums.
    #[param(example = "workload", pattern = "^(workload|none)$")]
    pub group_by: Option<String>,
    /// IANA time zone of day and month buckets (default UTC).
    #[param(example = "Europe/London")]
    pub tz: Option<String>,
    /// Prediction interval level, 0.5 to 0.99 (default 0.8).
    #[param(example = 0.8, minimum = 0.5, maximum = 0.99)]
    pub level: Option<f64>,
    /// Days of hourly history to learn from (24 to 365; default 35).
    #[param(example = 35, minimum = 24, maximum = 365)]
    pub history_days: Option<i64>,
}

/// Forecast figures of one bucket; the bounds are the prediction interval at `level`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastFigures {
    pub energy_kwh: f64,
    pub energy_lower_kwh: f64,
    pub energy_upper_kwh: f64,
    pub emissions_gco2e: f64,
    pub emissions_lower_gco2e: f64,
    pub emissions_upper_gco2e: f64,
    /// Shares of the forecast energy priced at the grid's own forecasts, at the zone's seasonal
    /// profile (the same hour of the last four weeks), or at nothing (no intensity known).
    pub grid_forecast_share: f64,
    pub seasonal_profile_share: f64,
    pub unpriced_share: f64,
}

impl From<&footprint_forecast::Figures> for ForecastFigures {
    fn from(f: &footprint_forecast::Figures) -> Self {
        let share = |kwh: f64| {
            if f.energy_kwh > 0.0 {
                kwh / f.energy_kwh
            } else {
                0.0
            }
        };
        ForecastFigures {
            energy_kwh: f.energy_kwh,
            energy_lower_kwh: f.energy_lower_kwh,
            energy_upper_kwh: f.energy_upper_kwh,
            emissions_gco2e: f.emissions_gco2e,
            emissions_lower_gco2e: f.emissions_lower_gco2e,
            emissions_upper_gco2e: f.emissions_upper_gco2e,
            grid_forecast_share: share(f.grid_forecast_kwh),
            seasonal_profile_share: share(f.seasonal_profile_kwh),
            unpriced_share: share(f.unpriced_kwh),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastRow {
    /// Start of the bucket, RFC 3339 with the offset of the answer's time zone.
    pub bucket_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(flatten)]
    pub figures: ForecastFigures,
}

/// How one series (a workload at a site) was forecast.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesModelInfo {
    pub workload: String,
    pub site: String,
    pub history_h: usize,
    pub model: &'static str,
    pub backtest_mae_kwh: f64,
    pub baseline_mae_kwh: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Backtest {
    pub method: String,
    pub baseline: &'static str,
    /// Hourly mean absolute error over every series, of the chosen models and of the baseline.
    pub mae_kwh: f64,
    pub baseline_mae_kwh: f64,
    /// 1 - mae / baseline: above 0, the forecast beat seasonal naive.
    pub skill: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastResponse {
    pub customer: String,
    /// The first hour forecast (the hour now under way) and the end of the horizon.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub tz: String,
    pub level: f64,
    pub history_from: DateTime<Utc>,
    pub basis: &'static str,
    pub signal: Signal,
    pub interval_method: &'static str,
    pub rows: Vec<ForecastRow>,
    /// All workloads per bucket: the dashed continuation of the emissions chart.
    pub buckets: Vec<ForecastRow>,
    pub totals: ForecastFigures,
    pub models: Vec<SeriesModelInfo>,
    pub backtest: Backtest,
    pub skipped: Vec<footprint_forecast::Skipped>,
}

const INTERVAL_METHOD: &str = "Hourly prediction intervals of the energy model, summed hour by \
hour into each bucket (as if the errors were perfectly correlated, so a bucket's interval covers \
at least its level); emissions bounds are the energy bounds at the expected intensity.";

fn horizon(raw: Option<&str>) -> Result<Duration, ApiError> {
    let raw = raw.unwrap_or("30d");
    let unlike = || invalid(format!("horizon {raw:?} is not like 48h, 30d or 4w"));
    let (unit, hours) = [('h', 1), ('d', 24), ('w', 168)]
        .into_iter()
        .find(|(unit, _)| raw.ends_with(*unit))
        .ok_or_else(unlike)?;
    let count: i64 = raw
        .strip_suffix(unit)
        .and_then(|n| n.parse().ok())
        .ok_or_else(unlike)?;
    // Checked all the way: a huge count is a refusal, never an overflow.
    count
        .checked_mul(hours)
        .and_then(Duration::try_hours)
        .filter(|span| (Duration::hours(1)..=MAX_HORIZON).contains(span))
        .ok_or_else(|| invalid("horizon must be from 1 hour to 90 days"))
}

/// A customer's footprint forecast
///
/// Energy per workload forecast from its hourly history (MSTL with daily and weekly seasonality
/// and an AutoETS trend, or seasonal naive where that did better in the backtest), priced at the
/// grid's own forecasts where providers give them and beyond that at the zone's seasonal profile;
/// with prediction intervals, the model of each series, and a rolling-origin backtest error
/// (MAE) against seasonal naive. Location-based. A series with less than 24 days of history
/// is left out and listed; with none long enough (24 days) the answer is 422 `insufficient_history`.
#[utoipa::path(tag = "insights", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"), ForecastParams),
    responses((status = 200, description = "The forecast", body = ForecastResponse),
        CommonErrors,
        (status = 422, description = "Too little history", body = super::problem::Problem,
         content_type = "application/problem+json")))]
#[get("/customers/{customer}/forecast")]
async fn forecast(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ForecastParams>,
) -> Result<HttpResponse, ApiError> {
    let customer = customer_of(&caller, &path)?;
    let params = query.into_inner();
    let span = horizon(params.horizon.as_deref())?;
    let granularity = match params.granularity.as_deref() {
        None => Granularity::Day,
        // Forecast buckets stay hours, days and months: the horizon is at most 90 days.
        Some(raw) => Granularity::parse(raw)
            .filter(|g| {
                matches!(
                    g,
                    Granularity::Hour | Granularity::Day | Granularity::Month | Granularity::Total
                )
            })
            .ok_or_else(|| {
                invalid(format!(
                    "granularity {raw:?} is not one of hour, day, month, total"
                ))
            })?,
    };
    let by_workload = match params.group_by.as_deref() {
        None | Some("workload") => true,
        Some("none") => false,
        Some(other) => {
            return Err(invalid(format!(
                "group_by {other:?} is not one of workload, none"
            )))
        }
    };
    let tz: Tz = match params.tz.as_deref() {
        None => chrono_tz::UTC,
        Some(raw) => raw
            .parse()
            .map_err(|_| invalid(format!("tz {raw:?} is not an IANA time zone")))?,
    };
    let level = params.level.unwrap_or(0.8);
    if !(0.5..=0.99).contains(&level) {
        return Err(invalid("level must be from 0.5 to 0.99"));
    }
    let history_days = params.history_days.unwrap_or(35);
    if !(24..=365).contains(&history_days) {
        return Err(invalid("history_days must be from 24 to 365"));
    }
    let now = state.clock.now();
    let start = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let history_from = start - Duration::days(history_days);
    let window = Window {
        from: start,
        to: start + span,
        granularity,
        tz,
    };
    let key = ForecastKey {
        customer: customer.to_string(),
        start_us: start.timestamp_micros(),
        end_us: window.to.timestamp_micros(),
        granularity: granularity.as_str(),
        tz: tz.name().to_owned(),
        level_bits: level.to_bits(),
        history_days,
        versions: state.reports.versions().await,
        acknowledged: (
            state.readings.acknowledged(),
            state.intensity.acknowledged(),
        ),
    };
    let outcome = match state.forecasts.get(&key) {
        Some(outcome) => outcome,
        None => {
            let request = footprint_forecast::Request { window, level };
            let outcome =
                Arc::new(forecast_outcome(&state.reports, &customer, history_from, request).await?);
            state.forecasts.put(key, outcome.clone());
            outcome
        }
    };
    if outcome.models.is_empty() {
        let longest = outcome.skipped.iter().map(|s| s.history_h).max();
        return Err(ApiError::new(
            ErrorCode::InsufficientHistory,
            format!(
                "a forecast needs {MIN_HISTORY_H} hours (24 days) of hourly history in the last \
                 {history_days} days; the longest series of customer {customer} has {}",
                longest.unwrap_or(0)
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(answer(
        &outcome,
        &customer,
        history_from,
        window,
        level,
        by_workload,
    )))
}

/// Fits and prices every series of the customer (off the async executor).
async fn forecast_outcome(
    sources: &ReportSources,
    customer: &Id,
    history_from: DateTime<Utc>,
    request: footprint_forecast::Request,
) -> Result<footprint_forecast::Outcome, ApiError> {
    let (start, end) = (request.window.from, request.window.to);
    let series = hourly_energy(
        sources,
        Some(customer.clone()),
        history_from,
        start,
        Vec::new(),
    )
    .await?;
    let zones = series.iter().map(|s| s.zone.clone()).collect();
    let profile_from = history_from.min(start - Duration::hours(PROFILE_WEEKS * WEEK_H as i64));
    let points = points_by_zone(sources, zones, profile_from, end).await?;
    web::block(move || {
        let curves: HashMap<String, Curve> = points
            .iter()
            .map(|(zone, p)| (zone.clone(), Curve::of_signal(p, Signal::Average)))
            .collect();
        forecast_footprint(&series, &curves, request)
    })
    .await
    .map_err(|e| ApiError::internal(&e))
}

/// The answer's shape of an outcome.
fn answer(
    outcome: &footprint_forecast::Outcome,
    customer: &Id,
    history_from: DateTime<Utc>,
    window: Window,
    level: f64,
    by_workload: bool,
) -> ForecastResponse {
    let (start, tz, granularity) = (window.from, window.tz, window.granularity);
    let span = window.to - window.from;
    let text = |t: DateTime<Utc>| local_rfc3339(t, tz);
    let mean = |f: fn(&footprint_forecast::SeriesModel) -> f64| {
        outcome.models.iter().map(f).sum::<f64>() / outcome.models.len() as f64
    };
    let (mae, baseline_mae) = (mean(|m| m.mae_kwh), mean(|m| m.baseline_mae_kwh));
    ForecastResponse {
        customer: customer.to_string(),
        from: start,
        to: start + span,
        granularity: granularity.as_str().to_owned(),
        tz: tz.name().to_owned(),
        level,
        history_from,
        basis: "location",
        signal: Signal::Average,
        interval_method: INTERVAL_METHOD,
        rows: if by_workload {
            outcome
                .rows
                .iter()
                .map(|((bucket, workload), figures)| ForecastRow {
                    bucket_start: text(*bucket),
                    workload: Some(workload.clone()),
                    figures: figures.into(),
                })
                .collect()
        } else {
            Vec::new()
        },
        buckets: outcome
            .buckets
            .iter()
            .map(|(bucket, figures)| ForecastRow {
                bucket_start: text(*bucket),
                workload: None,
                figures: figures.into(),
            })
            .collect(),
        totals: (&outcome.totals).into(),
        models: outcome
            .models
            .iter()
            .map(|m| SeriesModelInfo {
                workload: m.workload.clone(),
                site: m.site.clone(),
                history_h: m.history_h,
                model: m.model.name(),
                backtest_mae_kwh: m.mae_kwh,
                baseline_mae_kwh: m.baseline_mae_kwh,
            })
            .collect(),
        backtest: Backtest {
            method: format!(
                "rolling origin: {BACKTEST_ORIGINS} origins a day apart, the last a week before \
                 the end of the history, each fitted on what came before and forecasting the \
                 {BACKTEST_HORIZON_H} h after it"
            ),
            baseline: Model::SeasonalNaive.name(),
            mae_kwh: mae,
            baseline_mae_kwh: baseline_mae,
            skill: (baseline_mae > 0.0).then(|| 1.0 - mae / baseline_mae),
        },
        skipped: outcome.skipped.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn horizons_read_as_hours_days_or_weeks_within_90_days() {
        assert_eq!(horizon(None).unwrap(), Duration::days(30));
        assert_eq!(horizon(Some("48h")).unwrap(), Duration::hours(48));
        assert_eq!(horizon(Some("4w")).unwrap(), Duration::weeks(4));
        for bad in [
            "0h",
            "91d",
            "-1d",
            "d",
            "30",
            "5é",
            "9999999999999999w",
            "1.5d",
        ] {
            assert!(horizon(Some(bad)).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_horizon_parser_never_panics(raw in ".{0,24}", count in any::<i64>(), unit in "[hdw]") {
            for raw in [raw.clone(), format!("{count}{unit}")] {
                if let Ok(span) = horizon(Some(&raw)) {
                    prop_assert!(span >= Duration::hours(1) && span <= MAX_HORIZON);
                }
            }
        }
    }
}
