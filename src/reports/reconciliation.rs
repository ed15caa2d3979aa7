//! A site's books: what its meters measured beside what its workloads' readings add up to, per
//! bucket. Meter readings are spread over buckets pro rata by time, like readings; the workloads'
//! IT energy is the footprint's own (every customer at the site). What the IT meters measured
//! beyond the workloads is unattributed (idle servers, unmetered hosts, network and storage);
//! facility over IT is the measured PUE. Figures that do not add up are listed, never hidden.
use super::render::{local_rfc3339, presented};
use super::{FootprintQuery, ReportError, ReportSources};
use crate::accounting::timeline::Window;
use crate::accounting::{ALLOCATED_KWH, ATTRIBUTED_KWH, BUCKET, MODELLED_KWH};
use crate::domain::meter::{MeterKind, MeterReading};
use crate::domain::Id;
use crate::storage::meters;
use chrono::{DateTime, Utc};
use polars::prelude::{Column, DataFrame, ParquetWriter, PolarsResult};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Coverage this close to whole counts as whole (float sums of seconds).
const WHOLE: f64 = 1.0 - 1e-9;

/// One bucket of a site's books, or the whole range.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[schema(example = json!({"bucket_start": "2026-03-01T09:00:00Z", "facility_meter_kwh": 15.0,
    "it_meter_kwh": 10.0, "cooling_meter_kwh": 4.0, "other_meter_kwh": 0.0,
    "facility_meter_coverage": 1.0, "it_meter_coverage": 1.0, "measured_workloads_kwh": 7.0,
    "modelled_workloads_kwh": 0.5, "unattributed_it_kwh": 2.5, "allocated_it_kwh": 0.0, "operator_it_kwh": 2.5,
    "attribution_coverage": 0.75, "measured_pue": 1.5,
    "discrepancies": []}))]
pub struct ReconciliationRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start: Option<String>,
    pub facility_meter_kwh: f64,
    pub it_meter_kwh: f64,
    pub cooling_meter_kwh: f64,
    pub other_meter_kwh: f64,
    /// Share of the bucket every facility meter of the site reported for (the least covered
    /// meter decides); 0 without facility meters.
    pub facility_meter_coverage: f64,
    pub it_meter_coverage: f64,
    /// IT energy of every workload's readings at the site.
    pub measured_workloads_kwh: f64,
    /// IT energy of the workloads without a meter, modelled from their usage
    /// (`POST /v1/usage`); with the measured, the footprint's `attributed_it_energy_kwh`.
    pub modelled_workloads_kwh: f64,
    /// IT meters minus workloads (measured and modelled), where the IT meters cover the whole
    /// bucket and measured at least as much as the workloads.
    pub unattributed_it_kwh: Option<f64>,
    /// The part of it allocated to customers (`energy_proportional` and
    /// `reserved_proportional` sites).
    pub allocated_it_kwh: f64,
    /// The part left as the operator's own: unattributed minus allocated. Customers' IT energy
    /// (measured and allocated) plus this equals the IT meters.
    pub operator_it_kwh: Option<f64>,
    /// Workloads over IT meters, where the IT meters cover the whole bucket.
    pub attribution_coverage: Option<f64>,
    /// Facility over IT meters, where both cover the whole bucket and the ratio is at least 1.
    pub measured_pue: Option<f64>,
    /// What does not add up, in words.
    pub discrepancies: Vec<String>,
}

/// The rows as Parquet: the JSON fields as columns (absent figures null, discrepancies joined
/// by "; "), `bucket_start` as RFC 3339 text with the report's offset.
pub fn parquet(rows: &[ReconciliationRow]) -> PolarsResult<Vec<u8>> {
    let figure = |name: &str, f: fn(&ReconciliationRow) -> f64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>())
    };
    let optional = |name: &str, f: fn(&ReconciliationRow) -> Option<f64>| {
        Column::new(
            name.into(),
            rows.iter().map(f).collect::<Vec<Option<f64>>>(),
        )
    };
    let mut frame = DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "bucket_start".into(),
                rows.iter()
                    .map(|r| r.bucket_start.clone().unwrap_or_default())
                    .collect::<Vec<String>>(),
            ),
            figure("facility_meter_kwh", |r| r.facility_meter_kwh),
            figure("it_meter_kwh", |r| r.it_meter_kwh),
            figure("cooling_meter_kwh", |r| r.cooling_meter_kwh),
            figure("other_meter_kwh", |r| r.other_meter_kwh),
            figure("facility_meter_coverage", |r| r.facility_meter_coverage),
            figure("it_meter_coverage", |r| r.it_meter_coverage),
            figure("measured_workloads_kwh", |r| r.measured_workloads_kwh),
            figure("modelled_workloads_kwh", |r| r.modelled_workloads_kwh),
            optional("unattributed_it_kwh", |r| r.unattributed_it_kwh),
            optional("attribution_coverage", |r| r.attribution_coverage),
            optional("measured_pue", |r| r.measured_pue),
            figure("allocated_it_kwh", |r| r.allocated_it_kwh),
            optional("operator_it_kwh", |r| r.operator_it_kwh),
            Column::new(
                "discrepancies".into(),
                rows.iter()
                    .map(|r| r.discrepancies.join("; "))
                    .collect::<Vec<String>>(),
            ),
        ],
    )?;
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(&mut frame)?;
    Ok(out)
}

