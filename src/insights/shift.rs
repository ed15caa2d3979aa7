//! What moving a job would have saved: each run of a workload (hours of contiguous energy) priced at
//! the intensity of every start within +-flex, with the same hourly energy profile.
//!
//! Attributional and location-based: a run's hour of energy is priced at that hour's time-weighted
//! average intensity, as if its power were even within the hour. That is exactly the footprint
//! report's location-based figure wherever the intensity does not change within an hour.
use super::curve::{Curve, KindShares};
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// A workload's hourly facility energy at one site, ordered by hour.
#[derive(Debug, Clone)]
pub struct HourlyEnergy {
    pub workload: String,
    pub site: String,
    pub zone: String,
    pub hours: Vec<(DateTime<Utc>, f64)>,
}

/// A stretch of consecutive hours with energy, at one site.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub start: DateTime<Utc>,
    pub energy_kwh: Vec<f64>,
}

impl Run {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::hours(self.energy_kwh.len() as i64)
    }

    pub fn total_kwh(&self) -> f64 {
        self.energy_kwh.iter().sum()
    }

    /// The run's emissions had it started `offset` later (earlier when negative), if every hour
    /// it would have covered has an intensity.
    pub fn emissions_at(&self, curve: &Curve, offset: Duration) -> Option<f64> {
        let start = self.start + offset;
        self.energy_kwh
            .iter()
            .enumerate()
            .try_fold(0.0, |sum, (i, kwh)| {
                let hour = start + Duration::hours(i as i64);
                let (average, _) = curve.average(hour, hour + Duration::hours(1))?;
                Some(sum + kwh * average)
            })
    }

    fn kinds_at(&self, curve: &Curve, offset: Duration) -> Option<KindShares> {
        curve
            .average(self.start + offset, self.end() + offset)
            .map(|(_, kinds)| kinds)
    }
}

/// The runs in hourly energy: maximal stretches of consecutive hours with energy above zero.
pub fn runs(hours: &[(DateTime<Utc>, f64)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (hour, kwh) in hours.iter().filter(|(_, kwh)| *kwh > 0.0) {
        match runs.last_mut() {
            Some(run) if run.end() == *hour => run.energy_kwh.push(*kwh),
            _ => runs.push(Run {
                start: *hour,
                energy_kwh: vec![*kwh],
            }),
        }
    }
    runs
}

/// Where a run could have started and what it would have emitted there.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub offset: Duration,
    pub start: DateTime<Utc>,
    pub emissions_gco2e: f64,
    pub kinds: KindShares,
}

/// The lowest-emission start within +-`flex` in steps of `step` (offset 0 included); of equal
/// emissions the smallest move, then the earliest.
pub fn best_placement(
    run: &Run,
    choose_by: &Curve,
    flex: Duration,
    step: Duration,
) -> Option<Placement> {
    let steps = flex.num_seconds() / step.num_seconds().max(1);
    (-steps..=steps)
        .map(|k| step * k as i32)
        .filter_map(|offset| Some((offset, run.emissions_at(choose_by, offset)?)))
        .min_by(|(a_offset, a), (b_offset, b)| {
            a.total_cmp(b)
                .then(a_offset.abs().cmp(&b_offset.abs()))
                .then(a_offset.cmp(b_offset))
        })
        .map(|(offset, emissions)| Placement {
            offset,
            start: run.start + offset,
            emissions_gco2e: emissions,
            kinds: run.kinds_at(choose_by, offset).unwrap_or_default(),
        })
}

/// A better start for a run, and what it saves against where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Move {
    pub start: DateTime<Utc>,
    /// Minutes later (earlier when negative) than the run started.
    pub offset_min: i64,
    /// The run's emissions from that start, at the intensity actually in force then.
    pub emissions_gco2e: f64,
    pub saving_gco2e: f64,
    pub saving_percent: Option<f64>,
}

/// One run of a workload and its alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunOpportunity {
    pub site: String,
    pub zone: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub energy_kwh: f64,
    /// `null` where the hours it ran have no intensity to price them by.
    pub actual_gco2e: Option<f64>,
    /// In hindsight: the best start by the intensity in force (actuals where they exist).
    pub best: Option<Move>,
    /// The start the forecasts stored before the run would have picked, priced at what the grid
    /// then really did; `null` where no stored forecast covered the choices.
    pub as_forecast: Option<Move>,
    /// What the hindsight best rests on (time shares of the points in force).
    pub best_kinds: Option<KindShares>,
}

/// A workload's runs and their sum.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkloadOpportunities {
    pub workload: String,
    /// Over the priced runs only.
    pub energy_kwh: f64,
    pub actual_gco2e: f64,
    pub best_gco2e: f64,
    pub saving_gco2e: f64,
    pub saving_percent: Option<f64>,
    /// Over the runs a stored forecast could have steered.
    pub as_forecast_runs: usize,
    pub as_forecast_saving_gco2e: f64,
    pub runs_priced: usize,
    pub runs_unpriced: usize,
    pub runs: Vec<RunOpportunity>,
}

