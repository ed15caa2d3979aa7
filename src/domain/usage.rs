//! Modelled energy for workloads no meter measures: usage (vCPU, memory and GPU hours at an
//! average utilisation) priced by a power model, Cloud Carbon Footprint's method:
//! watts = vCPUs x (idle + utilisation x (max - idle)) + GPUs x (idle + utilisation x (max -
//! idle)) + memory GB x watts per GB. A usage record's identity is a reading's (customer,
//! workload, site, start): sent again, it replaces the earlier one.
use super::row::{Fields, Row};
use super::{Checks, FieldError, Id, Invalid};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

/// Longest interval one usage record may cover, as for readings (reports look back an hour).
pub const MAX_DURATION_S: i64 = 3600;

/// The fields of a usage record, in the order CSV headers list them.
pub const FIELDS: [&str; 10] = [
    "site",
    "customer",
    "workload",
    "start",
    "duration_s",
    "vcpu_hours",
    "memory_gb_hours",
    "gpu_hours",
    "utilisation",
    "power_model",
];

/// Watts per unit, idle and at full load: what a power model prices usage with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Coefficients {
    #[schema(example = 0.74, minimum = 0)]
    pub vcpu_idle_w: f64,
    #[schema(example = 3.5, minimum = 0)]
    pub vcpu_max_w: f64,
    #[schema(example = 0.392, minimum = 0)]
    pub memory_w_per_gb: f64,
    #[schema(example = 35.0, minimum = 0)]
    pub gpu_idle_w: f64,
    #[schema(example = 306.0, minimum = 0)]
    pub gpu_max_w: f64,
}

/// Cloud Carbon Footprint's published coefficients (methodology, "Energy Estimate" and
/// appendix II; packages/aws AwsFootprintEstimationConstants and core ComputeProcessorTypes):
/// AWS's average 0.74 W idle and 3.5 W at full load per vCPU, 0.392 W per GB of memory
/// (0.000392 kWh per GB-hour), and the Tesla V100/K80/M60 entry, 35 W idle and 306 W at full
/// load per GPU. Used wherever a usage record names no power model.
pub const CCF_DEFAULT: Coefficients = Coefficients {
    vcpu_idle_w: 0.74,
    vcpu_max_w: 3.5,
    memory_w_per_gb: 0.392,
    gpu_idle_w: 35.0,
    gpu_max_w: 306.0,
};

/// Where `CCF_DEFAULT` comes from, as answers name it.
pub const CCF_SOURCE: &str = "Cloud Carbon Footprint methodology (cloudcarbonfootprint.org/docs/methodology): AWS average min/max watts per vCPU, memory 0.392 W/GB, Nvidia Tesla V100 min/max watts per GPU";

/// Highest coefficient accepted: a GPU at full load draws under 1.5 kW; this bounds typos.
const MAX_WATTS: f64 = 5_000.0;

impl Coefficients {
    /// Average watts of `vcpus`, `memory_gb` and `gpus` at `utilisation` (0 to 1).
    pub fn watts(&self, vcpus: f64, memory_gb: f64, gpus: f64, utilisation: f64) -> f64 {
        vcpus * (self.vcpu_idle_w + utilisation * (self.vcpu_max_w - self.vcpu_idle_w))
            + gpus * (self.gpu_idle_w + utilisation * (self.gpu_max_w - self.gpu_idle_w))
            + memory_gb * self.memory_w_per_gb
    }

    fn check(&self, checks: &mut Checks) {
        for (field, value) in [
            ("vcpu_idle_w", self.vcpu_idle_w),
            ("vcpu_max_w", self.vcpu_max_w),
            ("memory_w_per_gb", self.memory_w_per_gb),
            ("gpu_idle_w", self.gpu_idle_w),
            ("gpu_max_w", self.gpu_max_w),
        ] {
            checks.require(
                value.is_finite() && (0.0..=MAX_WATTS).contains(&value),
                field,
                format!("must be a number from 0 to {MAX_WATTS} W"),
            );
        }
        checks.require(
            self.vcpu_max_w >= self.vcpu_idle_w,
            "vcpu_max_w",
            "must be at least vcpu_idle_w",
        );
        checks.require(
            self.gpu_max_w >= self.gpu_idle_w,
            "gpu_max_w",
            "must be at least gpu_idle_w",
        );
    }
}

/// The body of `PUT /v1/power-models/{id}`: a machine class's coefficients.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "2-socket Xeon, A100", "vcpu_idle_w": 0.71, "vcpu_max_w": 4.26,
    "memory_w_per_gb": 0.392, "gpu_idle_w": 46, "gpu_max_w": 407,
    "source": "vendor SPECpower run, 2026-02"}))]
