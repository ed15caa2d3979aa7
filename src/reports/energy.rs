//! The energy a report splits: readings, or energy rollups wherever they serve (DESIGN §7), and
//! priced usage.
use super::{ReportError, ReportSources};
use crate::accounting::rollup::SlotPlan;
use crate::accounting::timeline::LOOKBACK;
use crate::accounting::Energy;
use crate::domain::usage::PowerModel;
use crate::domain::{Id, Site};
use crate::storage::logged::{blocking, instant, Dates, LoggedTableError};
use crate::storage::rollups::Level;
use crate::storage::{readings, usage};
use chrono::{DateTime, Utc};
use futures_util::future::OptionFuture;
use polars::prelude::*;
use std::collections::BTreeSet;

/// Dates of rollups read at once (a customer-year is 365 files: read whole, its rows alone
/// would take a gigabyte).
const ROLLUP_DATES_PER_READ: usize = 31;

/// Where a report reads the tables: the latest state (`Some(None)`), a pinned version
/// (`Some(Some(v))`), or nothing (`None`: pinned before the table held anything).
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadAt {
    pub(super) readings: Option<Option<u64>>,
    pub(super) usage: Option<Option<u64>>,
}

pub(super) fn nothing() -> Result<LazyFrame, ReportError> {
    Ok(readings::empty().map_err(LoggedTableError::from)?.lazy())
}

fn date(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The readings dates whose readings can reach into one of `spans`: they start at most an hour
/// before it.
fn dates_reaching(spans: impl Iterator<Item = (i64, i64)>) -> BTreeSet<String> {
    let lookback = LOOKBACK.num_microseconds().unwrap_or_default();
    let day = 86_400_000_000;
    let mut dates = BTreeSet::new();
    for (from, to) in spans {
        let mut at = (from - lookback).div_euclid(day) * day;
        while at < to {
            dates.insert(date(at));
            at += day;
        }
    }
    dates
}

impl ReportSources {
    /// Measured energy and priced usage of `customer` (all: `None`) starting in
    /// [from - lookback, to) that match `filter`, in the state `at` says. Dates the rollups serve
    /// come as pieces under `plan`, from the rollups of `level`; the others, and every date
    /// without a plan, as readings.
    pub(super) async fn energy(
        &self,
        customer: Option<&Id>,
        filter: Option<Expr>,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        at: ReadAt,
        (pricing, plan): ((&[PowerModel], &[Site]), Option<&SlotPlan>),
        level: Level,
    ) -> Result<Energy, ReportError> {
        let (from_us, to_us) = (from.timestamp_micros(), to.timestamp_micros());
        let key = customer.map(Id::as_str);
        let (measured, pieces) = match at.readings {
            Some(version) => {
                let serving = match (&self.rollups, plan) {
                    (Some(rollups), Some(_)) => {
                        let first = date(from_us - LOOKBACK.num_microseconds().unwrap_or(0));
                        rollups
                            .serving(&self.readings, version, (&first, &date(to_us - 1)), level)
                            .await?
                    }
                    _ => Default::default(),
                };
                let served: BTreeSet<String> = serving.keys().cloned().collect();
                let readings = self
                    .readings
                    .scan_dates(
                        from_us,
                        to_us,
                        (key, filter.clone()),
                        version,
                        Dates::Except(&served),
                    )
                    .await?
                    .filter(col(readings::START).lt(instant(to_us)));
                let pieces = match (plan, &self.rollups) {
                    (Some(plan), Some(rollups)) if !served.is_empty() => {
                        let span = (from_us - LOOKBACK.num_microseconds().unwrap_or(0), to_us);
                        let dirty = plan.dirty_spans(span.0, span.1);
                        let dirty_dates: BTreeSet<String> =
                            dates_reaching(dirty.values().flatten().copied())
                                .intersection(&served)
                                .cloned()
                                .collect();
                        // The dirty slots' readings, cut with the first batch of rollups.
                        let mut raw = match dirty_dates.is_empty() {
                            true => None,
                            false => {
                                let scan = self
                                    .readings
                                    .scan_dates(
                                        from_us,
                                        to_us,
                                        (key, filter.clone()),
                                        version,
                                        Dates::Only(&dirty_dates),
                                    )
                                    .await?;
                                Some(blocking(move || scan.collect()).await?)
                            }
                        };
                        // A few dates' rollups at a time become pieces, so that memory holds
                        // the pieces of the range and the rollup rows of a few dates only; the
                        // next dates are read while this batch is cut into pieces.
                        let files: Vec<_> = serving.into_values().collect();
                        let mut batches = files.chunks(ROLLUP_DATES_PER_READ).map(<[_]>::to_vec);
                        let read = |batch| rollups.read(batch, key, filter.clone(), span);
                        let mut rows = OptionFuture::from(batches.next().map(read)).await;
                        let mut pieces = Vec::new();
                        while let Some(batch) = rows.transpose()? {
                            let raw = raw.take().map_or_else(readings::empty, Ok);
                            let raw = raw.map_err(LoggedTableError::from)?;
                            let plan = plan.clone();
                            let cutting = blocking(move || plan.pieces(&batch, &raw));
                            let next = OptionFuture::from(batches.next().map(read));
                            let (cut, next) = tokio::join!(cutting, next);
                            pieces.push(cut?.lazy());
                            rows = next;
                        }
                        let union = UnionArgs {
                            rechunk: false,
                            ..Default::default()
                        };
                        Some(concat(pieces, union).map_err(LoggedTableError::from)?)
                    }
                    _ => None,
                };
                (readings, pieces)
            }
            None => (nothing()?, None),
        };
        let modelled = match at.usage {
            Some(None) if self.usage.is_empty().await => None,
            Some(version) => Some(
                usage::load(&self.usage, pricing, customer, filter, (from, to), version).await?,
            ),
            None => None,
        };
        Ok(Energy {
            measured,
            modelled,
            pieces,
        })
    }

    /// Every customer's energy at `sites` over [from, to), for sums per site (no workload).
    pub(super) async fn site_energy(
        &self,
        sites: &[&Id],
        span: (DateTime<Utc>, DateTime<Utc>),
        at: ReadAt,
        pricing: ((&[PowerModel], &[Site]), Option<&SlotPlan>),
    ) -> Result<Energy, ReportError> {
        let any_site = sites
            .iter()
            .map(|s| col(readings::SITE).eq(lit(s.to_string())))
            .reduce(Expr::or);
        self.energy(None, any_site, span, at, pricing, Level::Customers)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_span_reaches_back_to_the_readings_of_the_hour_before() {
        let us = |t: &str| t.parse::<DateTime<Utc>>().unwrap().timestamp_micros();
        let spans = [(us("2026-03-02T00:20:00Z"), us("2026-03-02T00:25:00Z"))];
        let dates: Vec<String> = dates_reaching(spans.into_iter()).into_iter().collect();
        assert_eq!(dates, ["2026-03-01", "2026-03-02"]);
    }
}
