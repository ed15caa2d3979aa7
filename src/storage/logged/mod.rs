//! A logged table: write-ahead log in front, a buffer of acknowledged batches, and a Delta table
//! behind, filled by a flusher. Reads see the table and the buffer together; tables with an identity
//! resolve rows sent again newest-wins by the order they were logged (`seq`). Readings and
//! intensity points are both stored this way (`TableSpec`).
mod cache;
mod files;
mod flush;
mod scan;
#[cfg(test)]
mod tests;

use super::decoded::DecodedFiles;
use super::lease::Lease;
use super::location::Location;
use super::replica::Replica;
use super::table::{NewFile, Table, TableError, TableFile};
use super::wal::{Lsn, Wal};
use bytes::Bytes;
use cache::*;
use deltalake::kernel::{DataType as DeltaType, StructField};
use files::*;
pub(crate) use files::{parquet_bytes, partitions, read_all_whole, reads_whole_files};
pub(crate) use files::{scan_parquet, stacked};
pub use flush::TableHealth;
use flush::*;
use polars::prelude::*;
pub use scan::Dates;
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
    /// Small files kept decoded (shared by all tables; see `decoded`).
    pub decoded: Arc<DecodedFiles>,
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
            decoded: Arc::new(DecodedFiles::new(0)),
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
    /// The newest batch this replica acknowledged (0: none since it started).
    acknowledged: std::sync::atomic::AtomicU64,
    /// Woken when a flush or compaction changed the table's files.
    committed: Notify,
}

pub fn utc_micros() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// A literal instant comparable with the `start` column.
pub fn instant(us: i64) -> Expr {
    lit(us).cast(utc_micros())
}

/// One text field of each record as a column named `name`.
pub fn texts<T>(name: &str, records: &[T], field: fn(&T) -> &str) -> Column {
    Column::new(
        name.into(),
        records.iter().map(field).collect::<Vec<&str>>(),
    )
}

/// One number field of each record as a column named `name`.
pub fn numbers<T, N>(name: &str, records: &[T], field: fn(&T) -> N) -> Column
where
    Series: NamedFrom<Vec<N>, [N]>,
{
    Column::new(name.into(), records.iter().map(field).collect::<Vec<N>>())
}

/// Microsecond instants as a column of UTC timestamps named `name`.
pub fn instants(name: &str, values: impl Iterator<Item = i64>) -> PolarsResult<Column> {
    Column::new(name.into(), values.collect::<Vec<i64>>()).cast(&utc_micros())
}

/// Runs polars work on the blocking pool (polars must never run on an async executor thread),
/// then gives back the memory the thread holds free.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> PolarsResult<T> + Send + 'static,
) -> Result<T, LoggedTableError> {
    blocking_request(move || crate::allocator::released_after(work).map_err(LoggedTableError::from))
        .await
}

/// Runs one request's own polars work (a frame of its rows, prepared for the log) on the blocking
/// pool, keeping the memory it freed for the next request: such work is small, and giving memory
/// back after each request (which purges what every thread freed) made the next ones fault their
/// pages in again, an eighth of remote-write's profile.
pub async fn blocking_request<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoggedTableError> + Send + 'static,
) -> Result<T, LoggedTableError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoggedTableError::Task(e.to_string()))?
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
            acknowledged: Default::default(),
            committed: Notify::new(),
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

    /// Whether nothing was ever committed or is waiting to be: a read would find no row, so a
    /// caller can skip the read (reports skip usage where no workload is modelled).
    pub async fn is_empty(&self) -> bool {
        self.buffered_rows() == 0 && self.table_version().await.is_none()
    }

    /// Makes a batch durable; when this returns Ok the batch survives any crash and reads see it.
    pub async fn append(&self, batch: PreparedBatch) -> Result<Lsn, LoggedTableError> {
        self.make_room().await?;
        self.submit(batch)?.await
    }

    /// Flushes first when the rows waiting for a flush are at their bound.
    pub async fn make_room(&self) -> Result<(), LoggedTableError> {
        if self.buffered_rows() >= self.options.max_buffered_rows {
            self.flush().await?;
        }
        Ok(())
    }

    /// Puts `batch` in the log now, ahead of every batch submitted after this call (newest-wins
    /// follows that order); the returned future resolves once it is durable. Call `make_room`
    /// before.
    pub fn submit(
        &self,
        batch: PreparedBatch,
    ) -> Result<
        impl std::future::Future<Output = Result<Lsn, LoggedTableError>> + '_,
        LoggedTableError,
    > {
        let durable = self.wal.submit(batch.payload, batch.frame)?;
        Ok(async move {
            let lsn = durable.await?;
            self.acknowledged
                .fetch_max(lsn, std::sync::atomic::Ordering::Release);
            if self.buffered_rows() >= self.options.flush_rows {
                self.wake_flusher.notify_one();
            }
            Ok(lsn)
        })
    }

    /// The newest batch this replica acknowledged since it started: with `table_version`, it
    /// changes whenever what a read would see changes (other replicas' writes show as versions).
    pub fn acknowledged(&self) -> Lsn {
        self.acknowledged.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until a flush or compaction of this replica changes the table's files (at once if
    /// one did since the last wait).
    pub async fn committed(&self) {
        self.committed.notified().await
    }

    /// The latest table version (for reports that name what they read).
    pub async fn table_version(&self) -> Option<u64> {
        self.table.version().await
    }
}
