//! A report's frames as the API's shapes: JSON rows with nested quality shares, and flat records
//! (quality shares as `quality_*` columns) for NDJSON, CSV and Parquet.
use super::Footprint;
use crate::accounting::embodied::{EMBODIED_G, EMBODIED_KNOWN_SHARE};
use crate::accounting::{
    GroupKey, ALLOCATED_KWH, ATTRIBUTED_KWH, BUCKET, FACILITY_KWH, IT_KWH, LOCATION_G,
    LOCATION_INTENSITY, MARKET_FALLBACK_SHARE, MARKET_G, MARKET_INSTRUMENT_SHARE, MODELLED_KWH,
    MODELLED_SHARE, PUE_MEASURED_SHARE, QUALITY_COLUMNS, READINGS,
};
use chrono::{DateTime, SecondsFormat};
use chrono_tz::Tz;
use polars::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

/// Shares of facility energy by how its intensity was obtained; they sum to 1.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
pub struct QualityShares {
    pub actual: f64,
    pub estimated: f64,
    pub forecast: f64,
    pub carried_forward: f64,
    pub default_factor: f64,
    pub missing: f64,
}

/// The figures of a row or of the totals.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
pub struct Figures {
    /// Measured IT energy plus what the site allocated to it (`allocation`).
    pub it_energy_kwh: f64,
    /// IT energy of the workloads themselves: measured by their readings, or modelled from
    /// their usage (`modelled_it_energy_kwh` says how much).
    #[serde(default)]
    pub attributed_it_energy_kwh: f64,
    /// IT energy the site allocated to the row from what its IT meters measured beyond all
    /// workloads (`energy_proportional` by energy, `reserved_proportional` by reserved capacity,
    /// as `(reserved capacity)` rows); facility energy and emissions include it.
    #[serde(default)]
    pub allocated_it_energy_kwh: f64,
    /// IT energy times the site's PUE.
    pub facility_energy_kwh: f64,
    pub location_emissions_gco2e: f64,
    pub market_emissions_gco2e: f64,
    /// Location-based emissions per kWh of facility energy that had an intensity.
    pub location_intensity_gco2e_per_kwh: f64,
    /// Readings contributing (a reading split across buckets counts in each).
    pub readings: i64,
    pub quality: QualityShares,
    /// Share of facility energy whose market-based emissions use the location-based intensity
    /// because no instrument covered it and the zone has no residual mix for that year.
    pub market_location_fallback_share: f64,
    /// Share of facility energy covered by contractual instruments (PPAs, RECs, GOs, green
    /// tariffs) at their own factors; the rest is priced at the residual mix or the fallback.
    pub market_instrument_share: f64,
    /// Embodied emissions (Scope 3) of the hardware the workloads reserved over the bucket:
    /// each reservation's share of its machine's manufacturing and transport emissions,
    /// amortised over the machine's lifespan. Zero where no reservation is registered (and in
    /// statements issued before embodied emissions were counted).
    #[serde(default)]
    pub embodied_gco2e: f64,
    /// Share of IT energy whose workload held registered hardware at that instant: how much of
    /// the energy `embodied_gco2e` speaks for.
    #[serde(default)]
    pub embodied_known_share: f64,
    /// Share of facility energy whose PUE the site's meters measured (facility over IT meters);
    /// the rest used the site's configured PUE.
    #[serde(default)]
    pub pue_measured_share: f64,
    /// The part of attributed IT energy a power model estimated from usage (`POST /v1/usage`)
    /// because no meter measured it.
    #[serde(default)]
    pub modelled_it_energy_kwh: f64,
    /// `modelled_it_energy_kwh` over attributed IT energy: 0 all measured, 1 all modelled.
    #[serde(default)]
    pub modelled_share: f64,
}

/// One bucket of one group.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({"bucket_start": "2026-03-01T09:00:00Z", "workload": "api",
    "it_energy_kwh": 0.075, "attributed_it_energy_kwh": 0.075, "allocated_it_energy_kwh": 0.0, "facility_energy_kwh": 0.1125, "location_emissions_gco2e": 37.125,
    "market_emissions_gco2e": 28.0, "location_intensity_gco2e_per_kwh": 330.0, "readings": 1,
    "quality": {"actual": 1.0, "estimated": 0.0, "forecast": 0.0, "carried_forward": 0.0,
                "default_factor": 0.0, "missing": 0.0}, "market_location_fallback_share": 0.0,
    "market_instrument_share": 0.25, "embodied_gco2e": 3.73, "embodied_known_share": 1.0,
    "pue_measured_share": 0.0, "modelled_it_energy_kwh": 0.0, "modelled_share": 0.0}))]
