//! The rollup path against the raw path (DESIGN §7): on random readings, with edges on and off
//! the slot grid, windows and buckets on and off it, late readings, corrections and intensity
//! revisions, a report read from rollups (and the readings of its dirty slots) equals the report
//! read from the readings, every figure of every row to 1e-9 relative.
use super::rollup::{customer_rows, rollup_rows, SlotPlan};
use super::tests::{point, site, t, Setup};
use super::timeline::{Granularity, Window};
use super::*;
use crate::domain::intensity::PointKind;
use crate::domain::reading::ReadingBatch;
use crate::domain::{InstrumentKind, PueEntry};
use chrono::Duration;
use proptest::prelude::*;

const BASE: &str = "2026-03-01T00:00:00Z";

/// (site, customer, workload, start second from BASE, duration_s, energy_j).
type Row = (u8, u8, u8, u32, i32, f64);

fn readings() -> impl Strategy<Value = Vec<Row>> {
    // Two days and a bit, readings from a second to an hour, some on the grid.
    let start = prop_oneof![0u32..180_000, (0u32..600).prop_map(|m| m * 300)];
    prop::collection::vec(
        (0u8..2, 0u8..2, 0u8..3, start, 1i32..=3600, 0.0f64..5e6),
        1..60,
    )
}

/// Newest wins: later rows replace earlier ones of the same identity (corrections, re-sends).
fn resolved(rows: &[Row]) -> Vec<Row> {
    let mut latest: Vec<Row> = Vec::new();
    for row in rows {
        let same = |r: &Row| (r.0, r.1, r.2, r.3) == (row.0, row.1, row.2, row.3);
        match latest.iter_mut().find(|r| same(r)) {
            Some(existing) => *existing = *row,
            None => latest.push(*row),
        }
    }
    latest
}

fn frame(rows: &[Row]) -> DataFrame {
    let base = t(BASE).timestamp_micros();
    let mut batch = ReadingBatch::default();
    for (site, customer, workload, second, duration, energy) in rows {
        batch.site.push(["fra1", "lon1"][*site as usize]);
        batch.customer.push(["acme", "globex"][*customer as usize]);
        batch.workload.push(&format!("w{workload}"));
        batch.start_us.push(base + i64::from(*second) * 1_000_000);
        batch.duration_s.push(*duration);
        batch.energy_j.push(Some(*energy));
        batch.power_w.push(None);
    }
    crate::storage::readings::frame(batch).unwrap()
}

/// Two sites in one zone, half-hour points with gaps, and edges off the grid where `off_grid`:
/// a PUE schedule entry at 12:03, measured PUE from :07 to :41, an instrument from 09:02:30.
fn setup(gaps: &[bool], revised: bool, off_grid: bool) -> Setup {
    let mut points = Vec::new();
    for (i, gap) in gaps.iter().enumerate() {
        if *gap {
            continue;
        }
        let start = t(BASE) + Duration::minutes(30 * i as i64);
        let end = start + Duration::minutes(30);
        let (from, to) = (start.to_rfc3339(), end.to_rfc3339());
        let kind = [PointKind::Forecast, PointKind::Actual][i % 2];
        points.push(point(&from, &to, 50.0 + 10.0 * (i % 7) as f64, kind, BASE));
        if revised && i % 3 == 0 {
            // A late actual supersedes whatever was there.
            points.push(point(
                &from,
                &to,
                333.0,
                PointKind::Actual,
                "2026-03-05T00:00:00Z",
            ));
        }
    }
    let mut setup = Setup::new(points).zone(Some(300.0), Some(450.0));
    setup.max_carry = Duration::minutes(45);
    let entry = |at: &str, pue| PueEntry { from: t(at), pue };
    let mut schedule = vec![entry("2026-03-01T06:00:00Z", 1.3)];
    if off_grid {
        schedule.push(entry("2026-03-01T12:03:00Z", 1.7));
        let base = t(BASE);
        let measured = (0..40)
            .filter(|i| i % 4 == 1)
            .map(|i| measured_pue::PuePiece {
                start: base + Duration::minutes(30 * i + 7),
                end: base + Duration::minutes(30 * i + 41),
                pue: 1.1 + 0.01 * i as f64,
            })
            .collect();
        setup.measured_pue = HashMap::from([(Id::parse("lon1").unwrap(), measured)]);
    }
    setup.sites = vec![
        site("fra1", "GB", 1.5, schedule),
        site("lon1", "GB", 1.2, vec![]),
    ];
    let offset = if off_grid { 150 } else { 0 };
    setup.instruments = vec![Instrument {
        id: Id::parse("ppa").unwrap(),
        site: Id::parse("fra1").unwrap(),
        customer: None,
        from: t("2026-03-01T09:00:00Z") + Duration::seconds(offset),
        to: t("2026-03-01T20:00:00Z"),
        energy_mwh: 0.004,
        gco2e_per_kwh: 0.0,
        kind: InstrumentKind::Ppa,
    }];
    setup
}

