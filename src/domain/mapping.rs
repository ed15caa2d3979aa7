//! Telemetry mappings: which metric's series become whose readings. A mapping names a metric,
//! label matchers (anchored regexes, all must match), the metric's unit, and templates that build
//! the reading's site, customer and workload from the series' labels (`"{pod_name}"`), with
//! optional lookup maps applied to a rendered value. A counter of things (`count_total`, such as
//! `http_requests_total`) maps to functional units instead: the R of the SCI.
use super::{Checks, Id, Invalid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a metric's samples measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A counter of joules (Kepler).
    JoulesTotal,
    /// A counter of microjoules (Scaphandre).
    MicrojoulesTotal,
    /// A counter of kilowatt-hours (meters, Redfish `EnergykWh`).
    KwhTotal,
    /// A power gauge in watts.
    Watts,
    Milliwatts,
    /// A power gauge in microwatts (Scaphandre).
    Microwatts,
    /// A counter of things done (`http_requests_total`): its increases are functional units.
    CountTotal,
}

impl Unit {
    /// Counters' increases are energy; gauges are average power since the previous sample.
    pub fn is_counter(self) -> bool {
        matches!(
            self,
            Unit::JoulesTotal | Unit::MicrojoulesTotal | Unit::KwhTotal | Unit::CountTotal
        )
    }

    /// Joules per counter unit, or watts per gauge unit.
    pub fn scale(self) -> f64 {
        match self {
            Unit::JoulesTotal | Unit::Watts | Unit::CountTotal => 1.0,
            Unit::MicrojoulesTotal | Unit::Microwatts => 1e-6,
            Unit::KwhTotal => 3.6e6,
            Unit::Milliwatts => 1e-3,
        }
    }
}

/// Settings of common exporters, filled in where the body leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Kepler's per-container CPU energy, RAPL `package` zone only (zones overlap: never sum them).
    Kepler,
    /// Scaphandre's per-process power attribution in microwatts.
    Scaphandre,
    /// OpenTelemetry's semantic convention `hw.energy` (a counter in joules), per `hw.id`.
    HwEnergy,
    /// OpenTelemetry's semantic convention `hw.power` (a gauge in watts), per `hw.id`.
    HwPower,
}

impl Preset {
    fn metric(self) -> &'static str {
        match self {
            Preset::Kepler => "kepler_container_cpu_joules_total",
            Preset::Scaphandre => "scaph_process_power_consumption_microwatts",
            Preset::HwEnergy => "hw.energy",
            Preset::HwPower => "hw.power",
        }
    }

    fn unit(self) -> Unit {
        match self {
            Preset::Kepler | Preset::HwEnergy => Unit::JoulesTotal,
            Preset::Scaphandre => Unit::Microwatts,
            Preset::HwPower => Unit::Watts,
        }
    }

    fn matchers(self) -> BTreeMap<String, String> {
        match self {
            Preset::Kepler => BTreeMap::from([("zone".to_owned(), "package".to_owned())]),
            Preset::Scaphandre | Preset::HwEnergy | Preset::HwPower => BTreeMap::new(),
        }
    }

    fn workload(self) -> &'static str {
        match self {
            Preset::Kepler => "{container_name}",
            Preset::Scaphandre => "{exe}",
            Preset::HwEnergy | Preset::HwPower => "{hw.id}",
        }
    }
}

/// The body of `PUT /v1/telemetry/mappings/{mapping}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metric": "kepler_container_cpu_joules_total",
    "match": {"node_name": "fra1-.*", "zone": "package"}, "unit": "joules_total", "site": "fra1",
    "customer": "{pod_namespace}", "workload": "{pod_name}/{container_name}",
    "maps": {"customer": {"acme-prod": "acme"}}, "priority": 100}))]
