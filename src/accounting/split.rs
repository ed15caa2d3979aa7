//! Splitting readings against a report's segments: the one loop that touches every reading.
//!
//! It runs inside the polars plan as a streaming map, once per morsel and in parallel. Readings
//! that lie inside one segment (nearly all) are summed per segment, customer and workload right
//! there; the few that cross a segment edge or the window's end become one part per segment they
//! overlap, with the share of their duration that falls in it. Everything after (the segment's
//! PUE, intensity and market factors, buckets, group-by) stays a polars join over those parts.
//!
//! Why not polars expressions: on the 10 M-reading benchmark a site join, a `search_sorted` and a
//! group-by on three string keys and a segment id took 0.72-0.80 s, and a multi-key group-by
//! alone takes 0.30 s (its keys are row-encoded per row): more than DuckDB's whole query (0.28 s).
//! This loop finds runs of rows whose string views equal the previous row's, so names are hashed
//! once per run, and searches for a segment only when a reading leaves the previous one: about
//! 8 ns a reading on one core, and the whole engine takes 0.16 s (README, Benchmarks).
use super::rollup::{COUNT_ROWS, COUNT_TOTAL, PIECE_END};
use super::{ENERGY_J, READINGS, READINGS_TOTAL, READING_ID, SEG_ID, SHARE};
use crate::storage::readings::{CUSTOMER, DURATION_S, POWER_W, SITE, START, WORKLOAD};
use polars::prelude::*;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const MICROS: i64 = 1_000_000;

/// The segments' edges per site, shared by every morsel of one query.
pub struct Splitter {
    /// Each site's segments as a range of indices into `starts`/`ends` (in time order).
    sites: HashMap<String, Range<usize>>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Ids for readings cut into parts, so each is counted once per group.
    next_reading_id: AtomicI64,
}

/// The columns `split` reads from readings, in this order.
const INPUT: [&str; 7] = [
    SITE, CUSTOMER, WORKLOAD, START, DURATION_S, ENERGY_J, POWER_W,
];

/// The columns `split` reads from pieces (see `rollup`), in this order.
const PIECE_INPUT: [&str; 8] = [
    SITE,
    CUSTOMER,
    WORKLOAD,
    START,
    PIECE_END,
    ENERGY_J,
    COUNT_ROWS,
    COUNT_TOTAL,
];

fn parts_schema() -> SchemaRef {
    Arc::new(Schema::from_iter([
        Field::new(SEG_ID.into(), DataType::Int64),
        Field::new(CUSTOMER.into(), DataType::String),
        Field::new(WORKLOAD.into(), DataType::String),
        Field::new(ENERGY_J.into(), DataType::Float64),
        Field::new(READINGS.into(), DataType::Int64),
        Field::new(READINGS_TOTAL.into(), DataType::Int64),
        Field::new(SHARE.into(), DataType::Float64),
        Field::new(READING_ID.into(), DataType::Int64),
    ]))
}

/// Parts in column buffers, one row per (segment, customer, workload) of whole readings and one
/// per (segment, reading) of split ones.
#[derive(Default)]
struct Parts<'a> {
    seg_id: Vec<i64>,
    customer: Vec<&'a str>,
    workload: Vec<&'a str>,
    energy_j: Vec<f64>,
    readings: Vec<i64>,
    /// Readings counted in the totals: differs from `readings` only for pieces (see `rollup`).
    readings_total: Vec<i64>,
    share: Vec<f64>,
    reading_id: Vec<Option<i64>>,
}

impl<'a> Parts<'a> {
    /// A row for readings summed whole in `seg`: their energy and count are added to it later.
    fn push_sum(&mut self, seg: usize, group: &Group<'a>) -> usize {
        self.push(seg, group, (0.0, 1.0), None, (0, 0));
        self.seg_id.len() - 1
    }

    /// A part: `(energy_j, share)` of its reading, its id if the reading is counted by id across
    /// all its parts, else its `(readings, readings_total)` counts.
    fn push(
        &mut self,
        seg: usize,
        group: &Group<'a>,
        (energy_j, share): (f64, f64),
        id: Option<i64>,
        (readings, readings_total): (i64, i64),
    ) {
        self.seg_id.push(seg as i64);
        self.customer.push(group.customer);
        self.workload.push(group.workload);
        self.energy_j.push(energy_j);
        self.readings.push(readings);
        self.readings_total.push(readings_total);
        self.share.push(share);
        self.reading_id.push(id);
    }

