//! Completeness over HTTP, against hand arithmetic: idle IT energy allocated by reserved
//! capacity, and workloads without a meter modelled from their usage, flagged as such.
use crate::helpers::{assert_problem, spawn_app};
use crate::meters::{site_with_workloads, BOOKS};
use reqwest::Method;
use serde_json::{json, Value};

const HOUR: &str = "from=2026-03-01T09:00:00Z&to=2026-03-01T10:00:00Z";

fn close(v: &Value, expected: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - expected).abs() < 1e-6, "{got} != {expected}");
}

/// The UPS of fra1 measured `kwh` from 09:00 to 10:00.
fn ups(kwh: f64) -> Value {
    json!([{"site": "fra1", "meter": "ups", "kind": "it",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "energy_j": kwh * 3.6e6}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_capacity_carries_the_idle_energy_and_the_books_balance() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    let site = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
                      "allocation": "reserved_proportional"});
    assert_eq!(app.put("/v1/sites/fra1", site).await.status(), 200);
    assert_eq!(app.post("/v1/meters", ups(8.0)).await.status(), 200);
    // acme reserved 10 kW, globex 30 kW (from 09:30 on: 50 kW), initech nothing.
    for (id, customer, kw, from, to) in [
        ("acme", "acme", 10, "2026-01-01T00:00:00Z", None),
        (
            "globex-1",
            "globex",
            30,
            "2026-01-01T00:00:00Z",
            Some("2026-03-01T09:30:00Z"),
        ),
        ("globex-2", "globex", 50, "2026-03-01T09:30:00Z", None),
    ] {
        let body = json!({"site": "fra1", "customer": customer, "reserved_kw": kw,
                          "from": from, "to": to});
        let response = app.put(&format!("/v1/capacity/{id}"), body).await;
        assert_eq!(response.status(), 201);
    }
    let unknown = json!({"site": "fra1", "customer": "hooli", "reserved_kw": 5,
                         "from": "2026-01-01T00:00:00Z"});
    assert_problem(
        app.put("/v1/capacity/hooli", unknown).await,
        422,
        "unknown_customer",
    )
    .await;

    // 8 kWh metered, 1 + 2 + 3 = 6 measured: 2 kWh idle, 1 kWh each half hour.
    // 09:00-09:30: acme 10/40 x 1 = 0.25, globex 30/40 x 1 = 0.75.
    // 09:30-10:00: acme 10/60 x 1 = 1/6, globex 50/60 x 1 = 5/6.
    // acme 0.25 + 1/6 = 5/12 kWh on top of its 1 kWh: 17/12 kWh IT, 17/8 kWh facility.
    let (_, acme) = app
        .create_key(json!({"role": "customer", "customer": "acme"}))
        .await;
    let path = format!("/v1/customers/acme/footprint?{HOUR}&group_by=workload");
    let own: Value = app
        .call(Method::GET, &path, Some(&acme), None)
        .await
        .json()
        .await
        .unwrap();
    close(&own["totals"]["allocated_it_energy_kwh"], 5.0 / 12.0);
    close(&own["totals"]["it_energy_kwh"], 17.0 / 12.0);
    close(&own["totals"]["facility_energy_kwh"], 17.0 / 8.0);
    let rows = own["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "app and the reserved capacity: {own}");
    let reserved = rows
        .iter()
        .find(|r| r["workload"] == "(reserved capacity)")
        .unwrap();
    close(&reserved["allocated_it_energy_kwh"], 5.0 / 12.0);
    close(&reserved["attributed_it_energy_kwh"], 0.0);

    // Every customer: the meter exactly; globex 2 + 0.75 + 5/6, initech its own 3.
    let all: Value = app
        .get(&format!("/v1/footprint?{HOUR}&group_by=customer"))
        .await
        .json()
        .await
        .unwrap();
    close(&all["totals"]["it_energy_kwh"], 8.0);
    let customer = |id: &str| {
        all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer"] == id)
            .unwrap()
            .clone()
    };
    close(&customer("globex")["it_energy_kwh"], 2.0 + 0.75 + 5.0 / 6.0);
    close(&customer("initech")["allocated_it_energy_kwh"], 0.0);
    let books: Value = app.get(BOOKS).await.json().await.unwrap();
    close(&books["rows"][0]["allocated_it_kwh"], 2.0);
    close(&books["rows"][0]["operator_it_kwh"], 0.0);
    // A customer with reserved capacity stays while the reservation does.
    assert_problem(app.delete("/v1/customers/acme").await, 409, "in_use").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_modelled_flagged_and_counted_in_the_books() {
    let app = spawn_app().await;
    site_with_workloads(&app).await;
    let model = json!({"name": "Arm, no GPU", "vcpu_idle_w": 0.5, "vcpu_max_w": 2.5,
                       "memory_w_per_gb": 0.25, "gpu_idle_w": 0, "gpu_max_w": 0,
                       "source": "vendor datasheet"});
    assert_eq!(app.put("/v1/power-models/arm", model).await.status(), 201);
    // acme's batch (the Arm model): 64 vCPU hours at 25 % and 256 GB hours:
    // 64 x (0.5 + 0.25 x 2) + 256 x 0.25 = 64 + 64 = 128 Wh.
    // initech's etl (Cloud Carbon Footprint's defaults): 100 vCPU hours at 50 % and one GPU
    // hour at 50 %: 100 x (0.74 + 0.5 x 2.76) + (35 + 0.5 x 271) = 212 + 170.5 = 382.5 Wh.
    let csv = "site,customer,workload,start,duration_s,vcpu_hours,memory_gb_hours,gpu_hours,utilisation,power_model\n\
               fra1,acme,batch,2026-03-01T09:00:00Z,3600,64,256,,0.25,arm\n\
               fra1,initech,etl,2026-03-01T09:00:00Z,3600,100,0,1,0.5,\n";
    let response = app.post_raw("/v1/usage", "text/csv", csv).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // The same again replaces, never adds.
    assert_eq!(
        app.post_raw("/v1/usage", "text/csv", csv).await.status(),
        200
    );
    let bad = json!([{"site": "fra1", "customer": "acme", "workload": "batch",
        "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "vcpu_hours": 4,
        "utilisation": 2, "power_model": "cray"}]);
    let problem = assert_problem(app.post("/v1/usage", bad).await, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["utilisation", "power_model"], "{problem}");

    let all: Value = app
        .get(&format!("/v1/footprint?{HOUR}&group_by=customer,workload"))
        .await
        .json()
        .await
        .unwrap();
    let row = |customer: &str, workload: &str| {
        all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer"] == customer && r["workload"] == workload)
            .unwrap_or_else(|| panic!("no {customer}/{workload}: {all}"))
            .clone()
    };
    close(&row("acme", "batch")["it_energy_kwh"], 0.128);
    close(&row("acme", "batch")["modelled_share"], 1.0);
    close(&row("initech", "etl")["modelled_it_energy_kwh"], 0.3825);
    close(&row("acme", "app")["modelled_share"], 0.0);
    // 6 kWh measured + 0.5105 modelled: the totals say how much is which.
    close(&all["totals"]["attributed_it_energy_kwh"], 6.5105);
    close(&all["totals"]["modelled_it_energy_kwh"], 0.5105);
    close(&all["totals"]["modelled_share"], 0.5105 / 6.5105);

    // The books: an 8 kWh UPS leaves 8 - 6.5105 = 1.4895 kWh unattributed.
    assert_eq!(app.post("/v1/meters", ups(8.0)).await.status(), 200);
    let books: Value = app.get(BOOKS).await.json().await.unwrap();
    let nine = &books["rows"][0];
    close(&nine["measured_workloads_kwh"], 6.0);
    close(&nine["modelled_workloads_kwh"], 0.5105);
    close(&nine["unattributed_it_kwh"], 1.4895);
    // The model prices stored usage: it stays.
    assert_problem(app.delete("/v1/power-models/arm").await, 409, "in_use").await;
    // A site's default model must exist.
    let site = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5, "power_model": "cray"});
    assert_problem(
        app.put("/v1/sites/fra1", site).await,
        422,
        "unknown_power_model",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statements_add_up_to_the_site_meters_under_each_policy() {
    for policy in ["energy_proportional", "reserved_proportional"] {
        let app = spawn_app().await;
        site_with_workloads(&app).await;
        let site = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5, "allocation": policy});
        assert_eq!(app.put("/v1/sites/fra1", site).await.status(), 200);
        for (customer, kw) in [("acme", 10), ("globex", 20), ("initech", 10)] {
            let body = json!({"site": "fra1", "customer": customer, "reserved_kw": kw,
                              "from": "2026-01-01T00:00:00Z"});
            assert_eq!(
                app.put(&format!("/v1/capacity/{customer}"), body)
                    .await
                    .status(),
                201
            );
        }
        // UPS 8 kWh and the main meter 13.6 kWh over the hour: measured PUE 1.7.
        let mut meters = ups(8.0);
        meters
            .as_array_mut()
            .unwrap()
            .push(json!({"site": "fra1", "meter": "main",
            "kind": "facility", "start": "2026-03-01T09:00:00Z", "duration_s": 3600,
            "energy_j": 13.6 * 3.6e6}));
        assert_eq!(app.post("/v1/meters", meters).await.status(), 200);
        let period = json!({"id": "2026-03-01", "from": "2026-03-01T00:00:00Z",
                            "to": "2026-03-02T00:00:00Z"});
        assert_eq!(app.post("/v1/periods", period).await.status(), 201);
        // energy_proportional: acme 1 + 2/6, globex 2 + 4/6, initech 3 + 1.
        // reserved_proportional: acme 1 + 2 x 10/40, globex 2 + 2 x 20/40, initech 3 + 2 x 10/40.
        let expected = match policy {
            "energy_proportional" => [4.0 / 3.0, 8.0 / 3.0, 4.0],
            _ => [1.5, 3.0, 3.5],
        };
        let (mut it, mut facility) = (0.0, 0.0);
        for (customer, kwh) in ["acme", "globex", "initech"].iter().zip(expected) {
            let statement: Value = app
                .get(&format!("/v1/customers/{customer}/statements/2026-03-01"))
                .await
                .json()
                .await
                .unwrap();
            close(&statement["totals"]["it_energy_kwh"], kwh);
            it += statement["totals"]["it_energy_kwh"].as_f64().unwrap();
            facility += statement["totals"]["facility_energy_kwh"].as_f64().unwrap();
        }
        // The customers' statements are the UPS and, at the measured PUE, the main meter.
        assert!((it - 8.0).abs() < 1e-6, "{policy}: {it}");
        assert!((facility - 13.6).abs() < 1e-6, "{policy}: {facility}");
    }
}
