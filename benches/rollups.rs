//! Reports from energy rollups at data-center scale (DESIGN §7): a year of 1-minute readings for
//! 400 workloads (210 M readings; 4 customers, 3 sites in 2 zones, 30-minute intensity), loaded
//! over HTTP as Arrow, served with the read cache off. Prints one customer's hourly month report
//! and daily year report (p50 and p99 of 20 warm runs), the same right after 10,000 late re-sent
//! readings and after an intensity revision, a full-year CSV export of all customers per day and
//! workload (time, peak RSS), the server's resident memory, and the same reports from the
//! readings alone (rollups off, same data directory) for the ratio.
//! Run: `cargo bench --bench rollups`; `BENCH_WORKLOADS` and `BENCH_DAYS` scale it down.
#[path = "support/readings.rs"]
mod readings;
mod support;

use carbon_ledger::config::Settings;
use carbon_ledger::storage::rollups::Scope;
use polars::prelude::*;
use readings::ReadingColumns;
use serde_json::json;
use std::time::Instant;
use support::{BenchServer, TOKEN};

const START_US: i64 = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z: a whole year in the past
const STEP_S: i64 = 60;
const SITES: [(&str, &str, f64); 3] = [
    ("lon1", "GB", 1.2),
    ("lon2", "GB", 1.3),
    ("fra1", "DE", 1.4),
];
const MONTH: &str =
    "from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z&granularity=hour&group_by=site";

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn workloads() -> i64 {
    setting("BENCH_WORKLOADS", 400)
}

fn days() -> i64 {
    setting("BENCH_DAYS", 365)
}