    fn into_frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.seg_id.len(),
            vec![
                Column::new(SEG_ID.into(), self.seg_id),
                Column::new(CUSTOMER.into(), self.customer),
                Column::new(WORKLOAD.into(), self.workload),
                Column::new(ENERGY_J.into(), self.energy_j),
                Column::new(READINGS.into(), self.readings),
                Column::new(READINGS_TOTAL.into(), self.readings_total),
                Column::new(SHARE.into(), self.share),
                Column::new(READING_ID.into(), self.reading_id),
            ],
        )
    }
}

/// A (site, customer, workload) seen in a morsel.
#[derive(Clone, Copy)]
struct Group<'a> {
    index: u32,
    segments: Option<&'a Range<usize>>,
    customer: &'a str,
    workload: &'a str,
}

fn strings(column: &Column) -> PolarsResult<StringChunked> {
    Ok(column.str()?.rechunk().into_owned())
}

fn i64_values(column: &Column) -> PolarsResult<Int64Chunked> {
    Ok(column
        .as_materialized_series()
        .to_physical_repr()
        .cast(&DataType::Int64)?
        .i64()?
        .rechunk()
        .into_owned())
}

impl Splitter {
    pub fn new(
        site_ids: &[&str],
        segment_sites: &[usize],
        starts: Vec<i64>,
        ends: Vec<i64>,
    ) -> Self {
        let mut sites: HashMap<String, Range<usize>> = HashMap::new();
        for (index, site) in segment_sites.iter().enumerate() {
            sites
                .entry(site_ids[*site].to_owned())
                .and_modify(|range| range.end = index + 1)
                .or_insert(index..index + 1);
        }
        Self {
            sites,
            starts,
            ends,
            next_reading_id: AtomicI64::new(0),
        }
    }

    /// `readings` as parts (see the module's note), as a streaming polars map.
    pub fn split_lazy(self: Arc<Self>, readings: LazyFrame) -> LazyFrame {
        readings.select(INPUT.map(col)).map(
            move |frame| self.split(&frame, false),
            OptFlags::STREAMING,
            Some(Arc::new(|_: &Schema| Ok(parts_schema()))),
            Some("split readings against segments"),
        )
    }

    /// `pieces` (see `rollup`) as parts: like readings, but each piece brings its own counts,
    /// which go to its first part (a piece never spans two of a report's groups).
    pub fn split_pieces_lazy(self: Arc<Self>, pieces: LazyFrame) -> LazyFrame {
        pieces.select(PIECE_INPUT.map(col)).map(
            move |frame| self.split(&frame, true),
            OptFlags::STREAMING,
            Some(Arc::new(|_: &Schema| Ok(parts_schema()))),
            Some("split pieces against segments"),
        )
    }

    /// The segment of `site` holding `time`.
    fn segment_at(&self, site: &Range<usize>, time: i64) -> Option<usize> {
        let after = self.starts[site.clone()].partition_point(|start| *start <= time);
        let index = site.start + after.checked_sub(1)?;
        (time < self.ends[index]).then_some(index)
    }

