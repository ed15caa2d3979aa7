//! Reports see every registry and intensity change at once: the regression of issue 11, and a
//! property test that interleaves random registry edits, readings, intensity, flushes and reports
//! against one running server, then compares its answers with a fresh server that was loaded with
//! the final state and restarted (so it reads everything from its table files).
use crate::helpers::{spawn_app, TestApp};
use proptest::prelude::*;
use serde_json::{json, Value};

const DAY: &str = "from=2026-02-15T00:00:00Z&to=2026-02-16T00:00:00Z&granularity=day";

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

/// The steps of issue 11, without a restart: an instrument registered after the readings counts in
/// the very next report, whether the readings are still in the log or already in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_registered_after_the_readings_counts_in_the_next_report() {
    for flushed in [false, true] {
        let app = spawn_app().await;
        app.put(
            "/v1/sites/ams2",
            json!({"name": "A", "zone": "NL", "pue": 1.4}),
        )
        .await;
        app.put("/v1/customers/initech", json!({"name": "Initech"}))
            .await;
        app.put(
            "/v1/zones/NL",
            json!({"default_gco2e_per_kwh": 410, "residual_mix_gco2e_per_kwh": {"2026": 520}}),
        )
        .await;
        let intensity = json!({"zone": "NL", "source": "manual", "signal": "average", "points": [
            {"start": "2026-02-15T10:00:00Z", "end": "2026-02-15T11:00:00Z", "gco2e_per_kwh": 300, "kind": "actual"}]});
        assert_eq!(app.post("/v1/intensity", intensity).await.status(), 200);
        let reading = json!([{"site": "ams2", "customer": "initech", "workload": "db",
            "start": "2026-02-15T10:00:00Z", "duration_s": 3600, "energy_j": 3.6e6}]);
        assert_eq!(app.post("/v1/readings", reading).await.status(), 200);
        if flushed {
            app.flush().await;
        }
        let report = format!("/v1/customers/initech/footprint?{DAY}");
        let before: Value = app.get(&report).await.json().await.unwrap();
        // 1 kWh IT x PUE 1.4 = 1.4 kWh; no instrument: all of it at the residual mix, 520 g/kWh.
        close(&before["totals"]["facility_energy_kwh"], 1.4);
        close(&before["totals"]["market_emissions_gco2e"], 1.4 * 520.0);

        let ppa = json!({"site": "ams2", "customer": null, "from": "2026-02-15T00:00:00Z",
            "to": "2026-02-16T00:00:00Z", "energy_mwh": 0.0007, "gco2e_per_kwh": 0, "kind": "ppa"});
        assert_eq!(app.put("/v1/instruments/ppa", ppa).await.status(), 201);
        let after: Value = app.get(&report).await.json().await.unwrap();
        // 0.7 kWh of PPA covers half of 1.4 kWh at 0 g; the other half at 520: 364 g.
        close(
            &after["totals"]["market_emissions_gco2e"],
            1.4 * 0.5 * 520.0,
        );
        close(&after["totals"]["location_emissions_gco2e"], 1.4 * 300.0);
        app.stop().await;
    }
}

/// One step of the interleaving.
#[derive(Debug, Clone)]
enum Step {
    PutSite {
        site: usize,
        zone: usize,
        pue: f64,
    },
    PutCustomer(usize),
    PutZone {
        zone: usize,
        default: f64,
        residual_mix: Option<f64>,
    },
    PutInstrument {
        id: usize,
        site: usize,
        customer: Option<usize>,
        energy_mwh: f64,
        gco2e_per_kwh: f64,
    },
    Delete {
        kind: usize,
        id: usize,
    },
    Reading {
        site: usize,
        customer: usize,
        workload: usize,
        start_s: i64,
        duration_s: i64,
        energy_j: f64,
    },
    Intensity {
        zone: usize,
        hour: i64,
        gco2e_per_kwh: f64,
        kind: usize,
    },
    Flush,
    Report(usize),
}

