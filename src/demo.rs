//! The demo data set behind `serve --demo`: three sites in three grid zones, two customers, a
//! week of 5-minute readings (2024-03-04 to 2024-03-11) and intensity from the providers' recorded
//! payloads in `fixtures/providers`, repeated to span the week, so a new user's first footprint
//! request has something to show. Two machines with reservations and a week of hourly requests
//! give acme's `web` an embodied share and an SCI per request; London's main meter and UPS give
//! the operator's view a site's books; globex's `reports`, a job with no power meter, is modelled
//! from its hourly usage.
use crate::domain::embodied::{HardwareSpec, ReservationSpec, SharedBy};
use crate::domain::functional_unit::FunctionalUnit;
use crate::domain::intensity::IntensityPoint;
use crate::domain::meter::{MeterKind, MeterReading};
use crate::domain::reading::ReadingBatch;
use crate::domain::usage::Usage;
use crate::domain::{
    Customer, CustomerSpec, Id, Instrument, InstrumentKind, PueEntry, Site, SiteSpec, ZoneCode,
    ZoneSpec,
};
use crate::sources::feeds::{electricity_maps, uk_carbon_intensity, watttime, FeedError};
use crate::storage::logged::{LoggedTable, LoggedTableError};
use crate::storage::{
    functional_units, intensity, meters, readings, usage, Registry, RegistryError,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

const UK: &str = include_str!("../fixtures/providers/uk_carbonintensity_intensity_range.json");
const ELECTRICITY_MAPS: &str = include_str!("../fixtures/providers/electricitymaps_history.json");
const WATTTIME: &str = include_str!("../fixtures/providers/watttime_historical.json");

/// The demo week.
pub const FROM: &str = "2024-03-04T00:00:00Z";
pub const TO: &str = "2024-03-11T00:00:00Z";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("demo fixtures: {0}")]
    Fixture(#[from] FeedError),
    #[error("demo data: {0}")]
    Store(#[from] LoggedTableError),
    #[error("demo data: {0}")]
    Invalid(String),
}

fn id(raw: &str) -> Result<Id, DemoError> {
    Id::parse(raw).map_err(DemoError::Invalid)
}

fn time(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap_or_default()
}

fn invalid(error: crate::domain::Invalid) -> DemoError {
    DemoError::Invalid(format!("{error:?}"))
}

async fn registry(registry: &Registry) -> Result<(), DemoError> {
    let sites = [
        (
            "lon1",
            "London 1",
            "GB",
            1.25,
            Some(("2024-03-07T00:00:00Z", 1.2)),
        ),
        ("fra1", "Frankfurt 1", "DE", 1.4, None),
        ("sfo1", "San Francisco 1", "US-CAL-CISO", 1.15, None),
    ];
    for (site, name, zone, pue, change) in sites {
        let spec = SiteSpec {
            name: name.into(),
            zone: zone.into(),
            pue,
            pue_schedule: change
                .map(|(from, pue)| {
                    vec![PueEntry {
                        from: time(from),
                        pue,
                    }]
                })
                .unwrap_or_default(),
            retired_at: None,
            allocation: Default::default(),
            power_model: None,
        };
        registry
            .put::<Site>(BY, spec.parse(id(site)?).map_err(invalid)?)
            .await?;
    }
    for (customer, name) in [("acme", "Acme Corp"), ("globex", "Globex")] {
        let spec = CustomerSpec {
            name: name.into(),
            retired_at: None,
        };
        registry
            .put::<Customer>(BY, spec.parse(id(customer)?).map_err(invalid)?)
            .await?;
    }
    let de = ZoneSpec {
        default_gco2e_per_kwh: None,
        residual_mix_gco2e_per_kwh: BTreeMap::from([("2024".to_owned(), 560.0)]),
    };
    registry
        .put(
            BY,
            de.parse(ZoneCode::parse("DE").map_err(DemoError::Invalid)?)
                .map_err(invalid)?,
        )
        .await?;
    for (instrument, customer, mwh, kind) in [
        ("ppa-fra1-2024q1", None, 0.15, InstrumentKind::Ppa),
        (
            "rec-acme-lon1-2024q1",
            Some("acme"),
            0.05,
            InstrumentKind::Rec,
        ),
    ] {
        registry
            .put(
                BY,
                Instrument {
                    id: id(instrument)?,
                    site: id(if customer.is_some() { "lon1" } else { "fra1" })?,
                    customer: customer.map(id).transpose()?,
                    from: time("2024-01-01T00:00:00Z"),
                    to: time("2024-04-01T00:00:00Z"),
                    energy_mwh: mwh,
                    gco2e_per_kwh: 0.0,
                    kind,
                },
            )
            .await?;
    }
    hardware(registry).await
}

/// A 64-vCPU server in London with 16 vCPUs held by acme's web all week, and an 8-GPU server in
/// San Francisco with 4 GPUs held by acme's ml-training: both from the shipped class table.
async fn hardware(registry: &Registry) -> Result<(), DemoError> {
    let machines = [
        (
            "lon1-r01-s01",
            "lon1",
            "server-2s-256gb",
            SharedBy::Vcpu,
            64.0,
        ),
        ("sfo1-gpu-01", "sfo1", "gpu-server-8x", SharedBy::Gpu, 8.0),
    ];
    for (machine, site, class, shared_by, total) in machines {
        let spec = HardwareSpec {
            site: site.into(),
            class: class.into(),
            embodied_kgco2e: None,
            lifespan_years: None,
            shared_by,
            total,
            in_service: time("2023-09-01T00:00:00Z").date_naive(),
        };
        registry
            .put(BY, spec.parse(id(machine)?).map_err(invalid)?)
            .await?;
    }
    let holds = [
        ("acme-web-lon1", "lon1-r01-s01", "web", 16.0),
        ("acme-ml-sfo1", "sfo1-gpu-01", "ml-training", 4.0),
    ];
    for (reservation, machine, workload, reserved) in holds {
        let spec = ReservationSpec {
            hardware: machine.into(),
            customer: "acme".into(),
            workload: workload.into(),
            from: time(FROM),
            to: time(TO),
            reserved,
        };
        registry
            .put(BY, spec.parse(id(reservation)?).map_err(invalid)?)
            .await?;
    }
    Ok(())
}

/// The daily cycle of the demo's load: highest at 14:00 UTC.
fn daily_cycle(hour: f64) -> f64 {
    1.0 + 0.35 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// Hourly requests served by acme's web, following the same daily cycle as its power.
fn requests() -> Result<Vec<FunctionalUnit>, DemoError> {
    let (site, customer, workload) = (id("lon1")?, id("acme")?, id("web")?);
    Ok((0..7 * 24)
        .map(|hour| FunctionalUnit {
            site: site.clone(),
            customer: customer.clone(),
            workload: workload.clone(),
            start: time(FROM) + Duration::hours(hour),
            duration_s: 3600,
            unit: "requests".into(),
            count: (18_000.0 * daily_cycle(f64::from(hour as i32 % 24))).round(),
        })
        .collect())
}

/// London's meters, hourly: the UPS feeds its two workloads plus 400 W of idle and unmetered
/// equipment, and the main meter draws 1.3 times that.
fn london_meters() -> Result<Vec<MeterReading>, DemoError> {
    let (site, main, ups) = (id("lon1")?, id("main")?, id("ups-a")?);
    let mut out = Vec::new();
    for hour in 0..7 * 24 {
        let start = time(FROM) + Duration::hours(hour);
        // The workloads' mean power over the hour, from the same 5-minute cycle as their readings.
        let workloads: f64 = (0..12)
            .map(|step| {
                let at = f64::from((hour % 24) as i32) + f64::from(step) / 12.0;
                (420.0 * daily_cycle(at)).round() + (650.0 * daily_cycle(at)).round()
            })
            .sum::<f64>()
            / 12.0;
        let it_j = (workloads + 400.0) * 3600.0;
        for (meter, kind, joules) in [
            (&ups, MeterKind::It, it_j),
            (&main, MeterKind::Facility, it_j * 1.3),
        ] {
            out.push(MeterReading {
                site: site.clone(),
                meter: meter.clone(),
                kind,
                start,
                duration_s: 3600,
                energy_j: joules,
            });
        }
    }
    Ok(out)
}

/// Recorded points repeated every `period` so they span the demo week.
fn tiled(points: Vec<IntensityPoint>, period: Duration) -> Vec<IntensityPoint> {
    let (from, to) = (time(FROM), time(TO));
    let Some(first) = points.iter().map(|p| p.start).min() else {
        return Vec::new();
    };
    let steps_back =
        ((first - from).num_seconds() as f64 / period.num_seconds() as f64).ceil() as i32 + 1;
    let mut out = Vec::new();
    for step in -steps_back..=(7 * 86_400 / period.num_seconds() as i32 + 1) {
        let shift = period * step;
        for point in &points {
            let (start, end) = (point.start + shift, point.end + shift);
            if end > from && start < to && !out.iter().any(|p: &IntensityPoint| p.start == start) {
                out.push(IntensityPoint {
                    start,
                    end,
                    ..point.clone()
                });
            }
        }
    }
    out
}

fn intensity_points() -> Result<Vec<IntensityPoint>, DemoError> {
    let received = time(TO);
    let zone = |z: &str| ZoneCode::parse(z).map_err(DemoError::Invalid);
    let mut all = tiled(
        uk_carbon_intensity::national_points(&zone("GB")?, UK, received)?,
        Duration::days(1),
    );
    all.extend(tiled(
        electricity_maps::history_points(&zone("DE")?, ELECTRICITY_MAPS, received)?,
        Duration::days(1),
    ));
    all.extend(tiled(
        watttime::historical_points(&zone("US-CAL-CISO")?, WATTTIME, received)?,
        Duration::hours(2),
    ));
    Ok(all)
}

/// 5-minute average power following a daily cycle, per (customer, workload, site, base watts).
fn readings_batch() -> ReadingBatch {
    let workloads = [
        ("acme", "web", "lon1", 420.0),
        ("acme", "batch", "fra1", 900.0),
        ("acme", "ml-training", "sfo1", 2400.0),
        ("globex", "db", "lon1", 650.0),
        ("globex", "api", "fra1", 300.0),
    ];
    let start = time(FROM);
    let mut batch = ReadingBatch::default();
    for (customer, workload, site, base) in workloads {
        for step in 0..(7 * 288) {
            let at = start + Duration::minutes(5 * step);
            let hour = f64::from(step as i32 % 288) / 12.0;
            let daily = daily_cycle(hour);
            batch.site.push(site);
            batch.customer.push(customer);
            batch.workload.push(workload);
            batch.start_us.push(at.timestamp_micros());
            batch.duration_s.push(300);
            batch.energy_j.push(None);
            batch.power_w.push(Some((base * daily).round()));
        }
    }
    batch
}

/// globex's `reports` at sfo1, hourly: 32 vCPUs and 128 GB busy 30 % of the time, priced with
/// Cloud Carbon Footprint's coefficients.
fn reports_usage() -> Result<Vec<Usage>, DemoError> {
    let (site, customer, workload) = (id("sfo1")?, id("globex")?, id("reports")?);
    Ok((0..7 * 24)
        .map(|hour| Usage {
            site: site.clone(),
            customer: customer.clone(),
            workload: workload.clone(),
            start: time(FROM) + Duration::hours(hour),
            duration_s: 3600,
            vcpu_hours: 32.0,
            memory_gb_hours: 128.0,
            gpu_hours: 0.0,
            utilisation: 0.3,
            power_model: None,
        })
        .collect())
}

/// The tables the demo set fills.
pub struct Tables<'a> {
    pub readings: &'a LoggedTable,
    pub intensity: &'a LoggedTable,
    pub functional_units: &'a LoggedTable,
    pub meters: &'a LoggedTable,
    pub usage: &'a LoggedTable,
}

/// Who the registry history says made the demo records.
const BY: &str = "demo";

/// Loads the demo set into an empty data directory; does nothing if any site exists.
pub async fn load(registry_store: &Registry, tables: Tables<'_>) -> Result<bool, DemoError> {
    let Tables {
        readings: readings_table,
        intensity: intensity_table,
        functional_units: units_table,
        meters: meters_table,
        usage: usage_table,
    } = tables;
    if !registry_store.list::<Site>().is_empty() {
        return Ok(false);
    }
    registry(registry_store).await?;
    intensity::append(intensity_table, intensity_points()?).await?;
    let batch = readings_batch();
    registry_store
        .mark_with_readings(BY, &batch.site.ids(), &batch.customer.ids())
        .await?;
    let frame = readings::frame(batch).map_err(LoggedTableError::from)?;
    readings_table.append(LoggedTable::prepare(frame)?).await?;
    let units = functional_units::frame(&requests()?).map_err(LoggedTableError::from)?;
    units_table.append(LoggedTable::prepare(units)?).await?;
    registry_store
        .mark_with_readings(BY, &[id("lon1")?], &[])
        .await?;
    let metered = meters::frame(&london_meters()?).map_err(LoggedTableError::from)?;
    meters_table.append(LoggedTable::prepare(metered)?).await?;
    let modelled = usage::frame(&reports_usage()?).map_err(LoggedTableError::from)?;
    usage_table.append(LoggedTable::prepare(modelled)?).await?;
    for table in [
        readings_table,
        intensity_table,
        units_table,
        meters_table,
        usage_table,
    ] {
        table.flush().await?;
    }
    Ok(true)
}
