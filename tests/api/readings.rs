//! Ingest over HTTP: the four formats, validation, atomicity, idempotence, durability.
use crate::helpers::{
    assert_problem, settings_for, spawn_app, spawn_app_with, TestApp, ADMIN_TOKEN,
};
use carbon_ledger::storage::location::Location;
use carbon_ledger::storage::logged::{LoggedTable, LoggedTableOptions};
use carbon_ledger::storage::readings::{self as table, ENERGY_J, POWER_W, WORKLOAD};
use carbon_ledger::storage::replica::Replica;
use polars::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

pub async fn register(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme Corp"}))
        .await;
}

/// The readings stored under `dir` (the server must be stopped), ordered by workload and start:
/// opened as the server's own replica, so that its log replays as it would at its next start.
pub async fn stored(dir: &Path) -> DataFrame {
    let location = Location::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let wal = dir.join("wal");
    let replica = Replica::open(&wal, None).unwrap();
    let store = LoggedTable::open(
        &location,
        &wal,
        &replica,
        table::SPEC,
        LoggedTableOptions::default(),
    )
    .await
    .unwrap();
    let scan = store
        .scan(0, 4_000_000_000_000_000, None, None, None)
        .await
        .unwrap()
        .sort([WORKLOAD, "start"], SortMultipleOptions::default());
    tokio::task::spawn_blocking(move || scan.collect().unwrap())
        .await
        .unwrap()
}

fn two_readings_json() -> Value {
    json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:55:00Z",
         "duration_s": 600, "energy_j": 540000},
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T09:00:00Z",
         "duration_s": 300, "power_w": 850}
    ])
}