/// Meter energy (kWh) and coverage (seconds per meter) of one bucket.
#[derive(Debug, Clone, Default)]
struct Metered {
    kwh: BTreeMap<MeterKind, f64>,
    covered_s: BTreeMap<(MeterKind, Id), f64>,
}

fn seconds(span: chrono::Duration) -> f64 {
    span.num_milliseconds() as f64 / 1000.0
}

/// Meter readings spread over the window's buckets by time.
fn metered(readings: &[MeterReading], window: &Window) -> BTreeMap<DateTime<Utc>, Metered> {
    let mut out: BTreeMap<DateTime<Utc>, Metered> = BTreeMap::new();
    for reading in readings {
        let (start, end) = (reading.start.max(window.from), reading.end().min(window.to));
        if end <= start {
            continue;
        }
        let mut cuts = vec![start];
        cuts.extend(window.bucket_edges(start, end));
        cuts.push(end);
        for piece in cuts.windows(2).filter(|p| p[1] > p[0]) {
            let share = seconds(piece[1] - piece[0]) / reading.duration_s as f64;
            let bucket = out.entry(window.bucket_start(piece[0])).or_default();
            *bucket.kwh.entry(reading.kind).or_default() += reading.energy_j / 3.6e6 * share;
            *bucket
                .covered_s
                .entry((reading.kind, reading.meter.clone()))
                .or_default() += seconds(piece[1] - piece[0]);
        }
    }
    out
}

/// The books per bucket, from the meter readings and the workloads' IT kWh per bucket.
pub fn reconcile(
    readings: &[MeterReading],
    workloads: &BTreeMap<DateTime<Utc>, Workloads>,
    window: &Window,
) -> (Vec<ReconciliationRow>, ReconciliationRow) {
    let by_bucket = metered(readings, window);
    // Every meter seen in the range must report for a bucket to be covered.
    let meters: BTreeSet<(MeterKind, Id)> =
        readings.iter().map(|r| (r.kind, r.meter.clone())).collect();
    let buckets: BTreeSet<DateTime<Utc>> =
        by_bucket.keys().chain(workloads.keys()).copied().collect();
    let empty = Metered::default();
    let mut totals = Sums::default();
    let rows = buckets
        .into_iter()
        .map(|bucket| {
            let metered = by_bucket.get(&bucket).unwrap_or(&empty);
            let end = window
                .bucket_edges(bucket, window.to)
                .first()
                .copied()
                .unwrap_or(window.to)
                .min(window.to);
            let length = seconds(end - bucket.max(window.from));
            let coverage = |kind: MeterKind| {
                meters
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|key| metered.covered_s.get(key).copied().unwrap_or(0.0) / length)
                    .reduce(f64::min)
                    .unwrap_or(0.0)
                    .min(1.0)
            };
            let kwh = |kind| metered.kwh.get(&kind).copied().unwrap_or(0.0);
            let figures = Figures {
                facility: kwh(MeterKind::Facility),
                it: kwh(MeterKind::It),
                cooling: kwh(MeterKind::Cooling),
                other: kwh(MeterKind::Other),
                facility_coverage: coverage(MeterKind::Facility),
                it_coverage: coverage(MeterKind::It),
                workloads: workloads.get(&bucket).map_or(0.0, |w| w.attributed_kwh),
                modelled: workloads.get(&bucket).map_or(0.0, |w| w.modelled_kwh),
                allocated: workloads.get(&bucket).map_or(0.0, |w| w.allocated_kwh),
            };
            totals.add(&figures);
            figures.row(Some(local_rfc3339(bucket, window.tz)))
        })
        .collect();
    (rows, totals.row())
}

