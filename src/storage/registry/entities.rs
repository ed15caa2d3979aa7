//! The registry's kinds of record: what each one names (and must exist) and what names it (and
//! blocks its deletion).
use super::{Entity, RegistryData, RegistryError, READINGS};
use crate::domain::capacity::Capacity;
use crate::domain::embodied::{peak_reserved, Hardware, Reservation};
use crate::domain::mapping::{literal, Mapping};
use crate::domain::usage::PowerModel;
use crate::domain::{Customer, Id, Instrument, Site, Zone, ZoneCode};
use std::collections::BTreeMap;

fn instrument_naming(data: &RegistryData, names: impl Fn(&Instrument) -> bool) -> Option<String> {
    data.instruments
        .values()
        .find(|instrument| names(instrument))
        .map(|instrument| format!("instrument {}", instrument.id))
}

/// A mapping whose fixed (literal) site or customer is `key`.
fn mapping_naming(
    data: &RegistryData,
    template: impl Fn(&Mapping) -> &str,
    key: &Id,
) -> Option<String> {
    data.mappings
        .values()
        .find(|mapping| literal(template(mapping)) == Some(key.as_str()))
        .map(|mapping| format!("telemetry mapping {}", mapping.id))
}

impl Entity for Site {
    type Key = Id;
    const KIND: &'static str = "site";
    const READINGS_COLUMN: Option<&'static str> = Some(crate::storage::readings::SITE);
    fn key(&self) -> &Id {
        &self.id
    }
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        match &self.power_model {
            Some(model) if !data.power_models.contains_key(model) => {
                Err(RegistryError::UnknownReference {
                    kind: PowerModel::KIND,
                    id: model.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.sites
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.sites
    }
    fn referenced_by(key: &Id, data: &RegistryData) -> Option<String> {
        if data.sites_with_readings.contains(key) {
            return Some(READINGS.into());
        }
        instrument_naming(data, |instrument| &instrument.site == key)
            .or_else(|| mapping_naming(data, |m| &m.site, key))
            .or_else(|| {
                data.hardware
                    .values()
                    .find(|hardware| &hardware.site == key)
                    .map(|hardware| format!("hardware {}", hardware.id))
            })
            .or_else(|| capacity_naming(data, |c| &c.site == key))
    }
}

impl Entity for Customer {
    type Key = Id;
    const KIND: &'static str = "customer";
    const READINGS_COLUMN: Option<&'static str> = Some(crate::storage::readings::CUSTOMER);
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.customers
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.customers
    }
    fn referenced_by(key: &Id, data: &RegistryData) -> Option<String> {
        if data.customers_with_readings.contains(key) {
            return Some(READINGS.into());
        }
        instrument_naming(data, |instrument| instrument.customer.as_ref() == Some(key))
            .or_else(|| mapping_naming(data, |m| &m.customer, key))
            .or_else(|| reservation_naming(data, |r| &r.customer == key))
            .or_else(|| capacity_naming(data, |c| &c.customer == key))
    }
}

impl Entity for Zone {
    type Key = ZoneCode;
    const KIND: &'static str = "zone";
    fn key(&self) -> &ZoneCode {
        &self.zone
    }
    fn table(data: &RegistryData) -> &BTreeMap<ZoneCode, Self> {
        &data.zones
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<ZoneCode, Self> {
        &mut data.zones
    }
    /// A site's energy is priced with its zone's factors: they stay while a site is in the zone.
    fn referenced_by(key: &ZoneCode, data: &RegistryData) -> Option<String> {
        data.sites
            .values()
            .find(|site| &site.zone == key)
            .map(|site| format!("site {}", site.id))
    }
}

impl Entity for Instrument {
    type Key = Id;
    const KIND: &'static str = "instrument";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.instruments
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.instruments
    }
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        if !data.sites.contains_key(&self.site) {
            return Err(RegistryError::UnknownReference {
                kind: Site::KIND,
                id: self.site.to_string(),
            });
        }
        match &self.customer {
            Some(customer) if !data.customers.contains_key(customer) => {
                Err(RegistryError::UnknownReference {
                    kind: Customer::KIND,
                    id: customer.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}

impl Entity for Mapping {
    type Key = Id;
    const KIND: &'static str = "telemetry mapping";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.mappings
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.mappings
    }
    /// A fixed site or customer must exist (a template's values are checked per series).
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        let missing = |kind: &'static str, id: &str| RegistryError::UnknownReference {
            kind,
            id: id.to_owned(),
        };
        if let Some(site) = literal(&self.site) {
            if !data.sites.keys().any(|s| s.as_str() == site) {
                return Err(missing(Site::KIND, site));
            }
        }
        // A site meter's mapping names no customer.
        if let Some(customer) = literal(&self.customer).filter(|c| !c.is_empty()) {
            if !data.customers.keys().any(|c| c.as_str() == customer) {
                return Err(missing(Customer::KIND, customer));
            }
        }
        Ok(())
    }
}

fn reservation_naming(data: &RegistryData, names: impl Fn(&Reservation) -> bool) -> Option<String> {
    data.reservations
        .values()
        .find(|reservation| names(reservation))
        .map(|reservation| format!("reservation {}", reservation.id))
}

/// Refuses a machine whose reservations (with `replacing` swapped in) would hold more than it has.
fn check_capacity(
    data: &RegistryData,
    hardware: &Hardware,
    replacing: Option<&Reservation>,
) -> Result<(), RegistryError> {
    let held = data
        .reservations
        .values()
        .filter(|r| r.hardware == hardware.id && replacing.is_none_or(|new| new.id != r.id))
        .chain(replacing);
    let peak = peak_reserved(held);
    if peak > hardware.total * (1.0 + 1e-12) {
        return Err(RegistryError::Overbooked {
            hardware: hardware.id.to_string(),
            total: hardware.total,
            unit: format!("{:?}", hardware.shared_by).to_lowercase(),
            peak,
        });
    }
    Ok(())
}

impl Entity for Hardware {
    type Key = Id;
    const KIND: &'static str = "hardware";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.hardware
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.hardware
    }
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        if !data.sites.contains_key(&self.site) {
            return Err(RegistryError::UnknownReference {
                kind: Site::KIND,
                id: self.site.to_string(),
            });
        }
        check_capacity(data, self, None)
    }
    fn referenced_by(key: &Id, data: &RegistryData) -> Option<String> {
        reservation_naming(data, |r| &r.hardware == key)
    }
}

impl Entity for Reservation {
    type Key = Id;
    const KIND: &'static str = "reservation";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.reservations
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.reservations
    }
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        if !data.customers.contains_key(&self.customer) {
            return Err(RegistryError::UnknownReference {
                kind: Customer::KIND,
                id: self.customer.to_string(),
            });
        }
        let hardware =
            data.hardware
                .get(&self.hardware)
                .ok_or_else(|| RegistryError::UnknownReference {
                    kind: Hardware::KIND,
                    id: self.hardware.to_string(),
                })?;
        check_capacity(data, hardware, Some(self))
    }
}

