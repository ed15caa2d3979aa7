//! Embodied emissions and the SCI over HTTP: hardware and reservations in the registry, the
//! footprint's `embodied_gco2e` and `embodied_known_share`, functional units in, the SCI out,
//! all against hand arithmetic.
use crate::helpers::{assert_problem, spawn_app, TestApp};
use serde_json::{json, Value};

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!(
        (actual - expected).abs() < 1e-6 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

/// One vCPU-hour of the shipped `server-2s-256gb` class: 1,633.125 kg over 4 years (35,040 h)
/// shared by 64 vCPUs = 0.72826... g.
const PER_VCPU_HOUR: f64 = 1_633_125.0 / 35_040.0 / 64.0;

/// fra1 (GB, PUE 1.5), acme and globex, 330 g/kWh from 09:00 and 200 g/kWh from 10:00, one
/// 64-vCPU server: acme's api holds 16 vCPUs and globex's db 48 from 09:00 to 11:00.
async fn setup(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "GB", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    app.put("/v1/customers/globex", json!({"name": "Globex"}))
        .await;
    let intensity = json!({"zone": "GB", "source": "manual", "signal": "average", "points": [
        {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z", "gco2e_per_kwh": 330, "kind": "actual"},
        {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z", "gco2e_per_kwh": 200, "kind": "actual"}]});
    assert_eq!(app.post("/v1/intensity", intensity).await.status(), 200);
    let server = app
        .put(
            "/v1/hardware/srv1",
            json!({"site": "fra1", "class": "server-2s-256gb", "shared_by": "vcpu", "total": 64,
                   "in_service": "2025-06-01"}),
        )
        .await;
    assert_eq!(server.status(), 201);
    let server: Value = server.json().await.unwrap();
    // The class table's figures: 1,000 + 100 + 240 GB x 533/384 + 2 SSDs x 100 over 4 years.
    close(&server["embodied_kgco2e"], 1633.125);
    close(&server["lifespan_years"], 4.0);
    assert_eq!(server["defaults_from_class"], true);
    for (id, customer, workload, reserved) in [
        ("acme-api", "acme", "api", 16),
        ("globex-db", "globex", "db", 48),
    ] {
        let body = json!({"hardware": "srv1", "customer": customer, "workload": workload,
            "from": "2026-03-01T09:00:00Z", "to": "2026-03-01T11:00:00Z", "reserved": reserved});
        let path = format!("/v1/reservations/{id}");
        assert_eq!(app.put(&path, body).await.status(), 201);
    }
    // acme's api: 1 kWh from 09:00 to 10:00, and 1,000 W for the half hour from 10:00.
    let readings = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:00:00Z",
         "duration_s": 3600, "energy_j": 3600000},
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T10:00:00Z",
         "duration_s": 1800, "power_w": 1000}]);
    assert_eq!(app.post("/v1/readings", readings).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_and_reservations_keep_the_registry_consistent() {
    let app = spawn_app().await;
    setup(&app).await;
    // A class outside the shipped table needs both figures; each missing one is named.
    let custom = app
        .put(
            "/v1/hardware/box",
            json!({"site": "fra1", "class": "my-box", "shared_by": "gpu", "total": 8,
                   "in_service": "2025-06-01"}),
        )
        .await;
    let problem = assert_problem(custom, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["embodied_kgco2e", "lifespan_years"]);
    let elsewhere = json!({"site": "lon9", "class": "server-minimal", "shared_by": "node",
        "total": 1, "in_service": "2025-06-01"});
    assert_problem(
        app.put("/v1/hardware/far", elsewhere).await,
        422,
        "unknown_site",
    )
    .await;
    // 16 + 48 vCPUs are held from 09:00 to 11:00: one more from 10:00 would be 65 of 64.
    let over = json!({"hardware": "srv1", "customer": "acme", "workload": "batch",
        "from": "2026-03-01T10:00:00Z", "to": "2026-03-01T10:30:00Z", "reserved": 1});
    let problem = assert_problem(
        app.put("/v1/reservations/over", over.clone()).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "reserved");
    // From 11:00 the machine is free again.
    let mut later = over.clone();
    later["from"] = json!("2026-03-01T11:00:00Z");
    later["to"] = json!("2026-03-01T12:00:00Z");
    assert_eq!(app.put("/v1/reservations/later", later).await.status(), 201);
    // Shrinking the machine below what is held is refused too.
    let smaller = json!({"site": "fra1", "class": "server-2s-256gb", "shared_by": "vcpu",
        "total": 32, "in_service": "2025-06-01"});
    assert_problem(
        app.put("/v1/hardware/srv1", smaller).await,
        422,
        "validation_failed",
    )
    .await;
    let mut unknown = over;
    unknown["hardware"] = json!("srv9");
    assert_problem(
        app.put("/v1/reservations/nowhere", unknown).await,
        422,
        "unknown_hardware",
    )
    .await;
    // Reserved hardware, and the site it stands in, stay.
    assert_problem(app.delete("/v1/hardware/srv1").await, 409, "in_use").await;
    let listed: Value = app.get("/v1/reservations").await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let history: Value = app.get("/v1/registry/history").await.json().await.unwrap();
    assert!(history.to_string().contains("\"kind\":\"reservation\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_footprint_carries_embodied_grams_and_the_energy_they_speak_for() {
    let app = spawn_app().await;
    setup(&app).await;
    let path = "/v1/customers/acme/footprint?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z\
                &granularity=hour&group_by=workload";
    let body: Value = app.get(path).await.json().await.unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // 09:00: 1 kWh x 1.5 x 330 = 495 g; 16 vCPU-hours of the server.
    close(&rows[0]["location_emissions_gco2e"], 495.0);
    close(&rows[0]["embodied_gco2e"], 16.0 * PER_VCPU_HOUR);
    close(&rows[0]["embodied_known_share"], 1.0);
    // 10:00: 0.5 kWh x 1.5 x 200 = 150 g; 16 more vCPU-hours.
    close(&rows[1]["location_emissions_gco2e"], 150.0);
    close(&rows[1]["embodied_gco2e"], 16.0 * PER_VCPU_HOUR);
    close(&body["totals"]["embodied_gco2e"], 32.0 * PER_VCPU_HOUR);
    // globex's 48 vCPUs are globex's: the operator's view of both adds 96 vCPU-hours of it.
    let all: Value = app
        .get("/v1/footprint?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z&group_by=customer")
        .await
        .json()
        .await
        .unwrap();
    close(&all["totals"]["embodied_gco2e"], 128.0 * PER_VCPU_HOUR);
    let globex = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer"] == "globex")
        .unwrap();
    // No energy measured for globex, so no share of it is known, but its grams are there.
    close(&globex["it_energy_kwh"], 0.0);
    close(&globex["embodied_gco2e"], 96.0 * PER_VCPU_HOUR);
    // The flat formats carry both columns.
    let csv = app
        .get(&format!("{path}&format=csv"))
        .await
        .text()
        .await
        .unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains(",embodied_gco2e,embodied_known_share"),
        "{header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sci_divides_location_and_embodied_grams_by_the_units_counted() {
    let app = spawn_app().await;
    setup(&app).await;
    let units = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:00:00Z",
         "duration_s": 3600, "unit": "requests", "count": 1000},
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T10:00:00Z",
         "duration_s": 3600, "unit": "requests", "count": 500}]);
    let accepted: Value = app
        .post("/v1/functional-units", units)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["accepted"], 2);
    // The 09:00 count sent again as CSV replaces the first: 1,200 requests, not 2,200.
    let csv = "site,customer,workload,start,duration_s,unit,count\n\
               fra1,acme,api,2026-03-01T09:00:00Z,3600,requests,1200\n";
    let response = app.post_raw("/v1/functional-units", "text/csv", csv).await;
    assert_eq!(response.status(), 200);
    let path = "/v1/customers/acme/sci?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z\
                &unit=requests&granularity=hour";
    let check = |body: &Value| {
        assert_eq!(body["intensity_basis"], "location");
        assert!(body["method"].as_str().unwrap().contains("Market-based"));
        let rows = body["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let embodied = 16.0 * PER_VCPU_HOUR;
        // 09:00: (495 + 11.652 g) / 1,200 requests; 10:00: (150 + 11.652) / 500.
        close(&rows[0]["functional_units"], 1200.0);
        close(&rows[0]["energy_kwh"], 1.5);
        close(&rows[0]["location_intensity_gco2e_per_kwh"], 330.0);
        close(&rows[0]["sci_gco2e_per_unit"], (495.0 + embodied) / 1200.0);
        close(&rows[1]["sci_gco2e_per_unit"], (150.0 + embodied) / 500.0);
        // The whole: (645 + 23.304) / 1,700.
        close(
            &body["totals"]["sci_gco2e_per_unit"],
            (645.0 + 2.0 * embodied) / 1700.0,
        );
    };
    let body: Value = app.get(path).await.json().await.unwrap();
    check(&body);
    // Durable: flushed into the table, and after a restart, the same answer.
    app.flush().await;
    check(&app.get(path).await.json().await.unwrap());
    let app = app.restart().await;
    check(&app.get(path).await.json().await.unwrap());

    // A customer reads its own SCI only; another customer's is a 404 like a missing one.
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let (_, globex) = app
        .create_key(json!({"role": "customer", "customer": "globex"}))
        .await;
    let own = app
        .call(reqwest::Method::GET, path, Some(&acme), None)
        .await;
    assert_eq!(own.status(), 200);
    let other = app
        .call(reqwest::Method::GET, path, Some(&globex), None)
        .await;
    assert_problem(other, 404, "not_found").await;
    // No jobs were counted: R is 0 and the SCI is undefined.
    assert_problem(
        app.get(&path.replace("unit=requests", "unit=jobs")).await,
        422,
        "no_functional_units",
    )
    .await;
    assert_problem(
        app.get(&path.replace("unit=requests", "unit=Requests!"))
            .await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_count_refuses_the_batch_naming_row_and_field() {
    let app = spawn_app().await;
    setup(&app).await;
    let units = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:00:00Z",
         "duration_s": 3600, "unit": "requests", "count": 10},
        {"site": "fra1", "customer": "initech", "workload": "api", "start": "2026-03-01T10:00:00Z",
         "duration_s": 0, "unit": "requests", "count": -1}]);
    let problem = assert_problem(
        app.post("/v1/functional-units", units).await,
        422,
        "validation_failed",
    )
    .await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/1/customer", "/1/duration_s", "/1/count"]);
    // Nothing of the batch was stored.
    assert_problem(
        app.get("/v1/customers/acme/sci?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z&unit=requests")
            .await,
        422,
        "no_functional_units",
    )
    .await;
    let arrow = app
        .post_raw(
            "/v1/functional-units",
            "application/vnd.apache.arrow.stream",
            vec![0u8; 8],
        )
        .await;
    // Arrow streams are taken too; eight zero bytes are none.
    assert_problem(arrow, 400, "malformed_body").await;
    // An ingest key for another site may not count for fra1.
    app.put(
        "/v1/sites/lon1",
        json!({"name": "London 1", "zone": "GB", "pue": 1.2}),
    )
    .await;
    let (_, other_site) = app
        .create_key(json!({"role": "ingest", "sites": ["lon1"]}))
        .await;
    let body = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "unit": "requests", "count": 1}]);
    let refused = app
        .call(
            reqwest::Method::POST,
            "/v1/functional-units",
            Some(&other_site),
            Some(&body),
        )
        .await;
    assert_problem(refused, 403, "forbidden").await;
}
