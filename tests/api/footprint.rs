//! Footprint reports over HTTP, with the numbers worked out by hand.
use crate::helpers::{
    assert_problem, settings_for, spawn_app, spawn_app_with, TestApp, ADMIN_TOKEN,
};
use carbon_ledger::config::Settings;
use polars::prelude::*;
use serde_json::{json, Value};
use std::io::Cursor;

/// The README's round trip: site fra1 in GB at PUE 1.5, acme, 330 g/kWh actual 09:00-10:00, and
/// the two readings of API.md.
async fn round_trip_data(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "GB", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme Corp"}))
        .await;
    app.put("/v1/customers/globex", json!({"name": "Globex"}))
        .await;
    let intensity = json!({"zone": "GB", "source": "manual", "signal": "average", "points": [
        {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z", "gco2e_per_kwh": 330, "kind": "actual"}]});
    assert_eq!(app.post("/v1/intensity", intensity).await.status(), 200);
    let readings = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:55:00Z",
         "duration_s": 600, "energy_j": 540000},
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T09:00:00Z",
         "duration_s": 300, "power_w": 850},
        {"site": "fra1", "customer": "globex", "workload": "db", "start": "2026-03-01T09:00:00Z",
         "duration_s": 60, "energy_j": 1000000}
    ]);
    assert_eq!(app.post("/v1/readings", readings).await.status(), 200);
}

const HOURLY: &str = "/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&granularity=hour&group_by=workload";

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_footprint_splits_readings_and_carries_intensity_forward() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let body: Value = app.get(HOURLY).await.json().await.unwrap();
    assert_eq!(body["customer"], "acme");
    assert_eq!(body["granularity"], "hour");
    assert_eq!(body["group_by"], json!(["workload"]));
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // api 09:55-10:05, 540 kJ = 0.15 kWh: 0.075 kWh in each hour; x 1.5 = 0.1125; x 330 = 37.125.
    assert_eq!(rows[0]["bucket_start"], "2026-03-01T09:00:00Z");
    assert_eq!(rows[0]["workload"], "api");
    close(&rows[0]["it_energy_kwh"], 0.075);
    close(&rows[0]["facility_energy_kwh"], 0.1125);
    close(&rows[0]["location_emissions_gco2e"], 37.125);
    close(&rows[0]["quality"]["actual"], 1.0);
    // batch: 850 W x 300 s = 255 kJ = 0.0708333 kWh; x 1.5 = 0.10625; x 330 = 35.0625.
    assert_eq!(rows[1]["workload"], "batch");
    close(&rows[1]["it_energy_kwh"], 255000.0 / 3.6e6);
    close(&rows[1]["location_emissions_gco2e"], 35.0625);
    // api 10:00-10:05: no point covers it; 330 is carried forward (within 2 h).
    assert_eq!(rows[2]["bucket_start"], "2026-03-01T10:00:00Z");
    close(&rows[2]["location_emissions_gco2e"], 37.125);
    close(&rows[2]["quality"]["carried_forward"], 1.0);
    // Totals: 0.15 + 0.0708333 kWh; 37.125 x 2 + 35.0625 = 109.3125 g; two readings.
    let totals = &body["totals"];
    close(&totals["it_energy_kwh"], 0.15 + 255000.0 / 3.6e6);
    close(&totals["location_emissions_gco2e"], 109.3125);
    close(&totals["market_emissions_gco2e"], 109.3125); // no instruments, no residual mix
    assert_eq!(totals["readings"], 2);
    let summed: f64 = rows
        .iter()
        .map(|r| r["location_emissions_gco2e"].as_f64().unwrap())
        .sum();
    assert!((summed - 109.3125).abs() < 1e-9, "rows sum to totals");
}

