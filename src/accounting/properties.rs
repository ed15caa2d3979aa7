//! Invariants of DESIGN §3 over generated readings and intensity.
use super::embodied::{EMBODIED_G, EMBODIED_KNOWN_SHARE};
use super::tests::{hours, point, readings, value, Setup};
use super::timeline::Granularity;
use super::*;
use crate::domain::embodied::{HardwareSpec, Reservation, SharedBy};
use crate::domain::intensity::PointKind;
use proptest::prelude::*;

fn day_readings() -> impl Strategy<Value = Vec<(u32, i32, f64, u8)>> {
    // (start second of the day, duration_s, energy_j, workload)
    prop::collection::vec((0u32..86_000, 1i32..=3600, 0.0f64..5e6, 0u8..4), 1..40)
}

fn holds() -> impl Strategy<Value = Vec<(u32, u32, u8, u8)>> {
    // (start minute, length in minutes, workload, vCPUs): at most 6 x 7 of 64, never overbooked.
    prop::collection::vec((0u32..1500, 1u32..600, 0u8..4, 1u8..8), 0..6)
}

/// `setup` with a 64-vCPU machine at fra1 and these reservations of acme's workloads.
fn holding(mut setup: Setup, holds: &[(u32, u32, u8, u8)]) -> Setup {
    let machine = HardwareSpec {
        site: "fra1".into(),
        class: "server-2s-256gb".into(),
        embodied_kgco2e: None,
        lifespan_years: None,
        shared_by: SharedBy::Vcpu,
        total: 64.0,
        in_service: "2025-01-01".parse().unwrap(),
    }
    .parse(Id::parse("s1").unwrap())
    .unwrap();
    let base = tests::t("2026-03-01T00:00:00Z");
    let reservations: Vec<Reservation> = holds
        .iter()
        .enumerate()
        .map(|(i, (start, minutes, workload, vcpus))| {
            let from = base + chrono::Duration::minutes(i64::from(*start));
            Reservation {
                id: Id::parse(&format!("r{i}")).unwrap(),
                hardware: machine.id.clone(),
                customer: Id::parse("acme").unwrap(),
                workload: Id::parse(&format!("w{workload}")).unwrap(),
                from,
                to: from + chrono::Duration::minutes(i64::from(*minutes)),
                reserved: f64::from(*vcpus),
            }
        })
        .collect();
    setup.holdings = Holdings::new(&[machine], &reservations, None, &[], &[]);
    setup
}

/// IT energy whose workload held hardware: what `embodied_known_share` is a share of.
fn known_kwh(frame: &DataFrame, row: usize) -> f64 {
    value(frame, EMBODIED_KNOWN_SHARE, row) * value(frame, IT_KWH, row)
}

fn setup(gaps: &[bool]) -> Setup {
    // Half-hour points with some gaps, carried forward or defaulted.
    let mut points = Vec::new();
    for (i, gap) in gaps.iter().enumerate() {
        if *gap {
            continue;
        }
        let start = tests::t("2026-03-01T00:00:00Z") + chrono::Duration::minutes(30 * i as i64);
        let end = start + chrono::Duration::minutes(30);
        points.push(point(
            &start.to_rfc3339(),
            &end.to_rfc3339(),
            50.0 + 10.0 * i as f64,
            if i % 3 == 0 {
                PointKind::Forecast
            } else {
                PointKind::Actual
            },
            "2026-03-02T00:00:00Z",
        ));
    }
    let mut setup = Setup::new(points).zone(Some(300.0), Some(450.0));
    setup.max_carry = chrono::Duration::minutes(45);
    // Meters measured the PUE over some stretches (edges off the half hours): 1.1 to 1.58.
    let base = tests::t("2026-03-01T00:00:00Z");
    let measured = (0..48)
        .filter(|i| i % 5 == 2)
        .map(|i| super::measured_pue::PuePiece {
            start: base + chrono::Duration::minutes(30 * i + 7),
            end: base + chrono::Duration::minutes(30 * i + 41),
            pue: 1.1 + 0.01 * i as f64,
        })
        .collect();
    setup.measured_pue = HashMap::from([(Id::parse("fra1").unwrap(), measured)]);
    setup
}

fn rows(input: &[(u32, i32, f64, u8)]) -> Vec<(String, String, String, i32, f64)> {
    let base = tests::t("2026-03-01T00:00:00Z");
    input
        .iter()
        .map(|(second, duration, energy, workload)| {
            let start = base + chrono::Duration::seconds(i64::from(*second));
            (
                "acme".to_owned(),
                format!("w{workload}"),
                start.to_rfc3339(),
                *duration,
                *energy,
            )
        })
        .collect()
}

