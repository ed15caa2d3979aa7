//! Functional units: how much a workload did (requests, jobs, users, GB) over an interval, the R
//! of the Software Carbon Intensity. A count's identity is (customer, workload, site, start,
//! unit): sent again, it replaces the earlier one, like a reading.
use super::{FieldError, Id};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;

/// Longest interval one count may cover: a day (daily active users).
pub const MAX_DURATION_S: i64 = 86_400;
/// How far ahead a count may start, as for readings: agents' clocks drift.
const MAX_AHEAD: Duration = Duration::minutes(5);

/// The fields of a count, in the order CSV headers list them.
pub const FIELDS: [&str; 7] = [
    "site",
    "customer",
    "workload",
    "start",
    "duration_s",
    "unit",
    "count",
];

/// One count, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionalUnit {
    pub site: Id,
    pub customer: Id,
    pub workload: Id,
    pub start: DateTime<Utc>,
    pub duration_s: i64,
    pub unit: String,
    pub count: f64,
}

/// One field of a row as a body format carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    /// Anything else a format can carry (JSON true, an object): refused with the field named.
    Other,
}

/// What a count is checked against.
#[derive(Debug, Clone)]
pub struct UnitRules {
    pub now: DateTime<Utc>,
    pub known_sites: HashSet<String>,
    pub known_customers: HashSet<String>,
}

/// A unit name: lower-case words joined by `_` (`requests`, `jobs`, `gb_served`).
pub fn check_unit(raw: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&raw.len())
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("must be 1 to 32 characters of a-z 0-9 _, starting with a letter".into())
    }
}

impl FunctionalUnit {
    /// Checks one row given its fields by name; every bad field is named.
    pub fn check<'a>(
        field: impl Fn(&str) -> Option<Cell<'a>>,
        rules: &UnitRules,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut text = |name: &str| match field(name) {
            Some(Cell::Text(value)) => Some(value),
            Some(Cell::Number(_) | Cell::Other) => {
                errors.push(FieldError::new(name, "must be a string"));
                None
            }
            None => {
                errors.push(FieldError::new(name, "is required"));
                None
            }
        };
        let (site, customer, workload, start, unit) = (
            text("site"),
            text("customer"),
            text("workload"),
            text("start"),
            text("unit"),
        );
        let mut number = |name: &str| match field(name) {
            Some(Cell::Number(value)) => Some(value),
            Some(Cell::Text(raw)) => match raw.trim().parse::<f64>() {
                Ok(value) => Some(value),
                Err(_) => {
                    errors.push(FieldError::new(name, "must be a number"));
                    None
                }
            },
            Some(Cell::Other) => {
                errors.push(FieldError::new(name, "must be a number"));
                None
            }
            None => {
                errors.push(FieldError::new(name, "is required"));
                None
            }
        };
        let (duration, count) = (number("duration_s"), number("count"));
        let mut id = |name: &str, raw: Option<&str>, known: Option<&HashSet<String>>| {
            let id = Id::parse(raw?)
                .map_err(|reason| errors.push(FieldError::new(name, reason)))
                .ok()?;
            if known.is_some_and(|known| !known.contains(id.as_str())) {
                errors.push(FieldError::new(name, format!("{name} {id} does not exist")));
                return None;
            }
            Some(id)
        };
        let site = id("site", site, Some(&rules.known_sites));
        let customer = id("customer", customer, Some(&rules.known_customers));
        let workload = id("workload", workload, None);
        let start = start.and_then(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.to_utc())
                .map_err(|_| errors.push(FieldError::new("start", "not an RFC 3339 time")))
                .ok()
                .filter(|t| {
                    let ok = *t <= rules.now + MAX_AHEAD
                        && (1990..=2100).contains(&chrono::Datelike::year(t));
                    if !ok {
                        errors.push(FieldError::new(
                            "start",
                            "must be in the years 1990 to 2100 and at most 5 minutes ahead",
                        ));
                    }
                    ok
                })
        });
        let duration = duration.filter(|d| {
            let ok = d.fract() == 0.0 && (1.0..=MAX_DURATION_S as f64).contains(d);
            if !ok {
                errors.push(FieldError::new(
                    "duration_s",
                    format!("must be a whole number of seconds from 1 to {MAX_DURATION_S}"),
                ));
            }
            ok
        });
        let count = count.filter(|c| {
            let ok = c.is_finite() && *c >= 0.0;
            if !ok {
                errors.push(FieldError::new(
                    "count",
                    "must be a finite number, 0 or more",
                ));
            }
            ok
        });
        let unit = unit.and_then(|raw| {
            check_unit(raw)
                .map_err(|reason| errors.push(FieldError::new("unit", reason)))
                .ok()
        });
        match (site, customer, workload, start, duration, unit, count) {
            (
                Some(site),
                Some(customer),
                Some(workload),
                Some(start),
                Some(d),
                Some(unit),
                Some(count),
            ) if errors.is_empty() => Ok(Self {
                site,
                customer,
                workload,
                start,
                duration_s: d as i64,
                unit,
                count,
            }),
            _ => Err(errors),
        }
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds(self.duration_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rules() -> UnitRules {
        UnitRules {
            now: "2026-03-02T00:00:00Z".parse().unwrap(),
            known_sites: ["fra1".to_owned()].into(),
            known_customers: ["acme".to_owned()].into(),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let row: HashMap<&str, Cell> = [
            ("site", Cell::Text("fra9")),
            ("customer", Cell::Text("acme")),
            ("workload", Cell::Number(3.0)),
            ("start", Cell::Text("yesterday")),
            ("duration_s", Cell::Number(0.5)),
            ("unit", Cell::Text("Requests")),
            ("count", Cell::Number(-1.0)),
        ]
        .into();
        let errors = FunctionalUnit::check(|f| row.get(f).copied(), &rules()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["workload", "site", "start", "duration_s", "count", "unit"]
        );
    }

    #[test]
    fn a_good_row_parses_with_numbers_as_text_too() {
        let row: HashMap<&str, Cell> = [
            ("site", Cell::Text("fra1")),
            ("customer", Cell::Text("acme")),
            ("workload", Cell::Text("api")),
            ("start", Cell::Text("2026-03-01T09:00:00+01:00")),
            ("duration_s", Cell::Text("3600")),
            ("unit", Cell::Text("requests")),
            ("count", Cell::Number(1200.0)),
        ]
        .into();
        let unit = FunctionalUnit::check(|f| row.get(f).copied(), &rules()).unwrap();
        assert_eq!(
            unit.start,
            "2026-03-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(unit.duration_s, 3600);
        assert_eq!(unit.count, 1200.0);
    }
}
