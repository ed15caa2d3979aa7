//! The registry's records: sites with their PUE, customers, grid zones with their factors, and the
//! contractual instruments of market-based accounting. Each `*Spec` is the body a client sends; its
//! `parse` yields the record or every reason it cannot.
use super::{Checks, Id, Invalid, ZoneCode};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Highest grid intensity accepted anywhere, in gCO2e/kWh (lignite is about 1,100).
pub const MAX_INTENSITY_GCO2E_PER_KWH: f64 = 3000.0;
/// Highest PUE accepted; real facilities are below 3, and a typo like 15 should not pass.
pub const MAX_PUE: f64 = 10.0;
const MAX_NAME_CHARS: usize = 200;

fn check_name(checks: &mut Checks, name: &str) {
    let chars = name.trim().chars().count();
    checks.require(
        chars > 0 && chars <= MAX_NAME_CHARS,
        "name",
        format!("must be 1 to {MAX_NAME_CHARS} characters"),
    );
}

fn check_pue(checks: &mut Checks, field: &str, pue: f64) {
    checks.require(
        pue.is_finite() && (1.0..=MAX_PUE).contains(&pue),
        field,
        format!("must be a number from 1.0 to {MAX_PUE}"),
    );
}

fn check_intensity(checks: &mut Checks, field: &str, value: f64) {
    checks.require(
        value.is_finite() && (0.0..=MAX_INTENSITY_GCO2E_PER_KWH).contains(&value),
        field,
        format!("must be a number from 0 to {MAX_INTENSITY_GCO2E_PER_KWH} gCO2e/kWh"),
    );
}

/// A PUE that applies from `from` until the next entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PueEntry {
    #[schema(example = "2026-03-01T12:00:00Z")]
    pub from: DateTime<Utc>,
    #[schema(example = 1.25, minimum = 1.0)]
    pub pue: f64,
}

/// What happens to IT energy the site's IT meters measured beyond its workloads' readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// It stays the operator's own (the site's books show it as unattributed).
    #[default]
    None,
    /// It is spread over the customers in proportion to their measured energy at each instant.
    EnergyProportional,
    /// It is spread over the customers in proportion to the capacity each reserved at the site
    /// at each instant (`PUT /v1/capacity/{id}`).
    ReservedProportional,
}

impl Allocation {
    /// The default, left out of a site's JSON.
    pub fn is_none(&self) -> bool {
        *self == Allocation::None
    }
}

/// The body of `PUT /v1/sites/{site}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
    "pue_schedule": [{"from": "2026-03-01T12:00:00Z", "pue": 1.25}]}))]
pub struct SiteSpec {
    pub name: String,
    /// Grid zone code.
    #[schema(example = "DE")]
    pub zone: String,
    /// Default power usage effectiveness, used before the first schedule entry.
    #[schema(example = 1.5, minimum = 1.0)]
    pub pue: f64,
    /// PUE changes over time; the latest `from` at or before an instant applies.
    #[serde(default)]
    pub pue_schedule: Vec<PueEntry>,
    /// Retires the site from this instant: it takes no readings from then on, and its history
    /// stays in every report. A site with readings cannot be deleted, only retired.
    #[serde(default)]
    #[schema(example = "2026-06-30T00:00:00Z")]
    pub retired_at: Option<DateTime<Utc>>,
    /// What happens to IT energy the IT meters measured beyond the workloads (default `none`).
    #[serde(default)]
    pub allocation: Allocation,
    /// The power model that prices this site's usage records naming none
    /// (`PUT /v1/power-models/{id}`); absent: Cloud Carbon Footprint's coefficients.
    #[serde(default)]
    pub power_model: Option<Id>,
}

/// A data center or room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "fra1", "name": "Frankfurt 1", "zone": "DE", "pue": 1.5,
    "pue_schedule": [{"from": "2026-03-01T12:00:00Z", "pue": 1.25}]}))]
pub struct Site {
    pub id: Id,
    pub name: String,
    pub zone: ZoneCode,
    pub pue: f64,
    /// Ordered by `from`, at most one entry per instant.
    pub pue_schedule: Vec<PueEntry>,
    /// From when the site takes no readings; absent while it is in service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// What happens to IT energy the IT meters measured beyond the workloads; absent: `none`.
    #[serde(default, skip_serializing_if = "Allocation::is_none")]
    pub allocation: Allocation,
    /// The default power model of the site's usage; absent: Cloud Carbon Footprint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_model: Option<Id>,
}