pub struct PowerModelSpec {
    pub name: String,
    #[serde(flatten)]
    pub coefficients: Coefficients,
    /// Where the figures come from, for auditors.
    pub source: String,
}

/// A machine class's power model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "xeon-a100", "name": "2-socket Xeon, A100", "vcpu_idle_w": 0.71,
    "vcpu_max_w": 4.26, "memory_w_per_gb": 0.392, "gpu_idle_w": 46, "gpu_max_w": 407,
    "source": "vendor SPECpower run, 2026-02"}))]
pub struct PowerModel {
    pub id: Id,
    pub name: String,
    #[serde(flatten)]
    pub coefficients: Coefficients,
    pub source: String,
}

impl PowerModelSpec {
    pub fn parse(self, id: Id) -> Result<PowerModel, Invalid> {
        let mut checks = Checks::default();
        for (field, text) in [("name", &self.name), ("source", &self.source)] {
            let chars = text.trim().chars().count();
            checks.require(
                (1..=200).contains(&chars),
                field,
                "must be 1 to 200 characters",
            );
        }
        self.coefficients.check(&mut checks);
        checks.finish(|| {
            Some(PowerModel {
                id,
                name: self.name.trim().to_owned(),
                coefficients: self.coefficients,
                source: self.source.trim().to_owned(),
            })
        })
    }
}

/// One workload's usage over one interval, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub site: Id,
    pub customer: Id,
    pub workload: Id,
    pub start: DateTime<Utc>,
    pub duration_s: i64,
    pub vcpu_hours: f64,
    pub memory_gb_hours: f64,
    pub gpu_hours: f64,
    /// Average utilisation of the vCPUs and GPUs over the interval, 0 to 1.
    pub utilisation: f64,
    /// The machine class's power model; `None`: Cloud Carbon Footprint's defaults.
    pub power_model: Option<Id>,
}

/// What a usage record is checked against.
#[derive(Debug, Clone)]
pub struct UsageRules {
    pub now: DateTime<Utc>,
    pub known_sites: HashSet<String>,
    pub known_customers: HashSet<String>,
    pub known_power_models: HashSet<String>,
}

/// Most resources one record may hold on average: 100,000 vCPUs bounds typos, not clusters.
const MAX_UNITS: f64 = 100_000.0;

