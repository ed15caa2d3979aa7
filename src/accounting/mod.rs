//! The accounting method of DESIGN §3 as pure functions: readings (a LazyFrame) are split against a
//! report's timeline of segments and aggregated. No I/O, no clock, no async; numbers stay f64.
//!
//! Splitting (`split`) sums the readings that lie inside one segment and cuts the few that cross
//! an edge into parts; the parts are then joined to the segments' factors and aggregated.
pub mod allocation;
pub mod embodied;
pub mod market;
pub mod measured_pue;
mod parts;
#[cfg(test)]
mod properties;
pub mod rollup;
#[cfg(test)]
mod rollup_properties;
mod split;
#[cfg(test)]
mod tests;
pub mod timeline;

use crate::domain::{Id, Instrument, Site, Zone, ZoneCode};
use crate::storage::readings::{CUSTOMER, ENERGY_J, SITE, WORKLOAD};
use allocation::{Allocations, Capacities};
use embodied::{Holdings, EMBODIED_KNOWN_SHARE};
use market::PeriodEnergy;
use measured_pue::{ItPiece, PuePiece};
use polars::prelude::*;
use std::collections::HashMap;
use timeline::{Quality, Segment, Window};

pub use parts::{Energy, Timeline};

pub const BUCKET: &str = "bucket_start";
pub const ZONE: &str = "zone";
pub const IT_KWH: &str = "it_energy_kwh";
pub const FACILITY_KWH: &str = "facility_energy_kwh";
pub const LOCATION_G: &str = "location_emissions_gco2e";
pub const MARKET_G: &str = "market_emissions_gco2e";
pub const LOCATION_INTENSITY: &str = "location_intensity_gco2e_per_kwh";
pub const READINGS: &str = "readings";
pub const MARKET_FALLBACK_SHARE: &str = "market_location_fallback_share";
pub const MARKET_INSTRUMENT_SHARE: &str = "market_instrument_share";
/// Quality share columns, in `Quality::ALL` order.
pub const QUALITY_COLUMNS: [&str; 6] = [
    "quality_actual",
    "quality_estimated",
    "quality_forecast",
    "quality_carried_forward",
    "quality_default_factor",
    "quality_missing",
];

const SEG_ID: &str = "seg_id";
const SEG_START: &str = "seg_start";
const SEG_END: &str = "seg_end";
const IN_WINDOW: &str = "in_window";
const PUE: &str = "pue";
const INTENSITY: &str = "intensity";
const QUALITY: &str = "quality";
const MARKET_FACTOR: &str = "market_factor";
const FALLBACK: &str = "market_fallback";
const READING_ID: &str = "reading_id";
const FALLBACK_KWH: &str = "fallback_kwh";
const COVERED: &str = "market_covered";
const COVERED_KWH: &str = "covered_kwh";
const SHARE: &str = "share";
/// Readings the totals count: a reading across a bucket edge counts in both buckets' rows, once
/// in the totals (pieces carry the two counts apart, see `rollup`).
const READINGS_TOTAL: &str = "readings_in_total";
const WHOLE_READINGS: &str = "whole_readings";
const SPLIT_READINGS: &str = "split_readings";
const INTENSITY_KWH: &str = "kwh_with_intensity";
const KNOWN_KWH: &str = "kwh_with_hardware";
const PUE_MEASURED: &str = "pue_measured";
const ALLOCATION_EXTRA: &str = "allocation_extra";
/// IT energy the workloads' readings measured.
pub const ATTRIBUTED_KWH: &str = "attributed_it_energy_kwh";
/// IT energy allocated to them from what the IT meters measured beyond all workloads.
pub const ALLOCATED_KWH: &str = "allocated_it_energy_kwh";
const MEASURED_PUE_KWH: &str = "kwh_with_measured_pue";
/// Whether a part is modelled from usage rather than measured.
const MODELLED: &str = "modelled";
/// IT energy a reserved-capacity row carries (allocated, measured by no reading).
const RESERVED_KWH: &str = "reserved_kwh";
/// The part of attributed IT energy a power model estimated from usage (no meter measured it).
pub const MODELLED_KWH: &str = "modelled_it_energy_kwh";
/// `MODELLED_KWH` over attributed IT energy.
pub const MODELLED_SHARE: &str = "modelled_share";
/// Share of facility energy whose PUE the site's meters measured.
pub const PUE_MEASURED_SHARE: &str = "pue_measured_share";