impl SiteSpec {
    pub fn parse(self, id: Id) -> Result<Site, Invalid> {
        let mut checks = Checks::default();
        check_name(&mut checks, &self.name);
        let zone = checks.parse("zone", ZoneCode::parse(&self.zone));
        check_pue(&mut checks, "pue", self.pue);
        let mut schedule = self.pue_schedule;
        for (i, entry) in schedule.iter().enumerate() {
            check_pue(&mut checks, &format!("pue_schedule/{i}/pue"), entry.pue);
        }
        schedule.sort_by_key(|entry| entry.from);
        let distinct = schedule.windows(2).all(|w| w[0].from != w[1].from);
        checks.require(
            distinct,
            "pue_schedule",
            "two entries start at the same instant",
        );
        checks.finish(|| {
            Some(Site {
                id,
                name: self.name.trim().to_owned(),
                zone: zone?,
                pue: self.pue,
                pue_schedule: schedule,
                retired_at: self.retired_at,
                allocation: self.allocation,
                power_model: self.power_model,
            })
        })
    }
}

/// The body of `PUT /v1/customers/{customer}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Corp"}))]
pub struct CustomerSpec {
    pub name: String,
    /// Retires the customer from this instant: no readings from then on, history kept. A
    /// customer with readings cannot be deleted, only retired.
    #[serde(default)]
    #[schema(example = "2026-06-30T00:00:00Z")]
    pub retired_at: Option<DateTime<Utc>>,
}

/// A customer whose workloads run in the operator's sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "acme", "name": "Acme Corp"}))]
pub struct Customer {
    pub id: Id,
    pub name: String,
    /// From when the customer takes no readings; absent while it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}

impl CustomerSpec {
    pub fn parse(self, id: Id) -> Result<Customer, Invalid> {
        let mut checks = Checks::default();
        check_name(&mut checks, &self.name);
        checks.finish(|| {
            Some(Customer {
                id,
                name: self.name.trim().to_owned(),
                retired_at: self.retired_at,
            })
        })
    }
}

/// The body of `PUT /v1/zones/{zone}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"default_gco2e_per_kwh": 380, "residual_mix_gco2e_per_kwh": {"2026": 600}}))]
pub struct ZoneSpec {
    /// Yearly average intensity, used only where no intensity data covers a time.
    #[serde(default)]
    pub default_gco2e_per_kwh: Option<f64>,
    /// Residual mix per calendar year (`"2026"`), for energy no instrument covers.
    #[serde(default)]
    pub residual_mix_gco2e_per_kwh: BTreeMap<String, f64>,
}

/// A grid zone's factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"zone": "DE", "default_gco2e_per_kwh": 380, "residual_mix_gco2e_per_kwh": {"2026": 600}}))]
pub struct Zone {
    pub zone: ZoneCode,
    pub default_gco2e_per_kwh: Option<f64>,
    /// Keyed by calendar year (`"2026"`).
    #[schema(value_type = BTreeMap<String, f64>)]
    pub residual_mix_gco2e_per_kwh: BTreeMap<i32, f64>,
}

impl ZoneSpec {
    pub fn parse(self, zone: ZoneCode) -> Result<Zone, Invalid> {
        let mut checks = Checks::default();
        if let Some(factor) = self.default_gco2e_per_kwh {
            check_intensity(&mut checks, "default_gco2e_per_kwh", factor);
        }
        let mut residual = BTreeMap::new();
        for (year, factor) in self.residual_mix_gco2e_per_kwh {
            let field = format!("residual_mix_gco2e_per_kwh/{year}");
            let parsed = year
                .parse::<i32>()
                .ok()
                .filter(|y| (1990..=2100).contains(y));
            checks.require(
                parsed.is_some(),
                &field,
                "key must be a year from 1990 to 2100",
            );
            check_intensity(&mut checks, &field, factor);
            if let Some(year) = parsed {
                residual.insert(year, factor);
            }
        }
        checks.finish(|| {
            Some(Zone {
                zone,
                default_gco2e_per_kwh: self.default_gco2e_per_kwh,
                residual_mix_gco2e_per_kwh: residual,
            })
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    Ppa,
    Rec,
    Go,
    GreenTariff,
}

/// The body of `PUT /v1/instruments/{instrument}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"site": "fra1", "customer": null, "from": "2026-01-01T00:00:00Z",
    "to": "2026-04-01T00:00:00Z", "energy_mwh": 120.0, "gco2e_per_kwh": 0, "kind": "ppa"}))]