/// The workloads' IT energy in one bucket: their own (measured or modelled), the modelled part
/// of it, and what was allocated to them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Workloads {
    pub attributed_kwh: f64,
    pub modelled_kwh: f64,
    pub allocated_kwh: f64,
}

/// One bucket's measured figures.
#[derive(Default)]
struct Figures {
    facility: f64,
    it: f64,
    cooling: f64,
    other: f64,
    facility_coverage: f64,
    it_coverage: f64,
    /// Measured and modelled.
    workloads: f64,
    modelled: f64,
    allocated: f64,
}

impl Figures {
    fn row(&self, bucket_start: Option<String>) -> ReconciliationRow {
        let mut discrepancies = Vec::new();
        let it_whole = self.it_coverage >= WHOLE;
        let both_whole = it_whole && self.facility_coverage >= WHOLE;
        if self.it_coverage > 0.0 && !it_whole {
            discrepancies.push(format!(
                "the IT meters cover {:.1}% of the time: no remainder or PUE is measured",
                self.it_coverage * 100.0
            ));
        }
        let remainder = self.it - self.workloads;
        if it_whole && remainder < 0.0 {
            discrepancies.push(format!(
                "the workloads measured {:.6} kWh more than the IT meters: not allocated",
                -remainder
            ));
        }
        let pue = (both_whole && self.it > 0.0).then(|| self.facility / self.it);
        if pue.is_some_and(|pue| pue < 1.0) {
            discrepancies.push(format!(
                "the facility meter measured less than the IT meters (PUE {:.3}): not used",
                pue.unwrap_or_default()
            ));
        }
        ReconciliationRow {
            bucket_start,
            facility_meter_kwh: presented(self.facility),
            it_meter_kwh: presented(self.it),
            cooling_meter_kwh: presented(self.cooling),
            other_meter_kwh: presented(self.other),
            facility_meter_coverage: presented(self.facility_coverage),
            it_meter_coverage: presented(self.it_coverage),
            measured_workloads_kwh: presented(self.workloads - self.modelled),
            modelled_workloads_kwh: presented(self.modelled),
            unattributed_it_kwh: (it_whole && remainder >= 0.0).then(|| presented(remainder)),
            allocated_it_kwh: presented(self.allocated),
            operator_it_kwh: (it_whole && remainder >= 0.0)
                .then(|| presented(remainder - self.allocated)),
            attribution_coverage: (it_whole && self.it > 0.0)
                .then(|| presented(self.workloads / self.it)),
            measured_pue: pue.filter(|pue| *pue >= 1.0).map(presented),
            discrepancies,
        }
    }
}

/// The whole range: sums, and coverage as the mean of the buckets' (every bucket but a partial
/// last one is as long as the others, so it is close; the rows carry the exact shares).
#[derive(Default)]
struct Sums {
    figures: Figures,
    buckets: f64,
}

impl Sums {
    fn add(&mut self, f: &Figures) {
        let sum = &mut self.figures;
        sum.facility += f.facility;
        sum.it += f.it;
        sum.cooling += f.cooling;
        sum.other += f.other;
        sum.facility_coverage += f.facility_coverage;
        sum.it_coverage += f.it_coverage;
        sum.workloads += f.workloads;
        sum.modelled += f.modelled;
        sum.allocated += f.allocated;
        self.buckets += 1.0;
    }

    fn row(mut self) -> ReconciliationRow {
        let buckets = self.buckets.max(1.0);
        self.figures.facility_coverage /= buckets;
        self.figures.it_coverage /= buckets;
        self.figures.row(None)
    }
}

