//! Footprint reports: load what the accounting method needs from the stores, run it off the async
//! executor, and render the result as JSON rows, NDJSON, CSV or Parquet.
mod energy;
mod reconciliation;
mod render;
pub mod sci;
pub mod statement;
pub mod statement_formats;

pub use reconciliation::{parquet as reconciliation_parquet, ReconciliationRow};
pub use render::{local_rfc3339, Figures, FootprintRow, QualityShares};

use crate::accounting::allocation::Capacities;
use crate::accounting::embodied::Holdings;
use crate::accounting::rollup::SlotPlan;
use crate::accounting::timeline::{Granularity, Window};
use crate::accounting::{self, measured_pue, Context, Energy, GroupKey, Report};
use crate::domain::capacity::Capacity;
use crate::domain::embodied::{Hardware, Reservation};
use crate::domain::usage::PowerModel;
use crate::domain::{Allocation, Customer, Id, Instrument, Site, Zone, ZoneCode};
use crate::storage::logged::{blocking, LoggedTable, LoggedTableError};
use crate::storage::registry::RegistryData;
use crate::storage::rollups::Level;
use crate::storage::{intensity, meters, readings, Registry};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use energy::{nothing, ReadAt};
use polars::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// A validated report request.
#[derive(Debug, Clone)]
pub struct FootprintQuery {
    pub customer: Option<Id>,
    pub window: Window,
    pub group_by: Vec<GroupKey>,
    /// Only these workloads and sites (empty: all). Instruments' shares still rest on all the
    /// energy of their periods, so a filtered view's figures are exactly its rows of the whole.
    pub workloads: Vec<Id>,
    pub sites: Vec<Id>,
}

/// The report parameters as a client sends them.
#[derive(Debug, Clone, Copy)]
pub struct RawQuery<'a> {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Option<&'a str>,
    pub group_by: Option<&'a str>,
    pub tz: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub site: Option<&'a str>,
}

/// A comma list of ids (`workload=api,batch`); `None` or blank: no filter.
fn id_list(name: &str, raw: Option<&str>) -> Result<Vec<Id>, ReportError> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            Id::parse(v)
                .map_err(|reason| ReportError::BadParameter(format!("{name} {v:?}: {reason}")))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    RangeTooLong(String),
    #[error("customer {0} does not exist")]
    UnknownCustomer(Id),
    #[error(transparent)]
    Store(#[from] LoggedTableError),
    #[error("cannot render the report: {0}")]
    Render(String),
}

impl From<PolarsError> for ReportError {
    fn from(error: PolarsError) -> Self {
        ReportError::Render(error.to_string())
    }
}

/// Longest range per granularity: hourly rows beyond a month belong in an export at day level.
fn max_range(granularity: Granularity) -> Duration {
    match granularity {
        Granularity::Hour => Duration::days(31),
        Granularity::Day => Duration::days(366),
        Granularity::Week
        | Granularity::Month
        | Granularity::Quarter
        | Granularity::Year
        | Granularity::Total => Duration::days(3660),
    }
}

impl FootprintQuery {
    /// The query cut at bucket starts into consecutive queries (a week of hourly or daily
    /// buckets each, one bucket of a coarser granularity), so that an export computes and holds
    /// one part at a time. Their rows, in order, are the rows of the whole: each bucket's
    /// figures rest on that bucket's instants alone, and instruments' shares on their whole
    /// periods, whatever the window.
    pub fn in_parts(&self) -> Vec<FootprintQuery> {
        let window = self.window;
        let buckets_per_part = match window.granularity {
            Granularity::Total => return vec![self.clone()],
            Granularity::Hour => 7 * 24,
            Granularity::Day => 7,
            Granularity::Week | Granularity::Month | Granularity::Quarter | Granularity::Year => 1,
        };
        let starts = window.bucket_edges(window.from, window.to);
        let cuts = (starts.into_iter().skip(buckets_per_part - 1)).step_by(buckets_per_part);
        let bounds: Vec<_> = std::iter::once(window.from)
            .chain(cuts)
            .chain(std::iter::once(window.to))
            .collect();
        (bounds.windows(2))
            .map(|bound| FootprintQuery {
                window: Window {
                    from: bound[0],
                    to: bound[1],
                    ..window
                },
                ..self.clone()
            })
            .collect()
    }

