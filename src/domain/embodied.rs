//! Embodied emissions (Scope 3): the hardware a site runs, with what making and shipping it
//! emitted, and the reservations that say which workload held which share of it when. The SCI
//! specification's amortisation, per instant: M = TE x (time reserved / lifespan) x (resources
//! reserved / resources total).
use super::{Checks, Id, Invalid};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;
use utoipa::ToSchema;

const CLASSES: &str = include_str!("../../fixtures/embodied/hardware_classes.csv");
/// A year of lifespan, in hours: the SCI specification's own example counts 4 years as 35,040 h.
pub const HOURS_PER_YEAR: i64 = 8760;
/// Longest lifespan accepted; a typo like 40 should not pass.
const MAX_LIFESPAN_YEARS: f64 = 25.0;
/// Heaviest single record accepted, in kgCO2e (a rack of GPU servers is a few tens of tonnes).
const MAX_EMBODIED_KGCO2E: f64 = 1.0e6;

/// What a piece of hardware is shared by between the workloads that reserve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SharedBy {
    Vcpu,
    Gpu,
    Node,
    Kw,
}

/// A class's defaults from the shipped table (`fixtures/embodied/`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassDefaults {
    pub embodied_kgco2e: f64,
    pub lifespan_years: f64,
}

/// The shipped hardware classes: Cloud Carbon Footprint's per-component coefficients summed per
/// archetype (the table's README shows the sums and names the source).
pub fn classes() -> &'static HashMap<String, ClassDefaults> {
    static TABLE: OnceLock<HashMap<String, ClassDefaults>> = OnceLock::new();
    TABLE.get_or_init(|| {
        CLASSES
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut cells = line.split(',');
                let class = cells.next()?.to_owned();
                let embodied_kgco2e = cells.next()?.parse().ok()?;
                let lifespan_years = cells.next()?.parse().ok()?;
                Some((
                    class,
                    ClassDefaults {
                        embodied_kgco2e,
                        lifespan_years,
                    },
                ))
            })
            .collect()
    })
}

/// The body of `PUT /v1/hardware/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"site": "fra1", "class": "server-2s-256gb", "embodied_kgco2e": 1633.125,
    "lifespan_years": 4, "shared_by": "vcpu", "total": 64, "in_service": "2025-06-01"}))]
pub struct HardwareSpec {
    pub site: String,
    /// A class of the shipped table (`server-minimal`, `server-1s-128gb`, `server-2s-256gb`,
    /// `server-2s-512gb`, `gpu-server-8x`, `storage-node-24hdd`) or any name of the operator's;
    /// a class outside the table needs both figures below.
    pub class: String,
    /// Manufacturing and transport emissions of the whole machine (default: the class's).
    #[serde(default)]
    #[schema(example = 1633.125, minimum = 0)]
    pub embodied_kgco2e: Option<f64>,
    /// Expected lifespan over which those emissions are amortised (default: the class's).
    #[serde(default)]
    #[schema(example = 4, minimum = 0.1, maximum = 25)]
    pub lifespan_years: Option<f64>,
    pub shared_by: SharedBy,
    /// How many of `shared_by` the machine has (64 vCPUs, 8 GPUs, 1 node, 12 kW).
    #[schema(example = 64, minimum = 0)]
    pub total: f64,
    /// The first day of service (UTC); amortisation runs from then for `lifespan_years`.
    #[schema(example = "2025-06-01")]
    pub in_service: NaiveDate,
}

/// A piece of hardware and its embodied emissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "fra1-r42-s07", "site": "fra1", "class": "server-2s-256gb",
    "embodied_kgco2e": 1633.125, "lifespan_years": 4, "shared_by": "vcpu", "total": 64,
    "in_service": "2025-06-01", "defaults_from_class": false}))]
pub struct Hardware {
    pub id: Id,
    pub site: Id,
    pub class: String,
    pub embodied_kgco2e: f64,
    pub lifespan_years: f64,
    pub shared_by: SharedBy,
    pub total: f64,
    pub in_service: NaiveDate,
    /// Whether a figure came from the shipped class table rather than the request.
    pub defaults_from_class: bool,
}

fn positive(checks: &mut Checks, field: &str, value: f64, max: f64) {
    checks.require(
        value.is_finite() && value > 0.0 && value <= max,
        field,
        format!("must be a positive number up to {max}"),
    );
}

