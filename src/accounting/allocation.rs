//! IT energy the IT meters measured beyond the workloads' readings, spread over the customers of
//! a site over each stretch where every IT meter of the site reported:
//! - `energy_proportional`: every part of a reading there carries `extra` times its own energy
//!   more, so that the site's workloads add up to the meter exactly;
//! - `reserved_proportional`: the remainder, at its average power over the stretch (`idle_kw`),
//!   goes to the customers by the capacity each reserved at that instant, as one
//!   `(reserved capacity)` row per customer (it is no workload's).
//!
//! A stretch where the workloads measured more than the meter allocates nothing (the books call
//! it a discrepancy), and so does energy-proportional allocation where nothing was measured.
use super::measured_pue::ItPiece;
use super::timeline::Segment;
use crate::domain::capacity::Capacity;
use crate::domain::{Allocation, Id, Site};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The workload name of the rows reserved-capacity allocation adds: not a valid workload id, so
/// it never merges with a real workload.
pub const RESERVED_WORKLOAD: &str = "(reserved capacity)";

/// A stretch of a site and what its readings' parts carry on top of their own energy.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationPiece {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// IT meter energy over the stretch, kWh.
    pub metered_kwh: f64,
    /// Allocated energy per kWh measured (energy-proportional sites).
    pub extra: f64,
    /// Unattributed IT power over the stretch, spread by reserved capacity
    /// (reserved-proportional sites).
    pub idle_kw: f64,
}

/// Allocation pieces per site (only sites that allocate and have IT meters).
pub type Allocations = HashMap<Id, Vec<AllocationPiece>>;

/// The stretches of the sites that allocate, before the workloads' energy is known.
pub fn stretches(it: &HashMap<Id, Vec<ItPiece>>, allocating: &[Id]) -> Allocations {
    allocating
        .iter()
        .filter_map(|site| {
            let pieces = it.get(site)?;
            let stretches = pieces
                .iter()
                .map(|p| AllocationPiece {
                    start: p.start,
                    end: p.end,
                    metered_kwh: p.it_w * (p.end - p.start).num_milliseconds() as f64 / 3.6e9,
                    extra: 0.0,
                    idle_kw: 0.0,
                })
                .collect();
            Some((site.clone(), stretches))
        })
        .collect()
}

/// The piece of `pieces` holding the instant `t`, if any.
pub fn piece_at(pieces: &[AllocationPiece], t: DateTime<Utc>) -> Option<usize> {
    let at = pieces.partition_point(|p| p.end <= t);
    pieces.get(at).filter(|p| p.start <= t).map(|_| at)
}

/// Sets each stretch's `extra` from the workloads' IT energy per segment (every customer's),
/// segments lying inside stretches (their edges are segment edges). Only the part of a stretch
/// inside [from, to) counts, on both sides: that is where the segments' energy was summed.
pub fn settle(
    allocations: &mut Allocations,
    segments: &[Segment],
    sites: &[Site],
    measured_kwh: &HashMap<usize, f64>,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) {
    let mut measured: HashMap<(Id, usize), f64> = HashMap::new();
    for (index, segment) in segments.iter().enumerate() {
        let site = &sites[segment.site].id;
        let Some(pieces) = allocations.get(site) else {
            continue;
        };
        if let Some(piece) = piece_at(pieces, segment.start) {
            *measured.entry((site.clone(), piece)).or_default() +=
                measured_kwh.get(&index).copied().unwrap_or(0.0);
        }
    }
    for (site, pieces) in allocations.iter_mut() {
        let policy = sites
            .iter()
            .find(|s| &s.id == site)
            .map_or(Allocation::None, |s| s.allocation);
        for (index, piece) in pieces.iter_mut().enumerate() {
            let workloads = measured.get(&(site.clone(), index)).copied().unwrap_or(0.0);
            let inside = (piece.end.min(to) - piece.start.max(from)).num_milliseconds();
            let whole = (piece.end - piece.start).num_milliseconds();
            let metered = piece.metered_kwh * inside.max(0) as f64 / whole.max(1) as f64;
            let remainder = (metered >= workloads).then_some(metered - workloads);
            match policy {
                Allocation::EnergyProportional if workloads > 0.0 => {
                    piece.extra = remainder.map_or(0.0, |r| r / workloads);
                }
                Allocation::ReservedProportional if inside > 0 => {
                    piece.idle_kw = remainder.unwrap_or(0.0) / (inside as f64 / 3.6e6);
                }
                _ => {}
            }
        }
    }
}

