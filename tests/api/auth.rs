//! Every operation of the generated contract, called with every kind of key. A route added without
//! an entry in `expected_access` fails the table test, so none can be forgotten.
use crate::helpers::{assert_problem, spawn_app, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// No key needed.
    Public,
    /// Admin keys only.
    Admin,
    /// Admin and ingest keys.
    Ingest,
    /// Admin and intensity keys: grid intensity prices every customer in the zone.
    Intensity,
    /// Any valid key (public data, but metered by key).
    AnyKey,
    /// Admin keys, and customer keys for their own customer (`acme` in the path); another
    /// customer's key gets 404 as if acme did not exist.
    OwnCustomer,
}

fn expected_access(operation_id: &str) -> Option<Access> {
    use Access::*;
    Some(match operation_id {
        "healthz" | "readyz" | "metrics" => Public,
        "list_sites" | "get_site" | "put_site" | "delete_site" | "list_customers"
        | "get_customer" | "put_customer" | "delete_customer" | "list_zones" | "get_zone"
        | "put_zone" | "delete_zone" | "list_instruments" | "get_instrument" | "put_instrument"
        | "delete_instrument" | "create_key" | "list_keys" | "revoke_key" | "list_mappings"
        | "get_mapping" | "put_mapping" | "delete_mapping" | "telemetry_sources"
        | "telemetry_unmapped" | "telemetry_flush" | "list_hardware" | "get_hardware"
        | "put_hardware" | "delete_hardware" | "list_reservations" | "get_reservation"
        | "put_reservation" | "delete_reservation" | "reconciliation" | "list_power_models"
        | "get_power_model" | "put_power_model" | "delete_power_model" | "list_capacity"
        | "get_capacity" | "put_capacity" | "delete_capacity" => Admin,
        "post_readings"
        | "remote_write_receiver"
        | "otlp_metrics"
        | "post_functional_units"
        | "post_meters"
        | "post_usage" => Ingest,
        "post_intensity" => Intensity,
        "zone_intensity" | "whoami" | "zone_windows" | "sdk_current_forecast" => AnyKey,
        "customer_footprint" | "shift_opportunities" | "forecast" | "sci" => OwnCustomer,
        "all_footprints" | "list_feeds" | "registry_history" | "close_period"
        | "reissue_period" | "period_drift" | "period_export" => Admin,
        "list_periods" | "get_period" => AnyKey,
        "customer_statement" => OwnCustomer,
        _ => return None,
    })
}

struct Operation {
    id: String,
    method: Method,
    path: String,
    body: Option<Value>,
}

/// The operations of the served contract, with path parameters filled in and the documented example
/// as the body.
async fn operations(app: &TestApp) -> Vec<Operation> {
    let contract: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &contract["components"]["schemas"];
    let mut found = Vec::new();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|reference| {
                    let name = reference.rsplit('/').next().unwrap();
                    schemas[name]["example"].clone()
                });
            let filled = path
                .replace("{site}", "fra1")
                .replace("{customer}", "acme")
                .replace("{zone}", "DE")
                .replace("{instrument}", "ppa-2026-q1")
                .replace("{mapping}", "kepler-fra1")
                .replace("{id}", "key_unknown")
                .replace("{period}", "setup-q1")
                .replace("{hardware}", "fra1-r42-s07")
                .replace("{reservation}", "acme-api-2026-03")
                .replace("{power_model}", "xeon-a100")
                .replace("{capacity}", "acme-fra1-2026")
                + match (method.as_str(), path.rsplit('/').next()) {
                    (
                        "get",
                        Some("intensity" | "footprint" | "shift-opportunities" | "reconciliation"),
                    ) => "?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
                    ("get", Some("windows")) => "?duration_min=60",
                    ("get", Some("sci")) => {
                        "?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&unit=requests"
                    }
                    ("get", Some("current")) => "?location=DE",
                    _ => "",
                };
            found.push(Operation {
                id: operation["operationId"].as_str().unwrap().to_owned(),
                method: method.to_uppercase().parse().unwrap(),
                path: filled,
                body,
            });
        }
    }
    found
}

