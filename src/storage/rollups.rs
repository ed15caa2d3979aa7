//! The energy rollup table (DESIGN §7): a Delta table beside the readings, on the same store,
//! holding for each readings date one file of the rollup rows of the readings that start that day
//! (`accounting::rollup`). The file's name carries a fingerprint of the readings files it was
//! computed from, so a date whose readings changed (a flush, a compaction, a re-sent reading,
//! another replica's commit) is stale the moment it changes: reports read that date's readings
//! until the refresher has recomputed it. A rollup is never wrong, only sometimes not yet used.
//!
//! Each date has two files, written in one commit: the rows per workload, and the same summed per
//! customer (`rollup::customer_rows`), which reports that need no workload read instead (a
//! customer of 100 workloads has a hundredth of the rows). A date that has only its workloads'
//! file (written by an earlier release) serves from it until the refresher adds the other.
use super::decoded::DecodedFiles;
use super::location::Location;
use super::logged::LoggedTable;
use super::logged::{blocking, parquet_bytes, partitions};
use super::logged::{instant, LoggedTableError};
use super::replica::Replica;
use super::table::{NewFile, Table, TableFile};
use crate::accounting::rollup::{self, CROSSING, SLOT, SLOT_US, STARTED};
use crate::storage::readings::{CUSTOMER, ENERGY_J, SITE, WORKLOAD};
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

const NAME: &str = "rollups";

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(CUSTOMER, DeltaType::STRING, false),
        StructField::new(WORKLOAD, DeltaType::STRING, false),
        StructField::new(SLOT, DeltaType::TIMESTAMP, false),
        StructField::new(ENERGY_J, DeltaType::DOUBLE, false),
        StructField::new(STARTED, DeltaType::LONG, false),
        StructField::new(CROSSING, DeltaType::LONG, false),
    ]
}

/// What names a date's readings files: the same files, the same fingerprint.
pub fn fingerprint(files: &[TableFile]) -> String {
    let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    let digest = Sha256::digest(paths.join("\n").as_bytes());
    hex::encode(&digest[..12])
}

/// Which of a date's rollup files a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Rows per workload: for every report.
    Workloads,
    /// Rows per customer: for reports that neither group nor filter by workload and count no
    /// hardware; a date without them serves its workloads' rows.
    Customers,
}

impl Level {
    const ALL: [Level; 2] = [Level::Workloads, Level::Customers];

    /// The `source` a file of this level computed from readings files of `fingerprint` carries.
    fn source(self, fingerprint: &str) -> String {
        match self {
            Self::Workloads => fingerprint.to_owned(),
            Self::Customers => format!("{fingerprint}.customers"),
        }
    }

    /// The rows of this level from the rows per workload.
    fn rows(self, workloads: &DataFrame) -> PolarsResult<DataFrame> {
        match self {
            Self::Workloads => Ok(workloads.clone()),
            Self::Customers => rollup::customer_rows(workloads),
        }
    }
}

/// The file of `level` among a date's rollup `files` computed from readings of `fingerprint`.
fn file_of<'a>(files: &'a [TableFile], level: Level, fingerprint: &str) -> Option<&'a TableFile> {
    let source = level.source(fingerprint);
    files.iter().find(|f| f.source() == Some(source.as_str()))
}

/// Which dates a refresh recomputes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Dates whose rollup is missing or stale.
    Stale,
    /// Every date in [first, last] (`YYYY-MM-DD`), whether stale or not.
    Rebuild(Option<&'a str>, Option<&'a str>),
}

/// A date whose stored rollup differs from one computed afresh from its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub date: String,
    pub detail: String,
}

pub struct Rollups {
    table: Table,
    decoded: Arc<DecodedFiles>,
    /// One refresh at a time per process: two would write the same date twice.
    refreshing: tokio::sync::Mutex<()>,
}

