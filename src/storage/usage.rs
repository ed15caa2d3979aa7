//! The usage table: vCPU, memory and GPU hours per workload and interval, durable and
//! newest-wins by a reading's identity. Reports price it with the power models in force when
//! they run (`modelled`), so a corrected model needs no rewrite of the table.
use super::logged::{instants, numbers, texts, LoggedTable, LoggedTableError, TableSpec};
use super::readings::{CUSTOMER, DURATION_S, ENERGY_J, POWER_W, SITE, START, WORKLOAD};
use crate::domain::usage::{Coefficients, PowerModel, Usage, CCF_DEFAULT, MAX_DURATION_S};
use crate::domain::{Id, Site};
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;

pub const VCPU_HOURS: &str = "vcpu_hours";
pub const MEMORY_GB_HOURS: &str = "memory_gb_hours";
pub const GPU_HOURS: &str = "gpu_hours";
pub const UTILISATION: &str = "utilisation";
pub const POWER_MODEL: &str = "power_model";

/// Usage sent again for the same workload and interval start replaces the earlier record.
pub const IDENTITY: [&str; 4] = [CUSTOMER, WORKLOAD, SITE, START];

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(CUSTOMER, DeltaType::STRING, false),
        StructField::new(WORKLOAD, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(DURATION_S, DeltaType::LONG, false),
        StructField::new(VCPU_HOURS, DeltaType::DOUBLE, false),
        StructField::new(MEMORY_GB_HOURS, DeltaType::DOUBLE, false),
        StructField::new(GPU_HOURS, DeltaType::DOUBLE, false),
        StructField::new(UTILISATION, DeltaType::DOUBLE, false),
        StructField::new(POWER_MODEL, DeltaType::STRING, true),
    ]
}

pub const SPEC: TableSpec = TableSpec {
    name: "usage",
    columns,
    empty,
    time_column: START,
    identity: Some(&IDENTITY),
    cache_key: None,
    lookback_us: MAX_DURATION_S * 1_000_000,
};

/// Checked usage as the table's columns.
pub fn frame(usage: &[Usage]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        usage.len(),
        vec![
            texts(SITE, usage, |u| u.site.as_str()),
            texts(CUSTOMER, usage, |u| u.customer.as_str()),
            texts(WORKLOAD, usage, |u| u.workload.as_str()),
            instants(START, usage.iter().map(|u| u.start.timestamp_micros()))?,
            numbers(DURATION_S, usage, |u| u.duration_s),
            numbers(VCPU_HOURS, usage, |u| u.vcpu_hours),
            numbers(MEMORY_GB_HOURS, usage, |u| u.memory_gb_hours),
            numbers(GPU_HOURS, usage, |u| u.gpu_hours),
            numbers(UTILISATION, usage, |u| u.utilisation),
            Column::new(
                POWER_MODEL.into(),
                usage
                    .iter()
                    .map(|u| u.power_model.as_ref().map(Id::as_str))
                    .collect::<Vec<Option<&str>>>(),
            ),
        ],
    )
}

pub fn empty() -> PolarsResult<DataFrame> {
    frame(&[])
}

/// The coefficient columns, in `Coefficients` order.
const COEFFICIENTS: [&str; 5] = [
    "vcpu_idle_w",
    "vcpu_max_w",
    "memory_w_per_gb",
    "gpu_idle_w",
    "gpu_max_w",
];

fn values(c: &Coefficients) -> [f64; 5] {
    [
        c.vcpu_idle_w,
        c.vcpu_max_w,
        c.memory_w_per_gb,
        c.gpu_idle_w,
        c.gpu_max_w,
    ]
}

/// The default power model of each site that names one.
const SITE_MODEL: &str = "site_power_model";

