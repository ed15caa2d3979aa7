//! Everything that comes in from outside, with one anatomy (settings, a client, a parser to
//! domain records, a sink) and one retry schedule (`schedule`): grid-intensity feeds (`feeds`),
//! and telemetry from what data centers already run (Prometheus remote-write, OTLP, scraped
//! exporters, Redfish BMCs), decoded into series, matched to the registry's mappings, turned into
//! readings (see `series`), and counted per source so that nothing is dropped unseen.
pub mod exposition;
pub mod feeds;
mod interned;
pub mod labels;
mod open_windows;
pub mod otlp;
pub mod protobuf;
pub mod pull;
pub mod redfish;
pub mod remote_write;
mod resolution;
pub mod schedule;
pub mod scrape;
mod seen;
pub mod series;
mod state_codec;
mod state_store;
mod turns;

use crate::domain::functional_unit::FunctionalUnit;
use crate::domain::meter::{MeterKind, MeterReading};
use crate::domain::reading::{ReadingBatch, EARLIEST_START_US, MAX_FUTURE_START};
use crate::domain::{distinct, Grant, Id};
use crate::storage::logged::{LoggedTable, LoggedTableError, PreparedBatch};
use crate::storage::{functional_units, meters, readings, Registry, RegistryError, StorageError};
use chrono::{DateTime, Utc};
pub use labels::Labels;
pub use seen::{Seen, SourceStatus, UnmappedSeries};
use serde::{Deserialize, Serialize};
use series::{Counts, Due, Resolution, State, Target, Windows, Writing};
use state_store::StateStore;
use std::collections::BTreeMap;
use std::path::Path;
use turns::{Ticket, Turns};

/// One sample of a series: a value at an instant (milliseconds since the epoch, UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
    /// A delta point's start: its value is the increase over (start, timestamp].
    pub start_ms: Option<i64>,
}

/// A series: its labels (sorted, `__name__` among them) and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Each sample is an increase over its own interval (OTLP delta sums), not a running total.
    pub delta: bool,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }
}

/// `[telemetry]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Readings are aligned windows of this many seconds.
    pub window_s: u32,
    /// Longer gaps between two samples of a series are not bridged.
    pub max_gap_s: u32,
    /// A window's reading is written once a later sample of its target passes the window's end,
    /// or at the latest this many seconds after it changed (an exporter that stopped); 0 writes
    /// every change at once (each sample rewrites its window's reading: slower, but a report
    /// sees a sample as soon as it is acknowledged).
    pub flush_after_s: u32,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            window_s: 60,
            max_gap_s: 600,
            flush_after_s: 60,
        }
    }
}

impl TelemetrySettings {
    fn windows(&self) -> Windows {
        Windows {
            window_ms: i64::from(self.window_s.clamp(1, 3600)) * 1000,
            max_gap_ms: i64::from(self.max_gap_s) * 1000,
        }
    }

    fn writing(&self) -> Writing {
        match self.flush_after_s {
            0 => Writing::AtOnce,
            after => Writing::Passed {
                after_ms: i64::from(after) * 1000,
            },
        }
    }

    /// How often windows that waited are looked for.
    pub fn quiet_check_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from((self.flush_after_s / 4).max(1)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("storing readings: {0}")]
    Store(#[from] LoggedTableError),
    #[error("storing the series state: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("background task failed: {0}")]
    Task(String),
    /// An earlier request's change to the series state did not reach the disk, and this one's
    /// rests on it: the sender's retry (after the state is reloaded) succeeds.
    #[error("an earlier telemetry request failed before its series state was stored; retry")]
    Interrupted,
}

/// What a request may write, and against what.
pub struct IngestContext<'a> {
    pub registry: &'a Registry,
    pub readings: &'a LoggedTable,
    pub functional_units: &'a LoggedTable,
    pub meters: &'a LoggedTable,
    pub grant: &'a Grant,
    pub now: DateTime<Utc>,
    pub max_power_w: f64,
}

/// What a conversion's windows become.
#[derive(Default)]
struct Made {
    batch: ReadingBatch,
    units: Vec<FunctionalUnit>,
    metered: Vec<MeterReading>,
}

/// A batch ready for a table's log.
type Prepared<'a> = (&'a LoggedTable, PreparedBatch);

