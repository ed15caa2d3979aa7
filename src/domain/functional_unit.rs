//! Functional units: how much a workload did (requests, jobs, users, GB) over an interval, the R
//! of the Software Carbon Intensity. A count's identity is (customer, workload, site, start,
//! unit): sent again, it replaces the earlier one, like a reading.
use super::row::{Fields, Row};
use super::{FieldError, Id};
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// Longest interval one count may cover: a day (daily active users).
pub const MAX_DURATION_S: i64 = 86_400;

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
    pub fn check(fields: &dyn Fields, rules: &UnitRules) -> Result<Self, Vec<FieldError>> {
        let mut row = Row::new(fields);
        let site = row.id("site", Some(&rules.known_sites));
        let customer = row.id("customer", Some(&rules.known_customers));
        let workload = row.id("workload", None);
        let start = row.start("start", rules.now);
        let duration_s = row.seconds("duration_s", MAX_DURATION_S);
        let unit = row.text("unit").and_then(|raw| {
            check_unit(raw)
                .map_err(|reason| row.refuse("unit", reason))
                .ok()
        });
        let count = row.amount("count");
        let record = (|| {
            Some(Self {
                site: site?,
                customer: customer?,
                workload: workload?,
                start: start?,
                duration_s: duration_s?,
                unit: unit?,
                count: count?,
            })
        })();
        row.finish(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::row::Cell;
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
        let errors = FunctionalUnit::check(&row, &rules()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["site", "workload", "start", "duration_s", "unit", "count"]
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
        let unit = FunctionalUnit::check(&row, &rules()).unwrap();
        assert_eq!(
            unit.start,
            "2026-03-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(unit.duration_s, 3600);
        assert_eq!(unit.count, 1200.0);
    }
}
