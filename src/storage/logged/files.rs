//! Frames to and from the table's files and the log: `seq`, newest-wins, date partitions, Parquet.
use super::*;
use rayon::prelude::*;

pub(super) fn with_seq(frame: DataFrame, lsn: Lsn) -> PolarsResult<DataFrame> {
    let base = (lsn as i64) << 20;
    let seq: Vec<i64> = (0..frame.height() as i64).map(|row| base | row).collect();
    let mut frame = frame;
    frame.with_column(Column::new(SEQ.into(), seq))?;
    Ok(frame)
}

pub(super) fn decode_payload(payload: &[u8]) -> PolarsResult<DataFrame> {
    IpcStreamReader::new(Cursor::new(payload)).finish()
}

/// Keeps the newest of rows sent again (all rows for tables without an identity).
pub(super) fn newest_wins(frame: LazyFrame, spec: &TableSpec) -> LazyFrame {
    match spec.identity {
        Some(identity) => frame
            .sort([SEQ], SortMultipleOptions::default())
            .unique_stable(
                Some(cols(identity.iter().copied())),
                UniqueKeepStrategy::Last,
            ),
        None => frame,
    }
}

/// Flushed files live until compaction rewrites them: they favour a cheap codec (LZ4, which
/// costs the ingest's cores far less than zstd at these rates); compacted files favour size.
pub(crate) fn parquet_bytes(
    frame: &mut DataFrame,
    compression: ParquetCompression,
) -> PolarsResult<Bytes> {
    let mut out = Vec::new();
    // Row groups small enough that a scan for one customer skips the others' (by statistics).
    ParquetWriter::new(&mut out)
        .with_compression(compression)
        .with_row_group_size(Some(65_536))
        .finish(frame)?;
    Ok(Bytes::from(out))
}

