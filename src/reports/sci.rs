//! The Software Carbon Intensity (ISO/IEC 21031:2024) per workload and bucket:
//! SCI = ((E x I) + M) per R, with E x I the location-based emissions of the workload's facility
//! energy (the footprint's, per instant), M its embodied emissions (the footprint's reservations)
//! and R its functional units, spread over buckets pro rata by time like readings.
use super::render::{local_rfc3339, presented};
use super::{FootprintQuery, ReportError, ReportSources};
use crate::accounting::embodied::EMBODIED_G;
use crate::accounting::timeline::Window;
use crate::accounting::{GroupKey, BUCKET, FACILITY_KWH, LOCATION_G};
use crate::storage::functional_units::{self, Count};
use crate::storage::readings::WORKLOAD;
use chrono::{DateTime, Utc};
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What the answer says about its method, verbatim.
pub const METHOD: &str = "SCI = ((E x I) + M) per R (ISO/IEC 21031:2024). E is facility energy \
(IT energy x PUE); I the grid's location-based intensity in force at each instant, so E x I is \
the footprint's location_emissions_gco2e. Market-based instruments (PPAs, RECs, GOs) are excluded, \
as the SCI specification requires. M is the embodied emissions of the hardware the workload \
reserved (amortised over its lifespan, shared by resources). R is the functional units counted \
in the bucket, a count spread over its interval by time.";

/// The SCI of one workload over one bucket (or the totals), with its terms.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[schema(example = json!({"bucket_start": "2026-03-01T09:00:00Z", "workload": "api",
    "energy_kwh": 1.5, "location_emissions_gco2e": 495.0, "location_intensity_gco2e_per_kwh": 330.0,
    "embodied_gco2e": 28.538812785, "functional_units": 1200.0,
    "sci_gco2e_per_unit": 0.436282344}))]
pub struct SciRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// E: facility energy.
    pub energy_kwh: f64,
    /// E x I, location-based.
    pub location_emissions_gco2e: f64,
    /// I: E x I over E (0 without energy).
    pub location_intensity_gco2e_per_kwh: f64,
    /// M: embodied emissions of reserved hardware.
    pub embodied_gco2e: f64,
    /// R: functional units of the requested unit.
    pub functional_units: f64,
    /// ((E x I) + M) / R; absent where R is 0.
    pub sci_gco2e_per_unit: Option<f64>,
}

impl SciRow {
    fn new(
        bucket_start: Option<String>,
        workload: Option<String>,
        (energy, emissions, embodied, units): (f64, f64, f64, f64),
    ) -> Self {
        Self {
            bucket_start,
            workload,
            energy_kwh: presented(energy),
            location_emissions_gco2e: presented(emissions),
            location_intensity_gco2e_per_kwh: presented(if energy > 0.0 {
                emissions / energy
            } else {
                0.0
            }),
            embodied_gco2e: presented(embodied),
            functional_units: presented(units),
            sci_gco2e_per_unit: (units > 0.0).then(|| presented((emissions + embodied) / units)),
        }
    }
}

/// The SCI rows and totals.
#[derive(Debug, Clone)]
pub struct Sci {
    pub rows: Vec<SciRow>,
    pub totals: SciRow,
}

#[derive(Debug, thiserror::Error)]
pub enum SciError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("no {unit} were counted for these workloads in [from, to): the SCI needs R > 0")]
    NoFunctionalUnits { unit: String },
}

/// Counts per (bucket, workload) in [from, to), each count spread over its interval by time.
pub fn units_per_bucket(counts: &[Count], window: &Window) -> BTreeMap<BucketWorkload, f64> {
    let mut out = BTreeMap::new();
    for count in counts {
        let (start, end) = (count.start.max(window.from), count.end.min(window.to));
        if end <= start {
            continue;
        }
        let length = micros(count.end - count.start);
        let mut cuts = vec![start];
        cuts.extend(window.bucket_edges(start, end));
        cuts.push(end);
        for piece in cuts.windows(2).filter(|p| p[1] > p[0]) {
            let bucket = window.bucket_start(piece[0]).timestamp_micros();
            *out.entry((bucket, count.workload.clone())).or_insert(0.0) +=
                count.count * micros(piece[1] - piece[0]) / length;
        }
    }
    out
}

fn micros(span: chrono::Duration) -> f64 {
    span.num_microseconds().unwrap_or(i64::MAX) as f64
}

/// A (bucket start in microseconds, workload) key.
type BucketWorkload = (i64, String);