impl Rollups {
    /// The rollup table at `location`; its files per customer are kept in `decoded`.
    pub async fn open(
        location: &Location,
        replica: &Replica,
        refresh_interval: std::time::Duration,
        decoded: Arc<DecodedFiles>,
    ) -> Result<Arc<Self>, LoggedTableError> {
        let table = Table::open(
            location,
            &format!("tables/{NAME}"),
            (replica.app_id(NAME), None),
            columns(),
            refresh_interval,
        )
        .await?;
        Ok(Arc::new(Self {
            table,
            decoded,
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    /// For each date in [first, last] that the rollups serve, its rollup file of `level` (or of
    /// workloads, where the date has no other yet): the date has readings files in the table (as
    /// of `version`, latest when `None`), a rollup file computed from exactly those, and (latest
    /// only) no readings waiting in the log.
    pub async fn serving(
        &self,
        readings: &LoggedTable,
        version: Option<u64>,
        (first, last): (&str, &str),
        level: Level,
    ) -> Result<BTreeMap<String, TableFile>, LoggedTableError> {
        let dates = readings.date_files(version).await?;
        let buffered = match version {
            None => readings.buffered_dates().await?,
            Some(_) => Default::default(),
        };
        let rollups = partitions(self.table.files(None).await?);
        let mut serving = BTreeMap::new();
        for (date, files) in dates.range(first.to_owned()..=last.to_owned()) {
            if buffered.contains(date) {
                continue;
            }
            let (stored, source) = (
                rollups.get(date).map_or(&[][..], Vec::as_slice),
                fingerprint(files),
            );
            let file = file_of(stored, level, &source)
                .or_else(|| file_of(stored, Level::Workloads, &source));
            if let Some(file) = file {
                serving.insert(date.clone(), file.clone());
            }
        }
        Ok(serving)
    }

    /// The rollup rows of `files` whose slot overlaps [from_us, to_us), of `customer` if given,
    /// matching `filter`.
    pub async fn read(
        &self,
        files: Vec<TableFile>,
        customer: Option<&str>,
        filter: Option<Expr>,
        (from_us, to_us): (i64, i64),
    ) -> Result<DataFrame, LoggedTableError> {
        let customer = customer.map(|c| col(CUSTOMER).eq(lit(c.to_owned())));
        let schema = rollup::empty_rollup()?.schema().as_ref().clone();
        let Some(scan) = self.decoded.scan(&self.table, &files, schema).await? else {
            return Ok(rollup::empty_rollup()?);
        };
        blocking(move || {
            let in_range = col(SLOT)
                .gt(instant(from_us - SLOT_US))
                .and(col(SLOT).lt(instant(to_us)));
            let condition = [Some(in_range), customer, filter]
                .into_iter()
                .flatten()
                .reduce(Expr::and);
            match condition {
                Some(condition) => scan.filter(condition).collect(),
                None => scan.collect(),
            }
        })
        .await
    }

    /// Recomputes the dates `scope` names from their readings. Returns how many it wrote.
    pub async fn refresh(
        &self,
        readings: &LoggedTable,
        scope: Scope<'_>,
    ) -> Result<usize, LoggedTableError> {
        let _refreshing = self.refreshing.lock().await;
        let dates = readings.date_files(None).await?;
        let rollups = partitions(self.table.files(None).await?);
        let mut written = 0;
        for (date, files) in &dates {
            let source = fingerprint(files);
            let current = rollups.get(date).cloned().unwrap_or_default();
            let wanted = match scope {
                Scope::Stale => {
                    current.len() != Level::ALL.len()
                        || Level::ALL
                            .iter()
                            .any(|l| file_of(&current, *l, &source).is_none())
                }
                Scope::Rebuild(first, last) => {
                    first.is_none_or(|first| date.as_str() >= first)
                        && last.is_none_or(|last| date.as_str() <= last)
                }
            };
            if !wanted {
                continue;
            }
            let rows = self.compute(readings, files).await?;
            let date_for_file = date.clone();
            let new_files = blocking(move || {
                let file = |level: Level| -> PolarsResult<NewFile> {
                    let mut rows = level.rows(&rows)?;
                    Ok(NewFile {
                        date: date_for_file.clone(),
                        rows: rows.height(),
                        parquet: parquet_bytes(&mut rows, ParquetCompression::Zstd(None))?,
                        resolved: true,
                        source: Some(level.source(&source)),
                    })
                };
                Level::ALL
                    .map(file)
                    .into_iter()
                    .collect::<PolarsResult<Vec<_>>>()
            })
            .await?;
            self.table.replace(&current, new_files).await?;
            written += 1;
        }
        // Dates whose readings are gone (none are, today) keep no rollup.
        for (date, files) in &rollups {
            if !dates.contains_key(date) && matches!(scope, Scope::Stale) {
                self.table.replace(files, Vec::new()).await?;
            }
        }
        Ok(written)
    }

    async fn compute(
        &self,
        readings: &LoggedTable,
        files: &[TableFile],
    ) -> Result<DataFrame, LoggedTableError> {
        let resolved = readings.read_resolved(files).await?;
        blocking(move || rollup::rollup_rows(&resolved)).await
    }

    /// Recomputes every date from its readings and compares with what is stored: any stale or
    /// missing date, any row whose energy differs by more than 1e-9 relative, any count that
    /// differs.
    pub async fn verify(
        &self,
        readings: &LoggedTable,
    ) -> Result<Vec<Difference>, LoggedTableError> {
        let dates = readings.date_files(None).await?;
        let rollups = partitions(self.table.files(None).await?);
        let mut differences = Vec::new();
        for (date, files) in &dates {
            let difference = |detail: String| Difference {
                date: date.clone(),
                detail,
            };
            let stored = rollups.get(date).cloned().unwrap_or_default();
            let source = fingerprint(files);
            let pairs = Level::ALL.map(|level| (level, file_of(&stored, level, &source).cloned()));
            if stored.is_empty() {
                differences.push(difference("missing".into()));
                continue;
            }
            if stored.len() > Level::ALL.len() {
                differences.push(difference(format!("{} rollup files", stored.len())));
                continue;
            }
            let missing: Vec<_> = (pairs.iter())
                .filter(|(_, file)| file.is_none())
                .map(|(level, _)| format!("{level:?}"))
                .collect();
            if !missing.is_empty() {
                differences.push(difference(format!(
                    "stale: no {} file computed from these readings files",
                    missing.join(" or ")
                )));
                continue;
            }
            let fresh = self.compute(readings, files).await?;
            for (level, file) in pairs {
                let Some(file) = file else { continue };
                let stored = self
                    .read(vec![file], None, None, (i64::MIN / 2, i64::MAX / 2))
                    .await?;
                let fresh = fresh.clone();
                let found = blocking(move || compare(&stored, &level.rows(&fresh)?)).await?;
                differences.extend(
                    found
                        .into_iter()
                        .map(|d| difference(format!("{level:?}: {d}"))),
                );
            }
        }
        Ok(differences)
    }

    /// Keeps the rollups fresh: after every flush or compaction of the readings, and every
    /// `interval` (other replicas' commits show there).
    pub fn spawn_refresher(
        self: &Arc<Self>,
        readings: Arc<LoggedTable>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let rollups = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = readings.committed() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
                let Some(this) = rollups.upgrade() else {
                    return;
                };
                match this.refresh(&readings, Scope::Stale).await {
                    Ok(0) => {}
                    Ok(dates) => tracing::debug!(dates, "refreshed energy rollups"),
                    Err(error) => {
                        tracing::warn!(error = %error, "refreshing energy rollups failed; reports read the readings meanwhile")
                    }
                }
            }
        })
    }
}

/// Where `stored` and `fresh` rollup rows differ, described.
fn compare(stored: &DataFrame, fresh: &DataFrame) -> PolarsResult<Vec<String>> {
    let keys = [SITE, CUSTOMER, WORKLOAD, SLOT];
    // |stored - fresh| > 1e-9 |stored|, squared (no `abs` in the polars features we build).
    let difference = col(ENERGY_J) - col(format!("{ENERGY_J}_right"));
    let magnitude = col(ENERGY_J) * col(ENERGY_J) + lit(1e-18);
    let joined = stored
        .clone()
        .lazy()
        .join(
            fresh.clone().lazy(),
            keys.map(col),
            keys.map(col),
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .filter(
            col(ENERGY_J)
                .is_null()
                .or(col(format!("{ENERGY_J}_right")).is_null())
                .or((difference.clone() * difference).gt(lit(1e-18) * magnitude))
                .or(col(STARTED).neq(col(format!("{STARTED}_right"))))
                .or(col(CROSSING).neq(col(format!("{CROSSING}_right")))),
        )
        .limit(20)
        .collect()?;
    let described = format!("{joined}");
    Ok(match joined.height() {
        0 => Vec::new(),
        rows => vec![format!(
            "{rows} or more rows differ (stored, then recomputed):\n{described}"
        )],
    })
}
