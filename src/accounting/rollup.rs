//! Energy rollups (DESIGN §7): readings summed per site, customer, workload and fixed five-minute
//! UTC slot, and how a report reads them instead of the readings.
//!
//! A reading's energy goes to the slots it overlaps in proportion to the time it spends in each
//! (the per-instant principle), so a slot's energy is exact, and nothing that changes in time
//! (intensity, PUE, instruments) is baked in. A report can read a slot's rollup wherever nothing
//! changes inside the slot for that site: a slot is *dirty* when one of the site's timeline edges
//! (`timeline::site_edges` of every timeline a report builds) falls strictly inside it, and there
//! the report reads the readings, cut at the slot's ends and at those edges.
//!
//! Both become *pieces*: stretches of one (site, customer, workload) with their energy, each
//! lying inside one of the report's groups, which the splitter treats like readings except for
//! counting. The `readings` figure counts, per group, the readings overlapping it: a slot keeps
//! how many readings start in it and how many cross its start, and a piece counts those starting
//! in it, plus those crossing its start where a group begins there (the window's `from`, or a
//! bucket start for rows; `from` alone for the totals).
use super::allocation;
use super::split::joules;
use super::timeline::{self, Granularity, Window};
use super::{Context, Inputs};
use crate::storage::readings::{CUSTOMER, DURATION_S, ENERGY_J, SITE, START, WORKLOAD};
use polars::prelude::*;
use std::collections::HashMap;

/// The length of a slot: every provider's intensity interval, every IANA offset in use and the
/// carry windows are multiples of it.
pub const SLOT_US: i64 = 300_000_000;
/// The start of a rollup row's slot.
pub const SLOT: &str = "slot";
/// Readings starting in the slot.
pub const STARTED: &str = "readings_started";
/// Readings that started before the slot and still run at its start.
pub const CROSSING: &str = "readings_crossing";
/// Where a piece ends (microseconds since the epoch; it starts at `start`).
pub const PIECE_END: &str = "piece_end";
/// Readings a piece counts in a report's rows.
pub const COUNT_ROWS: &str = "count_rows";
/// Readings a piece counts in a report's totals.
pub const COUNT_TOTAL: &str = "count_total";
/// The workload of customer rollup rows (`customer_rows`): not a valid workload id, so it never
/// merges with a real workload.
pub const ALL_WORKLOADS: &str = "(all workloads)";

fn utc() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

fn integers(frame: &DataFrame, name: &str) -> PolarsResult<Vec<i64>> {
    let column = frame
        .column(name)?
        .as_materialized_series()
        .to_physical_repr();
    Ok(column
        .cast(&DataType::Int64)?
        .i64()?
        .into_no_null_iter()
        .collect())
}

/// Each row's (site, customer, workload), borrowed from `frame`; names are never null.
fn names(frame: &DataFrame) -> PolarsResult<impl Iterator<Item = (&str, &str, &str)>> {
    let column = |name| -> PolarsResult<_> { Ok(frame.column(name)?.str()?.iter()) };
    let (site, customer, workload) = (column(SITE)?, column(CUSTOMER)?, column(WORKLOAD)?);
    Ok(site.zip(customer).zip(workload).map(|((s, c), w)| {
        (
            s.unwrap_or_default(),
            c.unwrap_or_default(),
            w.unwrap_or_default(),
        )
    }))
}

fn slot_of(t: i64) -> i64 {
    t.div_euclid(SLOT_US) * SLOT_US
}

/// Rollup rows of resolved `readings` (the readings table's columns): one per (site, customer,
/// workload, slot) they overlap, sorted by customer, site, workload and slot.
pub fn rollup_rows(readings: &DataFrame) -> PolarsResult<DataFrame> {
    let start = integers(readings, START)?;
    let duration = integers(readings, DURATION_S)?;
    let energy = joules(readings, &duration)?;
    let mut index: HashMap<(&str, &str, &str, i64), usize> = HashMap::new();
    let mut rows = RollupRows::default();
    for (row, (s, c, w)) in names(readings)?.enumerate() {
        let (from, to) = (start[row], start[row] + duration[row] * 1_000_000);
        let length = (to - from) as f64;
        let mut slot = slot_of(from);
        while slot < to {
            let overlap = to.min(slot + SLOT_US) - from.max(slot);
            let at = *index.entry((s, c, w, slot)).or_insert_with(|| {
                rows.push(s, c, w, slot);
                rows.slot.len() - 1
            });
            rows.energy_j[at] += energy[row] * overlap as f64 / length;
            match slot <= from {
                true => rows.started[at] += 1,
                false => rows.crossing[at] += 1,
            }
            slot += SLOT_US;
        }
    }
    rows.into_frame()?.sort(
        [CUSTOMER, SITE, WORKLOAD, SLOT],
        SortMultipleOptions::default(),
    )
}