/// Makes polars run every query on its streaming engine. Measured on the 10 M-reading benchmark,
/// an explicit `Engine::Streaming` on the parts query alone left the engine at 6.8 s, while
/// polars' own switch for all queries brought it to 4.1 s and halved peak memory. Call it first
/// thing in `main`, before any thread starts (it sets a process environment variable).
pub fn prefer_streaming_engine() {
    if std::env::var_os("POLARS_FORCE_STREAMING").is_none() {
        std::env::set_var("POLARS_FORCE_STREAMING", "1");
    }
}

/// A dimension reports can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKey {
    Customer,
    Workload,
    Site,
    Zone,
}

impl GroupKey {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "customer" => Some(Self::Customer),
            "workload" => Some(Self::Workload),
            "site" => Some(Self::Site),
            "zone" => Some(Self::Zone),
            _ => None,
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Self::Customer => CUSTOMER,
            Self::Workload => WORKLOAD,
            Self::Site => SITE,
            Self::Zone => ZONE,
        }
    }
}

/// Everything besides readings that the method needs.
pub struct Inputs<'a> {
    pub sites: &'a [Site],
    /// Registered zones (default factors, residual mixes), keyed by code.
    pub zones: &'a HashMap<ZoneCode, Zone>,
    /// Intensity pieces per zone covering the timeline (see `timeline::zone_pieces`).
    pub pieces: &'a HashMap<ZoneCode, Vec<timeline::IntensityPiece>>,
    pub instruments: &'a [Instrument],
    pub holdings: &'a Holdings,
    /// PUE measured by each site's meters, where they measured it.
    pub measured_pue: &'a HashMap<Id, Vec<PuePiece>>,
    /// What allocating sites allocate, where their IT meters measured.
    pub allocation: &'a Allocations,
    /// Reserved capacity, for reserved-proportional sites (its edges are segment edges).
    pub capacities: &'a Capacities,
}

/// Everything a footprint report needs besides readings, loaded by the caller.
pub struct Context<'a> {
    pub sites: &'a [Site],
    pub zones: &'a HashMap<ZoneCode, Zone>,
    /// Yearly average factors per zone for zones whose registry entry has none.
    pub default_factors: &'a HashMap<ZoneCode, f64>,
    /// Intensity points of the sites' zones from `points_from(window)` to `window.to`.
    pub points: &'a [crate::domain::intensity::IntensityPoint],
    pub instruments: &'a [Instrument],
    /// The reservations the report counts embodied emissions of (already filtered like its
    /// readings).
    pub holdings: &'a Holdings,
    /// PUE measured by the sites' meters (`measured_pue::pieces`), over the window and the
    /// relevant instruments' periods.
    pub measured_pue: &'a HashMap<Id, Vec<PuePiece>>,
    /// Where each site's IT meters measured (`measured_pue::it_pieces`), over the same span.
    pub it_pieces: &'a HashMap<Id, Vec<ItPiece>>,
    /// Every customer's reserved capacity, scoped to the report's customer and sites.
    pub capacities: &'a Capacities,
    pub max_carry_forward: chrono::Duration,
}

impl Context<'_> {
    /// From when intensity points can matter to a report over `window` (carry-forward reaches back).
    pub fn points_from(
        window: &Window,
        max_carry_forward: chrono::Duration,
    ) -> chrono::DateTime<chrono::Utc> {
        window.from
            - timeline::LOOKBACK
            - max_carry_forward
            - crate::domain::intensity::MAX_POINT_SPAN
    }

    /// The instruments that apply to some part of the report.
    pub fn relevant_instruments(&self, window: &Window) -> Vec<Instrument> {
        relevant_instruments(self.sites, self.instruments, window)
    }
}

/// The instruments of `sites` that apply to some part of a report over `window`.
pub fn relevant_instruments(
    sites: &[Site],
    instruments: &[Instrument],
    window: &Window,
) -> Vec<Instrument> {
    let start = window.from - timeline::LOOKBACK;
    instruments
        .iter()
        .filter(|i| i.from < window.to && i.to > start)
        .filter(|i| sites.iter().any(|s| s.id == i.site))
        .cloned()
        .collect()
}

