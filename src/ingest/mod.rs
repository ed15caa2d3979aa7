//! Wire formats of `POST /v1/readings`: JSON array, NDJSON, CSV and Arrow IPC stream, each decoded
//! straight into a `ReadingBatchBuilder`'s columns.
mod arrow;
mod csv;
mod json;

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