fn frame(rows: &[(String, String, String, i32, f64)]) -> LazyFrame {
    let borrowed: Vec<(&str, &str, &str, i32, f64)> = rows
        .iter()
        .map(|(c, w, s, d, e)| (c.as_str(), w.as_str(), s.as_str(), *d, *e))
        .collect();
    readings(&borrowed)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn totals_do_not_depend_on_grouping_or_bucket(input in day_readings(), gaps in prop::collection::vec(any::<bool>(), 48), holds in holds()) {
        let setup = holding(setup(&gaps), &holds);
        let rows = rows(&input);
        let mut window = hours("2026-03-01T00:00:00Z", "2026-03-02T02:00:00Z");
        let baseline = setup.run(&window, &[], frame(&rows)).totals;
        for (granularity, group_by) in [
            (Granularity::Hour, vec![GroupKey::Workload]),
            (Granularity::Day, vec![GroupKey::Customer, GroupKey::Site]),
            (Granularity::Total, vec![GroupKey::Zone, GroupKey::Workload]),
        ] {
            window.granularity = granularity;
            let report = setup.run(&window, &group_by, frame(&rows));
            for column in [IT_KWH, FACILITY_KWH, LOCATION_G, MARKET_G, READINGS, EMBODIED_G] {
                prop_assert!(close(value(&report.totals, column, 0), value(&baseline, column, 0)), "{column}");
                let summed: f64 = (0..report.rows.height()).map(|i| value(&report.rows, column, i)).sum();
                if column != READINGS {
                    prop_assert!(close(summed, value(&baseline, column, 0)), "rows sum to totals: {column}");
                }
            }
            let known: f64 = (0..report.rows.height()).map(|i| known_kwh(&report.rows, i)).sum();
            prop_assert!(close(known, known_kwh(&baseline, 0)), "known energy");
            let measured = |frame: &DataFrame, i| value(frame, PUE_MEASURED_SHARE, i) * value(frame, FACILITY_KWH, i);
            let rows_measured: f64 = (0..report.rows.height()).map(|i| measured(&report.rows, i)).sum();
            prop_assert!(close(rows_measured, measured(&baseline, 0)), "energy at a measured PUE");
        }
    }

    #[test]
    fn energy_is_conserved_and_quality_shares_sum_to_one(input in day_readings(), gaps in prop::collection::vec(any::<bool>(), 48)) {
        let setup = setup(&gaps);
        let rows = rows(&input);
        let report = setup.run(&hours("2026-03-01T00:00:00Z", "2026-03-02T02:00:00Z"), &[GroupKey::Workload], frame(&rows));
        let expected_kwh: f64 = input.iter().map(|(_, _, e, _)| e / 3.6e6).sum();
        prop_assert!(close(value(&report.totals, IT_KWH, 0), expected_kwh));
        for i in 0..report.rows.height() {
            if value(&report.rows, FACILITY_KWH, i) > 0.0 {
                let shares: f64 = QUALITY_COLUMNS.iter().map(|q| value(&report.rows, q, i)).sum();
                prop_assert!(close(shares, 1.0), "row {i}: {shares}");
            }
        }
    }

    #[test]
    fn a_window_split_in_two_adds_up_to_the_whole(input in day_readings(), holds in holds()) {
        let setup = holding(setup(&[false; 48]), &holds);
        let rows = rows(&input);
        let whole = setup.run(&hours("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"), &[], frame(&rows)).totals;
        let morning = setup.run(&hours("2026-03-01T00:00:00Z", "2026-03-01T12:00:00Z"), &[], frame(&rows)).totals;
        let evening = setup.run(&hours("2026-03-01T12:00:00Z", "2026-03-02T00:00:00Z"), &[], frame(&rows)).totals;
        for column in [IT_KWH, FACILITY_KWH, LOCATION_G, MARKET_G, EMBODIED_G] {
            prop_assert!(close(value(&morning, column, 0) + value(&evening, column, 0), value(&whole, column, 0)), "{column}");
        }
        prop_assert!(close(known_kwh(&morning, 0) + known_kwh(&evening, 0), known_kwh(&whole, 0)), "known energy");
    }

    #[test]
    fn row_order_chunks_and_long_names_change_nothing(
        (input, shuffled) in day_readings().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        cut in 0usize..40,
    ) {
        // The splitter sums runs of equal (site, customer, workload) and compares string views:
        // names past 12 bytes live out of line, and shuffled rows break every run.
        let long = |rows: Vec<(String, String, String, i32, f64)>| -> Vec<_> {
            rows.into_iter().map(|(c, w, s, d, e)| (c, format!("{w}-with-a-name-past-the-inline-limit"), s, d, e)).collect()
        };
        let setup = setup(&[false; 48]);
        let window = hours("2026-03-01T00:00:00Z", "2026-03-02T02:00:00Z");
        let ordered = setup.run(&window, &[GroupKey::Workload], frame(&long(rows(&input))));
        let shuffled = long(rows(&shuffled));
        let (head, tail) = shuffled.split_at(cut.min(shuffled.len()));
        let chunked = concat([frame(head), frame(tail)], UnionArgs { rechunk: false, ..Default::default() }).unwrap();
        let report = setup.run(&window, &[GroupKey::Workload], chunked);
        prop_assert_eq!(report.rows.height(), ordered.rows.height());
        for column in [IT_KWH, FACILITY_KWH, LOCATION_G, MARKET_G, READINGS] {
            for i in 0..report.rows.height() {
                prop_assert!(close(value(&report.rows, column, i), value(&ordered.rows, column, i)), "{column} row {i}");
            }
        }
    }
}
