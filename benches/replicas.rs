//! Several replicas on one shared store: durable ingest readings/s with one, two and three replicas
//! (NDJSON and Arrow IPC, four connections spread over the replicas), then a customer's month
//! report on a replica that ingested and on one that started afterwards and ingested nothing.
//! The store is `BENCH_STORAGE_URL` (an `s3://` URL, with the `AWS_*` variables for its endpoint
//! and keys) or, by default, a directory every replica shares. All replicas run in this process,
//! so they share this machine's cores: the figures show the cost of sharing the store, not a
//! cluster's capacity. Run: `cargo bench --bench replicas`.
#[path = "support/bodies.rs"]
mod bodies;
mod support;

use bodies::{body, BATCH};
use carbon_ledger::config::Settings;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{BenchServer, TOKEN};

const CONNECTIONS: usize = 4;
const SECONDS_PER_RUN: u64 = 6;

fn replica_settings(storage_url: &str) -> Settings {
    Settings {
        storage_url: Some(storage_url.to_owned()),
        registry_poll_s: 1,
        table_poll_s: 1,
        ..Settings::default()
    }
}

async fn replicas(storage_url: &str, count: usize) -> Vec<BenchServer> {
    let mut started = Vec::new();
    for _ in 0..count {
        started.push(support::start(replica_settings(storage_url)).await);
    }
    let first = &started[0];
    for (path, body) in [
        (
            "/v1/sites/fra1",
            json!({"name": "F", "zone": "DE", "pue": 1.3}),
        ),
        ("/v1/customers/acme", json!({"name": "Acme"})),
    ] {
        let response = first
            .client
            .put(format!("{}{path}", first.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    for replica in &started {
        wait_for_site(replica).await;
    }
    started
}

/// Until the replica has read the site from the shared registry.
async fn wait_for_site(replica: &BenchServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let response = replica
            .client
            .get(format!("{}/v1/sites/fra1", replica.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the site never reached {}", replica.base);
}

/// Readings/s acknowledged by `servers` together, connection `c` posting to server `c % n`.
async fn ingest(servers: &[BenchServer], format: &str, round: usize) -> f64 {
    let bodies: Vec<Vec<bodies::Body>> = (0..CONNECTIONS)
        .map(|c| (0..4).map(|n| body(format, c, round * 4 + n)).collect())
        .collect();
    let bodies = Arc::new(bodies);
    let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_RUN);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let server = &servers[c % servers.len()];
            let (client, base, bodies) =
                (server.client.clone(), server.base.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut batches = 0;
                while Instant::now() < deadline {
                    let body = &bodies[c][batches % bodies[c].len()];
                    assert_eq!(bodies::post(&client, &base, body).await.status(), 200);
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    let mut batches = 0;
    for task in tasks {
        batches += task.await.unwrap();
    }
    (batches * BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// Median of five runs of acme's hourly month report, after one unmeasured run.
async fn report_ms(server: &BenchServer) -> (f64, f64) {
    let url = format!(
        "{}/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z&granularity=hour",
        server.base
    );
    let mut times = Vec::new();
    let mut energy = 0.0;
    for run in 0..6 {
        let sent = Instant::now();
        let report: serde_json::Value = server
            .client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run > 0 {
            times.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        energy = report["totals"]["it_energy_kwh"].as_f64().unwrap();
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], energy)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shared = tempfile::tempdir().unwrap();
    let root = std::env::var("BENCH_STORAGE_URL")
        .unwrap_or_else(|_| shared.path().to_string_lossy().into_owned());
    println!("replicas on {root}: {CONNECTIONS} connections, {BATCH} readings a batch, durable, {SECONDS_PER_RUN} s a run");
    println!(
        "{:<8} {:>9} {:>14} {:>12}",
        "format", "replicas", "readings/s", "vs 1 replica"
    );
    let mut last = Vec::new();
    for format in ["ndjson", "arrow"] {
        let mut baseline = f64::NAN;
        for count in 1..=3 {
            let storage_url = format!("{}/bench-{format}-{count}", root.trim_end_matches('/'));
            let servers = replicas(&storage_url, count).await;
            let rate = ingest(&servers, format, 0).await;
            if count == 1 {
                baseline = rate;
            }
            println!(
                "{format:<8} {count:>9} {rate:>14.0} {:>12.2}",
                rate / baseline
            );
            if format == "arrow" && count == 3 {
                last = servers;
            } else {
                for server in servers {
                    server.stop().await;
                }
            }
        }
    }
    // The month report where the readings were posted, and on a replica that started afterwards,
    // once every replica's log is in the table (flush_interval_s) and the reader has polled.
    let storage_url = format!("{}/bench-arrow-3", root.trim_end_matches('/'));
    let reader = support::start(replica_settings(&storage_url)).await;
    wait_for_site(&reader).await;
    let (_, all_kwh) = report_ms(&last[0]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while report_ms(&reader).await.1 < all_kwh - 1e-6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (ingested_ms, ingested_kwh) = report_ms(&last[0]).await;
    let (reader_ms, reader_kwh) = report_ms(&reader).await;
    assert!(
        (ingested_kwh - reader_kwh).abs() < 1e-6,
        "{ingested_kwh} vs {reader_kwh}"
    );
    println!("month report, hourly: {ingested_ms:.1} ms on a replica that ingested, {reader_ms:.1} ms on one that did not (ratio {:.2}), {reader_kwh:.3} kWh on both", reader_ms / ingested_ms);
    reader.stop().await;
    for server in last {
        server.stop().await;
    }
}
