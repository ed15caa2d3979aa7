//! Site meters and a site's books over HTTP, against hand arithmetic: what the meters measured,
//! what the workloads add up to, the unattributed remainder and the measured PUE.
use crate::helpers::{assert_problem, spawn_app, TestApp};
use polars::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Cursor;

/// fra1 with three customers, each with one workload of 1, 2 and 3 kWh from 09:00 to 10:00.
pub(crate) async fn site_with_workloads(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}),
    )
    .await;
    for customer in ["acme", "globex", "initech"] {
        app.put(
            &format!("/v1/customers/{customer}"),
            json!({"name": customer}),
        )
        .await;
    }
    let readings: Vec<Value> = [("acme", 1.0), ("globex", 2.0), ("initech", 3.0)]
        .iter()
        .map(|(customer, kwh)| {
            json!({"site": "fra1", "customer": customer, "workload": "app",
                   "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": kwh * 3.6e6})
        })
        .collect();
    assert_eq!(
        app.post("/v1/readings", json!(readings)).await.status(),
        200
    );
}

pub(crate) const BOOKS: &str = "/v1/sites/fra1/reconciliation?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z&granularity=hour";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_show_the_idle_remainder_the_measured_pue_and_a_meter_gap() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    // 09:00-10:00: the main meter 12 kWh; two PDUs 4.5 + 3.5 = 8 kWh of IT, in 15-minute
    // readings (power for one, energy for the other); cooling 3 kWh.
    let mut meters = vec![
        json!({"site": "fra1", "meter": "main", "kind": "facility", "start": "2026-03-01T09:00:00Z",
               "duration_s": 3600, "energy_j": 12.0 * 3.6e6}),
        json!({"site": "fra1", "meter": "chiller", "kind": "cooling", "start": "2026-03-01T09:00:00Z",
               "duration_s": 3600, "power_w": 3000}),
    ];
    for quarter in 0..4 {
        let start = format!("2026-03-01T09:{:02}:00Z", quarter * 15);
        // 4.5 kWh an hour = 4,500 W; 3.5 kWh an hour = 0.875 kWh a quarter.
        meters.push(
            json!({"site": "fra1", "meter": "pdu-a", "kind": "it", "start": start,
                           "duration_s": 900, "power_w": 4500}),
        );
        meters.push(
            json!({"site": "fra1", "meter": "pdu-b", "kind": "it", "start": start,
                           "duration_s": 900, "energy_j": 0.875 * 3.6e6}),
        );
    }
    // 10:00-11:00: the main meter again, but pdu-b reports only its first half hour.
    meters.push(json!({"site": "fra1", "meter": "main", "kind": "facility",
                       "start": "2026-03-01T10:00:00Z", "duration_s": 3600, "energy_j": 6.0 * 3.6e6}));
    meters.push(json!({"site": "fra1", "meter": "pdu-a", "kind": "it",
                       "start": "2026-03-01T10:00:00Z", "duration_s": 3600, "power_w": 2000}));
    meters.push(json!({"site": "fra1", "meter": "pdu-b", "kind": "it",
                       "start": "2026-03-01T10:00:00Z", "duration_s": 1800, "power_w": 2000}));
    let accepted: Value = app
        .post("/v1/meters", json!(meters))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["accepted"], 13);
    // The main meter's 09:00 reading sent again as CSV, corrected: it replaces the first.
    let csv = "site,meter,kind,start,duration_s,energy_j,power_w\n\
               fra1,main,facility,2026-03-01T09:00:00Z,3600,43200000,\n";
    assert_eq!(
        app.post_raw("/v1/meters", "text/csv", csv).await.status(),
        200
    );

    let books: Value = app.get(BOOKS).await.json().await.unwrap();
    let rows = books["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let nine = &rows[0];
    assert_eq!(nine["bucket_start"], "2026-03-01T09:00:00Z");
    assert_eq!(nine["facility_meter_kwh"], 12.0);
    assert_eq!(nine["it_meter_kwh"], 8.0);
    assert_eq!(nine["cooling_meter_kwh"], 3.0);
    assert_eq!(nine["it_meter_coverage"], 1.0);
    // Workloads 1 + 2 + 3 = 6 kWh of the 8 metered: 2 kWh unattributed, 75% attributed, and a
    // measured PUE of 12 / 8 = 1.5.
    assert_eq!(nine["measured_workloads_kwh"], 6.0);
    assert_eq!(nine["unattributed_it_kwh"], 2.0);
    assert_eq!(nine["attribution_coverage"], 0.75);
    assert_eq!(nine["measured_pue"], 1.5);
    assert_eq!(nine["discrepancies"], json!([]));
    let ten = &rows[1];
    // pdu-b reported half the hour: the IT meters cover 50%, nothing is concluded.
    assert_eq!(ten["it_meter_kwh"], 3.0);
    assert_eq!(ten["it_meter_coverage"], 0.5);
    assert_eq!(ten["unattributed_it_kwh"], Value::Null);
    assert_eq!(ten["measured_pue"], Value::Null);
    assert!(ten["discrepancies"][0].as_str().unwrap().contains("50.0%"));
    assert_eq!(books["totals"]["facility_meter_kwh"], 18.0);

    let csv = app
        .get(&format!("{BOOKS}&format=csv"))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("bucket_start,facility_meter_kwh,it_meter_kwh"));
    assert!(
        lines[1].starts_with("2026-03-01T09:00:00Z,12,8,3,0,1,1,6,0,2,0.75,1.5,"),
        "{csv}"
    );

    let parquet = app
        .get(&format!("{BOOKS}&format=parquet"))
        .await
        .bytes()
        .await
        .unwrap();
    let frame = ParquetReader::new(Cursor::new(parquet.to_vec()))
        .finish()
        .unwrap();
    assert_eq!(frame.height(), 2);
    let unattributed = frame.column("unattributed_it_kwh").unwrap().f64().unwrap();
    assert_eq!(unattributed.get(0), Some(2.0));
    assert_eq!(unattributed.get(1), None, "the 10:00 meter gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_above_the_meter_are_a_discrepancy_and_bad_meters_are_refused() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    // The IT meter saw 5 kWh, the workloads 6: never a negative remainder.
    let meter = json!([{"site": "fra1", "meter": "ups", "kind": "it",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": 5.0 * 3.6e6}]);
    assert_eq!(app.post("/v1/meters", meter).await.status(), 200);
    let books: Value = app.get(BOOKS).await.json().await.unwrap();
    let nine = &books["rows"][0];
    assert_eq!(nine["unattributed_it_kwh"], Value::Null);
    assert!(nine["discrepancies"][0]
        .as_str()
        .unwrap()
        .contains("1.000000 kWh more than the IT meters"));

    let bad = json!([{"site": "lon9", "meter": "main", "kind": "solar",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": 1, "power_w": 1}]);
    let problem = assert_problem(app.post("/v1/meters", bad).await, 422, "validation_failed").await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/0/site", "/0/kind", "/0/energy_j"]);
    app.put(
        "/v1/sites/lon1",
        json!({"name": "London 1", "zone": "GB", "pue": 1.2}),
    )
    .await;
    let (_, london_agent) = app
        .create_key(json!({"role": "ingest", "sites": ["lon1"]}))
        .await;
    let fra1 = json!([{"site": "fra1", "meter": "main", "kind": "facility",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": 1}]);
    let refused = app
        .call(Method::POST, "/v1/meters", Some(&london_agent), Some(&fra1))
        .await;
    assert_problem(refused, 403, "forbidden").await;
    // A site with meter readings stays (retire it instead).
    assert_problem(app.delete("/v1/sites/fra1").await, 409, "in_use").await;
    assert_problem(
        app.get("/v1/sites/fra9/reconciliation?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z")
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footprints_use_the_measured_pue_and_closed_statements_keep_theirs() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    // fra1 is configured at PUE 1.5; its meters measured 12 / 10 = 1.2 from 09:00 to 10:00.
    let meters = json!([
        {"site": "fra1", "meter": "main", "kind": "facility", "start": "2026-03-01T09:00:00Z",
         "duration_s": 3600, "energy_j": 12.0 * 3.6e6},
        {"site": "fra1", "meter": "ups", "kind": "it", "start": "2026-03-01T09:00:00Z",
         "duration_s": 3600, "energy_j": 10.0 * 3.6e6}]);
    assert_eq!(app.post("/v1/meters", meters).await.status(), 200);
    let later = json!([{"site": "fra1", "customer": "acme", "workload": "app",
        "start": "2026-03-01T10:00:00Z", "duration_s": 3600, "energy_j": 3.6e6}]);
    assert_eq!(app.post("/v1/readings", later).await.status(), 200);
    let path = "/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";
    let body: Value = app.get(path).await.json().await.unwrap();
    // acme: 1 kWh at 09:00 x 1.2 (measured) + 1 kWh at 10:00 x 1.5 (no meters) = 2.7 kWh.
    let facility = body["totals"]["facility_energy_kwh"].as_f64().unwrap();
    assert!((facility - 2.7).abs() < 1e-9, "{body}");
    let share = body["totals"]["pue_measured_share"].as_f64().unwrap();
    assert!((share - 1.2 / 2.7).abs() < 1e-9, "{share}");

    app.flush().await;
    let period =
        json!({"id": "2026-03", "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"});
    assert_eq!(app.post("/v1/periods", period).await.status(), 201);
    let statement = "/v1/customers/acme/statements/2026-03";
    let at_close = app.get(statement).await.bytes().await.unwrap();
    // Meters for 10:00 arrive after the close (PUE 1.1): today's footprint moves, the
    // statement does not.
    let late = json!([
        {"site": "fra1", "meter": "main", "kind": "facility", "start": "2026-03-01T10:00:00Z",
         "duration_s": 3600, "energy_j": 11.0 * 3.6e6},
        {"site": "fra1", "meter": "ups", "kind": "it", "start": "2026-03-01T10:00:00Z",
         "duration_s": 3600, "energy_j": 10.0 * 3.6e6}]);
    assert_eq!(app.post("/v1/meters", late).await.status(), 200);
    app.flush().await;
    let body: Value = app.get(path).await.json().await.unwrap();
    let facility = body["totals"]["facility_energy_kwh"].as_f64().unwrap();
    assert!((facility - 2.3).abs() < 1e-9, "1.2 + 1.1: {body}");
    assert_eq!(app.get(statement).await.bytes().await.unwrap(), at_close);
    let sealed: Value = serde_json::from_slice(&at_close).unwrap();
    assert_eq!(sealed["totals"]["facility_energy_kwh"], 2.7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_energy_proportional_site_allocates_its_idle_energy_and_the_books_balance() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    let site = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
                      "allocation": "energy_proportional"});
    assert_eq!(app.put("/v1/sites/fra1", site).await.status(), 200);
    // The UPS measured 8 kWh from 09:00 to 10:00; the workloads 1 + 2 + 3 = 6.
    let ups = json!([{"site": "fra1", "meter": "ups", "kind": "it",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": 8.0 * 3.6e6}]);
    assert_eq!(app.post("/v1/meters", ups).await.status(), 200);

    // acme, with its own key: 1 kWh measured plus 2 x 1/6 = 1/3 kWh allocated; at PUE 1.5,
    // 4/3 x 1.5 = 2 kWh of facility energy.
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let path = "/v1/customers/acme/footprint?from=2026-03-01T09:00:00Z&to=2026-03-01T10:00:00Z";
    let own: Value = app
        .call(Method::GET, path, Some(&acme), None)
        .await
        .json()
        .await
        .unwrap();
    let totals = &own["totals"];
    let close = |v: &Value, expected: f64| {
        assert!(
            (v.as_f64().unwrap() - expected).abs() < 1e-6,
            "{v} != {expected}"
        );
    };
    close(&totals["attributed_it_energy_kwh"], 1.0);
    close(&totals["allocated_it_energy_kwh"], 1.0 / 3.0);
    close(&totals["it_energy_kwh"], 4.0 / 3.0);
    close(&totals["facility_energy_kwh"], 2.0);

    // Every customer together: exactly the meter, and the books leave the operator nothing.
    let all: Value = app
        .get("/v1/footprint?from=2026-03-01T09:00:00Z&to=2026-03-01T10:00:00Z&group_by=customer")
        .await
        .json()
        .await
        .unwrap();
    close(&all["totals"]["it_energy_kwh"], 8.0);
    let books: Value = app.get(BOOKS).await.json().await.unwrap();
    let nine = &books["rows"][0];
    close(&nine["measured_workloads_kwh"], 6.0);
    close(&nine["unattributed_it_kwh"], 2.0);
    close(&nine["allocated_it_kwh"], 2.0);
    close(&nine["operator_it_kwh"], 0.0);
}
