//! The last forecasts made, so a dashboard reload or a second reader of the same customer does not
//! refit every model: a forecast changes only when the hour turns or the data it read change.
use super::footprint_forecast::Outcome;
use crate::storage::periods::Versions;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Forecasts kept; the oldest goes first.
const CAPACITY: usize = 32;

/// Everything a forecast depends on: the committed versions, and the newest batches this replica
/// acknowledged (readings and intensity not yet flushed count as well).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastKey {
    pub customer: String,
    pub start_us: i64,
    pub end_us: i64,
    pub granularity: &'static str,
    pub tz: String,
    pub level_bits: u64,
    pub history_days: i64,
    pub versions: Versions,
    pub acknowledged: (u64, u64),
}

#[derive(Default)]
pub struct ForecastCache {
    entries: Mutex<VecDeque<(ForecastKey, Arc<Outcome>)>>,
}

impl ForecastCache {
    pub fn get(&self, key: &ForecastKey) -> Option<Arc<Outcome>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, outcome)| outcome.clone())
    }

    pub fn put(&self, key: ForecastKey, outcome: Arc<Outcome>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| k != &key);
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back((key, outcome));
    }
}
