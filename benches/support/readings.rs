//! Readings as a polars frame in the table's columns, for the benchmarks that build them in bulk.
use polars::prelude::*;

/// Readings column by column; each of `step_s` seconds, with energy and no power.
pub struct ReadingColumns {
    pub site: Vec<&'static str>,
    pub customer: Vec<String>,
    pub workload: Vec<String>,
    pub start_us: Vec<i64>,
    pub energy_j: Vec<Option<f64>>,
}

impl ReadingColumns {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            site: Vec::with_capacity(n),
            customer: Vec::with_capacity(n),
            workload: Vec::with_capacity(n),
            start_us: Vec::with_capacity(n),
            energy_j: Vec::with_capacity(n),
        }
    }

    pub fn into_frame(self, step_s: i64) -> DataFrame {
        let n = self.start_us.len();
        let start = Column::new("start".into(), self.start_us)
            .cast(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap();
        DataFrame::new(
            n,
            vec![
                Column::new("site".into(), self.site),
                Column::new("customer".into(), self.customer),
                Column::new("workload".into(), self.workload),
                start,
                Column::new("duration_s".into(), vec![step_s as i32; n]),
                Column::new("energy_j".into(), self.energy_j),
                Column::new("power_w".into(), vec![None::<f64>; n]),
            ],
        )
        .unwrap()
    }
}
