//! Energy rollups over HTTP: reports give the same hand-computed figures whether a date is read
//! from its rollup, from its readings (waiting in the log, flushed but not yet rolled up), after
//! corrections, late readings and compaction, and with rollups switched off.
use crate::helpers::*;
use carbon_ledger::config::Settings;
use carbon_ledger::storage::rollups::Level;
use serde_json::{json, Value};

async fn data(app: &TestApp) {
    app.put(
        "/v1/sites/fra1",
        json!({"name": "Frankfurt 1", "zone": "GB", "pue": 1.5}),
    )
    .await;
    app.put("/v1/customers/acme", json!({"name": "Acme Corp"}))
        .await;
    app.put("/v1/zones/GB", json!({"default_gco2e_per_kwh": 200}))
        .await;
    let intensity = json!({"zone": "GB", "source": "manual", "signal": "average", "points": [
        {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T09:30:00Z", "gco2e_per_kwh": 200, "kind": "actual"},
        {"start": "2026-03-01T09:30:00Z", "end": "2026-03-01T10:00:00Z", "gco2e_per_kwh": 300, "kind": "actual"},
        {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:30:00Z", "gco2e_per_kwh": 100, "kind": "actual"}]});
    assert_eq!(app.post("/v1/intensity", intensity).await.status(), 200);
    let readings = json!([
        // 0.1 kWh from 09:25 to 09:35: across slot edges and the 09:30 intensity edge.
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:25:00Z",
         "duration_s": 600, "energy_j": 360000},
        // 0.02 kWh from 09:58 to 10:02.
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T09:58:00Z",
         "duration_s": 240, "energy_j": 72000},
        // 0.01 kWh the day before.
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-02-28T00:10:00Z",
         "duration_s": 60, "energy_j": 36000}
    ]);
    assert_eq!(app.post("/v1/readings", readings).await.status(), 200);
}

const TWO_DAYS: &str =
    "/v1/customers/acme/footprint?from=2026-02-28T00:00:00Z&to=2026-03-02T00:00:00Z";
/// `from` off the five-minute grid: the 09:25 slot is read from readings.
const OFF_GRID: &str =
    "/v1/customers/acme/footprint?from=2026-03-01T09:27:30Z&to=2026-03-01T10:00:00Z";

/// (it_energy_kwh, location_emissions_gco2e, readings) of a report's totals.
/// The same totals from the report by workload (read from the rollups per workload) and from the
/// report of the whole customer (read from those per customer).
async fn totals(app: &TestApp, url: &str) -> (f64, f64, i64) {
    let mut answers = Vec::new();
    for url in [format!("{url}&group_by=workload"), url.to_owned()] {
        let body: Value = app.get(&url).await.json().await.unwrap();
        let totals = &body["totals"];
        answers.push((
            totals["it_energy_kwh"].as_f64().unwrap(),
            totals["location_emissions_gco2e"].as_f64().unwrap(),
            totals["readings"].as_i64().unwrap(),
        ));
    }
    assert_totals(answers[0], answers[1], "by workload and by customer");
    answers[1]
}

fn assert_totals(actual: (f64, f64, i64), expected: (f64, f64, i64), when: &str) {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
    assert!(
        close(actual.0, expected.0) && close(actual.1, expected.1) && actual.2 == expected.2,
        "{when}: {actual:?} != {expected:?}"
    );
}

/// The dates the rollups serve, checking that each serves its file summed per customer to
/// reports that need no workload.
async fn served(app: &TestApp) -> Vec<String> {
    let dates = ("2026-02-28", "2026-03-01");
    let at = |level| app.rollups().serving(app.readings(), None, dates, level);
    let (workloads, customers) = (at(Level::Workloads).await, at(Level::Customers).await);
    let (workloads, customers) = (workloads.unwrap(), customers.unwrap());
    assert_eq!(
        workloads.keys().collect::<Vec<_>>(),
        customers.keys().collect::<Vec<_>>()
    );
    for (date, file) in &customers {
        assert_ne!(file.path, workloads[date].path, "{date}: one file for both");
    }
    workloads.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_agree_whether_dates_come_from_rollups_or_readings() {
    // Flushes happen when the test says (the refresher follows each at once, in the background).
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        flush_interval_s: 3600,
        ..settings_for(&dir)
    };
    let app = spawn_app_with(settings, dir).await;
    data(&app).await;
    // IT 0.1 + 0.02 + 0.01 = 0.13 kWh. Location, at PUE 1.5 (the day before at the default 200):
    // 1.5 x (0.05 x 200 + 0.05 x 300 + 0.01 x 300 + 0.01 x 100 + 0.01 x 200) = 1.5 x 31 = 46.5 g.
    let first = (0.13, 46.5, 3);
    assert_totals(totals(&app, TWO_DAYS).await, first, "in the log");
    assert!(
        served(&app).await.is_empty(),
        "nothing flushed, nothing rolled up"
    );
    app.flush().await;
    assert_totals(totals(&app, TWO_DAYS).await, first, "flushed");
    app.refresh_rollups().await;
    assert_eq!(served(&app).await, ["2026-02-28", "2026-03-01"]);
    assert_eq!(app.refresh_rollups().await, 0, "nothing changed since");
    assert_totals(totals(&app, TWO_DAYS).await, first, "from rollups");
    // From 09:27:30: 450 s of the api reading's 600 (0.075 kWh: 0.025 at 200, 0.05 at 300) and
    // the batch reading's 120 s before 10:00 (0.01 kWh at 300): 0.085 kWh,
    // 1.5 x (5 + 15 + 3) = 34.5 g, two readings.
    assert_totals(
        totals(&app, OFF_GRID).await,
        (0.085, 34.5, 2),
        "off the grid",
    );

    // A correction doubles the api reading; a late reading adds 0.005 kWh at 09:00 (at 200).
    let correction = json!([
        {"site": "fra1", "customer": "acme", "workload": "api", "start": "2026-03-01T09:25:00Z",
         "duration_s": 600, "energy_j": 720000},
        {"site": "fra1", "customer": "acme", "workload": "batch", "start": "2026-03-01T09:00:00Z",
         "duration_s": 300, "energy_j": 18000}
    ]);
    assert_eq!(app.post("/v1/readings", correction).await.status(), 200);
    // IT 0.2 + 0.02 + 0.01 + 0.005 = 0.235 kWh; location
    // 1.5 x (0.1 x 200 + 0.1 x 300 + 3 + 1 + 2 + 0.005 x 200) = 1.5 x 57 = 85.5 g; four readings.
    let corrected = (0.235, 85.5, 4);
    assert_eq!(
        served(&app).await,
        ["2026-02-28"],
        "the corrected date waits in the log"
    );
    assert_totals(
        totals(&app, TWO_DAYS).await,
        corrected,
        "correction in the log",
    );
    app.flush().await;
    assert_totals(
        totals(&app, TWO_DAYS).await,
        corrected,
        "correction flushed",
    );
    app.refresh_rollups().await;
    assert_eq!(served(&app).await, ["2026-02-28", "2026-03-01"]);
    assert_totals(
        totals(&app, TWO_DAYS).await,
        corrected,
        "correction rolled up",
    );
    // 0.15 kWh of the api reading (0.05 at 200, 0.1 at 300) and the batch's 0.01 at 300:
    // 0.16 kWh, 1.5 x (10 + 30 + 3) = 64.5 g.
    assert_totals(
        totals(&app, OFF_GRID).await,
        (0.16, 64.5, 2),
        "corrected, off the grid",
    );

    app.compact().await;
    app.refresh_rollups().await;
    assert_eq!(served(&app).await, ["2026-02-28", "2026-03-01"]);
    assert_totals(totals(&app, TWO_DAYS).await, corrected, "compacted");
    let differences = app.rollups().verify(app.readings()).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");

    // The same answers with rollups off: every figure from the readings.
    let dir = app.stop().await;
    let settings = Settings {
        energy_rollups: false,
        ..settings_for(&dir)
    };
    let raw = spawn_app_with(settings, dir).await;
    assert_totals(totals(&raw, TWO_DAYS).await, corrected, "rollups off");
    assert_totals(
        totals(&raw, OFF_GRID).await,
        (0.16, 64.5, 2),
        "rollups off, off the grid",
    );

    // A reading flushed while nothing keeps the rollups: the command line finds its date stale,
    // rebuilds it, and then finds nothing to report.
    let late = json!([{"site": "fra1", "customer": "acme", "workload": "api",
        "start": "2026-03-01T10:00:00Z", "duration_s": 300, "energy_j": 18000}]);
    assert_eq!(raw.post("/v1/readings", late).await.status(), 200);
    raw.flush().await;
    let dir = raw.stop().await;
    let verify = rollups_command(&dir, &["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    let listed = String::from_utf8_lossy(&verify.stdout);
    let dates: Vec<_> = (listed.lines())
        .filter(|line| !line.starts_with('{')) // the JSON log lines
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(dates, ["2026-03-01"], "{listed}");
    let rebuild = rollups_command(&dir, &["rebuild", "--from", "2026-03-01"]);
    assert!(rebuild.status.success(), "{rebuild:?}");
    let verify = rollups_command(&dir, &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    // 0.005 kWh more at 100 g/kWh x 1.5: 0.75 g, served from the rebuilt rollup.
    let app = spawn_app_with(settings_for(&dir), dir).await;
    assert_eq!(served(&app).await, ["2026-02-28", "2026-03-01"]);
    assert_totals(
        totals(&app, TWO_DAYS).await,
        (corrected.0 + 0.005, corrected.1 + 0.75, corrected.2 + 1),
        "rebuilt by the command line",
    );
}

fn rollups_command(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_carbon-ledger"))
        .args(["rollups", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap()
}