fn flat(value: &str) -> f64 {
    value.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_formats_carry_the_same_numbers() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let json: Value = app.get(HOURLY).await.json().await.unwrap();
    let expected: Vec<(String, String, f64, f64)> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket_start"].as_str().unwrap().to_owned(),
                r["workload"].as_str().unwrap().to_owned(),
                r["location_emissions_gco2e"].as_f64().unwrap(),
                r["quality"]["carried_forward"].as_f64().unwrap(),
            )
        })
        .collect();

    let ndjson = app.get(&format!("{HOURLY}&format=ndjson")).await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let from_ndjson: Vec<_> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap();
            (
                r["bucket_start"].as_str().unwrap().to_owned(),
                r["workload"].as_str().unwrap().to_owned(),
                r["location_emissions_gco2e"].as_f64().unwrap(),
                r["quality_carried_forward"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_ndjson, expected);

    let csv = app
        .client
        .get(app.url(HOURLY))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..4],
        [
            "bucket_start",
            "workload",
            "it_energy_kwh",
            "facility_energy_kwh"
        ]
    );
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let from_csv: Vec<_> = lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                flat(cells[at("location_emissions_gco2e")]),
                flat(cells[at("quality_carried_forward")]),
            )
        })
        .collect();
    assert_eq!(from_csv, expected);

    let parquet = app
        .get(&format!("{HOURLY}&format=parquet"))
        .await
        .bytes()
        .await
        .unwrap();
    let frame = ParquetReader::new(Cursor::new(parquet.to_vec()))
        .finish()
        .unwrap();
    assert_eq!(frame.height(), expected.len());
    let workloads = frame.column("workload").unwrap().str().unwrap().clone();
    let emissions = frame
        .column("location_emissions_gco2e")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    for (i, (_, workload, grams, _)) in expected.iter().enumerate() {
        assert_eq!(workloads.get(i).unwrap(), workload);
        assert_eq!(emissions.get(i).unwrap(), *grams);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_actual_point_changes_the_next_report() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let url = "/v1/customers/acme/footprint?from=2026-03-01T10:00:00Z&to=2026-03-01T11:00:00Z";
    let before: Value = app.get(url).await.json().await.unwrap();
    close(&before["totals"]["location_emissions_gco2e"], 37.125); // carried forward 330
    let late = json!({"zone": "GB", "source": "manual", "signal": "average", "points": [
        {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:30:00Z", "gco2e_per_kwh": 100, "kind": "actual"}]});
    app.post("/v1/intensity", late).await;
    let after: Value = app.get(url).await.json().await.unwrap();
    close(&after["totals"]["location_emissions_gco2e"], 11.25); // 0.1125 kWh x 100
    close(&after["totals"]["quality"]["actual"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sent_readings_change_the_next_report_whether_flushed_or_not() {
    // Flushed dates are read from the cache; a re-sent reading must show up both while it waits
    // in the buffer and after the flusher folded it into the cached date.
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        flush_interval_s: 1,
        ..settings_for(&dir)
    };
    let app = spawn_app_with(settings, dir).await;
    round_trip_data(&app).await;
    let url = "/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";
    let it_kwh = |body: Value| body["totals"]["it_energy_kwh"].as_f64().unwrap();
    let flushed = || tokio::time::sleep(std::time::Duration::from_millis(2500));
    flushed().await;
    for _ in 0..2 {
        // 540000 J + 850 W x 300 s = 795000 J = 0.2208333 kWh
        let body = app.get(url).await.json().await.unwrap();
        assert!((it_kwh(body) - 795000.0 / 3.6e6).abs() < 1e-9);
    }
    let batch = json!([{"site": "fra1", "customer": "acme", "workload": "batch",
        "start": "2026-03-01T09:00:00Z", "duration_s": 300, "energy_j": 36000}]);
    assert_eq!(app.post("/v1/readings", batch).await.status(), 200);
    // 540000 J + 36000 J = 576000 J = 0.16 kWh, in the buffer
    let body = app.get(url).await.json().await.unwrap();
    assert!((it_kwh(body) - 0.16).abs() < 1e-9);
    flushed().await;
    let body = app.get(url).await.json().await.unwrap();
    assert!((it_kwh(body) - 0.16).abs() < 1e-9, "after the flush");
    let api = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-03-01T09:55:00Z", "duration_s": 600, "energy_j": 360000}]);
    assert_eq!(app.post("/v1/readings", api).await.status(), 200);
    flushed().await;
    // 360000 J + 36000 J = 396000 J = 0.11 kWh
    let body = app.get(url).await.json().await.unwrap();
    assert!((it_kwh(body) - 0.11).abs() < 1e-9, "after a second flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_buckets_carry_the_offset_of_the_time_zone() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    // 23:30 UTC on Feb 28 is 00:30 on Mar 1 in Berlin (UTC+1 in winter).
    let late = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-02-28T23:30:00Z", "duration_s": 60, "energy_j": 3600}]);
    assert_eq!(app.post("/v1/readings", late).await.status(), 200);
    let body: Value = app
        .get("/v1/customers/acme/footprint?from=2026-02-28T23:00:00Z&to=2026-03-01T23:00:00Z&granularity=day&tz=Europe/Berlin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tz"], "Europe/Berlin");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one Berlin day holds the late reading and the morning's"
    );
    assert_eq!(rows[0]["bucket_start"], "2026-03-01T00:00:00+01:00");
    // 3600 J = 0.001 kWh, plus the 0.15 + 0.0708333 kWh of the round trip.
    close(&rows[0]["it_energy_kwh"], 0.001 + 0.15 + 255000.0 / 3.6e6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_refused_with_the_reason() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let base = "/v1/customers/acme/footprint";
    for (query, status, code) in [
        (
            "from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            400,
            "invalid_query",
        ),
        (
            "from=yesterday&to=2026-03-01T00:00:00Z",
            400,
            "invalid_query",
        ),
        ("to=2026-03-01T00:00:00Z", 400, "invalid_query"),
        (
            "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&group_by=planet",
            400,
            "invalid_query",
        ),
        (
            "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&granularity=fortnight",
            400,
            "invalid_query",
        ),
        (
            "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&tz=Mars/Olympus",
            400,
            "invalid_query",
        ),
        (
            "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&format=xml",
            400,
            "invalid_query",
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=hour",
            422,
            "range_too_long",
        ),
    ] {
        let body = assert_problem(app.get(&format!("{base}?{query}")).await, status, code).await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}");
    }
    let body = assert_problem(
        app.get("/v1/customers/nobody/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z")
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(body["detail"], "customer nobody does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_key_never_reads_another_customer_in_any_format() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let range = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";
    for format in ["json", "ndjson", "csv", "parquet"] {
        let other = app
            .call(
                reqwest::Method::GET,
                &format!("/v1/customers/globex/footprint?{range}&format={format}"),
                Some(&acme),
                None,
            )
            .await;
        let other = assert_problem(other, 404, "not_found").await;
        let missing = app
            .call(
                reqwest::Method::GET,
                &format!("/v1/customers/ghost/footprint?{range}&format={format}"),
                Some(&acme),
                None,
            )
            .await;
        let missing = assert_problem(missing, 404, "not_found").await;
        // The same answer as for a customer that does not exist, but for the name asked for.
        assert_eq!(
            other["detail"].as_str().unwrap().replace("globex", "X"),
            missing["detail"].as_str().unwrap().replace("ghost", "X")
        );
        let own = app
            .call(
                reqwest::Method::GET,
                &format!("/v1/customers/acme/footprint?{range}&format={format}"),
                Some(&acme),
                None,
            )
            .await;
        assert_eq!(own.status(), 200, "{format}");
        let text = String::from_utf8_lossy(&own.bytes().await.unwrap()).into_owned();
        assert!(
            !text.contains("globex") && !text.contains("\"db\""),
            "{format} leaks another customer"
        );
    }
    // The all-customers report is admin only.
    let all = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/footprint?{range}&group_by=customer"),
            Some(&acme),
            None,
        )
        .await;
    assert_problem(all, 403, "forbidden").await;
    let admin: Value = app
        .get(&format!("/v1/footprint?{range}&group_by=customer"))
        .await
        .json()
        .await
        .unwrap();
    let customers: Vec<&str> = admin["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["acme", "globex"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_and_site_filters_keep_exactly_their_rows_of_the_whole() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    let day = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";
    let whole: Value = app
        .get(&format!(
            "/v1/customers/acme/footprint?{day}&group_by=workload"
        ))
        .await
        .json()
        .await
        .unwrap();
    let api: Value = app
        .get(&format!("/v1/customers/acme/footprint?{day}&workload=api"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["workloads"], json!(["api"]));
    // api alone: 0.15 kWh IT, 37.125 x 2 = 74.25 g, as its row of the whole.
    close(&api["totals"]["it_energy_kwh"], 0.15);
    close(&api["totals"]["location_emissions_gco2e"], 74.25);
    assert_eq!(
        whole["rows"][0]["location_emissions_gco2e"],
        api["totals"]["location_emissions_gco2e"]
    );
    let csv = app
        .get(&format!(
            "/v1/footprint?{day}&granularity=hour&workload=api,batch&site=fra1&format=csv"
        ))
        .await
        .text()
        .await
        .unwrap();
    // Two hours; 09:00 holds acme's api half (0.075 kWh) and batch (0.0708333 kWh), without
    // globex's db (another workload).
    assert_eq!(csv.lines().count(), 1 + 2, "{csv}");
    let nine: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let it_kwh: f64 = nine[1].parse().unwrap();
    assert!((it_kwh - (0.075 + 255000.0 / 3.6e6)).abs() < 1e-9, "{csv}");
    let bad = app
        .get(&format!(
            "/v1/customers/acme/footprint?{day}&site=no%20such"
        ))
        .await;
    let problem = assert_problem(bad, 400, "invalid_query").await;
    assert!(problem["detail"].as_str().unwrap().contains("site"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weeks_quarters_and_years_follow_the_callers_calendar() {
    let app = spawn_app().await;
    round_trip_data(&app).await;
    // Sunday 2026-03-01 09:00-10:05 UTC is Sunday 23:00 to Monday 00:05 at UTC+14: the api
    // reading (09:55-10:05) falls half in the ISO week of Monday 23 February, half in the week
    // of Monday 2 March; batch (09:00-09:05) all in the first.
    let path = "/v1/customers/acme/footprint?from=2026-02-01T00:00:00Z&to=2026-03-03T00:00:00Z\
                &granularity=week&group_by=workload&tz=Pacific/Kiritimati";
    let body: Value = app.get(path).await.json().await.unwrap();
    let rows = body["rows"].as_array().unwrap();
    let buckets: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["bucket_start"].as_str().unwrap(),
                r["workload"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("2026-02-23T00:00:00+14:00", "api"),
            ("2026-02-23T00:00:00+14:00", "batch"),
            ("2026-03-02T00:00:00+14:00", "api"),
        ]
    );
    close(&rows[0]["it_energy_kwh"], 0.075);
    close(&rows[2]["it_energy_kwh"], 0.075);
    // 850 W x 300 s = 255 kJ = 0.0708333 kWh.
    close(&rows[1]["it_energy_kwh"], 255_000.0 / 3.6e6);
    // In UTC the whole hour is one Sunday: the week of Monday 23 February.
    let utc: Value = app
        .get("/v1/customers/acme/footprint?from=2026-02-01T00:00:00Z&to=2026-03-03T00:00:00Z&granularity=week")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(utc["rows"].as_array().unwrap().len(), 1);
    assert_eq!(utc["rows"][0]["bucket_start"], "2026-02-23T00:00:00Z");
    for (granularity, start) in [
        ("quarter", "2026-01-01T00:00:00Z"),
        ("year", "2026-01-01T00:00:00Z"),
    ] {
        let body: Value = app
            .get(&format!(
                "/v1/customers/acme/footprint?from=2025-07-01T00:00:00Z&to=2026-07-01T00:00:00Z&granularity={granularity}"
            ))
            .await
            .json()
            .await
            .unwrap();
        let rows = body["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{granularity}");
        assert_eq!(rows[0]["bucket_start"], start);
        close(
            &rows[0]["it_energy_kwh"],
            body["totals"]["it_energy_kwh"].as_f64().unwrap(),
        );
    }
    assert_problem(
        app.get("/v1/customers/acme/footprint?from=2026-02-01T00:00:00Z&to=2026-03-03T00:00:00Z&granularity=fortnight")
            .await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_longer_than_one_slice_stream_every_row_once() {
    let app = spawn_app().await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "GB", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    // 31 days x 24 hours x 3 workloads = 2,232 hourly rows: more than one 2,000-row slice.
    let start: chrono::DateTime<chrono::Utc> = "2026-01-29T00:00:00Z".parse().unwrap();
    let readings: Vec<Value> = (0..31 * 24)
        .flat_map(|hour| {
            ["a", "b", "c"].map(|workload| {
                json!({"site": "fra1", "customer": "acme", "workload": workload,
                       "start": (start + chrono::Duration::hours(hour)).to_rfc3339(),
                       "duration_s": 3600, "energy_j": 3600.0 * (1 + hour % 7) as f64})
            })
        })
        .collect();
    assert_eq!(
        app.post("/v1/readings", json!(readings)).await.status(),
        200
    );
    // 2 Wh across midnight into February 5, where exports start their second part (a week of
    // hours each): half in the last hour of one part, half in the first of the next.
    let across = json!([{"site": "fra1", "customer": "acme", "workload": "d",
        "start": "2026-02-04T23:30:00Z", "duration_s": 3600, "energy_j": 7200}]);
    assert_eq!(app.post("/v1/readings", across).await.status(), 200);
    let query = "/v1/customers/acme/footprint?from=2026-01-29T00:00:00Z&to=2026-03-01T00:00:00Z\
                 &granularity=hour&group_by=workload";
    let whole: Value = app.get(query).await.json().await.unwrap();
    let total = whole["totals"]["it_energy_kwh"].as_f64().unwrap();
    // Every hour's energy is (1 + hour % 7) Wh for each of 3 workloads.
    let expected: f64 = (0..31 * 24)
        .map(|h| 3.0 * (1 + h % 7) as f64 / 1000.0)
        .sum::<f64>()
        + 0.002;
    assert!((total - expected).abs() < 1e-9, "{total} != {expected}");

    let csv = app.get(&format!("{query}&format=csv")).await;
    assert_eq!(
        csv.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2234, "a header and every row once");
    let at = lines[0]
        .split(',')
        .position(|c| c == "it_energy_kwh")
        .unwrap();
    let summed: f64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(at).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((summed - total).abs() < 1e-6, "{summed} != {total}");
    let ndjson = app
        .get(&format!("{query}&format=ndjson"))
        .await
        .text()
        .await
        .unwrap();
    let records: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The same rows as the report computed whole, in the same order.
    let rows = whole["rows"].as_array().unwrap();
    assert_eq!(records.len(), 2234);
    assert_eq!(rows.len(), records.len());
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(record["bucket_start"], row["bucket_start"]);
        assert_eq!(record["workload"], row["workload"]);
        assert_eq!(record["readings"], row["readings"]);
        let (a, b) = (&record["it_energy_kwh"], &row["it_energy_kwh"]);
        assert!(
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-12,
            "{a} != {b}"
        );
        let (a, b) = (
            &record["location_emissions_gco2e"],
            &row["location_emissions_gco2e"],
        );
        assert!(
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9,
            "{a} != {b}"
        );
    }
    let d: Vec<_> = records.iter().filter(|r| r["workload"] == "d").collect();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["bucket_start"], "2026-02-04T23:00:00Z");
    assert_eq!(d[1]["bucket_start"], "2026-02-05T00:00:00Z");
    for half in d {
        assert_eq!(half["it_energy_kwh"], 0.001);
        assert_eq!(half["readings"], 1);
    }
}
