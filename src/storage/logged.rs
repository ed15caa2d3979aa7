//! A logged table: write-ahead log in front, a buffer of acknowledged batches, and a Delta table
//! behind, filled by a flusher. Reads see the table and the buffer together; tables with an identity
//! resolve rows sent again newest-wins by the order they were logged (`seq`). Readings and
//! intensity points are both stored this way (`TableSpec`).
use super::table::{NewFile, Table, TableError, TableFile};
use super::wal::{Lsn, Wal};
use bytes::Bytes;
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Log order of a row: lsn << 20 | row in batch. The highest wins among rows sent again.
pub const SEQ: &str = "seq";
/// Rows per batch are below 2^20, so `seq` orders batches first, then rows within a batch.
pub const MAX_ROWS_PER_BATCH: usize = 1 << 20;
const MICROS_PER_DAY: i64 = 86_400_000_000;
const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// What distinguishes one logged table from another.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Directory name under `tables/` and `wal/`.
    pub name: &'static str,
    /// The Delta schema, without `seq` and the date partition.
    pub columns: fn() -> Vec<StructField>,
    /// The UTC instant that files are partitioned and scans filtered by.
    pub time_column: &'static str,
    /// Rows with equal values here replace each other, newest wins; `None` keeps every row.
    pub identity: Option<&'static [&'static str]>,
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
}

impl Default for LoggedTableOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            flush_rows: 1_000_000,
            max_buffered_rows: 4_000_000,
            compact_min_files: 8,
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
}

pub struct LoggedTable {
    spec: TableSpec,
    wal: Wal<DataFrame>,
    buffer: Arc<Mutex<Buffer>>,
    table: Table,
    flushing: tokio::sync::Mutex<()>,
    wake_flusher: Notify,
    options: LoggedTableOptions,
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

fn parquet_bytes(frame: &mut DataFrame) -> PolarsResult<Bytes> {
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(frame)?;
    Ok(Bytes::from(out))
}

fn day_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
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
            parquet: parquet_bytes(&mut part)?,
        });
    }
    Ok(files)
}

fn local_paths(table: &Table, files: &[TableFile]) -> Vec<PathBuf> {
    files
        .iter()
        .filter_map(|file| table.local_path(&file.path))
        .collect()
}

