//! A report's timeline as frames, and the parts of the energy split against it: the measured
//! readings, the modelled ones, and the rows reserved-capacity allocation adds, joined to their
//! segment's PUE, intensity and market factors.
use super::allocation::RESERVED_WORKLOAD;
use super::embodied::HELD;
use super::market::Market;
use super::split::Splitter;
use super::timeline::{self, Segment, Window};
use super::*;
use crate::domain::Id;
use polars::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The energy a report splits: measured readings, and readings modelled from usage (priced by
/// `storage::usage::modelled`), in the readings' columns; `None` where nothing is modelled, so
/// the usual report splits one frame, as before usage existed. Measured energy that energy
/// rollups serve comes as `pieces` (see `rollup`), the rest as readings.
pub struct Energy {
    pub measured: LazyFrame,
    pub modelled: Option<LazyFrame>,
    pub pieces: Option<LazyFrame>,
}

impl Energy {
    /// Measured readings only.
    pub fn measured(readings: LazyFrame) -> Self {
        Self {
            measured: readings,
            modelled: None,
            pieces: None,
        }
    }
}

/// A report's segments as frames, ready to split readings against.
pub struct Timeline {
    segments: DataFrame,
    splitter: Arc<Splitter>,
    market_overrides: DataFrame,
    held: DataFrame,
    /// One part per (segment, customer in scope) of reserved-proportional sites.
    reserved: DataFrame,
}

fn us(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

impl Timeline {
    /// Segments of all sites, market factors from the instruments' covered `shares`.
    pub fn build(
        inputs: &Inputs<'_>,
        window: &Window,
        shares: &HashMap<Id, f64>,
    ) -> PolarsResult<Self> {
        let segments = timeline::segments(inputs, window);
        let market = Market {
            sites: inputs.sites,
            zones: inputs.zones,
            instruments: inputs.instruments,
            shares,
        };
        let defaults: Vec<_> = segments.iter().map(|s| market.factor(s, None)).collect();
        let zone_of = |s: &Segment| inputs.sites[s.site].zone.as_str();
        let site_of = |s: &Segment| inputs.sites[s.site].id.as_str();
        let frame = DataFrame::new(
            segments.len(),
            vec![
                Column::new(
                    SEG_ID.into(),
                    (0..segments.len() as i64).collect::<Vec<_>>(),
                ),
                Column::new(
                    SEG_START.into(),
                    segments.iter().map(|s| us(s.start)).collect::<Vec<_>>(),
                ),
                Column::new(
                    SEG_END.into(),
                    segments.iter().map(|s| us(s.end)).collect::<Vec<_>>(),
                ),
                Column::new(
                    IN_WINDOW.into(),
                    segments.iter().map(|s| s.in_window).collect::<Vec<_>>(),
                ),
                Column::new(
                    BUCKET.into(),
                    segments.iter().map(|s| us(s.bucket)).collect::<Vec<_>>(),
                ),
                Column::new(
                    SITE.into(),
                    segments.iter().map(site_of).collect::<Vec<_>>(),
                ),
                Column::new(
                    ZONE.into(),
                    segments.iter().map(zone_of).collect::<Vec<_>>(),
                ),
                Column::new(
                    PUE.into(),
                    segments.iter().map(|s| s.pue).collect::<Vec<_>>(),
                ),
                Column::new(
                    PUE_MEASURED.into(),
                    segments.iter().map(|s| s.pue_measured).collect::<Vec<_>>(),
                ),
                Column::new(
                    ALLOCATION_EXTRA.into(),
                    segments
                        .iter()
                        .map(|s| s.allocation_extra)
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    INTENSITY.into(),
                    segments.iter().map(|s| s.intensity).collect::<Vec<_>>(),
                ),
                Column::new(
                    QUALITY.into(),
                    segments
                        .iter()
                        .map(|s| s.quality.as_str())
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    MARKET_FACTOR.into(),
                    defaults.iter().map(|f| f.gco2e_per_kwh).collect::<Vec<_>>(),
                ),
                Column::new(
                    FALLBACK.into(),
                    defaults
                        .iter()
                        .map(|f| f.location_fallback_share)
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    COVERED.into(),
                    defaults
                        .iter()
                        .map(|f| f.instrument_share)
                        .collect::<Vec<_>>(),
                ),
            ],
        )?;
        let site_ids: Vec<&str> = inputs.sites.iter().map(|s| s.id.as_str()).collect();
        let splitter = Splitter::new(
            &site_ids,
            &segments.iter().map(|s| s.site).collect::<Vec<_>>(),
            segments.iter().map(|s| us(s.start)).collect(),
            segments.iter().map(|s| us(s.end)).collect(),
        );
        let (mut ids, mut customers, mut factors, mut fallbacks, mut covered) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (site, customer) in market.customers_with_instruments() {
            for (id, segment) in segments.iter().enumerate().filter(|(_, s)| s.site == site) {
                let factor = market.factor(segment, Some(&customer));
                ids.push(id as i64);
                customers.push(customer.clone());
                factors.push(factor.gco2e_per_kwh);
                fallbacks.push(factor.location_fallback_share);
                covered.push(factor.instrument_share);
            }
        }
        let market_overrides = DataFrame::new(
            ids.len(),
            vec![
                Column::new(SEG_ID.into(), ids),
                Column::new(CUSTOMER.into(), customers),
                Column::new("override_factor".into(), factors),
                Column::new("override_fallback".into(), fallbacks),
                Column::new("override_covered".into(), covered),
            ],
        )?;
        Ok(Self {
            held: inputs.holdings.held_segments(&segments, inputs.sites)?,
            reserved: reserved_parts(&segments, inputs)?,
            segments: frame,
            splitter: Arc::new(splitter),
            market_overrides,
        })
    }

    /// The readings' parts inside the report window, with energy, PUE, intensity, quality and
    /// market factor applied (see `split` for what a part is), and the reserved-capacity rows.
    pub fn parts(&self, energy: Energy) -> PolarsResult<LazyFrame> {
        let split = |readings: LazyFrame, modelled: bool| {
            self.splitter
                .clone()
                .split_lazy(readings)
                .with_columns([lit(modelled).alias(MODELLED), lit(0.0).alias(RESERVED_KWH)])
        };
        let mut frames = vec![split(energy.measured, false)];
        frames.extend(energy.modelled.map(|modelled| split(modelled, true)));
        frames.extend(energy.pieces.map(|pieces| {
            self.splitter
                .clone()
                .split_pieces_lazy(pieces)
                .with_columns([lit(false).alias(MODELLED), lit(0.0).alias(RESERVED_KWH)])
        }));
        if self.reserved.height() > 0 {
            frames.push(self.reserved.clone().lazy());
        }
        let parts = match frames.len() {
            1 => frames.remove(0),
            _ => concat(frames, UnionArgs::default())?,
        }
        .join(
            self.segments.clone().lazy(),
            [col(SEG_ID)],
            [col(SEG_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .join(
            self.market_overrides.clone().lazy(),
            [col(SEG_ID), col(CUSTOMER)],
            [col(SEG_ID), col(CUSTOMER)],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            self.held.clone().lazy(),
            [col(SEG_ID), col(CUSTOMER), col(WORKLOAD)],
            [col(SEG_ID), col(CUSTOMER), col(WORKLOAD)],
            JoinArgs::new(JoinType::Left),
        );
        let attributed = col(ENERGY_J) / lit(3.6e6) * col(SHARE);
        let facility = col(IT_KWH) * col(PUE);
        Ok(parts
            .filter(col(IN_WINDOW))
            .with_column(attributed.alias(ATTRIBUTED_KWH))
            .with_column(
                (col(ATTRIBUTED_KWH) * col(ALLOCATION_EXTRA) + col(RESERVED_KWH))
                    .alias(ALLOCATED_KWH),
            )
            .with_column((col(ATTRIBUTED_KWH) + col(ALLOCATED_KWH)).alias(IT_KWH))
            .with_column(facility.alias(FACILITY_KWH))
            .with_columns([
                (col(FACILITY_KWH) * col(INTENSITY).fill_null(lit(0.0))).alias(LOCATION_G),
                (col(FACILITY_KWH) * coalesce(&[col("override_factor"), col(MARKET_FACTOR)]))
                    .alias(MARKET_G),
                (col(FACILITY_KWH) * coalesce(&[col("override_fallback"), col(FALLBACK)]))
                    .alias(FALLBACK_KWH),
                (col(FACILITY_KWH) * coalesce(&[col("override_covered"), col(COVERED)]))
                    .alias(COVERED_KWH),
                when(col(INTENSITY).is_not_null())
                    .then(col(FACILITY_KWH))
                    .otherwise(lit(0.0))
                    .alias(INTENSITY_KWH),
                when(col(HELD).fill_null(lit(false)))
                    .then(col(IT_KWH))
                    .otherwise(lit(0.0))
                    .alias(KNOWN_KWH),
                when(col(PUE_MEASURED))
                    .then(col(FACILITY_KWH))
                    .otherwise(lit(0.0))
                    .alias(MEASURED_PUE_KWH),
                when(col(MODELLED))
                    .then(col(ATTRIBUTED_KWH))
                    .otherwise(lit(0.0))
                    .alias(MODELLED_KWH),
            ]))
    }
}

/// The reserved-capacity parts: over each segment of a reserved-proportional site, its
/// unattributed IT power times the segment's length, shared by the capacity each customer in
/// scope reserved at its start (reservation edges are segment edges).
fn reserved_parts(segments: &[Segment], inputs: &Inputs<'_>) -> PolarsResult<DataFrame> {
    let (mut ids, mut customers, mut kwh) = (vec![], vec![], vec![]);
    for (id, segment) in segments.iter().enumerate() {
        if segment.idle_kw <= 0.0 || !segment.in_window {
            continue;
        }
        let hours = (segment.end - segment.start).num_milliseconds() as f64 / 3.6e6;
        let site = &inputs.sites[segment.site].id;
        for (customer, share) in inputs.capacities.shares_at(site, segment.start) {
            ids.push(id as i64);
            customers.push(customer.to_string());
            kwh.push(segment.idle_kw * hours * share);
        }
    }
    let height = ids.len();
    DataFrame::new(
        height,
        vec![
            Column::new(SEG_ID.into(), ids),
            Column::new(CUSTOMER.into(), customers),
            Column::new(WORKLOAD.into(), vec![RESERVED_WORKLOAD; height]),
            Column::new(ENERGY_J.into(), vec![0.0; height]),
            Column::new(READINGS.into(), vec![0i64; height]),
            Column::new(READINGS_TOTAL.into(), vec![0i64; height]),
            Column::new(SHARE.into(), vec![1.0; height]),
            Column::new(READING_ID.into(), vec![None::<i64>; height]),
            Column::new(MODELLED.into(), vec![false; height]),
            Column::new(RESERVED_KWH.into(), kwh),
        ],
    )
}