/// The capacity customers reserved, and whose of it a report shows: shares always rest on every
/// customer's reservations, rows are made only for the customers (and sites) in scope.
#[derive(Debug, Clone, Default)]
pub struct Capacities {
    records: Vec<Capacity>,
    customer: Option<Id>,
    sites: Vec<Id>,
    /// A report of chosen workloads shows no reserved-capacity rows: they are no workload's.
    hidden: bool,
}

impl Capacities {
    pub fn new(records: Vec<Capacity>) -> Self {
        Self {
            records,
            ..Self::default()
        }
    }

    /// The same reservations, rows only for `customer` at `sites` (empty: all), none when the
    /// report chose `workloads`.
    pub fn scoped(&self, customer: Option<&Id>, workloads: &[Id], sites: &[Id]) -> Self {
        Self {
            records: self.records.clone(),
            customer: customer.cloned(),
            sites: sites.to_vec(),
            hidden: !workloads.is_empty(),
        }
    }

    /// Rows for every customer.
    pub fn unscoped(&self) -> Self {
        Self::new(self.records.clone())
    }

    /// Where a site's reservations start and end: segment edges.
    pub fn edges<'a>(&'a self, site: &'a Id) -> impl Iterator<Item = DateTime<Utc>> + 'a {
        self.records
            .iter()
            .filter(move |c| &c.site == site)
            .flat_map(|c| std::iter::once(c.from).chain(c.to))
    }

