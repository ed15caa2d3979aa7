//! Prometheus remote-write over loopback HTTP, durable: samples/s for realistic series counts
//! (10,000 series, 2,000 samples a request, several connections), beside NDJSON readings/s
//! measured in the same run as the baseline. Run on demand: `cargo bench --bench remote_write`
//! (`BENCH_REQUESTS`, 1,000 by default, sets how many requests each run has ready to send, and
//! `BENCH_SECONDS` the longest a run may take). Each path runs twice, remote-write first and
//! last, and its figures are over both runs. Then the two stages of a request that are
//! remote-write's own, decoding and converting series into windows, timed on one thread: steadier
//! than the end-to-end figures on a machine whose speed moves between runs.
mod support;

use carbon_ledger::config::Settings;
use carbon_ledger::domain::mapping::Unit;
use carbon_ledger::sources::protobuf::encode;
use carbon_ledger::sources::remote_write::{decode_version, Version};
use carbon_ledger::sources::series::{Counts, Resolution, State, Target, Windows, Writing};
use carbon_ledger::sources::Series;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TOKEN;

const SERIES: usize = 10_000;
const SAMPLES_PER_REQUEST: usize = 2_000;
const CONNECTIONS: usize = 4;
const T0_MS: i64 = 1_772_355_600_000; // 2026-03-01T09:00:00Z

fn seconds_per_run() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Request `n` of a stream that walks over every series, one sample each, 15 s apart per round.
fn remote_write_body(n: usize) -> Vec<u8> {
    let first = n * SAMPLES_PER_REQUEST;
    let names: Vec<String> = (first..first + SAMPLES_PER_REQUEST)
        .map(|i| format!("c{}", i % SERIES))
        .collect();
    let rounds: Vec<i64> = (first..first + SAMPLES_PER_REQUEST)
        .map(|i| (i / SERIES) as i64)
        .collect();
    let labels: Vec<[(&str, &str); 4]> = names
        .iter()
        .map(|name| {
            [
                ("__name__", "kepler_container_cpu_joules_total"),
                ("container_name", name.as_str()),
                ("node_name", "fra1-n1"),
                ("zone", "package"),
            ]
        })
        .collect();
    let samples: Vec<[(i64, f64); 1]> = rounds
        .iter()
        .map(|&round| [(T0_MS + round * 15_000, round as f64 * 150.0)])
        .collect();
    encode::write_request(
        labels
            .iter()
            .zip(&samples)
            .map(|(l, s)| (l.as_slice(), s.as_slice())),
    )
}

fn ndjson_body(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..SAMPLES_PER_REQUEST {
        let at = chrono::DateTime::from_timestamp_millis(
            T0_MS + (n * SAMPLES_PER_REQUEST + i) as i64 * 10,
        )
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        out.push_str(
            &json!({"site": "fra1", "customer": "acme", "workload": format!("c{}", i % 100),
                "start": at, "duration_s": 10, "power_w": 120.5})
            .to_string(),
        );
        out.push('\n');
    }
    out.into_bytes()
}

/// One run of a path: how long it took, and each request's latency.
struct Run {
    elapsed_s: f64,
    latencies_ms: Vec<f64>,
}

/// A path's runs together: items a second over all of them, and the p99 of every request.
fn outcome(runs: &[Run]) -> (f64, f64) {
    let mut latencies: Vec<f64> = runs
        .iter()
        .flat_map(|run| run.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let elapsed_s: f64 = runs.iter().map(|run| run.elapsed_s).sum();
    let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
    (
        (latencies.len() * SAMPLES_PER_REQUEST) as f64 / elapsed_s,
        p99,
    )
}

/// Sends the bodies in order, spread over the connections, each connection in turn; a body
/// answered with anything but 2xx stops the benchmark.
async fn run(path: &str, content_type: &'static str, bodies: Arc<Vec<Vec<u8>>>) -> Run {
    let server = support::start(Settings {
        durable_ingest: true,
        ..Settings::default()
    })
    .await;
    let (base, client) = (server.base.clone(), server.client.clone());
    for (p, body) in [
        (
            "/v1/sites/fra1",
            json!({"name": "F", "zone": "DE", "pue": 1.3}),
        ),
        ("/v1/customers/acme", json!({"name": "Acme"})),
        (
            "/v1/telemetry/mappings/kepler",
            json!({"preset": "kepler", "site": "fra1", "customer": "acme"}),
        ),
    ] {
        server
            .send(client.put(format!("{base}{p}")).json(&body), p)
            .await;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds_per_run());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, bodies, next) = (
                client.clone(),
                format!("{base}{path}"),
                bodies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(n) else { break };
                    let sent = Instant::now();
                    let answer = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", content_type)
                        .header(
                            "content-encoding",
                            if content_type == "application/x-protobuf" {
                                "snappy"
                            } else {
                                "identity"
                            },
                        )
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        answer.status().is_success(),
                        "{}",
                        answer.text().await.unwrap_or_default()
                    );
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    server.stop().await;
    Run {
        elapsed_s,
        latencies_ms: latencies,
    }
}

