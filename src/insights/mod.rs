//! From reporting to reducing (DESIGN §3's per-instant figures turned into advice): the greenest
//! windows to run a job in, what moving past runs would have saved, and next weeks' footprint.
//! Plain functions over what the reports read; location-based intensity only, never market-based.
pub mod cache;
pub mod curve;
pub mod footprint_forecast;
pub mod forecast;
pub mod shift;
pub mod windows;

use crate::accounting::timeline::{Granularity, Window};
use crate::accounting::{GroupKey, BUCKET, FACILITY_KWH};
use crate::domain::intensity::{IntensityPoint, Signal};
use crate::domain::{Id, ZoneCode};
use crate::reports::{FootprintQuery, ReportError, ReportSources};
use crate::storage::intensity;
use chrono::{DateTime, Utc};
use shift::HourlyEnergy;
use std::collections::BTreeMap;

/// Every point stored for `zones` that may be in force over [from, to), in stored order.
pub async fn zone_points(
    sources: &ReportSources,
    zones: &[ZoneCode],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<IntensityPoint>, ReportError> {
    Ok(intensity::load(&sources.intensity, Some(zones), from, to, None).await?)
}

/// A zone's location-based intensity of one signal over [from, to), as a curve.
pub async fn zone_curve(
    sources: &ReportSources,
    zone: &ZoneCode,
    signal: Signal,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<curve::Curve, ReportError> {
    let points = zone_points(sources, std::slice::from_ref(zone), from, to).await?;
    Ok(curve::Curve::of_signal(&points, signal))
}

/// Facility energy (PUE applied) per workload and site and UTC hour over [from, to), from the
/// footprint report itself, so advice rests on exactly the energy the reports show.
pub async fn hourly_energy(
    sources: &ReportSources,
    customer: Option<Id>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    workloads: Vec<Id>,
) -> Result<Vec<HourlyEnergy>, ReportError> {
    let query = FootprintQuery {
        customer,
        window: Window {
            from,
            to,
            granularity: Granularity::Hour,
            tz: chrono_tz::UTC,
        },
        group_by: vec![GroupKey::Workload, GroupKey::Site, GroupKey::Zone],
        workloads,
        sites: Vec::new(),
    };
    let footprint = sources.footprint(query).await?;
    let frame = &footprint.report.rows;
    let text = |key: GroupKey| -> Result<_, ReportError> {
        Ok(frame.column(key.column())?.str()?.clone())
    };
    let (workload, site, zone) = (
        text(GroupKey::Workload)?,
        text(GroupKey::Site)?,
        text(GroupKey::Zone)?,
    );
    let buckets = frame.column(BUCKET)?.i64()?.clone();
    let energy = frame.column(FACILITY_KWH)?.f64()?.clone();
    let mut series: BTreeMap<(String, String), HourlyEnergy> = BTreeMap::new();
    for i in 0..frame.height() {
        let (Some(w), Some(s), Some(z), Some(hour), Some(kwh)) = (
            workload.get(i),
            site.get(i),
            zone.get(i),
            buckets.get(i).and_then(DateTime::from_timestamp_micros),
            energy.get(i),
        ) else {
            continue;
        };
        series
            .entry((w.to_owned(), s.to_owned()))
            .or_insert_with(|| HourlyEnergy {
                workload: w.to_owned(),
                site: s.to_owned(),
                zone: z.to_owned(),
                hours: Vec::new(),
            })
            .hours
            .push((hour, kwh));
    }
    let mut series: Vec<HourlyEnergy> = series.into_values().collect();
    for s in &mut series {
        s.hours.sort_by_key(|(hour, _)| *hour);
    }
    Ok(series)
}
