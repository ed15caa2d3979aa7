//! OTLP/HTTP metrics (`ExportMetricsServiceRequest`), as protobuf or as JSON. Each number data
//! point of a sum or a gauge becomes a sample of a series whose labels are the resource's and the
//! point's attributes (the point's win) and whose `__name__` is the metric's name. Delta sums keep
//! each point's start, since each point is the increase over its own interval. Histograms and
//! summaries carry no energy: their points are counted as unsupported.
use super::protobuf::{encode, Fields, Value, WireError};
use super::{Labels, Sample, Series};
use std::collections::BTreeMap;

/// A decoded request.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub series: Vec<Series>,
    /// Points of metric types that are not sums or gauges.
    pub unsupported_points: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("not OTLP JSON: {0}")]
    Json(String),
}

/// One point on its way into a series.
struct Point {
    attributes: Vec<(String, String)>,
    start_ns: u64,
    time_ns: u64,
    value: f64,
}

/// What the decoders collect: metrics' points grouped into series.
#[derive(Default)]
struct Collector {
    series: BTreeMap<Labels, Series>,
    unsupported_points: u64,
}

impl Collector {
    fn add(&mut self, resource: &[(String, String)], name: &str, delta: bool, point: Point) {
        let mut labels: BTreeMap<String, String> = resource.iter().cloned().collect();
        labels.extend(point.attributes);
        labels.insert("__name__".into(), name.to_owned());
        let labels = Labels::from_pairs(labels);
        let series = self.series.entry(labels.clone()).or_insert_with(|| Series {
            labels,
            samples: Vec::new(),
            delta,
        });
        let ms = |ns: u64| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX);
        series.samples.push(Sample {
            timestamp_ms: ms(point.time_ns),
            value: point.value,
            start_ms: (delta && point.start_ns > 0).then(|| ms(point.start_ns)),
        });
    }

    fn finish(self) -> Decoded {
        Decoded {
            series: self.series.into_values().collect(),
            unsupported_points: self.unsupported_points,
        }
    }
}

/// `AggregationTemporality`: 1 is DELTA, 2 CUMULATIVE.
const DELTA: u64 = 1;

// ---- protobuf ------------------------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An `AnyValue` as label text (scalars only; arrays and maps are left out).
fn any_value(mut fields: Fields<'_>) -> Result<Option<String>, WireError> {
    let mut out = None;
    while let Some((number, value)) = fields.next_field()? {
        out = match (number, value) {
            (1, Value::Bytes(b)) => Some(text(b)),
            (2, Value::Varint(v)) => Some((v != 0).to_string()),
            (3, Value::Varint(v)) => Some((v as i64).to_string()),
            (4, Value::Fixed64(bits)) => Some(f64::from_bits(bits).to_string()),
            _ => out,
        };
    }
    Ok(out)
}

fn key_value(mut fields: Fields<'_>) -> Result<Option<(String, String)>, WireError> {
    let (mut key, mut value) = (None, None);
    while let Some((number, v)) = fields.next_field()? {
        match (number, v) {
            (1, Value::Bytes(b)) => key = Some(text(b)),
            (2, Value::Bytes(b)) => value = any_value(fields.nested(b))?,
            _ => {}
        }
    }
    Ok(key.zip(value))
}

fn number_point(mut fields: Fields<'_>) -> Result<Point, WireError> {
    let mut point = Point {
        attributes: Vec::new(),
        start_ns: 0,
        time_ns: 0,
        value: f64::NAN,
    };
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (7, Value::Bytes(b)) => point.attributes.extend(key_value(fields.nested(b))?),
            (2, Value::Fixed64(v)) => point.start_ns = v,
            (3, Value::Fixed64(v)) => point.time_ns = v,
            (4, Value::Fixed64(bits)) => point.value = f64::from_bits(bits),
            (6, Value::Fixed64(v)) => point.value = v as i64 as f64,
            _ => {}
        }
    }
    Ok(point)
}

fn metric(
    mut fields: Fields<'_>,
    resource: &[(String, String)],
    out: &mut Collector,
) -> Result<(), WireError> {
    let mut name = String::new();
    let mut data: Vec<(u32, &[u8])> = Vec::new();
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(b)) => name = text(b),
            (5 | 7 | 9 | 10 | 11, Value::Bytes(b)) => data.push((number, b)),
            _ => {}
        }
    }
    for (kind, bytes) in data {
        let mut body = fields.nested(bytes);
        let mut points = Vec::new();
        let mut temporality = 0;
        while let Some((number, value)) = body.next_field()? {
            match (kind, number, value) {
                (5 | 7, 1, Value::Bytes(b)) => points.push(number_point(body.nested(b))?),
                (7, 2, Value::Varint(t)) => temporality = t,
                (9..=11, 1, Value::Bytes(_)) => out.unsupported_points += 1,
                _ => {}
            }
        }
        for point in points {
            out.add(resource, &name, kind == 7 && temporality == DELTA, point);
        }
    }
    Ok(())
}

