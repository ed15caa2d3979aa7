//! Wire formats of records other than readings (functional units, meter readings, usage): a
//! JSON array, NDJSON or CSV of flat objects, or an Arrow IPC stream of flat columns, each row
//! checked on its own by the record's `check` so that one answer names every bad field. A batch
//! is all or nothing.
use super::{Format, IngestError};
use crate::domain::row::{Cell, Fields};
use crate::domain::FieldError;
use serde_json::{Map, Value};

/// Checks one row into a record, or names every bad field.
pub type Check<'c, T> = &'c dyn Fn(&dyn Fields) -> Result<T, Vec<FieldError>>;

/// A record's fields (any other is refused) and how one row of them is checked.
pub struct Schema<'c, T> {
    pub fields: &'c [&'c str],
    pub check: Check<'c, T>,
}

/// The rows of a body, or why none can be stored.
pub fn parse<T>(
    format: Format,
    body: &[u8],
    schema: Schema<'_, T>,
    max_rows: usize,
) -> Result<Vec<T>, IngestError> {
    let mut batch = Batch::new(schema, max_rows);
    match format {
        Format::Json => {
            let rows: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| IngestError::malformed(format!("not a JSON array of objects: {e}")))?;
            for row in &rows {
                batch.push_json(row)?;
            }
        }
        Format::Ndjson => {
            let text = std::str::from_utf8(body)
                .map_err(|_| IngestError::malformed("the body is not UTF-8"))?;
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: Value =
                    serde_json::from_str(line).map_err(|e| IngestError::Malformed {
                        row: Some(batch.rows),
                        line: Some(index + 1),
                        field: None,
                        reason: format!("not a JSON object: {e}"),
                    })?;
                batch.push_json(&row)?;
            }
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(body);
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| IngestError::malformed(format!("CSV header: {e}")))?
                .iter()
                .map(str::to_owned)
                .collect();
            for record in reader.records() {
                let record = record.map_err(|e| IngestError::Malformed {
                    row: Some(batch.rows),
                    line: e.position().map(|p| p.line() as usize),
                    field: None,
                    reason: format!("CSV: {e}"),
                })?;
                let row = CsvRow {
                    header: &header,
                    record: &record,
                };
                let fields = batch.schema.fields;
                let unknown = header.iter().filter(|h| !fields.contains(&h.as_str()));
                batch.push(&row, unknown.map(String::as_str))?;
            }
        }
        Format::ArrowStream => {
            let frame = super::arrow::decode(body, max_rows)?;
            let columns: Vec<(&str, Vec<Option<Owned>>)> = frame
                .columns()
                .iter()
                .map(|column| (column.name().as_str(), owned_cells(column)))
                .collect();
            let fields = batch.schema.fields;
            let unknown: Vec<&str> = columns
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| !fields.contains(name))
                .collect();
            for row in 0..frame.height() {
                let cells = ArrowRow {
                    columns: &columns,
                    row,
                };
                batch.push(&cells, unknown.iter().copied())?;
            }
        }
    }
    batch.finish()
}

/// One Arrow value as a row checker reads it: text, a number, or anything else.
enum Owned {
    Text(String),
    Number(f64),
    Other,
}

/// A column's values: strings as text, numbers as numbers, timestamps (any unit, naive or
/// zoned: instants either way) as RFC 3339 text, nulls absent, other types refused by name.
fn owned_cells(column: &polars::prelude::Column) -> Vec<Option<Owned>> {
    use polars::prelude::*;
    let height = column.len();
    match column.dtype() {
        DataType::String => match column.str() {
            Ok(values) => values
                .iter()
                .map(|v| v.map(|v| Owned::Text(v.to_owned())))
                .collect(),
            Err(_) => (0..height).map(|_| Some(Owned::Other)).collect(),
        },
        DataType::Datetime(..) => match super::arrow::micros(column.name(), column) {
            Ok(values) => values
                .iter()
                .map(|us| {
                    let at = chrono::DateTime::from_timestamp_micros(us?);
                    Some(at.map_or(Owned::Other, |t| {
                        Owned::Text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    }))
                })
                .collect(),
            Err(_) => (0..height).map(|_| Some(Owned::Other)).collect(),
        },
        dtype if dtype.is_primitive_numeric() => {
            match column
                .cast(&DataType::Float64)
                .ok()
                .and_then(|c| c.f64().ok().cloned())
            {
                Some(values) => values.iter().map(|v| v.map(Owned::Number)).collect(),
                None => (0..height).map(|_| Some(Owned::Other)).collect(),
            }
        }
        DataType::Null => (0..height).map(|_| None).collect(),
        _ => (0..height).map(|_| Some(Owned::Other)).collect(),
    }
}