/// Customer rollup rows: rollup `rows` summed over workloads per site, customer and slot, under
/// the workload `ALL_WORKLOADS`, sorted as rollup rows are. A report that neither groups nor
/// filters by workload and counts no hardware reads these: one row where a customer's workloads
/// have one each, and a slot's energy and counts are the sums of theirs.
pub fn customer_rows(rows: &DataFrame) -> PolarsResult<DataFrame> {
    let slot = integers(rows, SLOT)?;
    let energy = rows.column(ENERGY_J)?.f64()?.rechunk();
    let energy = energy.cont_slice()?;
    let (started, crossing) = (integers(rows, STARTED)?, integers(rows, CROSSING)?);
    let mut index: HashMap<(&str, &str, i64), usize> = HashMap::new();
    let mut summed = RollupRows::default();
    for (row, (s, c, _)) in names(rows)?.enumerate() {
        let at = *index.entry((s, c, slot[row])).or_insert_with(|| {
            summed.push(s, c, ALL_WORKLOADS, slot[row]);
            summed.slot.len() - 1
        });
        summed.energy_j[at] += energy[row];
        summed.started[at] += started[row];
        summed.crossing[at] += crossing[row];
    }
    summed.into_frame()?.sort(
        [CUSTOMER, SITE, WORKLOAD, SLOT],
        SortMultipleOptions::default(),
    )
}

#[derive(Default)]
struct RollupRows<'a> {
    site: Vec<&'a str>,
    customer: Vec<&'a str>,
    workload: Vec<&'a str>,
    slot: Vec<i64>,
    energy_j: Vec<f64>,
    started: Vec<i64>,
    crossing: Vec<i64>,
}

impl<'a> RollupRows<'a> {
    fn push(&mut self, site: &'a str, customer: &'a str, workload: &'a str, slot: i64) {
        self.site.push(site);
        self.customer.push(customer);
        self.workload.push(workload);
        self.slot.push(slot);
        self.energy_j.push(0.0);
        self.started.push(0);
        self.crossing.push(0);
    }

    fn into_frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.slot.len(),
            vec![
                Column::new(SITE.into(), self.site),
                Column::new(CUSTOMER.into(), self.customer),
                Column::new(WORKLOAD.into(), self.workload),
                Column::new(SLOT.into(), self.slot).cast(&utc())?,
                Column::new(ENERGY_J.into(), self.energy_j),
                Column::new(STARTED.into(), self.started),
                Column::new(CROSSING.into(), self.crossing),
            ],
        )
    }
}

/// A rollup table's rows with no rows.
pub fn empty_rollup() -> PolarsResult<DataFrame> {
    RollupRows::default().into_frame()
}

/// Where a report can read rollups: every site's timeline edges, over all the timelines the
/// report builds (its window, the instruments' periods, the allocation span), and where its
/// groups begin.
#[derive(Debug, Clone)]
pub struct SlotPlan {
    /// Per site id, sorted, in microseconds.
    edges: HashMap<String, Vec<i64>>,
    /// Bucket starts inside the window, and `from`: sorted.
    group_starts: Vec<i64>,
    from: i64,
}

/// A stretch of one site's readings to read raw: dirty slots, merged where adjacent.
pub type Span = (i64, i64);

impl SlotPlan {
    /// The plan of a report over `window` with `context` (see `footprint`).
    pub fn new(context: &Context<'_>, window: &Window) -> Self {
        let pieces = super::intensity_pieces(context, window);
        let instruments = context.relevant_instruments(window);
        let allocating: Vec<_> = (context.sites.iter())
            .filter(|s| s.allocation != crate::domain::Allocation::None)
            .map(|s| s.id.clone())
            .collect();
        let allocation = allocation::stretches(context.it_pieces, &allocating);
        let capacities = context.capacities.unscoped();
        let inputs = Inputs {
            sites: context.sites,
            zones: context.zones,
            pieces: &pieces,
            instruments: &instruments,
            holdings: context.holdings,
            measured_pue: context.measured_pue,
            allocation: &allocation,
            capacities: &capacities,
        };
        let total = |from, to| Window {
            from,
            to,
            granularity: Granularity::Total,
            tz: chrono_tz::UTC,
        };
        let mut windows = vec![*window];
        let periods = (
            instruments.iter().map(|i| i.from).min(),
            instruments.iter().map(|i| i.to).max(),
        );
        if let (Some(from), Some(to)) = periods {
            windows.push(total(from, to));
            windows.push(total(from.min(window.from), to.max(window.to)));
        }
        let mut edges = HashMap::new();
        for site in context.sites {
            let mut all = std::collections::BTreeSet::new();
            for w in &windows {
                let buckets = w.bucket_edges(w.from - timeline::LOOKBACK, w.to);
                all.extend(timeline::site_edges(&inputs, site, w, &buckets));
            }
            let micros: Vec<i64> = all.iter().map(|t| t.timestamp_micros()).collect();
            edges.insert(site.id.to_string(), micros);
        }
        let mut group_starts: Vec<i64> = (window.bucket_edges(window.from, window.to).iter())
            .map(|t| t.timestamp_micros())
            .collect();
        group_starts.push(window.from.timestamp_micros());
        group_starts.sort_unstable();
        Self {
            edges,
            group_starts,
            from: window.from.timestamp_micros(),
        }
    }

