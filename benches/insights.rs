//! Insights at scale: the greenest-window search over a year of 5-minute points for 50 zones, and a
//! footprint forecast for 400 workloads (35 days of hourly history each), each against a baseline
//! run in the same process: a direct scan averaging every window's points one by one, and the
//! seasonal-naive backtest alone.
//! Run: `cargo bench --bench insights` (`--profile dev` for the CI profile's figures).
use carbon_ledger::accounting::timeline::{Granularity, Window};
use carbon_ledger::domain::intensity::{IntensityPoint, PointKind, Signal};
use carbon_ledger::domain::ZoneCode;
use carbon_ledger::insights::curve::Curve;
use carbon_ledger::insights::footprint_forecast::{forecast_footprint, Request};
use carbon_ledger::insights::forecast::{backtest_mae, Model};
use carbon_ledger::insights::shift::HourlyEnergy;
use carbon_ledger::insights::windows::{greenest, rolling};
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::Instant;

const ZONES: usize = 50;
const POINTS_PER_YEAR: usize = 365 * 288;
const JOB: Duration = Duration::hours(2);
const WORKLOADS: usize = 400;
const HISTORY_H: usize = 35 * 24;

fn start() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().expect("time")
}

/// A zone's year: a daily swing, a weekly one and noise, 5-minute points.
fn zone_year(zone: &ZoneCode, rng: &mut impl Rng) -> Vec<IntensityPoint> {
    let base = rng.gen_range(50.0..500.0);
    (0..POINTS_PER_YEAR)
        .map(|i| {
            let t = start() + Duration::minutes(5 * i as i64);
            let day = (i % 288) as f64 / 288.0;
            let value = base
                * (1.0 + 0.3 * (std::f64::consts::TAU * day).sin())
                * if (i / 288) % 7 >= 5 { 0.8 } else { 1.0 }
                + rng.gen_range(0.0..20.0);
            IntensityPoint {
                zone: zone.clone(),
                start: t,
                end: t + Duration::minutes(5),
                gco2e_per_kwh: value,
                kind: PointKind::Forecast,
                signal: Signal::Average,
                source: "bench".into(),
                source_detail: None,
                received_at: start(),
                written_by: None,
            }
        })
        .collect()
}

/// The baseline: every window's average summed point by point (points are a regular 5-minute
/// grid here, so a window is its 24 points).
fn direct_scan(points: &[IntensityPoint]) -> (usize, f64) {
    let per_window = (JOB.num_minutes() / 5) as usize;
    let mut best = (0, f64::INFINITY);
    for first in 0..=points.len() - per_window {
        let average = points[first..first + per_window]
            .iter()
            .map(|p| p.gco2e_per_kwh)
            .sum::<f64>()
            / per_window as f64;
        if average < best.1 {
            best = (first, average);
        }
    }
    best
}