fn year() -> String {
    let to = chrono::DateTime::from_timestamp_micros(START_US + days() * 86_400_000_000).unwrap();
    format!(
        "from=2025-01-01T00:00:00Z&to={}&granularity=day&group_by=site",
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One day of readings of every workload, as Arrow IPC bodies of 100,000 rows. `scale` changes
/// the energy (a re-send with other values).
fn day_bodies(day: i64, scale: f64, only: Option<usize>) -> Vec<Vec<u8>> {
    let per_day = 86_400 / STEP_S;
    let count = only.unwrap_or((per_day * workloads()) as usize);
    let mut columns = ReadingColumns::with_capacity(count);
    for i in 0..count as i64 {
        let (w, minute) = match only {
            // Late re-sends: spread over the day and the workloads.
            Some(_) => ((i * 7919) % workloads(), (i * 104_729) % per_day),
            None => (i / per_day, i % per_day),
        };
        columns.site.push(SITES[(w % 3) as usize].0);
        columns.customer.push(format!("c{}", w % 4));
        columns.workload.push(format!("w{w:03}"));
        columns
            .start_us
            .push(START_US + (day * per_day + minute) * STEP_S * 1_000_000);
        columns.energy_j.push(Some(
            scale * (100.0 + (minute % 97) as f64 + w as f64) * STEP_S as f64,
        ));
    }
    let n = columns.start_us.len();
    let frame = columns.into_frame(STEP_S);
    let mut bodies = Vec::new();
    let mut offset = 0;
    while offset < n {
        let mut chunk = frame.slice(offset as i64, 100_000);
        offset += chunk.height();
        let mut body = Vec::new();
        IpcStreamWriter::new(&mut body).finish(&mut chunk).unwrap();
        bodies.push(body);
    }
    bodies
}

async fn post(server: &BenchServer, path: &str, content_type: &str, body: Vec<u8>) {
    let url = format!("{}{path}", server.base);
    let request = server.client.post(url).header("content-type", content_type);
    server.send(request.body(body), path).await;
}

async fn intensity(server: &BenchServer, revision: bool) {
    let half_hours = if revision { 48 } else { days() * 48 + 4 };
    let first = if revision { 14 } else { 0 } * 48; // the revision: January 15
    for (z, zone) in ["GB", "DE"].iter().enumerate() {
        let points: Vec<_> = (first..first + half_hours)
            .map(|h| {
                let start = chrono::DateTime::from_timestamp_micros(START_US + h * 1_800_000_000).unwrap();
                let value = 150.0 + 100.0 * z as f64 + (h % 48) as f64 * 3.0 + if revision { 7.0 } else { 0.0 };
                json!({"start": start, "end": start + chrono::Duration::minutes(30), "gco2e_per_kwh": value, "kind": "actual"})
            })
            .collect();
        for chunk in points.chunks(20_000) {
            let source = if revision { "revision" } else { "bench" };
            let push =
                json!({"zone": zone, "source": source, "signal": "average", "points": chunk});
            post(
                server,
                "/v1/intensity",
                "application/json",
                push.to_string().into_bytes(),
            )
            .await;
        }
    }
}

async fn put(server: &BenchServer, path: &str, body: serde_json::Value) {
    let url = format!("{}{path}", server.base);
    server.send(server.client.put(url).json(&body), path).await;
}

async fn register(server: &BenchServer) {
    for (site, zone, pue) in SITES {
        let body = json!({"name": site, "zone": zone, "pue": pue});
        put(server, &format!("/v1/sites/{site}"), body).await;
    }
    for c in 0..4 {
        let body = json!({"name": format!("Customer {c}")});
        put(server, &format!("/v1/customers/c{c}"), body).await;
    }
}

/// Flushes the readings and brings the rollups up to date. Returns the seconds it took.
async fn settle(server: &BenchServer) -> f64 {
    let started = Instant::now();
    server.readings.flush().await.unwrap();
    if let Some(rollups) = &server.rollups {
        while rollups
            .refresh(&server.readings, Scope::Stale)
            .await
            .unwrap()
            > 0
        {}
    }
    started.elapsed().as_secs_f64()
}

/// (p50, p99) milliseconds of `runs` requests of c1's report with `query`, after one warm-up.
async fn timings(server: &BenchServer, query: &str, runs: usize) -> (f64, f64) {
    let url = format!("{}/v1/customers/c1/footprint?{query}", server.base);
    let mut ms = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        let response = server
            .client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await.unwrap();
        if run > 0 {
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.5), at(0.99))
}

fn print_timings(what: &str, (p50, p99): (f64, f64), target: &str) {
    println!("{what:<58} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms  {target}");
}

async fn run() {
    let settings = Settings {
        read_cache_rows: 0,
        flush_interval_s: 5,
        durable_ingest: false,
        ..Settings::default()
    };
    let server = support::start(settings.clone()).await;
    register(&server).await;
    intensity(&server, false).await;
    let loading = Instant::now();
    for day in 0..days() {
        for body in day_bodies(day, 1.0, None) {
            post(
                &server,
                "/v1/readings",
                "application/vnd.apache.arrow.stream",
                body,
            )
            .await;
        }
    }
    let loaded = loading.elapsed().as_secs_f64();
    let settled = settle(&server).await;
    let readings = days() * workloads() * 86_400 / STEP_S;
    println!(
        "loaded {readings} readings ({} workloads x {} days of {STEP_S} s) over HTTP (Arrow) in {loaded:.0} s \
         ({:.2} M readings/s); flushed and rolled up in {settled:.0} s more",
        workloads(),
        days(),
        readings as f64 / loaded / 1e6
    );
    println!(
        "resident memory once loaded, before any report: {:.0} MB",
        rss_mb()
    );
    // The server gives back what its idle threads hold free every `release_memory_s`.
    tokio::time::sleep(std::time::Duration::from_secs(
        settings.release_memory_s + 1,
    ))
    .await;
    println!(
        "resident memory {} s later (the allocator's release): {:.0} MB",
        settings.release_memory_s + 1,
        rss_mb()
    );
    let runs = setting("BENCH_RUNS", 20) as usize;
    let month = timings(&server, MONTH, runs).await;
    print_timings(
        "rollups: c1 hourly month report (per site)",
        month,
        "(target p50 < 50 ms)",
    );
    let year_query = year();
    let year = timings(&server, &year_query, runs).await;
    print_timings(
        "rollups: c1 daily year report (per site)",
        year,
        "(target p50 < 250 ms)",
    );
    println!(
        "server resident memory while serving: {:.0} MB (bench process: server + client)",
        rss_mb()
    );

    for body in day_bodies(9, 1.5, Some(10_000)) {
        post(
            &server,
            "/v1/readings",
            "application/vnd.apache.arrow.stream",
            body,
        )
        .await;
    }
    let resent = timings(&server, MONTH, runs).await;
    print_timings(
        "rollups: month report after 10,000 late re-sends (in log)",
        resent,
        "",
    );
    let resettled = settle(&server).await;
    let refreshed = timings(&server, MONTH, runs).await;
    print_timings(
        &format!("rollups: the same once flushed and rolled up ({resettled:.1} s)"),
        refreshed,
        "",
    );
    intensity(&server, true).await;
    let revised = timings(&server, MONTH, runs).await;
    print_timings(
        "rollups: month report after an intensity revision",
        revised,
        "(no rebuild)",
    );
    let revised_year = timings(&server, &year_query, runs).await;
    print_timings(
        "rollups: year report after an intensity revision",
        revised_year,
        "",
    );

    reset_peak();
    let before = rss_mb();
    let export = format!(
        "{}/v1/footprint?{}&format=csv",
        server.base,
        year_query.replace("group_by=site", "group_by=customer,workload")
    );
    let started = Instant::now();
    let mut response = server
        .client
        .get(&export)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let first_byte = started.elapsed().as_secs_f64();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    println!(
        "rollups: full-year CSV export (day x customer x workload): {lines} lines, {:.1} MB in {:.2} s \
         (first byte {first_byte:.2} s); peak RSS {:.0} MB, {before:.0} MB before (target < 1 GB)",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );

    let dir = server.stop().await;
    let raw_settings = Settings {
        energy_rollups: false,
        ..settings
    };
    let raw = support::start_in(raw_settings, dir).await;
    let raw_runs = setting("BENCH_RAW_RUNS", 5) as usize;
    let raw_month = timings(&raw, MONTH, raw_runs).await;
    print_timings("readings only: c1 hourly month report", raw_month, "");
    let raw_year = timings(&raw, &year_query, raw_runs).await;
    print_timings("readings only: c1 daily year report", raw_year, "");
    println!(
        "rollups vs readings (p50): month {:.1}x, year {:.1}x faster (target >= 20x)",
        raw_month.0 / revised.0,
        raw_year.0 / revised_year.0
    );
    raw.stop().await;
}

fn main() {
    carbon_ledger::accounting::prefer_streaming_engine(); // as the server's main does
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}