/// Marks the sites and customers as holding data, then prepares `frame`'s rows for `table`'s log
/// (and makes room in it).
async fn prepare<'a>(
    ctx: &IngestContext<'a>,
    table: &'a LoggedTable,
    (sites, customers): (Vec<Id>, Vec<Id>),
    frame: impl FnOnce() -> polars::prelude::PolarsResult<polars::prelude::DataFrame> + Send + 'static,
) -> Result<Prepared<'a>, TelemetryError> {
    ctx.registry
        .mark_with_readings("telemetry", &sites, &customers)
        .await?;
    let prepared = crate::storage::logged::blocking_request(move || {
        frame()
            .map_err(LoggedTableError::from)
            .and_then(LoggedTable::prepare)
    })
    .await?;
    table.make_room().await?;
    Ok((table, prepared))
}

/// The series state with the count of changes converted from it, the bytes they add to the
/// log since the last snapshot, and the resolutions of the series it has not kept.
struct Converter {
    state: State,
    converted: u64,
    log_bytes: u64,
    resolutions: resolution::Cache,
}

/// A converted request's state change on its way to the log: the change, or (when the log is due
/// to be folded) the whole state as of it.
enum Change {
    Append(Vec<u8>),
    Snapshot(Vec<u8>),
}

pub struct Telemetry {
    settings: TelemetrySettings,
    store: std::sync::Arc<std::sync::Mutex<StateStore>>,
    /// One conversion at a time: each sees the state the previous one left. Only the conversion
    /// holds it; readings become durable side by side, and changes reach the log in `turns`.
    converter: tokio::sync::Mutex<Converter>,
    turns: std::sync::Arc<Turns>,
    /// The order in which converted requests put their readings in the tables' logs.
    submit_turns: std::sync::Arc<Turns>,
    /// Times how long windows wait for a later sample.
    started: std::time::Instant,
    /// What each source delivered, and the series no mapping took.
    pub seen: Seen,
}

impl Telemetry {
    pub fn open(data_dir: &Path, settings: TelemetrySettings) -> Result<Self, StorageError> {
        let (store, state) = StateStore::open(&data_dir.join("telemetry"), settings.windows())?;
        Ok(Self {
            settings,
            store: std::sync::Arc::new(std::sync::Mutex::new(store)),
            converter: tokio::sync::Mutex::new(Converter {
                state,
                converted: 0,
                log_bytes: 0,
                resolutions: Default::default(),
            }),
            turns: Default::default(),
            submit_turns: Default::default(),
            started: std::time::Instant::now(),
            seen: Seen::default(),
        })
    }

    /// Takes a request's series in. When this returns Ok, the readings they make are durable and
    /// so is the series state that produced them (in that order: a crash between the two leaves
    /// the old state, and the sender's retry recomputes the same windows, which replace
    /// themselves). Windows whose reading waits (`Writing::Passed`) are durable in the state.
    /// `counts` holds what the decoder already set aside (points of unsupported types).
    pub async fn ingest(
        &self,
        source: &str,
        mut series: Vec<Series>,
        mut counts: Counts,
        ctx: IngestContext<'_>,
    ) -> Result<Counts, TelemetryError> {
        let latest_ms = (ctx.now + MAX_FUTURE_START).timestamp_millis();
        let mut newest: Option<i64> = None;
        for one in &mut series {
            let before = one.samples.len();
            one.samples.retain(|s| {
                s.timestamp_ms <= latest_ms && s.timestamp_ms * 1000 >= EARLIEST_START_US
            });
            let outside = (before - one.samples.len()) as u64;
            if outside > 0 {
                counts.ignore("timestamp_out_of_range", outside);
            }
            newest = newest.max(one.samples.iter().map(|s| s.timestamp_ms).max());
        }
        let number = self.seen.number(source);
        let mut converter = self.converter().await?;
        let windows = self.settings.windows();
        let Converter {
            state, resolutions, ..
        } = &mut *converter;
        let mut resolver = resolutions.resolver(&ctx);
        let reuse = resolver.reusable();
        let resolve = |one: &Series| {
            let resolution = resolver.resolve(one);
            if resolution == Resolution::Unmapped {
                self.seen.note_unmapped(one, ctx.now);
            }
            resolution
        };
        let changed = state.convert(&series, reuse, resolve, windows, &mut counts);
        let due = converter
            .state
            .due(self.settings.writing(), self.clock_ms(), number, windows);
        let mut credited = BTreeMap::from([(number, counts)]);
        let written = self
            .write(converter, &changed, &due, &ctx, &mut credited)
            .await;
        let counts = credited.remove(&number).unwrap_or_default();
        match written {
            Ok(series_active) => {
                self.seen
                    .record(source, Ok((&counts, newest, series_active)));
                Ok(counts)
            }
            Err(error) => {
                self.seen.record(source, Err(error.to_string()));
                Err(error)
            }
        }
    }

