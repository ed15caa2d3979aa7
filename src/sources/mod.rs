//! Everything that comes in from outside, with one anatomy (settings, a client, a parser to
//! domain records, a sink) and one retry schedule (`schedule`): grid-intensity feeds (`feeds`),
//! and telemetry from what data centers already run (Prometheus remote-write, OTLP, scraped
//! exporters, Redfish BMCs), decoded into series, matched to the registry's mappings, turned into
//! readings (see `series`), and counted per source so that nothing is dropped unseen.
pub mod exposition;
pub mod feeds;
pub mod otlp;
pub mod protobuf;
pub mod pull;
pub mod redfish;
pub mod remote_write;
mod resolution;
pub mod schedule;
pub mod scrape;
pub mod series;
mod state_store;

use crate::domain::functional_unit::FunctionalUnit;
use crate::domain::meter::{MeterKind, MeterReading};
use crate::domain::reading::{ReadingBatch, EARLIEST_START_US, MAX_FUTURE_START};
use crate::domain::{distinct, Customer, Grant, Id, Site};
use crate::storage::logged::{LoggedTable, LoggedTableError};
use crate::storage::{functional_units, meters, readings, Registry, RegistryError, StorageError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use series::{Counts, Delta, Resolution, State, WindowKey, Windows};
use state_store::{Seal, StateStore};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use utoipa::ToSchema;

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
    pub labels: Vec<(String, String)>,
    pub samples: Vec<Sample>,
    /// Each sample is an increase over its own interval (OTLP delta sums), not a running total.
    pub delta: bool,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            window_s: 60,
            max_gap_s: 600,
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
}

/// What a source has delivered, as `GET /v1/telemetry/sources` shows it.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(example = json!({"source": "remote_write", "last_sample_at": "2026-03-01T10:00:00Z",
    "samples_accepted": 120, "samples_unmapped": 40, "samples_ignored": {"stale_marker": 2},
    "gaps": 0, "resets": 1, "readings_written": 8, "series_active": 4, "series_unmapped": 10,
    "last_error": null}))]
pub struct SourceStatus {
    /// `remote_write`.
    pub source: String,
    pub last_sample_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Series with state, over every source.
    pub series_active: usize,
    /// Distinct series seen without a mapping (bounded, see `/v1/telemetry/unmapped`).
    pub series_unmapped: usize,
    pub last_error: Option<String>,
}

/// A series seen without a mapping: what an operator writes a mapping for.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"metric": "kepler_node_cpu_joules_total",
    "labels": {"node_name": "worker-01", "zone": "package"}, "samples": 12,
    "last_seen": "2026-03-01T10:00:00Z"}))]
pub struct UnmappedSeries {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub samples: u64,
    pub last_seen: DateTime<Utc>,
}

/// Unmapped series listed at most; further ones are still counted.
const MAX_UNMAPPED_LISTED: usize = 1000;

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

/// Marks the sites and customers as holding data, then makes `frame`'s rows durable in `table`.
async fn durable(
    ctx: &IngestContext<'_>,
    table: &LoggedTable,
    (sites, customers): (Vec<Id>, Vec<Id>),
    frame: impl FnOnce() -> polars::prelude::PolarsResult<polars::prelude::DataFrame> + Send + 'static,
) -> Result<(), TelemetryError> {
    ctx.registry
        .mark_with_readings("telemetry", &sites, &customers)
        .await?;
    let prepared = crate::storage::logged::blocking(frame)
        .await
        .and_then(LoggedTable::prepare)?;
    table.append(prepared).await?;
    Ok(())
}

pub struct Telemetry {
    settings: TelemetrySettings,
    store: std::sync::Arc<std::sync::Mutex<StateStore>>,
    /// One request at a time: each sees the state the previous one left.
    state: tokio::sync::Mutex<State>,
    sources: std::sync::Mutex<BTreeMap<String, SourceStatus>>,
    unmapped: std::sync::Mutex<HashMap<String, UnmappedSeries>>,
}

impl Telemetry {
    pub fn open(data_dir: &Path, settings: TelemetrySettings) -> Result<Self, StorageError> {
        let (store, state) = StateStore::open(&data_dir.join("telemetry"), settings.windows())?;
        Ok(Self {
            settings,
            store: std::sync::Arc::new(std::sync::Mutex::new(store)),
            state: tokio::sync::Mutex::new(state),
            sources: Default::default(),
            unmapped: Default::default(),
        })
    }

    fn note_unmapped(&self, series: &Series, now: DateTime<Utc>) {
        let mut unmapped = self.unmapped.lock().unwrap_or_else(|p| p.into_inner());
        let key = series::series_key(series);
        if let Some(seen) = unmapped.get_mut(&key) {
            seen.samples += series.samples.len() as u64;
            seen.last_seen = now;
        } else if unmapped.len() < MAX_UNMAPPED_LISTED {
            unmapped.insert(
                key,
                UnmappedSeries {
                    metric: series.label("__name__").unwrap_or_default().to_owned(),
                    labels: series
                        .labels
                        .iter()
                        .filter(|(n, _)| n != "__name__")
                        .cloned()
                        .collect(),
                    samples: series.samples.len() as u64,
                    last_seen: now,
                },
            );
        }
    }

