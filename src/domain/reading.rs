//! Readings, the canonical telemetry record, built column by column: every wire format pushes raw
//! rows into a `ReadingBatchBuilder`, which checks each against the rules of DESIGN §2 and keeps the
//! valid values in columnar buffers (no vector of row structs).
use super::Id;
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, HashSet};

/// Longest reading interval accepted, in seconds.
pub const MAX_DURATION_S: f64 = 3600.0;
/// How far in the future a reading may start (clock skew of agents).
pub const MAX_FUTURE_START: Duration = Duration::minutes(5);
/// No telemetry predates this (1990-01-01T00:00:00Z); earlier starts are corrupt clocks.
pub const EARLIEST_START_US: i64 = 631_152_000_000_000;
/// At most this many row errors are reported; the count of bad rows is always exact.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// A reading's start as it arrived: text (JSON, NDJSON, CSV) or a UTC timestamp (Arrow).
#[derive(Debug, Clone, Copy)]
pub enum RawStart<'a> {
    Text(&'a str),
    Micros(i64),
}

/// One row as a wire format decoded it, before any check.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawReading<'a> {
    pub site: Option<&'a str>,
    pub customer: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub start: Option<RawStart<'a>>,
    pub duration_s: Option<f64>,
    pub energy_j: Option<f64>,
    pub power_w: Option<f64>,
}

/// What a batch is checked against, fixed for the whole batch.
#[derive(Debug, Clone)]
pub struct ReadingRules {
    pub now: DateTime<Utc>,
    pub max_power_w: f64,
    pub known_sites: HashSet<String>,
    pub known_customers: HashSet<String>,
    /// Retired sites and customers, with the instant (UTC microseconds) from which they take no
    /// readings; late readings of the time before still arrive.
    pub retired_sites: HashMap<String, i64>,
    pub retired_customers: HashMap<String, i64>,
}

/// Why a row was refused; `Unknown*` carry their own error codes in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowErrorKind {
    Invalid,
    UnknownSite,
    UnknownCustomer,
    Retired,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub row: usize,
    pub field: &'static str,
    pub reason: String,
    pub kind: RowErrorKind,
}

/// A column of ids, each distinct value stored once: agents send runs of rows with the same site,
/// customer and workload, so a row costs an index rather than an allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdColumn {
    values: Vec<String>,
    index: polars::prelude::PlHashMap<String, u32>,
    codes: Vec<u32>,
}

impl IdColumn {
    /// The code of `value` if it is in the column already (then it passed its checks).
    pub fn code(&self, value: &str) -> Option<u32> {
        match self.codes.last() {
            Some(&last) if self.values[last as usize] == value => Some(last),
            _ => self.index.get(value).copied(),
        }
    }

    /// Appends `value`, whose `code` was looked up already when it had one.
    pub fn push_coded(&mut self, code: Option<u32>, value: &str) {
        match code {
            Some(code) => self.codes.push(code),
            None => self.push(value),
        }
    }

    pub fn push(&mut self, value: &str) {
        let code = match self.codes.last() {
            Some(&last) if self.values[last as usize] == value => last,
            _ => match self.index.get(value) {
                Some(&code) => code,
                None => {
                    let code = self.values.len() as u32;
                    self.values.push(value.to_owned());
                    self.index.insert(value.to_owned(), code);
                    code
                }
            },
        };
        self.codes.push(code);
    }

    /// The values row by row.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.codes
            .iter()
            .map(|&code| self.values[code as usize].as_str())
    }

    /// The distinct values as ids (values that are not ids were refused before they got here).
    pub fn ids(&self) -> Vec<Id> {
        self.values
            .iter()
            .filter_map(|value| Id::parse(value).ok())
            .collect()
    }

    /// The distinct values.
    pub fn distinct(&self) -> &[String] {
        &self.values
    }

    /// Row by row, the index of the row's value in `distinct`.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }
}

/// A valid batch in columns. Times are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadingBatch {
    pub site: IdColumn,
    pub customer: IdColumn,
    pub workload: IdColumn,
    pub start_us: Vec<i64>,
    pub duration_s: Vec<i32>,
    pub energy_j: Vec<Option<f64>>,
    pub power_w: Vec<Option<f64>>,
}

