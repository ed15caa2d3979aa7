//! Ingest throughput over loopback HTTP: JSON, NDJSON and Arrow IPC batches of 10,000 readings from
//! several connections, with the write-ahead log fsynced (durable) and not. Prints readings/s, p50
//! and p99 batch latency, and the ratios. Run: `cargo bench --bench ingest`.
#[path = "support/bodies.rs"]
mod bodies;
mod support;

use carbon_ledger::config::Settings;

use bodies::{body, Body, BATCH};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TOKEN;

const CONNECTIONS: usize = 4;
const SECONDS_PER_RUN: u64 = 6;

struct Outcome {
    readings_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(format: &str, durable: bool) -> Outcome {
    let server = support::start(Settings {
        durable_ingest: durable,
        ..Settings::default()
    })
    .await;
    let (base, client) = (server.base.clone(), server.client.clone());
    for (path, body) in [
        (
            "/v1/sites/fra1",
            json!({"name": "F", "zone": "DE", "pue": 1.3}),
        ),
        ("/v1/customers/acme", json!({"name": "Acme"})),
    ] {
        client
            .put(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    // Bodies are encoded before the clock starts: the client's cost is not the server's.
    let bodies: Vec<Vec<Body>> = (0..CONNECTIONS)
        .map(|c| (0..8).map(|n| body(format, c, n)).collect())
        .collect();
    let bodies = Arc::new(bodies);
    let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_RUN);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (client, base, bodies) = (client.clone(), base.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let body = &bodies[c][n % bodies[c].len()];
                    let sent = Instant::now();
                    let response = bodies::post(&client, &base, body).await;
                    assert_eq!(
                        response.status(),
                        200,
                        "{}",
                        response.text().await.unwrap_or_default()
                    );
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.stop().await;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Outcome {
        readings_per_s: (latencies.len() * BATCH) as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("ingest over loopback HTTP: {CONNECTIONS} connections, {BATCH} readings per batch, {SECONDS_PER_RUN} s per run");
    println!(
        "{:<8} {:>9} {:>14} {:>9} {:>9}",
        "format", "durable", "readings/s", "p50 ms", "p99 ms"
    );
    let mut results = Vec::new();
    for format in ["json", "ndjson", "arrow"] {
        for durable in [false, true] {
            let outcome = run(format, durable).await;
            println!(
                "{format:<8} {durable:>9} {:>14.0} {:>9.1} {:>9.1}",
                outcome.readings_per_s, outcome.p50_ms, outcome.p99_ms
            );
            results.push((format, durable, outcome));
        }
    }
    let rate = |f: &str, d: bool| {
        results
            .iter()
            .find(|r| r.0 == f && r.1 == d)
            .map(|r| r.2.readings_per_s)
            .unwrap_or(f64::NAN)
    };
    for format in ["json", "ndjson", "arrow"] {
        println!(
            "{format}: durable / not durable = {:.2}",
            rate(format, true) / rate(format, false)
        );
    }
    println!(
        "arrow / ndjson (durable) = {:.1}x",
        rate("arrow", true) / rate("ndjson", true)
    );
}
