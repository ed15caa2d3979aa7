//! `[[redfish]]` BMCs: a chassis' power from `Chassis/{id}/Power` (`PowerControl[].
//! PowerConsumedWatts`, a gauge), or the listed `Sensors/{id}` (`ReadingType` `Power` in W, or
//! `EnergykWh`, a counter in kWh), polled on an interval. Sensors' `ReadingTime` carries the BMC's
//! local offset; it is normalised to UTC. Each value becomes a series for the mappings:
//! `redfish_power_consumed_watts`, `redfish_power_watts` or `redfish_energy_kwh_total`, labelled
//! `job` (the BMC's name), `chassis`, `sensor` or `member_id`, and the BMC's `labels`.
use super::pull::{env, spawn_puller, Sinks};
use super::{Labels, Sample, Series};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[[redfish]]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishSettings {
    pub name: String,
    /// The BMC's root, `https://10.0.7.3`.
    pub base_url: String,
    pub chassis: String,
    /// Sensor ids under `Chassis/{chassis}/Sensors/` to read; the chassis' `Power` when empty.
    #[serde(default)]
    pub sensors: Vec<String>,
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Environment variables holding the BMC's basic-auth credentials.
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Accept the BMC's certificate unverified (many ship self-signed ones); off by default.
    #[serde(default)]
    pub tls_insecure: bool,
}

fn default_interval_s() -> u64 {
    30
}
fn default_timeout_s() -> u64 {
    10
}

fn series(name: &str, labels: BTreeMap<String, String>, timestamp_ms: i64, value: f64) -> Series {
    let mut labels = labels;
    labels.insert("__name__".into(), name.to_owned());
    Series {
        labels: Labels::from_pairs(labels),
        samples: vec![Sample {
            timestamp_ms,
            value,
            start_ms: None,
        }],
        delta: false,
    }
}

/// `PowerControl[].PowerConsumedWatts` of a `#Power` resource, one series per member.
pub fn power_series(power: &Value, base: &BTreeMap<String, String>, now_ms: i64) -> Vec<Series> {
    power["PowerControl"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|control| {
            let watts = control["PowerConsumedWatts"].as_f64()?;
            let mut labels = base.clone();
            let member = control["MemberId"].as_str().unwrap_or("0");
            labels.insert("member_id".into(), member.to_owned());
            Some(series(
                "redfish_power_consumed_watts",
                labels,
                now_ms,
                watts,
            ))
        })
        .collect()
}

/// A `#Sensor` resource's reading, at its `ReadingTime` in UTC (or now); `None` for a reading
/// type that is not power or energy, or no reading.
pub fn sensor_series(
    id: &str,
    sensor: &Value,
    base: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Option<Series>, String> {
    let name = match sensor["ReadingType"].as_str() {
        Some("Power") => "redfish_power_watts",
        Some("EnergykWh") => "redfish_energy_kwh_total",
        _ => return Ok(None),
    };
    let Some(reading) = sensor["Reading"].as_f64() else {
        return Ok(None);
    };
    let at = match sensor["ReadingTime"].as_str() {
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map_err(|_| format!("sensor {id}: ReadingTime {raw:?} is not ISO 8601"))?
            .timestamp_millis(),
        None => now_ms,
    };
    let mut labels = base.clone();
    labels.insert("sensor".into(), id.to_owned());
    Ok(Some(series(name, labels, at, reading)))
}

async fn get(client: &reqwest::Client, bmc: &RedfishSettings, path: &str) -> Result<Value, String> {
    let url = format!(
        "{}/redfish/v1/Chassis/{}/{path}",
        bmc.base_url.trim_end_matches('/'),
        bmc.chassis
    );
    let mut request = client
        .get(&url)
        .header("accept", "application/json")
        .timeout(Duration::from_secs(bmc.timeout_s.max(1)));
    if let Some(user) = env(&bmc.username_env) {
        request = request.basic_auth(user, env(&bmc.password_env));
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "{url} answered HTTP {}",
            response.status().as_u16()
        ));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url}: not JSON: {e}"))
}

async fn poll(
    client: &reqwest::Client,
    bmc: &RedfishSettings,
    now_ms: i64,
) -> Result<Vec<Series>, String> {
    let mut base = BTreeMap::from([
        ("job".to_owned(), bmc.name.clone()),
        ("chassis".to_owned(), bmc.chassis.clone()),
    ]);
    base.extend(bmc.labels.clone());
    if bmc.sensors.is_empty() {
        return Ok(power_series(
            &get(client, bmc, "Power").await?,
            &base,
            now_ms,
        ));
    }
    let mut out = Vec::new();
    for id in &bmc.sensors {
        let sensor = get(client, bmc, &format!("Sensors/{id}")).await?;
        out.extend(sensor_series(id, &sensor, &base, now_ms)?);
    }
    Ok(out)
}

/// Starts one task per BMC; the caller owns the handles.
pub fn spawn_pollers(bmcs: &[RedfishSettings], sinks: &Sinks) -> Vec<tokio::task::JoinHandle<()>> {
    bmcs.iter()
        .cloned()
        .map(|bmc| {
            let client = reqwest::Client::builder()
                .danger_accept_invalid_certs(bmc.tls_insecure)
                .build()
                .unwrap_or_default();
            let source = format!("redfish:{}", bmc.name);
            let interval = Duration::from_secs(bmc.interval_s.max(1));
            spawn_puller(source, interval, sinks.clone(), move |now_ms| {
                let (client, bmc) = (client.clone(), bmc.clone());
                async move { poll(&client, &bmc, now_ms).await }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/telemetry/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn base() -> BTreeMap<String, String> {
        BTreeMap::from([("job".into(), "bmc".into()), ("site".into(), "fra1".into())])
    }

    #[test]
    fn the_recorded_power_resource_gives_the_consumed_watts() {
        let series = power_series(&fixture("redfish_power.json"), &base(), 7);
        assert_eq!(
            series[0].label("__name__"),
            Some("redfish_power_consumed_watts")
        );
        assert_eq!(series[0].label("site"), Some("fra1"));
        assert_eq!(series[0].samples[0].value, 344.0);
        assert_eq!(series[0].samples[0].timestamp_ms, 7);
    }

    #[test]
    fn sensors_read_power_and_energy_at_their_reading_time_in_utc() {
        let power = sensor_series(
            "TotalPower",
            &fixture("redfish_sensor_total_power.json"),
            &base(),
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(power.label("__name__"), Some("redfish_power_watts"));
        assert_eq!(power.samples[0].value, 374.0);
        // 2019-08-13T04:14:33+06:00 is 2019-08-12T22:14:33Z.
        let utc: DateTime<chrono::Utc> = "2019-08-12T22:14:33Z".parse().unwrap();
        assert_eq!(power.samples[0].timestamp_ms, utc.timestamp_millis());
        let energy = sensor_series(
            "TotalEnergy",
            &fixture("redfish_sensor_total_energy.json"),
            &base(),
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(energy.label("__name__"), Some("redfish_energy_kwh_total"));
        assert_eq!(energy.samples[0].value, 325675.0);
        assert_eq!(
            energy.samples[0].timestamp_ms, 7,
            "no ReadingTime: the poll's time"
        );
        let bad =
            serde_json::json!({"ReadingType": "Power", "Reading": 1, "ReadingTime": "yesterday"});
        assert!(sensor_series("x", &bad, &base(), 0)
            .unwrap_err()
            .contains("ReadingTime"));
    }
}
