//! Small table files kept decoded in memory, by table and path, within one byte budget for all
//! tables: the least recently used go first. A table file never changes once written (new data is
//! a new file), so an entry is never stale. A year report reads 365 rollup files per customer and
//! 365 intensity files, and decoding them again on every report cost more than using their rows.
use super::logged::LoggedTableError;
use super::logged::{blocking, read_all_whole, reads_whole_files, scan_parquet, stacked};
use super::table::{Table, TableFile};
use polars::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct DecodedFiles {
    budget_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each file's rows, their estimated size and when they were last used.
    frames: HashMap<String, (DataFrame, usize, u64)>,
    bytes: usize,
    uses: u64,
}

impl std::fmt::Debug for DecodedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecodedFiles({} bytes)", self.budget_bytes)
    }
}

impl DecodedFiles {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// `files` of `table` as one frame with `schema` (`None`: no files). Small files come whole,
    /// from memory or fetched, decoded and kept; larger ones are scanned.
    pub async fn scan(
        &self,
        table: &Table,
        files: &[TableFile],
        schema: Schema,
    ) -> Result<Option<LazyFrame>, LoggedTableError> {
        if files.is_empty() {
            return Ok(None);
        }
        if !reads_whole_files(files) {
            let contents = table.read(files).await?;
            return blocking(move || scan_parquet(contents, schema)).await;
        }
        let kept: Vec<Option<DataFrame>> = (files.iter())
            .map(|file| self.get(&table.file_key(file)))
            .collect();
        let missing: Vec<TableFile> = (files.iter().zip(&kept))
            .filter(|(_, kept)| kept.is_none())
            .map(|(file, _)| file.clone())
            .collect();
        // A report whose files are all kept (a repeated year report) needs no fetch and no
        // blocking thread.
        let (decoded, schema) = if missing.is_empty() {
            (Vec::new(), schema)
        } else {
            let contents = table.read(&missing).await?;
            blocking(move || {
                let decoded = read_all_whole(&contents, &schema)?;
                Ok((decoded, schema))
            })
            .await?
        };
        for (file, frame) in missing.iter().zip(&decoded) {
            self.put(&table.file_key(file), frame);
        }
        let mut decoded = decoded.into_iter();
        let frames = (kept.into_iter()).flat_map(|kept| kept.or_else(|| decoded.next()));
        Ok(Some(stacked(frames, &schema)?.lazy()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rows of the file at `path`, if kept.
    pub fn get(&self, path: &str) -> Option<DataFrame> {
        let mut state = self.lock();
        state.uses += 1;
        let now = state.uses;
        let (frame, _, used) = state.frames.get_mut(path)?;
        *used = now;
        Some(frame.clone())
    }

    /// Keeps `frame` as the rows of `path`, dropping the least recently used files beyond the
    /// budget (a file larger than the whole budget is not kept).
    pub fn put(&self, path: &str, frame: &DataFrame) {
        let size = frame.estimated_size();
        if size > self.budget_bytes {
            return;
        }
        let mut state = self.lock();
        state.uses += 1;
        let now = state.uses;
        if let Some((_, old, _)) = state
            .frames
            .insert(path.to_owned(), (frame.clone(), size, now))
        {
            state.bytes -= old;
        }
        state.bytes += size;
        while state.bytes > self.budget_bytes {
            let oldest = (state.frames.iter())
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(path, _)| path.clone());
            let Some((_, size, _)) = oldest.and_then(|path| state.frames.remove(&path)) else {
                break;
            };
            state.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> DataFrame {
        DataFrame::new(n, vec![Column::new("x".into(), vec![1.0f64; n])]).unwrap()
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_budget_holds() {
        let size = rows(1000).estimated_size(); // 8,000 bytes
        let cache = DecodedFiles::new(2 * size + size / 2);
        cache.put("a", &rows(1000));
        cache.put("b", &rows(1000));
        assert!(cache.get("a").is_some()); // a is now more recent than b
        cache.put("c", &rows(1000));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").map(|f| f.height()), Some(1000));
        assert_eq!(cache.get("c").map(|f| f.height()), Some(1000));
        assert_eq!(cache.lock().bytes, 2 * size);
        cache.put("huge", &rows(10_000));
        assert!(cache.get("huge").is_none(), "larger than the budget");
        assert_eq!(cache.lock().bytes, 2 * size);
    }
}
