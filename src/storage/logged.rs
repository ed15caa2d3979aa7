//! A logged table: write-ahead log in front, a buffer of acknowledged batches, and a Delta table
//! behind, filled by a flusher. Reads see the table and the buffer together; tables with an identity
//! resolve rows sent again newest-wins by the order they were logged (`seq`). Readings and
//! intensity points are both stored this way (`TableSpec`).
use super::lease::Lease;
use super::location::Location;
use super::replica::Replica;
use super::table::{NewFile, Table, TableError, TableFile};
use super::wal::{Lsn, Wal};
use bytes::Bytes;
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Log order of a row: lsn << 20 | row in batch. The highest wins among rows sent again.
pub const SEQ: &str = "seq";
/// Rows per batch are below 2^20, so `seq` orders batches first, then rows within a batch.
pub const MAX_ROWS_PER_BATCH: usize = 1 << 20;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// What distinguishes one logged table from another.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Directory name under `tables/` and `wal/`.
    pub name: &'static str,
    /// The Delta schema, without `seq` and the date partition.
    pub columns: fn() -> Vec<StructField>,
    /// The same columns as a frame with no rows: the schema files and logged batches are read
    /// with (columns added later, always nullable, read as nulls from older ones).
    pub empty: fn() -> PolarsResult<DataFrame>,
    /// The UTC instant that files are partitioned and scans filtered by.
    pub time_column: &'static str,
    /// Rows with equal values here replace each other, newest wins; `None` keeps every row.
    pub identity: Option<&'static [&'static str]>,
    /// The column whose value `scan` may ask for: cached dates keep each value's rows together.
    pub cache_key: Option<&'static str>,
    /// How long before a scan's start a row may begin and still overlap it.
    pub lookback_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggedTableError {
    #[error("write-ahead log: {0}")]
    Wal(#[from] std::io::Error),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("background task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone)]
pub struct LoggedTableOptions {
    /// fsync the log before acknowledging (off only for benchmarks).
    pub fsync: bool,
    /// The flusher runs early once this many rows wait in the buffer.
    pub flush_rows: usize,
    /// Ingest waits for a flush beyond this many buffered rows: memory stays bounded.
    pub max_buffered_rows: usize,
    /// A date partition with this many files or more is compacted into one.
    pub compact_min_files: usize,
    /// Rows of resolved date partitions kept in memory for reads (0: none).
    pub cache_rows: usize,
    /// How late reads may see what other replicas committed.
    pub refresh_interval: std::time::Duration,
    /// How often the flusher compacts (when this replica holds the compaction lease).
    pub compaction_interval: std::time::Duration,
}

impl Default for LoggedTableOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            flush_rows: 1_000_000,
            max_buffered_rows: 4_000_000,
            compact_min_files: 8,
            cache_rows: 20_000_000,
            refresh_interval: std::time::Duration::from_secs(1),
            // Rewriting partitions after every flush took CPU from ingest and lengthened its p99.
            compaction_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// A batch ready for the log: its columns as a frame and as Arrow IPC bytes.
pub struct PreparedBatch {
    frame: DataFrame,
    payload: Vec<u8>,
}

impl PreparedBatch {
    pub fn rows(&self) -> usize {
        self.frame.height()
    }
}

#[derive(Default)]
struct Buffer {
    batches: Vec<(Lsn, DataFrame)>,
    rows: usize,
    /// No batch waiting is older than this (for the backlog's age).
    waiting_since: Option<std::time::Instant>,
}

impl Buffer {
    fn push(&mut self, lsn: Lsn, frame: DataFrame) {
        self.rows += frame.height();
        self.waiting_since
            .get_or_insert_with(std::time::Instant::now);
        self.batches.push((lsn, frame));
    }

    /// Keeps the batches after `lsn`; they arrived after `since` at the earliest.
    fn drop_through(&mut self, lsn: Lsn, since: std::time::Instant) {
        self.batches.retain(|(batch, _)| *batch > lsn);
        self.rows = self.batches.iter().map(|(_, f)| f.height()).sum();
        self.waiting_since = match self.batches.is_empty() {
            true => None,
            false => self.waiting_since.map(|oldest| oldest.max(since)),
        };
    }
}

/// What an operator alerts on, per table: the backlog acknowledged but not yet in the table
/// (it grows while the store is out of reach), and how flushes fare.
#[derive(Debug, Clone, PartialEq)]
pub struct TableHealth {
    pub table: &'static str,
    pub buffered_rows: usize,
    pub oldest_unflushed_s: f64,
    pub log_bytes: u64,
    pub flushes: u64,
    pub flush_failures: u64,
    pub last_flush_s: f64,
    pub table_version: Option<u64>,
    /// Whether this replica held the compaction lease at its last round.
    pub compaction_owner: bool,
}

#[derive(Default)]
struct FlushStats {
    flushes: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
    last_micros: std::sync::atomic::AtomicU64,
}

/// Date partitions read from the table and resolved newest-wins, each kept while its files stay
/// the same: a flush or compaction that touches a date changes its files, so the next read
/// resolves that date again. Least recently used dates leave first once `limit_rows` is passed.
/// Each key's rows in a frame sorted by the key: (offset, length).
type KeyRanges = HashMap<String, (i64, usize)>;

/// The rows of `key` (all rows for `None`) of a frame sorted by it, without a copy.
fn rows_of(frame: &DataFrame, ranges: &KeyRanges, key: Option<&str>) -> DataFrame {
    match key {
        None => frame.clone(),
        Some(key) => {
            let (offset, length) = ranges.get(key).copied().unwrap_or((0, 0));
            frame.slice(offset, length)
        }
    }
}

struct PartitionCache {
    limit_rows: usize,
    rows: usize,
    clock: u64,
    dates: HashMap<String, CachedPartition>,
}

struct CachedPartition {
    files: Vec<String>,
    /// Sorted by the spec's `cache_key`, whose values' row ranges are in `ranges`.
    frame: DataFrame,
    ranges: KeyRanges,
    used: u64,
}

/// Rows of each value of `column` in a frame sorted by it: (offset, length).
fn key_ranges(frame: &DataFrame, column: Option<&str>) -> PolarsResult<KeyRanges> {
    let mut ranges = KeyRanges::new();
    let Some(column) = column else {
        return Ok(ranges);
    };
    for (row, value) in frame.column(column)?.str()?.iter().enumerate() {
        let value = value.unwrap_or_default();
        match ranges.get_mut(value) {
            Some((_, length)) => *length += 1,
            None => {
                ranges.insert(value.to_owned(), (row as i64, 1));
            }
        }
    }
    Ok(ranges)
}

/// Rows resolved newest-wins and sorted by the spec's `cache_key`, with each key's row range.
fn resolve_for_cache(rows: LazyFrame, spec: &TableSpec) -> PolarsResult<(DataFrame, KeyRanges)> {
    let resolved = newest_wins(rows, spec);
    // After the key, the rest of the identity: the splitter then meets each workload's readings
    // together and in time order, however ingest interleaved them.
    let mut order: Vec<&str> = spec.cache_key.into_iter().collect();
    order.extend(
        spec.identity
            .unwrap_or_default()
            .iter()
            .filter(|column| Some(**column) != spec.cache_key),
    );
    let frame = match order.is_empty() {
        true => resolved,
        false => resolved.sort(order, SortMultipleOptions::default()),
    }
    .collect()?;
    cache_entry(frame, spec)
}

/// Rows in the cache's order as one chunk per column (slices of it then reach the splitter
/// without a copy), with each key's row range.
fn cache_entry(mut frame: DataFrame, spec: &TableSpec) -> PolarsResult<(DataFrame, KeyRanges)> {
    frame.rechunk_mut_par();
    let ranges = key_ranges(&frame, spec.cache_key)?;
    Ok((frame, ranges))
}

/// The paths of `date`'s files, sorted: what a cached date is keyed by.
fn file_names(files: &[TableFile], date: &str) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .filter(|file| file.date == date)
        .map(|file| file.path.clone())
        .collect();
    names.sort();
    names
}

impl PartitionCache {
    fn new(limit_rows: usize) -> Self {
        Self {
            limit_rows,
            rows: 0,
            clock: 0,
            dates: HashMap::new(),
        }
    }

    /// Re-keys `date` after its files were rewritten without changing its rows.
    fn renamed(&mut self, date: &str, old: &[String], new: Vec<String>) {
        if let Some(entry) = self.dates.get_mut(date).filter(|e| e.files == old) {
            entry.files = new;
        }
    }

    /// The cached rows of `date` if they were read from `files`: all, or those of one `key`.
    fn get(&mut self, date: &str, files: &[String], key: Option<&str>) -> Option<DataFrame> {
        self.clock += 1;
        let entry = self.dates.get_mut(date).filter(|e| e.files == files)?;
        entry.used = self.clock;
        Some(rows_of(&entry.frame, &entry.ranges, key))
    }

    /// Whether `rows` more fit, once dates not used since `since` make room.
    fn admits(&self, rows: usize, since: u64) -> bool {
        let evictable: usize = (self.dates.values())
            .filter(|e| e.used < since)
            .map(|e| e.frame.height())
            .sum();
        self.rows - evictable + rows <= self.limit_rows
    }

    /// A stamp for a scan's start: dates used after it are the scan's own.
    fn stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Caches `date`, evicting least recently used dates not used since `since`. When only dates
    /// used since then would make room, `date` is not cached: a scan over more than the cache
    /// holds keeps the dates it found cached rather than cycling them all out on every request.
    fn put(
        &mut self,
        date: String,
        files: Vec<String>,
        sorted: DataFrame,
        ranges: KeyRanges,
        since: u64,
    ) {
        if let Some(old) = self.dates.remove(&date) {
            self.rows -= old.frame.height();
        }
        if !self.admits(sorted.height(), since) {
            return;
        }
        while self.rows + sorted.height() > self.limit_rows {
            let Some(oldest) = self
                .dates
                .iter()
                .filter(|(_, e)| e.used < since)
                .min_by_key(|(_, e)| e.used)
                .map(|(date, _)| date.clone())
            else {
                return;
            };
            if let Some(old) = self.dates.remove(&oldest) {
                self.rows -= old.frame.height();
            }
        }
        let entry = CachedPartition {
            files,
            frame: sorted,
            ranges,
            used: self.stamp(),
        };
        self.rows += entry.frame.height();
        self.dates.insert(date, entry);
    }
}

pub struct LoggedTable {
    spec: TableSpec,
    wal: Wal<DataFrame>,
    buffer: Arc<Mutex<Buffer>>,
    cache: Mutex<PartitionCache>,
    table: Table,
    flushing: tokio::sync::Mutex<()>,
    wake_flusher: Notify,
    options: LoggedTableOptions,
    stats: FlushStats,
    /// Only the replica holding it compacts the table.
    compaction: Lease,
}

pub fn utc_micros() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// A literal instant comparable with the `start` column.
pub fn instant(us: i64) -> Expr {
    lit(us).cast(utc_micros())
}

fn with_seq(frame: DataFrame, lsn: Lsn) -> PolarsResult<DataFrame> {
    let base = (lsn as i64) << 20;
    let seq: Vec<i64> = (0..frame.height() as i64).map(|row| base | row).collect();
    let mut frame = frame;
    frame.with_column(Column::new(SEQ.into(), seq))?;
    Ok(frame)
}

fn decode_payload(payload: &[u8]) -> PolarsResult<DataFrame> {
    IpcStreamReader::new(Cursor::new(payload)).finish()
}

/// Keeps the newest of rows sent again (all rows for tables without an identity).
fn newest_wins(frame: LazyFrame, spec: &TableSpec) -> LazyFrame {
    match spec.identity {
        Some(identity) => frame
            .sort([SEQ], SortMultipleOptions::default())
            .unique_stable(
                Some(cols(identity.iter().copied())),
                UniqueKeepStrategy::Last,
            ),
        None => frame,
    }
}

/// Flushed files live until compaction rewrites them: they favour a cheap codec (LZ4, which
/// costs the ingest's cores far less than zstd at these rates); compacted files favour size.
fn parquet_bytes(frame: &mut DataFrame, compression: ParquetCompression) -> PolarsResult<Bytes> {
    let mut out = Vec::new();
    // Row groups small enough that a scan for one customer skips the others' (by statistics).
    ParquetWriter::new(&mut out)
        .with_compression(compression)
        .with_row_group_size(Some(65_536))
        .finish(frame)?;
    Ok(Bytes::from(out))
}

fn day_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Files grouped by their date partition, dates in order.
fn partitions(files: Vec<TableFile>) -> BTreeMap<String, Vec<TableFile>> {
    let mut dates: BTreeMap<String, Vec<TableFile>> = BTreeMap::new();
    for file in files {
        dates.entry(file.date.clone()).or_default().push(file);
    }
    dates
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn day_number(date: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(
        date.signed_duration_since(chrono::DateTime::UNIX_EPOCH.date_naive())
            .num_days(),
    )
}

/// What a scan keeps: rows in its time range, of one value of the spec's `cache_key` if asked,
/// and matching its filter if any.
struct Selection {
    in_range: Expr,
    key: Option<Expr>,
    filter: Option<Expr>,
}

impl Selection {
    /// `frame` filtered by the parts that it may not already satisfy, in one pass.
    fn apply(&self, frame: LazyFrame, check_time: bool, check_key: bool) -> LazyFrame {
        let conditions = [
            check_time.then(|| self.in_range.clone()),
            self.key.clone().filter(|_| check_key),
            self.filter.clone(),
        ];
        match conditions.into_iter().flatten().reduce(Expr::and) {
            Some(condition) => frame.filter(condition),
            None => frame,
        }
    }
}

/// The UTC dates (`YYYY-MM-DD`) that rows of `frames` fall on.
fn dates_of(frames: &[DataFrame], time: &str) -> PolarsResult<BTreeSet<String>> {
    Ok(days_of(frames, time)?
        .into_iter()
        .map(|day| day_of(day * MICROS_PER_DAY))
        .collect())
}

/// The days since 1970-01-01 (UTC) that rows of `frames` fall on.
fn days_of(frames: &[DataFrame], time: &str) -> PolarsResult<BTreeSet<i64>> {
    let mut days = BTreeSet::new();
    for frame in frames {
        let starts = frame.column(time)?.datetime()?.physical();
        days.extend(
            starts
                .iter()
                .flatten()
                .map(|us| us.div_euclid(MICROS_PER_DAY)),
        );
    }
    Ok(days)
}

/// One Parquet file per UTC date of the time column. Rows sent again are left for reads and
/// compaction to resolve: resolving them here (a sort and a hash over every flushed row) took CPU
/// from ingest on the hot path.
fn files_by_date(frames: Vec<DataFrame>, spec: &TableSpec) -> PolarsResult<Vec<NewFile>> {
    let lazies: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
    let all = concat(lazies, UnionArgs::default())?.collect()?;
    let starts = all.column(spec.time_column)?.datetime()?.physical().clone();
    let days: Vec<i64> = starts
        .iter()
        .map(|us| us.unwrap_or_default().div_euclid(MICROS_PER_DAY))
        .collect();
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let day_column = Int64Chunked::from_vec("day".into(), days);
    let mut files = Vec::with_capacity(distinct.len());
    for day in distinct {
        let mask = day_column.equal(day);
        let mut part = all.filter(&mask)?;
        files.push(NewFile {
            date: day_of(day * MICROS_PER_DAY),
            rows: part.height(),
            parquet: parquet_bytes(&mut part, ParquetCompression::Lz4Raw)?,
            resolved: false,
        });
    }
    Ok(files)
}

/// Data files fetched from the store (whichever it is) scanned as Parquet held in memory.
fn scan_files(contents: Vec<Bytes>, spec: &TableSpec) -> PolarsResult<Option<LazyFrame>> {
    if contents.is_empty() {
        return Ok(None);
    }
    let sources = ScanSources::Buffers(
        contents
            .into_iter()
            .map(|bytes| Vec::from(bytes).into())
            .collect(),
    );
    let mut schema = (spec.empty)()?.schema().as_ref().clone();
    schema.with_column(SEQ.into(), DataType::Int64);
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        schema: Some(Arc::new(schema)),
        allow_missing_columns: true,
        ..Default::default()
    };
    LazyFrame::scan_parquet_sources(sources, args).map(Some)
}

/// A batch logged before the spec gained a column, given that column as nulls.
fn conform(mut frame: DataFrame, spec: &TableSpec) -> PolarsResult<DataFrame> {
    for field in (spec.empty)()?.schema().iter_fields() {
        if frame.column(field.name()).is_err() {
            let nulls = Column::full_null(field.name().clone(), frame.height(), field.dtype());
            frame.with_column(nulls)?;
        }
    }
    Ok(frame)
}

/// Runs polars work on the blocking pool: polars must never run on an async executor thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> PolarsResult<T> + Send + 'static,
) -> Result<T, LoggedTableError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoggedTableError::Task(e.to_string()))?
        .map_err(LoggedTableError::from)
}

