//! Market-based Scope 2 (DESIGN §3 step 5): what share of facility energy each instrument covers,
//! and the resulting factor per segment and customer. Plain Rust over small aggregates.
use super::timeline::Segment;
use crate::domain::{Id, Instrument, Site, Zone, ZoneCode};
use chrono::{DateTime, Datelike, Utc};
use std::collections::HashMap;

/// Facility energy of one customer at one site over one coverage segment.
#[derive(Debug, Clone)]
pub struct PeriodEnergy {
    pub site: Id,
    pub customer: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub facility_kwh: f64,
}

fn active(instrument: &Instrument, site: &Id, t: DateTime<Utc>) -> bool {
    &instrument.site == site && instrument.from <= t && t < instrument.to
}

fn within(instrument: &Instrument, energy: &PeriodEnergy) -> bool {
    energy.site == instrument.site && instrument.from <= energy.start && energy.end <= instrument.to
}

fn cover(instrument_kwh: f64, facility_kwh: f64) -> f64 {
    if facility_kwh > 0.0 {
        (instrument_kwh / facility_kwh).min(1.0)
    } else {
        0.0
    }
}

/// Covered share of each instrument: `min(1, instrument energy / facility energy in its period)`,
/// customer instruments on their customer's energy first, site instruments on what is left.
pub fn coverage_shares(instruments: &[Instrument], energy: &[PeriodEnergy]) -> HashMap<Id, f64> {
    let mut shares = HashMap::new();
    for instrument in instruments {
        if let Some(customer) = &instrument.customer {
            let facility: f64 = energy
                .iter()
                .filter(|e| within(instrument, e) && e.customer == customer.as_str())
                .map(|e| e.facility_kwh)
                .sum();
            shares.insert(
                instrument.id.clone(),
                cover(instrument.energy_mwh * 1000.0, facility),
            );
        }
    }
    let customer_covered = |e: &PeriodEnergy| -> f64 {
        instruments
            .iter()
            .filter(|i| {
                i.customer
                    .as_ref()
                    .is_some_and(|c| c.as_str() == e.customer)
            })
            .filter(|i| active(i, &e.site, e.start))
            .map(|i| shares.get(&i.id).copied().unwrap_or(0.0))
            .sum::<f64>()
            .min(1.0)
    };
    let mut site_shares = Vec::new();
    for instrument in instruments.iter().filter(|i| i.customer.is_none()) {
        let uncovered: f64 = energy
            .iter()
            .filter(|e| within(instrument, e))
            .map(|e| e.facility_kwh * (1.0 - customer_covered(e)))
            .sum();
        site_shares.push((
            instrument.id.clone(),
            cover(instrument.energy_mwh * 1000.0, uncovered),
        ));
    }
    shares.extend(site_shares);
    shares
}

/// The market-based factor of a segment's energy, and the share of it priced at the location-based
/// intensity because the zone has no residual mix for that year.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketFactor {
    pub gco2e_per_kwh: f64,
    pub location_fallback_share: f64,
    /// The share covered by contractual instruments (the customer's own, then the site's).
    pub instrument_share: f64,
}

/// Weighted factor of the instruments in force; shares over 1 in total are scaled down to 1.
fn blend<'i>(
    instruments: impl Iterator<Item = &'i Instrument>,
    shares: &HashMap<Id, f64>,
) -> (f64, f64) {
    let parts: Vec<(f64, f64)> = instruments
        .map(|i| (shares.get(&i.id).copied().unwrap_or(0.0), i.gco2e_per_kwh))
        .collect();
    let total: f64 = parts.iter().map(|(share, _)| share).sum();
    let scale = if total > 1.0 { 1.0 / total } else { 1.0 };
    let emissions = parts
        .iter()
        .map(|(share, factor)| share * scale * factor)
        .sum();
    (total.min(1.0), emissions)
}

pub struct Market<'a> {
    pub sites: &'a [Site],
    pub zones: &'a HashMap<ZoneCode, Zone>,
    pub instruments: &'a [Instrument],
    pub shares: &'a HashMap<Id, f64>,
}

impl Market<'_> {
    /// The factor for `customer`'s energy in `segment` (`None`: a customer with no instrument of
    /// its own there).
    pub fn factor(&self, segment: &Segment, customer: Option<&str>) -> MarketFactor {
        let site = &self.sites[segment.site];
        let (customer_covered, customer_emissions) = blend(
            self.instruments.iter().filter(|i| {
                active(i, &site.id, segment.start)
                    && i.customer.as_ref().map(Id::as_str) == customer
                    && customer.is_some()
            }),
            self.shares,
        );
        let (site_covered, site_emissions) = blend(
            self.instruments
                .iter()
                .filter(|i| i.customer.is_none() && active(i, &site.id, segment.start)),
            self.shares,
        );
        let rest = (1.0 - customer_covered) * (1.0 - site_covered);
        let residual = self.zones.get(&site.zone).and_then(|z| {
            z.residual_mix_gco2e_per_kwh
                .get(&segment.start.year())
                .copied()
        });
        let (fallback, location_fallback_share) = match residual {
            Some(residual) => (residual, 0.0),
            None => (segment.intensity.unwrap_or(0.0), rest),
        };
        MarketFactor {
            gco2e_per_kwh: customer_emissions
                + (1.0 - customer_covered) * site_emissions
                + rest * fallback,
            location_fallback_share,
            instrument_share: 1.0 - rest,
        }
    }

    /// Customers with an instrument of their own at some site (they get their own factors).
    pub fn customers_with_instruments(&self) -> Vec<(usize, String)> {
        let mut found: Vec<(usize, String)> = self
            .instruments
            .iter()
            .filter_map(|i| {
                let site = self.sites.iter().position(|s| s.id == i.site)?;
                Some((site, i.customer.as_ref()?.to_string()))
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }
}
