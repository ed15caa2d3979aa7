//! The series state on disk: a snapshot and an append-only log of what each request changed (one
//! JSON line each, fsynced), so a request writes what it changed rather than the whole state.
//! Opening loads the snapshot and replays the log; a torn last line (a crash while writing it) was
//! never acknowledged and is dropped. When the log grows past a bound, the state is snapshotted
//! and the log emptied; deltas hold absolute values, so a log replayed over a snapshot that
//! already has it changes nothing.
use super::series::{Delta, State, Windows};
use crate::storage::{DurableDocument, StorageError};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The log is folded into the snapshot beyond this size.
const MAX_LOG_BYTES: u64 = 64 << 20;

pub struct StateStore {
    snapshot: DurableDocument,
    log_path: PathBuf,
    log: File,
    log_bytes: u64,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Io {
        action,
        path,
        source,
    }
}

fn load(
    snapshot: &DurableDocument,
    log_path: &Path,
    windows: Windows,
) -> Result<State, StorageError> {
    let mut state: State = snapshot.load()?.unwrap_or_default();
    match File::open(log_path) {
        Ok(file) => {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io("reading", log_path))?;
                match serde_json::from_str::<Delta>(&line) {
                    Ok(delta) => state.apply(delta, windows),
                    // Only the last line can be torn; nothing after it was written.
                    Err(_) => break,
                }
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io("reading", log_path)(error)),
    }
    Ok(state)
}

impl StateStore {
    /// Opens the store under `dir` and the state it holds.
    pub fn open(dir: &Path, windows: Windows) -> Result<(Self, State), StorageError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let snapshot = DurableDocument::new(dir.join("series.json"));
        let log_path = dir.join("series.log");
        let state = load(&snapshot, &log_path, windows)?;
        // Start the log afresh from what was loaded, so a torn line is never followed by more.
        snapshot.store(&state)?;
        let log = File::create(&log_path).map_err(io("creating", &log_path))?;
        log.sync_all().map_err(io("syncing", &log_path))?;
        Ok((
            Self {
                snapshot,
                log_path,
                log,
                log_bytes: 0,
            },
            state,
        ))
    }

    /// The state as durable now (snapshot and log), for a request that failed after changing the
    /// state in memory.
    pub fn reload(&self, windows: Windows) -> Result<State, StorageError> {
        load(&self.snapshot, &self.log_path, windows)
    }

    /// Makes one request's change durable.
    pub fn append(&mut self, delta: &Delta) -> Result<(), StorageError> {
        let mut line = serde_json::to_vec(delta).map_err(|e| StorageError::Corrupt {
            path: self.log_path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        self.log
            .write_all(&line)
            .and_then(|()| self.log.sync_data())
            .map_err(io("writing", &self.log_path))?;
        self.log_bytes += line.len() as u64;
        Ok(())
    }

    /// Whether the log is due to be folded into a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.log_bytes > MAX_LOG_BYTES
    }

    /// Writes the whole state as the snapshot and empties the log.
    pub fn snapshot(&mut self, state: &State) -> Result<(), StorageError> {
        self.snapshot.store(state)?;
        self.log = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.log_path)
            .map_err(io("truncating", &self.log_path))?;
        self.log.sync_all().map_err(io("syncing", &self.log_path))?;
        self.log_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mapping::Unit;
    use crate::sources::series::{Counts, Resolution, Target};
    use crate::sources::{Sample, Series};

    const W: Windows = Windows {
        window_ms: 60_000,
        max_gap_ms: 600_000,
    };

    fn request(state: &mut State, t: i64, v: f64) -> Delta {
        let series = Series {
            labels: vec![("__name__".into(), "m".into())],
            samples: vec![Sample {
                timestamp_ms: t,
                value: v,
                start_ms: None,
            }],
            delta: false,
        };
        let target = Target {
            site: "fra1".into(),
            customer: "acme".into(),
            workload: "api".into(),
            functional_unit: None,
            meter_kind: None,
        };
        let changed = state.convert(
            &[series],
            |_, _| Resolution::Mapped {
                target: target.clone(),
                unit: Unit::JoulesTotal,
                until_ms: None,
            },
            W,
            &mut Counts::default(),
        );
        state.delta(&changed)
    }

    #[test]
    fn the_state_comes_back_from_snapshot_and_log_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = StateStore::open(dir.path(), W).unwrap();
        store.append(&request(&mut state, 0, 0.0)).unwrap();
        store.append(&request(&mut state, 30_000, 30.0)).unwrap();
        store.snapshot(&state).unwrap();
        store.append(&request(&mut state, 45_000, 45.0)).unwrap();
        drop(store);
        // A crash while a fourth line was half written.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("series.log"))
            .unwrap();
        log.write_all(b"{\"series\":[[\"m\",6").unwrap();
        drop(log);

        let (_, mut reopened) = StateStore::open(dir.path(), W).unwrap();
        // The next sample sees 45 s as the last one: 60 - 45 = 15 J more, and the window's sum
        // is all 60 J.
        let delta = request(&mut reopened, 60_000, 60.0);
        let expected = request(&mut state, 60_000, 60.0);
        assert_eq!(delta, expected);
    }
}
