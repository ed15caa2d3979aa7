//! One row of a batch (functional units, meter readings) checked field by field, whatever body
//! format carried it: every bad field is named, in the order the record's checks ask for them.
use super::{FieldError, Id};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;

/// How far ahead an interval may start: agents' clocks drift.
const MAX_AHEAD: Duration = Duration::minutes(5);

/// One field of a row as a body format carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    /// Anything else a format can carry (JSON true, an object): refused with the field named.
    Other,
}

/// A row's fields by name, as a body format holds them.
pub trait Fields {
    fn cell(&self, name: &str) -> Option<Cell<'_>>;
}

impl Fields for std::collections::HashMap<&str, Cell<'_>> {
    fn cell(&self, name: &str) -> Option<Cell<'_>> {
        self.get(name).copied()
    }
}

/// A row being checked, and the reasons found so far.
pub struct Row<'f> {
    fields: &'f dyn Fields,
    errors: Vec<FieldError>,
}

impl<'f> Row<'f> {
    pub fn new(fields: &'f dyn Fields) -> Self {
        Self {
            fields,
            errors: Vec::new(),
        }
    }

    fn fail<T>(&mut self, name: &str, reason: impl Into<String>) -> Option<T> {
        self.errors.push(FieldError::new(name, reason));
        None
    }

    /// Whether the row has the field at all (optional fields).
    pub fn has(&self, name: &str) -> bool {
        self.fields.cell(name).is_some()
    }

    pub fn text(&mut self, name: &str) -> Option<&'f str> {
        match self.fields.cell(name) {
            Some(Cell::Text(value)) => Some(value),
            Some(_) => self.fail(name, "must be a string"),
            None => self.fail(name, "is required"),
        }
    }

    /// A number, or absent (`Some(None)`); `None` when it is there but not a number.
    pub fn optional_number(&mut self, name: &str) -> Option<Option<f64>> {
        match self.fields.cell(name) {
            None => Some(None),
            Some(Cell::Number(value)) => Some(Some(value)),
            Some(Cell::Text(raw)) => match raw.trim().parse::<f64>() {
                Ok(value) => Some(Some(value)),
                Err(_) => self.fail(name, "must be a number"),
            },
            Some(Cell::Other) => self.fail(name, "must be a number"),
        }
    }

    pub fn number(&mut self, name: &str) -> Option<f64> {
        match self.optional_number(name)? {
            Some(value) => Some(value),
            None => self.fail(name, "is required"),
        }
    }

    /// A finite number of at least 0.
    pub fn amount(&mut self, name: &str) -> Option<f64> {
        let value = self.number(name)?;
        if value.is_finite() && value >= 0.0 {
            Some(value)
        } else {
            self.fail(name, "must be a finite number, 0 or more")
        }
    }

    /// An id, which must be one of `known` when given.
    pub fn id(&mut self, name: &str, known: Option<&HashSet<String>>) -> Option<Id> {
        let raw = self.text(name)?;
        let id = match Id::parse(raw) {
            Ok(id) => id,
            Err(reason) => return self.fail(name, reason),
        };
        if known.is_some_and(|known| !known.contains(id.as_str())) {
            return self.fail(name, format!("{name} {id} does not exist"));
        }
        Some(id)
    }

    /// An interval's start: RFC 3339, in the years 1990 to 2100, at most 5 minutes after `now`.
    pub fn start(&mut self, name: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let raw = self.text(name)?;
        let Ok(start) = DateTime::parse_from_rfc3339(raw).map(|t| t.to_utc()) else {
            return self.fail(name, "not an RFC 3339 time");
        };
        if start <= now + MAX_AHEAD && (1990..=2100).contains(&chrono::Datelike::year(&start)) {
            Some(start)
        } else {
            self.fail(
                name,
                "must be in the years 1990 to 2100 and at most 5 minutes ahead",
            )
        }
    }

    /// A whole number of seconds from 1 to `max`.
    pub fn seconds(&mut self, name: &str, max: i64) -> Option<i64> {
        let value = self.number(name)?;
        if value.fract() == 0.0 && (1.0..=max as f64).contains(&value) {
            Some(value as i64)
        } else {
            self.fail(
                name,
                format!("must be a whole number of seconds from 1 to {max}"),
            )
        }
    }

    /// Refuses the row with a reason of the record's own.
    pub fn refuse(&mut self, name: &str, reason: impl Into<String>) {
        self.errors.push(FieldError::new(name, reason));
    }

    /// The record, when every field passed.
    pub fn finish<T>(self, record: Option<T>) -> Result<T, Vec<FieldError>> {
        match record {
            Some(record) if self.errors.is_empty() => Ok(record),
            _ => Err(self.errors),
        }
    }
}
