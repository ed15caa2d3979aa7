//! Wire formats of `POST /v1/functional-units`: a JSON array, NDJSON or CSV of counts, each row
//! checked on its own so that one answer names every bad field. A batch is all or nothing.
use super::{Format, IngestError};
use crate::domain::functional_unit::{Cell, FunctionalUnit, UnitRules, FIELDS};
use crate::domain::FieldError;
use serde_json::{Map, Value};

/// The rows of a body, or why none can be stored.
pub fn parse(
    format: Format,
    body: &[u8],
    rules: &UnitRules,
    max_rows: usize,
) -> Result<Vec<FunctionalUnit>, IngestError> {
    let mut batch = Batch::new(rules, max_rows);
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
                let cell = |name: &str| {
                    let at = header.iter().position(|h| h == name)?;
                    record.get(at).filter(|v| !v.is_empty()).map(Cell::Text)
                };
                let unknown = header.iter().filter(|h| !FIELDS.contains(&h.as_str()));
                batch.push(cell, unknown.map(String::as_str))?;
            }
        }
        Format::ArrowStream => {
            return Err(IngestError::malformed(
                "functional units are taken as JSON, NDJSON or CSV",
            ))
        }
    }
    batch.finish()
}

struct Batch<'r> {
    rules: &'r UnitRules,
    max_rows: usize,
    rows: usize,
    units: Vec<FunctionalUnit>,
    errors: Vec<(usize, FieldError)>,
    invalid_rows: usize,
}

/// Errors listed in one answer; the count of bad rows is always exact.
const MAX_REPORTED_ERRORS: usize = 100;

impl<'r> Batch<'r> {
    fn new(rules: &'r UnitRules, max_rows: usize) -> Self {
        Self {
            rules,
            max_rows,
            rows: 0,
            units: Vec::new(),
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
                reason: "each count must be a JSON object".into(),
            });
        };
        let cell = |name: &str| json_cell(object, name);
        let unknown = object.keys().filter(|k| !FIELDS.contains(&k.as_str()));
        self.push(cell, unknown.map(String::as_str))
    }

    fn push<'a, 'u>(
        &mut self,
        cell: impl Fn(&str) -> Option<Cell<'a>>,
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
            .map(|name| FieldError::new(name, "is not a field of a functional unit"))
            .collect();
        match FunctionalUnit::check(cell, self.rules) {
            Ok(unit) if errors.is_empty() => self.units.push(unit),
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

    fn finish(self) -> Result<Vec<FunctionalUnit>, IngestError> {
        if self.invalid_rows == 0 {
            return Ok(self.units);
        }
        Err(IngestError::InvalidRows {
            rows: self.rows,
            invalid_rows: self.invalid_rows,
            errors: self.errors,
        })
    }
}

fn json_cell<'a>(object: &'a Map<String, Value>, name: &str) -> Option<Cell<'a>> {
    match object.get(name)? {
        Value::Null => None,
        Value::String(text) => Some(Cell::Text(text)),
        Value::Number(number) => Some(number.as_f64().map_or(Cell::Other, Cell::Number)),
        _ => Some(Cell::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