    /// Takes a request's series in. When this returns Ok, the readings they make are durable and
    /// so is the series state that produced them (in that order: a crash between the two leaves
    /// the old state, and the sender's retry recomputes the same windows, which replace
    /// themselves).
    /// `counts` holds what the decoder already set aside (points of unsupported types).
    pub async fn ingest(
        &self,
        source: &str,
        mut series: Vec<Series>,
        mut counts: Counts,
        ctx: IngestContext<'_>,
    ) -> Result<Counts, TelemetryError> {
        let mappings = resolution::Mappings::load(ctx.registry);
        let sites: HashMap<Id, Site> = ctx
            .registry
            .list::<Site>()
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let customers: HashMap<Id, Customer> = ctx
            .registry
            .list::<Customer>()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
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
        let resolutions: Vec<Resolution> = series
            .iter()
            .map(|one| match mappings.first_match(one) {
                Some(mapping) => resolution::resolve(mapping, one, &ctx, &sites, &customers),
                None => {
                    self.note_unmapped(one, ctx.now);
                    Resolution::Unmapped
                }
            })
            .collect();
        let mut state = self.state.lock().await;
        let changed = state.convert(
            &series,
            |i, _| resolutions[i].clone(),
            self.settings.windows(),
            &mut counts,
        );
        let window_s = self.settings.windows().window_ms / 1000;
        let mut batch = ReadingBatch::default();
        let mut units = Vec::new();
        let mut metered = Vec::new();
        for (key, joules) in &changed {
            if let Some(kind) = key.target.meter_kind {
                match Self::meter_reading(key, kind, *joules, window_s) {
                    Some(reading) => metered.push(reading),
                    None => counts.ignore("invalid_meter", 1),
                }
                continue;
            }
            if let Some(unit) = &key.target.functional_unit {
                match Self::functional_unit(key, unit, *joules, window_s) {
                    Some(count) => units.push(count),
                    None => counts.ignore("invalid_functional_unit", 1),
                }
                continue;
            }
            if joules / window_s as f64 > ctx.max_power_w {
                counts.ignore("over_max_power", 1);
                continue;
            }
            batch.site.push(&key.target.site);
            batch.customer.push(&key.target.customer);
            batch.workload.push(&key.target.workload);
            batch.start_us.push(key.start_ms * 1000);
            batch.duration_s.push(window_s as i32);
            batch.energy_j.push(Some(*joules));
            batch.power_w.push(None);
        }
        let delta = state.delta(&changed);
        match self.commit((batch, units, metered), delta, &ctx).await {
            Ok(()) => {
                self.record(source, Ok((&counts, newest, state.series())));
                let sealed = self.seal_when_due(&state);
                drop(state);
                if let Some(sealed) = sealed {
                    self.write_snapshot(sealed).await;
                }
                Ok(counts)
            }
            Err(error) => {
                // Memory ran ahead of the disk: go back to what is durable (the sender retries).
                let store = self.store.clone();
                let windows = self.settings.windows();
                if let Ok(Ok(durable)) = tokio::task::spawn_blocking(move || {
                    store
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .reload(windows)
                })
                .await
                {
                    *state = durable;
                }
                self.record(source, Err(error.to_string()));
                Err(error)
            }
        }
    }

