//! Insights over HTTP: greenest windows (and the Carbon Aware SDK's shape), shift opportunities and
//! the footprint forecast, against hand arithmetic. The test clock stands at 2026-03-02T00:00:00Z.
use crate::helpers::{assert_problem, spawn_app, TestApp};
use serde_json::{json, Value};

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!(
        (actual - expected).abs() < 1e-6 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

async fn push(app: &TestApp, kind: &str, points: &[(&str, &str, f64)]) {
    let points: Vec<Value> = points
        .iter()
        .map(|(start, end, value)| {
            json!({"start": start, "end": end, "gco2e_per_kwh": value, "kind": kind})
        })
        .collect();
    let body = json!({"zone": "GB", "source": "manual", "signal": "average", "points": points});
    assert_eq!(app.post("/v1/intensity", body).await.status(), 200);
}

/// The Carbon Aware SDK's example: 5-minute forecast points 5, 55, 10, 10, 10 from now.
async fn sdk_example(app: &TestApp) {
    push(
        app,
        "forecast",
        &[
            ("2026-03-02T00:00:00Z", "2026-03-02T00:05:00Z", 5.0),
            ("2026-03-02T00:05:00Z", "2026-03-02T00:10:00Z", 55.0),
            ("2026-03-02T00:10:00Z", "2026-03-02T00:15:00Z", 10.0),
            ("2026-03-02T00:15:00Z", "2026-03-02T00:20:00Z", 10.0),
            ("2026-03-02T00:20:00Z", "2026-03-02T00:25:00Z", 10.0),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_minute_job_gets_the_window_averaging_10_not_the_point_of_5() {
    let app = spawn_app().await;
    sdk_example(&app).await;
    let body: Value = app
        .get("/v1/zones/GB/windows?duration_min=10&energy_kwh=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["signal"], "average");
    assert_eq!(body["basis"], "location");
    // From now (00:00) to where the data ends (00:25): starts 00:00, 00:05, 00:10, 00:15.
    assert_eq!(body["to"], "2026-03-02T00:25:00Z");
    assert_eq!(body["candidates"], 4);
    // Running now averages (5 + 55) / 2 = 30.
    close(&body["run_now"]["average_gco2e_per_kwh"], 30.0);
    let windows = body["windows"].as_array().unwrap();
    // 00:10-00:20 at 10, then the best not overlapping it: 00:00-00:10 at 30.
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["start"], "2026-03-02T00:10:00Z");
    close(&windows[0]["average_gco2e_per_kwh"], 10.0);
    close(&windows[0]["kinds"]["forecast"], 1.0);
    // Saves 30 - 10 = 20 g/kWh, 66.7 %, and 2 kWh x 20 = 40 g.
    close(&windows[0]["saving_gco2e_per_kwh"], 20.0);
    close(&windows[0]["saving_percent"], 200.0 / 3.0);
    close(&windows[0]["saving_gco2e"], 40.0);
    assert_eq!(windows[1]["start"], "2026-03-02T00:00:00Z");

    assert_problem(
        app.get("/v1/zones/GB/windows?duration_min=0").await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/v1/zones/GB/windows?duration_min=10&signal=market")
            .await,
        400,
        "invalid_query",
    )
    .await;
}

/// `EmissionsForecastDTO` and `EmissionsDataDTO` of the Carbon Aware SDK WebAPI
/// (src/CarbonAware.WebApi/src/Models in Green-Software-Foundation/carbon-aware-sdk): every field,
/// with its JSON type.
const SDK_FORECAST_FIELDS: [(&str, &str); 8] = [
    ("generatedAt", "date-time"),
    ("requestedAt", "date-time"),
    ("location", "string"),
    ("dataStartAt", "date-time"),
    ("dataEndAt", "date-time"),
    ("windowSize", "integer"),
    ("optimalDataPoints", "array"),
    ("forecastData", "array"),
];
const SDK_DATA_FIELDS: [(&str, &str); 4] = [
    ("location", "string"),
    ("timestamp", "date-time"),
    ("duration", "integer"),
    ("value", "number"),
];

fn assert_shape(object: &Value, fields: &[(&str, &str)]) {
    let object = object.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for (name, kind) in fields {
        let value = &object[*name];
        let ok = match *kind {
            "date-time" => value
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            "string" => value.is_string(),
            "integer" => value.is_i64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            _ => false,
        };
        assert!(ok, "{name} is not a {kind}: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carbon_aware_sdk_endpoint_answers_in_the_sdk_shape() {
    let app = spawn_app().await;
    sdk_example(&app).await;
    let response = app
        .get("/emissions/forecasts/current?location=GB&location=DE&windowSize=10")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let forecasts = body.as_array().expect("an array, one per location");
    assert_eq!(forecasts.len(), 2);
    for forecast in forecasts {
        assert_shape(forecast, &SDK_FORECAST_FIELDS);
        for point in forecast["forecastData"]
            .as_array()
            .unwrap()
            .iter()
            .chain(forecast["optimalDataPoints"].as_array().unwrap())
        {
            assert_shape(point, &SDK_DATA_FIELDS);
        }
    }
    let gb = &forecasts[0];
    assert_eq!(gb["location"], "GB");
    assert_eq!(gb["windowSize"], 10);
    assert_eq!(gb["generatedAt"], "2026-03-02T00:00:00Z");
    // The SDK's own rolling averages of the example: 30, 32.5, 10, 10, each 10 minutes long.
    let values: Vec<f64> = gb["forecastData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [30.0, 32.5, 10.0, 10.0]);
    assert_eq!(gb["forecastData"][0]["duration"], 10);
    let optimal = gb["optimalDataPoints"].as_array().unwrap();
    assert_eq!(optimal.len(), 2);
    assert_eq!(optimal[0]["timestamp"], "2026-03-02T00:10:00Z");
    assert_eq!(optimal[1]["timestamp"], "2026-03-02T00:15:00Z");
    // No data for DE: empty arrays, as the SDK answers when everything was filtered out.
    assert_eq!(forecasts[1]["forecastData"], json!([]));
    assert_eq!(forecasts[1]["optimalDataPoints"], json!([]));
    // Without windowSize the points themselves come back, each its own length.
    let raw: Value = app
        .get("/emissions/forecasts/current?location=GB")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw[0]["windowSize"], 0);
    assert_eq!(raw[0]["forecastData"].as_array().unwrap().len(), 5);
    assert_eq!(raw[0]["optimalDataPoints"][0]["value"], 5.0);

    for bad in [
        "/emissions/forecasts/current",
        "/emissions/forecasts/current?location=GB&windowSize=ten",
        "/emissions/forecasts/current?location=GB&dataStartAt=yesterday",
        "/emissions/forecasts/current?location=GB&colour=green",
    ] {
        assert_problem(app.get(bad).await, 400, "invalid_query").await;
    }
}

async fn site_and_customer(app: &TestApp, pue: f64) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "GB", "pue": pue}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifting_a_run_an_hour_later_saves_what_the_hours_say() {
    let app = spawn_app().await;
    site_and_customer(&app, 1.0).await;
    // Hourly actuals from 22:00 the day before: 500, 500, 300, 200, 100, 100, 400, 500.
    let hours = [
        ("2026-02-28T22:00:00Z", "2026-02-28T23:00:00Z", 500.0),
        ("2026-02-28T23:00:00Z", "2026-03-01T00:00:00Z", 500.0),
        ("2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z", 300.0),
        ("2026-03-01T01:00:00Z", "2026-03-01T02:00:00Z", 200.0),
        ("2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z", 100.0),
        ("2026-03-01T03:00:00Z", "2026-03-01T04:00:00Z", 100.0),
        ("2026-03-01T04:00:00Z", "2026-03-01T05:00:00Z", 400.0),
        ("2026-03-01T05:00:00Z", "2026-03-01T06:00:00Z", 500.0),
    ];
    push(&app, "actual", &hours).await;
    // batch runs 01:00-03:00: 2 kWh, then 1 kWh (PUE 1).
    let readings = json!([
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T01:00:00Z",
         "duration_s": 3600, "energy_j": 7_200_000},
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T02:00:00Z",
         "duration_s": 3600, "energy_j": 3_600_000}
    ]);
    assert_eq!(app.post("/v1/readings", readings).await.status(), 200);
    let body: Value = app
        .get("/v1/customers/acme/shift-opportunities?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&flex_h=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["basis"], "location");
    assert_eq!(body["step_min"], 15);
    let batch = &body["workloads"][0];
    assert_eq!(batch["workload"], "batch");
    let run = &batch["runs"][0];
    assert_eq!(run["start"], "2026-03-01T01:00:00Z");
    assert_eq!(run["end"], "2026-03-01T03:00:00Z");
    close(&run["energy_kwh"], 3.0);
    // As it ran: 2 x 200 + 1 x 100 = 500 g, which is the footprint's location-based figure.
    close(&run["actual_gco2e"], 500.0);
    // An hour later: 2 x 100 + 1 x 100 = 300 g. (45 minutes later: the first hour averages
    // (15 x 200 + 45 x 100) / 60 = 125, so 2 x 125 + 100 = 350; two hours later 2 x 100 + 400 = 600;
    // an hour earlier 2 x 300 + 200 = 800.) Saving 200 g, 40 %.
    assert_eq!(run["best"]["start"], "2026-03-01T02:00:00Z");
    assert_eq!(run["best"]["offset_min"], 60);
    close(&run["best"]["emissions_gco2e"], 300.0);
    close(&run["best"]["saving_gco2e"], 200.0);
    close(&run["best"]["saving_percent"], 40.0);
    // No forecast was stored before the run: nothing to have steered it.
    assert_eq!(run["as_forecast"], Value::Null);
    close(&batch["saving_gco2e"], 200.0);
    close(&body["saving_gco2e"], 200.0);
    let footprint: Value = app
        .get("/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    close(&footprint["totals"]["location_emissions_gco2e"], 500.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forecast_needs_history_then_prices_the_grid_forecast_and_the_profile() {
    let app = spawn_app().await;
    site_and_customer(&app, 1.5).await;
    // One day of history is not enough.
    let day: Vec<Value> = (0..24)
        .map(|h| {
            json!({"site": "fra1", "customer": "acme", "workload": "batch",
                   "start": format!("2026-03-01T{h:02}:00:00Z"), "duration_s": 3600, "power_w": 500})
        })
        .collect();
    assert_eq!(app.post("/v1/readings", json!(day)).await.status(), 200);
    let refused = assert_problem(
        app.get("/v1/customers/acme/forecast?horizon=48h").await,
        422,
        "insufficient_history",
    )
    .await;
    assert!(refused["detail"].as_str().unwrap().contains("576 hours"));

    // 35 days of 500 W around the clock, every hour (the last day again: it replaces, not adds).
    let start: chrono::DateTime<chrono::Utc> = "2026-01-26T00:00:00Z".parse().unwrap();
    let history: Vec<Value> = (0..35 * 24)
        .map(|h| {
            let at = start + chrono::Duration::hours(h);
            json!({"site": "fra1", "customer": "acme", "workload": "batch",
                   "start": at.to_rfc3339(), "duration_s": 3600, "power_w": 500})
        })
        .collect();
    assert_eq!(app.post("/v1/readings", json!(history)).await.status(), 200);
    // The grid: 100 g/kWh for the last four weeks (daily points), a forecast of 200 for the
    // next 12 hours.
    let days: Vec<(String, String)> = (0..28)
        .map(|d| {
            let from = start + chrono::Duration::days(7 + d);
            (
                from.to_rfc3339(),
                (from + chrono::Duration::days(1)).to_rfc3339(),
            )
        })
        .collect();
    let actuals: Vec<(&str, &str, f64)> = days
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str(), 100.0))
        .collect();
    push(&app, "actual", &actuals).await;
    push(
        &app,
        "forecast",
        &[("2026-03-02T00:00:00Z", "2026-03-02T12:00:00Z", 200.0)],
    )
    .await;
    let body: Value = app
        .get("/v1/customers/acme/forecast?horizon=48h&granularity=day")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["from"], "2026-03-02T00:00:00Z");
    assert_eq!(body["to"], "2026-03-04T00:00:00Z");
    assert_eq!(body["basis"], "location");
    // 500 W x PUE 1.5 = 0.75 kWh every hour: seasonal naive is exact (backtest error 0) and wins.
    let model = &body["models"][0];
    assert_eq!(model["workload"], "batch");
    assert_eq!(model["history_h"], 840);
    close(&model["baseline_mae_kwh"], 0.0);
    assert!(model["model"]
        .as_str()
        .unwrap()
        .starts_with("seasonal naive"));
    // 48 h x 0.75 = 36 kWh; 12 h x 0.75 x 200 + 36 h x 0.75 x 100 = 1,800 + 2,700 = 4,500 g.
    let totals = &body["totals"];
    close(&totals["energy_kwh"], 36.0);
    close(&totals["emissions_gco2e"], 4_500.0);
    close(&totals["grid_forecast_share"], 0.25);
    close(&totals["seasonal_profile_share"], 0.75);
    close(&totals["energy_lower_kwh"], 36.0);
    close(&totals["energy_upper_kwh"], 36.0);
    // Two days of 18 kWh: the first 12 x 0.75 x 200 + 12 x 0.75 x 100 = 1,800 + 900 = 2,700 g,
    // the second 24 x 0.75 x 100 = 1,800 g.
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["bucket_start"], "2026-03-02T00:00:00Z");
    assert_eq!(rows[0]["workload"], "batch");
    close(&rows[0]["emissions_gco2e"], 2_700.0);
    close(&rows[1]["emissions_gco2e"], 1_800.0);
    assert_eq!(body["buckets"].as_array().unwrap().len(), 2);
    assert!(body["backtest"]["method"]
        .as_str()
        .unwrap()
        .contains("rolling origin"));

    // Asked again, the same forecast (kept, not refitted); once the data it read change and are
    // committed, a new one: 1,000 W from the same hours doubles the energy.
    let path = "/v1/customers/acme/forecast?horizon=48h&granularity=day";
    let again: Value = app.get(path).await.json().await.unwrap();
    assert_eq!(again, body);
    let doubled: Vec<Value> = history
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["power_w"] = json!(1000);
            r
        })
        .collect();
    assert_eq!(app.post("/v1/readings", json!(doubled)).await.status(), 200);
    app.flush().await;
    let after: Value = app.get(path).await.json().await.unwrap();
    close(&after["totals"]["energy_kwh"], 72.0);
    for bad in [
        "horizon=0h",
        "horizon=91d",
        "horizon=9999999999999999w",
        "level=1",
        "history_days=7",
        "granularity=week",
        "tz=Mars/Olympus",
    ] {
        let path = format!("/v1/customers/acme/forecast?{bad}");
        assert_problem(app.get(&path).await, 400, "invalid_query").await;
    }
}
