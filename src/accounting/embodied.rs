//! Embodied emissions in a footprint (Scope 3), per instant like every other figure: each
//! reservation's share of its machine's embodied emissions is spread over the report's buckets by
//! time, and each part of a reading learns whether its workload held hardware at that instant
//! (reservation edges are segment edges, so that is exact), which gives `embodied_known_share`.
use super::timeline::{Segment, Window};
use super::{BUCKET, SEG_ID, ZONE};
use crate::domain::embodied::{Hardware, Reservation};
use crate::domain::{Id, Site};
use crate::storage::readings::{CUSTOMER, SITE, WORKLOAD};
use chrono::{DateTime, Utc};
use polars::prelude::*;
use std::collections::{BTreeSet, HashMap};

pub const EMBODIED_G: &str = "embodied_gco2e";
pub const EMBODIED_KNOWN_SHARE: &str = "embodied_known_share";
/// Whether a part's workload held hardware over its segment.
pub(super) const HELD: &str = "hardware_held";

/// The reservations a report counts, each with its machine.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    held: Vec<(Reservation, Hardware)>,
}

impl Holdings {
    /// The reservations of `reservations` whose machine is known and that pass the report's
    /// filters (a customer, workloads, sites; empty: all).
    pub fn new(
        hardware: &[Hardware],
        reservations: &[Reservation],
        customer: Option<&Id>,
        workloads: &[Id],
        sites: &[Id],
    ) -> Self {
        let machines: HashMap<&Id, &Hardware> = hardware.iter().map(|h| (&h.id, h)).collect();
        let held = reservations
            .iter()
            .filter(|r| customer.is_none_or(|c| &r.customer == c))
            .filter(|r| workloads.is_empty() || workloads.contains(&r.workload))
            .filter_map(|r| Some((r.clone(), (*machines.get(&r.hardware)?).clone())))
            .filter(|(_, h)| sites.is_empty() || sites.contains(&h.site))
            .collect();
        Self { held }
    }

    /// Whether the report counts no reservation.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Where holdings at `site` change: reservation starts and ends.
    pub(super) fn edges(&self, site: &Id) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let site = site.clone();
        self.held
            .iter()
            .filter(move |(_, h)| h.site == site)
            .flat_map(|(r, _)| [r.from, r.to])
    }

    /// (segment, customer, workload) for every segment a workload held hardware of its site
    /// over; parts left-joined to it learn `HELD`.
    pub(super) fn held_segments(
        &self,
        segments: &[Segment],
        sites: &[Site],
    ) -> PolarsResult<DataFrame> {
        let mut rows: BTreeSet<(i64, &str, &str)> = BTreeSet::new();
        for (id, segment) in segments.iter().enumerate() {
            let site = &sites[segment.site].id;
            for (r, _) in self.held.iter().filter(|(_, h)| &h.site == site) {
                if r.from <= segment.start && r.to >= segment.end {
                    rows.insert((id as i64, r.customer.as_str(), r.workload.as_str()));
                }
            }
        }
        DataFrame::new(
            rows.len(),
            vec![
                Column::new(SEG_ID.into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
                Column::new(
                    CUSTOMER.into(),
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                ),
                Column::new(
                    WORKLOAD.into(),
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                ),
                Column::new(HELD.into(), vec![true; rows.len()]),
            ],
        )
    }

    /// Embodied grams per bucket, customer, workload, site and zone over [from, to): every
    /// reservation cut at the bucket edges, each piece amortised on its own.
    pub(super) fn per_bucket(&self, window: &Window, sites: &[Site]) -> PolarsResult<DataFrame> {
        let zones: HashMap<&Id, &str> = sites.iter().map(|s| (&s.id, s.zone.as_str())).collect();
        let (mut buckets, mut customers, mut workloads, mut site_ids, mut zone_codes, mut grams) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (reservation, hardware) in &self.held {
            let start = reservation.from.max(window.from);
            let end = reservation.to.min(window.to);
            if end <= start {
                continue;
            }
            let mut cuts = vec![start];
            cuts.extend(window.bucket_edges(start, end));
            cuts.push(end);
            cuts.dedup();
            for piece in cuts.windows(2).filter(|p| p[1] > p[0]) {
                buckets.push(window.bucket_start(piece[0]).timestamp_micros());
                customers.push(reservation.customer.as_str());
                workloads.push(reservation.workload.as_str());
                site_ids.push(hardware.site.as_str());
                zone_codes.push(zones.get(&hardware.site).copied().unwrap_or(""));
                grams.push(hardware.amortised_gco2e(reservation.reserved, piece[0], piece[1]));
            }
        }
        DataFrame::new(
            grams.len(),
            vec![
                Column::new(BUCKET.into(), buckets),
                Column::new(CUSTOMER.into(), customers),
                Column::new(WORKLOAD.into(), workloads),
                Column::new(SITE.into(), site_ids),
                Column::new(ZONE.into(), zone_codes),
                Column::new(EMBODIED_G.into(), grams),
            ],
        )
    }
}