impl ReportSources {
    /// The site's books over the query's window (its customer and filters are ignored: every
    /// workload at the site counts).
    pub async fn reconciliation(
        &self,
        site: &Id,
        mut query: FootprintQuery,
    ) -> Result<(Vec<ReconciliationRow>, ReconciliationRow), ReportError> {
        query.customer = None;
        query.group_by = Vec::new();
        query.workloads = Vec::new();
        query.sites = vec![site.clone()];
        let window = query.window;
        let readings = meters::load(&self.meters, Some(site), window.from, window.to, None).await?;
        let footprint = self.footprint(query).await?;
        let rows = &footprint.report.rows;
        let buckets = rows.column(BUCKET)?.i64()?;
        let attributed = rows.column(ATTRIBUTED_KWH)?.f64()?;
        let modelled = rows.column(MODELLED_KWH)?.f64()?;
        let allocated = rows.column(ALLOCATED_KWH)?.f64()?;
        let workloads: BTreeMap<DateTime<Utc>, Workloads> = (0..rows.height())
            .filter_map(|i| {
                Some((
                    DateTime::from_timestamp_micros(buckets.get(i)?)?,
                    Workloads {
                        attributed_kwh: attributed.get(i)?,
                        modelled_kwh: modelled.get(i)?,
                        allocated_kwh: allocated.get(i)?,
                    },
                ))
            })
            .collect();
        Ok(reconcile(&readings, &workloads, &window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::timeline::Granularity;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    use crate::domain::meter::sample as meter;

    #[test]
    fn the_books_of_two_hours_one_with_a_meter_gap() {
        let window = Window {
            from: t("2026-03-01T09:00:00Z"),
            to: t("2026-03-01T11:00:00Z"),
            granularity: Granularity::Hour,
            tz: chrono_tz::UTC,
        };
        // 09:00: facility 15 kWh, IT 10 kWh (two 30-minute readings), workloads 7.5 kWh:
        // 2.5 kWh unattributed, 75% attributed, PUE 1.5.
        // 10:00: the IT meter reports only until 10:30 (4 kWh): no remainder, no PUE.
        let readings = [
            meter(
                "main",
                MeterKind::Facility,
                "2026-03-01T09:00:00Z",
                60,
                15.0,
            ),
            meter("ups", MeterKind::It, "2026-03-01T09:00:00Z", 30, 5.0),
            meter("ups", MeterKind::It, "2026-03-01T09:30:00Z", 30, 5.0),
            meter(
                "main",
                MeterKind::Facility,
                "2026-03-01T10:00:00Z",
                60,
                12.0,
            ),
            meter("ups", MeterKind::It, "2026-03-01T10:00:00Z", 30, 4.0),
        ];
        let measured = |kwh| Workloads {
            attributed_kwh: kwh,
            ..Workloads::default()
        };
        let workloads = BTreeMap::from([
            (t("2026-03-01T09:00:00Z"), measured(7.5)),
            (t("2026-03-01T10:00:00Z"), measured(6.0)),
        ]);
        let (rows, totals) = reconcile(&readings, &workloads, &window);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].facility_meter_kwh, 15.0);
        assert_eq!(rows[0].it_meter_kwh, 10.0);
        assert_eq!(rows[0].unattributed_it_kwh, Some(2.5));
        assert_eq!(rows[0].attribution_coverage, Some(0.75));
        assert_eq!(rows[0].measured_pue, Some(1.5));
        assert!(rows[0].discrepancies.is_empty());
        assert_eq!(rows[1].it_meter_coverage, 0.5);
        assert_eq!(rows[1].unattributed_it_kwh, None);
        assert_eq!(rows[1].measured_pue, None);
        assert_eq!(rows[1].discrepancies.len(), 1);
        assert_eq!(totals.facility_meter_kwh, 27.0);
        assert_eq!(totals.measured_workloads_kwh, 13.5);
    }

    #[test]
    fn workloads_above_the_meter_are_a_discrepancy_not_a_negative_remainder() {
        let window = Window {
            from: t("2026-03-01T09:00:00Z"),
            to: t("2026-03-01T10:00:00Z"),
            granularity: Granularity::Total,
            tz: chrono_tz::UTC,
        };
        // The PDU's 08:50-09:05 reading (3 kWh) counts its last 5 minutes in the window,
        // 3 x 5/15 = 1 kWh; its 09:05-10:00 reading adds 3 kWh.
        let readings = [
            meter("pdu", MeterKind::It, "2026-03-01T08:50:00Z", 15, 3.0),
            meter("pdu", MeterKind::It, "2026-03-01T09:05:00Z", 55, 3.0),
        ];
        let workloads = BTreeMap::from([(
            t("2026-03-01T09:00:00Z"),
            Workloads {
                attributed_kwh: 4.5,
                ..Workloads::default()
            },
        )]);
        let (rows, _) = reconcile(&readings, &workloads, &window);
        // 1 + 3 = 4 kWh metered, 4.5 measured: 0.5 kWh too much, never allocated.
        assert_eq!(rows[0].it_meter_kwh, 4.0);
        assert_eq!(rows[0].it_meter_coverage, 1.0);
        assert_eq!(rows[0].unattributed_it_kwh, None);
        assert!(rows[0].discrepancies[0].contains("0.500000 kWh more"));
    }
}
