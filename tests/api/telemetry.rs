//! Telemetry over HTTP: mappings, and Prometheus remote-write bodies as Prometheus sends them
//! (snappy block-compressed protobuf), turned into exactly the expected energy.
use crate::helpers::{assert_problem, spawn_app, TestApp};
use carbon_ledger::sources::protobuf::encode;
use serde_json::{json, Value};

/// A series as labels and (timestamp ms, value) samples.
type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// A remote-write body of these series, as Prometheus sends it.
fn write_request(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    encode::write_request(series.iter().copied())
}

async fn remote_write(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/write"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap()
}

const T0: i64 = 1_772_355_600_000; // 2026-03-01T09:00:00Z, in ms
const NAME: (&str, &str) = ("__name__", "kepler_container_cpu_joules_total");

async fn registered(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    kepler_mapping(app, "kepler-fra1", "package").await;
}

/// The Kepler preset for one RAPL zone of fra1's nodes, for acme.
async fn kepler_mapping(app: &TestApp, id: &str, zone: &str) {
    let mapping = app
        .put(
            &format!("/v1/telemetry/mappings/{id}"),
            json!({"preset": "kepler", "site": "fra1", "customer": "acme",
                   "match": {"zone": zone, "node_name": "fra1-.*"}}),
        )
        .await;
    assert_eq!(mapping.status(), 201);
}

/// Writes the windows still waiting for a later sample of their target; how many.
async fn flushed(app: &TestApp) -> u64 {
    let answer = app.post("/v1/telemetry/flush", json!({})).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    body["windows_written"].as_u64().unwrap()
}

async fn it_kwh(app: &TestApp, group: &str) -> Value {
    app.get(&format!(
        "/v1/customers/acme/footprint?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&group_by={group}"
    ))
    .await
    .json()
    .await
    .unwrap()
}

async fn footprint_joules(app: &TestApp) -> f64 {
    kwh(&it_kwh(app, "workload").await) * 3.6e6
}