impl HardwareSpec {
    pub fn parse(self, id: Id) -> Result<Hardware, Invalid> {
        let mut checks = Checks::default();
        let site = checks.parse("site", Id::parse(&self.site));
        let class = self.class.trim().to_owned();
        checks.require(
            !class.is_empty() && class.chars().count() <= 100,
            "class",
            "must be 1 to 100 characters",
        );
        let defaults = classes().get(&class);
        let known = |given: Option<f64>, default: Option<f64>, field: &str, checks: &mut Checks| {
            let value = given.or(default);
            checks.require(
                value.is_some(),
                field,
                format!(
                    "is required for class {class:?}, which is not in the shipped table \
                     (fixtures/embodied/hardware_classes.csv)"
                ),
            );
            value
        };
        let embodied = known(
            self.embodied_kgco2e,
            defaults.map(|d| d.embodied_kgco2e),
            "embodied_kgco2e",
            &mut checks,
        );
        let lifespan = known(
            self.lifespan_years,
            defaults.map(|d| d.lifespan_years),
            "lifespan_years",
            &mut checks,
        );
        if let Some(embodied) = embodied {
            checks.require(
                embodied.is_finite() && (0.0..=MAX_EMBODIED_KGCO2E).contains(&embodied),
                "embodied_kgco2e",
                format!("must be a number from 0 to {MAX_EMBODIED_KGCO2E}"),
            );
        }
        if let Some(lifespan) = lifespan {
            checks.require(
                lifespan.is_finite() && (0.1..=MAX_LIFESPAN_YEARS).contains(&lifespan),
                "lifespan_years",
                format!("must be a number of years from 0.1 to {MAX_LIFESPAN_YEARS}"),
            );
        }
        positive(&mut checks, "total", self.total, 1.0e9);
        checks.require(
            (1990..=2100).contains(&chrono::Datelike::year(&self.in_service)),
            "in_service",
            "must be a date in the years 1990 to 2100",
        );
        let from_class = self.embodied_kgco2e.is_none() || self.lifespan_years.is_none();
        checks.finish(|| {
            Some(Hardware {
                id,
                site: site?,
                class,
                embodied_kgco2e: embodied?,
                lifespan_years: lifespan?,
                shared_by: self.shared_by,
                total: self.total,
                in_service: self.in_service,
                defaults_from_class: from_class,
            })
        })
    }
}

impl Hardware {
    /// The start of service, midnight UTC of `in_service`.
    pub fn service_start(&self) -> DateTime<Utc> {
        self.in_service.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The lifespan as a duration (whole microseconds).
    pub fn lifespan(&self) -> Duration {
        let micros = self.lifespan_years * HOURS_PER_YEAR as f64 * 3.6e9;
        Duration::microseconds(micros.round() as i64)
    }

    /// When the machine is written off: no embodied emissions are left to amortise after it.
    pub fn service_end(&self) -> DateTime<Utc> {
        self.service_start() + self.lifespan()
    }

    /// Grams a reservation of `reserved` resources over [from, to) carries: the part of the
    /// span inside the service life, as a share of the lifespan, times the resource share.
    pub fn amortised_gco2e(&self, reserved: f64, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let start = from.max(self.service_start());
        let end = to.min(self.service_end());
        if end <= start {
            return 0.0;
        }
        let time_share = micros(end - start) / micros(self.lifespan());
        self.embodied_kgco2e * 1000.0 * time_share * (reserved / self.total)
    }
}

fn micros(span: Duration) -> f64 {
    span.num_microseconds().unwrap_or(i64::MAX) as f64
}

/// The body of `PUT /v1/reservations/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"hardware": "fra1-r42-s07", "customer": "acme", "workload": "api",
    "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z", "reserved": 8}))]
pub struct ReservationSpec {
    pub hardware: String,
    pub customer: String,
    pub workload: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How many of the hardware's `shared_by` resources the workload held.
    #[schema(example = 8, minimum = 0)]
    pub reserved: f64,
}

/// A workload's hold on a share of a piece of hardware over [from, to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "acme-api-2026-03", "hardware": "fra1-r42-s07", "customer": "acme",
    "workload": "api", "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z", "reserved": 8}))]
pub struct Reservation {
    pub id: Id,
    pub hardware: Id,
    pub customer: Id,
    pub workload: Id,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub reserved: f64,
}

impl ReservationSpec {
    pub fn parse(self, id: Id) -> Result<Reservation, Invalid> {
        let mut checks = Checks::default();
        let hardware = checks.parse("hardware", Id::parse(&self.hardware));
        let customer = checks.parse("customer", Id::parse(&self.customer));
        let workload = checks.parse("workload", Id::parse(&self.workload));
        checks.require(self.to > self.from, "to", "must be after from");
        checks.require(
            (1990..=2100).contains(&chrono::Datelike::year(&self.from))
                && (1990..=2100).contains(&chrono::Datelike::year(&self.to)),
            "from",
            "from and to must be times in the years 1990 to 2100",
        );
        positive(&mut checks, "reserved", self.reserved, 1.0e9);
        checks.finish(|| {
            Some(Reservation {
                id,
                hardware: hardware?,
                customer: customer?,
                workload: workload?,
                from: self.from,
                to: self.to,
                reserved: self.reserved,
            })
        })
    }
}

