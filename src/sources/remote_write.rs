//! Prometheus remote-write 1.0: a snappy-compressed (block format) protobuf `WriteRequest`
//! (`prompb`): `WriteRequest{repeated TimeSeries timeseries = 1}`, `TimeSeries{repeated Label
//! labels = 1; repeated Sample samples = 2}`, `Label{string name = 1; string value = 2}`,
//! `Sample{double value = 1; int64 timestamp = 2}` with timestamps in milliseconds.
use super::protobuf::{Fields, Value, WireError};
use super::{Sample, Series};

/// The most a body may inflate to: a remote-write request is a few MB at most.
pub const MAX_DECODED_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not snappy block-compressed: {0}")]
    Snappy(String),
    #[error("the body inflates to {0} bytes, more than {MAX_DECODED_BYTES}")]
    TooLarge(usize),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0}")]
    Invalid(String),
}

/// The series of a remote-write body as sent (compressed).
pub fn decode(body: &[u8]) -> Result<Vec<Series>, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge(size));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    decode_request(&raw)
}

/// The series of an uncompressed `WriteRequest`.
pub fn decode_request(raw: &[u8]) -> Result<Vec<Series>, DecodeError> {
    let mut request = Fields::new(raw);
    let mut series = Vec::new();
    while let Some((number, value)) = request.next_field()? {
        if let (1, Value::Bytes(bytes)) = (number, value) {
            series.push(time_series(request.nested(bytes))?);
        }
    }
    Ok(series)
}

fn text(bytes: &[u8], what: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Invalid(format!("{what} is not UTF-8")))
}

fn time_series(mut fields: Fields<'_>) -> Result<Series, DecodeError> {
    let mut labels = Vec::new();
    let mut samples = Vec::new();
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(bytes)) => {
                let mut label = fields.nested(bytes);
                let (mut name, mut text_value) = (String::new(), String::new());
                while let Some((n, v)) = label.next_field()? {
                    match (n, v) {
                        (1, Value::Bytes(b)) => name = text(b, "a label name")?,
                        (2, Value::Bytes(b)) => text_value = text(b, "a label value")?,
                        (1 | 2, _) => {
                            return Err(label.wrong_type("a label is two strings").into())
                        }
                        _ => {}
                    }
                }
                labels.push((name, text_value));
            }
            (2, Value::Bytes(bytes)) => {
                let mut sample = fields.nested(bytes);
                let (mut value, mut timestamp_ms) = (0.0, 0i64);
                while let Some((n, v)) = sample.next_field()? {
                    match (n, v) {
                        (1, Value::Fixed64(bits)) => value = f64::from_bits(bits),
                        (2, Value::Varint(t)) => timestamp_ms = t as i64,
                        (1 | 2, _) => {
                            return Err(sample
                                .wrong_type("a sample is a double and an int64")
                                .into())
                        }
                        _ => {}
                    }
                }
                samples.push(Sample {
                    timestamp_ms,
                    value,
                    start_ms: None,
                });
            }
            (1 | 2, _) => return Err(fields.wrong_type("labels and samples are messages").into()),
            _ => {}
        }
    }
    if !labels.iter().any(|(name, _)| name == "__name__") {
        return Err(DecodeError::Invalid(
            "a series has no __name__ label".into(),
        ));
    }
    labels.sort();
    Ok(Series {
        labels,
        samples,
        delta: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::protobuf::encode;
    use proptest::prelude::*;

    /// The fixture (the decoded form of a real Kepler remote-write) encoded back to the wire,
    /// uncompressed.
    fn fixture_request() -> (Vec<u8>, serde_json::Value) {
        let json: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/telemetry/prometheus_remote_write_v1_decoded.json"
        ))
        .unwrap();
        type Recorded<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);
        let series: Vec<Recorded> = json["timeseries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["labels"].as_array().unwrap().iter();
                let samples = s["samples"].as_array().unwrap().iter();
                (
                    labels
                        .map(|l| (l["name"].as_str().unwrap(), l["value"].as_str().unwrap()))
                        .collect(),
                    samples
                        .map(|p| {
                            (
                                p["timestamp"].as_i64().unwrap(),
                                p["value"].as_f64().unwrap(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let body = encode::write_request(series.iter().map(|(l, s)| (l.as_slice(), s.as_slice())));
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        (raw, json)
    }

    #[test]
    fn the_recorded_kepler_write_decodes_to_its_series_and_samples() {
        let (raw, json) = fixture_request();
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let series = decode(&body).unwrap();
        let expected = json["timeseries"].as_array().unwrap();
        assert_eq!(series.len(), expected.len());
        let first = &series[0];
        assert!(first.labels.contains(&(
            "__name__".into(),
            "kepler_container_cpu_joules_total".into()
        )));
        assert_eq!(first.samples[0].timestamp_ms, 1_718_707_200_000);
        assert_eq!(first.samples[0].value, 48217.05);
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        let recorded: usize = expected
            .iter()
            .map(|s| s["samples"].as_array().unwrap().len())
            .sum();
        assert_eq!(samples, recorded);
    }

    #[test]
    fn a_body_that_is_not_snappy_or_protobuf_is_an_error_naming_why() {
        assert!(matches!(decode(b"plain text"), Err(DecodeError::Snappy(_))));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff])
            .unwrap();
        assert!(matches!(decode(&garbage), Err(DecodeError::Wire(_))));
        let nameless = {
            let mut series = Vec::new();
            let mut label = Vec::new();
            encode::bytes(&mut label, 1, b"job");
            encode::bytes(&mut label, 2, b"kepler");
            encode::bytes(&mut series, 1, &label);
            let mut request = Vec::new();
            encode::bytes(&mut request, 1, &series);
            snap::raw::Encoder::new().compress_vec(&request).unwrap()
        };
        assert!(matches!(decode(&nameless), Err(DecodeError::Invalid(_))));
    }

    proptest! {
        /// Fuzz: any bytes, raw or as a snappy body, decode or fail, never panic.
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_request(&bytes);
            let compressed = snap::raw::Encoder::new().compress_vec(&bytes).unwrap();
            let _ = decode(&compressed);
        }

        /// Fuzz: a real request with bytes flipped decodes or fails, never panics.
        #[test]
        fn a_damaged_request_decodes_or_fails_without_panicking(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let (mut raw, _) = fixture_request();
            for (at, byte) in flips {
                let len = raw.len();
                raw[at % len] ^= byte;
            }
            let _ = decode_request(&raw);
        }
    }
}
