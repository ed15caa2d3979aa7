//! Feed pullers against stub providers on 127.0.0.1 that serve the providers' recorded payloads.
use crate::helpers::{settings_for, spawn_app_with, TestApp};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use carbon_ledger::sources::feeds::{FeedSettings, Provider};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/providers/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

/// How the stub misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    AlwaysServerError,
    RateLimited,
    Slow,
    Truncated,
    /// Refuses the first bearer token once, as an expired WattTime token.
    ExpireFirstToken,
}

#[derive(Default)]
struct Calls {
    by_path: HashMap<String, usize>,
}

struct Stub {
    base_url: String,
    calls: Arc<Mutex<Calls>>,
}

async fn respond(
    request: HttpRequest,
    state: web::Data<(Mode, Arc<Mutex<Calls>>)>,
) -> HttpResponse {
    let (mode, calls) = (state.0, &state.1);
    let path = request.path().to_owned();
    let count = {
        let mut calls = calls.lock().unwrap();
        let count = calls.by_path.entry(path.clone()).or_default();
        *count += 1;
        *count
    };
    let json = |body: String| {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(body)
    };
    if path != "/login" {
        match mode {
            Mode::AlwaysServerError => {
                return HttpResponse::InternalServerError().body("upstream exploded")
            }
            Mode::RateLimited => {
                return HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "2"))
                    .finish()
            }
            Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
            Mode::Truncated => {
                return json(fixture("electricitymaps_history.json")[..200].to_owned())
            }
            _ => {}
        }
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    match path.as_str() {
        "/login" => {
            // Basic auth for user "wt-user", password "wt-pass".
            if header("authorization") != "Basic d3QtdXNlcjp3dC1wYXNz" {
                return HttpResponse::Unauthorized().finish();
            }
            json(fixture("watttime_login.json"))
        }
        "/v3/historical" | "/v3/forecast" => {
            if header("authorization") != "Bearer abcdef0123456789fedcabc" {
                return HttpResponse::Unauthorized().finish();
            }
            if mode == Mode::ExpireFirstToken && path == "/v3/historical" && count == 1 {
                return HttpResponse::Unauthorized().finish();
            }
            let name = if path == "/v3/historical" {
                "watttime_historical.json"
            } else {
                "watttime_forecast.json"
            };
            json(fixture(name))
        }
        p if p.starts_with("/v3/carbon-intensity/") => {
            if header("auth-token") != "em-token" {
                return HttpResponse::Forbidden().body(fixture("electricitymaps_error_403.json"));
            }
            let name = match p {
                "/v3/carbon-intensity/history" => "electricitymaps_history.json",
                "/v3/carbon-intensity/past-range" => "electricitymaps_past_range.json",
                _ => "electricitymaps_forecast.json",
            };
            json(fixture(name))
        }
        p if p.starts_with("/regional/intensity/") => {
            json(fixture("uk_carbonintensity_regional_range_regionid.json"))
        }
        p if p.ends_with("/fw48h") => json(fixture("uk_carbonintensity_intensity_fw24h.json")),
        p if p.starts_with("/intensity/") => {
            let mut range: Value =
                serde_json::from_str(&fixture("uk_carbonintensity_intensity_range.json")).unwrap();
            if count > 1 {
                // Later pulls: the last period, a forecast so far, has its actual now.
                let last = range["data"].as_array_mut().unwrap().last_mut().unwrap();
                last["intensity"]["actual"] = json!(180);
            }
            json(range.to_string())
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

fn stub(mode: Mode) -> Stub {
    let calls: Arc<Mutex<Calls>> = Arc::default();
    let state = web::Data::new((mode, calls.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .default_service(web::to(respond))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    Stub {
        base_url: format!("http://127.0.0.1:{port}"),
        calls,
    }
}

fn feed(
    provider: Provider,
    stub: &Stub,
    zones: &[&str],
    zone_map: &[(&str, &str)],
) -> FeedSettings {
    FeedSettings {
        provider,
        base_url: Some(stub.base_url.clone()),
        zones: zones.iter().map(|z| (*z).to_owned()).collect(),
        zone_map: zone_map
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
        poll_interval_s: 1,
        backfill_h: 48,
        timeout_s: 1,
        token_env: Some("CL_TEST_EM_TOKEN".into()),
        username_env: Some("CL_TEST_WT_USER".into()),
        password_env: Some("CL_TEST_WT_PASS".into()),
    }
}

async fn app_with(feeds: Vec<FeedSettings>) -> TestApp {
    std::env::set_var("CL_TEST_EM_TOKEN", "em-token");
    std::env::set_var("CL_TEST_WT_USER", "wt-user");
    std::env::set_var("CL_TEST_WT_PASS", "wt-pass");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&dir);
    settings.feeds = feeds;
    spawn_app_with(settings, dir).await
}

/// Polls `/v1/feeds` until `done` holds for every feed.
async fn feeds_until(app: &TestApp, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let feeds: Vec<Value> = app.get("/v1/feeds").await.json().await.unwrap();
        if feeds.iter().all(&done) {
            return feeds;
        }
        assert!(Instant::now() < deadline, "feeds did not settle: {feeds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn points(app: &TestApp, zone: &str, from: &str, to: &str) -> Vec<Value> {
    let body: Value = app
        .get(&format!("/v1/zones/{zone}/intensity?from={from}&to={to}"))
        .await
        .json()
        .await
        .unwrap();
    body["points"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_fill_their_zones_with_the_right_values_kinds_and_signals() {
    let provider = stub(Mode::Normal);
    let app = app_with(vec![
        feed(
            Provider::UkCarbonIntensity,
            &provider,
            &["GB", "GB-13"],
            &[],
        ),
        feed(Provider::ElectricityMaps, &provider, &["DE"], &[]),
        feed(
            Provider::Watttime,
            &provider,
            &["US-CAL-CISO"],
            &[("US-CAL-CISO", "CAISO_NORTH")],
        ),
    ])
    .await;
    // Two successes each: the second UK pull brings the late actual.
    feeds_until(&app, |f| {
        f["last_success"].is_string() && f["points_stored"].as_u64() > Some(30)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let gb = points(&app, "GB", "2024-03-05T22:00:00Z", "2024-03-06T10:00:00Z").await;
    assert_eq!(gb[0]["gco2e_per_kwh"], 151.0); // actual 151 wins over forecast 139
    assert_eq!(gb[0]["kind"], "actual");
    assert_eq!(gb[0]["signal"], "average");
    assert_eq!(gb[0]["source"], "uk_carbon_intensity");
    let last = gb.last().unwrap();
    assert_eq!(last["start"], "2024-03-06T09:30:00Z");
    assert_eq!(
        (last["gco2e_per_kwh"].as_f64(), last["kind"].as_str()),
        (Some(180.0), Some("actual")),
        "forecast replaced by actual"
    );

    let london = points(
        &app,
        "GB-13",
        "2024-03-06T00:00:00Z",
        "2024-03-06T00:30:00Z",
    )
    .await;
    assert_eq!(
        (
            london[0]["gco2e_per_kwh"].as_f64(),
            london[0]["kind"].as_str()
        ),
        (Some(149.0), Some("forecast"))
    );

    let history: Value = serde_json::from_str(&fixture("electricitymaps_history.json")).unwrap();
    let de = points(&app, "DE", "2024-03-05T00:00:00Z", "2024-03-07T00:00:00Z").await;
    for expected in history["history"].as_array().unwrap() {
        let start = expected["datetime"].as_str().unwrap().replace(".000Z", "Z");
        let found = de.iter().find(|p| p["start"] == start.as_str()).unwrap();
        assert_eq!(
            found["gco2e_per_kwh"],
            expected["carbonIntensity"].as_f64().unwrap()
        );
        let kind = if expected["isEstimated"] == true {
            "estimated"
        } else {
            "actual"
        };
        assert_eq!(found["kind"], kind, "{start}");
        assert_eq!(found["source_detail"], "lifecycle");
    }

    let caiso = points(
        &app,
        "US-CAL-CISO",
        "2024-06-18T16:00:00Z",
        "2024-06-18T16:05:00Z",
    )
    .await;
    let grams = caiso[0]["gco2e_per_kwh"].as_f64().unwrap();
    assert!(
        (grams - 871.2 * 0.45359237).abs() < 1e-9,
        "lbs/MWh to g/kWh: {grams}"
    );
    assert_eq!(caiso[0]["signal"], "marginal");
    assert_eq!(caiso[0]["end"], "2024-06-18T16:05:00Z");
    let listing = app.get("/v1/feeds").await.text().await.unwrap();
    assert!(
        !listing.contains("em-token") && !listing.contains("wt-pass"),
        "credentials never shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_provider_is_retried_and_reported_while_the_service_works() {
    let provider = stub(Mode::AlwaysServerError);
    let app = app_with(vec![feed(
        Provider::ElectricityMaps,
        &provider,
        &["DE"],
        &[],
    )])
    .await;
    let feeds = feeds_until(&app, |f| f["consecutive_failures"].as_u64() >= Some(3)).await;
    assert!(
        feeds[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{feeds:?}"
    );
    assert!(feeds[0]["last_success"].is_null());
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.2}),
    )
    .await;
    assert_eq!(app.get("/v1/sites/fra1").await.status(), 200);
    let calls = provider.calls.lock().unwrap();
    let pulls: usize = calls.by_path.values().sum();
    assert!(pulls >= 3, "retried: {pulls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_kind_is_named() {
    for (mode, expected) in [
        (
            Mode::RateLimited,
            "rate limited (HTTP 429), retry after Some(2s)",
        ),
        (Mode::Slow, "timed out"),
        (Mode::Truncated, "malformed response"),
    ] {
        let provider = stub(mode);
        let app = app_with(vec![feed(
            Provider::ElectricityMaps,
            &provider,
            &["DE"],
            &[],
        )])
        .await;
        let feeds = feeds_until(&app, |f| f["last_error"].is_string()).await;
        assert!(
            feeds[0]["last_error"].as_str().unwrap().contains(expected),
            "{feeds:?}"
        );
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    let provider = stub(Mode::Normal);
    let mut wrong_token = feed(Provider::ElectricityMaps, &provider, &["DE"], &[]);
    wrong_token.token_env = Some("CL_TEST_WT_USER".into());
    let app = app_with(vec![wrong_token]).await;
    let feeds = feeds_until(&app, |f| f["last_error"].is_string()).await;
    assert_eq!(feeds[0]["last_error"], "refused credentials (HTTP 403)");
    let mut unset = feed(Provider::ElectricityMaps, &provider, &["DE"], &[]);
    unset.token_env = Some("CL_TEST_NOT_SET".into());
    let app = app_with(vec![unset]).await;
    let feeds = feeds_until(&app, |f| f["last_error"].is_string()).await;
    assert_eq!(
        feeds[0]["last_error"],
        "not configured: environment variable CL_TEST_NOT_SET is not set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watttime_token_is_renewed() {
    let provider = stub(Mode::ExpireFirstToken);
    let app = app_with(vec![feed(
        Provider::Watttime,
        &provider,
        &["US-CAL-CISO"],
        &[("US-CAL-CISO", "CAISO_NORTH")],
    )])
    .await;
    let feeds = feeds_until(&app, |f| f["last_success"].is_string()).await;
    assert!(
        feeds[0]["last_error"].is_null(),
        "the 401 was handled by logging in again: {feeds:?}"
    );
    assert_eq!(provider.calls.lock().unwrap().by_path["/login"], 2);
}