pub struct InstrumentSpec {
    pub site: String,
    /// Only this customer's energy is covered; the whole site's when absent.
    #[serde(default)]
    pub customer: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub energy_mwh: f64,
    pub gco2e_per_kwh: f64,
    pub kind: InstrumentKind,
}

/// A contractual instrument (GHG Protocol Scope 2, market-based): energy over [from, to) at a factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ppa-2026-q1", "site": "fra1", "customer": null, "from": "2026-01-01T00:00:00Z",
    "to": "2026-04-01T00:00:00Z", "energy_mwh": 120.0, "gco2e_per_kwh": 0, "kind": "ppa"}))]
pub struct Instrument {
    pub id: Id,
    pub site: Id,
    pub customer: Option<Id>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub energy_mwh: f64,
    pub gco2e_per_kwh: f64,
    pub kind: InstrumentKind,
}

impl InstrumentSpec {
    pub fn parse(self, id: Id) -> Result<Instrument, Invalid> {
        let mut checks = Checks::default();
        let site = checks.parse("site", Id::parse(&self.site));
        let customer = match &self.customer {
            Some(raw) => checks.parse("customer", Id::parse(raw)).map(Some),
            None => Some(None),
        };
        checks.require(self.to > self.from, "to", "must be after from");
        checks.require(
            (1990..=2100).contains(&self.from.year()),
            "from",
            "must be a time in the years 1990 to 2100",
        );
        checks.require(
            self.energy_mwh.is_finite() && self.energy_mwh > 0.0,
            "energy_mwh",
            "must be a positive number",
        );
        check_intensity(&mut checks, "gco2e_per_kwh", self.gco2e_per_kwh);
        checks.finish(|| {
            Some(Instrument {
                id,
                site: site?,
                customer: customer?,
                from: self.from,
                to: self.to,
                energy_mwh: self.energy_mwh,
                gco2e_per_kwh: self.gco2e_per_kwh,
                kind: self.kind,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_spec(pue: f64, schedule: Vec<PueEntry>) -> SiteSpec {
        SiteSpec {
            name: "Frankfurt 1".into(),
            zone: "DE".into(),
            pue,
            pue_schedule: schedule,
            retired_at: None,
            allocation: Default::default(),
            power_model: None,
        }
    }

    #[test]
    fn a_site_below_pue_one_names_each_bad_field() {
        let from = "2026-03-01T00:00:00Z".parse().unwrap();
        let err = site_spec(0.9, vec![PueEntry { from, pue: 0.5 }])
            .parse(Id::parse("fra1").unwrap())
            .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pue", "pue_schedule/0/pue"]);
    }

    #[test]
    fn a_pue_schedule_is_kept_in_time_order() {
        let early: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let late: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let site = site_spec(
            1.5,
            vec![
                PueEntry {
                    from: late,
                    pue: 1.2,
                },
                PueEntry {
                    from: early,
                    pue: 1.3,
                },
            ],
        )
        .parse(Id::parse("fra1").unwrap())
        .unwrap();
        assert_eq!(site.pue_schedule[0].from, early);
        assert_eq!(site.pue_schedule[1].from, late);
    }

    #[test]
    fn residual_mix_keys_must_be_years() {
        let spec = ZoneSpec {
            default_gco2e_per_kwh: Some(5000.0),
            residual_mix_gco2e_per_kwh: [("twenty".to_owned(), 600.0)].into(),
        };
        let err = spec.parse(ZoneCode::parse("DE").unwrap()).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["default_gco2e_per_kwh", "residual_mix_gco2e_per_kwh/twenty"]
        );
    }
}