const SITES: [&str; 2] = ["s1", "s2"];
const ZONES: [&str; 2] = ["DE", "FR"];
const CUSTOMERS: [&str; 2] = ["c1", "c2"];
const WORKLOADS: [&str; 2] = ["api", "batch"];
const INSTRUMENTS: [&str; 2] = ["i1", "i2"];
const KINDS: [&str; 3] = ["actual", "estimated", "forecast"];
const REGISTRY: [&str; 4] = ["sites", "customers", "zones", "instruments"];
const T0: i64 = 1_771_113_600; // 2026-02-15T00:00:00Z

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..2usize, 0..2usize, prop_oneof![Just(1.1), Just(1.5)])
            .prop_map(|(site, zone, pue)| Step::PutSite { site, zone, pue }),
        1 => (0..2usize).prop_map(Step::PutCustomer),
        1 => (
            0..2usize,
            prop_oneof![Just(200.0), Just(450.0)],
            proptest::option::of(Just(520.0))
        )
            .prop_map(|(zone, default, residual_mix)| Step::PutZone {
                zone,
                default,
                residual_mix
            }),
        1 => (
            0..2usize,
            0..2usize,
            proptest::option::of(0..2usize),
            prop_oneof![Just(0.0005), Just(0.003)],
            prop_oneof![Just(0.0), Just(40.0)]
        )
            .prop_map(
                |(id, site, customer, energy_mwh, gco2e_per_kwh)| Step::PutInstrument {
                    id,
                    site,
                    customer,
                    energy_mwh,
                    gco2e_per_kwh
                }
            ),
        1 => (0..4usize, 0..2usize).prop_map(|(kind, id)| Step::Delete { kind, id }),
        3 => (
            0..2usize,
            0..2usize,
            0..2usize,
            (0..8i64).prop_map(|q| q * 1800 + 600),
            prop_oneof![Just(600i64), Just(3600)],
            prop_oneof![Just(36_000.0), Just(720_000.0)]
        )
            .prop_map(
                |(site, customer, workload, start_s, duration_s, energy_j)| Step::Reading {
                    site,
                    customer,
                    workload,
                    start_s,
                    duration_s,
                    energy_j
                }
            ),
        2 => (
            0..2usize,
            0..5i64,
            prop_oneof![Just(100.0), Just(300.0), Just(500.0)],
            0..3usize
        )
            .prop_map(|(zone, hour, gco2e_per_kwh, kind)| Step::Intensity {
                zone,
                hour,
                gco2e_per_kwh,
                kind
            }),
        1 => Just(Step::Flush),
        2 => (0..REPORTS.len()).prop_map(Step::Report),
    ]
}

/// The reports compared: every endpoint and format that renders a footprint.
const REPORTS: [&str; 4] = [
    "/v1/footprint?from=2026-02-15T00:00:00Z&to=2026-02-16T00:00:00Z&granularity=hour&group_by=customer,site,zone,workload",
    "/v1/footprint?from=2026-02-15T00:00:00Z&to=2026-02-16T00:00:00Z&granularity=day&group_by=site&format=csv",
    "/v1/customers/c1/footprint?from=2026-02-15T00:00:00Z&to=2026-02-16T00:00:00Z&granularity=hour&group_by=workload",
    "/v1/customers/c2/footprint?from=2026-02-15T00:00:00Z&to=2026-02-16T00:00:00Z&granularity=total&format=ndjson",
];

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The request a step makes: method, path and body (`None` for steps that are not requests).
fn request(step: &Step) -> Option<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    Some(match step {
        Step::PutSite { site, zone, pue } => (
            Method::PUT,
            format!("/v1/sites/{}", SITES[*site]),
            Some(json!({"name": "Site", "zone": ZONES[*zone], "pue": pue})),
        ),
        Step::PutCustomer(customer) => (
            Method::PUT,
            format!("/v1/customers/{}", CUSTOMERS[*customer]),
            Some(json!({"name": "Customer"})),
        ),
        Step::PutZone {
            zone,
            default,
            residual_mix,
        } => (
            Method::PUT,
            format!("/v1/zones/{}", ZONES[*zone]),
            Some(json!({"default_gco2e_per_kwh": default,
                "residual_mix_gco2e_per_kwh": residual_mix.map(|m| json!({"2026": m})).unwrap_or(json!({}))})),
        ),
        Step::PutInstrument {
            id,
            site,
            customer,
            energy_mwh,
            gco2e_per_kwh,
        } => (
            Method::PUT,
            format!("/v1/instruments/{}", INSTRUMENTS[*id]),
            Some(
                json!({"site": SITES[*site], "customer": customer.map(|c| CUSTOMERS[c]),
                "from": rfc3339(T0), "to": rfc3339(T0 + 86_400), "energy_mwh": energy_mwh,
                "gco2e_per_kwh": gco2e_per_kwh, "kind": "ppa"}),
            ),
        ),
        Step::Delete { kind, id } => {
            let ids: [&str; 2] = match kind {
                0 => SITES,
                1 => CUSTOMERS,
                2 => ZONES,
                _ => INSTRUMENTS,
            };
            (
                Method::DELETE,
                format!("/v1/{}/{}", REGISTRY[*kind], ids[*id]),
                None,
            )
        }
        Step::Reading {
            site,
            customer,
            workload,
            start_s,
            duration_s,
            energy_j,
        } => (
            Method::POST,
            "/v1/readings".into(),
            Some(
                json!([{"site": SITES[*site], "customer": CUSTOMERS[*customer],
                "workload": WORKLOADS[*workload], "start": rfc3339(T0 + start_s),
                "duration_s": duration_s, "energy_j": energy_j}]),
            ),
        ),
        Step::Intensity {
            zone,
            hour,
            gco2e_per_kwh,
            kind,
        } => (
            Method::POST,
            "/v1/intensity".into(),
            Some(
                json!({"zone": ZONES[*zone], "source": "manual", "signal": "average",
                "points": [{"start": rfc3339(T0 + hour * 3600), "end": rfc3339(T0 + (hour + 1) * 3600),
                    "gco2e_per_kwh": gco2e_per_kwh, "kind": KINDS[*kind]}]}),
            ),
        ),
        Step::Flush | Step::Report(_) => return None,
    })
}

