//! The series state on disk: a snapshot and a log of what each request changed (one checksummed
//! record each, `[length u32][crc32 u32][change]`, synced in groups: see `Written`), so a request
//! writes what it changed rather than the whole state. The snapshot names the log that follows it (`series.<epoch>.wal`):
//! writing a new snapshot starts a new log, so a crash between the two replays nothing twice and
//! loses nothing (the old log's changes are all in the new snapshot). Opening loads the snapshot,
//! replays its log up to the first torn record (a crash while writing it: never acknowledged),
//! then starts afresh from what it loaded. The first format (`series.json` and JSON lines in
//! `series.log`) is read once and replaced.
use super::series::{Replay, State, WindowKey, Windows};
use super::state_codec;
use crate::storage::{DurableDocument, StorageError};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The log is folded into a new snapshot beyond this size.
pub const MAX_LOG_BYTES: u64 = 64 << 20;

const HEADER_BYTES: usize = 8;

pub struct StateStore {
    dir: PathBuf,
    snapshot: DurableDocument,
    epoch: u64,
    log: Arc<LogFile>,
}

/// A log file and how far it is synced. Changes are written one after another and synced in
/// groups: a writer waits for one sync that covers its change (whoever runs it), so concurrent
/// requests share an fsync.
#[derive(Debug)]
struct LogFile {
    file: File,
    path: PathBuf,
    /// Bytes written to the file so far.
    written: AtomicU64,
    synced: Mutex<Synced>,
}

#[derive(Debug, Default)]
struct Synced {
    /// Every byte below this position is on disk.
    through: u64,
    /// A sync failed: what was written after the last good one may be lost, and so may every
    /// change that rests on it. Nothing more is reported durable from this file.
    failed: bool,
}

/// Where a change was written, to be synced before it is reported durable.
pub struct Written {
    log: Arc<LogFile>,
    /// The end of the change in its file.
    end: u64,
}

impl Written {
    /// Returns once a sync covers the change (its own or a concurrent writer's).
    pub fn sync(self) -> Result<(), StorageError> {
        let mut synced = self.log.synced.lock().unwrap_or_else(|p| p.into_inner());
        if !synced.failed && synced.through < self.end {
            // One sync covers everything written before it starts; later writers wait for the
            // lock and find themselves covered.
            let through = self.log.written.load(Ordering::SeqCst);
            match self.log.file.sync_data() {
                Ok(()) => synced.through = synced.through.max(through),
                Err(_) => synced.failed = true,
            }
        }
        if synced.failed {
            return Err(StorageError::Corrupt {
                path: self.log.path.clone(),
                reason: "syncing the series log failed: what was written since may be lost".into(),
            });
        }
        Ok(())
    }
}

impl LogFile {
    fn new(file: File, path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            file,
            path,
            written: AtomicU64::new(0),
            synced: Mutex::default(),
        })
    }

    /// A snapshot now holds every change in this file: they are durable.
    fn superseded(&self) {
        self.synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .through = u64::MAX;
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

fn corrupt(path: &Path, reason: &str) -> StorageError {
    StorageError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn log_path(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("series.{epoch}.wal"))
}

/// `[length][crc32][payload]` records, up to the first one cut short or failing its checksum.
fn records(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let (header, body) = rest.split_first_chunk::<HEADER_BYTES>()?;
        let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
        let payload = body.get(..len)?;
        (crc32fast::hash(payload) == crc).then(|| {
            rest = &body[len..];
            payload
        })
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    // A change is a request's; a snapshot of 4 GiB would be some 100 M open windows.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The first format's state and changes, by name.
#[derive(Deserialize)]
struct FirstState {
    last: HashMap<String, (i64, f64)>,
    windows: Vec<(WindowKey, f64)>,
    newest_ms: i64,
}

#[derive(Deserialize)]
struct FirstDelta {
    series: Vec<(String, i64, f64)>,
    windows: Vec<(WindowKey, f64)>,
    newest_ms: i64,
}

impl State {
    fn take_named(
        &mut self,
        series: impl IntoIterator<Item = (String, (i64, f64))>,
        windows: impl IntoIterator<Item = (WindowKey, f64)>,
        (newest_ms, w): (i64, Windows),
    ) {
        for (key, last) in series {
            self.set_series(&key, last);
        }
        for (key, joules) in windows {
            let WindowKey { target, start_ms } = key;
            self.set_window(&std::sync::Arc::new(target), start_ms, joules);
        }
        self.settle(newest_ms, w);
    }
}

/// The first format's files under `dir` (snapshot, sealed log, log), loaded; `None` if absent.
fn load_first_format(dir: &Path, windows: Windows) -> Result<Option<State>, StorageError> {
    let snapshot = DurableDocument::new(dir.join("series.json"));
    let logs = [dir.join("series.log.sealed"), dir.join("series.log")];
    let first: Option<FirstState> = snapshot.load()?;
    if first.is_none() && !logs.iter().any(|p| p.exists()) {
        return Ok(None);
    }
    let mut state = State::default();
    if let Some(first) = first {
        state.take_named(first.last, first.windows, (first.newest_ms, windows));
    }
    for path in &logs {
        let Ok(file) = File::open(path) else { continue };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io("reading", path))?;
            // Only the last line can be torn; nothing after it was written.
            let Ok(delta) = serde_json::from_str::<FirstDelta>(&line) else {
                break;
            };
            let series = delta.series.into_iter().map(|(k, t, v)| (k, (t, v)));
            state.take_named(series, delta.windows, (delta.newest_ms, windows));
        }
    }
    Ok(Some(state))
}

