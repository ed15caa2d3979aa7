//! Which mapping a series falls under, and where its energy goes: a workload of a customer, a
//! functional unit, or a site meter, each checked against the registry and the key's sites.
use super::interned::FastMap;
use super::series::{Resolution, Target};
use super::{IngestContext, Series};
use crate::domain::mapping::{anchored, render, Mapping};
use crate::domain::meter::MeterKind;
use crate::domain::{Customer, Id, Site};
use crate::storage::Registry;
use std::collections::HashMap;
use std::sync::Arc;

/// Resolutions by series key, for one registry version: a series sends again and again, and
/// matching, rendering templates and checking ids for it each time was a fifth of a request.
/// Only keys that may write every site use it (a narrower key's resolution also depends on the key).
/// The series state keeps its mapped series' resolutions too (see `series::State::convert`): this
/// cache answers for the others, and for series the state has not seen under this version.
#[derive(Default)]
pub(super) struct Cache {
    version: u64,
    by_key: FastMap<String, Resolution>,
}

/// Series keys remembered at most; beyond, the cache starts over.
const MAX_CACHED: usize = 200_000;

/// What resolving reads from the registry, read once a request and only on a cache miss.
struct Registered {
    mappings: Mappings,
    sites: HashMap<Id, Site>,
    customers: HashMap<Id, Customer>,
}

impl Registered {
    fn load(registry: &Registry) -> Self {
        Self {
            mappings: Mappings::load(registry),
            sites: registry
                .list::<Site>()
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            customers: registry
                .list::<Customer>()
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        }
    }
}

impl Cache {
    /// Resolves the series of one request, made with `ctx`.
    pub(super) fn resolver<'c, 'x>(&'c mut self, ctx: &'c IngestContext<'x>) -> Resolver<'c, 'x> {
        // The version is read before the registry: a change landing in between is cached under
        // the older version, which the next request sees as stale.
        let version = ctx.registry.version();
        if version != self.version || self.by_key.len() > MAX_CACHED {
            self.by_key.clear();
            self.version = version;
        }
        Resolver {
            cache: self,
            ctx,
            registered: None,
            cacheable: ctx.grant.may_write_every_site(),
        }
    }
}

/// One request's resolutions: from the cache, or from the registry (read once, on the first miss).
pub(super) struct Resolver<'c, 'x> {
    cache: &'c mut Cache,
    ctx: &'c IngestContext<'x>,
    registered: Option<Registered>,
    cacheable: bool,
}

impl Resolver<'_, '_> {
    /// The registry version whose resolutions this request may reuse; none for a key that may
    /// write only some sites (its resolutions depend on the key).
    pub(super) fn reusable(&self) -> Option<u64> {
        self.cacheable.then_some(self.cache.version)
    }

    pub(super) fn resolve(&mut self, one: &Series) -> Resolution {
        let key = one.labels.key();
        let cached = self.cache.by_key.get(key).filter(|_| self.cacheable);
        if let Some(resolution) = cached {
            return resolution.clone();
        }
        let ctx = self.ctx;
        let r = self
            .registered
            .get_or_insert_with(|| Registered::load(ctx.registry));
        let resolution = match r.mappings.first_match(one) {
            Some(mapping) => resolve(mapping, one, ctx, &r.sites, &r.customers),
            None => Resolution::Unmapped,
        };
        if self.cacheable {
            self.cache.by_key.insert(key.to_owned(), resolution.clone());
        }
        resolution
    }
}

/// Mappings in the order they are tried, with their matchers compiled.
struct Mappings(Vec<(Mapping, Vec<(String, regex::Regex)>)>);

impl Mappings {
    fn load(registry: &Registry) -> Self {
        let mut all: Vec<Mapping> = registry.list::<Mapping>();
        all.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Self(
            all.into_iter()
                .map(|m| {
                    // Stored mappings passed validation, so every matcher compiles.
                    let matchers = m
                        .matchers
                        .iter()
                        .filter_map(|(l, r)| {
                            Some((l.clone(), regex::Regex::new(&anchored(r)).ok()?))
                        })
                        .collect();
                    (m, matchers)
                })
                .collect(),
        )
    }

    fn first_match(&self, series: &Series) -> Option<&Mapping> {
        let name = series.label("__name__")?;
        self.0
            .iter()
            .find(|(m, matchers)| {
                m.metric == name
                    && matchers
                        .iter()
                        .all(|(label, regex)| regex.is_match(series.label(label).unwrap_or("")))
            })
            .map(|(m, _)| m)
    }
}

fn lookup(
    mapping: &Mapping,
    field: &str,
    template: &str,
    series: &Series,
) -> Result<Id, &'static str> {
    let rendered = render(template, |name| series.label(name)).map_err(|_| "missing_label")?;
    let value = mapping
        .maps
        .get(field)
        .and_then(|map| map.get(&rendered))
        .cloned()
        .unwrap_or(rendered);
    Id::parse(&value).map_err(|_| "invalid_id")
}

fn resolve(
    mapping: &Mapping,
    series: &Series,
    ctx: &IngestContext<'_>,
    sites: &HashMap<Id, Site>,
    customers: &HashMap<Id, Customer>,
) -> Resolution {
    if let (Some(meter), Some(kind)) = (&mapping.meter, mapping.meter_kind) {
        return resolve_meter(mapping, series, ctx, sites, (meter, kind));
    }
    let ids = (
        lookup(mapping, "site", &mapping.site, series),
        lookup(mapping, "customer", &mapping.customer, series),
        lookup(mapping, "workload", &mapping.workload, series),
    );
    let (site, customer, workload) = match ids {
        (Ok(s), Ok(c), Ok(w)) => (s, c, w),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
            return Resolution::Refused(reason)
        }
    };
    let Some(site_record) = sites.get(&site) else {
        return Resolution::Refused("unknown_site");
    };
    let Some(customer_record) = customers.get(&customer) else {
        return Resolution::Refused("unknown_customer");
    };
    if !ctx.grant.may_write_site(&site) {
        return Resolution::Refused("site_not_allowed_for_key");
    }
    let until_ms = [site_record.retired_at, customer_record.retired_at]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.timestamp_millis());
    Resolution::Mapped {
        target: Arc::new(Target {
            site: site.to_string(),
            customer: customer.to_string(),
            workload: workload.to_string(),
            functional_unit: mapping.functional_unit.clone(),
            meter_kind: None,
        }),
        unit: mapping.unit,
        until_ms,
    }
}

/// A series mapped to a site meter: the site must exist and the key may write it.
fn resolve_meter(
    mapping: &Mapping,
    series: &Series,
    ctx: &IngestContext<'_>,
    sites: &HashMap<Id, Site>,
    (meter, kind): (&str, MeterKind),
) -> Resolution {
    let ids = (
        lookup(mapping, "site", &mapping.site, series),
        lookup(mapping, "meter", meter, series),
    );
    let (site, meter) = match ids {
        (Ok(site), Ok(meter)) => (site, meter),
        (Err(reason), _) | (_, Err(reason)) => return Resolution::Refused(reason),
    };
    let Some(site_record) = sites.get(&site) else {
        return Resolution::Refused("unknown_site");
    };
    if !ctx.grant.may_write_site(&site) {
        return Resolution::Refused("site_not_allowed_for_key");
    }
    Resolution::Mapped {
        target: Arc::new(Target {
            site: site.to_string(),
            customer: String::new(),
            workload: meter.to_string(),
            functional_unit: None,
            meter_kind: Some(kind),
        }),
        unit: mapping.unit,
        until_ms: site_record.retired_at.map(|t| t.timestamp_millis()),
    }
}
