//! IT energy the IT meters measured beyond the workloads' readings, spread over the customers of
//! a site with the `energy_proportional` policy: over each stretch where every IT meter of the
//! site reported, every part of a reading there carries `extra` times its own energy more, so
//! that the site's workloads add up to the meter exactly. A stretch where the workloads measured
//! more than the meter, or nothing at all, allocates nothing (the books show why).
use super::measured_pue::ItPiece;
use super::timeline::Segment;
use crate::domain::{Id, Site};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// A stretch of a site and what its readings' parts carry on top of their own energy.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationPiece {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// IT meter energy over the stretch, kWh.
    pub metered_kwh: f64,
    /// Allocated energy per kWh measured.
    pub extra: f64,
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
        for (index, piece) in pieces.iter_mut().enumerate() {
            let workloads = measured.get(&(site.clone(), index)).copied().unwrap_or(0.0);
            let inside = (piece.end.min(to) - piece.start.max(from)).num_milliseconds();
            let whole = (piece.end - piece.start).num_milliseconds();
            let metered = piece.metered_kwh * inside.max(0) as f64 / whole.max(1) as f64;
            piece.extra = if workloads > 0.0 && metered >= workloads {
                metered / workloads - 1.0
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hours, readings, t, value, Setup};
    use super::super::{GroupKey, ALLOCATED_KWH, ATTRIBUTED_KWH, FACILITY_KWH, IT_KWH};
    use super::*;
    use crate::domain::Allocation;

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

        /// Customers' IT energy plus the operator's line is the meter, whatever the readings:
        /// all of the meter when it measured at least the workloads, nothing allocated else.
        #[test]
        fn customers_and_the_operator_line_add_up_to_the_meter(
            kwh in proptest::collection::vec((0u8..3, 0u32..3000, 1i32..=3600, 0.0f64..4.0), 1..12),
            meter_kwh in 0.0f64..30.0,
        ) {
            let mut setup = allocating(Allocation::EnergyProportional);
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
            if measured > 0.0 && meter_kwh >= measured {
                proptest::prop_assert!(close(it, meter_kwh), "{it} != {meter_kwh}");
            } else {
                proptest::prop_assert!(close(value(&report.totals, ALLOCATED_KWH, 0), 0.0));
                proptest::prop_assert!(close(it, measured));
            }
        }
    }
}