/// Best of three passes over `bodies` on this thread: (decode, conversion) in ms a request. The
/// conversion is what a request does under the converter's lock: resolve (kept per series after
/// the first request, as the server does), convert, pick the due windows, log the change.
fn stages(bodies: &[Vec<u8>]) -> (f64, f64) {
    let windows = Windows {
        window_ms: 60_000,
        max_gap_ms: 600_000,
    };
    let kepler = |one: &Series| Resolution::Mapped {
        target: Arc::new(Target {
            site: "fra1".into(),
            customer: "acme".into(),
            workload: one.label("container_name").unwrap_or_default().into(),
            functional_unit: None,
            meter_kind: None,
        }),
        unit: Unit::JoulesTotal,
        until_ms: None,
    };
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let mut state = State::default();
        let (mut decoding, mut converting) = (Duration::ZERO, Duration::ZERO);
        for body in bodies {
            let started = Instant::now();
            let series = decode_version(body, Version::V1).unwrap();
            decoding += started.elapsed();
            let started = Instant::now();
            let mut counts = Counts::default();
            let changed = state.convert(&series, Some(1), kepler, windows, &mut counts);
            let due = state.due(Writing::Passed { after_ms: 60_000 }, 0, 0, windows);
            std::hint::black_box((due, state.delta(&changed, windows)));
            drop(series);
            converting += started.elapsed();
        }
        let per_request = |total: Duration| total.as_secs_f64() * 1000.0 / bodies.len() as f64;
        best.0 = best.0.min(per_request(decoding));
        best.1 = best.1.min(per_request(converting));
    }
    best
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    println!(
        "remote-write over loopback HTTP, durable: {SERIES} series, {SAMPLES_PER_REQUEST} samples a request, {CONNECTIONS} connections, {} s a run",
        seconds_per_run()
    );
    let remote_bodies = Arc::new((0..requests).map(remote_write_body).collect::<Vec<_>>());
    let ndjson_bodies = Arc::new((0..requests).map(ndjson_body).collect::<Vec<_>>());
    // Each path runs twice, in the order A B B A: neither gains from running second (on memory
    // the allocator already holds) or from the machine speeding up or slowing down meanwhile.
    let (mut remote, mut ndjson) = (Vec::new(), Vec::new());
    for remote_turn in [true, false, false, true] {
        if remote_turn {
            let bodies = remote_bodies.clone();
            remote.push(run("/api/v1/write", "application/x-protobuf", bodies).await);
        } else {
            let bodies = ndjson_bodies.clone();
            ndjson.push(run("/v1/readings", "application/x-ndjson", bodies).await);
        }
    }
    let (remote_per_s, remote_p99) = outcome(&remote);
    let (ndjson_per_s, ndjson_p99) = outcome(&ndjson);
    println!("remote-write  {remote_per_s:>12.0} samples/s   p99 {remote_p99:>7.1} ms");
    println!("ndjson        {ndjson_per_s:>12.0} readings/s  p99 {ndjson_p99:>7.1} ms");
    println!(
        "remote-write samples/s / ndjson readings/s = {:.2}",
        remote_per_s / ndjson_per_s
    );
    let (decode_ms, convert_ms) = stages(&remote_bodies);
    let per_sample_ns = |ms: f64| ms * 1e6 / SAMPLES_PER_REQUEST as f64;
    println!(
        "on one thread, a request: decode {decode_ms:.3} ms ({:.0} ns a sample), conversion {convert_ms:.3} ms ({:.0} ns a sample)",
        per_sample_ns(decode_ms),
        per_sample_ns(convert_ms)
    );
}
