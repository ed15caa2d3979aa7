//! Operations: health, readiness, metrics, the contract, and the real binary's lifecycle.
use crate::helpers::spawn_app;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_carbon-ledger");

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = spawn_app().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = app.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status);
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/v1/sites/missing").await;
    app.get("/v1/sites/missing2").await;
    let text = app
        .call(reqwest::Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "http_requests_total{method=\"GET\",route=\"/v1/sites/{site}\",status=\"404\"} 2"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn metrics_show_ingest_counts_and_the_backlog_until_it_is_flushed() {
    let app = spawn_app().await;
    crate::readings::register(&app).await;
    let reading = |workload: &str| {
        serde_json::json!([{"site": "fra1", "customer": "acme", "workload": workload,
            "start": "2026-03-01T09:00:00Z", "duration_s": 60, "energy_j": 100}])
    };
    assert_eq!(app.post("/v1/readings", reading("api")).await.status(), 200);
    assert_eq!(app.post("/v1/readings", reading("db")).await.status(), 200);
    assert_eq!(app.post("/v1/readings", reading("")).await.status(), 422);
    // The value of the first line that starts with `name` and names `table` (if given).
    let value = |text: &str, name: &str, table: Option<&str>| -> f64 {
        let line = text
            .lines()
            .find(|line| {
                line.starts_with(name)
                    && table.is_none_or(|t| line.contains(&format!("table=\"{t}\"")))
            })
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(value(&before, "ingest_readings_accepted_total", None), 2.0);
    assert_eq!(value(&before, "ingest_batches_refused_total", None), 1.0);
    assert_eq!(
        value(&before, "storage_buffered_rows", Some("readings")),
        2.0
    );
    assert!(
        value(
            &before,
            "storage_oldest_unflushed_seconds",
            Some("readings")
        ) >= 0.0
    );
    app.flush().await;
    let after = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        value(&after, "storage_buffered_rows", Some("readings")),
        0.0
    );
    assert_eq!(
        value(&after, "storage_oldest_unflushed_seconds", Some("readings")),
        0.0
    );
    assert_eq!(
        value(&after, "storage_flushes_total", Some("readings")),
        1.0
    );
    assert!(value(&after, "storage_table_version", Some("readings")) >= 1.0);
    assert_eq!(
        value(&after, "storage_flush_failures_total", Some("readings")),
        0.0
    );
    assert!(
        value(&after, "registry_version", None) >= 2.0,
        "site and customer"
    );
}

#[tokio::test]
async fn the_contract_is_the_same_from_the_binary_the_file_and_the_server() {
    let printed = Command::new(BINARY).arg("openapi").output().unwrap();
    assert!(printed.status.success());
    let from_binary: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path).unwrap()).unwrap();
    assert!(
        from_binary == committed,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
    assert_eq!(from_binary["openapi"], "3.1.0");

    let app = spawn_app().await;
    let served: Value = app
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(served, committed);
    let docs = app.call(reqwest::Method::GET, "/docs/", None, None).await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn every_operation_has_a_summary_an_example_and_problem_errors() {
    let contract = carbon_ledger::http::openapi_document();
    let json = serde_json::to_value(&contract).unwrap();
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(operation["summary"].is_string(), "{name} has no summary");
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{name} {status} is not problem+json"
                    );
                }
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BINARY)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("CARBON_LEDGER_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            assert_eq!(response.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthcheck = Command::new(BINARY)
        .args(["healthcheck", "--bind", &format!("127.0.0.1:{port}")])
        .status()
        .unwrap();
    assert!(healthcheck.success());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let stderr: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    let stderr = stderr.join("\n");
    assert!(stderr.contains("generated the admin API key"), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // Whatever the caller's umask, what the service wrote is its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let key_log = dir.path().join("keys/_log/00000000000000000001.json");
    assert_eq!(mode(&key_log), 0o600, "{}", key_log.display());
    assert_eq!(mode(&dir.path().join("wal")), 0o700);
    assert_eq!(mode(&dir.path().join("wal/replica.json")), 0o600);
    assert_eq!(mode(&dir.path().join("tables/readings/_delta_log")), 0o700);
}