/// E, E x I and M per (bucket, workload) from a footprint's rows grouped by workload.
fn footprint_terms(rows: &DataFrame) -> PolarsResult<BTreeMap<BucketWorkload, (f64, f64, f64)>> {
    let bucket = rows.column(BUCKET)?.i64()?;
    let workload = rows.column(WORKLOAD)?.str()?;
    let energy = rows.column(FACILITY_KWH)?.f64()?;
    let emissions = rows.column(LOCATION_G)?.f64()?;
    let embodied = rows.column(EMBODIED_G)?.f64()?;
    Ok((0..rows.height())
        .filter_map(|i| {
            Some((
                (bucket.get(i)?, workload.get(i)?.to_owned()),
                (
                    energy.get(i).unwrap_or(0.0),
                    emissions.get(i).unwrap_or(0.0),
                    embodied.get(i).unwrap_or(0.0),
                ),
            ))
        })
        .collect())
}

/// The SCI of every (bucket, workload) that had emissions or units, and of the whole.
pub fn combine(
    rows: &DataFrame,
    units: &BTreeMap<BucketWorkload, f64>,
    tz: chrono_tz::Tz,
) -> PolarsResult<Sci> {
    let terms = footprint_terms(rows)?;
    let mut keys: Vec<&BucketWorkload> = terms.keys().chain(units.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut total = (0.0, 0.0, 0.0, 0.0);
    let rows = keys
        .into_iter()
        .map(|key| {
            let (energy, emissions, embodied) = terms.get(key).copied().unwrap_or_default();
            let count = units.get(key).copied().unwrap_or(0.0);
            total.0 += energy;
            total.1 += emissions;
            total.2 += embodied;
            total.3 += count;
            let bucket = DateTime::<Utc>::from_timestamp_micros(key.0)
                .map(|t| local_rfc3339(t, tz))
                .unwrap_or_default();
            SciRow::new(
                Some(bucket),
                Some(key.1.clone()),
                (energy, emissions, embodied, count),
            )
        })
        .collect();
    Ok(Sci {
        rows,
        totals: SciRow::new(None, None, total),
    })
}

impl ReportSources {
    /// The SCI of a customer's workloads in `unit` per the footprint's buckets.
    pub async fn sci(&self, mut query: FootprintQuery, unit: &str) -> Result<Sci, SciError> {
        query.group_by = vec![GroupKey::Workload];
        let Some(customer) = query.customer.clone() else {
            return Err(ReportError::BadParameter("the SCI is per customer".into()).into());
        };
        let counts = functional_units::load(
            &self.functional_units,
            &customer,
            unit,
            &query.workloads,
            query.window.from,
            query.window.to,
        )
        .await
        .map_err(ReportError::from)?;
        let units = units_per_bucket(&counts, &query.window);
        if units.values().sum::<f64>() <= 0.0 {
            return Err(SciError::NoFunctionalUnits {
                unit: unit.to_owned(),
            });
        }
        let tz = query.window.tz;
        let footprint = self.footprint(query).await?;
        Ok(combine(&footprint.report.rows, &units, tz).map_err(ReportError::from)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::timeline::Granularity;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_count_spreads_over_the_buckets_it_spans_by_time() {
        let window = Window {
            from: t("2026-03-01T09:00:00Z"),
            to: t("2026-03-01T12:00:00Z"),
            granularity: Granularity::Hour,
            tz: chrono_tz::UTC,
        };
        // 900 requests from 08:30 to 10:00, 600 an hour: 300 fall before the window, 600 in
        // the 09:00 bucket.
        // 400 requests from 10:30 to 11:30: 200 in the 10:00 bucket, 200 in the 11:00 one.
        let counts = [
            Count {
                workload: "api".into(),
                start: t("2026-03-01T08:30:00Z"),
                end: t("2026-03-01T10:00:00Z"),
                count: 900.0,
            },
            Count {
                workload: "api".into(),
                start: t("2026-03-01T10:30:00Z"),
                end: t("2026-03-01T11:30:00Z"),
                count: 400.0,
            },
        ];
        let units = units_per_bucket(&counts, &window);
        let at = |s: &str| units[&(t(s).timestamp_micros(), "api".to_owned())];
        assert!((at("2026-03-01T09:00:00Z") - 600.0).abs() < 1e-9);
        assert!((at("2026-03-01T10:00:00Z") - 200.0).abs() < 1e-9);
        assert!((at("2026-03-01T11:00:00Z") - 200.0).abs() < 1e-9);
        assert_eq!(units.len(), 3);
    }
}