    /// Writes the readings of the windows still waiting for a later sample: those that waited
    /// `flush_after_s` (and those replayed after a restart), or all of them (`everything`,
    /// `POST /v1/telemetry/flush`). Each source is credited with the windows its samples changed
    /// last. Returns how many were written.
    pub async fn write_waiting_windows(
        &self,
        ctx: IngestContext<'_>,
        everything: bool,
    ) -> Result<usize, TelemetryError> {
        let after_ms = match self.settings.writing() {
            Writing::Passed { after_ms } if !everything => after_ms,
            // With `AtOnce`, only windows replayed after a restart wait.
            _ => 0,
        };
        let mut converter = self.converter().await?;
        let due = converter.state.idle(self.clock_ms(), after_ms);
        if due.is_empty() {
            return Ok(0);
        }
        let mut credited = BTreeMap::new();
        let series_active = self
            .write(converter, &[], &due, &ctx, &mut credited)
            .await?;
        for (number, counts) in credited {
            if let Some(name) = self.seen.name(number) {
                self.seen.record(&name, Ok((&counts, None, series_active)));
            }
        }
        Ok(due.len())
    }

    /// The converter, once the state is whole again if an earlier change failed to reach the disk.
    async fn converter(&self) -> Result<tokio::sync::MutexGuard<'_, Converter>, TelemetryError> {
        let mut converter = self.converter.lock().await;
        if self.turns.broken() {
            converter.state = self.reload(converter.converted).await?;
            converter.log_bytes = 0;
            self.turns.mended();
        }
        Ok(converter)
    }

    /// Milliseconds on the clock that times how long windows wait.
    fn clock_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Writes the readings of the `due` windows and logs the state change (`changed` windows and
    /// the series that moved) after them, in conversion order; the converter is released once
    /// the work is ordered. Returns the series with state.
    async fn write(
        &self,
        mut converter: tokio::sync::MutexGuard<'_, Converter>,
        changed: &[(series::WindowAt, f64)],
        due: &[Due],
        ctx: &IngestContext<'_>,
        credited: &mut BTreeMap<u16, Counts>,
    ) -> Result<usize, TelemetryError> {
        let windows = self.settings.windows();
        let state = &mut converter.state;
        // Named while their targets are live; turned into readings once the state is free.
        let named: Vec<(std::sync::Arc<Target>, i64, f64, u16)> = due
            .iter()
            .filter_map(|&((id, start_ms), joules, source)| {
                Some((state.target(id)?.clone(), start_ms, joules, source))
            })
            .collect();
        let change = state_codec::encode(&state.delta(changed, windows));
        let series_active = state.series();
        converter.log_bytes += change.len() as u64;
        let change = if converter.log_bytes > state_store::MAX_LOG_BYTES {
            converter.log_bytes = 0;
            converter.state.new_log();
            Change::Snapshot(state_codec::encode(&converter.state.snapshot()))
        } else {
            Change::Append(change)
        };
        let ticket = Ticket::after(&self.turns, converter.converted);
        let submit_turn = Ticket::after(&self.submit_turns, converter.converted);
        converter.converted = ticket.number();
        drop(converter);
        let made = Self::readings(&named, windows, ctx.max_power_w, credited);
        match Self::prepare_all(made, ctx).await {
            Ok(prepared) => self.commit(prepared, submit_turn, change, ticket).await?,
            // The ticket is dropped unfinished: the state breaks and is reloaded.
            Err(error) => return Err(error),
        }
        Ok(series_active)
    }

    /// The state as durable, once every change converted (through `converted`) had its turn.
    async fn reload(&self, converted: u64) -> Result<State, TelemetryError> {
        self.turns.settled(converted).await;
        let store = self.store.clone();
        let windows = self.settings.windows();
        let state = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reopen(windows)
        })
        .await
        .map_err(|e| TelemetryError::Task(e.to_string()))??;
        Ok(state)
    }

    /// The readings, functional-unit counts and meter readings of the due windows, each counted
    /// for the source credited with it.
    fn readings(
        due: &[(std::sync::Arc<Target>, i64, f64, u16)],
        windows: Windows,
        max_power_w: f64,
        credited: &mut BTreeMap<u16, Counts>,
    ) -> Made {
        let window_s = windows.window_ms / 1000;
        let mut made = Made::default();
        for (target, start_ms, joules, source) in due {
            let (start_ms, joules) = (*start_ms, *joules);
            let counts = credited.entry(*source).or_default();
            counts.readings_written += 1;
            if let Some(kind) = target.meter_kind {
                match Self::meter_reading(target, start_ms, kind, joules, window_s) {
                    Some(reading) => made.metered.push(reading),
                    None => counts.ignore("invalid_meter", 1),
                }
                continue;
            }
            if let Some(unit) = &target.functional_unit {
                match Self::functional_unit(target, start_ms, unit, joules, window_s) {
                    Some(count) => made.units.push(count),
                    None => counts.ignore("invalid_functional_unit", 1),
                }
                continue;
            }
            if joules / window_s as f64 > max_power_w {
                counts.ignore("over_max_power", 1);
                continue;
            }
            let batch = &mut made.batch;
            batch.site.push(&target.site);
            batch.customer.push(&target.customer);
            batch.workload.push(&target.workload);
            batch.start_us.push(start_ms * 1000);
            batch.duration_s.push(window_s as i32);
            batch.energy_j.push(Some(joules));
            batch.power_w.push(None);
        }
        made
    }

    /// A window of a counter of things as one functional-unit count, its identity the window.
    fn functional_unit(
        target: &Target,
        start_ms: i64,
        unit: &str,
        count: f64,
        window_s: i64,
    ) -> Option<FunctionalUnit> {
        Some(FunctionalUnit {
            site: Id::parse(&target.site).ok()?,
            customer: Id::parse(&target.customer).ok()?,
            workload: Id::parse(&target.workload).ok()?,
            start: DateTime::from_timestamp_millis(start_ms)?,
            duration_s: window_s,
            unit: unit.to_owned(),
            count,
        })
    }

    /// A window of a site meter's series as one meter reading, its identity the window.
    fn meter_reading(
        target: &Target,
        start_ms: i64,
        kind: MeterKind,
        joules: f64,
        window_s: i64,
    ) -> Option<MeterReading> {
        Some(MeterReading {
            site: Id::parse(&target.site).ok()?,
            meter: Id::parse(&target.workload).ok()?,
            kind,
            start: DateTime::from_timestamp_millis(start_ms)?,
            duration_s: window_s,
            energy_j: joules,
        })
    }

    /// The readings, counts and meter readings, then, in its turn, the state change that made
    /// them: a crash in between leaves the old state, and the sender's retry recomputes the same
    /// windows, which replace themselves.
    async fn prepare_all<'a>(
        Made {
            batch,
            units,
            metered,
        }: Made,
        ctx: &IngestContext<'a>,
    ) -> Result<Vec<Prepared<'a>>, TelemetryError> {
        let mut prepared = Vec::new();
        if !metered.is_empty() {
            let sites = distinct(metered.iter().map(|m| &m.site));
            let frame = move || meters::frame(&metered);
            prepared.push(prepare(ctx, ctx.meters, (sites, Vec::new()), frame).await?);
        }
        if !batch.is_empty() {
            let owners = (batch.site.ids(), batch.customer.ids());
            prepared
                .push(prepare(ctx, ctx.readings, owners, move || readings::frame(batch)).await?);
        }
        if !units.is_empty() {
            let owners = (
                distinct(units.iter().map(|u| &u.site)),
                distinct(units.iter().map(|u| &u.customer)),
            );
            let frame = move || functional_units::frame(&units);
            prepared.push(prepare(ctx, ctx.functional_units, owners, frame).await?);
        }
        Ok(prepared)
    }

    async fn commit(
        &self,
        prepared: Vec<Prepared<'_>>,
        submit_turn: Ticket,
        change: Change,
        ticket: Ticket,
    ) -> Result<(), TelemetryError> {
        // Readings go into their logs in conversion order, as the state changed: two requests
        // that rewrite one window leave the later sum (newest-wins follows the log). This turn
        // only orders; whether the state broke is the state's turn to tell.
        submit_turn.turn().await;
        let submitted = prepared
            .into_iter()
            .map(|(table, batch)| table.submit(batch))
            .collect::<Result<Vec<_>, _>>();
        submit_turn.finish(true);
        let readings = futures_util::future::try_join_all(submitted?).await;
        if !ticket.turn().await {
            return Err(TelemetryError::Interrupted);
        }
        // Dropping the ticket unfinished (an error here) breaks the state: it is reloaded.
        readings?;
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            match change {
                Change::Append(change) => store.write(&change).map(Some),
                // The snapshot is synced as it is written.
                Change::Snapshot(state) => store.replace(&state).map(|()| None),
            }
        })
        .await
        .map_err(|e| TelemetryError::Task(e.to_string()))??;
        // The change is in the log, in its order: the next request may write its own while this
        // one waits for a sync (which covers every change written before it).
        ticket.finish(true);
        if let Some(written) = written {
            let synced = tokio::task::spawn_blocking(move || written.sync()).await;
            if !matches!(synced, Ok(Ok(()))) {
                // The changes after this one rest on it: they fail and the state reloads.
                self.turns.break_state();
                synced.map_err(|e| TelemetryError::Task(e.to_string()))??;
            }
        }
        Ok(())
    }
}
