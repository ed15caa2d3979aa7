//! Golden tests: every expected number is worked out by hand in the comments.
use super::timeline::{Granularity, Window};
use super::*;
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use crate::domain::reading::ReadingBatch;
use crate::domain::{InstrumentKind, PueEntry, SiteSpec};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

pub(super) fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub(super) fn site(id: &str, zone: &str, pue: f64, schedule: Vec<PueEntry>) -> Site {
    SiteSpec {
        name: id.into(),
        zone: zone.into(),
        pue,
        pue_schedule: schedule,
        retired_at: None,
        allocation: Default::default(),
        power_model: None,
    }
    .parse(Id::parse(id).unwrap())
    .unwrap()
}

pub(super) fn point(
    start: &str,
    end: &str,
    value: f64,
    kind: PointKind,
    received: &str,
) -> IntensityPoint {
    IntensityPoint {
        zone: ZoneCode::parse("GB").unwrap(),
        start: t(start),
        end: t(end),
        gco2e_per_kwh: value,
        kind,
        signal: Signal::Average,
        source: "test".into(),
        source_detail: None,
        received_at: t(received),
        written_by: None,
    }
}

/// (customer, workload, start, duration_s, energy_j) at site fra1.
pub(super) fn readings(rows: &[(&str, &str, &str, i32, f64)]) -> LazyFrame {
    let mut batch = ReadingBatch::default();
    for (customer, workload, start, duration, energy) in rows {
        batch.site.push("fra1");
        batch.customer.push(customer);
        batch.workload.push(workload);
        batch.start_us.push(t(start).timestamp_micros());
        batch.duration_s.push(*duration);
        batch.energy_j.push(Some(*energy));
        batch.power_w.push(None);
    }
    crate::storage::readings::frame(batch).unwrap().lazy()
}

pub(super) struct Setup {
    pub sites: Vec<Site>,
    pub zones: HashMap<ZoneCode, Zone>,
    pub points: Vec<IntensityPoint>,
    pub instruments: Vec<Instrument>,
    pub holdings: Holdings,
    pub measured_pue: HashMap<Id, Vec<measured_pue::PuePiece>>,
    pub it_pieces: HashMap<Id, Vec<measured_pue::ItPiece>>,
    pub capacities: Capacities,
    pub max_carry: Duration,
}

impl Setup {
    pub fn new(points: Vec<IntensityPoint>) -> Self {
        Self {
            sites: vec![site("fra1", "GB", 1.5, vec![])],
            zones: HashMap::new(),
            points,
            instruments: vec![],
            holdings: Holdings::default(),
            measured_pue: HashMap::new(),
            it_pieces: HashMap::new(),
            capacities: Capacities::default(),
            max_carry: Duration::hours(2),
        }
    }

    pub fn zone(mut self, default: Option<f64>, residual_2026: Option<f64>) -> Self {
        let zone = ZoneCode::parse("GB").unwrap();
        self.zones.insert(
            zone.clone(),
            Zone {
                zone,
                default_gco2e_per_kwh: default,
                residual_mix_gco2e_per_kwh: residual_2026
                    .map(|r| BTreeMap::from([(2026, r)]))
                    .unwrap_or_default(),
            },
        );
        self
    }

    pub fn run(&self, window: &Window, group_by: &[GroupKey], readings: LazyFrame) -> Report {
        let energy = || Energy::measured(readings.clone());
        self.run_energy(window, group_by, energy)
    }

    /// `energy` gives the same measured and modelled readings for the window, the instruments'
    /// periods and the allocating sites.
    pub fn run_energy(
        &self,
        window: &Window,
        group_by: &[GroupKey],
        energy: impl Fn() -> Energy,
    ) -> Report {
        let defaults = HashMap::new();
        let context = Context {
            sites: &self.sites,
            zones: &self.zones,
            default_factors: &defaults,
            points: &self.points,
            instruments: &self.instruments,
            holdings: &self.holdings,
            measured_pue: &self.measured_pue,
            it_pieces: &self.it_pieces,
            capacities: &self.capacities,
            max_carry_forward: self.max_carry,
        };
        footprint(&context, window, group_by, energy(), energy(), energy()).unwrap()
    }
}

pub(super) fn hours(from: &str, to: &str) -> Window {
    Window {
        from: t(from),
        to: t(to),
        granularity: Granularity::Hour,
        tz: chrono_tz::UTC,
    }
}

