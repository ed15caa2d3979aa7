//! Issue 20: a tenant's key never rewrites grid intensity, and no registry operation drops
//! accounted energy (deletions that would are refused; retirement keeps history).
use crate::helpers::{assert_problem, spawn_app, TestApp, ADMIN_TOKEN};
use carbon_ledger::domain::reading::ReadingBatch;
use carbon_ledger::storage::logged::LoggedTable;
use carbon_ledger::storage::readings;
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

const DAY: &str = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";

fn push(zone: &str, value: f64) -> Value {
    json!({"zone": zone, "source": "evil", "signal": "average", "points": [
        {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T01:00:00Z", "gco2e_per_kwh": value,
         "kind": "actual"}]})
}

/// Two sites in two zones, two customers, and one 1 kWh reading for each of three pairs.
async fn registry_with_readings(app: &TestApp) {
    for (site, zone) in [("fra1", "DE"), ("sfo1", "US-CAL-CISO")] {
        app.put(
            &format!("/v1/sites/{site}"),
            json!({"name": site, "zone": zone, "pue": 1.5}),
        )
        .await;
    }
    for customer in ["acme", "globex"] {
        app.put(
            &format!("/v1/customers/{customer}"),
            json!({"name": customer}),
        )
        .await;
    }
    let readings = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T00:00:00Z",
         "duration_s": 3600, "energy_j": 3.6e6},
        {"site": "sfo1", "customer": "acme", "workload": "ml", "start": "2026-03-01T00:00:00Z",
         "duration_s": 3600, "energy_j": 3.6e6},
        {"site": "fra1", "customer": "globex", "workload": "db", "start": "2026-03-01T00:00:00Z",
         "duration_s": 3600, "energy_j": 3.6e6}]);
    assert_eq!(app.post("/v1/readings", readings).await.status(), 200);
}

