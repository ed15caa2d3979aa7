//! Site meters: what the utility meter, the UPS or PDU outputs and the cooling plant measured,
//! per interval. They are the books the workloads' readings must balance against.
use super::row::{Fields, Row};
use super::{FieldError, Id};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

/// Longest interval one meter reading may cover, as for workload readings.
pub const MAX_DURATION_S: i64 = 3600;

/// The fields of a meter reading, in the order CSV headers list them.
pub const FIELDS: [&str; 7] = [
    "site",
    "meter",
    "kind",
    "start",
    "duration_s",
    "energy_j",
    "power_w",
];

/// What a meter measures.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MeterKind {
    /// The utility or main meter: everything the site draws.
    Facility,
    /// UPS or PDU output feeding IT equipment.
    It,
    Cooling,
    Other,
}

impl MeterKind {
    pub const ALL: [Self; 4] = [Self::Facility, Self::It, Self::Cooling, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Facility => "facility",
            Self::It => "it",
            Self::Cooling => "cooling",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// One meter's energy over one interval, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReading {
    pub site: Id,
    pub meter: Id,
    pub kind: MeterKind,
    pub start: DateTime<Utc>,
    pub duration_s: i64,
    pub energy_j: f64,
}

/// What a meter reading is checked against.
#[derive(Debug, Clone)]
pub struct MeterRules {
    pub now: DateTime<Utc>,
    pub known_sites: HashSet<String>,
    /// A site meter may draw far more than one workload: this bounds typos, not sites.
    pub max_power_w: f64,
}

impl MeterReading {
    /// Checks one row given its fields by name; every bad field is named.
    pub fn check(fields: &dyn Fields, rules: &MeterRules) -> Result<Self, Vec<FieldError>> {
        let mut row = Row::new(fields);
        let site = row.id("site", Some(&rules.known_sites));
        let meter = row.id("meter", None);
        let kind = row.text("kind").and_then(|raw| {
            let kind = MeterKind::parse(raw);
            if kind.is_none() {
                row.refuse("kind", "must be one of facility, it, cooling, other");
            }
            kind
        });
        let start = row.start("start", rules.now);
        let duration_s = row.seconds("duration_s", MAX_DURATION_S);
        let (energy, power) = (
            row.optional_number("energy_j"),
            row.optional_number("power_w"),
        );
        let energy_j = match (energy, power, duration_s) {
            (Some(Some(joules)), Some(None), _) => Some(joules),
            (Some(None), Some(Some(watts)), Some(seconds)) => Some(watts * seconds as f64),
            (Some(None), Some(None), _) | (Some(Some(_)), Some(Some(_)), _) => {
                row.refuse("energy_j", "give exactly one of energy_j and power_w");
                None
            }
            _ => None,
        };
        let energy_j = energy_j.filter(|joules| {
            let watts = duration_s.map_or(0.0, |s| joules / s as f64);
            let ok = joules.is_finite() && *joules >= 0.0 && watts <= rules.max_power_w;
            if !ok {
                row.refuse(
                    if power.flatten().is_some() {
                        "power_w"
                    } else {
                        "energy_j"
                    },
                    format!(
                        "must be 0 or more, at most {} W on average",
                        rules.max_power_w
                    ),
                );
            }
            ok
        });
        let record = (|| {
            Some(Self {
                site: site?,
                meter: meter?,
                kind: kind?,
                start: start?,
                duration_s: duration_s?,
                energy_j: energy_j?,
            })
        })();
        row.finish(record)
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds(self.duration_s)
    }
}

/// A meter reading of fra1 for tests: `minutes` from `start` (RFC 3339), `kwh` over them.
#[cfg(test)]
pub(crate) fn sample(
    meter: &str,
    kind: MeterKind,
    start: &str,
    minutes: i64,
    kwh: f64,
) -> MeterReading {
    MeterReading {
        site: Id::parse("fra1").unwrap(),
        meter: Id::parse(meter).unwrap(),
        kind,
        start: start.parse().unwrap(),
        duration_s: minutes * 60,
        energy_j: kwh * 3.6e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::row::Cell;
    use std::collections::HashMap;

    fn rules() -> MeterRules {
        MeterRules {
            now: "2026-03-02T00:00:00Z".parse().unwrap(),
            known_sites: ["fra1".to_owned()].into(),
            max_power_w: 1e8,
        }
    }

    #[test]
    fn power_becomes_energy_and_every_bad_field_is_named() {
        let good: HashMap<&str, Cell> = [
            ("site", Cell::Text("fra1")),
            ("meter", Cell::Text("main")),
            ("kind", Cell::Text("facility")),
            ("start", Cell::Text("2026-03-01T09:00:00Z")),
            ("duration_s", Cell::Number(900.0)),
            ("power_w", Cell::Number(2_000.0)),
        ]
        .into();
        let reading = MeterReading::check(&good, &rules()).unwrap();
        // 2 kW for 15 minutes = 1,800,000 J.
        assert_eq!(reading.energy_j, 1.8e6);
        assert_eq!(reading.kind, MeterKind::Facility);
        let bad: HashMap<&str, Cell> = [
            ("site", Cell::Text("lon9")),
            ("meter", Cell::Text("main")),
            ("kind", Cell::Text("solar")),
            ("start", Cell::Text("2026-03-01T09:00:00Z")),
            ("duration_s", Cell::Number(7200.0)),
            ("energy_j", Cell::Number(1.0)),
            ("power_w", Cell::Number(1.0)),
        ]
        .into();
        let errors = MeterReading::check(&bad, &rules()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["site", "kind", "duration_s", "energy_j"]);
    }
}