fn percent(saving: f64, of: f64) -> Option<f64> {
    (of > 0.0).then(|| 100.0 * saving / of)
}

fn moved(run: &Run, hindsight: &Curve, actual: f64, placement: &Placement) -> Option<Move> {
    let emissions = run.emissions_at(hindsight, placement.offset)?;
    Some(Move {
        start: placement.start,
        offset_min: placement.offset.num_minutes(),
        emissions_gco2e: emissions,
        saving_gco2e: actual - emissions,
        saving_percent: percent(actual - emissions, actual),
    })
}

/// The forecasts as they stood when `run` started: only forecast points received by then that
/// could bear on a start within +-`flex`.
fn forecast_as_of(points: &[IntensityPoint], run: &Run, flex: Duration) -> Curve {
    let (from, to) = (run.start - flex, run.end() + flex);
    let known: Vec<IntensityPoint> = points
        .iter()
        .filter(|p| {
            p.kind == PointKind::Forecast
                && p.received_at <= run.start
                && p.end > from
                && p.start < to
        })
        .cloned()
        .collect();
    Curve::of_signal(&known, Signal::Average)
}

/// Every run of every series, its hindsight best and its as-forecast choice, per workload.
/// `points` are each zone's stored points (stored order) over the runs' range +-`flex`.
pub fn opportunities(
    series: &[HourlyEnergy],
    points: &HashMap<String, Vec<IntensityPoint>>,
    flex: Duration,
    step: Duration,
) -> Vec<WorkloadOpportunities> {
    let no_points = Vec::new();
    let curves: HashMap<&String, Curve> = points
        .iter()
        .map(|(zone, p)| (zone, Curve::of_signal(p, Signal::Average)))
        .collect();
    let empty = Curve::of_signal(&[], Signal::Average);
    let mut by_workload: Vec<WorkloadOpportunities> = Vec::new();
    for s in series {
        let hindsight = curves.get(&s.zone).unwrap_or(&empty);
        let zone_points = points.get(&s.zone).unwrap_or(&no_points);
        let position = match by_workload.iter().position(|w| w.workload == s.workload) {
            Some(i) => i,
            None => {
                by_workload.push(WorkloadOpportunities {
                    workload: s.workload.clone(),
                    energy_kwh: 0.0,
                    actual_gco2e: 0.0,
                    best_gco2e: 0.0,
                    saving_gco2e: 0.0,
                    saving_percent: None,
                    as_forecast_runs: 0,
                    as_forecast_saving_gco2e: 0.0,
                    runs_priced: 0,
                    runs_unpriced: 0,
                    runs: Vec::new(),
                });
                by_workload.len() - 1
            }
        };
        let entry = &mut by_workload[position];
        for run in runs(&s.hours) {
            let actual = run.emissions_at(hindsight, Duration::zero());
            let best = best_placement(&run, hindsight, flex, step);
            let (best_move, as_forecast) = match actual {
                Some(actual) => {
                    let forecast = forecast_as_of(zone_points, &run, flex);
                    (
                        best.as_ref()
                            .and_then(|b| moved(&run, hindsight, actual, b)),
                        best_placement(&run, &forecast, flex, step)
                            .and_then(|choice| moved(&run, hindsight, actual, &choice)),
                    )
                }
                None => (None, None),
            };
            match (actual, &best_move) {
                (Some(actual), Some(best)) => {
                    entry.runs_priced += 1;
                    entry.energy_kwh += run.total_kwh();
                    entry.actual_gco2e += actual;
                    entry.best_gco2e += best.emissions_gco2e;
                }
                _ => entry.runs_unpriced += 1,
            }
            if let Some(choice) = &as_forecast {
                entry.as_forecast_runs += 1;
                entry.as_forecast_saving_gco2e += choice.saving_gco2e;
            }
            entry.runs.push(RunOpportunity {
                site: s.site.clone(),
                zone: s.zone.clone(),
                start: run.start,
                end: run.end(),
                energy_kwh: run.total_kwh(),
                actual_gco2e: actual,
                best_kinds: best.as_ref().map(|b| b.kinds),
                best: best_move,
                as_forecast,
            });
        }
    }
    for w in &mut by_workload {
        w.saving_gco2e = w.actual_gco2e - w.best_gco2e;
        w.saving_percent = percent(w.saving_gco2e, w.actual_gco2e);
        w.runs
            .sort_by(|a, b| a.start.cmp(&b.start).then(a.site.cmp(&b.site)));
    }
    by_workload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::intensity::{PointKind, Signal};
    use crate::insights::curve::tests::series;

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().unwrap()
    }

    #[test]
    fn runs_split_where_energy_stops() {
        let hours = [
            (at("2026-03-01T00:00:00Z"), 1.0),
            (at("2026-03-01T01:00:00Z"), 2.0),
            (at("2026-03-01T02:00:00Z"), 0.0),
            (at("2026-03-01T03:00:00Z"), 3.0),
            (at("2026-03-01T05:00:00Z"), 4.0),
        ];
        let runs = runs(&hours);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].energy_kwh, [1.0, 2.0]);
        assert_eq!(runs[1].start, at("2026-03-01T03:00:00Z"));
        assert_eq!(runs[2].total_kwh(), 4.0);
    }

    #[test]
    fn the_best_start_keeps_the_profile_and_prices_every_hour() {
        // Hourly intensity from 00:00: 300, 200, 100, 100, 400, 500.
        // A run at 01:00 of 2 kWh then 1 kWh: actual 2 x 200 + 1 x 100 = 500 g.
        // Moved +1 h: 2 x 100 + 1 x 100 = 300 g; +2 h: 2 x 100 + 1 x 400 = 600 g;
        // -1 h: 2 x 300 + 1 x 200 = 800 g. With half-hour steps, +30 min prices the first hour at
        // (200 + 100) / 2 = 150 and the second at 100: 2 x 150 + 100 = 400 g. Best: +1 h, 300 g.
        let curve = Curve::of_signal(
            &series(
                "2026-03-01T00:00:00Z",
                60,
                &[300.0, 200.0, 100.0, 100.0, 400.0, 500.0],
                PointKind::Actual,
            ),
            Signal::Average,
        );
        let run = Run {
            start: at("2026-03-01T01:00:00Z"),
            energy_kwh: vec![2.0, 1.0],
        };
        assert_eq!(run.emissions_at(&curve, Duration::zero()), Some(500.0));
        assert_eq!(run.emissions_at(&curve, Duration::minutes(30)), Some(400.0));
        let best = best_placement(&run, &curve, Duration::hours(2), Duration::minutes(30)).unwrap();
        assert_eq!(best.offset, Duration::hours(1));
        assert_eq!(best.emissions_gco2e, 300.0);
        assert_eq!(best.start, at("2026-03-01T02:00:00Z"));
        // -2 h would start before the first point: not a candidate, not a guess.
        assert_eq!(run.emissions_at(&curve, Duration::hours(-2)), None);
    }

    #[test]
    fn the_forecast_choice_is_priced_at_what_the_grid_then_did() {
        // Actuals hourly from 00:00: 300, 200, 100, 100, 400, 500 (as above). The forecast
        // stored at 00:30, before the 01:00 run, promised 50 for 03:00-05:00 and 250 elsewhere,
        // so it picks +2 h (2 x 50 + 1 x 50 = 150 g by the forecast). The grid then did 100 and
        // 400: 2 x 100 + 1 x 400 = 600 g against the 500 g the run emitted, a saving of -100 g.
        // A forecast stored after the run started (01:30) says 0 everywhere and is ignored.
        let mut points = series(
            "2026-03-01T00:00:00Z",
            60,
            &[300.0, 200.0, 100.0, 100.0, 400.0, 500.0],
            PointKind::Actual,
        );
        let mut forecast = series(
            "2026-03-01T00:00:00Z",
            60,
            &[250.0, 250.0, 250.0, 50.0, 50.0, 250.0],
            PointKind::Forecast,
        );
        let mut late = series("2026-03-01T00:00:00Z", 60, &[0.0; 6], PointKind::Forecast);
        forecast
            .iter_mut()
            .for_each(|p| p.received_at = at("2026-03-01T00:30:00Z"));
        late.iter_mut()
            .for_each(|p| p.received_at = at("2026-03-01T01:30:00Z"));
        points.append(&mut forecast);
        points.append(&mut late);
        let series = HourlyEnergy {
            workload: "batch".into(),
            site: "fra1".into(),
            zone: "GB".into(),
            hours: vec![
                (at("2026-03-01T01:00:00Z"), 2.0),
                (at("2026-03-01T02:00:00Z"), 1.0),
            ],
        };
        let found = opportunities(
            &[series],
            &HashMap::from([("GB".to_string(), points)]),
            Duration::hours(2),
            Duration::minutes(15),
        );
        let run = &found[0].runs[0];
        assert_eq!(run.actual_gco2e, Some(500.0));
        assert_eq!(run.best.as_ref().unwrap().emissions_gco2e, 300.0);
        let choice = run.as_forecast.as_ref().unwrap();
        assert_eq!(choice.offset_min, 120);
        assert_eq!(choice.emissions_gco2e, 600.0);
        assert_eq!(choice.saving_gco2e, -100.0);
        assert_eq!(found[0].as_forecast_runs, 1);
        assert_eq!(found[0].saving_gco2e, 200.0);
    }
}