/// One row of an Arrow stream's columns.
struct ArrowRow<'c> {
    columns: &'c [(&'c str, Vec<Option<Owned>>)],
    row: usize,
}

impl Fields for ArrowRow<'_> {
    fn cell(&self, name: &str) -> Option<Cell<'_>> {
        let (_, values) = self.columns.iter().find(|(n, _)| *n == name)?;
        Some(match values.get(self.row)?.as_ref()? {
            Owned::Text(text) => Cell::Text(text),
            Owned::Number(value) => Cell::Number(*value),
            Owned::Other => Cell::Other,
        })
    }
}

struct Batch<'c, T> {
    schema: Schema<'c, T>,
    max_rows: usize,
    rows: usize,
    records: Vec<T>,
    errors: Vec<(usize, FieldError)>,
    invalid_rows: usize,
}

/// Errors listed in one answer; the count of bad rows is always exact.
const MAX_REPORTED_ERRORS: usize = 100;

impl<'c, T> Batch<'c, T> {
    fn new(schema: Schema<'c, T>, max_rows: usize) -> Self {
        Self {
            schema,
            max_rows,
            rows: 0,
            records: Vec::new(),
            errors: Vec::new(),
            invalid_rows: 0,
        }
    }

    fn push_json(&mut self, row: &Value) -> Result<(), IngestError> {
        let Some(object) = row.as_object() else {
            return Err(IngestError::Malformed {
                row: Some(self.rows),
                line: None,
                field: None,
                reason: "each row must be a JSON object".into(),
            });
        };
        let fields = self.schema.fields;
        let unknown = object.keys().filter(|k| !fields.contains(&k.as_str()));
        self.push(&JsonRow(object), unknown.map(String::as_str))
    }

    fn push<'u>(
        &mut self,
        row_fields: &dyn Fields,
        unknown: impl Iterator<Item = &'u str>,
    ) -> Result<(), IngestError> {
        if self.rows >= self.max_rows {
            return Err(IngestError::TooManyRows {
                limit: self.max_rows,
            });
        }
        let row = self.rows;
        self.rows += 1;
        let mut errors: Vec<FieldError> = unknown
            .map(|name| FieldError::new(name, "is not a field of this record"))
            .collect();
        match (self.schema.check)(row_fields) {
            Ok(record) if errors.is_empty() => self.records.push(record),
            Ok(_) => {}
            Err(found) => errors.extend(found),
        }
        if !errors.is_empty() {
            self.invalid_rows += 1;
            let room = MAX_REPORTED_ERRORS.saturating_sub(self.errors.len());
            self.errors
                .extend(errors.into_iter().take(room).map(|e| (row, e)));
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<T>, IngestError> {
        if self.invalid_rows == 0 {
            return Ok(self.records);
        }
        Err(IngestError::InvalidRows {
            rows: self.rows,
            invalid_rows: self.invalid_rows,
            errors: self.errors,
        })
    }
}

/// A JSON object's members as cells (null reads as absent).
struct JsonRow<'v>(&'v Map<String, Value>);

impl Fields for JsonRow<'_> {
    fn cell(&self, name: &str) -> Option<Cell<'_>> {
        match self.0.get(name)? {
            Value::Null => None,
            Value::String(text) => Some(Cell::Text(text)),
            Value::Number(number) => Some(number.as_f64().map_or(Cell::Other, Cell::Number)),
            _ => Some(Cell::Other),
        }
    }
}

/// A CSV record's columns by header name (empty reads as absent).
struct CsvRow<'r> {
    header: &'r [String],
    record: &'r csv::StringRecord,
}