/// A footprint: rows per bucket and group, and the totals (one row).
pub struct Report {
    pub rows: DataFrame,
    pub totals: DataFrame,
}

/// The whole method of DESIGN §3. `readings` overlap the window; `period_readings` cover the
/// periods of the relevant instruments (unused when there are none); `site_readings` are every
/// customer's readings at the sites that allocate, over the window and those periods (unused
/// when no site allocates). Each is measured and modelled energy.
pub fn footprint(
    context: &Context<'_>,
    window: &Window,
    group_by: &[GroupKey],
    readings: Energy,
    period_readings: Energy,
    site_readings: Energy,
) -> PolarsResult<Report> {
    let pieces = intensity_pieces(context, window);
    let instruments = context.relevant_instruments(window);
    let allocation = allocations(context, window, &instruments, site_readings)?;
    let every_customer = context.capacities.unscoped();
    let shares = match period_energy(
        period_readings,
        context.sites,
        &instruments,
        (context.measured_pue, &allocation, &every_customer),
    )? {
        Some((energy, segments)) => {
            let energy = energy
                .collect_with_engine(Engine::Streaming)?
                .unwrap_single();
            let rows = period_energy_rows(&energy, &segments, context.sites)?;
            market::coverage_shares(&instruments, &rows)
        }
        None => HashMap::new(),
    };
    let inputs = Inputs {
        sites: context.sites,
        zones: context.zones,
        pieces: &pieces,
        instruments: &instruments,
        holdings: context.holdings,
        measured_pue: context.measured_pue,
        allocation: &allocation,
        capacities: context.capacities,
    };
    // The parts are few (whole readings are summed per segment), so they are collected once and
    // both rows and totals are aggregated from that frame rather than reading the readings twice.
    let parts = Timeline::build(&inputs, window, &shares)?
        .parts(readings)?
        .collect()?;
    let mut keys = vec![BUCKET];
    keys.extend(group_by.iter().map(|k| k.column()));
    let embodied = context.holdings.per_bucket(window, context.sites)?;
    let rows = aggregate(parts.clone().lazy(), &keys);
    let totals = aggregate(parts.lazy(), &[]);
    Ok(Report {
        rows: embodied::with_embodied(rows, &embodied, &keys, &FIGURES)?.collect()?,
        totals: embodied::with_embodied(totals, &embodied, &[], &FIGURES)?.collect()?,
    })
}

/// Each site zone's intensity pieces over a report's timeline.
fn intensity_pieces(
    context: &Context<'_>,
    window: &Window,
) -> HashMap<ZoneCode, Vec<timeline::IntensityPiece>> {
    let start = window.from - timeline::LOOKBACK;
    let mut pieces = HashMap::new();
    for site in context.sites {
        if pieces.contains_key(&site.zone) {
            continue;
        }
        let points: Vec<_> = context
            .points
            .iter()
            .filter(|p| p.zone == site.zone)
            .cloned()
            .collect();
        let default = context
            .zones
            .get(&site.zone)
            .and_then(|z| z.default_gco2e_per_kwh)
            .or_else(|| {
                crate::domain::default_factors::lookup(context.default_factors, &site.zone)
            });
        pieces.insert(
            site.zone.clone(),
            timeline::zone_pieces(
                &points,
                default,
                context.max_carry_forward,
                start,
                window.to,
            ),
        );
    }
    pieces
}

/// The figures `aggregate` gives every group, after its keys.
const FIGURES: [&str; 20] = [
    IT_KWH,
    ATTRIBUTED_KWH,
    ALLOCATED_KWH,
    FACILITY_KWH,
    LOCATION_G,
    MARKET_G,
    LOCATION_INTENSITY,
    READINGS,
    QUALITY_COLUMNS[0],
    QUALITY_COLUMNS[1],
    QUALITY_COLUMNS[2],
    QUALITY_COLUMNS[3],
    QUALITY_COLUMNS[4],
    QUALITY_COLUMNS[5],
    MARKET_FALLBACK_SHARE,
    MARKET_INSTRUMENT_SHARE,
    EMBODIED_KNOWN_SHARE,
    PUE_MEASURED_SHARE,
    MODELLED_KWH,
    MODELLED_SHARE,
];

