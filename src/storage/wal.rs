//! The write-ahead log: acknowledged data is here, fsynced, before any answer. One writer thread takes
//! every batch waiting at that moment, writes them all and syncs once (group commit), then hands each
//! batch to `on_durable` in log order before replying, so anything that observes the reply (or a
//! later rotation) also observes the batch.
//!
//! Layout: `wal/<first lsn, 20 digits>.wal` segments of records
//! `[payload length u32][crc32 of lsn+payload u32][lsn u64][payload]`, little endian. A record cut
//! short or failing its checksum at the end of the log is a write a crash interrupted; it was never
//! acknowledged, so it is cut off and startup goes on.
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

const HEADER_BYTES: usize = 16;
/// Largest record accepted when reading back; a length beyond it is corruption, not data.
const MAX_RECORD_BYTES: usize = 1 << 30;

/// Log sequence number: one per appended batch, increasing from 1.
pub type Lsn = u64;

enum Command<T> {
    Append {
        payload: Vec<u8>,
        item: T,
        reply: oneshot::Sender<io::Result<Lsn>>,
    },
    /// Start a new segment; answers the last lsn in the closed ones.
    Rotate {
        reply: oneshot::Sender<io::Result<Lsn>>,
    },
}

/// A log record read back at startup.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

pub struct Wal<T> {
    commands: mpsc::Sender<Command<T>>,
    dir: PathBuf,
}

fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// Segments in log order, with the first lsn each holds.
fn segments(dir: &Path) -> io::Result<Vec<(Lsn, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<Lsn>().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

fn checksum(lsn: Lsn, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode(lsn: Lsn, payload: &[u8], out: &mut impl Write) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&checksum(lsn, payload).to_le_bytes())?;
    out.write_all(&lsn.to_le_bytes())?;
    out.write_all(payload)
}

/// Reads a segment's records; cuts the file at the first torn or corrupt record.
fn read_segment(path: &Path) -> io::Result<Vec<Recovered>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let header = bytes.get(offset..offset + HEADER_BYTES);
        let record = header.and_then(|h| {
            let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(h[4..8].try_into().ok()?);
            let lsn = u64::from_le_bytes(h[8..16].try_into().ok()?);
            let start = offset + HEADER_BYTES;
            let payload = (len <= MAX_RECORD_BYTES).then(|| bytes.get(start..start + len))??;
            (checksum(lsn, payload) == crc).then(|| Recovered {
                lsn,
                payload: payload.to_vec(),
            })
        });
        match record {
            Some(record) => {
                offset += HEADER_BYTES + record.payload.len();
                records.push(record);
            }
            None => {
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    dropped_bytes = bytes.len() - offset,
                    "cutting a torn write-ahead log tail (an unacknowledged write interrupted by a crash)"
                );
                let file = OpenOptions::new().write(true).open(path)?;
                file.set_len(offset as u64)?;
                file.sync_all()?;
                break;
            }
        }
    }
    Ok(records)
}

struct Writer<T, F> {
    dir: PathBuf,
    file: BufWriter<File>,
    next_lsn: Lsn,
    fsync: bool,
    on_durable: F,
    _item: std::marker::PhantomData<T>,
}