async fn total_it_kwh(app: &TestApp) -> f64 {
    let body: Value = app
        .get(&format!("/v1/footprint?{DAY}&group_by=site,customer"))
        .await
        .json()
        .await
        .unwrap();
    body["totals"]["it_energy_kwh"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_limited_ingest_key_may_not_write_intensity_and_an_intensity_key_only_its_zones() {
    let app = spawn_app().await;
    registry_with_readings(&app).await;
    let (_, site_agent) = app
        .create_key(json!({"role": "ingest", "sites": ["fra1"]}))
        .await;
    let (_, every_site) = app.create_key(json!({"role": "ingest"})).await;
    let post = |token: String, body: Value| {
        let app = &app;
        async move {
            app.call(Method::POST, "/v1/intensity", Some(&token), Some(&body))
                .await
        }
    };
    for key in [site_agent, every_site] {
        let refused =
            assert_problem(post(key, push("US-CAL-CISO", 0.0)).await, 403, "forbidden").await;
        assert!(refused["detail"].as_str().unwrap().contains("US-CAL-CISO"));
    }
    let read = format!("/v1/zones/US-CAL-CISO/intensity?{DAY}");
    let points: Value = app.get(&read).await.json().await.unwrap();
    assert_eq!(points["points"], json!([]), "nothing was stored");

    let (pusher_id, pusher) = app
        .create_key(json!({"role": "intensity", "zones": ["DE"]}))
        .await;
    assert_problem(
        post(pusher.clone(), push("US-CAL-CISO", 0.0)).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(post(pusher, push("DE", 310.0)).await.status(), 200);
    let points: Value = app
        .get(&format!("/v1/zones/DE/intensity?{DAY}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(points["points"][0]["gco2e_per_kwh"], 310.0);
    assert_eq!(points["points"][0]["written_by"], pusher_id.as_str());

    // The key and its zones are listed as granted; zones belong to intensity keys only.
    let keys: Value = app.get("/v1/api-keys").await.json().await.unwrap();
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == pusher_id.as_str())
        .unwrap();
    assert_eq!(listed["role"], "intensity");
    assert_eq!(listed["zones"], json!(["DE"]));
    let body = assert_problem(
        app.post("/v1/api-keys", json!({"role": "ingest", "zones": ["DE"]}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "zones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_readings_name_cannot_be_deleted_and_the_report_stays_complete() {
    let app = spawn_app().await;
    registry_with_readings(&app).await;
    // 3 readings of 1 kWh each.
    assert!((total_it_kwh(&app).await - 3.0).abs() < 1e-9);

    let site = assert_problem(app.delete("/v1/sites/sfo1").await, 409, "in_use").await;
    let detail = site["detail"].as_str().unwrap();
    assert!(
        detail.contains("site sfo1") && detail.contains("readings"),
        "{detail}"
    );
    assert!(
        detail.contains("retired_at"),
        "says what to do instead: {detail}"
    );
    let customer = assert_problem(app.delete("/v1/customers/globex").await, 409, "in_use").await;
    assert!(customer["detail"]
        .as_str()
        .unwrap()
        .contains("customer globex"));
    app.put("/v1/zones/DE", json!({"default_gco2e_per_kwh": 380}))
        .await;
    let zone = assert_problem(app.delete("/v1/zones/DE").await, 409, "in_use").await;
    assert!(zone["detail"].as_str().unwrap().contains("site fra1"));

    // The same after the readings moved from the log into the table, and after a restart.
    app.flush().await;
    let app = app.restart().await;
    assert_problem(app.delete("/v1/sites/sfo1").await, 409, "in_use").await;
    assert_problem(app.delete("/v1/customers/globex").await, 409, "in_use").await;
    assert!((total_it_kwh(&app).await - 3.0).abs() < 1e-9);
    let globex: Value = app
        .get(&format!("/v1/customers/globex/footprint?{DAY}"))
        .await
        .json()
        .await
        .unwrap();
    assert!((globex["totals"]["it_energy_kwh"].as_f64().unwrap() - 1.0).abs() < 1e-9);

    // What nothing refers to still goes.
    app.put(
        "/v1/sites/spare",
        json!({"name": "Spare", "zone": "FR", "pue": 1.2}),
    )
    .await;
    app.put("/v1/zones/FR", json!({"default_gco2e_per_kwh": 50}))
        .await;
    assert_problem(app.delete("/v1/zones/FR").await, 409, "in_use").await;
    assert_eq!(app.delete("/v1/sites/spare").await.status(), 204);
    assert_eq!(app.delete("/v1/zones/FR").await.status(), 204);
    app.put("/v1/customers/initech", json!({"name": "Initech"}))
        .await;
    assert_eq!(app.delete("/v1/customers/initech").await.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_stored_before_usage_was_tracked_still_block_deletion() {
    let app = spawn_app().await;
    app.put(
        "/v1/sites/old1",
        json!({"name": "Old", "zone": "DE", "pue": 1.2}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme"})).await;
    // Written straight to the table, as an older release did, with no usage mark.
    let mut batch = ReadingBatch::default();
    batch.site.push("old1");
    batch.customer.push("acme");
    batch.workload.push("api");
    batch.start_us.push(1_772_323_200_000_000); // 2026-03-01T00:00:00Z
    batch.duration_s.push(3600);
    batch.energy_j.push(Some(3.6e6));
    batch.power_w.push(None);
    let prepared = LoggedTable::prepare(readings::frame(batch).unwrap()).unwrap();
    app.readings().append(prepared).await.unwrap();
    assert_problem(app.delete("/v1/sites/old1").await, 409, "in_use").await;
    app.flush().await;
    assert_problem(app.delete("/v1/customers/acme").await, 409, "in_use").await;
    assert!((total_it_kwh(&app).await - 1.0).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_site_takes_no_new_readings_and_keeps_its_history() {
    let app = spawn_app().await;
    registry_with_readings(&app).await;
    let retired = app
        .put(
            "/v1/sites/sfo1",
            json!({"name": "sfo1", "zone": "US-CAL-CISO", "pue": 1.5,
                   "retired_at": "2026-03-01T06:00:00Z"}),
        )
        .await;
    assert_eq!(retired.status(), 200);
    let site: Value = retired.json().await.unwrap();
    assert_eq!(site["retired_at"], "2026-03-01T06:00:00Z");

    let after = json!([{"site": "sfo1", "customer": "acme", "workload": "ml",
        "start": "2026-03-01T06:00:00Z", "duration_s": 600, "energy_j": 1000}]);
    let body = assert_problem(app.post("/v1/readings", after).await, 422, "retired").await;
    assert_eq!(body["errors"][0]["field"], "site");
    assert!(body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("site sfo1 was retired at 2026-03-01T06:00:00Z"));
    // Late telemetry of the time it was in service still arrives: 0.5 kWh more.
    let late = json!([{"site": "sfo1", "customer": "acme", "workload": "ml",
        "start": "2026-03-01T05:00:00Z", "duration_s": 3600, "energy_j": 1.8e6}]);
    assert_eq!(app.post("/v1/readings", late).await.status(), 200);

    let by_site: Value = app
        .get(&format!("/v1/footprint?{DAY}&group_by=site"))
        .await
        .json()
        .await
        .unwrap();
    let sfo1 = by_site["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["site"] == "sfo1")
        .expect("the retired site is still reported");
    assert!((sfo1["it_energy_kwh"].as_f64().unwrap() - 1.5).abs() < 1e-9);
    assert!((total_it_kwh(&app).await - 3.5).abs() < 1e-9);

    // A retired customer likewise.
    app.put(
        "/v1/customers/globex",
        json!({"name": "globex", "retired_at": "2026-03-01T00:00:00Z"}),
    )
    .await;
    let from_globex = json!([{"site": "fra1", "customer": "globex", "workload": "db",
        "start": "2026-03-01T01:00:00Z", "duration_s": 60, "energy_j": 1}]);
    let body = assert_problem(app.post("/v1/readings", from_globex).await, 422, "retired").await;
    assert_eq!(body["errors"][0]["field"], "customer");
    let customer: Value = app.get("/v1/customers/globex").await.json().await.unwrap();
    assert_eq!(customer["retired_at"], "2026-03-01T00:00:00Z");
}

#[derive(Debug, Clone)]
enum RegistryOp {
    PutSite {
        site: usize,
        zone: usize,
        pue: f64,
        retired: bool,
    },
    PutCustomer {
        customer: usize,
        retired: bool,
    },
    PutZone(usize),
    PutInstrument {
        site: usize,
    },
    Delete {
        kind: usize,
        id: usize,
    },
}

const SITES: [&str; 3] = ["fra1", "sfo1", "spare"];
const CUSTOMERS: [&str; 3] = ["acme", "globex", "initech"];
const ZONES: [&str; 3] = ["DE", "US-CAL-CISO", "FR"];

fn registry_op() -> impl Strategy<Value = RegistryOp> {
    prop_oneof![
        1 => (0..3usize, 0..3usize, prop_oneof![Just(1.1), Just(2.0)], any::<bool>())
            .prop_map(|(site, zone, pue, retired)| RegistryOp::PutSite { site, zone, pue, retired }),
        1 => (0..3usize, any::<bool>())
            .prop_map(|(customer, retired)| RegistryOp::PutCustomer { customer, retired }),
        1 => (0..3usize).prop_map(RegistryOp::PutZone),
        1 => (0..3usize).prop_map(|site| RegistryOp::PutInstrument { site }),
        3 => (0..4usize, 0..3usize).prop_map(|(kind, id)| RegistryOp::Delete { kind, id }),
    ]
}

async fn apply(app: &TestApp, op: &RegistryOp) {
    let retired_at = |retired: bool| retired.then_some("2026-03-01T00:30:00Z");
    let response = match op {
        RegistryOp::PutSite {
            site,
            zone,
            pue,
            retired,
        } => {
            app.put(
                &format!("/v1/sites/{}", SITES[*site]),
                json!({"name": "S", "zone": ZONES[*zone], "pue": pue,
                       "retired_at": retired_at(*retired)}),
            )
            .await
        }
        RegistryOp::PutCustomer { customer, retired } => {
            app.put(
                &format!("/v1/customers/{}", CUSTOMERS[*customer]),
                json!({"name": "C", "retired_at": retired_at(*retired)}),
            )
            .await
        }
        RegistryOp::PutZone(zone) => {
            app.put(
                &format!("/v1/zones/{}", ZONES[*zone]),
                json!({"default_gco2e_per_kwh": 123, "residual_mix_gco2e_per_kwh": {"2026": 456}}),
            )
            .await
        }
        RegistryOp::PutInstrument { site } => {
            app.put(
                "/v1/instruments/ppa",
                json!({"site": SITES[*site], "from": "2026-03-01T00:00:00Z",
                       "to": "2026-03-02T00:00:00Z", "energy_mwh": 0.001, "gco2e_per_kwh": 0,
                       "kind": "ppa"}),
            )
            .await
        }
        RegistryOp::Delete { kind, id } => {
            let path = match kind {
                0 => format!("/v1/sites/{}", SITES[*id]),
                1 => format!("/v1/customers/{}", CUSTOMERS[*id]),
                2 => format!("/v1/zones/{}", ZONES[*id]),
                _ => "/v1/instruments/ppa".to_owned(),
            };
            app.call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
                .await
        }
    };
    assert!(
        !response.status().is_server_error(),
        "{op:?}: {}",
        response.status()
    );
}

#[test]
fn no_sequence_of_registry_operations_changes_the_stored_energy_in_reports() {
    let (runtime, config) = crate::helpers::property_runtime(8);
    proptest!(config, |(ops in proptest::collection::vec(registry_op(), 1..20))| {
        runtime.block_on(async {
            let app = spawn_app().await;
            registry_with_readings(&app).await;
            for op in &ops {
                apply(&app, op).await;
                // 3 x 1 kWh stored: every all-customers report keeps all of it.
                let total = total_it_kwh(&app).await;
                assert!((total - 3.0).abs() < 1e-9, "{total} kWh after {op:?} in {ops:?}");
            }
            app.stop().await;
        });
    });
}