pub(super) fn day_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Files grouped by their date partition, dates in order.
pub(crate) fn partitions(files: Vec<TableFile>) -> BTreeMap<String, Vec<TableFile>> {
    let mut dates: BTreeMap<String, Vec<TableFile>> = BTreeMap::new();
    for file in files {
        dates.entry(file.date.clone()).or_default().push(file);
    }
    dates
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub(super) fn day_number(date: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(
        date.signed_duration_since(chrono::DateTime::UNIX_EPOCH.date_naive())
            .num_days(),
    )
}

/// The UTC dates (`YYYY-MM-DD`) that rows of `frames` fall on.
pub(super) fn dates_of(frames: &[DataFrame], time: &str) -> PolarsResult<BTreeSet<String>> {
    Ok(days_of(frames, time)?
        .into_iter()
        .map(|day| day_of(day * MICROS_PER_DAY))
        .collect())
}

/// The days since 1970-01-01 (UTC) that rows of `frames` fall on.
pub(super) fn days_of(frames: &[DataFrame], time: &str) -> PolarsResult<BTreeSet<i64>> {
    let mut days = BTreeSet::new();
    for frame in frames {
        let starts = frame.column(time)?.datetime()?.physical();
        days.extend(
            starts
                .iter()
                .flatten()
                .map(|us| us.div_euclid(MICROS_PER_DAY)),
        );
    }
    Ok(days)
}

/// One Parquet file per UTC date of the time column. Rows sent again are left for reads and
/// compaction to resolve: resolving them here (a sort and a hash over every flushed row) took CPU
/// from ingest on the hot path.
pub(super) fn files_by_date(
    frames: Vec<DataFrame>,
    spec: &TableSpec,
) -> PolarsResult<Vec<NewFile>> {
    let lazies: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
    let all = concat(lazies, UnionArgs::default())?.collect()?;
    let starts = all.column(spec.time_column)?.datetime()?.physical().clone();
    let days: Vec<i64> = starts
        .iter()
        .map(|us| us.unwrap_or_default().div_euclid(MICROS_PER_DAY))
        .collect();
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let day_column = Int64Chunked::from_vec("day".into(), days);
    let mut files = Vec::with_capacity(distinct.len());
    for day in distinct {
        let mask = day_column.equal(day);
        let mut part = all.filter(&mask)?;
        files.push(NewFile {
            date: day_of(day * MICROS_PER_DAY),
            rows: part.height(),
            parquet: parquet_bytes(&mut part, ParquetCompression::Lz4Raw)?,
            resolved: false,
            source: None,
        });
    }
    Ok(files)
}

/// Data files fetched from the store (whichever it is) scanned as Parquet held in memory.
pub(super) fn scan_files(
    contents: Vec<Bytes>,
    spec: &TableSpec,
) -> PolarsResult<Option<LazyFrame>> {
    scan_parquet(contents, file_schema(spec)?)
}

/// Files up to this size are read whole, side by side, rather than scanned: a report reads tens
/// to hundreds of small files (a date's intensity, a date's rollup per customer), and a scan
/// spends more on setting up each file than on its rows. Larger files (readings) are scanned, so
/// that filters apply while they are read.
const READ_WHOLE_BYTES: usize = 256 * 1024;
/// At most this much is read whole at once: many small files (a long range of a quiet table)
/// are scanned, so that memory holds what the filters keep rather than every row.
const READ_WHOLE_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// Whether files of these sizes are read whole rather than scanned.
pub(crate) fn reads_whole(sizes: impl IntoIterator<Item = usize>) -> bool {
    let mut total = 0;
    for size in sizes {
        total += size;
        if size > READ_WHOLE_BYTES || total > READ_WHOLE_TOTAL_BYTES {
            return false;
        }
    }
    true
}

/// Whether `files` are read whole rather than scanned.
pub(crate) fn reads_whole_files(files: &[TableFile]) -> bool {
    reads_whole(
        files
            .iter()
            .map(|f| usize::try_from(f.size).unwrap_or(usize::MAX)),
    )
}

/// The columns of a table's files: the spec's and `seq`.
pub(super) fn file_schema(spec: &TableSpec) -> PolarsResult<Schema> {
    let mut schema = (spec.empty)()?.schema().as_ref().clone();
    schema.with_column(SEQ.into(), DataType::Int64);
    Ok(schema)
}

/// Parquet files held in memory as one scan with `schema` (columns a file lacks read as nulls).
pub(crate) fn scan_parquet(
    contents: Vec<Bytes>,
    schema: Schema,
) -> PolarsResult<Option<LazyFrame>> {
    if contents.is_empty() {
        return Ok(None);
    }
    if reads_whole(contents.iter().map(Bytes::len)) {
        let frames = read_all_whole(&contents, &schema)?;
        return Ok(Some(stacked(frames, &schema)?.lazy()));
    }
    let sources = ScanSources::Buffers(
        contents
            .into_iter()
            .map(|bytes| Vec::from(bytes).into())
            .collect(),
    );
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        schema: Some(Arc::new(schema)),
        allow_missing_columns: true,
        ..Default::default()
    };
    LazyFrame::scan_parquet_sources(sources, args).map(Some)
}

/// A batch logged before the spec gained a column, given that column as nulls.
pub(super) fn conform(mut frame: DataFrame, spec: &TableSpec) -> PolarsResult<DataFrame> {
    for field in (spec.empty)()?.schema().iter_fields() {
        if frame.column(field.name()).is_err() {
            let nulls = Column::full_null(field.name().clone(), frame.height(), field.dtype());
            frame.with_column(nulls)?;
        }
    }
    Ok(frame)
}

/// Each of the Parquet files `contents` decoded whole with `schema`, side by side.
pub(crate) fn read_all_whole(contents: &[Bytes], schema: &Schema) -> PolarsResult<Vec<DataFrame>> {
    (contents.par_iter())
        .map(|file| read_whole(file, schema))
        .collect()
}

/// `frames` one after another, with `schema`'s columns.
pub(crate) fn stacked(
    frames: impl IntoIterator<Item = DataFrame>,
    schema: &Schema,
) -> PolarsResult<DataFrame> {
    let mut all = DataFrame::empty_with_schema(schema);
    for frame in frames {
        all.vstack_mut(&frame)?;
    }
    Ok(all)
}

/// One Parquet file's rows with `schema`'s columns, in its order and types.
fn read_whole(file: &Bytes, schema: &Schema) -> PolarsResult<DataFrame> {
    let frame = ParquetReader::new(std::io::Cursor::new(file))
        .read_parallel(ParallelStrategy::None)
        .finish()?;
    let columns = (schema.iter())
        .map(|(name, dtype)| match frame.column(name) {
            Ok(column) => column.cast(dtype),
            Err(_) => Ok(Column::full_null(name.clone(), frame.height(), dtype)),
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(frame.height(), columns)
}