/// A report answer as status and values, numbers compared to 1e-9 (cached and streamed dates may
/// sum in another order).
#[derive(Debug)]
struct Answer {
    status: u16,
    values: Vec<String>,
}

impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status
            && self.values.len() == other.values.len()
            && self.values.iter().zip(&other.values).all(|(a, b)| {
                match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => a == b,
                }
            })
    }
}

async fn answer(app: &TestApp, path: &str) -> Answer {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let values = match serde_json::from_str::<Value>(&text) {
        Ok(json) if !path.contains("format=") => flatten(&json),
        _ => text
            .split(['\n', ',', ':', '{', '}', '[', ']'])
            .map(str::to_owned)
            .collect(),
    };
    Answer { status, values }
}

fn flatten(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        // Versions say where the rows were read from, not what they are.
        Value::Object(fields) => fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "table_version" | "versions"))
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(flatten(v)))
            .collect(),
        other => vec![other.to_string()],
    }
}

/// The registry's final state, in an order a fresh server accepts.
async fn registry_state(app: &TestApp) -> Vec<(String, Value)> {
    let mut puts = Vec::new();
    for kind in ["zones", "sites", "customers", "instruments"] {
        let records: Value = app.get(&format!("/v1/{kind}")).await.json().await.unwrap();
        for record in records.as_array().expect("list") {
            let mut body = record.clone();
            let id = body
                .as_object_mut()
                .and_then(|fields| fields.remove(if kind == "zones" { "zone" } else { "id" }))
                .expect("id");
            let id = id.as_str().expect("id").to_owned();
            puts.push((format!("/v1/{kind}/{id}"), body));
        }
    }
    puts
}

async fn interleave(random: Vec<Step>) {
    // A site and a customer to begin with, so that most readings land.
    let mut steps = vec![
        Step::PutSite {
            site: 0,
            zone: 0,
            pue: 1.5,
        },
        Step::PutCustomer(0),
    ];
    steps.extend(random);
    let live = spawn_app().await;
    // What the live server acknowledged, in order: the data part of the final state.
    let mut accepted = Vec::new();
    for step in &steps {
        match step {
            Step::Flush => live.flush().await,
            Step::Report(which) => {
                let status = live.get(REPORTS[*which]).await.status();
                assert!(status == 200 || status == 404, "{status}");
            }
            step => {
                let (method, path, body) = request(step).expect("a request");
                let response = live
                    .call(
                        method,
                        &path,
                        Some(crate::helpers::ADMIN_TOKEN),
                        body.as_ref(),
                    )
                    .await;
                assert!(!response.status().is_server_error(), "{path}");
                let data = path.starts_with("/v1/readings") || path.starts_with("/v1/intensity");
                if response.status().is_success() && data {
                    accepted.push((path, body.expect("body")));
                }
            }
        }
    }
    let fresh = spawn_app().await;
    for (path, body) in registry_state(&live).await {
        let status = fresh.put(&path, body).await.status();
        assert!(status.is_success(), "{path}: {status}");
    }
    for (path, body) in accepted {
        // A reading whose site or customer is gone answers 422 here: it is not in the state.
        assert!(!fresh.post(&path, body).await.status().is_server_error());
    }
    let fresh = fresh.restart().await;
    for path in REPORTS {
        assert_eq!(
            answer(&live, path).await,
            answer(&fresh, path).await,
            "{path} after {steps:?}"
        );
    }
    live.stop().await;
    fresh.stop().await;
}

#[test]
fn every_change_shows_in_the_next_report_as_on_a_fresh_server() {
    let (runtime, config) = crate::helpers::property_runtime(12);
    proptest!(config, |(steps in proptest::collection::vec(step(), 1..30))| {
        runtime.block_on(interleave(steps));
    });
}
