//! PUE measured by a site's meters, per instant: wherever every facility meter and every IT meter
//! of the site reported, PUE is their power ratio over that stretch; elsewhere the configured PUE
//! applies. A ratio below 1.0 (the facility measured less than IT) is never used.
use crate::domain::meter::{MeterKind, MeterReading};
use crate::domain::Id;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A stretch of a site over which the meters give one PUE.
#[derive(Debug, Clone, PartialEq)]
pub struct PuePiece {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub pue: f64,
}

/// Measured PUE pieces per site, in time order, from the sites' meter readings.
pub fn pieces(readings: &[MeterReading]) -> HashMap<Id, Vec<PuePiece>> {
    per_site(readings, |span| {
        let (facility, it) = (span.facility?, span.it?);
        (it > 0.0 && facility >= it).then(|| facility / it)
    })
    .into_iter()
    .map(|(site, pieces)| {
        let pieces = pieces
            .into_iter()
            .map(|(start, end, pue)| PuePiece { start, end, pue })
            .collect();
        (site, pieces)
    })
    .collect()
}

/// A stretch over which every IT meter of a site reported, with their summed power.
#[derive(Debug, Clone, PartialEq)]
pub struct ItPiece {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub it_w: f64,
}

/// IT meter pieces per site, in time order: where the IT meters measured the whole site.
pub fn it_pieces(readings: &[MeterReading]) -> HashMap<Id, Vec<ItPiece>> {
    per_site(readings, |span| span.it)
        .into_iter()
        .map(|(site, pieces)| {
            let pieces = pieces
                .into_iter()
                .map(|(start, end, it_w)| ItPiece { start, end, it_w })
                .collect();
            (site, pieces)
        })
        .collect()
}

/// What the meters of one site measured over a stretch between two meter reading edges: each
/// kind's summed power, where every meter of that kind reported.
struct Span {
    facility: Option<f64>,
    it: Option<f64>,
}

/// A stretch [start, end) and the figure the meters give for it.
type Stretch = (DateTime<Utc>, DateTime<Utc>, f64);

/// Per site, the stretches `value` gives a figure for, equal neighbours merged.
fn per_site(
    readings: &[MeterReading],
    value: impl Fn(&Span) -> Option<f64>,
) -> HashMap<Id, Vec<Stretch>> {
    let mut by_site: BTreeMap<&Id, Vec<&MeterReading>> = BTreeMap::new();
    for reading in readings
        .iter()
        .filter(|r| matches!(r.kind, MeterKind::Facility | MeterKind::It))
    {
        by_site.entry(&reading.site).or_default().push(reading);
    }
    by_site
        .into_iter()
        .map(|(site, readings)| (site.clone(), site_pieces(&readings, &value)))
        .filter(|(_, pieces)| !pieces.is_empty())
        .collect()
}

/// One meter's readings, sorted by start.
type Meter<'r> = Vec<&'r MeterReading>;