    fn split(&self, frame: &DataFrame, pieces: bool) -> PolarsResult<DataFrame> {
        let names = [SITE, CUSTOMER, WORKLOAD].map(|name| frame.column(name).map(strings));
        let [site, customer, workload] = names;
        let (site, customer, workload) = (site??, customer??, workload??);
        let (site, customer, workload) = (
            site.downcast_as_array(),
            customer.downcast_as_array(),
            workload.downcast_as_array(),
        );
        let start = i64_values(frame.column(START)?)?;
        let start = start.cont_slice()?;
        let (end, joules, counts) = match pieces {
            false => {
                let duration = i64_values(frame.column(DURATION_S)?)?;
                let duration = duration.cont_slice()?;
                let end = (start.iter().zip(duration))
                    .map(|(start, duration)| start + duration * MICROS)
                    .collect::<Vec<i64>>();
                (end, joules(frame, duration)?, None)
            }
            true => {
                let energy = frame.column(ENERGY_J)?.f64()?.rechunk();
                let counts = (
                    i64_values(frame.column(COUNT_ROWS)?)?,
                    i64_values(frame.column(COUNT_TOTAL)?)?,
                );
                (
                    i64_values(frame.column(PIECE_END)?)?.cont_slice()?.to_vec(),
                    energy.cont_slice()?.to_vec(),
                    Some(counts),
                )
            }
        };
        let counts = match &counts {
            Some((rows, total)) => Some((rows.cont_slice()?, total.cont_slice()?)),
            None => None,
        };
        let count = |row: usize| counts.map_or((1, 1), |(rows, total)| (rows[row], total[row]));

        let mut groups: PlHashMap<(&str, &str, &str), Group<'_>> = PlHashMap::new();
        let mut sums: PlHashMap<(u32, usize), usize> = PlHashMap::new();
        let mut parts = Parts::default();
        let (site_views, customer_views, workload_views) =
            (site.views(), customer.views(), workload.views());
        let same = |a: usize, b: usize| {
            site_views[a].as_u128() == site_views[b].as_u128()
                && workload_views[a].as_u128() == workload_views[b].as_u128()
                && customer_views[a].as_u128() == customer_views[b].as_u128()
        };
        let height = frame.height();
        let mut run_start = 0;
        while run_start < height {
            let mut run_end = run_start + 1;
            while run_end < height && same(run_start, run_end) {
                run_end += 1;
            }
            let run = run_start..run_end;
            run_start = run_end;
            // SAFETY: `run.start` is below the height every column shares.
            let names = unsafe {
                (
                    site.value_unchecked(run.start),
                    customer.value_unchecked(run.start),
                    workload.value_unchecked(run.start),
                )
            };
            let next = groups.len() as u32;
            let group = *groups.entry(names).or_insert_with(|| Group {
                index: next,
                segments: self.sites.get(names.0),
                customer: names.1,
                workload: names.2,
            });
            let Some(segments) = group.segments else {
                continue; // a site without segments is not in the report
            };
            let mut segment = segments.start;
            // The sum the previous whole reading went to: consecutive readings usually share it.
            let mut sum: Option<usize> = None;
            for row in run {
                let (from, to) = (start[row], end[row]);
                if !(self.starts[segment] <= from && from < self.ends[segment]) {
                    let Some(found) = self.segment_at(segments, from) else {
                        continue; // before the timeline: such a reading ends before the window
                    };
                    segment = found;
                    sum = None;
                }
                if to <= self.ends[segment] {
                    let slot = *sum.get_or_insert_with(|| {
                        *sums
                            .entry((group.index, segment))
                            .or_insert_with(|| parts.push_sum(segment, &group))
                    });
                    let (readings, readings_total) = count(row);
                    parts.energy_j[slot] += joules[row];
                    parts.readings[slot] += readings;
                    parts.readings_total[slot] += readings_total;
                    continue;
                }
                // A reading is counted by its id in every group it has a part in; a piece by its
                // counts, on its first part.
                let id = match counts {
                    None => Some(self.next_reading_id.fetch_add(1, Ordering::Relaxed)),
                    Some(_) => None,
                };
                let mut counted = count(row);
                let length = (to - from) as f64;
                for seg in segment..segments.end {
                    if self.starts[seg] >= to {
                        break;
                    }
                    let overlap = to.min(self.ends[seg]) - from.max(self.starts[seg]);
                    let counts = match id {
                        Some(_) => (0, 0),
                        None => std::mem::take(&mut counted),
                    };
                    let share = overlap as f64 / length;
                    parts.push(seg, &group, (joules[row], share), id, counts);
                }
            }
        }
        parts.into_frame()
    }
}

/// Each reading's energy: `energy_j`, or `power_w` over its duration.
pub(super) fn joules(frame: &DataFrame, duration_s: &[i64]) -> PolarsResult<Vec<f64>> {
    let energy = frame.column(ENERGY_J)?.f64()?.rechunk();
    let all_energy = energy.null_count() == 0;
    let energy = energy.downcast_as_array();
    if all_energy {
        return Ok(energy.values().as_slice().to_vec());
    }
    let power = frame.column(POWER_W)?.f64()?.rechunk();
    Ok(energy
        .iter()
        .zip(power.downcast_as_array().iter())
        .zip(duration_s)
        .map(|((energy, power), duration)| match (energy, power) {
            (Some(joules), _) => *joules,
            (None, Some(watts)) => watts * *duration as f64,
            (None, None) => 0.0,
        })
        .collect())
}