impl LoggedTable {
    /// Opens the table `tables/<name>` in `location` and replays this replica's log (under
    /// `wal_dir/<name>`) past the last batch it committed.
    pub async fn open(
        location: &Location,
        wal_dir: &Path,
        replica: &Replica,
        spec: TableSpec,
        options: LoggedTableOptions,
    ) -> Result<Arc<Self>, LoggedTableError> {
        let mut columns = (spec.columns)();
        columns.push(StructField::new(SEQ, DeltaType::LONG, false));
        let app_ids = (replica.app_id(spec.name), replica.legacy_app_id(spec.name));
        let table = Table::open(
            location,
            &format!("tables/{}", spec.name),
            app_ids,
            columns,
            options.refresh_interval,
        )
        .await?;
        let committed = table.committed_lsn().await?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let sink = buffer.clone();
        let (wal, recovered) = Wal::open(
            &wal_dir.join(spec.name),
            committed,
            options.fsync,
            move |lsn, frame: DataFrame| match with_seq(frame, lsn) {
                Ok(frame) => sink
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(lsn, frame),
                // Durable in the log, so the next start replays it; reads miss it until then.
                Err(error) => tracing::error!(lsn, error = %error, "cannot buffer a logged batch"),
            },
        )?;
        {
            let mut buffer = buffer.lock().unwrap_or_else(|p| p.into_inner());
            for record in &recovered {
                let frame = conform(decode_payload(&record.payload)?, &spec)?;
                buffer.push(record.lsn, with_seq(frame, record.lsn)?);
            }
        }
        if !recovered.is_empty() {
            tracing::info!(
                batches = recovered.len(),
                committed_lsn = committed,
                "replayed the readings log"
            );
        }
        let cache = Mutex::new(PartitionCache::new(options.cache_rows));
        let compaction = Lease::new(
            location,
            &format!("compaction-{}", spec.name),
            &replica.replica_id,
            // Three rounds: a holder that stops (killed, cut off) hands over within them.
            options.compaction_interval * 3,
        );
        Ok(Arc::new(Self {
            spec,
            wal,
            buffer,
            cache,
            table,
            flushing: tokio::sync::Mutex::new(()),
            wake_flusher: Notify::new(),
            options,
            stats: FlushStats::default(),
            compaction,
        }))
    }

