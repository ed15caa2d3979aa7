//! Ingest bodies of the benchmarks: batches of distinct readings as JSON, NDJSON or Arrow IPC.
use polars::prelude::*;
use serde_json::json;

pub const BATCH: usize = 10_000;

/// Posts one batch to a server's `/v1/readings`.
pub async fn post(client: &reqwest::Client, base: &str, body: &Body) -> reqwest::Response {
    client
        .post(format!("{base}/v1/readings"))
        .bearer_auth(super::support::TOKEN)
        .header("content-type", body.content_type)
        .body(body.bytes.clone())
        .send()
        .await
        .unwrap()
}

pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Batch `n` of a connection: distinct readings (workload per connection, start per row).
fn rows(connection: usize, n: usize) -> Vec<(String, i64)> {
    let base = 1_772_323_200i64 + (n * BATCH) as i64; // 2026-03-01, one second per row
    (0..BATCH)
        .map(|i| {
            (
                format!("w{connection}-{}", i % 40),
                (base + i as i64) * 1_000_000,
            )
        })
        .collect()
}

pub fn body(format: &str, connection: usize, n: usize) -> Body {
    let rows = rows(connection, n);
    match format {
        "json" | "ndjson" => {
            let objects: Vec<String> = rows
                .iter()
                .map(|(w, us)| {
                    let start = chrono::DateTime::from_timestamp_micros(*us)
                        .unwrap()
                        .to_rfc3339();
                    json!({"site": "fra1", "customer": "acme", "workload": w, "start": start,
                           "duration_s": 10, "power_w": 120.5})
                    .to_string()
                })
                .collect();
            if format == "json" {
                Body {
                    content_type: "application/json",
                    bytes: format!("[{}]", objects.join(",")).into_bytes(),
                }
            } else {
                Body {
                    content_type: "application/x-ndjson",
                    bytes: objects.join("\n").into_bytes(),
                }
            }
        }
        _ => {
            let start = Column::new("start".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .cast(&DataType::Datetime(
                    TimeUnit::Microseconds,
                    Some(TimeZone::UTC),
                ))
                .unwrap();
            let mut frame = DataFrame::new(
                BATCH,
                vec![
                    Column::new("site".into(), vec!["fra1"; BATCH]),
                    Column::new("customer".into(), vec!["acme"; BATCH]),
                    Column::new(
                        "workload".into(),
                        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
                    ),
                    start,
                    Column::new("duration_s".into(), vec![10i32; BATCH]),
                    Column::new("energy_j".into(), vec![None::<f64>; BATCH]),
                    Column::new("power_w".into(), vec![Some(120.5f64); BATCH]),
                ],
            )
            .unwrap();
            let mut bytes = Vec::new();
            IpcStreamWriter::new(&mut bytes).finish(&mut frame).unwrap();
            Body {
                content_type: "application/vnd.apache.arrow.stream",
                bytes,
            }
        }
    }
}