impl ReadingBatch {
    pub fn len(&self) -> usize {
        self.start_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start_us.is_empty()
    }
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidBatch {
    pub rows: usize,
    pub invalid_rows: usize,
    /// The first `MAX_REPORTED_ERRORS` errors, in row order.
    pub errors: Vec<RowError>,
}

#[derive(Debug)]
pub struct ReadingBatchBuilder<'r> {
    rules: &'r ReadingRules,
    batch: ReadingBatch,
    rows: usize,
    invalid_rows: usize,
    errors: Vec<RowError>,
}

fn parse_start(raw: RawStart<'_>) -> Result<i64, String> {
    match raw {
        RawStart::Micros(us) => Ok(us),
        RawStart::Text(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
            .map_err(|_| "not an RFC 3339 time".to_owned()),
    }
}

impl<'r> ReadingBatchBuilder<'r> {
    pub fn new(rules: &'r ReadingRules) -> Self {
        Self {
            rules,
            batch: ReadingBatch::default(),
            rows: 0,
            invalid_rows: 0,
            errors: Vec::new(),
        }
    }

    /// Rows pushed so far, valid or not: the index the next row gets.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn refuse(&mut self, errors: &mut Vec<RowError>) {
        self.invalid_rows += 1;
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(errors.drain(..).take(room));
    }

    pub fn push(&mut self, raw: RawReading<'_>) {
        let row = self.rows;
        self.rows += 1;
        let mut errors = Vec::new();
        let mut fail = |field: &'static str, reason: String, kind: RowErrorKind| {
            errors.push(RowError {
                row,
                field,
                reason,
                kind,
            })
        };
        // An id already in its column passed these checks: each distinct value is checked once.
        let columns = [&self.batch.site, &self.batch.customer, &self.batch.workload];
        // The code of an id its column has: looked up once, used again when the row is kept.
        let mut id = |slot: usize, field: &'static str, value: Option<&str>| match value {
            None => {
                fail(field, "missing".to_owned(), RowErrorKind::Invalid);
                None
            }
            Some(value) => {
                let code = columns[slot].code(value);
                // Only a value new to its column is checked: each distinct id once a batch.
                if code.is_none() {
                    if let Err(reason) = Id::parse(value) {
                        fail(field, reason, RowErrorKind::Invalid);
                    } else if field == "site" && !self.rules.known_sites.contains(value) {
                        fail(
                            field,
                            format!("unknown site {value}"),
                            RowErrorKind::UnknownSite,
                        );
                    } else if field == "customer" && !self.rules.known_customers.contains(value) {
                        fail(
                            field,
                            format!("unknown customer {value}"),
                            RowErrorKind::UnknownCustomer,
                        );
                    }
                }
                code
            }
        };
        let codes = [
            id(0, "site", raw.site),
            id(1, "customer", raw.customer),
            id(2, "workload", raw.workload),
        ];
        let start = match raw.start.map(parse_start) {
            None => {
                fail("start", "missing".to_owned(), RowErrorKind::Invalid);
                None
            }
            Some(Err(reason)) => {
                fail("start", reason, RowErrorKind::Invalid);
                None
            }
            Some(Ok(us)) => {
                let latest = (self.rules.now + MAX_FUTURE_START).timestamp_micros();
                if us < EARLIEST_START_US {
                    fail(
                        "start",
                        "before 1990-01-01T00:00:00Z".to_owned(),
                        RowErrorKind::Invalid,
                    );
                } else if us > latest {
                    fail(
                        "start",
                        "more than 5 minutes in the future".to_owned(),
                        RowErrorKind::Invalid,
                    );
                }
                Some(us)
            }
        };
        if let Some(us) = start {
            let retired = [
                ("site", raw.site, &self.rules.retired_sites),
                ("customer", raw.customer, &self.rules.retired_customers),
            ];
            for (field, value, retired) in retired {
                if let Some((value, &since)) = value.and_then(|v| Some(v).zip(retired.get(v))) {
                    if us >= since {
                        let at = DateTime::from_timestamp_micros(since).unwrap_or_default();
                        fail(
                            field,
                            format!(
                                "{field} {value} was retired at {}; it takes no readings from then on",
                                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                            RowErrorKind::Retired,
                        );
                    }
                }
            }
        }
        let duration = raw
            .duration_s
            .filter(|d| d.is_finite() && d.fract() == 0.0 && (1.0..=MAX_DURATION_S).contains(d));
        if duration.is_none() {
            let reason = if raw.duration_s.is_none() {
                "missing"
            } else {
                "must be a whole number of seconds from 1 to 3600"
            };
            fail("duration_s", reason.to_owned(), RowErrorKind::Invalid);
        }
        let max_power = self.rules.max_power_w;
        match (raw.energy_j, raw.power_w) {
            (Some(_), Some(_)) => fail(
                "energy_j",
                "give exactly one of energy_j and power_w, not both".to_owned(),
                RowErrorKind::Invalid,
            ),
            (None, None) => fail(
                "energy_j",
                "give exactly one of energy_j and power_w".to_owned(),
                RowErrorKind::Invalid,
            ),
            (Some(energy), None) => {
                if !energy.is_finite() || energy < 0.0 {
                    fail(
                        "energy_j",
                        "must be a finite, non-negative number".to_owned(),
                        RowErrorKind::Invalid,
                    );
                } else if let Some(d) = duration.filter(|d| energy / d > max_power) {
                    fail(
                        "energy_j",
                        format!(
                            "implies {:.0} W, above the ceiling of {max_power} W",
                            energy / d
                        ),
                        RowErrorKind::Invalid,
                    );
                }
            }
            (None, Some(power)) => {
                if !power.is_finite() || power < 0.0 {
                    fail(
                        "power_w",
                        "must be a finite, non-negative number".to_owned(),
                        RowErrorKind::Invalid,
                    );
                } else if power > max_power {
                    fail(
                        "power_w",
                        format!("above the ceiling of {max_power} W"),
                        RowErrorKind::Invalid,
                    );
                }
            }
        }
        match (errors.is_empty(), start, duration) {
            (true, Some(start), Some(duration)) => {
                let batch = &mut self.batch;
                batch
                    .site
                    .push_coded(codes[0], raw.site.unwrap_or_default());
                (batch.customer).push_coded(codes[1], raw.customer.unwrap_or_default());
                (batch.workload).push_coded(codes[2], raw.workload.unwrap_or_default());
                self.batch.start_us.push(start);
                self.batch.duration_s.push(duration as i32);
                self.batch.energy_j.push(raw.energy_j);
                self.batch.power_w.push(raw.power_w);
            }
            _ => self.refuse(&mut errors),
        }
    }

    pub fn finish(self) -> Result<ReadingBatch, InvalidBatch> {
        if self.invalid_rows == 0 {
            Ok(self.batch)
        } else {
            Err(InvalidBatch {
                rows: self.rows,
                invalid_rows: self.invalid_rows,
                errors: self.errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ReadingRules {
        ReadingRules {
            now: "2026-03-01T12:00:00Z".parse().unwrap(),
            max_power_w: 1_000_000.0,
            known_sites: ["fra1".to_owned()].into(),
            known_customers: ["acme".to_owned()].into(),
            retired_sites: Default::default(),
            retired_customers: Default::default(),
        }
    }

    fn good<'a>() -> RawReading<'a> {
        RawReading {
            site: Some("fra1"),
            customer: Some("acme"),
            workload: Some("api"),
            start: Some(RawStart::Text("2026-03-01T09:55:00Z")),
            duration_s: Some(600.0),
            energy_j: Some(540_000.0),
            power_w: None,
        }
    }

    fn reasons(raw: RawReading<'_>) -> Vec<(&'static str, String)> {
        let rules = rules();
        let mut builder = ReadingBatchBuilder::new(&rules);
        builder.push(raw);
        match builder.finish() {
            Ok(_) => vec![],
            Err(invalid) => invalid
                .errors
                .into_iter()
                .map(|e| (e.field, e.reason))
                .collect(),
        }
    }

    #[test]
    fn a_good_reading_lands_in_the_columns() {
        let rules = rules();
        let mut builder = ReadingBatchBuilder::new(&rules);
        builder.push(good());
        let batch = builder.finish().unwrap();
        assert_eq!(batch.start_us, vec![1_772_358_900_000_000]);
        assert_eq!(batch.duration_s, vec![600]);
        assert_eq!(batch.energy_j, vec![Some(540_000.0)]);
    }

    #[test]
    fn a_retired_site_or_customer_takes_readings_only_from_before_its_retirement() {
        let mut rules = rules();
        // fra1 retired at 09:55: a late reading starting at 09:50 arrives, one at 09:55 does not.
        rules
            .retired_sites
            .insert("fra1".into(), 1_772_358_900_000_000);
        rules
            .retired_customers
            .insert("acme".into(), 1_772_358_900_000_000);
        let mut builder = ReadingBatchBuilder::new(&rules);
        builder.push(RawReading {
            start: Some(RawStart::Text("2026-03-01T09:50:00Z")),
            ..good()
        });
        builder.push(good());
        let invalid = builder.finish().unwrap_err();
        assert_eq!(invalid.invalid_rows, 1);
        let refused: Vec<_> = invalid
            .errors
            .iter()
            .map(|e| (e.row, e.field, e.kind))
            .collect();
        assert_eq!(
            refused,
            [
                (1, "site", RowErrorKind::Retired),
                (1, "customer", RowErrorKind::Retired)
            ]
        );
        assert!(invalid.errors[0]
            .reason
            .contains("site fra1 was retired at 2026-03-01T09:55:00Z"));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(RawReading, &str, &str)> = vec![
            (
                RawReading {
                    site: Some("nope"),
                    ..good()
                },
                "site",
                "unknown site nope",
            ),
            (
                RawReading {
                    customer: Some("x y"),
                    ..good()
                },
                "customer",
                "must be 1 to 128",
            ),
            (
                RawReading {
                    workload: None,
                    ..good()
                },
                "workload",
                "missing",
            ),
            (
                RawReading {
                    start: Some(RawStart::Text("yesterday")),
                    ..good()
                },
                "start",
                "not an RFC 3339 time",
            ),
            (
                RawReading {
                    start: Some(RawStart::Text("2026-03-01T12:06:00Z")),
                    ..good()
                },
                "start",
                "more than 5 minutes",
            ),
            (
                RawReading {
                    duration_s: Some(0.0),
                    ..good()
                },
                "duration_s",
                "1 to 3600",
            ),
            (
                RawReading {
                    duration_s: Some(3601.0),
                    ..good()
                },
                "duration_s",
                "1 to 3600",
            ),
            (
                RawReading {
                    duration_s: Some(1.5),
                    ..good()
                },
                "duration_s",
                "whole number",
            ),
            (
                RawReading {
                    power_w: Some(10.0),
                    ..good()
                },
                "energy_j",
                "not both",
            ),
            (
                RawReading {
                    energy_j: None,
                    ..good()
                },
                "energy_j",
                "exactly one",
            ),
            (
                RawReading {
                    energy_j: Some(-1.0),
                    ..good()
                },
                "energy_j",
                "non-negative",
            ),
            (
                RawReading {
                    energy_j: Some(f64::NAN),
                    ..good()
                },
                "energy_j",
                "finite",
            ),
            (
                RawReading {
                    energy_j: None,
                    power_w: Some(2e6),
                    ..good()
                },
                "power_w",
                "ceiling",
            ),
            (
                RawReading {
                    energy_j: Some(600.0 * 2e6),
                    ..good()
                },
                "energy_j",
                "ceiling",
            ),
        ];
        for (raw, field, reason) in cases {
            let found = reasons(raw);
            assert_eq!(found.len(), 1, "{field}: {found:?}");
            assert_eq!(found[0].0, field);
            assert!(found[0].1.contains(reason), "{field}: {}", found[0].1);
        }
    }

    #[test]
    fn a_repeated_id_is_checked_once_but_an_empty_one_never_passes() {
        let rules = rules();
        let mut builder = ReadingBatchBuilder::new(&rules);
        builder.push(good());
        builder.push(good());
        builder.push(RawReading {
            workload: Some(""),
            ..good()
        });
        builder.push(RawReading {
            site: Some("nope"),
            ..good()
        });
        let invalid = builder.finish().unwrap_err();
        let rows: Vec<(usize, &str)> = invalid.errors.iter().map(|e| (e.row, e.field)).collect();
        assert_eq!(rows, [(2, "workload"), (3, "site")]);
    }

    #[test]
    fn a_start_exactly_five_minutes_ahead_is_accepted() {
        let raw = RawReading {
            start: Some(RawStart::Text("2026-03-01T12:05:00Z")),
            ..good()
        };
        assert!(reasons(raw).is_empty());
    }

    #[test]
    fn errors_are_capped_but_bad_rows_are_counted() {
        let rules = rules();
        let mut builder = ReadingBatchBuilder::new(&rules);
        for _ in 0..150 {
            builder.push(RawReading {
                duration_s: None,
                ..good()
            });
        }
        builder.push(good());
        let invalid = builder.finish().unwrap_err();
        assert_eq!((invalid.rows, invalid.invalid_rows), (151, 150));
        assert_eq!(invalid.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(invalid.errors[99].row, 99);
    }
}