    /// Encodes a batch (the spec's columns, without `seq`) for the log. CPU work: call it off the
    /// async executor.
    pub fn prepare(mut frame: DataFrame) -> Result<PreparedBatch, LoggedTableError> {
        let mut payload = Vec::new();
        // The log is read back only by polars: string views go out as they are, not converted to
        // offsets (measured 98 -> 78 ns a reading; the allocator took it to 9, see lib.rs).
        IpcStreamWriter::new(&mut payload)
            .with_compat_level(CompatLevel::newest())
            .finish(&mut frame)?;
        Ok(PreparedBatch { frame, payload })
    }

    fn buffered_rows(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner()).rows
    }

    /// Makes a batch durable; when this returns Ok the batch survives any crash and reads see it.
    pub async fn append(&self, batch: PreparedBatch) -> Result<Lsn, LoggedTableError> {
        if self.buffered_rows() >= self.options.max_buffered_rows {
            self.flush().await?;
        }
        let lsn = self.wal.append(batch.payload, batch.frame).await?;
        if self.buffered_rows() >= self.options.flush_rows {
            self.wake_flusher.notify_one();
        }
        Ok(lsn)
    }

    /// Writes everything acknowledged so far to the table, then drops it from the buffer and log.
    /// A failure (the store out of reach) leaves it all in both, for the next flush.
    pub async fn flush(&self) -> Result<(), LoggedTableError> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let outcome = self.flush_buffered(started).await;
        match &outcome {
            Ok(()) => self.stats.flushes.fetch_add(1, Relaxed),
            Err(_) => self.stats.failures.fetch_add(1, Relaxed),
        };
        let took = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        self.stats.last_micros.store(took, Relaxed);
        outcome
    }

    /// The backlog and flush figures of this table.
    pub async fn health(&self) -> TableHealth {
        use std::sync::atomic::Ordering::Relaxed;
        let (buffered_rows, waiting_since) = {
            let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            (buffer.rows, buffer.waiting_since)
        };
        TableHealth {
            table: self.spec.name,
            buffered_rows,
            oldest_unflushed_s: waiting_since.map_or(0.0, |since| since.elapsed().as_secs_f64()),
            log_bytes: self.wal.bytes(),
            flushes: self.stats.flushes.load(Relaxed),
            flush_failures: self.stats.failures.load(Relaxed),
            last_flush_s: self.stats.last_micros.load(Relaxed) as f64 / 1e6,
            table_version: self.table.version().await,
            compaction_owner: self.compaction.held(),
        }
    }

    async fn flush_buffered(&self, started: std::time::Instant) -> Result<(), LoggedTableError> {
        let _flushing = self.flushing.lock().await;
        let last = self.wal.rotate().await?;
        // A commit whose answer was lost (a timeout, an outage) may have landed all the same: what
        // the table holds under this replica's id is dropped here, never committed twice.
        let committed = self.table.committed_lsn().await?;
        let frames: Vec<DataFrame> = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            let waiting_since = buffer.waiting_since.unwrap_or(started);
            buffer.drop_through(committed, waiting_since);
            buffer
                .batches
                .iter()
                .filter(|(lsn, _)| *lsn <= last)
                .map(|(_, frame)| frame.clone())
                .collect()
        };
        if committed > 0 {
            self.wal.truncate_through(committed.min(last))?;
        }
        if frames.is_empty() {
            return Ok(());
        }
        let spec = self.spec;
        let flushed = frames.clone();
        let files = blocking(move || files_by_date(frames, &spec)).await?;
        let before = match self.caches() {
            true => self.table.files(None).await?,
            false => Vec::new(),
        };
        self.table.append(files, last).await?;
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer.drop_through(last, started);
        }
        self.wal.truncate_through(last)?;
        self.refresh_cache(flushed, &before).await
    }

    /// Folds rows just committed into the cached dates they fall on, so that reads stay warm
    /// while ingest goes on (re-reading a date's files is what a cold read costs).
    async fn refresh_cache(
        &self,
        flushed: Vec<DataFrame>,
        before: &[TableFile],
    ) -> Result<(), LoggedTableError> {
        if !self.caches() {
            return Ok(());
        }
        let time = self.spec.time_column;
        let days = blocking({
            let flushed = flushed.clone();
            move || days_of(&flushed, time)
        })
        .await?;
        let files = self.table.files(None).await?;
        for day in days {
            let date = day_of(day * MICROS_PER_DAY);
            // Rows cached from other files than the date had before this flush are not folded:
            // the next read loads the date afresh.
            let Some(cached) = self
                .lock_cache()
                .get(&date, &file_names(before, &date), None)
            else {
                continue;
            };
            let spec = self.spec;
            let rows = flushed.clone();
            let (frame, ranges) = blocking(move || {
                let mut parts = vec![cached.lazy()];
                parts.extend(rows.into_iter().map(|frame| {
                    frame.lazy().filter(
                        col(time)
                            .gt_eq(instant(day * MICROS_PER_DAY))
                            .and(col(time).lt(instant((day + 1) * MICROS_PER_DAY))),
                    )
                }));
                resolve_for_cache(concat(parts, UnionArgs::default())?, &spec)
            })
            .await?;
            let mut cache = self.lock_cache();
            let now = cache.stamp();
            cache.put(date.clone(), file_names(&files, &date), frame, ranges, now);
        }
        Ok(())
    }

    /// Rewrites each date partition holding `compact_min_files` files or more as one file, re-sent
    /// readings resolved. Returns the number of partitions compacted.
    pub async fn compact(&self) -> Result<usize, LoggedTableError> {
        let _flushing = self.flushing.lock().await;
        let by_date = partitions(self.table.files(None).await?);
        let mut compacted = 0;
        for (date, files) in by_date {
            if files.len() < self.options.compact_min_files.max(2) {
                continue;
            }
            let contents = self.table.read(&files).await?;
            let date_for_file = date.clone();
            let spec = self.spec;
            let new = blocking(move || {
                let Some(scan) = scan_files(contents, &spec)? else {
                    return Ok(Vec::new());
                };
                // In the cache's order: a reader of one key skips other keys' row groups.
                let (mut frame, _) = resolve_for_cache(scan, &spec)?;
                Ok(vec![NewFile {
                    date: date_for_file,
                    rows: frame.height(),
                    parquet: parquet_bytes(&mut frame, ParquetCompression::Zstd(None))?,
                    resolved: true,
                }])
            })
            .await?;
            self.table.replace(&files, new).await?;
            // The compacted file holds what the cached rows already are: rows resolved newest-wins.
            let now = self.table.files(None).await?;
            self.lock_cache()
                .renamed(&date, &file_names(&files, &date), file_names(&now, &date));
            tracing::info!(table = self.spec.name, %date, files = files.len(), "compacted a partition");
            compacted += 1;
        }
        Ok(compacted)
    }

    /// The latest table version (for reports that name what they read).
    pub async fn table_version(&self) -> Option<u64> {
        self.table.version().await
    }

    /// Rows overlapping [from_us, to_us) that match `filter`, newest-wins resolved, at the latest
    /// state (table and buffer) or at a table version.
    pub async fn scan(
        &self,
        from_us: i64,
        to_us: i64,
        key: Option<&str>,
        filter: Option<Expr>,
        version: Option<u64>,
    ) -> Result<LazyFrame, LoggedTableError> {
        let (spec, empty) = (self.spec, self.spec.empty);
        let first_day = day_of(from_us - self.spec.lookback_us);
        let last_day = day_of(to_us - 1);
        // The buffer before the file list: a flush in between then shows its rows twice (newest-
        // wins keeps one), never not at all.
        let buffered = match version {
            None => self.buffered(),
            Some(_) => Vec::new(),
        };
        let files: Vec<TableFile> = self
            .table
            .files(version)
            .await?
            .into_iter()
            .filter(|file| file.date >= first_day && file.date <= last_day)
            .collect();
        let (time, since_us) = (self.spec.time_column, from_us - self.spec.lookback_us);
        let selection = Selection {
            in_range: col(time)
                .gt_eq(instant(since_us))
                .and(col(time).lt(instant(to_us))),
            key: key
                .zip(self.spec.cache_key)
                .map(|(key, column)| col(column).eq(lit(key.to_owned()))),
            filter,
        };
        if version.is_some() || !self.caches() {
            let contents = self.table.read(&files).await?;
            let mut parts: Vec<LazyFrame> = blocking(move || scan_files(contents, &spec))
                .await?
                .into_iter()
                .collect();
            parts.extend(buffered.into_iter().map(IntoLazy::lazy));
            let frame = match parts.len() {
                0 => with_seq(empty()?, 0)?.lazy(),
                _ => concat(parts, UnionArgs::default())?,
            };
            return Ok(newest_wins(selection.apply(frame, true, true), &self.spec));
        }
        // Rows sent again share their time, so only dates that buffered rows fall on need
        // resolving across the table and the buffer; the other dates come resolved from the cache.
        let buffered_dates = blocking({
            let buffered = buffered.clone();
            let time = self.spec.time_column;
            move || dates_of(&buffered, time)
        })
        .await?;
        let by_date = partitions(files);
        let (mut resolved, mut unresolved) = (Vec::new(), Vec::new());
        let mut loaded_rows = 0;
        let since = self.lock_cache().stamp();
        for (date, files) in by_date {
            let partition = match self
                .partition(&date, &files, key, &mut loaded_rows, since)
                .await?
            {
                Some(cached) => cached.lazy(),
                None => {
                    let contents = self.table.read(&files).await?;
                    let Some(scan) = blocking(move || scan_files(contents, &spec)).await? else {
                        continue;
                    };
                    let rows = selection.apply(scan, true, true);
                    if buffered_dates.contains(&date) {
                        unresolved.push(rows);
                    } else if matches!(files.as_slice(), [file] if file.resolved()) {
                        // A compacted date needs no resolving: it streams straight from its file.
                        resolved.push(rows);
                    } else {
                        resolved.push(newest_wins(rows, &self.spec));
                    }
                    continue;
                }
            };
            // A date wholly inside the range needs no time filter: a pass over its rows saved.
            let inside = day_number(&date).is_some_and(|day| {
                day * MICROS_PER_DAY >= since_us && (day + 1) * MICROS_PER_DAY <= to_us
            });
            // Cached dates hand out only the key's rows.
            let partition = selection.apply(partition, !inside, false);
            if buffered_dates.contains(&date) {
                unresolved.push(partition);
            } else {
                resolved.push(partition);
            }
        }
        unresolved.extend(
            buffered
                .into_iter()
                .map(|frame| selection.apply(frame.lazy(), true, true)),
        );
        if !unresolved.is_empty() {
            resolved.push(newest_wins(
                concat(unresolved, UnionArgs::default())?,
                &self.spec,
            ));
        }
        match resolved.len() {
            0 => Ok(with_seq(empty()?, 0)?.lazy()),
            _ => Ok(concat(resolved, UnionArgs::default())?),
        }
    }

    /// Loads the newest dates into the read cache, as much as it holds, so that the first reports
    /// after a start are as fast as later ones. Returns how many dates it cached.
    pub async fn warm_cache(&self) -> Result<usize, LoggedTableError> {
        if !self.caches() {
            return Ok(0);
        }
        let by_date = partitions(self.table.files(None).await?);
        let (mut loaded_rows, mut cached) = (0, 0);
        let since = self.lock_cache().stamp();
        for (date, files) in by_date.iter().rev() {
            match self
                .partition(date, files, None, &mut loaded_rows, since)
                .await?
            {
                Some(_) => cached += 1,
                None => break,
            }
        }
        Ok(cached)
    }

    /// Whether reads keep resolved dates: only tables that resolve rows sent again need to.
    fn caches(&self) -> bool {
        self.spec.identity.is_some() && self.options.cache_rows > 0
    }

    fn buffered(&self) -> Vec<DataFrame> {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer
            .batches
            .iter()
            .map(|(_, frame)| frame.clone())
            .collect()
    }

    /// One date partition resolved newest-wins, from the cache while its files stay the same, or
    /// loaded into it; `None` once this scan has `loaded_rows` enough: read it as it streams.
    async fn partition(
        &self,
        date: &str,
        files: &[TableFile],
        key: Option<&str>,
        loaded_rows: &mut usize,
        since: u64,
    ) -> Result<Option<DataFrame>, LoggedTableError> {
        let names = file_names(files, date);
        if let Some(frame) = self.lock_cache().get(date, &names, key) {
            return Ok(Some(frame));
        }
        // One scan loads at most what the cache holds, and only dates it can keep; it streams
        // the rest. Files' row counts (duplicates included) bound a date's rows.
        let estimate: usize = files.iter().map(|f| f.rows.unwrap_or_default()).sum();
        if *loaded_rows >= self.options.cache_rows || !self.lock_cache().admits(estimate, since) {
            return Ok(None);
        }
        let contents = self.table.read(files).await?;
        let spec = self.spec;
        // A compacted date is resolved already, and in the cache's order: read as it is.
        let compacted = matches!(files, [file] if file.resolved());
        let (frame, ranges) = blocking(move || match scan_files(contents, &spec)? {
            Some(scan) if compacted => cache_entry(scan.collect()?, &spec),
            Some(scan) => resolve_for_cache(scan, &spec),
            None => Ok((with_seq((spec.empty)()?, 0)?, HashMap::new())),
        })
        .await?;
        let wanted = rows_of(&frame, &ranges, key);
        *loaded_rows += frame.height();
        self.lock_cache()
            .put(date.to_owned(), names, frame, ranges, since);
        Ok(Some(wanted))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, PartitionCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes when woken by ingest volume or every `interval`; compacts at most once a minute,
    /// since rewriting partitions after every flush took CPU from ingest and lengthened its p99.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut compacted = tokio::time::Instant::now();
            loop {
                let Some(this) = store.upgrade() else { return };
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = this.wake_flusher.notified() => {}
                }
                if let Err(error) = this.flush().await {
                    tracing::error!(table = this.spec.name, error = %error, "flush failed; the rows stay in the log");
                    continue;
                }
                if compacted.elapsed() < this.options.compaction_interval {
                    continue;
                }
                compacted = tokio::time::Instant::now();
                #[allow(clippy::disallowed_methods)] // lease expiry is wall time between machines
                let now = chrono::Utc::now();
                match this.compaction.acquire(now).await {
                    Ok(true) => {}
                    Ok(false) => continue, // another replica compacts
                    Err(error) => {
                        tracing::warn!(table = this.spec.name, error = %error, "cannot reach the compaction lease; not compacting");
                        continue;
                    }
                }
                if let Err(error) = this.compact().await {
                    tracing::error!(table = this.spec.name, error = %error, "compacting failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reading::ReadingBatch;
    use crate::storage::readings::{self, ENERGY_J, START, WORKLOAD};
    use crate::storage::test_stores::TestStore;

    const T0: i64 = 1_772_355_600_000_000; // 2026-03-01T09:00:00Z

    fn batch(rows: &[(&str, i64, f64)]) -> PreparedBatch {
        batch_of("acme", rows)
    }

    fn batch_of(customer: &str, rows: &[(&str, i64, f64)]) -> PreparedBatch {
        let mut batch = ReadingBatch::default();
        for (workload, start, energy) in rows {
            batch.site.push("fra1");
            batch.customer.push(customer);
            batch.workload.push(workload);
            batch.start_us.push(*start);
            batch.duration_s.push(60);
            batch.energy_j.push(Some(*energy));
            batch.power_w.push(None);
        }
        LoggedTable::prepare(readings::frame(batch).unwrap()).unwrap()
    }

    async fn energies(store: &LoggedTable, version: Option<u64>) -> Vec<(String, f64)> {
        let scan = store
            .scan(
                T0 - 86_400_000_000,
                T0 + 86_400_000_000,
                Some("acme"),
                None,
                version,
            )
            .await
            .unwrap()
            .sort([WORKLOAD, START], SortMultipleOptions::default());
        let frame = blocking(move || scan.collect()).await.unwrap();
        let workloads = frame.column(WORKLOAD).unwrap().str().unwrap().clone();
        let energy = frame.column(ENERGY_J).unwrap().f64().unwrap().clone();
        workloads
            .iter()
            .zip(energy.iter())
            .map(|(w, e)| (w.unwrap().to_owned(), e.unwrap()))
            .collect()
    }

    fn options() -> LoggedTableOptions {
        LoggedTableOptions {
            compact_min_files: 2,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readings_are_readable_before_and_after_a_flush_and_a_resend_replaces() {
        for dir in TestStore::all() {
            let store = open_store(&dir).await;
            store
                .append(batch(&[("api", T0, 100.0), ("db", T0, 5.0)]))
                .await
                .unwrap();
            assert_eq!(
                energies(&store, None).await,
                [("api".into(), 100.0), ("db".into(), 5.0)]
            );
            store.flush().await.unwrap();
            store.append(batch(&[("api", T0, 150.0)])).await.unwrap();
            assert_eq!(
                energies(&store, None).await,
                [("api".into(), 150.0), ("db".into(), 5.0)]
            );
            store.flush().await.unwrap();
            assert_eq!(
                energies(&store, None).await,
                [("api".into(), 150.0), ("db".into(), 5.0)]
            );
        }
    }

    async fn open_with(place: &TestStore, options: LoggedTableOptions) -> Arc<LoggedTable> {
        LoggedTable::open(
            &place.location,
            place.wal(),
            &place.replica,
            readings::SPEC,
            options,
        )
        .await
        .unwrap()
    }

    async fn open_store(dir: &TestStore) -> Arc<LoggedTable> {
        open_with(dir, options()).await
    }

    async fn open_with_cache(dir: &TestStore, cache_rows: usize) -> Arc<LoggedTable> {
        let options = LoggedTableOptions {
            cache_rows,
            ..options()
        };
        open_with(dir, options).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_warms_the_cache_with_the_newest_dates_that_fit() {
        let dir = TestStore::file();
        let day = 86_400_000_000;
        {
            let store = open_store(&dir).await;
            let rows = [("api", T0 - day, 1.0), ("api", T0, 2.0), ("db", T0, 3.0)];
            store.append(batch(&rows)).await.unwrap();
            store.flush().await.unwrap();
            let resent = [("api", T0 - day, 10.0), ("api", T0, 20.0)];
            store.append(batch(&resent)).await.unwrap();
            store.flush().await.unwrap();
            assert_eq!(store.compact().await.unwrap(), 2);
        }
        // Compacted dates are read into the cache as they are: resolved and sorted already.
        for (cache_rows, dates) in [(0, 0), (2, 1), (3, 2)] {
            let store = open_with_cache(&dir, cache_rows).await;
            let warmed = store.warm_cache().await.unwrap();
            assert_eq!(warmed, dates, "cache of {cache_rows} rows");
            let expected = [
                ("api".into(), 10.0),
                ("api".into(), 20.0),
                ("db".into(), 3.0),
            ];
            assert_eq!(energies(&store, None).await, expected, "{cache_rows}");
        }
    }

    #[test]
    fn a_scan_bigger_than_the_cache_keeps_what_it_found_cached() {
        let mut cache = PartitionCache::new(10);
        let rows = |n: i32| df!("customer" => vec!["acme"; n as usize]).unwrap();
        let files = |date: &str| vec![format!("{date}.parquet")];
        let cached = |cache: &PartitionCache| {
            let mut dates: Vec<String> = cache.dates.keys().cloned().collect();
            dates.sort();
            dates
        };
        let scan = cache.stamp();
        for date in ["a", "b"] {
            cache.put(date.into(), files(date), rows(4), HashMap::new(), scan);
        }
        // The next scan reads a, then c: b, unused since, makes room.
        let scan = cache.stamp();
        assert!(cache.get("a", &files("a"), None).is_some());
        cache.put("c".into(), files("c"), rows(4), HashMap::new(), scan);
        assert_eq!(cached(&cache), ["a", "c"]);
        // A scan of a, c and d: d would push out a date of this very scan, so it is not cached.
        let scan = cache.stamp();
        assert!(cache.get("a", &files("a"), None).is_some());
        assert!(cache.get("c", &files("c"), None).is_some());
        cache.put("d".into(), files("d"), rows(4), HashMap::new(), scan);
        assert_eq!(cached(&cache), ["a", "c"]);
        assert_eq!(cache.rows, 8);
        // Files changed: the old rows are not handed out.
        assert!(cache.get("a", &files("a2"), None).is_none());
        // Larger than the whole cache: nothing is evicted for it.
        let scan = cache.stamp();
        cache.put("e".into(), files("e"), rows(11), HashMap::new(), scan);
        assert_eq!(cached(&cache), ["a", "c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_dates_give_way_to_resends_flushes_and_compaction_at_any_cache_size() {
        const NEXT_DAY: i64 = T0 + 16 * 3_600_000_000; // 2026-03-02T01:00:00Z
        for cache_rows in [0, 1, 1_000] {
            let dir = TestStore::file();
            let store = open_with_cache(&dir, cache_rows).await;
            store
                .append(batch(&[("api", T0, 100.0), ("db", NEXT_DAY, 5.0)]))
                .await
                .unwrap();
            // Another customer's rows around acme's in the sorted cache: never read for acme.
            for customer in ["aaa", "zzz"] {
                let rows = [("api", T0, 1.0), ("db", NEXT_DAY, 2.0), ("web", T0, 3.0)];
                store.append(batch_of(customer, &rows)).await.unwrap();
            }
            store.flush().await.unwrap();
            let files = store.table.files(None).await.unwrap();
            // Day 1: api of acme, aaa and zzz, web of aaa and zzz; day 2: db of all three.
            let mut rows: Vec<_> = files.iter().map(|f| f.rows).collect();
            rows.sort();
            assert_eq!(rows, [Some(3), Some(5)], "row counts from the statistics");
            let flushed = [("api".into(), 100.0), ("db".into(), 5.0)];
            assert_eq!(energies(&store, None).await, flushed, "{cache_rows}");
            assert_eq!(energies(&store, None).await, flushed, "{cache_rows}");
            // Only the next day is in the buffer; the first comes from the cache as it was.
            store.append(batch(&[("db", NEXT_DAY, 7.0)])).await.unwrap();
            let resent = [("api".into(), 100.0), ("db".into(), 7.0)];
            assert_eq!(energies(&store, None).await, resent, "{cache_rows}");
            store.flush().await.unwrap();
            assert_eq!(energies(&store, None).await, resent, "{cache_rows}");
            store.append(batch(&[("api", T0, 110.0)])).await.unwrap();
            store.flush().await.unwrap();
            let again = [("api".into(), 110.0), ("db".into(), 7.0)];
            assert_eq!(energies(&store, None).await, again, "{cache_rows}");
            assert_eq!(store.compact().await.unwrap(), 2, "{cache_rows}");
            assert_eq!(energies(&store, None).await, again, "{cache_rows}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_replays_what_was_not_flushed_and_never_commits_twice() {
        for dir in TestStore::all() {
            {
                let store = open_store(&dir).await;
                store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
                store.flush().await.unwrap();
                store.append(batch(&[("db", T0, 2.0)])).await.unwrap();
            }
            let store = open_store(&dir).await;
            assert_eq!(
                energies(&store, None).await,
                [("api".into(), 1.0), ("db".into(), 2.0)]
            );
            store.flush().await.unwrap();
            drop(store);
            let store = open_store(&dir).await;
            assert_eq!(store.buffered_rows(), 0);
            let files = store.table.files(None).await.unwrap();
            assert_eq!(files.len(), 2, "one file per flush, none replayed twice");
            assert_eq!(
                energies(&store, None).await,
                [("api".into(), 1.0), ("db".into(), 2.0)]
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_keeps_the_newest_reading_and_old_versions_stay_readable() {
        for dir in TestStore::all() {
            let store = open_store(&dir).await;
            store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
            store.flush().await.unwrap();
            let first = store.table_version().await.unwrap();
            store.append(batch(&[("api", T0, 7.0)])).await.unwrap();
            store.flush().await.unwrap();
            assert_eq!(store.compact().await.unwrap(), 1);
            assert_eq!(store.table.files(None).await.unwrap().len(), 1);
            assert_eq!(energies(&store, None).await, [("api".into(), 7.0)]);
            assert_eq!(energies(&store, Some(first)).await, [("api".into(), 1.0)]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reading_is_filed_under_the_utc_date_of_its_start() {
        let dir = TestStore::file();
        let store = open_store(&dir).await;
        let late = T0 + 15 * 3_600_000_000 - 1; // 2026-03-01T23:59:59.999999Z
        store
            .append(batch(&[("a", late, 1.0), ("b", late + 1, 1.0)]))
            .await
            .unwrap();
        store.flush().await.unwrap();
        let mut dates: Vec<String> = store
            .table
            .files(None)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.date)
            .collect();
        dates.sort();
        assert_eq!(dates, ["2026-03-01", "2026-03-02"]);
    }
}
