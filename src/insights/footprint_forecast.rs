//! Next weeks' footprint: each workload's hourly energy forecast (see `forecast`), priced at the
//! grid's own forecasts where providers give them and beyond that at the zone's seasonal profile
//! (the mean of the same hour of the last four weeks), then summed into the caller's buckets.
use super::curve::Curve;
use super::forecast::{forecast_series, ForecastError, Model, MIN_HISTORY_H, WEEK_H};
use super::shift::HourlyEnergy;
use crate::accounting::timeline::Window;
use chrono::{DateTime, Duration, Utc};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Weeks of past intensity in the seasonal profile.
pub const PROFILE_WEEKS: i64 = 4;

/// What a forecast is asked for: hours from `window.from` (an hour edge: the first hour not yet
/// measured) to `window.to`, summed into the window's buckets.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub window: Window,
    pub level: f64,
}

/// Forecast figures of one bucket (of one workload, or of all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub energy_kwh: f64,
    pub energy_lower_kwh: f64,
    pub energy_upper_kwh: f64,
    pub emissions_gco2e: f64,
    pub emissions_lower_gco2e: f64,
    pub emissions_upper_gco2e: f64,
    /// Forecast energy priced at the grid's forecasts, at the seasonal profile, or at nothing.
    pub grid_forecast_kwh: f64,
    pub seasonal_profile_kwh: f64,
    pub unpriced_kwh: f64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.energy_kwh += other.energy_kwh;
        self.energy_lower_kwh += other.energy_lower_kwh;
        self.energy_upper_kwh += other.energy_upper_kwh;
        self.emissions_gco2e += other.emissions_gco2e;
        self.emissions_lower_gco2e += other.emissions_lower_gco2e;
        self.emissions_upper_gco2e += other.emissions_upper_gco2e;
        self.grid_forecast_kwh += other.grid_forecast_kwh;
        self.seasonal_profile_kwh += other.seasonal_profile_kwh;
        self.unpriced_kwh += other.unpriced_kwh;
    }
}

/// How one workload's series was forecast, and how well each model did in the backtest.
#[derive(Debug, Clone)]
pub struct SeriesModel {
    pub workload: String,
    pub site: String,
    pub history_h: usize,
    pub model: Model,
    pub mae_kwh: f64,
    pub baseline_mae_kwh: f64,
}

/// A series left out: too little history (or none that a model could fit).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub workload: String,
    pub site: String,
    pub history_h: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per bucket start and workload.
    pub rows: BTreeMap<(DateTime<Utc>, String), Figures>,
    /// Per bucket start, all workloads.
    pub buckets: BTreeMap<DateTime<Utc>, Figures>,
    pub totals: Figures,
    pub models: Vec<SeriesModel>,
    pub skipped: Vec<Skipped>,
}

/// The hourly history of a series from its first hour with energy up to `until`, zero-filled.
fn history(series: &HourlyEnergy, until: DateTime<Utc>) -> Vec<f64> {
    let Some(first) = series
        .hours
        .iter()
        .find(|(hour, kwh)| *kwh > 0.0 && *hour < until)
        .map(|(hour, _)| *hour)
    else {
        return Vec::new();
    };
    let hours = ((until - first).num_hours()).max(0) as usize;
    let mut values = vec![0.0; hours];
    for (hour, kwh) in &series.hours {
        let i = (*hour - first).num_hours();
        if (0..hours as i64).contains(&i) {
            values[i as usize] += kwh;
        }
    }
    values
}

enum Price {
    GridForecast(f64),
    SeasonalProfile(f64),
    Unpriced,
}

/// The intensity an hour from now will be priced at.
fn price(curve: Option<&Curve>, hour: DateTime<Utc>) -> Price {
    let Some(curve) = curve else {
        return Price::Unpriced;
    };
    let next = hour + Duration::hours(1);
    if let Some((average, _)) = curve.average(hour, next) {
        return Price::GridForecast(average);
    }
    let past: Vec<f64> = (1..=PROFILE_WEEKS)
        .filter_map(|k| {
            let back = Duration::hours(WEEK_H as i64) * k as i32;
            curve.average(hour - back, next - back).map(|(a, _)| a)
        })
        .collect();
    if past.is_empty() {
        Price::Unpriced
    } else {
        Price::SeasonalProfile(past.iter().sum::<f64>() / past.len() as f64)
    }
}