/// Usage rows (as `LoggedTable::scan` gives them) priced into reading-shaped rows: `energy_j`
/// from the record's power model, else its site's, else Cloud Carbon Footprint's defaults.
pub fn modelled(
    usage: LazyFrame,
    models: &[PowerModel],
    sites: &[Site],
) -> PolarsResult<LazyFrame> {
    let defaults_of: Vec<&Site> = sites.iter().filter(|s| s.power_model.is_some()).collect();
    let site_defaults = DataFrame::new(
        defaults_of.len(),
        vec![
            Column::new(
                SITE.into(),
                defaults_of
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                SITE_MODEL.into(),
                defaults_of
                    .iter()
                    .map(|s| s.power_model.as_ref().map(Id::as_str))
                    .collect::<Vec<_>>(),
            ),
        ],
    )?;
    let usage = usage
        .join(
            site_defaults.lazy(),
            [col(SITE)],
            [col(SITE)],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(coalesce(&[col(POWER_MODEL), col(SITE_MODEL)]).alias(POWER_MODEL));
    let mut columns = vec![Column::new(
        POWER_MODEL.into(),
        models.iter().map(|m| m.id.as_str()).collect::<Vec<&str>>(),
    )];
    for (index, name) in COEFFICIENTS.iter().enumerate() {
        columns.push(Column::new(
            (*name).into(),
            models
                .iter()
                .map(|m| values(&m.coefficients)[index])
                .collect::<Vec<f64>>(),
        ));
    }
    let table = DataFrame::new(models.len(), columns)?;
    let defaults = values(&CCF_DEFAULT);
    let coefficient = |index: usize| col(COEFFICIENTS[index]).fill_null(lit(defaults[index]));
    let utilisation = col(UTILISATION);
    let watt_hours = col(VCPU_HOURS)
        * (coefficient(0) + utilisation.clone() * (coefficient(1) - coefficient(0)))
        + col(GPU_HOURS) * (coefficient(3) + utilisation * (coefficient(4) - coefficient(3)))
        + col(MEMORY_GB_HOURS) * coefficient(2);
    Ok(usage
        .join(
            table.lazy(),
            [col(POWER_MODEL)],
            [col(POWER_MODEL)],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col(SITE),
            col(CUSTOMER),
            col(WORKLOAD),
            col(START),
            col(DURATION_S),
            (watt_hours * lit(3600.0)).alias(ENERGY_J),
            lit(NULL).cast(DataType::Float64).alias(POWER_W),
        ]))
}

/// The usage of `customer` (all when `None`) overlapping [from, to) matching `filter`, priced.
pub async fn load(
    table: &LoggedTable,
    (models, sites): (&[PowerModel], &[Site]),
    customer: Option<&Id>,
    filter: Option<Expr>,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    version: Option<u64>,
) -> Result<LazyFrame, LoggedTableError> {
    let filter = customer
        .map(|c| col(CUSTOMER).eq(lit(c.to_string())))
        .into_iter()
        .chain(filter)
        .reduce(Expr::and);
    let scan = table
        .scan(
            from.timestamp_micros(),
            to.timestamp_micros(),
            None,
            filter,
            version,
        )
        .await?
        .filter(col(START).lt(super::logged::instant(to.timestamp_micros())));
    Ok(modelled(scan, models, sites)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::usage::CCF_DEFAULT;

    fn usage(power_model: Option<&str>) -> Usage {
        Usage {
            site: Id::parse("fra1").unwrap(),
            customer: Id::parse("acme").unwrap(),
            workload: Id::parse("batch").unwrap(),
            start: "2026-03-01T09:00:00Z".parse().unwrap(),
            duration_s: 3600,
            vcpu_hours: 16.0,
            memory_gb_hours: 64.0,
            gpu_hours: 1.0,
            utilisation: 0.5,
            power_model: power_model.map(|m| Id::parse(m).unwrap()),
        }
    }

    #[test]
    fn usage_is_priced_by_its_model_or_the_defaults() {
        let model = PowerModel {
            id: Id::parse("arm").unwrap(),
            name: "Arm".into(),
            coefficients: Coefficients {
                vcpu_idle_w: 0.5,
                vcpu_max_w: 1.5,
                memory_w_per_gb: 0.25,
                gpu_idle_w: 0.0,
                gpu_max_w: 0.0,
            },
            source: "test".into(),
        };
        let rows = frame(&[usage(None), usage(Some("arm"))]).unwrap();
        let priced = |sites: &[Site]| {
            let priced = modelled(rows.clone().lazy(), std::slice::from_ref(&model), sites)
                .unwrap()
                .collect()
                .unwrap();
            let energy = priced.column(ENERGY_J).unwrap().f64().unwrap().clone();
            (energy.get(0).unwrap(), energy.get(1).unwrap())
        };
        // Defaults: 229.508 W for an hour (see domain::usage). Arm: 16 x (0.5 + 0.5 x 1.0) = 16
        // W, 64 x 0.25 = 16 W, no GPU power: 32 W for an hour = 115,200 J.
        let (default_j, arm_j) = priced(&[]);
        assert!((default_j - CCF_DEFAULT.watts(16.0, 64.0, 1.0, 0.5) * 3600.0).abs() < 1e-6);
        assert!((default_j - 229.508 * 3600.0).abs() < 1e-6);
        assert!((arm_j - 115_200.0).abs() < 1e-6);
        // A site whose default is the Arm model prices the record that names none with it.
        let mut fra1 = crate::domain::SiteSpec {
            name: "Frankfurt 1".into(),
            zone: "DE".into(),
            pue: 1.5,
            pue_schedule: vec![],
            retired_at: None,
            allocation: Default::default(),
            power_model: None,
        }
        .parse(Id::parse("fra1").unwrap())
        .unwrap();
        fra1.power_model = Some(Id::parse("arm").unwrap());
        let (site_default_j, _) = priced(&[fra1]);
        assert!((site_default_j - 115_200.0).abs() < 1e-6);
    }
}