/// The same report with `rows` read raw, and read from rollups for the dates `from_rollups` picks
/// (by the reading's start day) with the rest raw, as the report layer mixes them: customer
/// rollup rows where `customers` and the report does not group by workload.
fn both(
    setup: &Setup,
    (window, group_by): (&Window, &[GroupKey]),
    rows: &[Row],
    from_rollups: impl Fn(u32) -> bool,
    customers: bool,
) -> (Report, Report) {
    let all = frame(rows);
    let raw = setup.run(window, group_by, all.clone().lazy());
    let (served, unserved): (Vec<Row>, Vec<Row>) =
        rows.iter().partition(|r| from_rollups(r.3 / 86_400));
    let (served, unserved) = (frame(&served), frame(&unserved));
    let mut rollups = rollup_rows(&served).unwrap();
    if customers && !group_by.contains(&GroupKey::Workload) {
        rollups = customer_rows(&rollups).unwrap();
    }
    let defaults = HashMap::new();
    let context = Context {
        sites: &setup.sites,
        zones: &setup.zones,
        default_factors: &defaults,
        points: &setup.points,
        instruments: &setup.instruments,
        holdings: &setup.holdings,
        measured_pue: &setup.measured_pue,
        it_pieces: &setup.it_pieces,
        capacities: &setup.capacities,
        max_carry_forward: setup.max_carry,
    };
    let plan = SlotPlan::new(&context, window);
    let pieces = plan.pieces(&rollups, &served).unwrap();
    let rolled = setup.run_energy(window, group_by, || Energy {
        measured: unserved.clone().lazy(),
        modelled: None,
        pieces: Some(pieces.clone().lazy()),
    });
    (raw, rolled)
}

fn same(a: &DataFrame, b: &DataFrame) -> Result<(), String> {
    if a.height() != b.height() {
        return Err(format!("{} rows against {}", a.height(), b.height()));
    }
    for column in a.columns() {
        let text = |e: PolarsError| e.to_string();
        let (x, y) = (column, b.column(column.name()).map_err(text)?);
        for row in 0..a.height() {
            let (p, q) = (x.get(row).map_err(text)?, y.get(row).map_err(text)?);
            let (Some(p), Some(q)) = (p.extract::<f64>(), q.extract::<f64>()) else {
                if p != q {
                    return Err(format!("{} row {row}: {p} against {q}", column.name()));
                }
                continue;
            };
            if (p - q).abs() > 1e-9 * p.abs().max(q.abs()).max(1e-9) {
                return Err(format!("{} row {row}: {p} against {q}", column.name()));
            }
        }
    }
    Ok(())
}