impl StateStore {
    /// Opens the store under `dir` and the state it holds.
    pub fn open(dir: &Path, windows: Windows) -> Result<(Self, State), StorageError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let snapshot = DurableDocument::new(dir.join("series.snapshot"));
        let (epoch, state) = Self::load(dir, &snapshot, windows)?;
        let path = log_path(dir, epoch);
        let log = File::options()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let mut store = Self {
            dir: dir.to_owned(),
            snapshot,
            epoch,
            log: LogFile::new(log, path),
        };
        // Start afresh from what was loaded, so a torn record is never followed by more.
        store.replace(&state_codec::encode(&state.snapshot()))?;
        for first in ["series.json", "series.log", "series.log.sealed"] {
            remove_if_present(&dir.join(first))?;
        }
        let current = log_path(dir, store.epoch);
        for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
            let path = entry.map_err(io("listing", dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("series.") && name.ends_with(".wal") && path != current {
                remove_if_present(&path)?;
            }
        }
        Ok((store, state))
    }

    fn load(
        dir: &Path,
        snapshot: &DurableDocument,
        windows: Windows,
    ) -> Result<(u64, State), StorageError> {
        let mut state = State::default();
        let Some(bytes) = snapshot.load_bytes()? else {
            return Ok((0, load_first_format(dir, windows)?.unwrap_or_default()));
        };
        let path = dir.join("series.snapshot");
        let record = records(&bytes)
            .next()
            .ok_or_else(|| corrupt(&path, "no whole record"))?;
        let (epoch, body) = record
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt(&path, "no epoch"))?;
        let delta = state_codec::decode(body).ok_or_else(|| corrupt(&path, "not a state"))?;
        state.apply(delta, &mut Replay::default(), windows);
        let epoch = u64::from_le_bytes(*epoch);
        let log = log_path(dir, epoch);
        let bytes = match fs::read(&log) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io("reading", &log)(error)),
        };
        let mut replay = Replay::default();
        for record in records(&bytes) {
            let delta = state_codec::decode(record).ok_or_else(|| corrupt(&log, "not a change"))?;
            state.apply(delta, &mut replay, windows);
        }
        Ok((epoch, state))
    }

    /// The state as durable now, for when a change in memory did not reach the disk; the store
    /// starts afresh from it (a new snapshot and log), so the numbers it gives keys are its own.
    pub fn reopen(&mut self, windows: Windows) -> Result<State, StorageError> {
        let (_, state) = Self::load(&self.dir, &self.snapshot, windows)?;
        self.replace(&state_codec::encode(&state.snapshot()))?;
        Ok(state)
    }

    /// Writes one request's change, as `state_codec::encode` wrote it; it is durable once the
    /// returned `Written` is synced. A failed write leaves the file unusable (its end may be
    /// torn): the caller reopens the store.
    pub fn write(&mut self, change: &[u8]) -> Result<Written, StorageError> {
        let record = frame(change);
        (&self.log.file)
            .write_all(&record)
            .map_err(|error| io("writing", &self.log.path)(error))?;
        let end = self
            .log
            .written
            .fetch_add(record.len() as u64, Ordering::SeqCst)
            + record.len() as u64;
        Ok(Written {
            log: self.log.clone(),
            end,
        })
    }

    /// Writes and syncs one change.
    #[cfg(test)]
    fn append(&mut self, change: &[u8]) -> Result<(), StorageError> {
        self.write(change)?.sync()
    }

    /// Writes `snapshot` (a whole state, as `state_codec::encode` wrote it) and starts its log.
    pub fn replace(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        let epoch = self.epoch + 1;
        let mut payload = Vec::with_capacity(8 + snapshot.len());
        payload.extend_from_slice(&epoch.to_le_bytes());
        payload.extend_from_slice(snapshot);
        let path = log_path(&self.dir, epoch);
        // The new log exists, empty and durable, before the snapshot that names it.
        let log = File::create(&path)
            .and_then(|log| log.sync_all().map(|()| log))
            .map_err(io("creating", &path))?;
        self.snapshot.store_bytes(&frame(&payload))?;
        self.log.superseded();
        let old = std::mem::replace(&mut self.log, LogFile::new(log, path));
        self.epoch = epoch;
        remove_if_present(&old.path)
    }
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("removing", path)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mapping::Unit;
    use crate::sources::series::{Counts, Resolution, Target};
    use crate::sources::{Labels, Sample, Series};
    use std::fs::OpenOptions;

    const W: Windows = Windows {
        window_ms: 60_000,
        max_gap_ms: 600_000,
    };

    /// One sample of one counter into `state`: the windows it changed, by name, and its delta.
    fn request(state: &mut State, t: i64, v: f64) -> (Vec<(String, i64, f64)>, Vec<u8>) {
        let series = Series {
            labels: Labels::from_pairs([("__name__", "m")]),
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
            None,
            |_| Resolution::Mapped {
                target: std::sync::Arc::new(target.clone()),
                unit: Unit::JoulesTotal,
                until_ms: None,
            },
            W,
            &mut Counts::default(),
        );
        let named = changed
            .iter()
            .map(|&((id, start), j)| (state.target(id).unwrap().workload.clone(), start, j))
            .collect();
        (named, state_codec::encode(&state.delta(&changed, W)))
    }

    fn log_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".wal"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_state_comes_back_from_snapshot_and_log_and_a_torn_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = StateStore::open(dir.path(), W).unwrap();
        store.append(&request(&mut state, 0, 0.0).1).unwrap();
        store.append(&request(&mut state, 30_000, 30.0).1).unwrap();
        store
            .replace(&state_codec::encode(&state.snapshot()))
            .unwrap();
        state.new_log();
        store.append(&request(&mut state, 45_000, 45.0).1).unwrap();
        drop(store);
        assert_eq!(
            log_files(dir.path()),
            ["series.2.wal"],
            "one log, the snapshot's"
        );
        // A crash while a fourth record was half written.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("series.2.wal"))
            .unwrap();
        log.write_all(&frame(&[7; 64])[..40]).unwrap();
        drop(log);

        let (_, mut reopened) = StateStore::open(dir.path(), W).unwrap();
        // The next sample sees 45 s as the last one: 60 - 45 = 15 J more, and the window's sum
        // is all 60 J.
        let (changed, _) = request(&mut reopened, 60_000, 60.0);
        assert_eq!(changed, [("api".to_owned(), 0, 60.0)]);
        assert_eq!(changed, request(&mut state, 60_000, 60.0).0);
    }

    #[test]
    fn a_crash_between_a_new_log_and_its_snapshot_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = StateStore::open(dir.path(), W).unwrap();
        store.append(&request(&mut state, 0, 0.0).1).unwrap();
        store.append(&request(&mut state, 30_000, 30.0).1).unwrap();
        drop(store);
        // The next log was created, and the process died before the snapshot naming it: what it
        // holds (here, a change that would move the counter on) is not replayed.
        let mut other = state.clone();
        fs::write(
            dir.path().join("series.2.wal"),
            frame(&request(&mut other, 45_000, 45.0).1),
        )
        .unwrap();
        fs::write(dir.path().join("series.9.wal"), b"left behind").unwrap();
        let (_, mut reopened) = StateStore::open(dir.path(), W).unwrap();
        assert_eq!(
            request(&mut reopened, 60_000, 60.0).0,
            request(&mut state, 60_000, 60.0).0
        );
        assert_eq!(log_files(dir.path()), ["series.2.wal"]);
    }

    #[test]
    fn the_first_formats_json_snapshot_and_log_are_read_once_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // The series key's separators, escaped as JSON wrote them.
        let key = r"__name__\u001fm\u001e";
        let target = r#"{"site":"fra1","customer":"acme","workload":"api"}"#;
        fs::write(
            dir.path().join("series.json"),
            format!(r#"{{"last":{{"{key}":[0,0.0]}},"windows":[],"newest_ms":0}}"#),
        )
        .unwrap();
        fs::write(
            dir.path().join("series.log"),
            format!(
                "{{\"series\":[[\"{key}\",30000,30.0]],\"windows\":[[{{\"target\":{target},\"start_ms\":0}},30.0]],\"newest_ms\":30000}}\n{{\"series\":[[\"m"
            ),
        )
        .unwrap();
        let (_, mut state) = StateStore::open(dir.path(), W).unwrap();
        // 30 J so far in the window, and 30 more from the last sample at 30 s.
        assert_eq!(
            request(&mut state, 60_000, 60.0).0,
            [("api".to_owned(), 0, 60.0)]
        );
        assert!(!dir.path().join("series.json").exists());
        assert!(!dir.path().join("series.log").exists());
        assert!(dir.path().join("series.snapshot").exists());
    }
}
