use super::*;
use crate::domain::reading::ReadingBatch;
use crate::storage::readings::{self, ENERGY_J, START, WORKLOAD};
use crate::storage::test_stores::TestStore;

const T0: i64 = 1_772_355_600_000_000; // 2026-03-01T09:00:00Z

fn batch(rows: &[(&str, i64, f64)]) -> PreparedBatch {
    batch_of("acme", rows)
}

fn batch_of(customer: &str, rows: &[(&str, i64, f64)]) -> PreparedBatch {
    let mut batch = ReadingBatch::default();
    for (workload, start, energy) in rows {
        batch.site.push("fra1");
        batch.customer.push(customer);
        batch.workload.push(workload);
        batch.start_us.push(*start);
        batch.duration_s.push(60);
        batch.energy_j.push(Some(*energy));
        batch.power_w.push(None);
    }
    LoggedTable::prepare(readings::frame(batch).unwrap()).unwrap()
}

async fn energies(store: &LoggedTable, version: Option<u64>) -> Vec<(String, f64)> {
    let scan = store
        .scan(
            T0 - 86_400_000_000,
            T0 + 86_400_000_000,
            Some("acme"),
            None,
            version,
        )
        .await
        .unwrap()
        .sort([WORKLOAD, START], SortMultipleOptions::default());
    let frame = blocking(move || scan.collect()).await.unwrap();
    let workloads = frame.column(WORKLOAD).unwrap().str().unwrap().clone();
    let energy = frame.column(ENERGY_J).unwrap().f64().unwrap().clone();
    workloads
        .iter()
        .zip(energy.iter())
        .map(|(w, e)| (w.unwrap().to_owned(), e.unwrap()))
        .collect()
}

fn options() -> LoggedTableOptions {
    LoggedTableOptions {
        compact_min_files: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_are_readable_before_and_after_a_flush_and_a_resend_replaces() {
    for dir in TestStore::all() {
        let store = open_store(&dir).await;
        store
            .append(batch(&[("api", T0, 100.0), ("db", T0, 5.0)]))
            .await
            .unwrap();
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 100.0), ("db".into(), 5.0)]
        );
        store.flush().await.unwrap();
        store.append(batch(&[("api", T0, 150.0)])).await.unwrap();
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 150.0), ("db".into(), 5.0)]
        );
        store.flush().await.unwrap();
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 150.0), ("db".into(), 5.0)]
        );
    }
}

async fn open_with(place: &TestStore, options: LoggedTableOptions) -> Arc<LoggedTable> {
    LoggedTable::open(
        &place.location,
        place.wal(),
        &place.replica,
        readings::SPEC,
        options,
    )
    .await
    .unwrap()
}

async fn open_store(dir: &TestStore) -> Arc<LoggedTable> {
    open_with(dir, options()).await
}