fn site_pieces(readings: &[&MeterReading], value: &impl Fn(&Span) -> Option<f64>) -> Vec<Stretch> {
    let mut meters: BTreeMap<(MeterKind, &Id), Meter<'_>> = BTreeMap::new();
    for reading in readings {
        meters
            .entry((reading.kind, &reading.meter))
            .or_default()
            .push(reading);
    }
    for meter in meters.values_mut() {
        meter.sort_by_key(|r| r.start);
    }
    let edges: BTreeSet<DateTime<Utc>> = readings.iter().flat_map(|r| [r.start, r.end()]).collect();
    let edges: Vec<DateTime<Utc>> = edges.into_iter().collect();
    let mut out: Vec<Stretch> = Vec::new();
    for stretch in edges.windows(2) {
        let (from, to) = (stretch[0], stretch[1]);
        let mut span = Span {
            facility: None,
            it: None,
        };
        for kind in [MeterKind::Facility, MeterKind::It] {
            let mut watts = Some(0.0);
            let mut any = false;
            for meter in meters
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, m)| m)
            {
                any = true;
                // The latest reading of this meter that started by `from` and covers the stretch.
                let at = meter.partition_point(|r| r.start <= from);
                watts = match meter[..at].iter().rev().find(|r| r.end() >= to) {
                    Some(r) => watts.map(|w| w + r.energy_j / r.duration_s as f64),
                    None => None,
                };
            }
            let watts = watts.filter(|_| any);
            match kind {
                MeterKind::Facility => span.facility = watts,
                _ => span.it = watts,
            }
        }
        let Some(figure) = value(&span) else {
            continue;
        };
        match out.last_mut() {
            Some(last) if last.1 == from && last.2 == figure => last.1 = to,
            _ => out.push((from, to, figure)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    use crate::domain::meter::sample as reading;

    #[test]
    fn every_meter_must_report_and_a_ratio_below_one_is_dropped() {
        use MeterKind::{Facility, It};
        let readings = [
            // 09:00-10:00: main 12 kWh; two PDUs 5 + 3 = 8 kWh: PUE 1.5.
            reading("main", Facility, "2026-03-01T09:00:00Z", 60, 12.0),
            reading("pdu-a", It, "2026-03-01T09:00:00Z", 60, 5.0),
            reading("pdu-b", It, "2026-03-01T09:00:00Z", 30, 1.5),
            reading("pdu-b", It, "2026-03-01T09:30:00Z", 30, 1.5),
            // 10:00-11:00: pdu-b is silent after 10:30: measured only until then, at
            // (10 kWh/h) / (4 + 4 kWh/h) = 1.25.
            reading("main", Facility, "2026-03-01T10:00:00Z", 60, 10.0),
            reading("pdu-a", It, "2026-03-01T10:00:00Z", 60, 4.0),
            reading("pdu-b", It, "2026-03-01T10:00:00Z", 30, 2.0),
            // 11:00-12:00: the facility meter measured less than IT: not a PUE.
            reading("main", Facility, "2026-03-01T11:00:00Z", 60, 3.0),
            reading("pdu-a", It, "2026-03-01T11:00:00Z", 60, 3.0),
            reading("pdu-b", It, "2026-03-01T11:00:00Z", 60, 1.0),
        ];
        let pieces = pieces(&readings);
        let fra1 = &pieces[&Id::parse("fra1").unwrap()];
        assert_eq!(
            fra1,
            &[
                PuePiece {
                    start: t("2026-03-01T09:00:00Z"),
                    end: t("2026-03-01T10:00:00Z"),
                    pue: 1.5
                },
                PuePiece {
                    start: t("2026-03-01T10:00:00Z"),
                    end: t("2026-03-01T10:30:00Z"),
                    pue: 1.25
                },
            ]
        );
    }

    #[test]
    fn a_site_without_both_kinds_has_no_measured_pue() {
        let only_it = [reading(
            "pdu",
            MeterKind::It,
            "2026-03-01T09:00:00Z",
            60,
            1.0,
        )];
        assert!(pieces(&only_it).is_empty());
    }
}

#[cfg(test)]
mod footprint_tests {
    use super::super::tests::{hours, point, readings, value, Setup};
    use super::super::{FACILITY_KWH, LOCATION_G, PUE_MEASURED_SHARE};
    use super::*;
    use crate::domain::intensity::PointKind;

    #[test]
    fn a_measured_pue_applies_where_the_meters_measured_it_and_the_configured_one_elsewhere() {
        let mut setup = Setup::new(vec![point(
            "2026-03-01T09:00:00Z",
            "2026-03-01T10:00:00Z",
            100.0,
            PointKind::Actual,
            "2026-03-01T10:00:00Z",
        )]);
        // fra1 is configured at 1.5; its meters measured 1.2 from 09:00 to 09:30.
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        setup.measured_pue = HashMap::from([(
            Id::parse("fra1").unwrap(),
            vec![PuePiece {
                start: t("2026-03-01T09:00:00Z"),
                end: t("2026-03-01T09:30:00Z"),
                pue: 1.2,
            }],
        )]);
        // 1 kWh from 09:00 to 10:00: 0.5 x 1.2 + 0.5 x 1.5 = 1.35 kWh of facility energy, 0.6
        // of it at the measured PUE; at 100 g/kWh, 135 g.
        let report = setup.run(
            &hours("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
            &[],
            readings(&[("acme", "api", "2026-03-01T09:00:00Z", 3600, 3.6e6)]),
        );
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        close(value(&report.totals, FACILITY_KWH, 0), 1.35);
        close(value(&report.totals, PUE_MEASURED_SHARE, 0), 0.6 / 1.35);
        close(value(&report.totals, LOCATION_G, 0), 135.0);
    }
}