pub(super) fn value(frame: &DataFrame, column: &str, row: usize) -> f64 {
    let c = frame.column(column).unwrap();
    match c.dtype() {
        DataType::Int64 => c.i64().unwrap().get(row).unwrap() as f64,
        _ => c.f64().unwrap().get(row).unwrap(),
    }
}

fn text(frame: &DataFrame, column: &str, row: usize) -> String {
    frame
        .column(column)
        .unwrap()
        .str()
        .unwrap()
        .get(row)
        .unwrap()
        .to_owned()
}

fn bucket(frame: &DataFrame, row: usize) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(
        frame
            .column(BUCKET)
            .unwrap()
            .i64()
            .unwrap()
            .get(row)
            .unwrap(),
    )
    .unwrap()
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

const KWH: f64 = 3.6e6;

#[test]
fn a_reading_across_a_half_hour_boundary_is_split_by_time() {
    let setup = Setup::new(vec![
        point(
            "2026-03-01T09:00:00Z",
            "2026-03-01T09:30:00Z",
            100.0,
            PointKind::Actual,
            "2026-03-01T10:00:00Z",
        ),
        point(
            "2026-03-01T09:30:00Z",
            "2026-03-01T10:00:00Z",
            200.0,
            PointKind::Actual,
            "2026-03-01T10:00:00Z",
        ),
    ]);
    // 09:15-09:45, 1 kWh of IT energy: half in each half hour.
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[],
        readings(&[("acme", "api", "2026-03-01T09:15:00Z", 1800, KWH)]),
    );
    let totals = &report.totals;
    close(value(totals, IT_KWH, 0), 1.0);
    close(value(totals, FACILITY_KWH, 0), 1.5); // 1 kWh x PUE 1.5
    close(value(totals, LOCATION_G, 0), 225.0); // 0.75 x 100 + 0.75 x 200
    close(value(totals, LOCATION_INTENSITY, 0), 150.0); // 225 / 1.5
    close(value(totals, MARKET_G, 0), 225.0); // no residual mix: location-based
    close(value(totals, MARKET_FALLBACK_SHARE, 0), 1.0);
    close(value(totals, READINGS, 0), 1.0);
    close(value(totals, "quality_actual", 0), 1.0);
    assert_eq!(report.rows.height(), 1);
}

#[test]
fn a_reading_across_a_pue_change_gets_each_pue_for_its_share() {
    let mut setup = Setup::new(vec![point(
        "2026-03-01T09:00:00Z",
        "2026-03-01T10:00:00Z",
        100.0,
        PointKind::Actual,
        "2026-03-01T10:00:00Z",
    )]);
    setup.sites = vec![site(
        "fra1",
        "GB",
        1.5,
        vec![PueEntry {
            from: t("2026-03-01T09:30:00Z"),
            pue: 1.2,
        }],
    )];
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[],
        readings(&[("acme", "api", "2026-03-01T09:15:00Z", 1800, KWH)]),
    );
    close(value(&report.totals, FACILITY_KWH, 0), 1.35); // 0.5 x 1.5 + 0.5 x 1.2
    close(value(&report.totals, LOCATION_G, 0), 135.0); // 1.35 x 100
}

#[test]
fn an_actual_point_replaces_the_forecast() {
    let setup = Setup::new(vec![
        point(
            "2026-03-01T09:00:00Z",
            "2026-03-01T10:00:00Z",
            300.0,
            PointKind::Forecast,
            "2026-03-01T08:00:00Z",
        ),
        point(
            "2026-03-01T09:00:00Z",
            "2026-03-01T10:00:00Z",
            250.0,
            PointKind::Actual,
            "2026-03-01T10:05:00Z",
        ),
    ]);
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[],
        readings(&[("acme", "api", "2026-03-01T09:00:00Z", 600, KWH)]),
    );
    close(value(&report.totals, LOCATION_G, 0), 375.0); // 1.5 kWh x 250, not x 300
    close(value(&report.totals, "quality_actual", 0), 1.0);
    close(value(&report.totals, "quality_forecast", 0), 0.0);
}