    /// Checks raw parameters (DESIGN §4): range order and length, granularity, groups, time zone.
    pub fn parse(customer: Option<Id>, raw: RawQuery<'_>) -> Result<Self, ReportError> {
        let RawQuery {
            from,
            to,
            granularity,
            group_by,
            tz,
            workload,
            site,
        } = raw;
        if from >= to {
            return Err(ReportError::BadParameter("from must be before to".into()));
        }
        let granularity = match granularity {
            None => Granularity::Total,
            Some(raw) => Granularity::parse(raw).ok_or_else(|| {
                ReportError::BadParameter(format!(
                    "granularity {raw:?} is not one of hour, day, week, month, quarter, year, total"
                ))
            })?,
        };
        let mut groups = Vec::new();
        for raw in group_by
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            let key = GroupKey::parse(raw).ok_or_else(|| {
                ReportError::BadParameter(format!(
                    "group_by {raw:?} is not one of customer, workload, site, zone"
                ))
            })?;
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
        let tz: Tz = match tz {
            None => chrono_tz::UTC,
            Some(raw) => raw.parse().map_err(|_| {
                ReportError::BadParameter(format!("tz {raw:?} is not an IANA time zone"))
            })?,
        };
        let limit = max_range(granularity);
        if to - from > limit {
            return Err(ReportError::RangeTooLong(format!(
                "a {} report may span at most {} days; use a coarser granularity or several requests",
                granularity.as_str(),
                limit.num_days()
            )));
        }
        Ok(Self {
            customer,
            window: Window {
                from,
                to,
                granularity,
                tz,
            },
            group_by: groups,
            workloads: id_list("workload", workload)?,
            sites: id_list("site", site)?,
        })
    }
}

/// What reports read from.
pub struct ReportSources {
    pub registry: Arc<Registry>,
    pub readings: Arc<LoggedTable>,
    pub intensity: Arc<LoggedTable>,
    pub functional_units: Arc<LoggedTable>,
    pub meters: Arc<LoggedTable>,
    pub usage: Arc<LoggedTable>,
    pub default_factors: Arc<HashMap<ZoneCode, f64>>,
    pub max_carry_forward: Duration,
    /// Energy rollups, read wherever they serve (`None`: reports read readings only).
    pub rollups: Option<Arc<crate::storage::rollups::Rollups>>,
}

/// The report, and the readings table version committed when it ran (the report also sees
/// acknowledged readings not yet flushed into that version).
pub struct Footprint {
    pub query: FootprintQuery,
    pub report: Report,
    pub table_version: Option<u64>,
    pub versions: Versions,
}

pub use crate::storage::periods::Versions;

/// The state a report reads: the registry at a version and the tables at versions (`None`:
/// nothing committed then, so nothing to read).
pub struct Pinned {
    pub registry: RegistryData,
    pub versions: Versions,
}

impl ReportSources {
    /// The versions the tables and the registry stand at, as this replica has read them.
    pub async fn versions(&self) -> Versions {
        Versions {
            readings: self.readings.table_version().await,
            intensity: self.intensity.table_version().await,
            registry: self.registry.version(),
            meters: self.meters.table_version().await,
            usage: self.usage.table_version().await,
        }
    }

    /// The report over the latest state: every acknowledged reading, the registry as it is now.
    pub async fn footprint(&self, query: FootprintQuery) -> Result<Footprint, ReportError> {
        let (registry_version, registry) = self.registry.snapshot();
        let versions = Versions {
            registry: registry_version,
            ..self.versions().await
        };
        self.report(query, &registry, versions, false).await
    }

    /// The report exactly as of `pinned`: the same numbers however the data changed since.
    pub async fn footprint_at(
        &self,
        query: FootprintQuery,
        pinned: &Pinned,
    ) -> Result<Footprint, ReportError> {
        self.report(query, &pinned.registry, pinned.versions, true)
            .await
    }

