//! The registry over HTTP: sites, customers, zones, instruments, and their survival of restarts.
use crate::helpers::{assert_problem, spawn_app, ADMIN_TOKEN};
use serde_json::{json, Value};

fn frankfurt() -> Value {
    json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
           "pue_schedule": [{"from": "2026-03-01T12:00:00Z", "pue": 1.25}]})
}

#[tokio::test]
async fn a_site_is_created_then_replaced_then_read_back() {
    let app = spawn_app().await;
    let created = app.put("/v1/sites/fra1", frankfurt()).await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": "fra1", "name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
               "pue_schedule": [{"from": "2026-03-01T12:00:00Z", "pue": 1.25}]})
    );

    let mut changed = frankfurt();
    changed["pue"] = json!(1.4);
    assert_eq!(app.put("/v1/sites/fra1", changed).await.status(), 200);
    let read: Value = app.get("/v1/sites/fra1").await.json().await.unwrap();
    assert_eq!(read["pue"], 1.4);
    let listed: Value = app.get("/v1/sites").await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_registry_survives_a_restart() {
    let app = spawn_app().await;
    app.put("/v1/sites/fra1", frankfurt()).await;
    app.put("/v1/customers/acme", json!({"name": "Acme Corp"}))
        .await;
    app.put(
        "/v1/zones/DE",
        json!({"default_gco2e_per_kwh": 380, "residual_mix_gco2e_per_kwh": {"2026": 600}}),
    )
    .await;
    let instrument = json!({"site": "fra1", "customer": "acme", "from": "2026-01-01T00:00:00Z",
        "to": "2026-04-01T00:00:00Z", "energy_mwh": 120.0, "gco2e_per_kwh": 0, "kind": "ppa"});
    assert_eq!(
        app.put("/v1/instruments/ppa-2026-q1", instrument)
            .await
            .status(),
        201
    );

    let app = app.restart().await;
    let site: Value = app.get("/v1/sites/fra1").await.json().await.unwrap();
    assert_eq!(site["name"], "Frankfurt 1");
    assert_eq!(site["pue_schedule"][0]["pue"], 1.25);
    let customer: Value = app.get("/v1/customers/acme").await.json().await.unwrap();
    assert_eq!(customer, json!({"id": "acme", "name": "Acme Corp"}));
    let zone: Value = app.get("/v1/zones/DE").await.json().await.unwrap();
    assert_eq!(
        zone,
        json!({"zone": "DE", "default_gco2e_per_kwh": 380.0, "residual_mix_gco2e_per_kwh": {"2026": 600.0}})
    );
    let instrument: Value = app
        .get("/v1/instruments/ppa-2026-q1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(instrument["customer"], "acme");
    assert_eq!(instrument["energy_mwh"], 120.0);
}

#[tokio::test]
async fn deleting_removes_and_a_second_delete_is_not_found() {
    let app = spawn_app().await;
    app.put("/v1/customers/acme", json!({"name": "Acme Corp"}))
        .await;
    assert_eq!(app.delete("/v1/customers/acme").await.status(), 204);
    assert_eq!(app.get("/v1/customers/acme").await.status(), 404);
    assert_eq!(app.delete("/v1/customers/acme").await.status(), 404);
}

#[tokio::test]
async fn a_site_named_by_an_instrument_cannot_be_deleted() {
    let app = spawn_app().await;
    app.put("/v1/sites/fra1", frankfurt()).await;
    let instrument = json!({"site": "fra1", "from": "2026-01-01T00:00:00Z",
        "to": "2026-04-01T00:00:00Z", "energy_mwh": 1.0, "gco2e_per_kwh": 0, "kind": "rec"});
    app.put("/v1/instruments/rec1", instrument).await;
    let body =
        crate::helpers::assert_problem(app.delete("/v1/sites/fra1").await, 409, "in_use").await;
    assert!(body["detail"].as_str().unwrap().contains("instrument rec1"));
    assert_eq!(
        app.call(
            reqwest::Method::GET,
            "/v1/sites/fra1",
            Some(ADMIN_TOKEN),
            None
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn the_registry_history_keeps_every_version_with_its_key_and_changes() {
    let app = spawn_app().await;
    let site = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5});
    assert_eq!(app.put("/v1/sites/fra1", site.clone()).await.status(), 201);
    let mut raised = site.clone();
    raised["pue"] = json!(1.6);
    assert_eq!(app.put("/v1/sites/fra1", raised).await.status(), 200);
    // A PUT that changes nothing makes no version.
    assert_eq!(
        app.put(
            "/v1/sites/fra1",
            json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.6})
        )
        .await
        .status(),
        200
    );
    app.put("/v1/customers/gone", json!({"name": "Gone"})).await;
    assert_eq!(app.delete("/v1/customers/gone").await.status(), 204);
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    let reading = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-03-01T09:00:00Z", "duration_s": 60, "energy_j": 100}]);
    assert_eq!(app.post("/v1/readings", reading).await.status(), 200);

    let history: Value = app.get("/v1/registry/history").await.json().await.unwrap();
    type Change = (String, String, String);
    let summary: Vec<(u64, String, Vec<Change>)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let changes = v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let text = |k: &str| c[k].as_str().unwrap().to_owned();
                    (text("kind"), text("id"), text("change"))
                })
                .collect();
            (
                v["version"].as_u64().unwrap(),
                v["by"].as_str().unwrap().to_owned(),
                changes,
            )
        })
        .collect();
    let change =
        |kind: &str, id: &str, what: &str| (kind.to_owned(), id.to_owned(), what.to_owned());
    let admin = "bootstrap-admin".to_owned();
    assert_eq!(
        summary,
        vec![
            (1, admin.clone(), vec![change("site", "fra1", "created")]),
            (2, admin.clone(), vec![change("site", "fra1", "updated")]),
            (
                3,
                admin.clone(),
                vec![change("customer", "gone", "created")]
            ),
            (
                4,
                admin.clone(),
                vec![change("customer", "gone", "deleted")]
            ),
            (
                5,
                admin.clone(),
                vec![change("customer", "acme", "created")]
            ),
            (
                6,
                admin.clone(),
                vec![
                    change("site", "fra1", "has_readings"),
                    change("customer", "acme", "has_readings")
                ]
            ),
        ]
    );
    let page: Value = app
        .get("/v1/registry/history?after=4&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["version"], 5);
    let refused = app.get("/v1/registry/history?limit=0").await;
    assert_problem(refused, 422, "validation_failed").await;
}