#[test]
fn a_gap_is_carried_forward_up_to_the_limit_then_the_default_factor_applies() {
    let mut setup = Setup::new(vec![point(
        "2026-03-01T09:00:00Z",
        "2026-03-01T09:30:00Z",
        200.0,
        PointKind::Actual,
        "2026-03-01T10:00:00Z",
    )])
    .zone(Some(400.0), None);
    setup.max_carry = Duration::hours(1); // the carry window ends at 10:30
    let report = setup.run(
        &hours("2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"),
        &[GroupKey::Workload],
        readings(&[
            // 0.1 kWh IT, 0.15 facility, inside the window: 0.15 x 200 = 30 g, carried forward.
            ("acme", "inside", "2026-03-01T10:00:00Z", 600, 0.1 * KWH),
            // 10:25-10:35 across the window's end: 0.075 x 200 + 0.075 x 400 = 15 + 30 = 45 g.
            ("acme", "across", "2026-03-01T10:25:00Z", 600, 0.1 * KWH),
        ]),
    );
    let rows = &report.rows;
    assert_eq!(text(rows, WORKLOAD, 0), "across");
    close(value(rows, LOCATION_G, 0), 45.0);
    close(value(rows, "quality_carried_forward", 0), 0.5);
    close(value(rows, "quality_default_factor", 0), 0.5);
    close(value(rows, LOCATION_G, 1), 30.0);
    close(value(&report.totals, LOCATION_G, 0), 75.0);
    close(value(&report.totals, "quality_carried_forward", 0), 0.75); // 0.225 of 0.3 kWh
    close(value(&report.totals, "quality_default_factor", 0), 0.25);
}

#[test]
fn without_any_factor_energy_counts_and_emissions_are_missing() {
    let setup = Setup::new(vec![]);
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[],
        readings(&[("acme", "api", "2026-03-01T09:00:00Z", 600, KWH)]),
    );
    close(value(&report.totals, FACILITY_KWH, 0), 1.5);
    close(value(&report.totals, LOCATION_G, 0), 0.0);
    close(value(&report.totals, "quality_missing", 0), 1.0);
}

fn instrument(id: &str, customer: Option<&str>, kwh: f64, factor: f64) -> Instrument {
    Instrument {
        id: Id::parse(id).unwrap(),
        site: Id::parse("fra1").unwrap(),
        customer: customer.map(|c| Id::parse(c).unwrap()),
        from: t("2026-03-01T09:00:00Z"),
        to: t("2026-03-01T10:00:00Z"),
        energy_mwh: kwh / 1000.0,
        gco2e_per_kwh: factor,
        kind: InstrumentKind::Ppa,
    }
}

fn one_hour_at_100() -> Vec<IntensityPoint> {
    vec![point(
        "2026-03-01T09:00:00Z",
        "2026-03-01T10:00:00Z",
        100.0,
        PointKind::Actual,
        "2026-03-01T10:00:00Z",
    )]
}

#[test]
fn a_site_instrument_covers_its_share_and_the_residual_mix_the_rest() {
    let mut setup = Setup::new(one_hour_at_100()).zone(None, Some(500.0));
    setup.instruments = vec![instrument("ppa", None, 0.5, 0.0)];
    // Two readings of 1 kWh IT: 3 kWh facility in the period; the PPA covers 0.5 / 3 = 1/6.
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[],
        readings(&[
            ("acme", "a", "2026-03-01T09:00:00Z", 3600, KWH),
            ("acme", "b", "2026-03-01T09:00:00Z", 3600, KWH),
        ]),
    );
    close(value(&report.totals, LOCATION_G, 0), 300.0); // 3 kWh x 100
    close(value(&report.totals, MARKET_G, 0), 1250.0); // 3 x (1/6 x 0 + 5/6 x 500)
    close(value(&report.totals, MARKET_FALLBACK_SHARE, 0), 0.0);
    close(value(&report.totals, MARKET_INSTRUMENT_SHARE, 0), 1.0 / 6.0);
}

#[test]
fn a_customer_instrument_applies_first_and_the_site_instrument_covers_what_is_left() {
    let mut setup = Setup::new(one_hour_at_100()).zone(None, Some(500.0));
    setup.instruments = vec![
        instrument("acme-go", Some("acme"), 0.75, 0.0), // 0.75 of acme's 1.5 kWh: share 0.5
        // Uncovered: acme 0.75 + globex 1.5 = 2.25 kWh; 0.9 kWh covers 0.4 of it.
        instrument("site-ppa", None, 0.9, 50.0),
    ];
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        &[GroupKey::Customer],
        readings(&[
            ("acme", "a", "2026-03-01T09:00:00Z", 3600, KWH),
            ("globex", "g", "2026-03-01T09:00:00Z", 3600, KWH),
        ]),
    );
    let rows = &report.rows;
    assert_eq!(text(rows, CUSTOMER, 0), "acme");
    // acme: 1.5 x (0.5 x 0 + 0.5 x (0.4 x 50 + 0.6 x 500)) = 1.5 x 160 = 240
    close(value(rows, MARKET_G, 0), 240.0);
    // globex: 1.5 x (0.4 x 50 + 0.6 x 500) = 1.5 x 320 = 480
    close(value(rows, MARKET_G, 1), 480.0);
    close(value(&report.totals, MARKET_G, 0), 720.0);
    // Covered: acme 0.5 + 0.5 x 0.4 = 0.7 of 1.5 kWh, globex 0.4 of 1.5 kWh; in all
    // (1.05 + 0.6) / 3 = 0.55, the same whether summed over the rows or not.
    close(value(rows, MARKET_INSTRUMENT_SHARE, 0), 0.7);
    close(value(rows, MARKET_INSTRUMENT_SHARE, 1), 0.4);
    close(value(&report.totals, MARKET_INSTRUMENT_SHARE, 0), 0.55);
}