    fn site_edges(&self, site: &str) -> &[i64] {
        self.edges.get(site).map_or(&[], Vec::as_slice)
    }

    /// The site's edges strictly inside (from, to).
    fn edges_inside<'a>(&self, edges: &'a [i64], from: i64, to: i64) -> &'a [i64] {
        let first = edges.partition_point(|e| *e <= from);
        let last = edges.partition_point(|e| *e < to);
        &edges[first..last.max(first)]
    }

    fn dirty(&self, edges: &[i64], slot: i64) -> bool {
        !self.edges_inside(edges, slot, slot + SLOT_US).is_empty()
    }

    /// Readings starting before `at` but overlapping it count again where a group begins there.
    fn counts_crossing(&self, at: i64) -> (bool, bool) {
        (
            self.group_starts.binary_search(&at).is_ok(),
            at == self.from,
        )
    }

    /// Each site's dirty slots within [from, to), merged where adjacent: where a report needs
    /// the readings themselves.
    pub fn dirty_spans(&self, from: i64, to: i64) -> HashMap<String, Vec<Span>> {
        let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
        for (site, edges) in &self.edges {
            for edge in self.edges_inside(edges, from - SLOT_US, to + SLOT_US) {
                if edge % SLOT_US == 0 {
                    continue; // on the grid: no slot holds it strictly inside
                }
                let slot = slot_of(*edge);
                let list = spans.entry(site.clone()).or_default();
                match list.last_mut() {
                    Some(last) if last.1 >= slot => last.1 = last.1.max(slot + SLOT_US),
                    _ => list.push((slot, slot + SLOT_US)),
                }
            }
        }
        spans
    }

    /// Pieces from `rollups` (rollup rows) in clean slots, merged along runs of slots with no
    /// edge between them, and from `readings` (raw, of the same dates) in dirty slots, cut at
    /// the slots' ends and the edges inside them.
    pub fn pieces(&self, rollups: &DataFrame, readings: &DataFrame) -> PolarsResult<DataFrame> {
        let mut pieces = Pieces::default();
        self.rollup_pieces(rollups, &mut pieces)?;
        self.reading_pieces(readings, &mut pieces)?;
        pieces.into_frame()
    }

    fn rollup_pieces<'a>(&self, rollups: &'a DataFrame, out: &mut Pieces<'a>) -> PolarsResult<()> {
        let slot = integers(rollups, SLOT)?;
        let energy = rollups.column(ENERGY_J)?.f64()?.rechunk();
        let energy = energy.cont_slice()?;
        let started = integers(rollups, STARTED)?;
        let crossing = integers(rollups, CROSSING)?;
        // The open piece: its row in `out` and its (site, customer, workload).
        let mut open: Option<(usize, [&str; 3])> = None;
        // Rows come in runs of one site, slots ascending: walk its edges rather than search them.
        let mut site: Option<(&str, Cursor<'_>)> = None;
        let mut group_starts = Cursor::new(&self.group_starts);
        for (row, (s, c, w)) in names(rollups)?.enumerate() {
            let at = slot[row];
            let edges = match &mut site {
                Some((name, edges)) if *name == s => edges,
                _ => &mut site.insert((s, Cursor::new(self.site_edges(s)))).1,
            };
            edges.seek(at);
            if edges.next_before(at + SLOT_US) {
                open = None;
                continue;
            }
            group_starts.seek(at);
            let (rows_cross, total_cross) = (group_starts.at_previous(at), at == self.from);
            let counts = (
                started[row] + i64::from(rows_cross) * crossing[row],
                started[row] + i64::from(total_cross) * crossing[row],
            );
            let joules = energy[row];
            // A group begins at every edge of a planned site, but not of a site it does not know.
            let continues = open.is_some_and(|(piece, key)| {
                key == [s, c, w] && out.end[piece] == at && !rows_cross && !edges.at_previous(at)
            });
            match open {
                Some((piece, _)) if continues => {
                    out.end[piece] += SLOT_US;
                    out.energy_j[piece] += joules;
                    out.count_rows[piece] += counts.0;
                    out.count_total[piece] += counts.1;
                }
                _ => {
                    out.push([s, c, w], (at, at + SLOT_US), joules, counts);
                    open = Some((out.start.len() - 1, [s, c, w]));
                }
            }
        }
        Ok(())
    }

    fn reading_pieces<'a>(
        &self,
        readings: &'a DataFrame,
        out: &mut Pieces<'a>,
    ) -> PolarsResult<()> {
        let start = integers(readings, START)?;
        let duration = integers(readings, DURATION_S)?;
        let energy = joules(readings, &duration)?;
        for (row, (s, c, w)) in names(readings)?.enumerate() {
            let edges = self.site_edges(s);
            let (from, to) = (start[row], start[row] + duration[row] * 1_000_000);
            let length = (to - from) as f64;
            let mut slot = slot_of(from);
            while slot < to {
                let end = slot + SLOT_US;
                if self.dirty(edges, slot) {
                    let inside = self.edges_inside(edges, slot, end);
                    let bounds = std::iter::once(slot).chain(inside.iter().copied());
                    let ends = inside.iter().copied().chain(std::iter::once(end));
                    for (a, b) in bounds.zip(ends) {
                        let (piece_from, piece_to) = (from.max(a), to.min(b));
                        if piece_from >= piece_to {
                            continue;
                        }
                        let (rows_cross, total_cross) = self.counts_crossing(a);
                        let starts_here = i64::from(from >= a);
                        let crosses = i64::from(from < a);
                        let counts = (
                            starts_here + crosses * i64::from(rows_cross),
                            starts_here + crosses * i64::from(total_cross),
                        );
                        let joules = energy[row] * (piece_to - piece_from) as f64 / length;
                        out.push([s, c, w], (piece_from, piece_to), joules, counts);
                    }
                }
                slot = end;
            }
        }
        Ok(())
    }
}

