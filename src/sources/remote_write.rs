//! Prometheus remote-write, snappy-compressed (block format) protobuf. 1.0 (`prompb`):
//! `WriteRequest{repeated TimeSeries timeseries = 1}`, `TimeSeries{repeated Label labels = 1;
//! repeated Sample samples = 2}`, `Label{string name = 1; string value = 2}`. 2.0
//! (`io.prometheus.write.v2.Request`): `Request{repeated string symbols = 4; repeated TimeSeries
//! timeseries = 5}`, `TimeSeries{repeated uint32 labels_refs = 1; repeated Sample samples = 2}`,
//! labels as (name, value) index pairs into `symbols`. Both: `Sample{double value = 1; int64
//! timestamp = 2}` in milliseconds. Histograms, exemplars and metadata are skipped.
use super::labels::Builder;
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

/// Which message a body holds, from its `Content-Type` (`proto=io.prometheus.write.v2.Request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn of_content_type(content_type: &str) -> Self {
        if content_type.contains("io.prometheus.write.v2.Request") {
            Version::V2
        } else {
            Version::V1
        }
    }
}

/// The series of a remote-write body as sent (compressed).
pub fn decode_version(body: &[u8], version: Version) -> Result<Vec<Series>, DecodeError> {
    let raw = inflate(body)?;
    match version {
        Version::V1 => decode_request(&raw),
        Version::V2 => decode_v2(&raw),
    }
}

fn inflate(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge(size));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// The series of an uncompressed 2.0 `Request`.
pub fn decode_v2(raw: &[u8]) -> Result<Vec<Series>, DecodeError> {
    let mut request = Fields::new(raw);
    let mut symbols: Vec<&str> = Vec::new();
    let mut series_bytes = Vec::new();
    while let Some((number, value)) = request.next_field()? {
        match (number, value) {
            (4, Value::Bytes(b)) => symbols.push(text(b, "a symbol")?),
            (5, Value::Bytes(b)) => series_bytes.push(b),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(series_bytes.len());
    for bytes in series_bytes {
        let mut fields = request.nested(bytes);
        let mut refs: Vec<u64> = Vec::new();
        let mut samples = Vec::new();
        while let Some((number, value)) = fields.next_field()? {
            match (number, value) {
                (1, Value::Varint(r)) => refs.push(r),
                (1, Value::Bytes(packed)) => {
                    let mut varints = fields.nested(packed);
                    while let Some(r) = varints.next_packed_varint()? {
                        refs.push(r);
                    }
                }
                (2, Value::Bytes(b)) => samples.push(match short_sample(b) {
                    Some(sample) => sample,
                    None => sample(fields.nested(b))?,
                }),
                _ => {}
            }
        }
        if refs.len() % 2 != 0 {
            return Err(DecodeError::Invalid("labels_refs has an odd length".into()));
        }
        let symbol = |r: u64| {
            usize::try_from(r)
                .ok()
                .and_then(|i| symbols.get(i))
                .copied()
                .ok_or_else(|| {
                    DecodeError::Invalid(format!("labels_refs names symbol {r}, past the table"))
                })
        };
        let mut labels = Builder::with_capacity(64);
        for pair in refs.chunks(2) {
            labels.push(symbol(pair[0])?.as_bytes(), symbol(pair[1])?.as_bytes());
        }
        out.push(series(labels, samples)?);
    }
    Ok(out)
}

fn sample(mut fields: Fields<'_>) -> Result<Sample, DecodeError> {
    let (mut value, mut timestamp_ms) = (0.0, 0i64);
    while let Some((n, v)) = fields.next_field()? {
        match (n, v) {
            (1, Value::Fixed64(bits)) => value = f64::from_bits(bits),
            (2, Value::Varint(t)) => timestamp_ms = t as i64,
            (1 | 2, _) => {
                return Err(fields
                    .wrong_type("a sample is a double and an int64")
                    .into())
            }
            _ => {}
        }
    }
    Ok(Sample {
        timestamp_ms,
        value,
        start_ms: None,
    })
}

/// A `Sample` as encoders write it, value then timestamp, read without the field loop (a series
/// sends one or a few a request). `None` for any other layout, which `sample` reads.
fn short_sample(bytes: &[u8]) -> Option<Sample> {
    let [0x09, rest @ ..] = bytes else {
        return None;
    };
    let (value, rest) = rest.split_first_chunk::<8>()?;
    let [0x10, timestamp @ ..] = rest else {
        return None;
    };
    let mut varint = Fields::new(timestamp);
    let timestamp_ms = varint.next_packed_varint().ok()??;
    (varint.remaining() == 0).then_some(Sample {
        timestamp_ms: timestamp_ms as i64,
        value: f64::from_le_bytes(*value),
        start_ms: None,
    })
}

/// A series from its labels (which must name the metric) and samples.
fn series(labels: Builder, samples: Vec<Sample>) -> Result<Series, DecodeError> {
    if !labels.names_metric() {
        return Err(DecodeError::Invalid(
            "a series has no __name__ label".into(),
        ));
    }
    let labels = labels
        .finish()
        .ok_or_else(|| DecodeError::Invalid("a label name or value is not UTF-8".into()))?;
    Ok(Series {
        labels,
        samples,
        delta: false,
    })
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

fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid(format!("{what} is not UTF-8")))
}

fn time_series(mut fields: Fields<'_>) -> Result<Series, DecodeError> {
    // The labels' text is shorter than their encoding, which adds at least 4 bytes a label.
    let mut labels = Builder::with_capacity(fields.remaining());
    // Exporters' series carry, per request, a sample or a few.
    let mut samples = Vec::with_capacity(1);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(bytes)) => {
                let (name, value) = match short_label(bytes) {
                    Some(label) => label,
                    None => label(fields.nested(bytes))?,
                };
                labels.push(name, value);
            }
            (2, Value::Bytes(bytes)) => samples.push(match short_sample(bytes) {
                Some(sample) => sample,
                None => sample(fields.nested(bytes))?,
            }),
            (1 | 2, _) => return Err(fields.wrong_type("labels and samples are messages").into()),
            _ => {}
        }
    }
    series(labels, samples)
}