async fn open_with_cache(dir: &TestStore, cache_rows: usize) -> Arc<LoggedTable> {
    let options = LoggedTableOptions {
        cache_rows,
        ..options()
    };
    open_with(dir, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_warms_the_cache_with_the_newest_dates_that_fit() {
    let dir = TestStore::file();
    let day = 86_400_000_000;
    {
        let store = open_store(&dir).await;
        let rows = [("api", T0 - day, 1.0), ("api", T0, 2.0), ("db", T0, 3.0)];
        store.append(batch(&rows)).await.unwrap();
        store.flush().await.unwrap();
        let resent = [("api", T0 - day, 10.0), ("api", T0, 20.0)];
        store.append(batch(&resent)).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.compact().await.unwrap(), 2);
    }
    // Compacted dates are read into the cache as they are: resolved and sorted already.
    for (cache_rows, dates) in [(0, 0), (2, 1), (3, 2)] {
        let store = open_with_cache(&dir, cache_rows).await;
        let warmed = store.warm_cache().await.unwrap();
        assert_eq!(warmed, dates, "cache of {cache_rows} rows");
        let expected = [
            ("api".into(), 10.0),
            ("api".into(), 20.0),
            ("db".into(), 3.0),
        ];
        assert_eq!(energies(&store, None).await, expected, "{cache_rows}");
    }
}

#[test]
fn a_scan_bigger_than_the_cache_keeps_what_it_found_cached() {
    let mut cache = PartitionCache::new(10);
    let rows = |n: i32| df!("customer" => vec!["acme"; n as usize]).unwrap();
    let files = |date: &str| vec![format!("{date}.parquet")];
    let cached = |cache: &PartitionCache| {
        let mut dates: Vec<String> = cache.dates.keys().cloned().collect();
        dates.sort();
        dates
    };
    let scan = cache.stamp();
    for date in ["a", "b"] {
        cache.put(date.into(), files(date), rows(4), HashMap::new(), scan);
    }
    // The next scan reads a, then c: b, unused since, makes room.
    let scan = cache.stamp();
    assert!(cache.get("a", &files("a"), None).is_some());
    cache.put("c".into(), files("c"), rows(4), HashMap::new(), scan);
    assert_eq!(cached(&cache), ["a", "c"]);
    // A scan of a, c and d: d would push out a date of this very scan, so it is not cached.
    let scan = cache.stamp();
    assert!(cache.get("a", &files("a"), None).is_some());
    assert!(cache.get("c", &files("c"), None).is_some());
    cache.put("d".into(), files("d"), rows(4), HashMap::new(), scan);
    assert_eq!(cached(&cache), ["a", "c"]);
    assert_eq!(cache.rows, 8);
    // Files changed: the old rows are not handed out.
    assert!(cache.get("a", &files("a2"), None).is_none());
    // Larger than the whole cache: nothing is evicted for it.
    let scan = cache.stamp();
    cache.put("e".into(), files("e"), rows(11), HashMap::new(), scan);
    assert_eq!(cached(&cache), ["a", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_dates_give_way_to_resends_flushes_and_compaction_at_any_cache_size() {
    const NEXT_DAY: i64 = T0 + 16 * 3_600_000_000; // 2026-03-02T01:00:00Z
    for cache_rows in [0, 1, 1_000] {
        let dir = TestStore::file();
        let store = open_with_cache(&dir, cache_rows).await;
        store
            .append(batch(&[("api", T0, 100.0), ("db", NEXT_DAY, 5.0)]))
            .await
            .unwrap();
        // Another customer's rows around acme's in the sorted cache: never read for acme.
        for customer in ["aaa", "zzz"] {
            let rows = [("api", T0, 1.0), ("db", NEXT_DAY, 2.0), ("web", T0, 3.0)];
            store.append(batch_of(customer, &rows)).await.unwrap();
        }
        store.flush().await.unwrap();
        let files = store.table.files(None).await.unwrap();
        // Day 1: api of acme, aaa and zzz, web of aaa and zzz; day 2: db of all three.
        let mut rows: Vec<_> = files.iter().map(|f| f.rows).collect();
        rows.sort();
        assert_eq!(rows, [Some(3), Some(5)], "row counts from the statistics");
        let flushed = [("api".into(), 100.0), ("db".into(), 5.0)];
        assert_eq!(energies(&store, None).await, flushed, "{cache_rows}");
        assert_eq!(energies(&store, None).await, flushed, "{cache_rows}");
        // Only the next day is in the buffer; the first comes from the cache as it was.
        store.append(batch(&[("db", NEXT_DAY, 7.0)])).await.unwrap();
        let resent = [("api".into(), 100.0), ("db".into(), 7.0)];
        assert_eq!(energies(&store, None).await, resent, "{cache_rows}");
        store.flush().await.unwrap();
        assert_eq!(energies(&store, None).await, resent, "{cache_rows}");
        store.append(batch(&[("api", T0, 110.0)])).await.unwrap();
        store.flush().await.unwrap();
        let again = [("api".into(), 110.0), ("db".into(), 7.0)];
        assert_eq!(energies(&store, None).await, again, "{cache_rows}");
        assert_eq!(store.compact().await.unwrap(), 2, "{cache_rows}");
        assert_eq!(energies(&store, None).await, again, "{cache_rows}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_what_was_not_flushed_and_never_commits_twice() {
    for dir in TestStore::all() {
        {
            let store = open_store(&dir).await;
            store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
            store.flush().await.unwrap();
            store.append(batch(&[("db", T0, 2.0)])).await.unwrap();
        }
        let store = open_store(&dir).await;
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 1.0), ("db".into(), 2.0)]
        );
        store.flush().await.unwrap();
        drop(store);
        let store = open_store(&dir).await;
        assert_eq!(store.buffered_rows(), 0);
        let files = store.table.files(None).await.unwrap();
        assert_eq!(files.len(), 2, "one file per flush, none replayed twice");
        assert_eq!(
            energies(&store, None).await,
            [("api".into(), 1.0), ("db".into(), 2.0)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_newest_reading_and_old_versions_stay_readable() {
    for dir in TestStore::all() {
        let store = open_store(&dir).await;
        store.append(batch(&[("api", T0, 1.0)])).await.unwrap();
        store.flush().await.unwrap();
        let first = store.table_version().await.unwrap();
        store.append(batch(&[("api", T0, 7.0)])).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.compact().await.unwrap(), 1);
        assert_eq!(store.table.files(None).await.unwrap().len(), 1);
        assert_eq!(energies(&store, None).await, [("api".into(), 7.0)]);
        assert_eq!(energies(&store, Some(first)).await, [("api".into(), 1.0)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_is_filed_under_the_utc_date_of_its_start() {
    let dir = TestStore::file();
    let store = open_store(&dir).await;
    let late = T0 + 15 * 3_600_000_000 - 1; // 2026-03-01T23:59:59.999999Z
    store
        .append(batch(&[("a", late, 1.0), ("b", late + 1, 1.0)]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let mut dates: Vec<String> = store
        .table
        .files(None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.date)
        .collect();
    dates.sort();
    assert_eq!(dates, ["2026-03-01", "2026-03-02"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_cache_never_hides_what_another_replica_committed_to_a_cached_date() {
    for place in TestStore::all() {
        // Reads look for other replicas' commits only at a commit of their own, so the other
        // replica's commit lands while this one works from an older listing, as under load.
        let options = LoggedTableOptions {
            refresh_interval: std::time::Duration::from_secs(3600),
            compact_min_files: 2,
            ..Default::default()
        };
        let a = open_with(&place, options.clone()).await;
        let other_wal = tempfile::tempdir().unwrap();
        let other = crate::storage::replica::Replica {
            replica_id: "other".into(),
            legacy_wal: false,
        };
        let b = LoggedTable::open(
            &place.location,
            other_wal.path(),
            &other,
            readings::SPEC,
            options,
        )
        .await
        .unwrap();
        a.append(batch(&[("api", T0, 1.0)])).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(
            energies(&a, None).await,
            [("api".into(), 1.0)],
            "cached on a"
        );
        a.append(batch(&[("web", T0, 3.0)])).await.unwrap();
        a.flush().await.unwrap();
        // b commits to the date a has cached; a, not yet aware, compacts the date as it knows it.
        b.append(batch(&[("db", T0, 2.0)])).await.unwrap();
        b.flush().await.unwrap();
        assert_eq!(a.compact().await.unwrap(), 1);
        let all = [("api".into(), 1.0), ("db".into(), 2.0), ("web".into(), 3.0)];
        assert_eq!(
            energies(&a, None).await,
            all,
            "a sees b's rows after its compaction"
        );
        assert_eq!(energies(&b, None).await, all);
        // And after a flush of a's own that lands beside another of b's.
        b.append(batch(&[("ml", T0, 5.0)])).await.unwrap();
        b.flush().await.unwrap();
        a.append(batch(&[("etl", T0, 4.0)])).await.unwrap();
        a.flush().await.unwrap();
        let mut every: Vec<(String, f64)> = all.to_vec();
        every.extend([("etl".into(), 4.0), ("ml".into(), 5.0)]);
        every.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(energies(&a, None).await, every);
    }
}

#[test]
fn small_files_read_whole_keep_their_order_and_read_missing_columns_as_nulls() {
    let frame = |values: &[f64], with_label: bool| {
        let mut columns = vec![Column::new("x".into(), values.to_vec())];
        if with_label {
            columns.push(Column::new("label".into(), vec!["a"; values.len()]));
        }
        DataFrame::new(values.len(), columns).unwrap()
    };
    let older = parquet_bytes(&mut frame(&[3.0, 1.0], false), ParquetCompression::Lz4Raw).unwrap();
    let newer = parquet_bytes(&mut frame(&[2.0], true), ParquetCompression::Lz4Raw).unwrap();
    assert!(files::reads_whole([older.len(), newer.len()]));
    let schema = Schema::from_iter([
        Field::new("x".into(), DataType::Float64),
        Field::new("label".into(), DataType::String),
    ]);
    let read = scan_parquet(vec![older, newer], schema)
        .unwrap()
        .unwrap()
        .collect()
        .unwrap();
    let x: Vec<f64> = read
        .column("x")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(x, [3.0, 1.0, 2.0], "file order, then row order");
    let label: Vec<Option<&str>> = read
        .column("label")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(label, [None, None, Some("a")]);
}
