//! A customer's carbon statement for a closed period: the footprint computed from exactly the
//! versions the period recorded, with what it rests on (sites and their PUE, zones and their
//! residual mixes, the instruments that applied) and the method, sealed with a sha256 of its own
//! canonical JSON. The same statement comes out byte for byte whatever changed since the close.
use super::{Figures, FootprintQuery, FootprintRow, Pinned, RawQuery, ReportError, ReportSources};
use crate::domain::intensity::in_force;
use crate::domain::{Customer, Id, Instrument, Site, Zone, ZoneCode};
use crate::storage::intensity;
use crate::storage::periods::{Period, Versions};
use crate::storage::registry::RegistryData;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Bumped whenever the arithmetic of DESIGN §3 changes what a figure means.
pub const METHOD_VERSION: &str = "3";

/// What every statement says of how its figures were made.
pub const METHOD: &str = "Energy is measured per reading and split per instant at every edge \
(intensity interval, carry window, PUE schedule entry, instrument period, month). IT energy times \
the site's PUE in force is facility energy. Location-based emissions: facility energy times the \
grid intensity in force for the site's zone at that instant (actual, else estimated, else forecast, \
carried forward at most max_carry_forward_s, else the zone's default factor). Market-based \
emissions (GHG Protocol Scope 2): energy covered by contractual instruments at their factor, \
allocated pro rata over the instrument period, the rest at the zone's residual mix for the year, \
else location-based. Quality shares say which kind of intensity each kWh rests on. Embodied emissions (Scope 3, from version 2): each hardware reservation carries the machine's embodied kgCO2e times the reserved share of its resources times the reserved time over its lifespan (8,760 h a year), nothing before its service starts or after its lifespan ends. Also from version 2, \
where every facility and every IT meter of a site reported, the PUE is their measured ratio for \
that stretch (never below 1.0), and pue_measured_share says how much facility energy used it. \
At a site with the energy_proportional allocation, where every IT meter reported, the IT energy \
the meters measured beyond all workloads is spread over them in proportion to their measured \
energy (allocated_it_energy_kwh), and counts in their facility energy and emissions. From version \
3, at a site with the reserved_proportional allocation that remainder, at its average power over \
each metered stretch, goes to the customers by the capacity each reserved at that instant, as a \
(reserved capacity) row; and workloads without a meter post usage (vCPU, memory and GPU hours at \
an average utilisation) priced by a power model (Cloud Carbon Footprint's coefficients unless a \
machine class's model is named): that energy counts as attributed and is flagged in \
modelled_it_energy_kwh and modelled_share.";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    pub customer: String,
    /// The period as closed (its reissues are not part of any one statement).
    pub period: Period,
    /// 1 as closed; 2, 3, ... as reissued.
    pub statement_version: u32,
    /// Why this version was issued (none for the close).
    pub reason: Option<String>,
    /// The versions the figures were computed from.
    pub versions: Versions,
    pub method_version: String,
    pub method: String,
    /// For the whole period.
    pub totals: Figures,
    /// Per month (UTC), site, zone and workload.
    pub by_month: Vec<FootprintRow>,
    /// The sites the customer's energy was used at, with the PUE (and schedule) applied.
    pub sites: Vec<Site>,
    /// Their grid zones, with the default factors and residual mixes applied.
    pub zones: Vec<Zone>,
    /// The contractual instruments at those sites over the period (the customer's own and the
    /// site-wide ones, whose coverage is shared pro rata by energy).
    pub instruments: Vec<Instrument>,
    /// Per zone, which intensity sources and kinds were in force over the period, for how long.
    pub intensity_sources: Vec<IntensitySource>,
    /// sha256 (hex) of this statement's JSON without this field, as served.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"zone": "DE", "source": "electricity_maps", "kind": "actual", "hours": 718.5}))]
pub struct IntensitySource {
    pub zone: String,
    pub source: String,
    /// `actual`, `estimated` or `forecast`.
    pub kind: String,
    /// Hours of the period this source and kind were in force for the zone.
    pub hours: f64,
}