#[test]
fn the_report_window_counts_only_the_part_of_a_reading_inside_it() {
    let setup = Setup::new(vec![point(
        "2026-03-01T09:00:00Z",
        "2026-03-01T11:00:00Z",
        100.0,
        PointKind::Actual,
        "2026-03-01T11:00:00Z",
    )]);
    let report = setup.run(
        &hours("2026-03-01T09:30:00Z", "2026-03-01T10:30:00Z"),
        &[],
        readings(&[("acme", "api", "2026-03-01T09:00:00Z", 3600, KWH)]),
    );
    close(value(&report.totals, IT_KWH, 0), 0.5); // 09:30-10:00 of 09:00-10:00
    close(value(&report.totals, LOCATION_G, 0), 75.0); // 0.75 kWh x 100
                                                       // The window starts mid-hour, so the first bucket is 09:00 (it holds 09:30-10:00).
    assert_eq!(bucket(&report.rows, 0), t("2026-03-01T09:00:00Z"));
}

#[test]
fn a_dst_day_in_london_is_23_hours() {
    let setup = Setup::new(vec![]).zone(Some(100.0), None);
    let window = Window {
        from: t("2026-03-28T00:00:00Z"),
        to: t("2026-03-31T00:00:00Z"),
        granularity: Granularity::Day,
        tz: chrono_tz::Europe::London,
    };
    let report = setup.run(
        &window,
        &[],
        readings(&[
            ("acme", "a", "2026-03-29T00:30:00Z", 60, KWH), // 00:30 GMT on the 29th
            ("acme", "a", "2026-03-29T22:30:00Z", 60, KWH), // 23:30 BST, still the 29th
            ("acme", "a", "2026-03-29T23:30:00Z", 60, KWH), // 00:30 BST on the 30th
        ]),
    );
    let rows = &report.rows;
    assert_eq!(rows.height(), 2);
    assert_eq!(bucket(rows, 0), t("2026-03-29T00:00:00Z"));
    close(value(rows, IT_KWH, 0), 2.0);
    assert_eq!(bucket(rows, 1), t("2026-03-29T23:00:00Z")); // midnight BST
    close(value(rows, IT_KWH, 1), 1.0);
}

#[test]
fn months_are_bucketed_in_the_callers_time_zone() {
    let setup = Setup::new(vec![]).zone(Some(100.0), None);
    let window = Window {
        from: t("2026-01-01T05:00:00Z"),
        to: t("2026-03-01T05:00:00Z"),
        granularity: Granularity::Month,
        tz: chrono_tz::America::New_York,
    };
    let report = setup.run(
        &window,
        &[],
        readings(&[
            ("acme", "a", "2026-02-01T04:30:00Z", 60, KWH), // 23:30 on Jan 31 in New York
            ("acme", "a", "2026-02-01T05:30:00Z", 60, 2.0 * KWH), // 00:30 on Feb 1
        ]),
    );
    let rows = &report.rows;
    assert_eq!(bucket(rows, 0), t("2026-01-01T05:00:00Z"));
    close(value(rows, IT_KWH, 0), 1.0);
    assert_eq!(bucket(rows, 1), t("2026-02-01T05:00:00Z"));
    close(value(rows, IT_KWH, 1), 2.0);
}

#[test]
fn a_reading_split_across_buckets_counts_in_each_and_once_in_the_totals() {
    let setup = Setup::new(vec![]).zone(Some(100.0), None);
    let report = setup.run(
        &hours("2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z"),
        &[],
        readings(&[("acme", "a", "2026-03-01T09:30:00Z", 3600, KWH)]),
    );
    assert_eq!(report.rows.height(), 2);
    close(value(&report.rows, READINGS, 0), 1.0);
    close(value(&report.rows, READINGS, 1), 1.0);
    close(value(&report.totals, READINGS, 0), 1.0);
}