/// A position in sorted times, moved forward by `seek` (and back by a search when a time goes
/// back): the rollup rows' slots mostly advance one slot at a time.
struct Cursor<'a> {
    times: &'a [i64],
    /// The first time after the last time sought.
    next: usize,
    last: i64,
}

impl<'a> Cursor<'a> {
    fn new(times: &'a [i64]) -> Self {
        Self {
            times,
            next: 0,
            last: i64::MIN,
        }
    }

    fn seek(&mut self, t: i64) {
        if t < self.last || t.saturating_sub(self.last) > 16 * SLOT_US {
            self.next = self.times.partition_point(|e| *e <= t);
        } else {
            while self.times.get(self.next).is_some_and(|e| *e <= t) {
                self.next += 1;
            }
        }
        self.last = t;
    }

    /// Whether the time sought is one of the times.
    fn at_previous(&self, t: i64) -> bool {
        self.next > 0 && self.times[self.next - 1] == t
    }

    /// Whether a time lies after the one sought and before `end`.
    fn next_before(&self, end: i64) -> bool {
        self.times.get(self.next).is_some_and(|e| *e < end)
    }
}

#[derive(Default)]
struct Pieces<'a> {
    site: Vec<&'a str>,
    customer: Vec<&'a str>,
    workload: Vec<&'a str>,
    start: Vec<i64>,
    end: Vec<i64>,
    energy_j: Vec<f64>,
    count_rows: Vec<i64>,
    count_total: Vec<i64>,
}

impl<'a> Pieces<'a> {
    fn push(&mut self, key: [&'a str; 3], span: Span, joules: f64, counts: (i64, i64)) {
        self.site.push(key[0]);
        self.customer.push(key[1]);
        self.workload.push(key[2]);
        self.start.push(span.0);
        self.end.push(span.1);
        self.energy_j.push(joules);
        self.count_rows.push(counts.0);
        self.count_total.push(counts.1);
    }

    fn into_frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.start.len(),
            vec![
                Column::new(SITE.into(), self.site),
                Column::new(CUSTOMER.into(), self.customer),
                Column::new(WORKLOAD.into(), self.workload),
                Column::new(START.into(), self.start).cast(&utc())?,
                Column::new(PIECE_END.into(), self.end),
                Column::new(ENERGY_J.into(), self.energy_j),
                Column::new(COUNT_ROWS.into(), self.count_rows),
                Column::new(COUNT_TOTAL.into(), self.count_total),
            ],
        )
    }
}