/// Forecasts every series (in parallel: each is an independent fit) and prices it. `curves` are
/// the location-based intensity per zone from at least `PROFILE_WEEKS` before `window.from`.
pub fn forecast_footprint(
    series: &[HourlyEnergy],
    curves: &HashMap<String, Curve>,
    request: Request,
) -> Outcome {
    let start = request.window.from;
    let horizon = ((request.window.to - start).num_hours()).max(0) as usize;
    let fitted: Vec<(&HourlyEnergy, usize, Result<_, ForecastError>)> = series
        .par_iter()
        .map(|s| {
            let history = history(s, start);
            let result = forecast_series(&history, horizon, request.level);
            (s, history.len(), result)
        })
        .collect();
    let mut outcome = Outcome::default();
    for (series, history_h, result) in fitted {
        let forecast = match result {
            Ok(forecast) => forecast,
            Err(error) => {
                outcome.skipped.push(Skipped {
                    workload: series.workload.clone(),
                    site: series.site.clone(),
                    history_h,
                    reason: match error {
                        ForecastError::TooShort { .. } => format!(
                            "{history_h} hours of history since its first energy; a forecast needs {MIN_HISTORY_H} (24 days)"
                        ),
                        other => other.to_string(),
                    },
                });
                continue;
            }
        };
        outcome.models.push(SeriesModel {
            workload: series.workload.clone(),
            site: series.site.clone(),
            history_h,
            model: forecast.model,
            mae_kwh: forecast.mae,
            baseline_mae_kwh: forecast.baseline_mae,
        });
        let curve = curves.get(&series.zone);
        let p = &forecast.prediction;
        for h in 0..horizon {
            let hour = start + Duration::hours(h as i64);
            let mut figures = Figures {
                energy_kwh: p.point[h],
                energy_lower_kwh: p.lower[h],
                energy_upper_kwh: p.upper[h],
                ..Figures::default()
            };
            let intensity = match price(curve, hour) {
                Price::GridForecast(g) => {
                    figures.grid_forecast_kwh = p.point[h];
                    g
                }
                Price::SeasonalProfile(g) => {
                    figures.seasonal_profile_kwh = p.point[h];
                    g
                }
                Price::Unpriced => {
                    figures.unpriced_kwh = p.point[h];
                    0.0
                }
            };
            figures.emissions_gco2e = p.point[h] * intensity;
            figures.emissions_lower_gco2e = p.lower[h] * intensity;
            figures.emissions_upper_gco2e = p.upper[h] * intensity;
            let bucket = request.window.bucket_start(hour);
            outcome
                .rows
                .entry((bucket, series.workload.clone()))
                .or_default()
                .add(&figures);
            outcome.buckets.entry(bucket).or_default().add(&figures);
            outcome.totals.add(&figures);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::timeline::Granularity;
    use crate::domain::intensity::{PointKind, Signal};
    use crate::insights::curve::tests::series as points;

    #[test]
    fn a_steady_workload_is_priced_at_the_forecast_then_at_the_profile() {
        // 1 kWh every hour for four weeks: the forecast is 1 kWh an hour (either model, no noise).
        let start: DateTime<Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
        let now = start + Duration::hours(4 * WEEK_H as i64);
        let series = HourlyEnergy {
            workload: "batch".into(),
            site: "fra1".into(),
            zone: "GB".into(),
            hours: (0..4 * WEEK_H as i64)
                .map(|h| (start + Duration::hours(h), 1.0))
                .collect(),
        };
        // Past intensity 100 g/kWh for four weeks, and a grid forecast of 300 for the first
        // 12 hours ahead.
        let mut stored = points(
            "2026-03-02T00:00:00Z",
            60,
            &vec![100.0; 4 * WEEK_H],
            PointKind::Actual,
        );
        stored.extend(points(
            &now.to_rfc3339(),
            60,
            &[300.0; 12],
            PointKind::Forecast,
        ));
        let curves =
            HashMap::from([("GB".to_string(), Curve::of_signal(&stored, Signal::Average))]);
        let outcome = forecast_footprint(
            &[series],
            &curves,
            Request {
                window: Window {
                    from: now,
                    to: now + Duration::hours(48),
                    granularity: Granularity::Day,
                    tz: chrono_tz::UTC,
                },
                level: 0.8,
            },
        );
        assert!(outcome.skipped.is_empty());
        let totals = &outcome.totals;
        assert!((totals.energy_kwh - 48.0).abs() < 1e-6, "{totals:?}");
        // 12 h x 1 kWh x 300 + 36 h x 1 kWh x 100 = 3,600 + 3,600 = 7,200 g.
        assert!(
            (totals.emissions_gco2e - 7_200.0).abs() < 1e-3,
            "{totals:?}"
        );
        assert!((totals.grid_forecast_kwh - 12.0).abs() < 1e-6);
        assert!((totals.seasonal_profile_kwh - 36.0).abs() < 1e-6);
        assert_eq!(outcome.buckets.len(), 2);
        assert!(totals.energy_lower_kwh <= totals.energy_kwh + 1e-9);
        assert!(totals.energy_upper_kwh >= totals.energy_kwh - 1e-9);
    }
}