impl<T, F: FnMut(Lsn, T)> Writer<T, F> {
    fn open_segment(dir: &Path, first: Lsn) -> io::Result<BufWriter<File>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, first))?;
        File::open(dir)?.sync_all()?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.fsync {
            self.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Writes one group of commands with a single sync, then answers them in order.
    fn run_group(&mut self, group: Vec<Command<T>>) {
        let mut written = Vec::new();
        let mut rotations = Vec::new();
        let mut outcome: io::Result<()> = Ok(());
        for command in group {
            match command {
                Command::Append {
                    payload,
                    item,
                    reply,
                } => {
                    let lsn = self.next_lsn;
                    if outcome.is_ok() {
                        outcome = encode(lsn, &payload, &mut self.file);
                    }
                    if outcome.is_ok() {
                        self.next_lsn += 1;
                    }
                    written.push((lsn, item, reply));
                }
                Command::Rotate { reply } => {
                    let last = self.next_lsn - 1;
                    let rotated = outcome
                        .as_ref()
                        .map_err(|e| io::Error::new(e.kind(), e.to_string()))
                        .and_then(|()| self.sync())
                        .and_then(|()| Self::open_segment(&self.dir, self.next_lsn))
                        .map(|file| self.file = file);
                    if let Err(error) = &rotated {
                        outcome = Err(io::Error::new(error.kind(), error.to_string()));
                    }
                    rotations.push((reply, rotated.map(|()| last)));
                }
            }
        }
        if outcome.is_ok() && !written.is_empty() {
            outcome = self.sync();
        }
        for (lsn, item, reply) in written {
            let answer = match &outcome {
                Ok(()) => {
                    (self.on_durable)(lsn, item);
                    Ok(lsn)
                }
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            let _ = reply.send(answer);
        }
        for (reply, answer) in rotations {
            let _ = reply.send(answer);
        }
    }
}

impl<T: Send + 'static> Wal<T> {
    /// Reads back every record after `committed` (cutting a torn tail), then starts the writer on a
    /// fresh segment. `on_durable` runs on the writer thread for each batch once it is on disk.
    pub fn open<F>(
        dir: &Path,
        committed: Lsn,
        fsync: bool,
        on_durable: F,
    ) -> io::Result<(Self, Vec<Recovered>)>
    where
        F: FnMut(Lsn, T) + Send + 'static,
    {
        fs::create_dir_all(dir)?;
        let mut recovered = Vec::new();
        for (_, path) in segments(dir)? {
            recovered.extend(
                read_segment(&path)?
                    .into_iter()
                    .filter(|record| record.lsn > committed),
            );
        }
        let last = recovered.last().map_or(committed, |r| r.lsn);
        let next_lsn = last.max(committed) + 1;
        let file = Writer::<T, F>::open_segment(dir, next_lsn)?;
        let mut writer = Writer {
            dir: dir.to_owned(),
            file,
            next_lsn,
            fsync,
            on_durable,
            _item: std::marker::PhantomData,
        };
        let (commands, inbox) = mpsc::channel::<Command<T>>();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    let mut group = vec![first];
                    group.extend(inbox.try_iter());
                    writer.run_group(group);
                }
            })?;
        Ok((
            Self {
                commands,
                dir: dir.to_owned(),
            },
            recovered,
        ))
    }

    /// Appends a record; resolves once it is durable (and `on_durable` has seen `item`).
    pub async fn append(&self, payload: Vec<u8>, item: T) -> io::Result<Lsn> {
        self.submit(payload, item)?.await
    }

    /// Puts a record in the log's order now, before any record submitted after this call; the
    /// returned future resolves once it is durable.
    pub fn submit(
        &self,
        payload: Vec<u8>,
        item: T,
    ) -> io::Result<impl std::future::Future<Output = io::Result<Lsn>>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append {
                payload,
                item,
                reply,
            })
            .map_err(|_| io::Error::other("the write-ahead log writer has stopped"))?;
        Ok(async move {
            answer
                .await
                .map_err(|_| io::Error::other("the write-ahead log writer has stopped"))?
        })
    }

    /// Closes the current segment; returns the last lsn written before it.
    pub async fn rotate(&self) -> io::Result<Lsn> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Rotate { reply })
            .map_err(|_| io::Error::other("the write-ahead log writer has stopped"))?;
        answer
            .await
            .map_err(|_| io::Error::other("the write-ahead log writer has stopped"))?
    }

    /// Bytes of the segments on disk (what a restart would replay, at most).
    pub fn bytes(&self) -> u64 {
        segments(&self.dir).map_or(0, |all| {
            all.iter()
                .filter_map(|(_, path)| fs::metadata(path).ok())
                .map(|meta| meta.len())
                .sum()
        })
    }

    /// Deletes the segments whose records are all at or below `committed`.
    pub fn truncate_through(&self, committed: Lsn) -> io::Result<()> {
        let all = segments(&self.dir)?;
        for pair in all.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= committed + 1 {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(Lsn, u32)>>>;

    fn open(dir: &Path, committed: Lsn) -> (Wal<u32>, Vec<Recovered>, Seen) {
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let (wal, recovered) = Wal::open(dir, committed, true, move |lsn, item| {
            sink.lock().unwrap().push((lsn, item))
        })
        .unwrap();
        (wal, recovered, seen)
    }

    #[tokio::test]
    async fn appended_records_come_back_after_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, recovered, seen) = open(dir.path(), 0);
        assert!(recovered.is_empty());
        assert_eq!(wal.append(b"one".to_vec(), 1).await.unwrap(), 1);
        assert_eq!(wal.append(b"two".to_vec(), 2).await.unwrap(), 2);
        assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 2)]);
        drop(wal);
        let (wal, recovered, _) = open(dir.path(), 0);
        let payloads: Vec<_> = recovered
            .iter()
            .map(|r| (r.lsn, r.payload.clone()))
            .collect();
        assert_eq!(payloads, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        assert_eq!(wal.append(b"three".to_vec(), 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn concurrent_appends_share_syncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, seen) = open(dir.path(), 0);
        let wal = Arc::new(wal);
        let tasks: Vec<_> = (0..50u32)
            .map(|i| {
                let wal = wal.clone();
                tokio::spawn(async move { wal.append(vec![i as u8; 100], i).await.unwrap() })
            })
            .collect();
        let mut lsns = Vec::new();
        for task in tasks {
            lsns.push(task.await.unwrap());
        }
        lsns.sort();
        assert_eq!(lsns, (1..=50).collect::<Vec<_>>());
        assert_eq!(seen.lock().unwrap().len(), 50);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_log_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), 0);
        wal.append(b"kept".to_vec(), 1).await.unwrap();
        wal.append(b"torn".to_vec(), 2).await.unwrap();
        drop(wal);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let (wal, recovered, _) = open(dir.path(), 0);
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].payload, b"kept");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            (HEADER_BYTES + 4) as u64
        );
        assert_eq!(wal.append(b"next".to_vec(), 3).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_corrupt_checksum_is_cut_like_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), 0);
        wal.append(b"aaaa".to_vec(), 1).await.unwrap();
        wal.append(b"bbbb".to_vec(), 2).await.unwrap();
        drop(wal);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, recovered, _) = open(dir.path(), 0);
        assert_eq!(recovered.len(), 1);
    }

    #[tokio::test]
    async fn rotation_lets_committed_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), 0);
        wal.append(b"a".to_vec(), 1).await.unwrap();
        assert_eq!(wal.rotate().await.unwrap(), 1);
        wal.append(b"b".to_vec(), 2).await.unwrap();
        wal.truncate_through(1).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
        drop(wal);
        let (_, recovered, _) = open(dir.path(), 1);
        assert_eq!(recovered.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![2]);
    }
}
