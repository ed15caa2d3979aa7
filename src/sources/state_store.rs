//! The series state on disk: a snapshot and an append-only log of what each request changed (one
//! JSON line each, fsynced), so a request writes what it changed rather than the whole state.
//! Opening loads the snapshot and replays the log; a torn last line (a crash while writing it) was
//! never acknowledged and is dropped. When the log grows past a bound it is sealed (renamed) and a
//! new one started, and the state as of the seal is written as the snapshot while requests go on;
//! then the sealed log is removed. Loading replays the snapshot, the sealed log if one is left,
//! then the log: deltas hold absolute values and replay in order, so a sealed log replayed over a
//! snapshot that already has it changes nothing.
use super::series::{Delta, State, Windows};
use crate::storage::{DurableDocument, StorageError};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The log is folded into the snapshot beyond this size.
const MAX_LOG_BYTES: u64 = 64 << 20;

pub struct StateStore {
    snapshot: DurableDocument,
    log_path: PathBuf,
    sealed_path: PathBuf,
    log: File,
    log_bytes: u64,
    /// A sealed log is waiting for its snapshot to be written.
    sealing: bool,
}

/// What a sealed log's snapshot is written with, away from the store's lock.
pub struct Seal {
    snapshot: DurableDocument,
    sealed_path: PathBuf,
}

impl Seal {
    /// Writes `state` (the state as of the seal) as the snapshot, then removes the sealed log.
    pub fn write(&self, state: &State) -> Result<(), StorageError> {
        self.snapshot.store(state)?;
        remove_if_present(&self.sealed_path)
    }
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("removing", path)(error)),
    }
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
    logs: [&Path; 2],
    windows: Windows,
) -> Result<State, StorageError> {
    let mut state: State = snapshot.load()?.unwrap_or_default();
    for log_path in logs {
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
    }
    Ok(state)
}

/// A change as one line of the log. Encoding is most of an append's work, so the caller can do
/// it while the readings it made are being made durable.
pub fn encode(delta: &Delta) -> Result<Vec<u8>, StorageError> {
    let mut line = serde_json::to_vec(delta).map_err(|e| StorageError::Corrupt {
        path: PathBuf::from("series.log"),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    Ok(line)
}

impl StateStore {
    /// Opens the store under `dir` and the state it holds.
    pub fn open(dir: &Path, windows: Windows) -> Result<(Self, State), StorageError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let snapshot = DurableDocument::new(dir.join("series.json"));
        let log_path = dir.join("series.log");
        let sealed_path = dir.join("series.log.sealed");
        let state = load(&snapshot, [&sealed_path, &log_path], windows)?;
        // Start the log afresh from what was loaded, so a torn line is never followed by more.
        snapshot.store(&state)?;
        remove_if_present(&sealed_path)?;
        let log = File::create(&log_path).map_err(io("creating", &log_path))?;
        log.sync_all().map_err(io("syncing", &log_path))?;
        Ok((
            Self {
                snapshot,
                log_path,
                sealed_path,
                log,
                log_bytes: 0,
                sealing: false,
            },
            state,
        ))
    }

    /// The state as durable now (snapshot and log), for a request that failed after changing the
    /// state in memory.
    pub fn reload(&self, windows: Windows) -> Result<State, StorageError> {
        load(&self.snapshot, [&self.sealed_path, &self.log_path], windows)
    }

    /// Makes one request's change, as `encode` wrote it, durable.
    pub fn append_line(&mut self, line: &[u8]) -> Result<(), StorageError> {
        self.log
            .write_all(line)
            .and_then(|()| self.log.sync_data())
            .map_err(io("writing", &self.log_path))?;
        self.log_bytes += line.len() as u64;
        Ok(())
    }

    /// Whether the log is due to be folded into a snapshot (and no seal is pending).
    pub fn wants_snapshot(&self) -> bool {
        self.log_bytes > MAX_LOG_BYTES && !self.sealing
    }

    /// Seals the log and starts a new one; the caller writes the state as of now with the
    /// returned `Seal`, then calls `sealed`. Call it while no change can be appended.
    pub fn seal(&mut self) -> Result<Seal, StorageError> {
        fs::rename(&self.log_path, &self.sealed_path).map_err(io("sealing", &self.log_path))?;
        self.log = File::create(&self.log_path).map_err(io("creating", &self.log_path))?;
        // The rename and the new file must be on disk before any change goes into the new log.
        if let Some(dir) = self.log_path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing", dir))?;
        }
        self.log_bytes = 0;
        self.sealing = true;
        Ok(Seal {
            snapshot: self.snapshot.clone(),
            sealed_path: self.sealed_path.clone(),
        })
    }

    /// The sealed log's snapshot was written (or failed: the sealed log stays, and loading
    /// still replays it).
    pub fn sealed(&mut self) {
        self.sealing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mapping::Unit;
    use crate::sources::series::{Counts, Resolution, Target};
    use crate::sources::{Sample, Series};
    use std::fs::OpenOptions;

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
        store
            .append_line(&encode(&request(&mut state, 0, 0.0)).unwrap())
            .unwrap();
        store
            .append_line(&encode(&request(&mut state, 30_000, 30.0)).unwrap())
            .unwrap();
        let seal = store.seal().unwrap();
        seal.write(&state).unwrap();
        store.sealed();
        store
            .append_line(&encode(&request(&mut state, 45_000, 45.0)).unwrap())
            .unwrap();
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

    #[test]
    fn a_crash_before_the_sealed_logs_snapshot_is_written_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = StateStore::open(dir.path(), W).unwrap();
        store
            .append_line(&encode(&request(&mut state, 0, 0.0)).unwrap())
            .unwrap();
        store
            .append_line(&encode(&request(&mut state, 30_000, 30.0)).unwrap())
            .unwrap();
        // Sealed, a change goes into the new log, and the process dies before the snapshot.
        let _seal = store.seal().unwrap();
        store
            .append_line(&encode(&request(&mut state, 45_000, 45.0)).unwrap())
            .unwrap();
        drop(store);
        assert!(dir.path().join("series.log.sealed").exists());
        let (_, mut reopened) = StateStore::open(dir.path(), W).unwrap();
        assert_eq!(
            request(&mut reopened, 60_000, 60.0),
            request(&mut state, 60_000, 60.0)
        );
        // Opening folded everything into its snapshot.
        assert!(!dir.path().join("series.log.sealed").exists());
    }
}
