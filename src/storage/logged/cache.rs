//! The read cache: date partitions resolved newest-wins and sorted by the cache key, kept while
//! their files stay the same.
use super::*;

/// Date partitions read from the table and resolved newest-wins, each kept while its files stay
/// the same: a flush or compaction that touches a date changes its files, so the next read
/// resolves that date again. Least recently used dates leave first once `limit_rows` is passed.
/// Each key's rows in a frame sorted by the key: (offset, length).
pub(super) type KeyRanges = HashMap<String, (i64, usize)>;

/// The rows of `key` (all rows for `None`) of a frame sorted by it, without a copy.
pub(super) fn rows_of(frame: &DataFrame, ranges: &KeyRanges, key: Option<&str>) -> DataFrame {
    match key {
        None => frame.clone(),
        Some(key) => {
            let (offset, length) = ranges.get(key).copied().unwrap_or((0, 0));
            frame.slice(offset, length)
        }
    }
}

pub(super) struct PartitionCache {
    pub(super) limit_rows: usize,
    pub(super) rows: usize,
    pub(super) clock: u64,
    pub(super) dates: HashMap<String, CachedPartition>,
}

pub(super) struct CachedPartition {
    pub(super) files: Vec<String>,
    /// Sorted by the spec's `cache_key`, whose values' row ranges are in `ranges`.
    pub(super) frame: DataFrame,
    pub(super) ranges: KeyRanges,
    pub(super) used: u64,
}

/// Rows of each value of `column` in a frame sorted by it: (offset, length).
pub(super) fn key_ranges(frame: &DataFrame, column: Option<&str>) -> PolarsResult<KeyRanges> {
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
pub(super) fn resolve_for_cache(
    rows: LazyFrame,
    spec: &TableSpec,
) -> PolarsResult<(DataFrame, KeyRanges)> {
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
pub(super) fn cache_entry(
    mut frame: DataFrame,
    spec: &TableSpec,
) -> PolarsResult<(DataFrame, KeyRanges)> {
    frame.rechunk_mut_par();
    let ranges = key_ranges(&frame, spec.cache_key)?;
    Ok((frame, ranges))
}

/// The paths of `date`'s files, sorted: what a cached date is keyed by.
pub(super) fn file_names(files: &[TableFile], date: &str) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .filter(|file| file.date == date)
        .map(|file| file.path.clone())
        .collect();
    names.sort();
    names
}

impl PartitionCache {
    pub(super) fn new(limit_rows: usize) -> Self {
        Self {
            limit_rows,
            rows: 0,
            clock: 0,
            dates: HashMap::new(),
        }
    }

    /// Re-keys `date` after its files were rewritten without changing its rows.
    /// Drops what is cached of `date`: its files changed in a way this replica did not make.
    pub(super) fn forget(&mut self, date: &str) {
        if let Some(old) = self.dates.remove(date) {
            self.rows -= old.frame.height();
        }
    }

    pub(super) fn renamed(&mut self, date: &str, old: &[String], new: Vec<String>) {
        if let Some(entry) = self.dates.get_mut(date).filter(|e| e.files == old) {
            entry.files = new;
        }
    }

    /// The cached rows of `date` if they were read from `files`: all, or those of one `key`.
    pub(super) fn get(
        &mut self,
        date: &str,
        files: &[String],
        key: Option<&str>,
    ) -> Option<DataFrame> {
        self.clock += 1;
        let entry = self.dates.get_mut(date).filter(|e| e.files == files)?;
        entry.used = self.clock;
        Some(rows_of(&entry.frame, &entry.ranges, key))
    }

    /// Whether `rows` more fit, once dates not used since `since` make room.
    pub(super) fn admits(&self, rows: usize, since: u64) -> bool {
        let evictable: usize = (self.dates.values())
            .filter(|e| e.used < since)
            .map(|e| e.frame.height())
            .sum();
        self.rows - evictable + rows <= self.limit_rows
    }

    /// A stamp for a scan's start: dates used after it are the scan's own.
    pub(super) fn stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Caches `date`, evicting least recently used dates not used since `since`. When only dates
    /// used since then would make room, `date` is not cached: a scan over more than the cache
    /// holds keeps the dates it found cached rather than cycling them all out on every request.
    pub(super) fn put(
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