pub struct FootprintRow {
    /// Start of the bucket, RFC 3339 with the offset of the report's time zone.
    pub bucket_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Answers carry 9 decimals: a nanowatt-hour or a nanogram is far below what any meter resolves,
/// and it keeps float noise (`37.12499999999999`) out of dashboards. The engine itself never rounds.
pub(super) fn presented(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

fn floats(frame: &DataFrame, name: &str) -> PolarsResult<Float64Chunked> {
    Ok(frame.column(name)?.f64()?.apply_values(presented))
}

fn figures(frame: &DataFrame) -> PolarsResult<Vec<Figures>> {
    let (it, facility, location, market, intensity, fallback, covered) = (
        floats(frame, IT_KWH)?,
        floats(frame, FACILITY_KWH)?,
        floats(frame, LOCATION_G)?,
        floats(frame, MARKET_G)?,
        floats(frame, LOCATION_INTENSITY)?,
        floats(frame, MARKET_FALLBACK_SHARE)?,
        floats(frame, MARKET_INSTRUMENT_SHARE)?,
    );
    let (attributed, allocated) = (
        floats(frame, ATTRIBUTED_KWH)?,
        floats(frame, ALLOCATED_KWH)?,
    );
    let (embodied, known, measured) = (
        floats(frame, EMBODIED_G)?,
        floats(frame, EMBODIED_KNOWN_SHARE)?,
        floats(frame, PUE_MEASURED_SHARE)?,
    );
    let (modelled, modelled_share) = (floats(frame, MODELLED_KWH)?, floats(frame, MODELLED_SHARE)?);
    let readings = frame.column(READINGS)?.i64()?.clone();
    let quality: Vec<Float64Chunked> = QUALITY_COLUMNS
        .iter()
        .map(|name| floats(frame, name))
        .collect::<PolarsResult<_>>()?;
    let get = |c: &Float64Chunked, i| c.get(i).unwrap_or(0.0);
    Ok((0..frame.height())
        .map(|i| Figures {
            it_energy_kwh: get(&it, i),
            attributed_it_energy_kwh: get(&attributed, i),
            allocated_it_energy_kwh: get(&allocated, i),
            facility_energy_kwh: get(&facility, i),
            location_emissions_gco2e: get(&location, i),
            market_emissions_gco2e: get(&market, i),
            location_intensity_gco2e_per_kwh: get(&intensity, i),
            readings: readings.get(i).unwrap_or(0),
            quality: QualityShares {
                actual: get(&quality[0], i),
                estimated: get(&quality[1], i),
                forecast: get(&quality[2], i),
                carried_forward: get(&quality[3], i),
                default_factor: get(&quality[4], i),
                missing: get(&quality[5], i),
            },
            market_location_fallback_share: get(&fallback, i),
            market_instrument_share: get(&covered, i),
            embodied_gco2e: get(&embodied, i),
            embodied_known_share: get(&known, i),
            pue_measured_share: get(&measured, i),
            modelled_it_energy_kwh: get(&modelled, i),
            modelled_share: get(&modelled_share, i),
        })
        .collect())
}

/// An instant as RFC 3339 with the offset of `tz` (how bucket starts go on the wire).
pub fn local_rfc3339(t: DateTime<chrono::Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn bucket_text(us: Option<i64>, tz: Tz) -> String {
    us.and_then(DateTime::from_timestamp_micros)
        .map(|t| local_rfc3339(t, tz))
        .unwrap_or_default()
}

impl Footprint {
    pub fn rows(&self) -> PolarsResult<Vec<FootprintRow>> {
        self.rows_of(&self.report.rows)
    }

    /// How many rows the report has.
    pub fn height(&self) -> usize {
        self.report.rows.height()
    }

    fn rows_of(&self, frame: &DataFrame) -> PolarsResult<Vec<FootprintRow>> {
        let buckets = frame.column(BUCKET)?.i64()?.clone();
        let group = |key: GroupKey| -> PolarsResult<Option<StringChunked>> {
            if self.query.group_by.contains(&key) {
                Ok(Some(frame.column(key.column())?.str()?.clone()))
            } else {
                Ok(None)
            }
        };
        let (customer, workload, site, zone) = (
            group(GroupKey::Customer)?,
            group(GroupKey::Workload)?,
            group(GroupKey::Site)?,
            group(GroupKey::Zone)?,
        );
        let text =
            |c: &Option<StringChunked>, i| c.as_ref().and_then(|c| c.get(i)).map(str::to_owned);
        Ok(figures(frame)?
            .into_iter()
            .enumerate()
            .map(|(i, figures)| FootprintRow {
                bucket_start: bucket_text(buckets.get(i), self.query.window.tz),
                customer: text(&customer, i),
                workload: text(&workload, i),
                site: text(&site, i),
                zone: text(&zone, i),
                figures,
            })
            .collect())
    }

    pub fn totals(&self) -> PolarsResult<Figures> {
        figures(&self.report.totals)?
            .pop()
            .ok_or_else(|| polars_err!(NoData: "no totals"))
    }

    /// Column names of the flat formats, in order.
    pub fn flat_header(&self) -> Vec<&'static str> {
        let mut header = vec![BUCKET];
        header.extend(self.query.group_by.iter().map(|k| k.column()));
        header.extend([
            IT_KWH,
            FACILITY_KWH,
            LOCATION_G,
            MARKET_G,
            LOCATION_INTENSITY,
            READINGS,
        ]);
        header.extend(QUALITY_COLUMNS);
        header.extend([
            MARKET_FALLBACK_SHARE,
            MARKET_INSTRUMENT_SHARE,
            EMBODIED_G,
            EMBODIED_KNOWN_SHARE,
            PUE_MEASURED_SHARE,
            ATTRIBUTED_KWH,
            ALLOCATED_KWH,
            MODELLED_KWH,
            MODELLED_SHARE,
        ]);
        header
    }

    /// Up to `len` rows from `offset` as flat records of JSON values, in `flat_header` order:
    /// exports render a slice at a time, so memory follows the slice, not the report.
    pub fn flat_rows(
        &self,
        offset: usize,
        len: usize,
    ) -> PolarsResult<Vec<Vec<serde_json::Value>>> {
        use serde_json::Value;
        let slice = self.report.rows.slice(offset as i64, len);
        Ok(self
            .rows_of(&slice)?
            .into_iter()
            .map(|row| {
                let mut record = vec![Value::from(row.bucket_start)];
                for key in &self.query.group_by {
                    let value = match key {
                        GroupKey::Customer => &row.customer,
                        GroupKey::Workload => &row.workload,
                        GroupKey::Site => &row.site,
                        GroupKey::Zone => &row.zone,
                    };
                    record.push(Value::from(value.clone().unwrap_or_default()));
                }
                let f = row.figures;
                let q = f.quality;
                record.extend([
                    Value::from(f.it_energy_kwh),
                    Value::from(f.facility_energy_kwh),
                    Value::from(f.location_emissions_gco2e),
                    Value::from(f.market_emissions_gco2e),
                    Value::from(f.location_intensity_gco2e_per_kwh),
                    Value::from(f.readings),
                    Value::from(q.actual),
                    Value::from(q.estimated),
                    Value::from(q.forecast),
                    Value::from(q.carried_forward),
                    Value::from(q.default_factor),
                    Value::from(q.missing),
                    Value::from(f.market_location_fallback_share),
                    Value::from(f.market_instrument_share),
                    Value::from(f.embodied_gco2e),
                    Value::from(f.embodied_known_share),
                    Value::from(f.pue_measured_share),
                    Value::from(f.attributed_it_energy_kwh),
                    Value::from(f.allocated_it_energy_kwh),
                    Value::from(f.modelled_it_energy_kwh),
                    Value::from(f.modelled_share),
                ]);
                record
            })
            .collect())
    }

    /// The rows as Parquet, `bucket_start` a timestamp in the report's time zone, in row groups.
    pub fn parquet(&self) -> PolarsResult<Vec<u8>> {
        let tz = TimeZone::opt_try_new(Some(self.query.window.tz.name()))?;
        let mut frame = self
            .report
            .rows
            .clone()
            .lazy()
            .with_column(col(BUCKET).cast(DataType::Datetime(TimeUnit::Microseconds, tz)))
            .select(self.flat_header().into_iter().map(col).collect::<Vec<_>>())
            .collect()?;
        let figures = [
            IT_KWH,
            ATTRIBUTED_KWH,
            ALLOCATED_KWH,
            FACILITY_KWH,
            LOCATION_G,
            MARKET_G,
            LOCATION_INTENSITY,
            MARKET_FALLBACK_SHARE,
            MARKET_INSTRUMENT_SHARE,
            EMBODIED_G,
            EMBODIED_KNOWN_SHARE,
            PUE_MEASURED_SHARE,
            MODELLED_KWH,
            MODELLED_SHARE,
        ];
        for name in figures.into_iter().chain(QUALITY_COLUMNS) {
            let rounded = Column::from(floats(&frame, name)?.into_series());
            frame.with_column(rounded)?;
        }
        let mut out = Vec::new();
        ParquetWriter::new(&mut out)
            .with_row_group_size(Some(65_536))
            .finish(&mut frame)?;
        Ok(out)
    }
}