/// A `Label`'s name and value.
fn label(mut fields: Fields<'_>) -> Result<(&[u8], &[u8]), DecodeError> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while let Some((n, v)) = fields.next_field()? {
        match (n, v) {
            (1, Value::Bytes(b)) => name = b,
            (2, Value::Bytes(b)) => value = b,
            (1 | 2, _) => return Err(fields.wrong_type("a label is two strings").into()),
            _ => {}
        }
    }
    Ok((name, value))
}

/// A `Label` as encoders write it, name then value, each shorter than 128 bytes (one-byte
/// lengths), read without the field loop: labels are most of a request's messages. `None` for
/// any other layout, which `label` reads.
fn short_label(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x0a, name_len @ 0..0x80, rest @ ..] = bytes else {
        return None;
    };
    let (name, rest) = rest.split_at_checked(usize::from(*name_len))?;
    let [0x12, value_len @ 0..0x80, value @ ..] = rest else {
        return None;
    };
    (usize::from(*value_len) == value.len()).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8]) -> Result<Vec<Series>, DecodeError> {
        decode_version(body, Version::V1)
    }
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
        assert_eq!(
            first.label("__name__"),
            Some("kepler_container_cpu_joules_total")
        );
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
        let not_utf8 = {
            let mut series = Vec::new();
            for (name, value) in [(&b"__name__"[..], &b"m"[..]), (b"job", &[0xc3, 0x28])] {
                let mut label = Vec::new();
                encode::bytes(&mut label, 1, name);
                encode::bytes(&mut label, 2, value);
                encode::bytes(&mut series, 1, &label);
            }
            let mut request = Vec::new();
            encode::bytes(&mut request, 1, &series);
            snap::raw::Encoder::new().compress_vec(&request).unwrap()
        };
        assert_eq!(
            decode(&not_utf8),
            Err(DecodeError::Invalid(
                "a label name or value is not UTF-8".into()
            ))
        );
    }

    proptest! {
        /// Whatever a label's bytes, the short reading agrees with the general one when it reads
        /// them at all, and it reads every label of one-byte lengths.
        #[test]
        fn a_short_label_reads_as_the_general_reader_does(
            name in proptest::collection::vec(any::<u8>(), 0..140),
            value in proptest::collection::vec(any::<u8>(), 0..140),
            damage in proptest::option::of((any::<usize>(), any::<u8>())),
        ) {
            let mut bytes = Vec::new();
            encode::bytes(&mut bytes, 1, &name);
            encode::bytes(&mut bytes, 2, &value);
            if let Some((at, byte)) = damage {
                let len = bytes.len();
                bytes[at % len] ^= byte;
            }
            let general = label(Fields::new(&bytes)).ok();
            match short_label(&bytes) {
                Some(short) => prop_assert_eq!(Some(short), general),
                None => prop_assert!(damage.is_some() || name.len() >= 128 || value.len() >= 128),
            }
        }

        /// Likewise for a sample: the short reading agrees with the general one, and reads every
        /// sample written value first, timestamp second.
        #[test]
        fn a_short_sample_reads_as_the_general_reader_does(
            value in any::<f64>(),
            timestamp in any::<i64>(),
            damage in proptest::option::of((any::<usize>(), any::<u8>())),
        ) {
            let mut bytes = Vec::new();
            encode::double(&mut bytes, 1, value);
            encode::int(&mut bytes, 2, timestamp);
            if let Some((at, byte)) = damage {
                let len = bytes.len();
                bytes[at % len] ^= byte;
            }
            let general = sample(Fields::new(&bytes)).ok();
            let bits = |s: Option<Sample>| s.map(|s| (s.timestamp_ms, s.value.to_bits()));
            match short_sample(&bytes) {
                Some(short) => prop_assert_eq!(bits(Some(short)), bits(general)),
                None => prop_assert!(damage.is_some()),
            }
        }

        /// Fuzz: any bytes, raw or as a snappy body, decode or fail, never panic.
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_request(&bytes);
            let _ = decode_v2(&bytes);
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