    /// Seals the state's log when it is due, with the state as of the seal: call it while
    /// holding the state (no change can be appended meanwhile).
    fn seal_when_due(&self, state: &State) -> Option<(Seal, State)> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if !store.wants_snapshot() {
            return None;
        }
        match store.seal() {
            Ok(seal) => Some((seal, state.clone())),
            Err(error) => {
                tracing::warn!(error = %error, "sealing the series log failed; it goes on");
                None
            }
        }
    }

    /// Writes a sealed log's snapshot, away from the state's lock: requests go on meanwhile.
    async fn write_snapshot(&self, (seal, state): (Seal, State)) {
        let outcome = tokio::task::spawn_blocking(move || seal.write(&state)).await;
        if let Ok(Err(error)) = outcome {
            tracing::warn!(error = %error, "snapshotting the series state failed; its logs go on");
        }
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sealed();
    }

    /// A window of a counter of things as one functional-unit count, its identity the window.
    fn functional_unit(
        key: &WindowKey,
        unit: &str,
        count: f64,
        window_s: i64,
    ) -> Option<FunctionalUnit> {
        Some(FunctionalUnit {
            site: Id::parse(&key.target.site).ok()?,
            customer: Id::parse(&key.target.customer).ok()?,
            workload: Id::parse(&key.target.workload).ok()?,
            start: DateTime::from_timestamp_millis(key.start_ms)?,
            duration_s: window_s,
            unit: unit.to_owned(),
            count,
        })
    }

    /// A window of a site meter's series as one meter reading, its identity the window.
    fn meter_reading(
        key: &WindowKey,
        kind: MeterKind,
        joules: f64,
        window_s: i64,
    ) -> Option<MeterReading> {
        Some(MeterReading {
            site: Id::parse(&key.target.site).ok()?,
            meter: Id::parse(&key.target.workload).ok()?,
            kind,
            start: DateTime::from_timestamp_millis(key.start_ms)?,
            duration_s: window_s,
            energy_j: joules,
        })
    }

    /// The readings, counts and meter readings, then the state change that made them: a crash
    /// in between leaves the old state, and the sender's retry recomputes the same windows,
    /// which replace themselves.
    async fn commit(
        &self,
        (batch, units, metered): (ReadingBatch, Vec<FunctionalUnit>, Vec<MeterReading>),
        delta: Delta,
        ctx: &IngestContext<'_>,
    ) -> Result<(), TelemetryError> {
        // The state's line is encoded on another thread while the readings are made durable; it
        // is written only after them.
        let line = tokio::task::spawn_blocking(move || state_store::encode(&delta));
        if !metered.is_empty() {
            let sites = distinct(metered.iter().map(|m| &m.site));
            let frame = move || meters::frame(&metered);
            durable(ctx, ctx.meters, (sites, Vec::new()), frame).await?;
        }
        if !batch.is_empty() {
            let owners = (batch.site.ids(), batch.customer.ids());
            durable(ctx, ctx.readings, owners, move || readings::frame(batch)).await?;
        }
        if !units.is_empty() {
            let owners = (
                distinct(units.iter().map(|u| &u.site)),
                distinct(units.iter().map(|u| &u.customer)),
            );
            let frame = move || functional_units::frame(&units);
            durable(ctx, ctx.functional_units, owners, frame).await?;
        }
        let line = line
            .await
            .map_err(|e| TelemetryError::Task(e.to_string()))??;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append_line(&line)
        })
        .await
        .map_err(|e| TelemetryError::Task(e.to_string()))??;
        Ok(())
    }

    /// Adds a committed request's counts to its source, or notes why a request failed (its
    /// samples are not counted: the sender retries them).
    fn record(&self, source: &str, outcome: Result<(&Counts, Option<i64>, usize), String>) {
        let unmapped = self
            .unmapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let status = sources
            .entry(source.to_owned())
            .or_insert_with(|| SourceStatus {
                source: source.to_owned(),
                ..SourceStatus::default()
            });
        status.series_unmapped = unmapped;
        match outcome {
            Ok((counts, newest_ms, series_active)) => {
                status.counts.add(counts);
                if let Some(newest) = newest_ms.and_then(DateTime::from_timestamp_millis) {
                    status.last_sample_at = status.last_sample_at.max(Some(newest));
                }
                status.series_active = series_active;
            }
            Err(error) => status.last_error = Some(error),
        }
    }

    /// A pull that brought nothing (a scrape target down, a body that does not parse).
    pub fn note_failure(&self, source: &str, reason: &str) {
        self.record(source, Err(reason.to_owned()));
    }

    /// The sources' counters in the Prometheus text format, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let families = [
            (
                "telemetry_samples_accepted_total",
                "Samples of mapped series taken in.",
            ),
            (
                "telemetry_samples_unmapped_total",
                "Samples of series no mapping matched.",
            ),
            (
                "telemetry_samples_ignored_total",
                "Samples that added nothing, by reason.",
            ),
            (
                "telemetry_readings_written_total",
                "Window readings written or rewritten.",
            ),
            (
                "telemetry_gaps_total",
                "Intervals longer than max_gap_s, not bridged.",
            ),
        ];
        let sources = self.sources();
        for (name, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &sources {
                let source = &s.source;
                let c = &s.counts;
                match name {
                    "telemetry_samples_ignored_total" => {
                        for (reason, n) in &c.samples_ignored {
                            let _ = writeln!(
                                out,
                                "{name}{{source=\"{source}\",reason=\"{reason}\"}} {n}"
                            );
                        }
                    }
                    _ => {
                        let n = match name {
                            "telemetry_samples_accepted_total" => c.samples_accepted,
                            "telemetry_samples_unmapped_total" => c.samples_unmapped,
                            "telemetry_readings_written_total" => c.readings_written,
                            _ => c.gaps,
                        };
                        let _ = writeln!(out, "{name}{{source=\"{source}\"}} {n}");
                    }
                }
            }
        }
        out
    }

    pub fn sources(&self) -> Vec<SourceStatus> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn unmapped(&self) -> Vec<UnmappedSeries> {
        let mut listed: Vec<UnmappedSeries> = self
            .unmapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        listed.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        listed
    }
}