pub struct MappingSpec {
    /// Fills metric, unit, matchers and workload with an exporter's usual settings.
    pub preset: Option<Preset>,
    /// The metric name (`__name__`); required without a preset.
    pub metric: Option<String>,
    /// Label -> anchored regex; every one must match (a missing label reads as "").
    #[serde(default, rename = "match")]
    pub matchers: Option<BTreeMap<String, String>>,
    pub unit: Option<Unit>,
    /// Template of the reading's site: literal text and `{label}` placeholders.
    pub site: String,
    /// Required for workload readings; left out with `meter`.
    pub customer: Option<String>,
    pub workload: Option<String>,
    /// Template of a site meter's id (`{instance}`): the series become that meter's readings
    /// (`POST /v1/meters`) of kind `meter_kind` instead of a workload's: a PDU exporter or a
    /// BMC's power as the site's IT meter.
    #[schema(example = "pdu-{instance}")]
    pub meter: Option<String>,
    pub meter_kind: Option<crate::domain::meter::MeterKind>,
    /// Lookups applied to a rendered `site`, `customer` or `workload` value.
    #[serde(default)]
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Lowest first, then id; the first matching mapping wins. Default 100.
    pub priority: Option<i32>,
    /// With `unit` `count_total`: the functional unit the counter's increases are counted in
    /// (`requests`), posted as functional units rather than readings.
    #[schema(example = "requests")]
    pub functional_unit: Option<String>,
}

/// A stored mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "kepler-fra1", "preset": "kepler",
    "metric": "kepler_container_cpu_joules_total", "match": {"zone": "package"},
    "unit": "joules_total", "site": "fra1", "customer": "acme", "workload": "{container_name}",
    "maps": {}, "priority": 100}))]
pub struct Mapping {
    #[schema(value_type = String)]
    pub id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    pub metric: String,
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub unit: Unit,
    pub site: String,
    pub customer: String,
    pub workload: String,
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    pub priority: i32,
    /// Set with `unit` `count_total`: the series become functional units of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functional_unit: Option<String>,
    /// Set for site meters: the meter id template (`customer` and `workload` are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_kind: Option<crate::domain::meter::MeterKind>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece<'t> {
    Text(&'t str),
    Label(&'t str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                out.push(Piece::Text(rest));
                break;
            }
            Some(at) if rest.as_bytes()[at] == b'}' => {
                return Err(format!(
                    "a '}}' at {} closes no placeholder",
                    template.len() - rest.len() + at
                ))
            }
            Some(at) => {
                if at > 0 {
                    out.push(Piece::Text(&rest[..at]));
                }
                let close = rest[at..]
                    .find('}')
                    .ok_or_else(|| "a '{' is never closed".to_owned())?;
                let label = &rest[at + 1..at + close];
                // Prometheus label names, and OpenTelemetry attribute keys (`hw.id`).
                let valid = !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    && !label.starts_with(|c: char| c.is_ascii_digit() || c == '.');
                if !valid {
                    return Err(format!(
                        "{{{label}}} names no label (labels are [a-zA-Z_][a-zA-Z0-9_.]*)"
                    ));
                }
                out.push(Piece::Label(label));
                rest = &rest[at + close + 1..];
            }
        }
    }
    if out.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(out)
}