/// `rows` (aggregated by `keys`, with figures `values`) and the embodied grams of the same keys
/// beside them: a bucket and group with hardware but no energy gets a row of its own (zero
/// figures), so the totals of every grouping carry the same grams.
pub(super) fn with_embodied(
    rows: LazyFrame,
    embodied: &DataFrame,
    keys: &[&str],
    values: &[&str],
) -> PolarsResult<LazyFrame> {
    let embodied = embodied.clone().lazy();
    if keys.is_empty() {
        let grams = embodied.select([col(EMBODIED_G).sum()]).collect()?;
        let total = grams.column(EMBODIED_G)?.f64()?.get(0).unwrap_or(0.0);
        return Ok(rows.with_column(lit(total).alias(EMBODIED_G)));
    }
    let by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    let grams = embodied.group_by(by.clone()).agg([col(EMBODIED_G).sum()]);
    let mut filled: Vec<Expr> = values
        .iter()
        .map(|v| col(*v).fill_null(lit(0)).alias(*v))
        .collect();
    filled.push(col(EMBODIED_G).fill_null(lit(0.0)));
    Ok(rows
        .join(
            grams,
            by.clone(),
            by,
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .with_columns(filled)
        .sort(keys.to_vec(), SortMultipleOptions::default()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hours, readings, t, value, Setup};
    use super::super::GroupKey;
    use super::*;
    use crate::domain::embodied::{HardwareSpec, SharedBy};

    fn machine(kg: f64, total: f64, shared_by: SharedBy) -> Hardware {
        HardwareSpec {
            site: "fra1".into(),
            class: "custom".into(),
            embodied_kgco2e: Some(kg),
            lifespan_years: Some(4.0),
            shared_by,
            total,
            in_service: "2025-01-01".parse().unwrap(),
        }
        .parse(Id::parse("s1").unwrap())
        .unwrap()
    }

    fn hold(customer: &str, workload: &str, from: &str, to: &str, reserved: f64) -> Reservation {
        Reservation {
            id: Id::parse(&format!("{customer}-{workload}-{from}").replace(['T', 'Z'], ""))
                .unwrap(),
            hardware: Id::parse("s1").unwrap(),
            customer: Id::parse(customer).unwrap(),
            workload: Id::parse(workload).unwrap(),
            from: t(from),
            to: t(to),
            reserved,
        }
    }

    fn setup(hardware: Hardware, reservations: &[Reservation]) -> Setup {
        let mut setup = Setup::new(vec![]);
        setup.holdings = Holdings::new(&[hardware], reservations, None, &[], &[]);
        setup
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9 * expected.abs().max(1.0),
            "{actual} != {expected}"
        );
    }

    #[test]
    fn the_sci_example_one_hour_of_a_tonne_over_four_years_lands_in_its_hour() {
        // 1,000 kg x 1 h / (4 x 8,760 h) x 1/1 = 28.538812785 g, all in the 09:00 bucket.
        let setup = setup(
            machine(1000.0, 1.0, SharedBy::Node),
            &[hold(
                "acme",
                "api",
                "2026-03-01T09:00:00Z",
                "2026-03-01T10:00:00Z",
                1.0,
            )],
        );
        let window = hours("2026-03-01T08:00:00Z", "2026-03-01T11:00:00Z");
        let report = setup.run(&window, &[GroupKey::Workload], readings(&[]));
        assert_eq!(report.rows.height(), 1);
        close(value(&report.rows, EMBODIED_G, 0), 1.0e6 / 35_040.0);
        close(value(&report.totals, EMBODIED_G, 0), 1.0e6 / 35_040.0);
        assert!((value(&report.totals, EMBODIED_G, 0) - 28.5388).abs() < 1e-4);
    }

    #[test]
    fn shared_hardware_splits_by_resources_and_a_mid_hour_change_by_time() {
        // A 64-vCPU server of 1,633.125 kg over 35,040 h: one vCPU-hour carries
        // 1,633,125 g / 35,040 / 64 = 0.728268... g.
        let per_vcpu_hour = 1_633_125.0 / 35_040.0 / 64.0;
        let setup = setup(
            machine(1633.125, 64.0, SharedBy::Vcpu),
            &[
                // api: 8 vCPUs until 10:30, then 16.
                hold(
                    "acme",
                    "api",
                    "2026-03-01T09:00:00Z",
                    "2026-03-01T10:30:00Z",
                    8.0,
                ),
                hold(
                    "acme",
                    "api",
                    "2026-03-01T10:30:00Z",
                    "2026-03-01T12:00:00Z",
                    16.0,
                ),
                // globex db: 32 vCPUs over both hours.
                hold(
                    "globex",
                    "db",
                    "2026-03-01T09:00:00Z",
                    "2026-03-01T11:00:00Z",
                    32.0,
                ),
            ],
        );
        // One kWh of api from 10:00 to 11:00, while api held 8 then 16 vCPUs: all of it is
        // known. One kWh of db from 11:00 to 12:00, after its reservation ended: none known.
        let energy = readings(&[
            ("acme", "api", "2026-03-01T10:00:00Z", 3600, 3.6e6),
            ("globex", "db", "2026-03-01T11:00:00Z", 3600, 3.6e6),
        ]);
        let window = hours("2026-03-01T09:00:00Z", "2026-03-01T12:00:00Z");
        let report = setup.run(&window, &[GroupKey::Workload], energy);
        let rows = &report.rows;
        let row = |bucket: &str, workload: &str| {
            (0..rows.height())
                .find(|&i| {
                    rows.column(BUCKET).unwrap().i64().unwrap().get(i)
                        == Some(t(bucket).timestamp_micros())
                        && rows.column(WORKLOAD).unwrap().str().unwrap().get(i) == Some(workload)
                })
                .unwrap_or_else(|| panic!("no row {bucket} {workload}"))
        };
        // 09:00 api: 8 vCPU-h; 10:00 api: 0.5 h x 8 + 0.5 h x 16 = 12 vCPU-h; 11:00 api: 16.
        close(
            value(rows, EMBODIED_G, row("2026-03-01T09:00:00Z", "api")),
            8.0 * per_vcpu_hour,
        );
        close(
            value(rows, EMBODIED_G, row("2026-03-01T10:00:00Z", "api")),
            12.0 * per_vcpu_hour,
        );
        close(
            value(rows, EMBODIED_G, row("2026-03-01T11:00:00Z", "api")),
            16.0 * per_vcpu_hour,
        );
        // db: 32 vCPU-h at 09:00 and 10:00, none at 11:00 (its row has energy only).
        close(
            value(rows, EMBODIED_G, row("2026-03-01T10:00:00Z", "db")),
            32.0 * per_vcpu_hour,
        );
        close(
            value(rows, EMBODIED_G, row("2026-03-01T11:00:00Z", "db")),
            0.0,
        );
        close(
            value(
                rows,
                EMBODIED_KNOWN_SHARE,
                row("2026-03-01T10:00:00Z", "api"),
            ),
            1.0,
        );
        close(
            value(
                rows,
                EMBODIED_KNOWN_SHARE,
                row("2026-03-01T11:00:00Z", "db"),
            ),
            0.0,
        );
        // Rows without energy (09:00 api) carry the grams and zero energy.
        close(
            value(
                rows,
                super::super::IT_KWH,
                row("2026-03-01T09:00:00Z", "api"),
            ),
            0.0,
        );
        // Totals: (8 + 12 + 16 + 32 + 32) vCPU-h = 100; 1 of 2 kWh known.
        close(value(&report.totals, EMBODIED_G, 0), 100.0 * per_vcpu_hour);
        close(value(&report.totals, EMBODIED_KNOWN_SHARE, 0), 0.5);
    }

    #[test]
    fn a_reservation_that_starts_mid_reading_knows_the_energy_after_it_only() {
        // One 1-hour reading of 1 kWh from 10:00; the reservation starts at 10:15: the
        // reading is split at 10:15 and 0.75 kWh is known.
        let setup = setup(
            machine(1000.0, 1.0, SharedBy::Node),
            &[hold(
                "acme",
                "api",
                "2026-03-01T10:15:00Z",
                "2026-03-01T12:00:00Z",
                1.0,
            )],
        );
        let energy = readings(&[("acme", "api", "2026-03-01T10:00:00Z", 3600, 3.6e6)]);
        let window = hours("2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z");
        let report = setup.run(&window, &[], energy);
        close(value(&report.totals, EMBODIED_KNOWN_SHARE, 0), 0.75);
        close(value(&report.totals, super::super::IT_KWH, 0), 1.0);
        // 45 minutes of the machine: 1e6 g x 0.75 / 35,040.
        close(value(&report.totals, EMBODIED_G, 0), 0.75e6 / 35_040.0);
        assert_eq!(value(&report.totals, super::super::READINGS, 0), 1.0);
    }

    #[test]
    fn embodied_totals_do_not_depend_on_the_grouping() {
        let setup = setup(
            machine(1633.125, 64.0, SharedBy::Vcpu),
            &[
                hold(
                    "acme",
                    "api",
                    "2026-03-01T09:20:00Z",
                    "2026-03-02T03:10:00Z",
                    8.0,
                ),
                hold(
                    "globex",
                    "db",
                    "2026-03-01T00:00:00Z",
                    "2026-03-03T00:00:00Z",
                    40.0,
                ),
            ],
        );
        let energy = readings(&[
            ("acme", "api", "2026-03-01T09:00:00Z", 3600, 3.6e6),
            ("globex", "db", "2026-03-01T23:50:00Z", 1200, 1.0e6),
        ]);
        let window = Window {
            from: t("2026-03-01T06:00:00Z"),
            to: t("2026-03-02T06:00:00Z"),
            granularity: super::super::timeline::Granularity::Day,
            tz: chrono_tz::Europe::Berlin,
        };
        let groupings: [&[GroupKey]; 4] = [
            &[],
            &[GroupKey::Workload],
            &[GroupKey::Customer, GroupKey::Site],
            &[GroupKey::Zone, GroupKey::Workload],
        ];
        // api: 09:20 to 03:10 next day is 17 h 50 min of 8 vCPUs; db: the whole day, 40 vCPUs.
        let per_vcpu_hour = 1_633_125.0 / 35_040.0 / 64.0;
        let expected = (8.0 * (17.0 + 50.0 / 60.0) + 40.0 * 24.0) * per_vcpu_hour;
        for group_by in groupings {
            let report = setup.run(&window, group_by, energy.clone());
            let rows: f64 = report
                .rows
                .column(EMBODIED_G)
                .unwrap()
                .f64()
                .unwrap()
                .sum()
                .unwrap();
            close(rows, expected);
            close(value(&report.totals, EMBODIED_G, 0), expected);
        }
    }
}
