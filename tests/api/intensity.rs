//! Grid intensity pushed over HTTP: precedence, durability, validation.
use crate::helpers::{assert_problem, spawn_app};
use serde_json::{json, Value};

fn push(kind: &str, value: f64, start: &str, end: &str, signal: &str) -> Value {
    json!({"zone": "GB", "source": "manual", "signal": signal,
           "points": [{"start": start, "end": end, "gco2e_per_kwh": value, "kind": kind}]})
}

async fn in_force(app: &crate::helpers::TestApp) -> Vec<(String, f64, String)> {
    let body: Value = app
        .get("/v1/zones/GB/intensity?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["zone"], "GB");
    body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_str().unwrap().to_owned(),
                p["gco2e_per_kwh"].as_f64().unwrap(),
                p["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_actual_replaces_the_forecast_and_survives_a_restart() {
    let app = spawn_app().await;
    for body in [
        push(
            "forecast",
            200.0,
            "2026-03-01T09:00:00Z",
            "2026-03-01T09:30:00Z",
            "average",
        ),
        push(
            "forecast",
            210.0,
            "2026-03-01T09:30:00Z",
            "2026-03-01T10:00:00Z",
            "average",
        ),
        push(
            "actual",
            190.0,
            "2026-03-01T09:30:00Z",
            "2026-03-01T10:00:00Z",
            "marginal",
        ),
    ] {
        let response = app.post("/v1/intensity", body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"accepted": 1})
        );
    }
    assert_eq!(
        in_force(&app).await,
        [
            ("2026-03-01T09:00:00Z".into(), 200.0, "forecast".into()),
            ("2026-03-01T09:30:00Z".into(), 190.0, "actual".into()),
        ]
    );
    app.post(
        "/v1/intensity",
        push(
            "actual",
            180.0,
            "2026-03-01T09:00:00Z",
            "2026-03-01T09:30:00Z",
            "average",
        ),
    )
    .await;
    let app = app.restart().await;
    assert_eq!(
        in_force(&app).await,
        [
            ("2026-03-01T09:00:00Z".into(), 180.0, "actual".into()),
            ("2026-03-01T09:30:00Z".into(), 190.0, "actual".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_points_are_named() {
    let app = spawn_app().await;
    let body = json!({"zone": "gb", "source": "", "signal": "average", "points": [
        {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T09:00:00Z", "gco2e_per_kwh": -5, "kind": "actual"}]});
    let problem = assert_problem(
        app.post("/v1/intensity", body).await,
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
    assert_eq!(
        pointers,
        [
            "/zone",
            "/source",
            "/points/0/end",
            "/points/0/gco2e_per_kwh"
        ]
    );
    let kind = json!({"zone": "GB", "source": "m", "signal": "average", "points": [
        {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z", "gco2e_per_kwh": 5, "kind": "guess"}]});
    assert_problem(app.post("/v1/intensity", kind).await, 422, "invalid_body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_checked() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/v1/zones/GB/intensity?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z")
            .await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/v1/zones/GB/intensity?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z")
            .await,
        422,
        "range_too_long",
    )
    .await;
    assert_problem(
        app.get("/v1/zones/GB/intensity?from=yesterday&to=today")
            .await,
        400,
        "invalid_query",
    )
    .await;
}