fn two_readings_arrow() -> Vec<u8> {
    let start = Column::new(
        "start".into(),
        [1_772_358_900_000_000i64, 1_772_355_600_000_000],
    )
    .cast(&DataType::Datetime(
        TimeUnit::Microseconds,
        Some(TimeZone::UTC),
    ))
    .unwrap();
    let mut frame = DataFrame::new(
        2,
        vec![
            Column::new("site".into(), ["fra1", "fra1"]),
            Column::new("customer".into(), ["acme", "acme"]),
            Column::new("workload".into(), ["api", "batch"]),
            start,
            Column::new("duration_s".into(), [600i32, 300]),
            Column::new("energy_j".into(), [Some(540000.0f64), None]),
            Column::new("power_w".into(), [None, Some(850.0f64)]),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    IpcStreamWriter::new(&mut out).finish(&mut frame).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_is_stored_and_a_resend_in_another_format_counts_once() {
    let app = spawn_app().await;
    register(&app).await;
    let ndjson = two_readings_json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let csv = "site,customer,workload,start,duration_s,energy_j,power_w\n\
               fra1,acme,api,2026-03-01T09:55:00Z,600,540000,\n\
               fra1,acme,batch,2026-03-01T09:00:00Z,300,,850\n";
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/json",
            two_readings_json().to_string().into_bytes(),
        ),
        ("application/x-ndjson", ndjson.into_bytes()),
        ("text/csv", csv.as_bytes().to_vec()),
        ("application/vnd.apache.arrow.stream", two_readings_arrow()),
    ];
    for (content_type, body) in bodies {
        let response = app.post_raw("/v1/readings", content_type, body).await;
        assert_eq!(response.status(), 200, "{content_type}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer, json!({"accepted": 2}), "{content_type}");
    }
    let dir = app.stop().await;
    let frame = stored(dir.path()).await;
    assert_eq!(
        frame.height(),
        2,
        "four posts of the same two readings store two"
    );
    let energy = frame.column(ENERGY_J).unwrap().f64().unwrap();
    let power = frame.column(POWER_W).unwrap().f64().unwrap();
    assert_eq!(energy.get(0), Some(540000.0));
    assert_eq!(power.get(1), Some(850.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_replaces_the_earlier_reading_across_restarts() {
    let app = spawn_app().await;
    register(&app).await;
    app.post("/v1/readings", two_readings_json()).await;
    let app = app.restart().await;
    let correction = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-03-01T09:55:00Z", "duration_s": 600, "energy_j": 600000}]);
    assert_eq!(app.post("/v1/readings", correction).await.status(), 200);
    let dir = app.stop().await;
    let frame = stored(dir.path()).await;
    assert_eq!(frame.height(), 2);
    assert_eq!(
        frame.column(ENERGY_J).unwrap().f64().unwrap().get(0),
        Some(600000.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_body_is_accepted() {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let app = spawn_app().await;
    register(&app).await;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(two_readings_json().to_string().as_bytes())
        .unwrap();
    let response = app
        .client
        .post(app.url("/v1/readings"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_names_its_rows_and_stores_nothing() {
    let app = spawn_app().await;
    register(&app).await;
    let mut batch = two_readings_json();
    let rows = batch.as_array_mut().unwrap();
    rows.push(
        json!({"site": "fra1", "customer": "acme", "workload": "x", "start": "yesterday",
        "duration_s": 60, "energy_j": 1}),
    );
    rows.push(json!({"site": "fra1", "customer": "acme", "workload": "y",
        "start": "2026-03-01T09:00:00Z", "duration_s": 7200, "energy_j": 1, "power_w": 2}));
    let body = assert_problem(
        app.post("/v1/readings", batch).await,
        422,
        "invalid_readings",
    )
    .await;
    assert_eq!(
        body["detail"],
        "2 of 4 readings are invalid; nothing was stored"
    );
    assert_eq!(
        body["errors"],
        json!([
            {"row": 2, "field": "start", "pointer": "/2/start", "reason": "not an RFC 3339 time"},
            {"row": 3, "field": "duration_s", "pointer": "/3/duration_s",
             "reason": "must be a whole number of seconds from 1 to 3600"},
            {"row": 3, "field": "energy_j", "pointer": "/3/energy_j",
             "reason": "give exactly one of energy_j and power_w, not both"}
        ])
    );
    let dir = app.stop().await;
    assert_eq!(stored(dir.path()).await.height(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sites_and_customers_have_their_own_codes() {
    let app = spawn_app().await;
    register(&app).await;
    let reading = |site: &str, customer: &str| {
        json!([{"site": site, "customer": customer, "workload": "w", "start": "2026-03-01T09:00:00Z",
                "duration_s": 60, "energy_j": 1}])
    };
    let body = assert_problem(
        app.post("/v1/readings", reading("ams9", "acme")).await,
        422,
        "unknown_site",
    )
    .await;
    assert_eq!(body["errors"][0]["reason"], "unknown site ams9");
    assert_problem(
        app.post("/v1/readings", reading("fra1", "nobody")).await,
        422,
        "unknown_customer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_from_the_future_is_refused_by_the_injected_clock() {
    let app = spawn_app().await; // the clock says 2026-03-02T00:00:00Z
    register(&app).await;
    let reading = |start: &str| {
        json!([{"site": "fra1", "customer": "acme", "workload": "w", "start": start,
                "duration_s": 60, "energy_j": 1}])
    };
    assert_eq!(
        app.post("/v1/readings", reading("2026-03-02T00:05:00Z"))
            .await
            .status(),
        200
    );
    let body = assert_problem(
        app.post("/v1/readings", reading("2026-03-02T00:05:01Z"))
            .await,
        422,
        "invalid_readings",
    )
    .await;
    assert_eq!(
        body["errors"][0]["reason"],
        "more than 5 minutes in the future"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_point_at_the_line() {
    let app = spawn_app().await;
    register(&app).await;
    let ndjson = "{\"site\":\"fra1\",\"customer\":\"acme\",\"workload\":\"a\",\"start\":\"2026-03-01T09:00:00Z\",\"duration_s\":60,\"energy_j\":1}\n{\"site\": oops}\n";
    let body = assert_problem(
        app.post_raw("/v1/readings", "application/x-ndjson", ndjson)
            .await,
        400,
        "malformed_body",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().starts_with("line 2:"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["row"], 1);

    let csv = "site,customer,workload,start,duration_s,energy_j\nfra1,acme,a,2026-03-01T09:00:00Z,sixty,1\n";
    let body = assert_problem(
        app.post_raw("/v1/readings", "text/csv", csv).await,
        400,
        "malformed_body",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/0/duration_s");
    assert!(
        body["detail"].as_str().unwrap().starts_with("line 2:"),
        "{body}"
    );

    let json = "[{\"site\": \"fra1\", \"duration_s\": \"long\"}]";
    let body = assert_problem(
        app.post_raw("/v1/readings", "application/json", json).await,
        400,
        "malformed_body",
    )
    .await;
    assert_eq!(body["errors"][0]["row"], 0);
    assert_problem(
        app.post_raw(
            "/v1/readings",
            "application/vnd.apache.arrow.stream",
            "not arrow",
        )
        .await,
        400,
        "malformed_body",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_413_and_other_media_types_415() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&dir);
    settings.max_rows_per_batch = 1;
    settings.max_body_bytes = 4096;
    let app = spawn_app_with(settings, dir).await;
    register(&app).await;
    assert_problem(
        app.post("/v1/readings", two_readings_json()).await,
        413,
        "payload_too_large",
    )
    .await;
    let big = format!("[{}]", "1,".repeat(5000) + "1");
    assert_problem(
        app.post_raw("/v1/readings", "application/json", big).await,
        413,
        "payload_too_large",
    )
    .await;
    assert_problem(
        app.post_raw("/v1/readings", "application/xml", "<r/>")
            .await,
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_key_for_listed_sites_cannot_post_for_others() {
    let app = spawn_app().await;
    register(&app).await;
    app.put(
        "/v1/sites/ams1",
        json!({"name": "Amsterdam 1", "zone": "NL", "pue": 1.3}),
    )
    .await;
    let (_, token) = app
        .create_key(json!({"role": "ingest", "sites": ["ams1"]}))
        .await;
    let response = app
        .call(
            reqwest::Method::POST,
            "/v1/readings",
            Some(&token),
            Some(&two_readings_json()),
        )
        .await;
    let body = assert_problem(response, 403, "forbidden").await;
    assert_eq!(
        body["detail"],
        "this key may not post readings for site fra1"
    );
}
