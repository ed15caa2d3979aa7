//! Wire formats of `POST /v1/readings`: JSON array, NDJSON, CSV and Arrow IPC stream, each decoded
//! straight into a `ReadingBatchBuilder`'s columns.
mod arrow;
mod csv;
mod json;
pub mod records;

pub use json::named_field;

use crate::domain::reading::{InvalidBatch, ReadingBatch, ReadingBatchBuilder, ReadingRules};

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";
pub const CSV: &str = "text/csv";
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    ArrowStream,
}

impl Format {
    /// The format of a `Content-Type` value, parameters (`; charset=utf-8`) ignored.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            JSON => Some(Self::Json),
            NDJSON | "application/jsonlines" | "application/jsonl" => Some(Self::Ndjson),
            CSV => Some(Self::Csv),
            ARROW_STREAM => Some(Self::ArrowStream),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    /// The body cannot be decoded; `row` and `line` point at where decoding stopped.
    #[error("{reason}")]
    Malformed {
        row: Option<usize>,
        line: Option<usize>,
        field: Option<String>,
        reason: String,
    },
    #[error("more than {limit} readings in one batch")]
    TooManyRows { limit: usize },
    #[error("{} of {} readings are invalid; nothing was stored", .0.invalid_rows, .0.rows)]
    Invalid(InvalidBatch),
    /// Rows other than readings (functional units) that failed their checks.
    #[error("{invalid_rows} of {rows} rows are invalid; nothing was stored")]
    InvalidRows {
        rows: usize,
        invalid_rows: usize,
        errors: Vec<(usize, crate::domain::FieldError)>,
    },
}

impl IngestError {
    fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            row: None,
            line: None,
            field: None,
            reason: reason.into(),
        }
    }
}

/// Decodes and checks a whole body; any bad row refuses the batch.
pub fn parse(
    format: Format,
    body: &[u8],
    rules: &ReadingRules,
    max_rows: usize,
) -> Result<ReadingBatch, IngestError> {
    let mut builder = ReadingBatchBuilder::new(rules);
    match format {
        Format::Json => json::parse_array(body, &mut builder, max_rows)?,
        Format::Ndjson => json::parse_lines(body, &mut builder, max_rows)?,
        Format::Csv => csv::parse(body, &mut builder, max_rows)?,
        Format::ArrowStream => arrow::parse(body, &mut builder, max_rows)?,
    }
    builder.finish().map_err(IngestError::Invalid)
}

/// Refuses the row about to be pushed when the batch is full.
fn check_room(builder: &ReadingBatchBuilder<'_>, max_rows: usize) -> Result<(), IngestError> {
    if builder.rows() >= max_rows {
        Err(IngestError::TooManyRows { limit: max_rows })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod fuzz {
    //! Property-based fuzzing of the four decoders: any bytes give a batch or an error, never a
    //! panic, and a valid body cut or corrupted anywhere is refused cleanly.
    use super::*;
    use proptest::prelude::*;

    fn rules() -> ReadingRules {
        ReadingRules {
            now: "2026-03-02T00:00:00Z".parse().unwrap_or_default(),
            max_power_w: 1e6,
            known_sites: ["fra1".to_owned()].into(),
            known_customers: ["acme".to_owned()].into(),
            retired_sites: Default::default(),
            retired_customers: Default::default(),
        }
    }

    const JSON_BODY: &str = r#"[{"site":"fra1","customer":"acme","workload":"api","start":"2026-03-01T09:55:00Z","duration_s":600,"energy_j":540000}]"#;
    const CSV_BODY: &str = "site,customer,workload,start,duration_s,energy_j,power_w\nfra1,acme,api,2026-03-01T09:55:00Z,600,540000,\n";

    fn all_formats(body: &[u8]) {
        for format in [
            Format::Json,
            Format::Ndjson,
            Format::Csv,
            Format::ArrowStream,
        ] {
            let _ = parse(format, body, &rules(), 1000);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            all_formats(&body);
        }

        #[test]
        fn a_cut_or_corrupted_valid_body_is_refused_or_accepted_whole(cut in 0usize..140, at in 0usize..140, byte in any::<u8>()) {
            for valid in [JSON_BODY, CSV_BODY] {
                let mut body = valid.as_bytes().to_vec();
                if at < body.len() {
                    body[at] = byte;
                }
                body.truncate(cut.min(body.len()));
                all_formats(&body);
                let format = if valid == JSON_BODY { Format::Json } else { Format::Csv };
                if let Ok(batch) = parse(format, &body, &rules(), 1000) {
                    prop_assert!(batch.len() <= 1);
                }
            }
        }
    }

    fn arrow_body() -> Vec<u8> {
        use polars::prelude::*;
        let start = Column::new("start".into(), [1_772_358_900_000_000i64])
            .cast(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap_or_else(|_| Column::new("start".into(), [0i64]));
        let mut frame = DataFrame::new(
            1,
            vec![
                Column::new("site".into(), ["fra1"]),
                Column::new("customer".into(), ["acme"]),
                Column::new("workload".into(), ["api"]),
                start,
                Column::new("duration_s".into(), [600i32]),
                Column::new("energy_j".into(), [540000.0f64]),
            ],
        )
        .unwrap_or_default();
        let mut out = Vec::new();
        let _ = IpcStreamWriter::new(&mut out).finish(&mut frame);
        out
    }

    #[test]
    fn a_stream_that_makes_the_decoder_panic_is_refused() {
        // Found by the fuzz test below: byte 60 of this stream set to 20 makes polars 0.55.2 panic
        // ("cannot create series from Float16"); the answer must be an error, not a crash.
        let mut body = arrow_body();
        body[60] = 20;
        let refused = parse(Format::ArrowStream, &body, &rules(), 10);
        assert!(
            matches!(&refused, Err(IngestError::Malformed { reason, .. }) if reason == "not a readable Arrow IPC stream"),
            "{refused:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn a_corrupted_arrow_stream_is_refused_not_a_crash(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut body = arrow_body();
            let len = body.len();
            body[at % len] = byte;
            body.truncate(cut.max(1).min(len));
            let _ = parse(Format::ArrowStream, &body, &rules(), 1000);
        }
    }

    #[test]
    fn the_unmodified_bodies_parse() {
        assert_eq!(
            parse(Format::ArrowStream, &arrow_body(), &rules(), 10).map(|b| b.len()),
            Ok(1)
        );
        assert_eq!(
            parse(Format::Json, JSON_BODY.as_bytes(), &rules(), 10).map(|b| b.len()),
            Ok(1)
        );
        assert_eq!(
            parse(Format::Csv, CSV_BODY.as_bytes(), &rules(), 10).map(|b| b.len()),
            Ok(1)
        );
    }
}