/// The intensity in force for `zones` over the period at the pinned version, by source and kind.
async fn intensity_sources(
    sources: &ReportSources,
    zones: &[ZoneCode],
    period: &Period,
    version: Option<u64>,
) -> Result<Vec<IntensitySource>, ReportError> {
    let Some(version) = version else {
        return Ok(Vec::new());
    };
    let stored = intensity::load(
        &sources.intensity,
        Some(zones),
        period.from,
        period.to,
        Some(version),
    )
    .await?;
    let mut hours: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for zone in zones {
        let points: Vec<_> = stored.iter().filter(|p| &p.zone == zone).cloned().collect();
        for stretch in in_force(&points) {
            let (start, end) = (stretch.start.max(period.from), stretch.end.min(period.to));
            if end > start {
                let key = (
                    zone.to_string(),
                    stretch.point.source.clone(),
                    stretch.point.kind.as_str().to_owned(),
                );
                *hours.entry(key).or_default() += (end - start).num_seconds() as f64 / 3600.0;
            }
        }
    }
    Ok(hours
        .into_iter()
        .map(|((zone, source, kind), hours)| IntensitySource {
            zone,
            source,
            kind,
            hours,
        })
        .collect())
}

impl Statement {
    /// The statement as served: its JSON with the seal in it.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Statement `issue` (1: as closed) of the period for `customer`, computed from the versions
/// that issue recorded, with `registry` the registry at those versions.
pub async fn statement(
    sources: &ReportSources,
    period: &Period,
    issue: (u32, Versions),
    customer: &Id,
    registry: RegistryData,
) -> Result<Statement, ReportError> {
    let (statement_version, versions) = issue;
    if !registry.contains::<Customer>(customer) {
        return Err(ReportError::UnknownCustomer(customer.clone()));
    }
    let query = FootprintQuery::parse(
        Some(customer.clone()),
        RawQuery {
            from: period.from,
            to: period.to,
            granularity: Some("month"),
            group_by: Some("site,zone,workload"),
            tz: None,
            workload: None,
            site: None,
        },
    )?;
    let pinned = Pinned { registry, versions };
    let footprint = sources.footprint_at(query, &pinned).await?;
    let rows = footprint.rows().map_err(ReportError::from)?;
    let totals = footprint.totals().map_err(ReportError::from)?;
    let used_sites: BTreeSet<&str> = rows.iter().filter_map(|r| r.site.as_deref()).collect();
    let sites: Vec<Site> = pinned
        .registry
        .list::<Site>()
        .into_iter()
        .filter(|site| used_sites.contains(site.id.as_str()))
        .collect();
    let used_zones: BTreeSet<&str> = sites.iter().map(|s| s.zone.as_str()).collect();
    let zones: Vec<Zone> = pinned
        .registry
        .list::<Zone>()
        .into_iter()
        .filter(|zone| used_zones.contains(zone.zone.as_str()))
        .collect();
    let instruments: Vec<Instrument> = pinned
        .registry
        .list::<Instrument>()
        .into_iter()
        .filter(|i| {
            used_sites.contains(i.site.as_str())
                && i.from < period.to
                && i.to > period.from
                && i.customer.as_ref().is_none_or(|c| c == customer)
        })
        .collect();
    let zone_codes: Vec<ZoneCode> = sites
        .iter()
        .map(|s| s.zone.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let intensity_sources =
        intensity_sources(sources, &zone_codes, period, versions.intensity).await?;
    let mut statement = Statement {
        customer: customer.to_string(),
        // The period as closed: later reissues must not change an earlier statement's bytes.
        period: Period {
            reissues: Vec::new(),
            ..period.clone()
        },
        statement_version,
        reason: period
            .reissues
            .iter()
            .find(|reissue| reissue.version == statement_version)
            .map(|reissue| reissue.reason.clone()),
        versions,
        method_version: METHOD_VERSION.to_owned(),
        method: METHOD.to_owned(),
        totals,
        by_month: rows,
        sites,
        zones,
        instruments,
        intensity_sources,
        sha256: String::new(),
    };
    let unsealed =
        serde_json::to_vec(&statement).map_err(|e| ReportError::Render(e.to_string()))?;
    statement.sha256 = hex::encode(Sha256::digest(&unsealed));
    Ok(statement)
}