fn kwh(body: &Value) -> f64 {
    body["totals"]["it_energy_kwh"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kepler_counters_become_exactly_their_energy_across_retries_and_restarts() {
    let app = spawn_app().await;
    registered(&app).await;
    let package: &[(&str, &str)] = &[
        NAME,
        ("container_name", "api"),
        ("node_name", "fra1-n1"),
        ("zone", "package"),
    ];
    let dram: &[(&str, &str)] = &[
        NAME,
        ("container_name", "api"),
        ("node_name", "fra1-n1"),
        ("zone", "dram"),
    ];
    let other_node: &[(&str, &str)] = &[
        NAME,
        ("container_name", "api"),
        ("node_name", "ams-n1"),
        ("zone", "package"),
    ];
    // 0 s, 30 s, 60 s: +3,600 J then +7,200 J on package; dram and another node stay unmapped.
    let first = write_request(&[
        (package, &[(T0, 1_000.0), (T0 + 30_000, 4_600.0)]),
        (dram, &[(T0, 10.0), (T0 + 30_000, 20.0)]),
        (other_node, &[(T0, 5.0)]),
    ]);
    assert_eq!(remote_write(&app, first.clone()).await.status(), 204);
    assert_eq!(
        remote_write(&app, first).await.status(),
        204,
        "a retried batch"
    );
    let app = app.restart().await;
    let second = write_request(&[(package, &[(T0 + 60_000, 11_800.0)])]);
    assert_eq!(remote_write(&app, second).await.status(), 204);
    // 3,600 + 7,200 J = 10,800 J = 0.003 kWh, once, whatever was retried or restarted.
    let report = it_kwh(&app, "workload").await;
    assert!((kwh(&report) - 10_800.0 / 3.6e6).abs() < 1e-12, "{report}");
    assert_eq!(report["rows"][0]["workload"], "api");

    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    let source = &sources[0];
    assert_eq!(source["source"], "remote_write");
    // Since the restart: one sample accepted, one window written.
    assert_eq!(source["samples_accepted"], 1);
    assert_eq!(source["readings_written"], 1);
    assert_eq!(source["last_sample_at"], "2026-03-01T09:01:00Z");
}

/// Sample `k` of shard `shard`: five containers' counters at `k` x 15 s, 600 J a step. Every
/// shard has its own series of the same five containers (two nodes, two RAPL zones each), so all
/// four shards add to the same five workloads' windows at once.
fn shard_request(shard: usize, k: i64) -> Vec<u8> {
    let names: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    let node = format!("fra1-n{}", shard / 2);
    let zone = ["package", "dram"][shard % 2];
    let labels: Vec<[(&str, &str); 4]> = names
        .iter()
        .map(|n| {
            [
                NAME,
                ("container_name", n.as_str()),
                ("node_name", node.as_str()),
                ("zone", zone),
            ]
        })
        .collect();
    let sample = [(T0 + k * 15_000, k as f64 * 600.0)];
    encode::write_request(labels.iter().map(|l| (l.as_slice(), sample.as_slice())))
}

/// Prometheus' shards send at once, each its own series in order: `steps` requests each.
async fn shards_send(app: &TestApp, steps: std::ops::Range<i64>) {
    let sends = (0..4).map(|shard| {
        let steps = steps.clone();
        async move {
            for k in steps {
                assert_eq!(
                    remote_write(app, shard_request(shard, k)).await.status(),
                    204
                );
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shards_across_a_restart_add_exactly_their_energy_and_see_mapping_changes() {
    let app = spawn_app().await;
    registered(&app).await;
    kepler_mapping(&app, "kepler-fra1-dram", "dram").await;
    // 20 series, 12 samples each: 11 steps of 600 J = 6,600 J a series, 132,000 J in all
    // (reports round kWh to 9 decimals).
    shards_send(&app, 0..12).await;
    // The last samples (165 s) leave each workload's third window waiting for a later one.
    assert_eq!(flushed(&app).await, 5);
    let report = it_kwh(&app, "workload").await;
    assert!(
        (kwh(&report) - 20.0 * 11.0 * 600.0 / 3.6e6).abs() < 1e-9,
        "{report}"
    );
    // Five workloads, each the sum of its four series: 26,400 J.
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let joules = row["it_energy_kwh"].as_f64().unwrap() * 3.6e6;
        assert!((joules - 4.0 * 11.0 * 600.0).abs() < 0.004, "{row}");
    }
    // After a restart each series goes on from its last sample: one more step each, 12,000 J.
    let app = app.restart().await;
    shards_send(&app, 12..13).await;
    flushed(&app).await;
    let report = it_kwh(&app, "workload").await;
    assert!(
        (kwh(&report) - 20.0 * 12.0 * 600.0 / 3.6e6).abs() < 1e-9,
        "{report}"
    );
    // Once the mappings are gone the same series are unmapped at once (nothing cached outlives a
    // registry change), and the energy stays.
    for mapping in ["kepler-fra1", "kepler-fra1-dram"] {
        let path = format!("/v1/telemetry/mappings/{mapping}");
        assert_eq!(app.delete(&path).await.status(), 204);
    }
    shards_send(&app, 13..14).await;
    flushed(&app).await;
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    assert_eq!(sources[0]["samples_unmapped"], 20, "{sources}");
    assert_eq!(sources[0]["samples_accepted"], 20, "{sources}");
    let report = it_kwh(&app, "workload").await;
    assert!(
        (kwh(&report) - 20.0 * 12.0 * 600.0 / 3.6e6).abs() < 1e-9,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_and_ignored_samples_are_counted_and_listed() {
    let app = spawn_app().await;
    registered(&app).await;
    let package: &[(&str, &str)] = &[
        NAME,
        ("container_name", "db"),
        ("node_name", "fra1-n2"),
        ("zone", "package"),
    ];
    let node: &[(&str, &str)] = &[
        ("__name__", "kepler_node_cpu_joules_total"),
        ("node_name", "fra1-n2"),
        ("zone", "package"),
    ];
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let body = write_request(&[
        (
            package,
            &[
                (T0, 0.0),
                (T0 + 10_000, stale),
                (T0 + 20_000, f64::NAN),
                (T0 + 30_000, 100.0),
            ],
        ),
        (node, &[(T0, 1.0), (T0 + 30_000, 2.0)]),
    ]);
    assert_eq!(remote_write(&app, body).await.status(), 204);
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    let source = &sources[0];
    assert_eq!(source["samples_accepted"], 2);
    assert_eq!(source["samples_unmapped"], 2);
    assert_eq!(
        source["samples_ignored"],
        json!({"stale_marker": 1, "not_finite": 1})
    );
    assert_eq!(source["series_unmapped"], 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "telemetry_samples_accepted_total{source=\"remote_write\"} 2",
        "telemetry_samples_unmapped_total{source=\"remote_write\"} 2",
        "telemetry_samples_ignored_total{source=\"remote_write\",reason=\"stale_marker\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let unmapped: Value = app
        .get("/v1/telemetry/unmapped")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unmapped[0]["metric"], "kepler_node_cpu_joules_total");
    assert_eq!(
        unmapped[0]["labels"],
        json!({"node_name": "fra1-n2", "zone": "package"})
    );
    assert_eq!(unmapped[0]["samples"], 2);
    assert_eq!(flushed(&app).await, 1);
    let report = it_kwh(&app, "workload").await;
    // Answers carry 9 decimals.
    assert!((kwh(&report) - 100.0 / 3.6e6).abs() < 1e-9, "{report}");
}

#[tokio::test]
async fn mappings_are_validated_and_hold_on_to_their_fixed_site() {
    let app = spawn_app().await;
    registered(&app).await;
    let bad = app
        .put(
            "/v1/telemetry/mappings/bad",
            json!({"metric": "m", "unit": "watts", "site": "{}", "customer": "acme",
                   "workload": "w", "match": {"zone": "("}}),
        )
        .await;
    let body = assert_problem(bad, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["match/zone", "site"]);
    let unknown = app
        .put(
            "/v1/telemetry/mappings/nowhere",
            json!({"preset": "scaphandre", "site": "ams9", "customer": "acme"}),
        )
        .await;
    assert_problem(unknown, 422, "unknown_site").await;
    let stored: Value = app
        .get("/v1/telemetry/mappings/kepler-fra1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["metric"], "kepler_container_cpu_joules_total");
    assert_eq!(stored["unit"], "joules_total");
    let in_use = assert_problem(app.delete("/v1/sites/fra1").await, 409, "in_use").await;
    assert!(in_use["detail"]
        .as_str()
        .unwrap()
        .contains("telemetry mapping kepler-fra1"));
    assert_eq!(
        app.delete("/v1/telemetry/mappings/kepler-fra1")
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_remote_write_is_a_400_problem() {
    let app = spawn_app().await;
    let body = assert_problem(
        remote_write(&app, b"hello".to_vec()).await,
        400,
        "malformed_body",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("snappy"));
}

/// Sets every `hw.energy` point of an OTLP JSON request to this time and value.
fn set_energy_points(body: &mut Value, time_unix_nano: &str, joules: f64) {
    for metric in body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array_mut()
        .unwrap()
    {
        if metric["name"] == "hw.energy" {
            for point in metric["sum"]["dataPoints"].as_array_mut().unwrap() {
                point["timeUnixNano"] = json!(time_unix_nano);
                point["asDouble"] = json!(joules);
            }
        }
    }
}

async fn otlp_json(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/otlp/v1/metrics"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_as_recorded_becomes_readings_and_refusals_are_a_partial_success() {
    let app = spawn_app().await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    app.put(
        "/v1/telemetry/mappings/cpu",
        json!({"preset": "hw_energy", "site": "fra1", "customer": "acme",
               "match": {"host.name": "worker-01"}}),
    )
    .await;
    let mut recorded: Value = serde_json::from_str(include_str!(
        "../../fixtures/telemetry/otlp_power_metrics.json"
    ))
    .unwrap();
    // The recording's timestamps (2024-06-18) sit in the past of the test clock; keep its shape
    // and move its points to 2026-03-01T09:00:00Z, then 60 s and 3,600 J later.
    for (at, value) in [
        ("1772355600000000000", 209617.54),
        ("1772355660000000000", 213217.54),
    ] {
        set_energy_points(&mut recorded, at, value);
        let answer = otlp_json(&app, &recorded).await;
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert!(body.get("partialSuccess").is_none(), "{body}");
    }
    let report = it_kwh(&app, "workload").await;
    // The recording has one hw.energy series (cpu-package-0): 3,600 J = 0.001 kWh.
    assert!((kwh(&report) - 0.001).abs() < 1e-9, "{report}");
    assert_eq!(report["rows"][0]["workload"], "cpu-package-0");

    // A mapping to a site that does not exist: its points come back rejected, by reason.
    app.put(
        "/v1/telemetry/mappings/cpu",
        json!({"preset": "hw_energy", "site": "{host.name}", "customer": "acme"}),
    )
    .await;
    let answer = otlp_json(&app, &recorded).await;
    let body: Value = answer.json().await.unwrap();
    let partial = &body["partialSuccess"];
    assert_eq!(partial["rejectedDataPoints"], "1", "{body}");
    assert!(partial["errorMessage"]
        .as_str()
        .unwrap()
        .contains("unknown_site"));
}

type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// An exporter serving Kepler's format once `open` is set (503 before): call `i` (from 1, held at
/// 3) shows the package counter at 100 J x i, timestamped 1 s x i after T0.
fn kepler_exporter(open: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (String, Counter) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let served = calls.clone();
    let server = HttpServer::new(move || {
        let (calls, open) = (served.clone(), open.clone());
        App::new().default_service(web::to(move || {
            if !open.load(Ordering::SeqCst) {
                return std::future::ready(HttpResponse::ServiceUnavailable().finish());
            }
            let i = (calls.fetch_add(1, Ordering::SeqCst) + 1).min(3) as i64;
            let at = T0 + i * 1000;
            let body = format!(
                "# TYPE kepler_container_cpu_joules_total counter\n\
                 kepler_container_cpu_joules_total{{container_name=\"api\",zone=\"package\"}} {} {at}\n\
                 kepler_container_cpu_joules_total{{container_name=\"api\",zone=\"dram\"}} 1 {at}\n",
                100 * i
            );
            std::future::ready(
                HttpResponse::Ok()
                    .content_type("text/plain; version=0.0.4")
                    .body(body),
            )
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/metrics"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraped_exporter_becomes_readings_and_a_target_that_is_down_says_why() {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, calls) = kepler_exporter(open.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str, url: &str| {
        toml::from_str::<carbon_ledger::sources::scrape::ScrapeSettings>(&format!(
            "name = \"{name}\"\nurl = \"{url}\"\ninterval_s = 1\nlabels = {{ site = \"fra1\" }}\n"
        ))
        .unwrap()
    };
    let settings = carbon_ledger::config::Settings {
        scrape: vec![
            target("kepler", &url),
            target("down", "http://127.0.0.1:9/metrics"),
        ],
        // The counter stops moving: its last window is written after a second of quiet.
        telemetry: carbon_ledger::sources::TelemetrySettings {
            flush_after_s: 1,
            ..Default::default()
        },
        ..crate::helpers::settings_for(&dir)
    };
    let app = crate::helpers::spawn_app_with(settings, dir).await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    // The site comes from the target's own label.
    app.put(
        "/v1/telemetry/mappings/kepler",
        json!({"preset": "kepler", "site": "{site}", "customer": "acme"}),
    )
    .await;
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    // 100 J -> 300 J, then the counter holds still: exactly 200 J.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut joules = 0.0;
    while std::time::Instant::now() < deadline {
        joules = footprint_joules(&app).await;
        // Answers carry 9 decimals of kWh: 3.6 mJ.
        if calls.load(std::sync::atomic::Ordering::SeqCst) > 4 && (joules - 200.0).abs() < 0.004 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    let by_name = |name: &str| {
        sources
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .cloned()
            .unwrap()
    };
    let kepler = by_name("scrape:kepler");
    assert!((joules - 200.0).abs() < 0.004, "{joules} J; {kepler}");
    assert!(
        kepler["samples_ignored"]["duplicate"].as_u64().unwrap_or(0) >= 1,
        "{kepler}"
    );
    // The dram zone is not the mapping's.
    assert!(
        kepler["samples_unmapped"].as_u64().unwrap() >= 3,
        "{kepler}"
    );
    let down = by_name("scrape:down");
    assert!(down["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot scrape"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redfish_energy_sensor_becomes_readings_at_its_reading_time_in_utc() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let served = calls.clone();
    // Call i (held at 3): 1 Wh more each minute; ReadingTime in the BMC's +06:00.
    let server = HttpServer::new(move || {
        let calls = served.clone();
        App::new().default_service(web::to(move |request: HttpRequest| {
            let found = request.path() == "/redfish/v1/Chassis/1U/Sensors/TotalEnergy";
            let i = (calls.fetch_add(1, Ordering::SeqCst) + 1).min(3);
            let body = json!({"@odata.type": "#Sensor.v1_6_0.Sensor", "Id": "TotalEnergy",
                "ReadingType": "EnergykWh", "ReadingUnits": "kW.h", "Reading": 325675.0 + 0.001 * i as f64,
                "ReadingTime": format!("2026-03-01T15:0{i}:00+06:00")});
            std::future::ready(match found {
                true => HttpResponse::Ok().json(body),
                false => HttpResponse::NotFound().finish(),
            })
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    let dir = tempfile::tempdir().unwrap();
    let bmc: carbon_ledger::sources::redfish::RedfishSettings = toml::from_str(&format!(
        "name = \"rack7\"\nbase_url = \"http://127.0.0.1:{port}\"\nchassis = \"1U\"\n\
         sensors = [\"TotalEnergy\"]\ninterval_s = 1\n\
         labels = {{ site = \"fra1\", customer = \"acme\", workload = \"db-7\" }}\n"
    ))
    .unwrap();
    let settings = carbon_ledger::config::Settings {
        redfish: vec![bmc],
        ..crate::helpers::settings_for(&dir)
    };
    let app = crate::helpers::spawn_app_with(settings, dir).await;
    app.put(
        "/v1/sites/fra1",
        json!({"name": "F", "zone": "DE", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    app.put(
        "/v1/telemetry/mappings/bmc",
        json!({"metric": "redfish_energy_kwh_total", "unit": "kwh_total", "site": "{site}",
               "customer": "{customer}", "workload": "{workload}"}),
    )
    .await;
    // Polls before the mapping are unmapped; from the first mapped one on, each further minute
    // adds 1 Wh = 3,600 J until the counter holds still (at most 7,200 J).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline && calls.load(Ordering::SeqCst) < 6 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let report = it_kwh(&app, "workload").await;
    let joules = kwh(&report) * 3.6e6;
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    let bmc = &sources[0];
    assert_eq!(bmc["source"], "redfish:rack7");
    // 15:01+06:00 .. 15:03+06:00 is 09:01Z .. 09:03Z: readings on 2026-03-01 in UTC.
    assert!(
        bmc["last_sample_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01T09:0"),
        "{bmc}"
    );
    let windows = bmc["readings_written"].as_u64().unwrap();
    assert!(
        (joules - 3600.0 * windows as f64).abs() < 0.004,
        "{joules} J from {windows} windows; {bmc}"
    );
    assert!(
        report["rows"][0]["workload"] == "db-7" || windows == 0,
        "{report}"
    );
}

/// A remote-write 2.0 body: symbols, then series as packed label references and samples.
fn write_request_v2(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    let mut symbols: Vec<&str> = vec![""];
    let mut messages = Vec::new();
    for (labels, samples) in series {
        let mut refs = Vec::new();
        for (name, value) in labels.iter() {
            for text in [*name, *value] {
                let at = symbols.iter().position(|s| *s == text).unwrap_or_else(|| {
                    symbols.push(text);
                    symbols.len() - 1
                });
                encode::varint(&mut refs, at as u64);
            }
        }
        let mut message = Vec::new();
        encode::bytes(&mut message, 1, &refs);
        for (timestamp, value) in samples.iter() {
            let mut sample = Vec::new();
            encode::double(&mut sample, 1, *value);
            encode::int(&mut sample, 2, *timestamp);
            encode::bytes(&mut message, 2, &sample);
        }
        messages.push(message);
    }
    let mut request = Vec::new();
    for symbol in &symbols {
        encode::bytes(&mut request, 4, symbol.as_bytes());
    }
    for message in &messages {
        encode::bytes(&mut request, 5, message);
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_bodies_are_read_through_their_symbol_table() {
    let app = spawn_app().await;
    registered(&app).await;
    let package: &[(&str, &str)] = &[
        NAME,
        ("container_name", "api"),
        ("node_name", "fra1-n1"),
        ("zone", "package"),
    ];
    let body = write_request_v2(&[(package, &[(T0, 0.0), (T0 + 60_000, 7_200.0)])]);
    let answer = app
        .client
        .post(app.url("/api/v1/write"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-encoding", "snappy")
        .header(
            "content-type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("x-prometheus-remote-write-version", "2.0.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(
        answer.headers()["x-prometheus-remote-write-samples-written"],
        "2"
    );
    // 7,200 J = 0.002 kWh.
    assert!((kwh(&it_kwh(&app, "workload").await) - 0.002).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_of_requests_becomes_functional_units_for_the_sci() {
    let app = spawn_app().await;
    registered(&app).await;
    let requests = json!({"metric": "http_requests_total", "unit": "count_total",
        "functional_unit": "requests", "site": "fra1", "customer": "acme",
        "workload": "{container_name}"});
    let mapping = app
        .put("/v1/telemetry/mappings/requests-fra1", requests.clone())
        .await;
    assert_eq!(mapping.status(), 201);
    // A counter of things needs the unit it counts, and only such a counter takes one.
    let mut unnamed = requests.clone();
    unnamed.as_object_mut().unwrap().remove("functional_unit");
    let problem = assert_problem(
        app.put("/v1/telemetry/mappings/bad", unnamed).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "functional_unit");
    let mut energy_named = requests;
    energy_named["unit"] = json!("joules_total");
    assert_problem(
        app.put("/v1/telemetry/mappings/bad", energy_named).await,
        422,
        "validation_failed",
    )
    .await;

    let package: &[(&str, &str)] = &[
        NAME,
        ("container_name", "api"),
        ("node_name", "fra1-n1"),
        ("zone", "package"),
    ];
    let served: &[(&str, &str)] = &[
        ("__name__", "http_requests_total"),
        ("container_name", "api"),
    ];
    // Energy: +3,600 J and +7,200 J. Requests: +300, +600, then a reset to 50 (which counts 50).
    let body = write_request(&[
        (
            package,
            &[
                (T0, 1_000.0),
                (T0 + 30_000, 4_600.0),
                (T0 + 60_000, 11_800.0),
            ],
        ),
        (
            served,
            &[
                (T0, 100.0),
                (T0 + 30_000, 400.0),
                (T0 + 60_000, 1_000.0),
                (T0 + 90_000, 50.0),
            ],
        ),
    ]);
    assert_eq!(remote_write(&app, body.clone()).await.status(), 204);
    assert_eq!(remote_write(&app, body).await.status(), 204, "a retry");
    flushed(&app).await;
    // The counts are not energy: the footprint still holds 10,800 J.
    let footprint = it_kwh(&app, "workload").await;
    assert!(
        (kwh(&footprint) - 10_800.0 / 3.6e6).abs() < 1e-12,
        "{footprint}"
    );
    let sci: Value = app
        .get("/v1/customers/acme/sci?from=2026-03-01T09:00:00Z&to=2026-03-01T10:00:00Z&unit=requests")
        .await
        .json()
        .await
        .unwrap();
    // 300 + 600 + 50 = 950 requests, once whatever was retried.
    assert_eq!(sci["totals"]["functional_units"], 950.0);
    let grams = footprint["totals"]["location_emissions_gco2e"]
        .as_f64()
        .unwrap();
    let per_request = sci["totals"]["sci_gco2e_per_unit"].as_f64().unwrap();
    assert!((per_request - grams / 950.0).abs() < 1e-9, "{sci}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdu_exporters_power_becomes_the_sites_it_meter() {
    let app = spawn_app().await;
    registered(&app).await;
    let invalid = json!({"metric": "pdu_output_watts", "unit": "watts", "site": "fra1",
                         "customer": "acme", "meter": "ups"});
    let problem = assert_problem(
        app.put("/v1/telemetry/mappings/pdu", invalid).await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["meter_kind", "customer"], "{problem}");
    let mapping = json!({"metric": "pdu_output_watts", "unit": "watts", "site": "fra1",
                         "meter": "ups", "meter_kind": "it"});
    assert_eq!(
        app.put("/v1/telemetry/mappings/pdu", mapping)
            .await
            .status(),
        201
    );
    // Two PDU outputs of one UPS: 2,000 W and 1,000 W, sampled each minute from 09:00. The
    // first sample sets each series' state; then each minute is 3,000 W x 60 s = 180,000 J,
    // summed into the one meter: 2 minutes, 360,000 J = 0.1 kWh.
    let name = ("__name__", "pdu_output_watts");
    let a: &[(&str, &str)] = &[name, ("pdu", "a")];
    let b: &[(&str, &str)] = &[name, ("pdu", "b")];
    let minutes = |watts: f64| [(T0, watts), (T0 + 60_000, watts), (T0 + 120_000, watts)];
    let body = write_request(&[(a, &minutes(2_000.0)), (b, &minutes(1_000.0))]);
    assert_eq!(remote_write(&app, body).await.status(), 204);
    let books: Value = app
        .get("/v1/sites/fra1/reconciliation?from=2026-03-01T09:00:00Z&to=2026-03-01T09:02:00Z")
        .await
        .json()
        .await
        .unwrap();
    let it = books["totals"]["it_meter_kwh"].as_f64().unwrap();
    assert!((it - 0.1).abs() < 1e-9, "{books}");
    assert_eq!(books["totals"]["it_meter_coverage"], 1.0);
    // No workload reading was written for it.
    assert_eq!(kwh(&it_kwh(&app, "workload").await), 0.0);
}

/// A registered app whose windows wait `seconds` for a later sample at the most.
async fn flushing_after(seconds: u32) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = carbon_ledger::config::Settings {
        telemetry: carbon_ledger::sources::TelemetrySettings {
            flush_after_s: seconds,
            ..Default::default()
        },
        ..crate::helpers::settings_for(&dir)
    };
    let app = crate::helpers::spawn_app_with(settings, dir).await;
    registered(&app).await;
    app
}

const API_PACKAGE: &[(&str, &str)] = &[
    NAME,
    ("container_name", "api"),
    ("node_name", "fra1-n1"),
    ("zone", "package"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_written_once_a_later_sample_passes_it_or_it_waited_and_never_twice() {
    let app = flushing_after(3600).await;
    // 150 J every 15 s: the first window (09:00:00-09:01:00) is still open at 45 s.
    let steps: Vec<(i64, f64)> = (0..4)
        .map(|k| (T0 + k * 15_000, k as f64 * 150.0))
        .collect();
    let first = write_request(&[(API_PACKAGE, &steps)]);
    assert_eq!(remote_write(&app, first).await.status(), 204);
    assert_eq!(
        footprint_joules(&app).await,
        0.0,
        "the window waits for a later sample"
    );
    // 45 s -> 75 s: 300 J, half in each window. The first is complete: 450 + 150 = 600 J.
    let second = write_request(&[(API_PACKAGE, &[(T0 + 75_000, 750.0)])]);
    assert_eq!(remote_write(&app, second.clone()).await.status(), 204);
    assert!((footprint_joules(&app).await - 600.0).abs() < 0.004);
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    assert_eq!(sources[0]["readings_written"], 1, "{sources}");
    // A graceful stop writes the waiting window (150 J): 750 J. The restart replays both
    // windows and writes them again, which replaces their readings: 750 J, once, and a retried
    // batch adds nothing.
    let app = app.restart().await;
    assert!((footprint_joules(&app).await - 750.0).abs() < 0.004);
    assert_eq!(remote_write(&app, second).await.status(), 204);
    assert_eq!(flushed(&app).await, 2);
    assert!((footprint_joules(&app).await - 750.0).abs() < 0.004);
    assert_eq!(flushed(&app).await, 0, "nothing waits any more");
    assert!((footprint_joules(&app).await - 750.0).abs() < 0.004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_exporter_stopped_is_written_after_flush_after_s() {
    let app = flushing_after(1).await;
    // 0 s -> 30 s: 300 J in the first window, and then the exporter stops.
    let body = write_request(&[(API_PACKAGE, &[(T0, 0.0), (T0 + 30_000, 300.0)])]);
    assert_eq!(remote_write(&app, body).await.status(), 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut joules = 0.0;
    while std::time::Instant::now() < deadline && (joules - 300.0_f64).abs() >= 0.004 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        joules = footprint_joules(&app).await;
    }
    assert!((joules - 300.0).abs() < 0.004, "{joules} J");
    let sources: Value = app.get("/v1/telemetry/sources").await.json().await.unwrap();
    assert_eq!(
        sources[0]["readings_written"], 1,
        "credited to remote_write: {sources}"
    );
}