/// What each allocating site allocates over the window and the instruments' periods: a first
/// pass sums every customer's measured and modelled energy per IT-metered stretch.
fn allocations(
    context: &Context<'_>,
    window: &Window,
    instruments: &[Instrument],
    site_readings: Energy,
) -> PolarsResult<Allocations> {
    let allocating: Vec<Id> = context
        .sites
        .iter()
        .filter(|s| s.allocation != crate::domain::Allocation::None)
        .map(|s| s.id.clone())
        .collect();
    let mut allocation = allocation::stretches(context.it_pieces, &allocating);
    if allocation.is_empty() {
        return Ok(allocation);
    }
    let span = Window {
        from: instruments
            .iter()
            .map(|i| i.from)
            .fold(window.from, chrono::DateTime::min),
        to: instruments
            .iter()
            .map(|i| i.to)
            .fold(window.to, chrono::DateTime::max),
        granularity: timeline::Granularity::Total,
        tz: chrono_tz::UTC,
    };
    let (no_zones, no_pieces, no_pue) = (HashMap::new(), HashMap::new(), HashMap::new());
    let no_holdings = Holdings::default();
    let no_capacity = Capacities::default();
    let inputs = Inputs {
        sites: context.sites,
        zones: &no_zones,
        pieces: &no_pieces,
        instruments: &[],
        holdings: &no_holdings,
        measured_pue: &no_pue,
        allocation: &allocation,
        capacities: &no_capacity,
    };
    let timeline = Timeline::build(&inputs, &span, &HashMap::new())?;
    let segments = timeline::segments(&inputs, &span);
    let measured = timeline
        .parts(site_readings)?
        .group_by([col(SEG_ID)])
        .agg([col(ATTRIBUTED_KWH).sum()])
        .collect()?;
    let ids = measured.column(SEG_ID)?.i64()?;
    let kwh = measured.column(ATTRIBUTED_KWH)?.f64()?;
    let by_segment: HashMap<usize, f64> = (0..measured.height())
        .filter_map(|i| Some((usize::try_from(ids.get(i)?).ok()?, kwh.get(i)?)))
        .collect();
    allocation::settle(
        &mut allocation,
        &segments,
        context.sites,
        &by_segment,
        (span.from, span.to),
    );
    Ok(allocation)
}