impl Fields for CsvRow<'_> {
    fn cell(&self, name: &str) -> Option<Cell<'_>> {
        let at = self.header.iter().position(|h| h == name)?;
        self.record
            .get(at)
            .filter(|v| !v.is_empty())
            .map(Cell::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::functional_unit::{FunctionalUnit, UnitRules, FIELDS};
    use proptest::prelude::*;

    fn parse(
        format: Format,
        body: &[u8],
        rules: &UnitRules,
        max_rows: usize,
    ) -> Result<Vec<FunctionalUnit>, IngestError> {
        let check = |fields: &dyn Fields| FunctionalUnit::check(fields, rules);
        let schema = Schema {
            fields: &FIELDS,
            check: &check,
        };
        super::parse(format, body, schema, max_rows)
    }

    fn rules() -> UnitRules {
        UnitRules {
            now: "2026-03-02T00:00:00Z".parse().unwrap_or_default(),
            known_sites: ["fra1".to_owned()].into(),
            known_customers: ["acme".to_owned()].into(),
        }
    }

    const JSON_BODY: &str = r#"[{"site":"fra1","customer":"acme","workload":"api","start":"2026-03-01T09:00:00Z","duration_s":3600,"unit":"requests","count":1200}]"#;
    const CSV_BODY: &str = "site,customer,workload,start,duration_s,unit,count\nfra1,acme,api,2026-03-01T09:00:00Z,3600,requests,1200\n";

    #[test]
    fn the_three_formats_give_the_same_count() {
        let ndjson = JSON_BODY.trim_start_matches('[').trim_end_matches(']');
        for (format, body) in [
            (Format::Json, JSON_BODY),
            (Format::Ndjson, ndjson),
            (Format::Csv, CSV_BODY),
        ] {
            let units = parse(format, body.as_bytes(), &rules(), 10).unwrap();
            assert_eq!(units.len(), 1, "{format:?}");
            assert_eq!(units[0].count, 1200.0);
            assert_eq!(units[0].unit, "requests");
        }
    }

    /// The JSON body's row as an Arrow stream: typed columns, `start` a millisecond timestamp.
    fn arrow_body(count: f64) -> Vec<u8> {
        use polars::prelude::*;
        let start = Column::new("start".into(), [1_772_355_600_000i64])
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
            .unwrap();
        let mut frame = DataFrame::new(
            1,
            vec![
                Column::new("site".into(), ["fra1"]),
                Column::new("customer".into(), ["acme"]),
                Column::new("workload".into(), ["api"]),
                start,
                Column::new("duration_s".into(), [3600i32]),
                Column::new("unit".into(), ["requests"]),
                Column::new("count".into(), [count]),
            ],
        )
        .unwrap();
        let mut body = Vec::new();
        IpcStreamWriter::new(&mut body).finish(&mut frame).unwrap();
        body
    }

    #[test]
    fn an_arrow_stream_gives_the_same_record_and_names_a_bad_value() {
        let units = parse(Format::ArrowStream, &arrow_body(1200.0), &rules(), 10).unwrap();
        assert_eq!(units[0].count, 1200.0);
        assert_eq!(
            units[0].start,
            "2026-03-01T09:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        match parse(Format::ArrowStream, &arrow_body(-1.0), &rules(), 10) {
            Err(IngestError::InvalidRows { errors, .. }) => assert_eq!(errors[0].1.field, "count"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_row_refuses_the_batch_and_names_row_and_field() {
        let body = r#"[{"site":"fra1","customer":"acme","workload":"api","start":"2026-03-01T09:00:00Z","duration_s":3600,"unit":"requests","count":1},
                       {"site":"fra1","customer":"acme","workload":"api","start":"2026-03-01T10:00:00Z","duration_s":3600,"unit":"requests","count":"many","colour":"red"}]"#;
        match parse(Format::Json, body.as_bytes(), &rules(), 10) {
            Err(IngestError::InvalidRows {
                rows,
                invalid_rows,
                errors,
            }) => {
                assert_eq!((rows, invalid_rows), (2, 1));
                let named: Vec<_> = errors.iter().map(|(r, e)| (*r, e.field.as_str())).collect();
                assert_eq!(named, [(1, "colour"), (1, "count")]);
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any bytes give counts or a refusal, never a panic, in every format.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
            for format in [Format::Json, Format::Ndjson, Format::Csv, Format::ArrowStream] {
                let _ = parse(format, &body, &rules(), 100);
            }
        }

        /// A valid body with one byte changed is accepted whole or refused whole.
        #[test]
        fn a_corrupted_valid_body_is_refused_or_accepted_whole(at in 0usize..160, byte in any::<u8>()) {
            for (format, valid) in [(Format::Json, JSON_BODY), (Format::Csv, CSV_BODY)] {
                let mut body = valid.as_bytes().to_vec();
                if at < body.len() {
                    body[at] = byte;
                }
                if let Ok(units) = parse(format, &body, &rules(), 100) {
                    prop_assert!(units.len() <= 1);
                }
            }
        }
    }
}