    /// Each customer in scope's share of the capacity reserved at `site` at `t`.
    pub fn shares_at(&self, site: &Id, t: DateTime<Utc>) -> Vec<(&Id, f64)> {
        if self.hidden || !(self.sites.is_empty() || self.sites.contains(site)) {
            return Vec::new();
        }
        let held: Vec<&Capacity> = self
            .records
            .iter()
            .filter(|c| &c.site == site && c.holds(t))
            .collect();
        let total: f64 = held.iter().map(|c| c.reserved_kw).sum();
        let mut shares: Vec<(&Id, f64)> = Vec::new();
        for capacity in held.iter().filter(|c| {
            self.customer
                .as_ref()
                .is_none_or(|only| only == &c.customer)
        }) {
            match shares.iter_mut().find(|(c, _)| *c == &capacity.customer) {
                Some((_, share)) => *share += capacity.reserved_kw / total,
                None => shares.push((&capacity.customer, capacity.reserved_kw / total)),
            }
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hours, readings, t, value, Setup};
    use super::super::{
        Energy, GroupKey, ALLOCATED_KWH, ATTRIBUTED_KWH, FACILITY_KWH, IT_KWH, MODELLED_KWH,
        MODELLED_SHARE,
    };
    use super::*;
    use crate::domain::Allocation;
    use polars::prelude::*;

    /// The row of `customer` and `workload` in a report grouped by customer and workload.
    fn row_of(rows: &DataFrame, customer: &str, workload: &str) -> usize {
        let text = |name: &str, i: usize| {
            rows.column(name)
                .unwrap()
                .str()
                .unwrap()
                .get(i)
                .map(str::to_owned)
        };
        (0..rows.height())
            .find(|&i| {
                text(super::super::CUSTOMER, i).as_deref() == Some(customer)
                    && text(super::super::WORKLOAD, i).as_deref() == Some(workload)
            })
            .unwrap_or_else(|| panic!("no row {customer}/{workload}: {rows}"))
    }

    fn capacity(id: &str, customer: &str, kw: f64, from: &str, to: Option<&str>) -> Capacity {
        Capacity {
            id: Id::parse(id).unwrap(),
            site: Id::parse("fra1").unwrap(),
            customer: Id::parse(customer).unwrap(),
            reserved_kw: kw,
            from: t(from),
            to: to.map(t),
        }
    }

    #[test]
    fn reserved_capacity_shares_the_idle_energy_and_a_change_mid_hour_moves_it() {
        let mut setup = allocating(Allocation::ReservedProportional);
        // acme reserved 10 kW until 09:30 and 30 kW from then; globex 30 kW all along;
        // initech measured energy but reserved nothing.
        setup.capacities = Capacities::new(vec![
            capacity(
                "acme-1",
                "acme",
                10.0,
                "2026-03-01T00:00:00Z",
                Some("2026-03-01T09:30:00Z"),
            ),
            capacity("acme-2", "acme", 30.0, "2026-03-01T09:30:00Z", None),
            capacity("globex", "globex", 30.0, "2026-03-01T00:00:00Z", None),
        ]);
        let window = hours("2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z");
        let report = setup.run(&window, &[GroupKey::Customer, GroupKey::Workload], energy());
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        // 09:00-10:00: 8 kWh metered, 1 + 2 + 3 = 6 measured: 2 kWh idle, 2 kW on average.
        // 09:00-09:30, 1 kWh: acme 10/40 = 0.25, globex 30/40 = 0.75.
        // 09:30-10:00, 1 kWh: acme 30/60 = 0.5, globex 30/60 = 0.5.
        // acme 0.25 + 0.5 = 0.75 kWh, globex 0.75 + 0.5 = 1.25 kWh, initech nothing.
        let rows = &report.rows;
        let nine = |customer| {
            let i = row_of(rows, customer, RESERVED_WORKLOAD);
            assert_eq!(
                value(rows, super::super::BUCKET, i) as i64,
                t("2026-03-01T09:00:00Z").timestamp_micros()
            );
            i
        };
        close(value(rows, ALLOCATED_KWH, nine("acme")), 0.75);
        close(value(rows, ALLOCATED_KWH, nine("globex")), 1.25);
        close(value(rows, ATTRIBUTED_KWH, nine("globex")), 0.0);
        close(value(rows, super::super::READINGS, nine("globex")), 0.0);
        // Workloads keep their own energy and nothing more.
        close(
            value(rows, ALLOCATED_KWH, row_of(rows, "initech", "app")),
            0.0,
        );
        // Totals: 7 kWh measured (acme's 10:00 reading has no meter), 2 allocated, 9 IT, the
        // meter's 8 within 09:00-10:00; facility 9 x 1.5 = 13.5 kWh.
        close(value(&report.totals, ATTRIBUTED_KWH, 0), 7.0);
        close(value(&report.totals, ALLOCATED_KWH, 0), 2.0);
        close(value(&report.totals, IT_KWH, 0), 9.0);
        close(value(&report.totals, FACILITY_KWH, 0), 13.5);
        // The same totals whatever the grouping, and a customer's own report sees its rows.
        let ungrouped = setup.run(&window, &[], energy());
        close(value(&ungrouped.totals, ALLOCATED_KWH, 0), 2.0);
        // Scoped to acme (as acme's own report is), only acme's reserved row remains, with the
        // same 0.75 kWh: shares rest on every customer's capacity.
        setup.capacities = setup
            .capacities
            .scoped(Some(&Id::parse("acme").unwrap()), &[], &[]);
        let scoped = setup.run(&window, &[GroupKey::Customer, GroupKey::Workload], energy());
        let acme = row_of(&scoped.rows, "acme", RESERVED_WORKLOAD);
        close(value(&scoped.rows, ALLOCATED_KWH, acme), 0.75);
        let workloads = scoped
            .rows
            .column(super::super::WORKLOAD)
            .unwrap()
            .str()
            .unwrap()
            .clone();
        let reserved_rows = workloads
            .iter()
            .filter(|w| *w == Some(RESERVED_WORKLOAD))
            .count();
        assert_eq!(reserved_rows, 1);
    }

    #[test]
    fn modelled_usage_counts_as_the_workloads_and_is_flagged() {
        let setup = allocating(Allocation::EnergyProportional);
        // acme's batch job has no meter: 100 vCPU hours at 50 % with Cloud Carbon Footprint's
        // defaults, 100 x (0.74 + 0.5 x (3.5 - 0.74)) = 212 Wh = 0.212 kWh.
        let usage = crate::domain::usage::Usage {
            site: Id::parse("fra1").unwrap(),
            customer: Id::parse("acme").unwrap(),
            workload: Id::parse("batch").unwrap(),
            start: t("2026-03-01T09:00:00Z"),
            duration_s: 3600,
            vcpu_hours: 100.0,
            memory_gb_hours: 0.0,
            gpu_hours: 0.0,
            utilisation: 0.5,
            power_model: None,
        };
        let modelled = || {
            crate::storage::usage::modelled(
                crate::storage::usage::frame(std::slice::from_ref(&usage))
                    .unwrap()
                    .lazy(),
                &[],
                &[],
            )
            .unwrap()
        };
        let measured = || readings(&[("acme", "app", "2026-03-01T09:00:00Z", 3600, 3.6e6)]);
        let energy = || Energy {
            pieces: None,
            measured: measured(),
            modelled: Some(modelled()),
        };
        let mut setup = setup;
        // The UPS: 2.424 kWh over the hour, twice the 1.212 kWh of the workloads.
        setup
            .it_pieces
            .get_mut(&Id::parse("fra1").unwrap())
            .unwrap()[0]
            .it_w = 2424.0;
        let window = hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z");
        let report = setup.run_energy(&window, &[GroupKey::Customer, GroupKey::Workload], energy);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        let batch = row_of(&report.rows, "acme", "batch");
        close(value(&report.rows, ATTRIBUTED_KWH, batch), 0.212);
        close(value(&report.rows, MODELLED_KWH, batch), 0.212);
        close(value(&report.rows, MODELLED_SHARE, batch), 1.0);
        // Allocation spreads the remainder over modelled energy too: 1.212 kWh more, each kWh
        // doubled, batch 0.424 kWh of IT energy.
        close(value(&report.rows, IT_KWH, batch), 0.424);
        let app = row_of(&report.rows, "acme", "app");
        close(value(&report.rows, MODELLED_SHARE, app), 0.0);
        // Totals: 1.212 attributed of which 0.212 modelled (share 0.212 / 1.212), IT 2.424.
        close(value(&report.totals, MODELLED_KWH, 0), 0.212);
        close(value(&report.totals, MODELLED_SHARE, 0), 0.212 / 1.212);
        close(value(&report.totals, IT_KWH, 0), 2.424);
    }

    fn allocating(policy: Allocation) -> Setup {
        let mut setup = Setup::new(vec![]);
        setup.sites[0].allocation = policy;
        // fra1's UPS measured 8 kW from 09:00 to 10:00, and nothing after.
        setup.it_pieces = HashMap::from([(
            Id::parse("fra1").unwrap(),
            vec![ItPiece {
                start: t("2026-03-01T09:00:00Z"),
                end: t("2026-03-01T10:00:00Z"),
                it_w: 8000.0,
            }],
        )]);
        setup
    }

    /// Three customers measured 1, 2 and 3 kWh from 09:00 to 10:00; acme 1 kWh more after 10:00.
    fn energy() -> polars::prelude::LazyFrame {
        readings(&[
            ("acme", "app", "2026-03-01T09:00:00Z", 3600, 3.6e6),
            ("globex", "app", "2026-03-01T09:00:00Z", 3600, 7.2e6),
            ("initech", "app", "2026-03-01T09:00:00Z", 3600, 10.8e6),
            ("acme", "app", "2026-03-01T10:00:00Z", 3600, 3.6e6),
        ])
    }

    #[test]
    fn energy_proportional_spreads_the_remainder_so_customers_add_up_to_the_meter() {
        let setup = allocating(Allocation::EnergyProportional);
        let window = hours("2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z");
        let report = setup.run(&window, &[GroupKey::Customer], energy());
        // 09:00: 8 kWh metered, 6 measured: each kWh carries 2/6 = 1/3 kWh more. acme 1 + 1/3,
        // globex 2 + 2/3, initech 3 + 1: 8 kWh, the meter. 10:00: no meter, nothing allocated.
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        let rows = &report.rows;
        let at = |bucket: &str, customer: &str| {
            (0..rows.height())
                .find(|&i| {
                    value(rows, super::super::BUCKET, i) as i64 == t(bucket).timestamp_micros()
                        && rows
                            .column(super::super::CUSTOMER)
                            .unwrap()
                            .str()
                            .unwrap()
                            .get(i)
                            == Some(customer)
                })
                .unwrap()
        };
        let nine = "2026-03-01T09:00:00Z";
        close(value(rows, ALLOCATED_KWH, at(nine, "acme")), 1.0 / 3.0);
        close(value(rows, ALLOCATED_KWH, at(nine, "globex")), 2.0 / 3.0);
        close(value(rows, ALLOCATED_KWH, at(nine, "initech")), 1.0);
        let it_at_nine: f64 = ["acme", "globex", "initech"]
            .iter()
            .map(|c| value(rows, IT_KWH, at(nine, c)))
            .sum();
        close(it_at_nine, 8.0);
        close(
            value(rows, ALLOCATED_KWH, at("2026-03-01T10:00:00Z", "acme")),
            0.0,
        );
        // Totals: 7 kWh measured, 2 allocated, 9 IT; facility 9 x 1.5 = 13.5.
        close(value(&report.totals, ATTRIBUTED_KWH, 0), 7.0);
        close(value(&report.totals, ALLOCATED_KWH, 0), 2.0);
        close(value(&report.totals, IT_KWH, 0), 9.0);
        close(value(&report.totals, FACILITY_KWH, 0), 13.5);
    }

    #[test]
    fn a_site_that_does_not_allocate_keeps_its_remainder() {
        let setup = allocating(Allocation::None);
        let window = hours("2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z");
        let report = setup.run(&window, &[], energy());
        assert_eq!(value(&report.totals, ALLOCATED_KWH, 0), 0.0);
        assert!((value(&report.totals, IT_KWH, 0) - 7.0).abs() < 1e-9);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Customers' IT energy plus the operator's line is the meter, whatever the readings,
        /// under either policy: all of the meter when it measured at least the workloads (and
        /// someone measured, or reserved, something), nothing allocated else.
        #[test]
        fn customers_and_the_operator_line_add_up_to_the_meter(
            kwh in proptest::collection::vec((0u8..3, 0u32..3000, 1i32..=3600, 0.0f64..4.0), 1..12),
            meter_kwh in 0.0f64..30.0,
            reserved in proptest::option::of(proptest::collection::vec((0u8..4, 0u32..3600, 1.0f64..50.0), 1..5)),
        ) {
            let policy = match reserved {
                Some(_) => Allocation::ReservedProportional,
                None => Allocation::EnergyProportional,
            };
            let mut setup = allocating(policy);
            // Reservations of up to four customers (c3 measures nothing), from random instants.
            setup.capacities = Capacities::new(
                reserved
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, (customer, second, kw))| {
                        let from = t("2026-03-01T09:00:00Z") + chrono::Duration::seconds(i64::from(*second));
                        capacity(&format!("r{i}"), &format!("c{customer}"), *kw, &from.to_rfc3339(), None)
                    })
                    .collect(),
            );
            // Whether some reservation holds over the whole hour: only then is every kWh of
            // the remainder placed.
            let whole_hour = reserved.as_ref().is_some_and(|r| r.iter().any(|(_, second, _)| *second == 0));
            setup.it_pieces.get_mut(&Id::parse("fra1").unwrap()).unwrap()[0].it_w = meter_kwh * 1000.0;
            let base = t("2026-03-01T09:00:00Z");
            let rows: Vec<(String, String, i32, f64)> = kwh
                .iter()
                .map(|(customer, second, duration, kwh)| {
                    let start = base + chrono::Duration::seconds(i64::from(*second));
                    (format!("c{customer}"), start.to_rfc3339(), (*duration).min(3600 - *second as i32).max(1), kwh * 3.6e6)
                })
                .collect();
            let borrowed: Vec<(&str, &str, &str, i32, f64)> = rows
                .iter()
                .map(|(c, s, d, e)| (c.as_str(), "app", s.as_str(), *d, *e))
                .collect();
            let report = setup.run(&hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"), &[GroupKey::Customer], readings(&borrowed));
            let measured = value(&report.totals, ATTRIBUTED_KWH, 0);
            let it: f64 = (0..report.rows.height()).map(|i| value(&report.rows, IT_KWH, i)).sum();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            let placed = match policy {
                Allocation::ReservedProportional => whole_hour,
                _ => measured > 0.0,
            };
            if placed && meter_kwh >= measured {
                proptest::prop_assert!(close(it, meter_kwh), "{it} != {meter_kwh}");
            } else if policy == Allocation::ReservedProportional && meter_kwh >= measured {
                // Unreserved stretches keep their share as the operator's: never more than the meter.
                proptest::prop_assert!(it <= meter_kwh + 1e-9 && it >= measured - 1e-9);
            } else {
                proptest::prop_assert!(close(value(&report.totals, ALLOCATED_KWH, 0), 0.0));
                proptest::prop_assert!(close(it, measured));
            }
        }
    }
}