fn window(from_min: u32, minutes: u32, off_grid: bool, granularity: Granularity, tz: u8) -> Window {
    let shift = if off_grid {
        Duration::seconds(450)
    } else {
        Duration::zero()
    };
    let from = t(BASE) + Duration::minutes(i64::from(from_min) * 5) + shift;
    Window {
        from,
        to: from + Duration::minutes(i64::from(minutes) * 5),
        granularity,
        tz: [
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
            chrono_tz::Asia::Kathmandu,
        ][tz as usize],
    }
}

fn granularity() -> impl Strategy<Value = Granularity> {
    prop_oneof![
        Just(Granularity::Hour),
        Just(Granularity::Day),
        Just(Granularity::Total)
    ]
}

fn group_by() -> impl Strategy<Value = Vec<GroupKey>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![GroupKey::Workload]),
        Just(vec![GroupKey::Customer, GroupKey::Site]),
        Just(vec![GroupKey::Zone]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rollups_give_the_raw_answer(
        sent in readings(),
        late in readings(),
        gaps in prop::collection::vec(prop::bool::weighted(0.2), 110),
        (revised, off_grid_edges, off_grid_window) in (any::<bool>(), any::<bool>(), any::<bool>()),
        (from_min, minutes) in (0u32..400, 1u32..400),
        granularity in granularity(),
        tz in 0u8..3,
        group_by in group_by(),
        served_days in any::<u8>(),
        customers in any::<bool>(),
    ) {
        let setup = setup(&gaps, revised, off_grid_edges);
        // Late readings and corrections arrive after the first ones; the newest of each wins.
        let mut rows = sent.clone();
        rows.extend(late.iter().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5 * 0.5)));
        rows.extend(sent.iter().take(5).map(|r| (r.0, r.1, r.2, r.3, r.4, r.5 + 1.0)));
        let rows = resolved(&rows);
        let window = window(from_min, minutes, off_grid_window, granularity, tz);
        let served = |day: u32| served_days & (1 << day) != 0;
        let (raw, rolled) = both(&setup, (&window, &group_by), &rows, served, customers);
        prop_assert_eq!(same(&raw.rows, &rolled.rows), Ok(()), "rows");
        prop_assert_eq!(same(&raw.totals, &rolled.totals), Ok(()), "totals");
    }
}

#[test]
fn a_slot_keeps_its_exact_share_and_counts() {
    // 10:02:30 for 10 minutes: 150 s in the 10:00 slot, 300 s in 10:05, 150 s in 10:10.
    let rows = [(0, 0, 0, 36_150, 600, 600.0)];
    let rolled = rollup_rows(&frame(&rows)).unwrap();
    let energy: Vec<f64> = rolled
        .column("energy_j")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(energy, vec![150.0, 300.0, 150.0]);
    let started: Vec<i64> = rolled
        .column("readings_started")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let crossing: Vec<i64> = rolled
        .column("readings_crossing")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!((started, crossing), (vec![1, 0, 0], vec![0, 1, 1]));
}

#[test]
fn a_customer_slot_sums_its_workloads_slots() {
    // w0 from 10:02:30 for 10 minutes (600 J, as above); w1 from 10:00 for 5 minutes (300 J).
    let rows = [(0, 0, 0, 36_150, 600, 600.0), (0, 0, 1, 36_000, 300, 300.0)];
    let summed = customer_rows(&rollup_rows(&frame(&rows)).unwrap()).unwrap();
    let column = |name| {
        summed
            .column(name)
            .unwrap()
            .as_materialized_series()
            .clone()
    };
    let energy: Vec<f64> = column("energy_j")
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(energy, vec![150.0 + 300.0, 300.0, 150.0]);
    let counts = |name| -> Vec<i64> { column(name).i64().unwrap().into_no_null_iter().collect() };
    assert_eq!(
        (counts("readings_started"), counts("readings_crossing")),
        (vec![2, 0, 0], vec![0, 1, 1])
    );
    let workloads = column("workload");
    let workloads: Vec<_> = workloads.str().unwrap().iter().flatten().collect();
    assert_eq!(workloads, vec![super::rollup::ALL_WORKLOADS; 3]);
}
