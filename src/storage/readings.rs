//! The reading store: write-ahead log in front, a buffer of acknowledged batches, and the Delta table
//! behind, filled by a flusher. Reads see the table and the buffer together, re-sent readings
//! resolved newest-wins by the order they were logged (`seq`).
use super::table::{NewFile, Table, TableError, TableFile};
use super::wal::{Lsn, Wal};
use crate::domain::reading::ReadingBatch;
use bytes::Bytes;
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub const SITE: &str = "site";
pub const CUSTOMER: &str = "customer";
pub const WORKLOAD: &str = "workload";
pub const START: &str = "start";
pub const DURATION_S: &str = "duration_s";
pub const ENERGY_J: &str = "energy_j";
pub const POWER_W: &str = "power_w";
/// Log order of a reading: lsn << 20 | row in batch. The highest wins among re-sent readings.
pub const SEQ: &str = "seq";
pub const IDENTITY: [&str; 4] = [CUSTOMER, WORKLOAD, SITE, START];
/// Rows per batch are below 2^20, so `seq` orders batches first, then rows within a batch.
pub const MAX_ROWS_PER_BATCH: usize = 1 << 20;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Readings last at most an hour, so a reading overlapping [from, to) starts after from - 1 h.
const LOOKBACK_US: i64 = 3_600_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ReadingStoreError {
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
pub struct ReadingStoreOptions {
    /// fsync the log before acknowledging (off only for benchmarks).
    pub fsync: bool,
    /// The flusher runs early once this many rows wait in the buffer.
    pub flush_rows: usize,
    /// Ingest waits for a flush beyond this many buffered rows: memory stays bounded.
    pub max_buffered_rows: usize,
    /// A date partition with this many files or more is compacted into one.
    pub compact_min_files: usize,
}

impl Default for ReadingStoreOptions {
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

pub struct ReadingStore {
    wal: Wal<DataFrame>,
    buffer: Arc<Mutex<Buffer>>,
    table: Table,
    flushing: tokio::sync::Mutex<()>,
    wake_flusher: Notify,
    options: ReadingStoreOptions,
}

fn delta_columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(CUSTOMER, DeltaType::STRING, false),
        StructField::new(WORKLOAD, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(DURATION_S, DeltaType::INTEGER, false),
        StructField::new(ENERGY_J, DeltaType::DOUBLE, true),
        StructField::new(POWER_W, DeltaType::DOUBLE, true),
        StructField::new(SEQ, DeltaType::LONG, false),
    ]
}

fn utc_micros() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// A literal instant comparable with the `start` column.
pub fn instant(us: i64) -> Expr {
    lit(us).cast(utc_micros())
}

fn batch_frame(batch: ReadingBatch) -> PolarsResult<DataFrame> {
    let height = batch.len();
    let start = Column::new(START.into(), batch.start_us).cast(&utc_micros())?;
    DataFrame::new(
        height,
        vec![
            Column::new(SITE.into(), batch.site),
            Column::new(CUSTOMER.into(), batch.customer),
            Column::new(WORKLOAD.into(), batch.workload),
            start,
            Column::new(DURATION_S.into(), batch.duration_s),
            Column::new(ENERGY_J.into(), batch.energy_j),
            Column::new(POWER_W.into(), batch.power_w),
        ],
    )
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

/// Keeps the newest of re-sent readings.
fn newest_wins(frame: LazyFrame) -> LazyFrame {
    frame
        .sort([SEQ], SortMultipleOptions::default())
        .unique_stable(Some(cols(IDENTITY)), UniqueKeepStrategy::Last)
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

/// One Parquet file per UTC date of `start`, each resolved newest-wins.
fn files_by_date(frames: Vec<DataFrame>) -> PolarsResult<Vec<NewFile>> {
    let lazies: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
    let all = newest_wins(concat(lazies, UnionArgs::default())?).collect()?;
    let starts = all.column(START)?.datetime()?.physical().clone();
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

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> PolarsResult<T> + Send + 'static,
) -> Result<T, ReadingStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ReadingStoreError::Task(e.to_string()))?
        .map_err(ReadingStoreError::from)
}

impl ReadingStore {
    /// Opens the table under `data_dir/tables/readings` and replays the log past its last commit.
    pub async fn open(
        data_dir: &Path,
        options: ReadingStoreOptions,
    ) -> Result<Arc<Self>, ReadingStoreError> {
        let table_dir = std::path::absolute(data_dir.join("tables").join("readings"))?;
        std::fs::create_dir_all(&table_dir)?;
        let url = url::Url::from_directory_path(&table_dir)
            .map_err(|()| TableError::Location(table_dir.display().to_string()))?;
        let table = Table::open(url, "carbon-ledger-readings-wal", delta_columns()).await?;
        let committed = table.committed_lsn().await?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let sink = buffer.clone();
        let (wal, recovered) = Wal::open(
            &data_dir.join("wal").join("readings"),
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
            wal,
            buffer,
            table,
            flushing: tokio::sync::Mutex::new(()),
            wake_flusher: Notify::new(),
            options,
        }))
    }

    /// Encodes a validated batch for the log (CPU work: call it off the async executor).
    pub fn prepare(batch: ReadingBatch) -> Result<PreparedBatch, ReadingStoreError> {
        let mut frame = batch_frame(batch)?;
        let mut payload = Vec::new();
        IpcStreamWriter::new(&mut payload).finish(&mut frame)?;
        Ok(PreparedBatch { frame, payload })
    }

    fn buffered_rows(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner()).rows
    }

    /// Makes a batch durable; when this returns Ok the batch survives any crash and reads see it.
    pub async fn append(&self, batch: PreparedBatch) -> Result<Lsn, ReadingStoreError> {
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
    pub async fn flush(&self) -> Result<(), ReadingStoreError> {
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
        let files = blocking(move || files_by_date(frames)).await?;
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
    pub async fn compact(&self) -> Result<usize, ReadingStoreError> {
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
            let new = blocking(move || {
                let Some(scan) = scan_files(paths)? else {
                    return Ok(Vec::new());
                };
                let mut frame = newest_wins(scan).collect()?;
                Ok(vec![NewFile {
                    date: date_for_file,
                    rows: frame.height(),
                    parquet: parquet_bytes(&mut frame)?,
                }])
            })
            .await?;
            self.table.replace(&files, new).await?;
            tracing::info!(%date, files = files.len(), "compacted a readings partition");
            compacted += 1;
        }
        Ok(compacted)
    }

    /// The latest table version (for reports that name what they read).
    pub async fn table_version(&self) -> Option<u64> {
        self.table.version().await
    }

    /// Readings overlapping [from_us, to_us) (and of one customer), newest-wins resolved, at the
    /// latest state (table and buffer) or at a table version.
    pub async fn scan(
        &self,
        from_us: i64,
        to_us: i64,
        customer: Option<&str>,
        version: Option<u64>,
    ) -> Result<LazyFrame, ReadingStoreError> {
        let first_day = day_of(from_us - LOOKBACK_US);
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
            0 => batch_frame(ReadingBatch::default())?
                .lazy()
                .with_column(lit(0i64).alias(SEQ)),
            _ => concat(parts, UnionArgs::default())?,
        };
        frame = frame.filter(
            col(START)
                .gt_eq(instant(from_us - LOOKBACK_US))
                .and(col(START).lt(instant(to_us))),
        );
        if let Some(customer) = customer {
            frame = frame.filter(col(CUSTOMER).eq(lit(customer.to_owned())));
        }
        Ok(newest_wins(frame))
    }

    /// Flushes when woken by ingest volume or every `interval`, and compacts after each flush.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
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

    const T0: i64 = 1_772_355_600_000_000; // 2026-03-01T09:00:00Z

    fn batch(rows: &[(&str, i64, f64)]) -> PreparedBatch {
        let mut batch = ReadingBatch::default();
        for (workload, start, energy) in rows {
            batch.site.push("fra1".into());
            batch.customer.push("acme".into());
            batch.workload.push((*workload).into());
            batch.start_us.push(*start);
            batch.duration_s.push(60);
            batch.energy_j.push(Some(*energy));
            batch.power_w.push(None);
        }
        ReadingStore::prepare(batch).unwrap()
    }

    async fn energies(store: &ReadingStore, version: Option<u64>) -> Vec<(String, f64)> {
        let scan = store
            .scan(
                T0 - 86_400_000_000,
                T0 + 86_400_000_000,
                Some("acme"),
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

    fn options() -> ReadingStoreOptions {
        ReadingStoreOptions {
            compact_min_files: 2,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readings_are_readable_before_and_after_a_flush_and_a_resend_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReadingStore::open(dir.path(), options()).await.unwrap();
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
            let store = ReadingStore::open(dir.path(), options()).await.unwrap();
            store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
            store.flush().await.unwrap();
            store.append(batch(&[("db", T0, 2.0)])).await.unwrap();
        }
        let store = ReadingStore::open(dir.path(), options()).await.unwrap();
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 1.0), ("db".into(), 2.0)]
        );
        store.flush().await.unwrap();
        drop(store);
        let store = ReadingStore::open(dir.path(), options()).await.unwrap();
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
        let store = ReadingStore::open(dir.path(), options()).await.unwrap();
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
        let store = ReadingStore::open(dir.path(), options()).await.unwrap();
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
