//! Reads: the table and the buffer together, through the read cache.
use super::*;

/// The rows of `frames` falling on `dates` (`only`) or on none of them.
fn on_dates(
    frames: Vec<DataFrame>,
    time: &str,
    dates: &[String],
    only: bool,
) -> PolarsResult<Vec<DataFrame>> {
    let days: BTreeSet<i64> = dates.iter().filter_map(|d| day_number(d)).collect();
    frames
        .into_iter()
        .map(|frame| {
            let mask: BooleanChunked = (frame.column(time)?.datetime()?.physical().iter())
                .map(|us| days.contains(&us.unwrap_or_default().div_euclid(MICROS_PER_DAY)) == only)
                .collect();
            frame.filter(&mask)
        })
        .collect()
}

/// What a scan keeps: rows in its time range, of one value of the spec's `cache_key` if asked,
/// and matching its filter if any.
pub(super) struct Selection {
    pub(super) in_range: Expr,
    pub(super) key: Option<Expr>,
    pub(super) filter: Option<Expr>,
}

impl Selection {
    /// `frame` filtered by the parts that it may not already satisfy, in one pass.
    pub(super) fn apply(&self, frame: LazyFrame, check_time: bool, check_key: bool) -> LazyFrame {
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

/// Which date partitions a scan reads (rows of the buffer too, by the date they fall on).
#[derive(Debug, Clone, Copy)]
pub enum Dates<'a> {
    All,
    Only(&'a BTreeSet<String>),
    Except(&'a BTreeSet<String>),
}

impl Dates<'_> {
    fn admits(&self, date: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(dates) => dates.contains(date),
            Self::Except(dates) => !dates.contains(date),
        }
    }
}

impl LoggedTable {
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
        self.scan_dates(from_us, to_us, (key, filter), version, Dates::All)
            .await
    }

    /// The table's files by date partition, at the latest version or at `version`.
    pub async fn date_files(
        &self,
        version: Option<u64>,
    ) -> Result<BTreeMap<String, Vec<TableFile>>, LoggedTableError> {
        Ok(partitions(self.table.files(version).await?))
    }

    /// The dates that rows acknowledged but not yet in the table fall on.
    pub async fn buffered_dates(&self) -> Result<BTreeSet<String>, LoggedTableError> {
        let (buffered, time) = (self.buffered(), self.spec.time_column);
        blocking(move || dates_of(&buffered, time)).await
    }

    /// The rows of `files` (one date's), newest-wins resolved.
    pub async fn read_resolved(&self, files: &[TableFile]) -> Result<DataFrame, LoggedTableError> {
        let contents = self.table.read(files).await?;
        let spec = self.spec;
        blocking(move || match scan_files(contents, &spec)? {
            Some(scan) => newest_wins(scan, &spec).collect(),
            None => with_seq((spec.empty)()?, 0),
        })
        .await
    }

    /// `scan` of the date partitions `dates` admits only.
    pub async fn scan_dates(
        &self,
        from_us: i64,
        to_us: i64,
        (key, filter): (Option<&str>, Option<Expr>),
        version: Option<u64>,
        dates: Dates<'_>,
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
        let buffered = match dates {
            Dates::All => buffered,
            _ => {
                let time = self.spec.time_column;
                let owned: Vec<String> = match dates {
                    Dates::Only(set) | Dates::Except(set) => set.iter().cloned().collect(),
                    Dates::All => Vec::new(),
                };
                let only = matches!(dates, Dates::Only(_));
                blocking(move || on_dates(buffered, time, &owned, only)).await?
            }
        };
        let files: Vec<TableFile> = self
            .table
            .files(version)
            .await?
            .into_iter()
            .filter(|file| file.date >= first_day && file.date <= last_day)
            .filter(|file| dates.admits(&file.date))
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
            let schema = file_schema(&spec)?;
            let files = self
                .options
                .decoded
                .scan(&self.table, &files, schema)
                .await?;
            let mut parts: Vec<LazyFrame> = files.into_iter().collect();
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
    pub(super) fn caches(&self) -> bool {
        self.spec.identity.is_some() && self.options.cache_rows > 0
    }

    pub(super) fn buffered(&self) -> Vec<DataFrame> {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer
            .batches
            .iter()
            .map(|(_, frame)| frame.clone())
            .collect()
    }

    /// One date partition resolved newest-wins, from the cache while its files stay the same, or
    /// loaded into it; `None` once this scan has `loaded_rows` enough: read it as it streams.
    pub(super) async fn partition(
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

    pub(super) fn lock_cache(&self) -> std::sync::MutexGuard<'_, PartitionCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