/// The most of one hardware's resources that `reservations` hold at any one instant.
pub fn peak_reserved<'a>(reservations: impl Iterator<Item = &'a Reservation>) -> f64 {
    let mut changes: Vec<(DateTime<Utc>, f64)> = reservations
        .flat_map(|r| [(r.from, r.reserved), (r.to, -r.reserved)])
        .collect();
    // Ends before starts at the same instant: [a, b) and [b, c) never overlap.
    changes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let (mut held, mut peak) = (0.0_f64, 0.0_f64);
    for (_, change) in changes {
        held += change;
        peak = peak.max(held);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn server(embodied_kgco2e: f64, lifespan_years: f64, total: f64) -> Hardware {
        HardwareSpec {
            site: "fra1".into(),
            class: "custom".into(),
            embodied_kgco2e: Some(embodied_kgco2e),
            lifespan_years: Some(lifespan_years),
            shared_by: SharedBy::Node,
            total,
            in_service: "2025-01-01".parse().unwrap(),
        }
        .parse(Id::parse("s1").unwrap())
        .unwrap()
    }

    #[test]
    fn the_sci_specifications_example_one_hour_of_a_four_year_tonne() {
        // SCI: TE 1,000 kg, EL 4 years (35,040 h), one hour reserved, the whole machine:
        // 1,000,000 g x 1 / 35,040 = 28.5388 g.
        let m = server(1000.0, 4.0, 1.0).amortised_gco2e(
            1.0,
            t("2026-03-01T09:00:00Z"),
            t("2026-03-01T10:00:00Z"),
        );
        assert!((m - 1.0e6 / 35_040.0).abs() < 1e-9, "{m}");
        assert!((m - 28.5388).abs() < 1e-4);
    }

    #[test]
    fn nothing_is_amortised_outside_the_service_life() {
        let hw = server(1000.0, 1.0, 10.0);
        // Before service starts and after the year is over: nothing.
        assert_eq!(
            hw.amortised_gco2e(5.0, t("2024-12-01T00:00:00Z"), t("2025-01-01T00:00:00Z")),
            0.0
        );
        assert_eq!(
            hw.amortised_gco2e(5.0, t("2026-01-02T00:00:00Z"), t("2026-02-01T00:00:00Z")),
            0.0
        );
        // The whole life, every resource: exactly the machine's emissions.
        let whole = hw.amortised_gco2e(10.0, t("2024-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"));
        assert!((whole - 1.0e6).abs() < 1e-6, "{whole}");
    }

    #[test]
    fn class_defaults_fill_what_the_request_leaves_out_and_unknown_classes_need_figures() {
        let spec = |class: &str| HardwareSpec {
            site: "fra1".into(),
            class: class.into(),
            embodied_kgco2e: None,
            lifespan_years: None,
            shared_by: SharedBy::Vcpu,
            total: 64.0,
            in_service: "2025-06-01".parse().unwrap(),
        };
        let hw = spec("server-2s-256gb")
            .parse(Id::parse("a").unwrap())
            .unwrap();
        // 1000 + 100 x 1 CPU + 240 GB x 533/384 + 2 SSD x 100 = 1,633.125 kg over 4 years.
        assert_eq!(
            hw.embodied_kgco2e,
            1000.0 + 100.0 + 240.0 * 533.0 / 384.0 + 200.0
        );
        assert_eq!(hw.lifespan_years, 4.0);
        assert!(hw.defaults_from_class);
        let err = spec("my-box").parse(Id::parse("b").unwrap()).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["embodied_kgco2e", "lifespan_years"]);
    }

    #[test]
    fn every_shipped_class_is_the_sum_of_its_components() {
        let table: Vec<Vec<&str>> = CLASSES
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert!(table.len() >= 6);
        for row in table {
            let n = |i: usize| row[i].parse::<f64>().unwrap();
            let (cpus, memory, ssd, hdd, gpus) = (n(3), n(4), n(5), n(6), n(7));
            let sum = 1000.0
                + 100.0 * (cpus - 1.0)
                + 533.0 / 384.0 * (memory - 16.0)
                + 100.0 * ssd
                + 50.0 * hdd
                + 150.0 * gpus;
            assert!((n(1) - sum).abs() < 5e-4, "{}: {} vs {sum}", row[0], n(1));
        }
    }

    #[test]
    fn the_peak_counts_overlaps_only() {
        let r = |from: &str, to: &str, reserved: f64| Reservation {
            id: Id::parse("r").unwrap(),
            hardware: Id::parse("s1").unwrap(),
            customer: Id::parse("acme").unwrap(),
            workload: Id::parse("api").unwrap(),
            from: t(from),
            to: t(to),
            reserved,
        };
        let all = [
            r("2026-03-01T00:00:00Z", "2026-03-01T12:00:00Z", 40.0),
            r("2026-03-01T12:00:00Z", "2026-03-02T00:00:00Z", 60.0),
            r("2026-03-01T06:00:00Z", "2026-03-01T18:00:00Z", 4.0),
        ];
        assert_eq!(peak_reserved(all.iter()), 64.0);
    }
}