/// The value a template gives for a series' labels; `Err` names a label the series lacks.
pub fn render<'a>(
    template: &str,
    label: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Label(name) => {
                let value = label(name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| name.to_owned())?;
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

/// A template's fixed value when it has no placeholder (a literal site or customer id).
pub fn literal(template: &str) -> Option<&str> {
    (!template.contains('{')).then_some(template)
}

/// `^(?:regex)$`: matchers are anchored, as in PromQL.
pub fn anchored(regex: &str) -> String {
    format!("^(?:{regex})$")
}

const MAPPED_FIELDS: [&str; 4] = ["site", "customer", "workload", "meter"];

impl MappingSpec {
    pub fn parse(self, id: Id) -> Result<Mapping, Invalid> {
        let mut checks = Checks::default();
        let preset = self.preset;
        let metric = self.metric.or(preset.map(|p| p.metric().to_owned()));
        checks.require(
            metric
                .as_deref()
                .is_some_and(|m| !m.is_empty() && m.len() <= 200),
            "metric",
            "give the metric name (or a preset)",
        );
        let unit = self.unit.or(preset.map(Preset::unit));
        checks.require(unit.is_some(), "unit", "give the unit (or a preset)");
        let matchers = self
            .matchers
            .or(preset.map(Preset::matchers))
            .unwrap_or_default();
        for (label, regex) in &matchers {
            if let Err(error) = regex::Regex::new(&anchored(regex)) {
                let reason = error
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .to_owned();
                checks.require(
                    false,
                    format!("match/{label}"),
                    format!("not a regex: {reason}"),
                );
            }
        }
        let metered = self.meter.is_some() || self.meter_kind.is_some();
        let (customer, workload) = if metered {
            checks.require(
                self.meter.is_some() && self.meter_kind.is_some(),
                if self.meter.is_none() {
                    "meter"
                } else {
                    "meter_kind"
                },
                "give both meter and meter_kind for a site meter",
            );
            checks.require(
                self.customer.is_none() && self.workload.is_none(),
                "customer",
                "a site meter belongs to no customer or workload: leave them out",
            );
            checks.require(
                unit != Some(Unit::CountTotal),
                "unit",
                "a site meter measures energy or power",
            );
            (String::new(), String::new())
        } else {
            checks.require(
                self.customer.is_some(),
                "customer",
                "is required (or give meter and meter_kind)",
            );
            let workload = self
                .workload
                .or(preset.map(|p| p.workload().to_owned()))
                .unwrap_or_default();
            (self.customer.unwrap_or_default(), workload)
        };
        let meter = self.meter.unwrap_or_default();
        let templates = if metered {
            vec![("site", &self.site), ("meter", &meter)]
        } else {
            vec![
                ("site", &self.site),
                ("customer", &customer),
                ("workload", &workload),
            ]
        };
        for (field, template) in templates {
            if let Err(reason) = pieces(template) {
                checks.require(false, field, reason);
            } else if let Some(fixed) = literal(template) {
                if let Err(reason) = Id::parse(fixed) {
                    checks.require(false, field, reason);
                }
            }
        }
        for field in self.maps.keys() {
            checks.require(
                MAPPED_FIELDS.contains(&field.as_str()),
                format!("maps/{field}"),
                "maps apply to site, customer or workload",
            );
        }
        let counts_things = unit == Some(Unit::CountTotal);
        match (&self.functional_unit, counts_things) {
            (Some(name), true) => {
                if let Err(reason) = super::functional_unit::check_unit(name) {
                    checks.require(false, "functional_unit", reason);
                }
            }
            (None, true) => checks.require(
                false,
                "functional_unit",
                "is required with unit count_total (requests, jobs, ...)",
            ),
            (Some(_), false) => {
                checks.require(false, "functional_unit", "applies only to unit count_total")
            }
            (None, false) => {}
        }
        checks.finish(|| {
            Some(Mapping {
                id,
                preset,
                metric: metric?,
                matchers,
                unit: unit?,
                site: self.site,
                customer,
                workload,
                maps: self.maps,
                priority: self.priority.unwrap_or(100),
                functional_unit: self.functional_unit,
                meter: metered.then_some(meter),
                meter_kind: self.meter_kind,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(site: &str, customer: &str, workload: Option<&str>) -> MappingSpec {
        MappingSpec {
            preset: Some(Preset::Kepler),
            metric: None,
            matchers: None,
            unit: None,
            site: site.into(),
            customer: Some(customer.into()),
            workload: workload.map(str::to_owned),
            maps: BTreeMap::new(),
            priority: None,
            functional_unit: None,
            meter: None,
            meter_kind: None,
        }
    }

    #[test]
    fn templates_render_labels_and_name_a_missing_one() {
        let labels = [("pod_name", "web-1"), ("container_name", "nginx")];
        let label = |name: &str| labels.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(
            render("{pod_name}/{container_name}", label).unwrap(),
            "web-1/nginx"
        );
        assert_eq!(render("fra1", label).unwrap(), "fra1");
        assert_eq!(render("{namespace}", label).unwrap_err(), "namespace");
    }

    #[test]
    fn the_kepler_preset_fills_metric_unit_zone_and_workload() {
        let mapping = spec("fra1", "acme", None)
            .parse(Id::parse("k").unwrap())
            .unwrap();
        assert_eq!(mapping.metric, "kepler_container_cpu_joules_total");
        assert_eq!(mapping.unit, Unit::JoulesTotal);
        assert_eq!(mapping.matchers["zone"], "package");
        assert_eq!(mapping.workload, "{container_name}");
        assert_eq!(mapping.priority, 100);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut bad = spec("{}", "acme corp", Some("{pod"));
        bad.matchers = Some(BTreeMap::from([("zone".into(), "(".into())]));
        bad.maps = BTreeMap::from([("zone".into(), BTreeMap::new())]);
        let invalid = bad.parse(Id::parse("k").unwrap()).unwrap_err();
        let fields: Vec<&str> = invalid.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["match/zone", "site", "customer", "workload", "maps/zone"]
        );
        let none = MappingSpec {
            preset: None,
            ..spec("fra1", "acme", Some("{pod}"))
        };
        let invalid = none.parse(Id::parse("k").unwrap()).unwrap_err();
        let fields: Vec<&str> = invalid.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metric", "unit"]);
    }
}
