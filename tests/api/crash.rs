//! kill -9 of the real server while clients post: every acknowledged reading must be there after.
use crate::helpers::ADMIN_TOKEN;
use crate::readings::stored;
use carbon_ledger::storage::readings::{ENERGY_J, WORKLOAD};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_carbon-ledger");
const CLIENTS: usize = 4;
const ROUNDS: usize = 3;
const ROWS_PER_BATCH: usize = 200;

fn start_server(dir: &Path, port: u16) -> Child {
    let config = dir.join("crash-test.toml");
    std::fs::write(&config, "flush_interval_s = 1\n").unwrap();
    Command::new(BINARY)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("CARBON_LEDGER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Row i of a workload starts i seconds into 2026-03-01 and carries i joules.
fn batch(workload: &str, first: usize) -> Value {
    let day_start: chrono::DateTime<chrono::Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
    let rows: Vec<Value> = (first..first + ROWS_PER_BATCH)
        .map(|i| {
            let start = day_start + chrono::Duration::seconds(i as i64);
            json!({"site": "fra1", "customer": "acme", "workload": workload,
                   "start": start.to_rfc3339(), "duration_s": 1, "energy_j": i as f64})
        })
        .collect();
    Value::Array(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_reading() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    // A request caught by the kill must end as an error, never hang the test: the kernel resets
    // the server's sockets, but a bounded wait does not rest on it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Acknowledged readings: workload -> highest first row index acknowledged in order.
    let acknowledged: Arc<Mutex<HashMap<String, usize>>> = Arc::default();

    for round in 0..ROUNDS {
        let mut server = start_server(dir.path(), port);
        wait_healthy(&client, &base).await;
        if round == 0 {
            for (path, body) in [
                (
                    "/v1/sites/fra1",
                    json!({"name": "F", "zone": "DE", "pue": 1.2}),
                ),
                ("/v1/customers/acme", json!({"name": "Acme"})),
            ] {
                let response = client
                    .put(format!("{base}{path}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        }
        let posters: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let client = client.clone();
                let base = base.clone();
                let acknowledged = acknowledged.clone();
                tokio::spawn(async move {
                    let workload = format!("client{c}-round{round}");
                    let mut first = 0;
                    while first + ROWS_PER_BATCH <= 86_400 {
                        let sent = client
                            .post(format!("{base}/v1/readings"))
                            .bearer_auth(ADMIN_TOKEN)
                            .json(&batch(&workload, first))
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status() == 200 => {
                                acknowledged
                                    .lock()
                                    .unwrap()
                                    .insert(workload.clone(), first + ROWS_PER_BATCH);
                                first += ROWS_PER_BATCH;
                            }
                            Ok(response) => panic!("unexpected {}", response.status()),
                            Err(_) => return, // the server is gone
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700 + 400 * round as u64)).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for poster in posters {
            poster.await.unwrap();
        }
    }

    let mut server = start_server(dir.path(), port);
    wait_healthy(&client, &base).await;
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());

    let frame = stored(&dir.path().join("data")).await;
    let workloads = frame.column(WORKLOAD).unwrap().str().unwrap().clone();
    let energy = frame.column(ENERGY_J).unwrap().f64().unwrap().clone();
    let mut found: HashMap<String, Vec<f64>> = HashMap::new();
    for (w, e) in workloads.iter().zip(energy.iter()) {
        found
            .entry(w.unwrap().to_owned())
            .or_default()
            .push(e.unwrap());
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let total: usize = acknowledged.values().sum();
    eprintln!(
        "acknowledged {total} readings in {} client rounds",
        acknowledged.len()
    );
    assert!(total > 0, "no batch was acknowledged before the kills");
    for (workload, rows) in &acknowledged {
        let energies = found.get(workload).cloned().unwrap_or_default();
        assert!(
            energies.len() >= *rows,
            "{workload}: {} stored < {rows} acknowledged",
            energies.len()
        );
        // Each reading is stored once, with its own value (row i has energy i).
        for (i, e) in energies.iter().enumerate() {
            assert_eq!(*e, i as f64, "{workload} row {i}");
        }
    }
}