    async fn report(
        &self,
        query: FootprintQuery,
        registry: &RegistryData,
        versions: Versions,
        pinned: bool,
    ) -> Result<Footprint, ReportError> {
        if let Some(customer) = &query.customer {
            if !registry.contains::<Customer>(customer) {
                return Err(ReportError::UnknownCustomer(customer.clone()));
            }
        }
        let window = query.window;
        let sites: Vec<Site> = registry.list::<Site>();
        let zones: HashMap<ZoneCode, Zone> = registry
            .list::<Zone>()
            .into_iter()
            .map(|z| (z.zone.clone(), z))
            .collect();
        let instruments: Vec<Instrument> = registry.list::<Instrument>();
        let holdings = Holdings::new(
            &registry.list::<Hardware>(),
            &registry.list::<Reservation>(),
            query.customer.as_ref(),
            &query.workloads,
            &query.sites,
        );
        // Pinned to a version that did not exist yet: that table held nothing then.
        let at = |version: Option<u64>| match (pinned, version) {
            (false, _) => Some(None),
            (true, Some(version)) => Some(Some(version)),
            (true, None) => None,
        };
        let mut zone_codes: Vec<ZoneCode> = sites.iter().map(|s| s.zone.clone()).collect();
        zone_codes.sort();
        zone_codes.dedup();
        let points_from = Context::points_from(&window, self.max_carry_forward);
        let points = match at(versions.intensity) {
            Some(version) => {
                intensity::load(
                    &self.intensity,
                    Some(&zone_codes),
                    points_from,
                    window.to,
                    version,
                )
                .await?
            }
            None => Vec::new(),
        };
        let read_at = ReadAt {
            readings: at(versions.readings),
            usage: at(versions.usage),
        };
        let models = registry.list::<PowerModel>();
        let capacities = Capacities::new(registry.list::<Capacity>()).scoped(
            query.customer.as_ref(),
            &query.workloads,
            &query.sites,
        );
        let table_version = versions.readings;
        let any_of = |column: &'static str, ids: &[Id]| {
            ids.iter()
                .map(|id| col(column).eq(lit(id.to_string())))
                .reduce(Expr::or)
        };
        let filter = [
            any_of(readings::WORKLOAD, &query.workloads),
            any_of(readings::SITE, &query.sites),
        ]
        .into_iter()
        .flatten()
        .reduce(Expr::and);
        let relevant = accounting::relevant_instruments(&sites, &instruments, &window);
        // Meters, instruments and allocation reach over the window and the instruments' periods.
        let span_from = relevant.iter().map(|i| i.from).fold(
            window.from - crate::accounting::timeline::LOOKBACK,
            DateTime::min,
        );
        let span_to = relevant.iter().map(|i| i.to).fold(window.to, DateTime::max);
        let metered = match at(versions.meters) {
            Some(version) => meters::load(&self.meters, None, span_from, span_to, version).await?,
            None => Vec::new(),
        };
        let loaded = Loaded {
            measured_pue: measured_pue::pieces(&metered),
            it_pieces: measured_pue::it_pieces(&metered),
            sites,
            zones,
            default_factors: self.default_factors.clone(),
            points,
            instruments,
            holdings,
            capacities,
            max_carry_forward: self.max_carry_forward,
        };
        let plan = (self.rollups.as_ref()).map(|_| SlotPlan::new(&loaded.context(), &window));
        let pricing = ((models.as_slice(), loaded.sites.as_slice()), plan.as_ref());
        // Workloads matter to a report that groups or filters by them, or counts hardware they
        // held; any other reads the rollups summed per customer.
        let level = match query.group_by.contains(&GroupKey::Workload)
            || !query.workloads.is_empty()
            || !loaded.holdings.is_empty()
        {
            true => Level::Workloads,
            false => Level::Customers,
        };
        let window_energy = self
            .energy(
                query.customer.as_ref(),
                filter,
                (window.from, window.to),
                read_at,
                pricing,
                level,
            )
            .await?;
        let no_energy = || -> Result<Energy, ReportError> { Ok(Energy::measured(nothing()?)) };
        // Shares rest on all the energy of an instrument's whole period, whoever asks.
        let period_energy = match (
            relevant.iter().map(|i| i.from).min(),
            relevant.iter().map(|i| i.to).max(),
        ) {
            (Some(from), Some(to)) => {
                let at_sites: Vec<&Id> = relevant.iter().map(|i| &i.site).collect();
                self.site_energy(&at_sites, (from, to), read_at, pricing)
                    .await?
            }
            _ => no_energy()?,
        };
        // An allocating site spreads what its IT meters measured beyond all its workloads by
        // every customer's energy or reserved capacity, whoever asks.
        let allocating: Vec<&Id> = (loaded.sites.iter())
            .filter(|s| s.allocation != Allocation::None)
            .map(|s| &s.id)
            .filter(|id| loaded.it_pieces.contains_key(*id))
            .collect();
        let site_energy = if allocating.is_empty() {
            no_energy()?
        } else {
            self.site_energy(&allocating, (span_from, span_to), read_at, pricing)
                .await?
        };
        let group_by = query.group_by.clone();
        let report = blocking(move || {
            accounting::footprint(
                &loaded.context(),
                &window,
                &group_by,
                window_energy,
                period_energy,
                site_energy,
            )
        })
        .await?;
        Ok(Footprint {
            query,
            report,
            table_version,
            versions,
        })
    }
}

/// What a report loads besides energy, owned, so that its slot plan and its accounting (off the
/// async executor) read the same.
struct Loaded {
    sites: Vec<Site>,
    zones: HashMap<ZoneCode, Zone>,
    default_factors: Arc<HashMap<ZoneCode, f64>>,
    points: Vec<crate::domain::intensity::IntensityPoint>,
    instruments: Vec<Instrument>,
    holdings: Holdings,
    measured_pue: HashMap<Id, Vec<measured_pue::PuePiece>>,
    it_pieces: HashMap<Id, Vec<measured_pue::ItPiece>>,
    capacities: Capacities,
    max_carry_forward: Duration,
}

impl Loaded {
    fn context(&self) -> Context<'_> {
        Context {
            sites: &self.sites,
            zones: &self.zones,
            default_factors: &self.default_factors,
            points: &self.points,
            instruments: &self.instruments,
            holdings: &self.holdings,
            measured_pue: &self.measured_pue,
            it_pieces: &self.it_pieces,
            capacities: &self.capacities,
            max_carry_forward: self.max_carry_forward,
        }
    }
}