/// The series of a protobuf `ExportMetricsServiceRequest`.
pub fn decode_protobuf(raw: &[u8]) -> Result<Decoded, DecodeError> {
    let mut out = Collector::default();
    let mut request = Fields::new(raw);
    while let Some((number, value)) = request.next_field()? {
        let (1, Value::Bytes(bytes)) = (number, value) else {
            continue;
        };
        let mut resource_metrics = request.nested(bytes);
        let mut resource = Vec::new();
        let mut scopes = Vec::new();
        while let Some((n, v)) = resource_metrics.next_field()? {
            match (n, v) {
                (1, Value::Bytes(b)) => {
                    let mut r = resource_metrics.nested(b);
                    while let Some((rn, rv)) = r.next_field()? {
                        if let (1, Value::Bytes(kv)) = (rn, rv) {
                            resource.extend(key_value(r.nested(kv))?);
                        }
                    }
                }
                (2, Value::Bytes(b)) => scopes.push(b),
                _ => {}
            }
        }
        for scope in scopes {
            let mut scope_metrics = resource_metrics.nested(scope);
            while let Some((n, v)) = scope_metrics.next_field()? {
                if let (2, Value::Bytes(m)) = (n, v) {
                    metric(scope_metrics.nested(m), &resource, &mut out)?;
                }
            }
        }
    }
    Ok(out.finish())
}

// ---- JSON ----------------------------------------------------------------------------------

use serde_json::Value as Json;

/// 64-bit integers arrive as decimal strings (the proto3 JSON mapping) or as numbers.
fn json_u64(value: &Json) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

fn json_attributes(list: &Json) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_owned();
            let value = &kv["value"];
            let text = if let Some(s) = value["stringValue"].as_str() {
                s.to_owned()
            } else if let Some(b) = value["boolValue"].as_bool() {
                b.to_string()
            } else if let Some(i) = value.get("intValue") {
                i.as_i64()
                    .map(|i| i.to_string())
                    .or_else(|| i.as_str().map(str::to_owned))?
            } else {
                value["doubleValue"].as_f64()?.to_string()
            };
            Some((key, text))
        })
        .collect()
}

/// The series of an OTLP JSON request.
pub fn decode_json(body: &[u8]) -> Result<Decoded, DecodeError> {
    let request: Json =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let resource_metrics = request["resourceMetrics"]
        .as_array()
        .ok_or_else(|| DecodeError::Json("resourceMetrics must be an array".into()))?;
    let mut out = Collector::default();
    for resource_metric in resource_metrics {
        let resource = json_attributes(&resource_metric["resource"]["attributes"]);
        for scope in resource_metric["scopeMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for metric in scope["metrics"].as_array().into_iter().flatten() {
                let name = metric["name"].as_str().unwrap_or_default();
                let (data, delta) = if metric.get("sum").is_some() {
                    let sum = &metric["sum"];
                    (sum, json_u64(&sum["aggregationTemporality"]) == Some(DELTA))
                } else if metric.get("gauge").is_some() {
                    (&metric["gauge"], false)
                } else {
                    for kind in ["histogram", "exponentialHistogram", "summary"] {
                        out.unsupported_points += metric[kind]["dataPoints"]
                            .as_array()
                            .map_or(0, |p| p.len() as u64);
                    }
                    continue;
                };
                for point in data["dataPoints"].as_array().into_iter().flatten() {
                    let value = point["asDouble"]
                        .as_f64()
                        .or_else(|| point["asDouble"].as_str().and_then(|s| s.parse().ok()))
                        .or_else(|| {
                            let int = &point["asInt"];
                            int.as_i64()
                                .or_else(|| int.as_str()?.parse().ok())
                                .map(|i| i as f64)
                        })
                        .unwrap_or(f64::NAN);
                    out.add(
                        &resource,
                        name,
                        delta,
                        Point {
                            attributes: json_attributes(&point["attributes"]),
                            start_ns: json_u64(&point["startTimeUnixNano"]).unwrap_or(0),
                            time_ns: json_u64(&point["timeUnixNano"]).unwrap_or(0),
                            value,
                        },
                    );
                }
            }
        }
    }
    Ok(out.finish())
}

/// `ExportMetricsServiceResponse` as protobuf: empty when every point was taken, else
/// `partial_success{rejected_data_points, error_message}`.
pub fn response_protobuf(rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 {
        return Vec::new();
    }
    let mut partial = Vec::new();
    encode::int(&mut partial, 1, i64::try_from(rejected).unwrap_or(i64::MAX));
    encode::bytes(&mut partial, 2, message.as_bytes());
    let mut out = Vec::new();
    encode::bytes(&mut out, 1, &partial);
    out
}

