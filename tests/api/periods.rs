//! Closed periods and statements: the statement of a closed period stays byte for byte what it
//! was at the close, whatever arrives or changes later, across flushes, compaction and restarts.
use crate::helpers::{assert_problem, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const STATEMENT: &str = "/v1/customers/acme/statements/2026-03";

async fn statement_bytes(app: &TestApp, token: Option<&str>) -> (u16, Vec<u8>) {
    statement_at(app, token, STATEMENT).await
}

async fn statement_at(app: &TestApp, token: Option<&str>, path: &str) -> (u16, Vec<u8>) {
    let response = match token {
        Some(token) => app.call(Method::GET, path, Some(token), None).await,
        None => app.get(path).await,
    };
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn intensity(gco2e_per_kwh: f64) -> Value {
    json!({"zone": "DE", "source": "manual", "signal": "average", "points": [
        {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z",
         "gco2e_per_kwh": gco2e_per_kwh, "kind": "actual"}]})
}

fn reading(customer: &str, start: &str) -> Value {
    json!([{"site": "fra1", "customer": customer, "workload": "api", "start": start,
            "duration_s": 3600, "energy_j": 3_600_000}])
}

#[tokio::test]
async fn a_closed_periods_statement_never_changes_and_is_sealed() {
    let app = spawn_app().await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    app.put("/v1/customers/globex", json!({"name": "Globex"}))
        .await;
    assert_eq!(
        app.post("/v1/intensity", intensity(400.0)).await.status(),
        200
    );
    let at_nine = "2026-03-01T09:00:00Z";
    assert_eq!(
        app.post("/v1/readings", reading("acme", at_nine))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post("/v1/readings", reading("globex", at_nine))
            .await
            .status(),
        200
    );

    // A whole 1,000 kg, 4-year machine held by acme's api for the reading's hour.
    let machine = json!({"site": "fra1", "class": "server-minimal", "shared_by": "node",
        "total": 1, "in_service": "2025-01-01"});
    assert_eq!(app.put("/v1/hardware/srv1", machine).await.status(), 201);
    let hold = |from: &str, to: &str| {
        json!({"hardware": "srv1", "customer": "acme", "workload": "api", "from": from,
               "to": to, "reserved": 1})
    };
    let held = hold("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z");
    assert_eq!(app.put("/v1/reservations/r1", held).await.status(), 201);

    let period =
        json!({"id": "2026-03", "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"});
    let closed = app.post("/v1/periods", period.clone()).await;
    assert_eq!(closed.status(), 201);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(closed["closed_by"], "bootstrap-admin");
    assert!(
        closed["versions"]["readings"].as_u64().is_some(),
        "flushed before the close"
    );

    let (status, at_close) = statement_bytes(&app, None).await;
    assert_eq!(status, 200);
    let statement: Value = serde_json::from_slice(&at_close).unwrap();
    // 3.6 MJ = 1 kWh IT; PUE 1.5 = 1.5 kWh facility; at 400 g/kWh = 600 g, no instruments.
    assert_eq!(statement["totals"]["it_energy_kwh"], 1.0);
    assert_eq!(statement["totals"]["facility_energy_kwh"], 1.5);
    assert_eq!(statement["totals"]["location_emissions_gco2e"], 600.0);
    assert_eq!(statement["by_month"].as_array().unwrap().len(), 1);
    assert_eq!(statement["by_month"][0]["site"], "fra1");
    assert_eq!(statement["sites"][0]["pue"], 1.5);
    assert_eq!(statement["method_version"], "3");
    // Scope 3 beside it: 1,000,000 g x 1 h / 35,040 h = 28.538812785 g, all of the energy known.
    assert_eq!(statement["totals"]["embodied_gco2e"], 28.538812785);
    assert_eq!(statement["totals"]["embodied_known_share"], 1.0);
    // The one hour of manual actual intensity in force for DE over the period.
    assert_eq!(
        statement["intensity_sources"],
        json!([{"zone": "DE", "source": "manual", "kind": "actual", "hours": 1.0}])
    );
    // The seal: sha256 of the statement as served, without its last field (the seal itself).
    let seal = statement["sha256"].as_str().unwrap();
    let suffix = format!(",\"sha256\":\"{seal}\"}}");
    let text = std::str::from_utf8(&at_close).unwrap();
    let unsealed = format!(
        "{}}}",
        text.strip_suffix(&suffix).expect("the seal is last")
    );
    assert_eq!(hex::encode(Sha256::digest(unsealed.as_bytes())), seal);

    // After the close: a late reading, revised intensity, a PUE change, a new instrument.
    assert_eq!(
        app.post("/v1/readings", reading("acme", "2026-03-01T10:00:00Z"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post("/v1/intensity", intensity(800.0)).await.status(),
        200
    );
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "DE", "pue": 2.0}),
    )
    .await;
    let ppa = json!({"site": "fra1", "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z",
                     "energy_mwh": 1.0, "gco2e_per_kwh": 0.0, "kind": "ppa"});
    assert_eq!(app.put("/v1/instruments/ppa-1", ppa).await.status(), 201);
    let later = hold("2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z");
    assert_eq!(app.put("/v1/reservations/r2", later).await.status(), 201);
    let live: Value = app
        .get("/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        live["totals"]["it_energy_kwh"], 2.0,
        "today's data has moved on"
    );
    assert_eq!(statement_bytes(&app, None).await.1, at_close, "unflushed");
    app.flush().await;
    app.compact().await;
    assert_eq!(
        statement_bytes(&app, None).await.1,
        at_close,
        "flushed and compacted"
    );
    let app = app.restart().await;
    assert_eq!(
        statement_bytes(&app, None).await.1,
        at_close,
        "after a restart"
    );
    // A statement first asked for now still shows the period as closed: globex's one reading,
    // 1 kWh x PUE 1.5 x 400 g/kWh, not the revised intensity or the new PUE.
    let globex_statement: Value = app
        .get("/v1/customers/globex/statements/2026-03")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(globex_statement["totals"]["facility_energy_kwh"], 1.5);
    assert_eq!(
        globex_statement["totals"]["location_emissions_gco2e"],
        600.0
    );
    assert_eq!(
        globex_statement["instruments"],
        json!([]),
        "the PPA came after the close"
    );

    // The customer's own key reads it; another customer's key finds nothing.
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let (_, globex) = app
        .create_key(json!({"role": "customer", "customer": "globex"}))
        .await;
    assert_eq!(
        statement_bytes(&app, Some(&acme)).await,
        (200, at_close.clone())
    );
    assert_eq!(statement_bytes(&app, Some(&globex)).await.0, 404);

    // A closed period never changes.
    assert_problem(app.post("/v1/periods", period).await, 409, "period_closed").await;
    let bad =
        json!({"id": "2026-04", "from": "2026-05-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"});
    assert_problem(app.post("/v1/periods", bad).await, 422, "validation_failed").await;
    let listed: Value = app.get("/v1/periods").await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(app.get("/v1/periods/2026-03").await.status(), 200);
    assert_eq!(app.get("/v1/periods/nope").await.status(), 404);

    // Drift names what changed since the close; a reissue makes version 2 from today's data.
    let drift: Value = app
        .get("/v1/periods/2026-03/drift")
        .await
        .json()
        .await
        .unwrap();
    let acme_drift = drift["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer"] == "acme")
        .unwrap();
    assert_eq!(acme_drift["late_readings"], 1);
    assert_eq!(acme_drift["it_energy_kwh"], 1.0);
    assert_eq!(acme_drift["issued"]["it_energy_kwh"], 1.0);
    assert_eq!(acme_drift["today"]["it_energy_kwh"], 2.0);
    assert_eq!(drift["intensity_points_after_issue"], 1, "the revision");
    let changed: Vec<(String, String)> = drift["registry_changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["changes"].as_array().unwrap().clone())
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        changed.contains(&("fra1".into(), "updated".into())),
        "{changed:?}"
    );
    assert!(
        changed.contains(&("ppa-1".into(), "created".into())),
        "{changed:?}"
    );

    let reissued = app
        .post(
            "/v1/periods/2026-03/reissue",
            json!({"reason": "late readings of fra1"}),
        )
        .await;
    assert_eq!(reissued.status(), 201);
    let reissued: Value = reissued.json().await.unwrap();
    assert_eq!(reissued["version"], 2);
    let (status, second) = statement_bytes(&app, Some(&acme)).await;
    assert_eq!(status, 200);
    let second: Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(second["statement_version"], 2);
    assert_eq!(second["reason"], "late readings of fra1");
    // 2 kWh at PUE 2.0 now.
    assert_eq!(second["totals"]["it_energy_kwh"], 2.0);
    assert_eq!(second["totals"]["facility_energy_kwh"], 4.0);
    // And three hours of the machine: 3 x 1,000,000 g / 35,040 h.
    assert_eq!(second["totals"]["embodied_gco2e"], 85.616438356);
    let first = statement_at(&app, Some(&acme), &format!("{STATEMENT}?version=1")).await;
    assert_eq!(first, (200, at_close), "version 1 stays as it was");
    let missing = statement_at(&app, None, &format!("{STATEMENT}?version=3")).await;
    assert_eq!(missing.0, 404);

    // The same statement as CSV and as a printable page; the period export holds every customer.
    let (status, csv) = statement_at(
        &app,
        Some(&acme),
        &format!("{STATEMENT}?version=1&format=csv"),
    )
    .await;
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("usage_month,customer,workload,location.location,location.region,carbon_model_version,carbon_footprint_kgCO2e.scope2.location_based"), "{csv}");
    // 600 g = 0.6 kg, both bases (no instrument at the close).
    assert!(
        lines[1].starts_with("2026-03-01,acme,api,fra1,DE,3,0.6,0.6,1,1.5,2026-03,1,"),
        "{csv}"
    );
    // Scope 3: 28.538812785 g = 0.028538813 kg, for all of the energy; nothing modelled or
    // allocated.
    assert!(lines[1].ends_with(",0.028538813,1,0,0"), "{csv}");
    let (status, page) = statement_at(
        &app,
        Some(&acme),
        &format!("{STATEMENT}?version=1&format=html"),
    )
    .await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("<h1>Carbon statement: acme</h1>")
            && page.contains("0.600 kgCO2e")
            && page
                .contains("<strong>0.029 kgCO2e</strong>, registered for 100.0% of the IT energy")
            && page
                .contains("Of the IT energy, 1.000 kWh was measured by meters, 0.000 kWh modelled"),
        "{page}"
    );
    assert!(!page.contains("<script"), "a printable page runs nothing");
    let bad_format = app.get(&format!("{STATEMENT}?format=xml")).await;
    assert_problem(bad_format, 422, "validation_failed").await;
    let export = app.get("/v1/periods/2026-03/export?version=1").await;
    assert_eq!(export.status(), 200);
    let export = export.text().await.unwrap();
    assert!(
        export
            .lines()
            .any(|l| l.starts_with("2026-03-01,acme,api,fra1,DE")),
        "{export}"
    );
    assert!(
        export
            .lines()
            .any(|l| l.starts_with("2026-03-01,globex,api,fra1,DE")),
        "{export}"
    );
    assert_eq!(
        app.call(Method::GET, "/v1/periods/2026-03/export", Some(&acme), None)
            .await
            .status(),
        403
    );
}