/// Sums per group of the report's columns (DESIGN §3 step 7). `keys` empty gives the totals.
pub fn aggregate(parts: LazyFrame, keys: &[&str]) -> LazyFrame {
    let mut sums = vec![
        col(IT_KWH).sum().alias(IT_KWH),
        col(ATTRIBUTED_KWH).sum().alias(ATTRIBUTED_KWH),
        col(ALLOCATED_KWH).sum().alias(ALLOCATED_KWH),
        col(FACILITY_KWH).sum().alias(FACILITY_KWH),
        col(LOCATION_G).sum().alias(LOCATION_G),
        col(MARKET_G).sum().alias(MARKET_G),
        col(FALLBACK_KWH).sum().alias(FALLBACK_KWH),
        col(COVERED_KWH).sum().alias(COVERED_KWH),
        col(INTENSITY_KWH).sum().alias(INTENSITY_KWH),
        col(KNOWN_KWH).sum().alias(KNOWN_KWH),
        col(MEASURED_PUE_KWH).sum().alias(MEASURED_PUE_KWH),
        col(MODELLED_KWH).sum().alias(MODELLED_KWH),
        match keys.is_empty() {
            true => col(READINGS_TOTAL).sum().alias(WHOLE_READINGS),
            false => col(READINGS).sum().alias(WHOLE_READINGS),
        },
        col(READING_ID)
            .drop_nulls()
            .n_unique()
            .cast(DataType::Int64)
            .alias(SPLIT_READINGS),
    ];
    for (quality, name) in Quality::ALL.iter().zip(QUALITY_COLUMNS) {
        sums.push(
            when(col(QUALITY).eq(lit(quality.as_str())))
                .then(col(FACILITY_KWH))
                .otherwise(lit(0.0))
                .sum()
                .alias(name),
        );
    }
    let grouped = if keys.is_empty() {
        parts.select(sums)
    } else {
        let by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
        parts
            .group_by(by)
            .agg(sums)
            .sort(keys.to_vec(), SortMultipleOptions::default())
    };
    let ratio = |numerator: Expr, denominator: Expr| {
        when(denominator.clone().gt(lit(0.0)))
            .then(numerator / denominator)
            .otherwise(lit(0.0))
    };
    let mut derived = vec![
        // Readings summed per segment, plus those split across segments counted once each.
        (col(WHOLE_READINGS) + col(SPLIT_READINGS)).alias(READINGS),
        ratio(col(LOCATION_G), col(INTENSITY_KWH)).alias(LOCATION_INTENSITY),
        ratio(col(FALLBACK_KWH), col(FACILITY_KWH)).alias(MARKET_FALLBACK_SHARE),
        ratio(col(COVERED_KWH), col(FACILITY_KWH)).alias(MARKET_INSTRUMENT_SHARE),
        ratio(col(KNOWN_KWH), col(IT_KWH)).alias(EMBODIED_KNOWN_SHARE),
        ratio(col(MEASURED_PUE_KWH), col(FACILITY_KWH)).alias(PUE_MEASURED_SHARE),
        ratio(col(MODELLED_KWH), col(ATTRIBUTED_KWH)).alias(MODELLED_SHARE),
    ];
    derived.extend(
        QUALITY_COLUMNS
            .iter()
            .map(|name| ratio(col(*name), col(FACILITY_KWH)).alias(*name)),
    );
    let mut columns: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    columns.extend(FIGURES.map(col));
    grouped.with_columns(derived).select(columns)
}

/// Facility energy per (site, customer, segment) over the instruments' periods, for their shares,
/// with the sites' measured PUE, allocation and every customer's reserved capacity.
pub fn period_energy(
    readings: Energy,
    sites: &[Site],
    instruments: &[Instrument],
    (measured_pue, allocation, capacities): (
        &HashMap<Id, Vec<PuePiece>>,
        &Allocations,
        &Capacities,
    ),
) -> PolarsResult<Option<(LazyFrame, Vec<Segment>)>> {
    let (Some(from), Some(to)) = (
        instruments.iter().map(|i| i.from).min(),
        instruments.iter().map(|i| i.to).max(),
    ) else {
        return Ok(None);
    };
    let window = Window {
        from,
        to,
        granularity: timeline::Granularity::Total,
        tz: chrono_tz::UTC,
    };
    let empty = HashMap::new();
    let no_zones = HashMap::new();
    let no_holdings = Holdings::default();
    let inputs = Inputs {
        sites,
        zones: &no_zones,
        pieces: &empty,
        instruments,
        holdings: &no_holdings,
        measured_pue,
        allocation,
        capacities,
    };
    let timeline = Timeline::build(&inputs, &window, &HashMap::new())?;
    let segments = timeline::segments(&inputs, &window);
    let energy = timeline
        .parts(readings)?
        .group_by([col(SEG_ID), col(CUSTOMER)])
        .agg([col(FACILITY_KWH).sum()]);
    Ok(Some((energy, segments)))
}

/// Period energy rows from a collected `period_energy` frame.
pub fn period_energy_rows(
    frame: &DataFrame,
    segments: &[Segment],
    sites: &[Site],
) -> PolarsResult<Vec<PeriodEnergy>> {
    let ids = frame.column(SEG_ID)?.i64()?.clone();
    let customers = frame.column(CUSTOMER)?.str()?.clone();
    let kwh = frame.column(FACILITY_KWH)?.f64()?.clone();
    Ok((0..frame.height())
        .filter_map(|i| {
            let segment = segments.get(usize::try_from(ids.get(i)?).ok()?)?;
            Some(PeriodEnergy {
                site: sites[segment.site].id.clone(),
                customer: customers.get(i)?.to_owned(),
                start: segment.start,
                end: segment.end,
                facility_kwh: kwh.get(i)?,
            })
        })
        .collect())
}