/// The same response as OTLP JSON.
pub fn response_json(rejected: u64, message: &str) -> serde_json::Value {
    if rejected == 0 {
        return serde_json::json!({});
    }
    serde_json::json!({"partialSuccess": {"rejectedDataPoints": rejected.to_string(), "errorMessage": message}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE: &str = include_str!("../../fixtures/telemetry/otlp_power_metrics.json");

    #[test]
    fn the_recorded_request_decodes_with_resource_and_point_attributes_as_labels() {
        let decoded = decode_json(FIXTURE.as_bytes()).unwrap();
        let energy = decoded
            .series
            .iter()
            .find(|s| s.label("__name__") == Some("hw.energy"))
            .unwrap();
        assert_eq!(energy.label("host.name"), Some("worker-01"));
        assert_eq!(energy.label("hw.id"), Some("cpu-package-0"));
        assert!(!energy.delta);
        assert_eq!(energy.samples[0].timestamp_ms, 1_718_707_260_000);
        assert_eq!(energy.samples[0].value, 209617.54);
        assert!(decoded
            .series
            .iter()
            .any(|s| s.label("__name__") == Some("hw.power")));
    }

    /// The fixture's first metric, encoded as the protobuf exporters send it.
    fn protobuf_request(temporality: u64) -> Vec<u8> {
        let mut attr = Vec::new();
        encode::bytes(&mut attr, 1, b"hw.id");
        let mut any = Vec::new();
        encode::bytes(&mut any, 1, b"psu-1");
        encode::bytes(&mut attr, 2, &any);
        let mut point = Vec::new();
        encode::bytes(&mut point, 7, &attr);
        encode::fixed64(&mut point, 2, 1_718_707_200_000_000_000);
        encode::fixed64(&mut point, 3, 1_718_707_260_000_000_000);
        encode::double(&mut point, 4, 360.0);
        let mut sum = Vec::new();
        encode::bytes(&mut sum, 1, &point);
        encode::int(&mut sum, 2, temporality as i64);
        let mut metric = Vec::new();
        encode::bytes(&mut metric, 1, b"hw.energy");
        encode::bytes(&mut metric, 3, b"J");
        encode::bytes(&mut metric, 7, &sum);
        let mut scope = Vec::new();
        encode::bytes(&mut scope, 2, &metric);
        let mut resource = Vec::new();
        let mut host = Vec::new();
        encode::bytes(&mut host, 1, b"host.name");
        let mut host_value = Vec::new();
        encode::bytes(&mut host_value, 1, b"fra1-n1");
        encode::bytes(&mut host, 2, &host_value);
        encode::bytes(&mut resource, 1, &host);
        let mut resource_metrics = Vec::new();
        encode::bytes(&mut resource_metrics, 1, &resource);
        encode::bytes(&mut resource_metrics, 2, &scope);
        let mut request = Vec::new();
        encode::bytes(&mut request, 1, &resource_metrics);
        request
    }

    #[test]
    fn a_protobuf_request_decodes_delta_points_with_their_start() {
        let decoded = decode_protobuf(&protobuf_request(1)).unwrap();
        let series = &decoded.series[0];
        assert_eq!(series.label("__name__"), Some("hw.energy"));
        assert_eq!(series.label("host.name"), Some("fra1-n1"));
        assert_eq!(series.label("hw.id"), Some("psu-1"));
        assert!(series.delta);
        assert_eq!(series.samples[0].start_ms, Some(1_718_707_200_000));
        assert_eq!(series.samples[0].timestamp_ms, 1_718_707_260_000);
        let cumulative = decode_protobuf(&protobuf_request(2)).unwrap();
        assert!(!cumulative.series[0].delta);
        assert_eq!(cumulative.series[0].samples[0].start_ms, None);
    }

    #[test]
    fn a_partial_success_names_the_rejected_points() {
        assert!(response_protobuf(0, "").is_empty());
        let encoded = response_protobuf(3, "3 points: unknown_site");
        let mut outer = Fields::new(&encoded);
        let Some((1, Value::Bytes(inner))) = outer.next_field().unwrap() else {
            panic!("no partial_success");
        };
        let mut partial = outer.nested(inner);
        assert_eq!(partial.next_field().unwrap(), Some((1, Value::Varint(3))));
        assert_eq!(
            response_json(3, "x")["partialSuccess"]["rejectedDataPoints"],
            "3"
        );
    }

    proptest! {
        /// Fuzz: any bytes decode or fail, never panic, as protobuf and as JSON.
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_protobuf(&bytes);
            let _ = decode_json(&bytes);
        }

        /// Fuzz: a real request with bytes flipped decodes or fails, never panics.
        #[test]
        fn a_damaged_request_decodes_or_fails_without_panicking(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut raw = protobuf_request(2);
            for (at, byte) in flips {
                let len = raw.len();
                raw[at % len] ^= byte;
            }
            let _ = decode_protobuf(&raw);
        }
    }
}