fn capacity_naming(data: &RegistryData, names: impl Fn(&Capacity) -> bool) -> Option<String> {
    data.capacity
        .values()
        .find(|capacity| names(capacity))
        .map(|capacity| format!("capacity {}", capacity.id))
}

impl Entity for Capacity {
    type Key = Id;
    const KIND: &'static str = "capacity";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.capacity
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.capacity
    }
    fn check_references(&self, data: &RegistryData) -> Result<(), RegistryError> {
        if !data.sites.contains_key(&self.site) {
            return Err(RegistryError::UnknownReference {
                kind: Site::KIND,
                id: self.site.to_string(),
            });
        }
        if !data.customers.contains_key(&self.customer) {
            return Err(RegistryError::UnknownReference {
                kind: Customer::KIND,
                id: self.customer.to_string(),
            });
        }
        Ok(())
    }
}

impl Entity for PowerModel {
    type Key = Id;
    const KIND: &'static str = "power model";
    fn key(&self) -> &Id {
        &self.id
    }
    fn table(data: &RegistryData) -> &BTreeMap<Id, Self> {
        &data.power_models
    }
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Id, Self> {
        &mut data.power_models
    }
    /// Stored usage is priced with its model whenever a report runs: the model stays, as it
    /// does while a site names it as its default.
    fn referenced_by(key: &Id, data: &RegistryData) -> Option<String> {
        if data.power_models_in_use.contains(key) {
            return Some("usage records".to_owned());
        }
        data.sites
            .values()
            .find(|site| site.power_model.as_ref() == Some(key))
            .map(|site| format!("site {}", site.id))
    }
}