impl Usage {
    /// Checks one row given its fields by name; every bad field is named.
    pub fn check(fields: &dyn Fields, rules: &UsageRules) -> Result<Self, Vec<FieldError>> {
        let mut row = Row::new(fields);
        let site = row.id("site", Some(&rules.known_sites));
        let customer = row.id("customer", Some(&rules.known_customers));
        let workload = row.id("workload", None);
        let start = row.start("start", rules.now);
        let duration_s = row.seconds("duration_s", MAX_DURATION_S);
        let hours = duration_s.map_or(1.0, |s| s as f64 / 3600.0);
        let resource = |row: &mut Row<'_>, name: &str| -> Option<f64> {
            let value = row.optional_number(name)?.unwrap_or(0.0);
            if value.is_finite() && value >= 0.0 && value <= MAX_UNITS * hours {
                Some(value)
            } else {
                row.refuse(
                    name,
                    format!(
                        "must be 0 or more, at most {MAX_UNITS} units on average over the interval"
                    ),
                );
                None
            }
        };
        let vcpu_hours = resource(&mut row, "vcpu_hours");
        let memory_gb_hours = resource(&mut row, "memory_gb_hours");
        let gpu_hours = resource(&mut row, "gpu_hours");
        if vcpu_hours.unwrap_or(1.0) + memory_gb_hours.unwrap_or(1.0) + gpu_hours.unwrap_or(1.0)
            <= 0.0
        {
            row.refuse(
                "vcpu_hours",
                "give at least one of vcpu_hours, memory_gb_hours, gpu_hours above 0",
            );
        }
        let utilisation = row.number("utilisation").filter(|u| {
            let ok = (0.0..=1.0).contains(u);
            if !ok {
                row.refuse("utilisation", "must be a share from 0 to 1");
            }
            ok
        });
        let power_model = match row.has("power_model") {
            false => Some(None),
            true => row
                .id("power_model", Some(&rules.known_power_models))
                .map(Some),
        };
        let record = (|| {
            Some(Self {
                site: site?,
                customer: customer?,
                workload: workload?,
                start: start?,
                duration_s: duration_s?,
                vcpu_hours: vcpu_hours?,
                memory_gb_hours: memory_gb_hours?,
                gpu_hours: gpu_hours?,
                utilisation: utilisation?,
                power_model: power_model?,
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

    fn rules() -> UsageRules {
        UsageRules {
            now: "2026-03-02T00:00:00Z".parse().unwrap(),
            known_sites: ["fra1".to_owned()].into(),
            known_customers: ["acme".to_owned()].into(),
            known_power_models: ["xeon-a100".to_owned()].into(),
        }
    }

    #[test]
    fn ccf_defaults_price_an_hour_of_usage() {
        // 16 vCPUs at 50 %: 16 x (0.74 + 0.5 x 2.76) = 16 x 2.12 = 33.92 W; 64 GB x 0.392 =
        // 25.088 W; one GPU at 50 %: 35 + 0.5 x 271 = 170.5 W. 229.508 W in all.
        let watts = CCF_DEFAULT.watts(16.0, 64.0, 1.0, 0.5);
        assert!((watts - 229.508).abs() < 1e-9, "{watts}");
    }

    #[test]
    fn a_good_row_parses_and_every_bad_field_is_named() {
        let good: HashMap<&str, Cell> = [
            ("site", Cell::Text("fra1")),
            ("customer", Cell::Text("acme")),
            ("workload", Cell::Text("batch")),
            ("start", Cell::Text("2026-03-01T09:00:00Z")),
            ("duration_s", Cell::Number(3600.0)),
            ("vcpu_hours", Cell::Text("16")),
            ("utilisation", Cell::Number(0.5)),
        ]
        .into();
        let usage = Usage::check(&good, &rules()).unwrap();
        assert_eq!((usage.vcpu_hours, usage.gpu_hours), (16.0, 0.0));
        assert_eq!(usage.power_model, None);
        let bad: HashMap<&str, Cell> = [
            ("site", Cell::Text("fra1")),
            ("customer", Cell::Text("acme")),
            ("workload", Cell::Text("batch")),
            ("start", Cell::Text("2026-03-01T09:00:00Z")),
            ("duration_s", Cell::Number(3600.0)),
            ("vcpu_hours", Cell::Number(-1.0)),
            ("utilisation", Cell::Number(1.5)),
            ("power_model", Cell::Text("cray")),
        ]
        .into();
        let errors = Usage::check(&bad, &rules()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["vcpu_hours", "utilisation", "power_model"]);
    }

    fn cell() -> impl proptest::strategy::Strategy<Value = Option<Cell<'static>>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            Just(Some(Cell::Other)),
            any::<f64>().prop_map(|v| Some(Cell::Number(v))),
            prop::sample::select(vec![
                "fra1",
                "acme",
                "batch",
                "xeon-a100",
                "",
                "NaN",
                "-1",
                "0.5",
                "1e308",
                "3600",
                "2026-03-01T09:00:00Z",
                "9999-99-99",
                "fra 1",
            ])
            .prop_map(|v| Some(Cell::Text(v))),
        ]
    }

    proptest::proptest! {
        /// Any values in any field give a record whose modelled power is finite, or the
        /// fields' reasons: never a panic.
        #[test]
        fn arbitrary_fields_are_checked_never_panic(
            cells in proptest::collection::vec(cell(), FIELDS.len()),
        ) {
            let row: HashMap<&str, Cell> = FIELDS
                .iter()
                .zip(&cells)
                .filter_map(|(name, cell)| Some((*name, (*cell)?)))
                .collect();
            let mut rules = rules();
            rules.known_customers.insert("batch".into());
            match Usage::check(&row, &rules) {
                Ok(usage) => {
                    let watts = CCF_DEFAULT.watts(usage.vcpu_hours, usage.memory_gb_hours, usage.gpu_hours, usage.utilisation);
                    proptest::prop_assert!(watts.is_finite() && watts >= 0.0);
                }
                Err(errors) => proptest::prop_assert!(!errors.is_empty()),
            }
        }
    }

    #[test]
    fn a_power_model_must_idle_below_its_peak() {
        let spec = PowerModelSpec {
            name: "odd".into(),
            coefficients: Coefficients {
                vcpu_max_w: 0.5,
                ..CCF_DEFAULT
            },
            source: "test".into(),
        };
        let Invalid(errors) = spec.parse(Id::parse("odd").unwrap()).unwrap_err();
        assert_eq!(errors[0].field, "vcpu_max_w");
    }
}