#[tokio::test]
async fn every_operation_enforces_its_roles() {
    let app = spawn_app().await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.2}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    app.put("/v1/customers/globex", json!({"name": "Globex"}))
        .await;
    let period =
        json!({"id": "setup-q1", "from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"});
    assert_eq!(app.post("/v1/periods", period).await.status(), 201);
    let (_, ingest) = app.create_key(json!({"role": "ingest"})).await;
    let (_, intensity) = app.create_key(json!({"role": "intensity"})).await;
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let (_, globex) = app
        .create_key(json!({"role": "customer", "customer": "globex"}))
        .await;
    let (revoked_id, revoked) = app.create_key(json!({"role": "admin"})).await;
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{revoked_id}"))
            .await
            .status(),
        200
    );

    let operations = operations(&app).await;
    assert!(
        operations.len() >= 22,
        "found only {} operations",
        operations.len()
    );
    for op in &operations {
        let access = expected_access(&op.id)
            .unwrap_or_else(|| panic!("operation {} has no row in expected_access", op.id));
        let call = |token: Option<String>| {
            let op = &op;
            let app = &app;
            async move {
                app.call(
                    op.method.clone(),
                    &op.path,
                    token.as_deref(),
                    op.body.as_ref(),
                )
                .await
            }
        };
        let name = format!("{} {} ({})", op.method, op.path, op.id);
        match access {
            Access::Public => {
                let status = call(None).await.status();
                assert!(status.is_success(), "{name} without a key: {status}");
            }
            Access::OwnCustomer => {
                assert_eq!(call(None).await.status(), 401, "{name}");
                assert_eq!(call(Some(revoked.clone())).await.status(), 401, "{name}");
                for token in [&ingest, &intensity] {
                    assert_problem(call(Some(token.clone())).await, 403, "forbidden").await;
                }
                let other =
                    assert_problem(call(Some(globex.clone())).await, 404, "not_found").await;
                assert_eq!(other["detail"], "customer acme does not exist", "{name}");
                for token in [ADMIN_TOKEN.to_owned(), acme.clone()] {
                    let status = call(Some(token)).await.status();
                    // acme has no history to forecast from and no functional units to divide by:
                    // the documented 422s, past auth.
                    let expected = if ["forecast", "sci"].contains(&op.id.as_str()) {
                        422
                    } else {
                        200
                    };
                    assert_eq!(status, expected, "{name}");
                }
            }
            Access::Admin | Access::Ingest | Access::Intensity | Access::AnyKey => {
                for token in [None, Some("cl_not_a_key".to_owned()), Some(revoked.clone())] {
                    let response = call(token.clone()).await;
                    assert_eq!(response.status(), 401, "{name} with {token:?}");
                    assert!(
                        response.headers().contains_key("www-authenticate"),
                        "{name}"
                    );
                }
                let admin = ADMIN_TOKEN.to_owned();
                let (allowed, refused) = match access {
                    Access::Admin => (vec![admin], vec![&ingest, &intensity, &acme, &globex]),
                    Access::Ingest => (
                        vec![admin, ingest.clone()],
                        vec![&intensity, &acme, &globex],
                    ),
                    Access::Intensity => (
                        vec![admin, intensity.clone()],
                        vec![&ingest, &acme, &globex],
                    ),
                    _ => (
                        vec![
                            admin,
                            ingest.clone(),
                            intensity.clone(),
                            acme.clone(),
                            globex.clone(),
                        ],
                        vec![],
                    ),
                };
                for token in refused {
                    let response = call(Some(token.clone())).await;
                    assert_eq!(response.status(), 403, "{name}");
                    assert_problem(response, 403, "forbidden").await;
                }
                for token in allowed {
                    let status = call(Some(token)).await.status();
                    assert!(
                        status != 401 && status != 403 && status.as_u16() < 500,
                        "{name}: {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_token_is_shown_once_and_never_listed() {
    let app = spawn_app().await;
    let (id, token) = app
        .create_key(json!({"role": "ingest", "sites": ["fra1"]}))
        .await;
    assert!(token.starts_with("cl_") && token.len() == 67);
    let listing = app.get("/v1/api-keys").await.text().await.unwrap();
    assert!(!listing.contains(&token));
    let keys: Value = serde_json::from_str(&listing).unwrap();
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(key["role"], "ingest");
    assert_eq!(key["sites"], json!(["fra1"]));
    assert!(key.get("token").is_none() && key.get("token_sha256").is_none());
}

#[tokio::test]
async fn whoami_tells_a_key_its_role_and_limits_and_never_its_token() {
    let app = spawn_app().await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    let (id, token) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let me: Value = app
        .call(Method::GET, "/v1/whoami", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["role"], "customer");
    assert_eq!(me["customer"], "acme");
    assert!(me.get("token").is_none());
    let admin: Value = app.get("/v1/whoami").await.json().await.unwrap();
    assert_eq!(admin["role"], "admin");
}

#[tokio::test]
async fn a_customer_key_must_name_its_customer() {
    let app = spawn_app().await;
    let body = assert_problem(
        app.post("/v1/api-keys", json!({"role": "customer"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "customer");
}

#[tokio::test]
async fn a_revoked_key_stays_revoked_after_a_restart() {
    let app = spawn_app().await;
    let (id, token) = app.create_key(json!({"role": "admin"})).await;
    assert_eq!(
        app.call(Method::GET, "/v1/sites", Some(&token), None)
            .await
            .status(),
        200
    );
    app.delete(&format!("/v1/api-keys/{id}")).await;
    let app = app.restart().await;
    assert_eq!(
        app.call(Method::GET, "/v1/sites", Some(&token), None)
            .await
            .status(),
        401
    );
}
