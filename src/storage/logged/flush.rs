//! The buffer of acknowledged batches, and moving it into the table: flushes, compaction, the
//! flusher task, and the figures operators watch.
use super::*;

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) batches: Vec<(Lsn, DataFrame)>,
    pub(super) rows: usize,
    /// No batch waiting is older than this (for the backlog's age).
    pub(super) waiting_since: Option<std::time::Instant>,
}

impl Buffer {
    pub(super) fn push(&mut self, lsn: Lsn, frame: DataFrame) {
        self.rows += frame.height();
        self.waiting_since
            .get_or_insert_with(std::time::Instant::now);
        self.batches.push((lsn, frame));
    }

    /// Keeps the batches after `lsn`; they arrived after `since` at the earliest.
    pub(super) fn drop_through(&mut self, lsn: Lsn, since: std::time::Instant) {
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
    /// Commit rounds lost to other replicas' commits (each retried after a pause).
    pub contended_commits: u64,
}

#[derive(Default)]
pub(super) struct FlushStats {
    pub(super) flushes: std::sync::atomic::AtomicU64,
    pub(super) failures: std::sync::atomic::AtomicU64,
    pub(super) last_micros: std::sync::atomic::AtomicU64,
}

impl LoggedTable {
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
            contended_commits: self.table.contended_commits(),
        }
    }

    pub(super) async fn flush_buffered(
        &self,
        started: std::time::Instant,
    ) -> Result<(), LoggedTableError> {
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
        self.committed.notify_one();
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer.drop_through(last, started);
        }
        self.wal.truncate_through(last)?;
        self.refresh_cache(flushed, &before).await
    }

    /// Folds rows just committed into the cached dates they fall on, so that reads stay warm
    /// while ingest goes on (re-reading a date's files is what a cold read costs).
    pub(super) async fn refresh_cache(
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
            // This flush added one file to the date. Any other change (another replica's commit
            // in between) means the date holds rows the cache has never seen: read it afresh.
            let (had, has) = (file_names(before, &date), file_names(&files, &date));
            if has.len() != had.len() + 1 || !had.iter().all(|name| has.contains(name)) {
                self.lock_cache().forget(&date);
                continue;
            }
            // Rows cached from other files than the date had before this flush are not folded:
            // the next read loads the date afresh.
            let Some(cached) = self.lock_cache().get(&date, &had, None) else {
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
                    source: None,
                }])
            })
            .await?;
            self.table.replace(&files, new).await?;
            self.committed.notify_one();
            let now = file_names(&self.table.files(None).await?, &date);
            let mut cache = self.lock_cache();
            match now.len() {
                // Only the compacted file: it holds what the cached rows already are.
                1 => cache.renamed(&date, &file_names(&files, &date), now),
                // Another replica added to the date meanwhile: rows the cache has not seen.
                _ => cache.forget(&date),
            }
            drop(cache);
            tracing::info!(table = self.spec.name, %date, files = files.len(), "compacted a partition");
            compacted += 1;
        }
        Ok(compacted)
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
