//! Error answers: every failure is problem+json with a stable code, whoever produced it.
use crate::helpers::{assert_problem, spawn_app, ADMIN_TOKEN};
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/v1/api-keys", "application/json", "{\"role\": \"admin\",")
        .await;
    let body = assert_problem(response, 400, "malformed_json").await;
    assert!(body["detail"].as_str().unwrap().contains("line 1"));
}

#[tokio::test]
async fn an_unknown_site_is_a_404_problem() {
    let app = spawn_app().await;
    let body = assert_problem(app.get("/v1/sites/nowhere").await, 404, "not_found").await;
    assert_eq!(body["detail"], "site nowhere does not exist");
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    assert_problem(app.get("/v1/nothing-here").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_missing_field_names_the_field() {
    let app = spawn_app().await;
    let response = app
        .put("/v1/sites/fra1", json!({"name": "F", "pue": 1.2}))
        .await;
    let body = assert_problem(response, 422, "invalid_body").await;
    assert_eq!(body["errors"][0]["field"], "zone");
    assert_eq!(body["errors"][0]["pointer"], "/zone");
}

#[tokio::test]
async fn a_wrong_type_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let response = app
        .put(
            "/v1/sites/fra1",
            json!({"name": "F", "zone": "DE", "pue": "high"}),
        )
        .await;
    let body = assert_problem(response, 422, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("invalid type"));
}

#[tokio::test]
async fn an_unknown_field_is_refused_by_name() {
    let app = spawn_app().await;
    let response = app
        .put(
            "/v1/customers/acme",
            json!({"name": "Acme", "nmae": "typo"}),
        )
        .await;
    let body = assert_problem(response, 422, "invalid_body").await;
    assert_eq!(body["errors"][0]["field"], "nmae");
}

#[tokio::test]
async fn out_of_range_values_name_every_bad_field() {
    let app = spawn_app().await;
    let response = app
        .put(
            "/v1/sites/fra1",
            json!({"name": "F", "zone": "germany", "pue": 0.8,
                   "pue_schedule": [{"from": "2026-01-01T00:00:00Z", "pue": 42}]}),
        )
        .await;
    let body = assert_problem(response, 422, "validation_failed").await;
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/zone", "/pue", "/pue_schedule/0/pue"]);
}

#[tokio::test]
async fn a_bad_id_in_the_path_is_a_400_problem() {
    let app = spawn_app().await;
    let response = app
        .put("/v1/customers/bad%20id", json!({"name": "X"}))
        .await;
    let body = assert_problem(response, 400, "invalid_path").await;
    assert_eq!(body["errors"][0]["field"], "customer");
}

#[tokio::test]
async fn an_instrument_for_an_unknown_site_is_a_422_unknown_site() {
    let app = spawn_app().await;
    let instrument = json!({"site": "ghost", "from": "2026-01-01T00:00:00Z",
        "to": "2026-04-01T00:00:00Z", "energy_mwh": 1.0, "gco2e_per_kwh": 0, "kind": "go"});
    let body = assert_problem(
        app.put("/v1/instruments/go1", instrument).await,
        422,
        "unknown_site",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "site");
}

#[tokio::test]
async fn the_wrong_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/v1/api-keys", "text/plain", "role=admin")
        .await;
    assert_problem(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::settings_for(&dir);
    settings.max_body_bytes = 1024;
    let app = crate::helpers::spawn_app_with(settings, dir).await;
    let name = "x".repeat(2000);
    let response = app.put("/v1/customers/acme", json!({ "name": name })).await;
    assert_problem(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn no_key_is_a_401_problem_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let response = app
        .call(reqwest::Method::GET, "/v1/sites", None, None)
        .await;
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"carbon-ledger\""
    );
    assert_problem(response, 401, "unauthorized").await;
    let wrong = app
        .call(
            reqwest::Method::GET,
            "/v1/sites",
            Some(&format!("{ADMIN_TOKEN}x")),
            None,
        )
        .await;
    assert_problem(wrong, 401, "unauthorized").await;
}