fn windows() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let zones: Vec<Vec<IntensityPoint>> = (0..ZONES)
        .map(|z| {
            zone_year(
                &ZoneCode::parse(&format!("ZZ-{z}")).expect("zone"),
                &mut rng,
            )
        })
        .collect();
    let end = start() + Duration::days(365);
    let clock = Instant::now();
    let mut found = Vec::new();
    let (mut t_curve, mut t_roll, mut t_rank) = (0.0, 0.0, 0.0);
    for points in &zones {
        let c = Instant::now();
        let curve = Curve::of_signal(points, Signal::Average);
        t_curve += c.elapsed().as_secs_f64();
        let c = Instant::now();
        let candidates = rolling(&curve, start(), end, JOB, Duration::minutes(5));
        t_roll += c.elapsed().as_secs_f64();
        let c = Instant::now();
        found.push(greenest(candidates, 5));
        t_rank += c.elapsed().as_secs_f64();
    }
    let ours = clock.elapsed();
    let clock = Instant::now();
    let scanned: Vec<(usize, f64)> = zones.iter().map(|p| direct_scan(p)).collect();
    let baseline = clock.elapsed();
    for ((windows, (first, average)), points) in found.iter().zip(&scanned).zip(&zones) {
        let best = &windows[0];
        assert!((best.average_gco2e_per_kwh - average).abs() < 1e-6 * average);
        assert_eq!(best.start, points[*first].start);
    }
    println!(
        "windows: {ZONES} zones x {POINTS_PER_YEAR} points, a 2 h job over the year: {:.2} s \
         ({:.1} ms a zone: curve {t_curve:.2} s, every window's average {t_roll:.2} s, top 5 \
         ranked {t_rank:.2} s), direct scan for the best only {:.2} s; ratio {:.2}",
        ours.as_secs_f64(),
        ours.as_secs_f64() * 1e3 / ZONES as f64,
        baseline.as_secs_f64(),
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// Hourly energy with daily and weekly shapes, a trend and noise, different per workload.
fn workload(i: usize, rng: &mut impl Rng, now: DateTime<Utc>) -> HourlyEnergy {
    let scale = rng.gen_range(0.5..5.0);
    let hours = (0..HISTORY_H)
        .map(|h| {
            let hour = now - Duration::hours((HISTORY_H - h) as i64);
            let daily = (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
            let weekend = if (h / 24) % 7 >= 5 { 0.6 } else { 1.0 };
            let kwh = scale * (1.0 + 0.4 * daily) * weekend * (1.0 + 0.0005 * h as f64)
                + rng.gen_range(0.0..0.2 * scale);
            (hour, kwh)
        })
        .collect();
    HourlyEnergy {
        workload: format!("w{i}"),
        site: "fra1".into(),
        zone: "GB".into(),
        hours,
    }
}

fn forecasts() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let now = start() + Duration::days(60);
    let series: Vec<HourlyEnergy> = (0..WORKLOADS).map(|i| workload(i, &mut rng, now)).collect();
    let gb = ZoneCode::parse("GB").expect("zone");
    let points: Vec<IntensityPoint> = zone_year(&gb, &mut rng)
        .into_iter()
        .filter(|p| p.start >= now - Duration::days(35) && p.start < now + Duration::days(2))
        .collect();
    let curves = HashMap::from([("GB".to_string(), Curve::of_signal(&points, Signal::Average))]);
    let request = Request {
        window: Window {
            from: now,
            to: now + Duration::days(30),
            granularity: Granularity::Day,
            tz: chrono_tz::UTC,
        },
        level: 0.8,
    };
    let clock = Instant::now();
    let outcome = forecast_footprint(&series, &curves, request);
    let ours = clock.elapsed();
    assert_eq!(outcome.models.len(), WORKLOADS);
    let clock = Instant::now();
    let naive: f64 = series
        .iter()
        .map(|s| {
            let history: Vec<f64> = s.hours.iter().map(|(_, kwh)| *kwh).collect();
            backtest_mae(Model::SeasonalNaive, &history).expect("long enough")
        })
        .sum::<f64>()
        / WORKLOADS as f64;
    let baseline = clock.elapsed();
    let mae = outcome.models.iter().map(|m| m.mae_kwh).sum::<f64>() / WORKLOADS as f64;
    let mstl = outcome
        .models
        .iter()
        .filter(|m| m.model == Model::Mstl)
        .count();
    println!(
        "forecast: {WORKLOADS} workloads x {HISTORY_H} h of history, 30 days ahead by day: \
         {:.2} s ({:.1} ms a workload on {} threads: 4 MSTL backtest refits and the final fit); \
         the seasonal-naive backtest alone {:.3} s, ratio {:.0}; MSTL chosen for {mstl}, \
         backtest MAE {mae:.4} kWh against seasonal naive {naive:.4} (skill {:.2})",
        ours.as_secs_f64(),
        ours.as_secs_f64() * 1e3 / WORKLOADS as f64,
        rayon::current_num_threads(),
        baseline.as_secs_f64(),
        ours.as_secs_f64() / baseline.as_secs_f64(),
        1.0 - mae / naive
    );
}

fn main() {
    windows();
    forecasts();
}
