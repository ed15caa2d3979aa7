//! The registry over HTTP: sites, customers, zones, instruments, and their survival of restarts.
use crate::helpers::{spawn_app, ADMIN_TOKEN};
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