fn scan_files(paths: Vec<PathBuf>) -> PolarsResult<Option<LazyFrame>> {
    let paths: Vec<PlRefPath> = paths
        .iter()
        .map(|path| PlRefPath::new(path.to_string_lossy().as_ref()))
        .collect();
    if paths.is_empty() {
        return Ok(None);
    }
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), args).map(Some)
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
    /// Opens the table under `data_dir/tables/<name>` and replays the log past its last commit.
    pub async fn open(
        data_dir: &Path,
        spec: TableSpec,
        options: LoggedTableOptions,
    ) -> Result<Arc<Self>, LoggedTableError> {
        let table_dir = std::path::absolute(data_dir.join("tables").join(spec.name))?;
        std::fs::create_dir_all(&table_dir)?;
        let url = url::Url::from_directory_path(&table_dir)
            .map_err(|()| TableError::Location(table_dir.display().to_string()))?;
        let mut columns = (spec.columns)();
        columns.push(StructField::new(SEQ, DeltaType::LONG, false));
        let app_id = format!("carbon-ledger-{}-wal", spec.name);
        let table = Table::open(url, &app_id, columns).await?;
        let committed = table.committed_lsn().await?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let sink = buffer.clone();
        let (wal, recovered) = Wal::open(
            &data_dir.join("wal").join(spec.name),
            committed,
            options.fsync,
            move |lsn, frame: DataFrame| match with_seq(frame, lsn) {
                Ok(frame) => {
                    let mut buffer = sink.lock().unwrap_or_else(|p| p.into_inner());
                    buffer.rows += frame.height();
                    buffer.batches.push((lsn, frame));
                }
                // Durable in the log, so the next start replays it; reads miss it until then.
                Err(error) => tracing::error!(lsn, error = %error, "cannot buffer a logged batch"),
            },
        )?;
        {
            let mut buffer = buffer.lock().unwrap_or_else(|p| p.into_inner());
            for record in &recovered {
                let frame = with_seq(decode_payload(&record.payload)?, record.lsn)?;
                buffer.rows += frame.height();
                buffer.batches.push((record.lsn, frame));
            }
        }
        if !recovered.is_empty() {
            tracing::info!(
                batches = recovered.len(),
                committed_lsn = committed,
                "replayed the readings log"
            );
        }
        Ok(Arc::new(Self {
            spec,
            wal,
            buffer,
            table,
            flushing: tokio::sync::Mutex::new(()),
            wake_flusher: Notify::new(),
            options,
        }))
    }

    /// Encodes a batch (the spec's columns, without `seq`) for the log. CPU work: call it off the
    /// async executor.
    pub fn prepare(mut frame: DataFrame) -> Result<PreparedBatch, LoggedTableError> {
        let mut payload = Vec::new();
        IpcStreamWriter::new(&mut payload).finish(&mut frame)?;
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
    pub async fn flush(&self) -> Result<(), LoggedTableError> {
        let _flushing = self.flushing.lock().await;
        let last = self.wal.rotate().await?;
        let frames: Vec<DataFrame> = {
            let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer
                .batches
                .iter()
                .filter(|(lsn, _)| *lsn <= last)
                .map(|(_, frame)| frame.clone())
                .collect()
        };
        if frames.is_empty() {
            return Ok(());
        }
        let spec = self.spec;
        let files = blocking(move || files_by_date(frames, &spec)).await?;
        self.table.append(files, last).await?;
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer.batches.retain(|(lsn, _)| *lsn > last);
            buffer.rows = buffer.batches.iter().map(|(_, f)| f.height()).sum();
        }
        self.wal.truncate_through(last)?;
        Ok(())
    }

    /// Rewrites each date partition holding `compact_min_files` files or more as one file, re-sent
    /// readings resolved. Returns the number of partitions compacted.
    pub async fn compact(&self) -> Result<usize, LoggedTableError> {
        let _flushing = self.flushing.lock().await;
        let mut by_date: BTreeMap<String, Vec<TableFile>> = BTreeMap::new();
        for file in self.table.files(None).await? {
            by_date.entry(file.date.clone()).or_default().push(file);
        }
        let mut compacted = 0;
        for (date, files) in by_date {
            if files.len() < self.options.compact_min_files.max(2) {
                continue;
            }
            let paths = local_paths(&self.table, &files);
            let date_for_file = date.clone();
            let spec = self.spec;
            let new = blocking(move || {
                let Some(scan) = scan_files(paths)? else {
                    return Ok(Vec::new());
                };
                let mut frame = newest_wins(scan, &spec).collect()?;
                Ok(vec![NewFile {
                    date: date_for_file,
                    rows: frame.height(),
                    parquet: parquet_bytes(&mut frame)?,
                }])
            })
            .await?;
            self.table.replace(&files, new).await?;
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
    /// state (table and buffer) or at a table version. `empty` gives the schema when nothing is
    /// stored yet.
    pub async fn scan(
        &self,
        from_us: i64,
        to_us: i64,
        filter: Option<Expr>,
        version: Option<u64>,
        empty: fn() -> PolarsResult<DataFrame>,
    ) -> Result<LazyFrame, LoggedTableError> {
        let first_day = day_of(from_us - self.spec.lookback_us);
        let last_day = day_of(to_us - 1);
        let files: Vec<TableFile> = self
            .table
            .files(version)
            .await?
            .into_iter()
            .filter(|file| file.date >= first_day && file.date <= last_day)
            .collect();
        let paths = local_paths(&self.table, &files);
        let mut parts: Vec<LazyFrame> = blocking(move || scan_files(paths))
            .await?
            .into_iter()
            .collect();
        if version.is_none() {
            let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            parts.extend(buffer.batches.iter().map(|(_, frame)| frame.clone().lazy()));
        }
        let mut frame = match parts.len() {
            0 => with_seq(empty()?, 0)?.lazy(),
            _ => concat(parts, UnionArgs::default())?,
        };
        let time = self.spec.time_column;
        frame = frame.filter(
            col(time)
                .gt_eq(instant(from_us - self.spec.lookback_us))
                .and(col(time).lt(instant(to_us))),
        );
        if let Some(filter) = filter {
            frame = frame.filter(filter);
        }
        Ok(newest_wins(frame, &self.spec))
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
                    tracing::error!(error = %error, "flushing readings failed; they stay in the log");
                    continue;
                }
                if compacted.elapsed() < COMPACTION_INTERVAL {
                    continue;
                }
                compacted = tokio::time::Instant::now();
                if let Err(error) = this.compact().await {
                    tracing::error!(error = %error, "compacting readings failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reading::ReadingBatch;
    use crate::storage::readings::{self, CUSTOMER, ENERGY_J, START, WORKLOAD};

    const T0: i64 = 1_772_355_600_000_000; // 2026-03-01T09:00:00Z

    fn batch(rows: &[(&str, i64, f64)]) -> PreparedBatch {
        let mut batch = ReadingBatch::default();
        for (workload, start, energy) in rows {
            batch.site.push("fra1");
            batch.customer.push("acme");
            batch.workload.push(workload);
            batch.start_us.push(*start);
            batch.duration_s.push(60);
            batch.energy_j.push(Some(*energy));
            batch.power_w.push(None);
        }
        LoggedTable::prepare(readings::frame(batch).unwrap()).unwrap()
    }

    async fn energies(store: &LoggedTable, version: Option<u64>) -> Vec<(String, f64)> {
        let acme = col(CUSTOMER).eq(lit("acme"));
        let scan = store
            .scan(
                T0 - 86_400_000_000,
                T0 + 86_400_000_000,
                Some(acme),
                version,
                readings::empty,
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
        let dir = tempfile::tempdir().unwrap();
        let store = LoggedTable::open(dir.path(), readings::SPEC, options())
            .await
            .unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_replays_what_was_not_flushed_and_never_commits_twice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LoggedTable::open(dir.path(), readings::SPEC, options())
                .await
                .unwrap();
            store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
            store.flush().await.unwrap();
            store.append(batch(&[("db", T0, 2.0)])).await.unwrap();
        }
        let store = LoggedTable::open(dir.path(), readings::SPEC, options())
            .await
            .unwrap();
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 1.0), ("db".into(), 2.0)]
        );
        store.flush().await.unwrap();
        drop(store);
        let store = LoggedTable::open(dir.path(), readings::SPEC, options())
            .await
            .unwrap();
        assert_eq!(store.buffered_rows(), 0);
        let files = store.table.files(None).await.unwrap();
        assert_eq!(files.len(), 2, "one file per flush, none replayed twice");
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 1.0), ("db".into(), 2.0)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_keeps_the_newest_reading_and_old_versions_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoggedTable::open(dir.path(), readings::SPEC, options())
            .await
            .unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reading_is_filed_under_the_utc_date_of_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoggedTable::open(dir.path(), readings::SPEC, options())
            .await
            .unwrap();
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
