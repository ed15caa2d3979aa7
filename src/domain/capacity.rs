//! Reserved capacity: the kW a customer contracted at a site over a period. A site whose
//! allocation is `reserved_proportional` spreads what its IT meters measured beyond all its
//! workloads over the customers by these reservations, instant by instant.
use super::{Checks, Id, Invalid};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest reservation accepted: a whole large data center is a few hundred MW.
const MAX_RESERVED_KW: f64 = 1.0e6;

/// The body of `PUT /v1/capacity/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"site": "fra1", "customer": "acme", "reserved_kw": 40,
    "from": "2026-03-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}))]
pub struct CapacitySpec {
    pub site: Id,
    pub customer: Id,
    /// Contracted IT power (kW); reserved racks or units work too when every reservation of the
    /// site counts in the same unit: only the shares matter.
    #[schema(example = 40, minimum = 0)]
    pub reserved_kw: f64,
    pub from: DateTime<Utc>,
    /// End of the contract (exclusive); absent: open-ended.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

/// A customer's reserved capacity at a site over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "acme-fra1-2026", "site": "fra1", "customer": "acme",
    "reserved_kw": 40, "from": "2026-03-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}))]
pub struct Capacity {
    pub id: Id,
    pub site: Id,
    pub customer: Id,
    pub reserved_kw: f64,
    pub from: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

impl CapacitySpec {
    pub fn parse(self, id: Id) -> Result<Capacity, Invalid> {
        let mut checks = Checks::default();
        checks.require(
            self.reserved_kw.is_finite() && self.reserved_kw > 0.0,
            "reserved_kw",
            "must be a number above 0",
        );
        checks.require(
            self.reserved_kw <= MAX_RESERVED_KW,
            "reserved_kw",
            format!("must be at most {MAX_RESERVED_KW} kW"),
        );
        checks.require(
            self.to.is_none_or(|to| to > self.from),
            "to",
            "must be after from",
        );
        checks.finish(|| {
            Some(Capacity {
                id,
                site: self.site,
                customer: self.customer,
                reserved_kw: self.reserved_kw,
                from: self.from,
                to: self.to,
            })
        })
    }
}

impl Capacity {
    pub fn holds(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}
