//! Yearly average grid intensity per country, used only where neither intensity data nor the
//! zone's registered default covers a time. Source: Ember's 2021 per-country electricity generation
//! intensity (CC BY 4.0), mapped from ISO alpha-3 to zone codes (`fixtures/factors/`).
use super::ZoneCode;
use std::collections::HashMap;

const TABLE: &str = include_str!("../../fixtures/factors/default_factors.csv");

/// The shipped table: zone code -> gCO2e/kWh.
pub fn shipped() -> HashMap<ZoneCode, f64> {
    TABLE
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.splitn(3, ',');
            let zone = ZoneCode::parse(cells.next()?).ok()?;
            let factor = cells.next()?.parse::<f64>().ok()?;
            Some((zone, factor))
        })
        .collect()
}

/// The factor of a zone, or of its country for sub-national zones (`GB-13` -> `GB`).
pub fn lookup(table: &HashMap<ZoneCode, f64>, zone: &ZoneCode) -> Option<f64> {
    table.get(zone).copied().or_else(|| {
        let country = zone.as_str().split('-').next()?;
        ZoneCode::parse(country)
            .ok()
            .and_then(|c| table.get(&c).copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_maps_countries_and_their_regions() {
        let table = shipped();
        assert!(table.len() > 70);
        let zone = |z: &str| ZoneCode::parse(z).unwrap();
        assert_eq!(lookup(&table, &zone("GB")), Some(268.255));
        assert_eq!(lookup(&table, &zone("GB-13")), Some(268.255));
        assert_eq!(lookup(&table, &zone("US-CAL-CISO")), Some(378.625));
        assert_eq!(lookup(&table, &zone("XK")), None);
    }
}
