//! The registry: sites, customers, zones, instruments, telemetry mappings, hardware and its
//! reservations, reserved capacity and power models, held in memory and
//! shared by every replica as a log of versions in the store (`SharedDocument`). Reads never wait
//! for the store; a change is visible once it is stored.
//!
//! It also remembers which sites and customers have readings: such a record is never deleted
//! (it can be retired), so accounted energy never drops out of reports.
use super::location::Location;
use super::shared_document::SharedDocument;
use super::{DurableDocument, StorageError};
use crate::domain::capacity::Capacity;
use crate::domain::embodied::{Hardware, Reservation};
use crate::domain::mapping::Mapping;
use crate::domain::usage::PowerModel;
use crate::domain::{Customer, Id, Instrument, Site, Zone, ZoneCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod entities;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryData {
    sites: BTreeMap<Id, Site>,
    customers: BTreeMap<Id, Customer>,
    zones: BTreeMap<ZoneCode, Zone>,
    instruments: BTreeMap<Id, Instrument>,
    mappings: BTreeMap<Id, Mapping>,
    hardware: BTreeMap<Id, Hardware>,
    reservations: BTreeMap<Id, Reservation>,
    capacity: BTreeMap<Id, Capacity>,
    power_models: BTreeMap<Id, PowerModel>,
    /// Sites and customers that readings were accepted for, marked before those readings were
    /// acknowledged.
    sites_with_readings: BTreeSet<Id>,
    customers_with_readings: BTreeSet<Id>,
    /// Power models that stored usage names, marked before that usage was acknowledged.
    power_models_in_use: BTreeSet<Id>,
}

impl RegistryData {
    /// Every record of a kind, in key order.
    pub fn list<E: Entity>(&self) -> Vec<E> {
        E::table(self).values().cloned().collect()
    }

    pub fn contains<E: Entity>(&self, key: &E::Key) -> bool {
        E::table(self).contains_key(key)
    }
}

/// What `InUse` names when stored readings hold on to a record.
pub const READINGS: &str = "readings";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{kind} {id} does not exist")]
    UnknownReference { kind: &'static str, id: String },
    #[error("{kind} {id} is still referenced by {by}{}", if by == READINGS { "; retire it instead (PUT it with retired_at)" } else { "" })]
    InUse {
        kind: &'static str,
        id: String,
        by: String,
    },
    /// Reservations would hold more of a machine than it has.
    #[error("hardware {hardware} has {total} {unit}; its reservations would hold {peak} at once")]
    Overbooked {
        hardware: String,
        total: f64,
        unit: String,
        peak: f64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A kind of record the registry keeps, and the references it must keep consistent.
pub trait Entity: Clone + Send + Sync + 'static {
    type Key: Ord + Clone + std::fmt::Display + Send;
    /// The singular name used in messages and error codes (`site`).
    const KIND: &'static str;
    fn key(&self) -> &Self::Key;
    fn table(data: &RegistryData) -> &BTreeMap<Self::Key, Self>;
    fn table_mut(data: &mut RegistryData) -> &mut BTreeMap<Self::Key, Self>;
    /// The records this one names must exist.
    fn check_references(&self, _data: &RegistryData) -> Result<(), RegistryError> {
        Ok(())
    }
    /// A record that still names this key, which blocks its deletion.
    fn referenced_by(_key: &Self::Key, _data: &RegistryData) -> Option<String> {
        None
    }
    /// The readings column that names records of this kind, if readings do.
    const READINGS_COLUMN: Option<&'static str> = None;
}

/// What one registry version did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    /// Readings were accepted for it: from then on it can only be retired.
    HasReadings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordChange {
    pub kind: &'static str,
    pub id: String,
    pub change: ChangeKind,
}

/// One version of the registry: when, where, by whom, and what it changed.
#[derive(Debug, Clone)]
pub struct RegistryVersion {
    pub version: u64,
    pub written_at: chrono::DateTime<chrono::Utc>,
    pub replica: String,
    pub by: String,
    pub changes: Vec<RecordChange>,
}

fn changes_of<E: Entity + Serialize>(
    before: &RegistryData,
    after: &RegistryData,
    out: &mut Vec<RecordChange>,
) {
    let (old, new) = (E::table(before), E::table(after));
    let mut push = |id: &E::Key, change| {
        out.push(RecordChange {
            kind: E::KIND,
            id: id.to_string(),
            change,
        })
    };
    for (key, record) in new {
        match old.get(key) {
            None => push(key, ChangeKind::Created),
            Some(previous)
                if serde_json::to_value(previous).ok() != serde_json::to_value(record).ok() =>
            {
                push(key, ChangeKind::Updated)
            }
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        push(key, ChangeKind::Deleted);
    }
}

/// What turned `before` into `after`, record by record.
fn changes(before: &RegistryData, after: &RegistryData) -> Vec<RecordChange> {
    let mut out = Vec::new();
    changes_of::<Site>(before, after, &mut out);
    changes_of::<Customer>(before, after, &mut out);
    changes_of::<Zone>(before, after, &mut out);
    changes_of::<Instrument>(before, after, &mut out);
    changes_of::<Mapping>(before, after, &mut out);
    changes_of::<Hardware>(before, after, &mut out);
    changes_of::<Reservation>(before, after, &mut out);
    changes_of::<Capacity>(before, after, &mut out);
    changes_of::<PowerModel>(before, after, &mut out);
    for (kind, old, new) in [
        (
            Site::KIND,
            &before.sites_with_readings,
            &after.sites_with_readings,
        ),
        (
            Customer::KIND,
            &before.customers_with_readings,
            &after.customers_with_readings,
        ),
    ] {
        out.extend(new.difference(old).map(|id| RecordChange {
            kind,
            id: id.to_string(),
            change: ChangeKind::HasReadings,
        }));
    }
    out
}

/// Whether a put made a new record or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
}

#[derive(Debug)]
pub struct Registry {
    document: SharedDocument<RegistryData>,
}

impl Registry {
    /// Opens the registry log in `location`; `legacy_dir` holds the `registry.json` of earlier
    /// releases, moved into the log on the first start.
    pub async fn open(
        location: &Location,
        replica: &str,
        legacy_dir: Option<&Path>,
    ) -> Result<Self, StorageError> {
        let legacy = legacy_dir.map(|dir| DurableDocument::new(dir.join("registry.json")));
        Ok(Self {
            document: SharedDocument::open(location, "registry", replica, legacy).await?,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryData> {
        self.document.read()
    }

    /// The registry as this replica has it now, with its version.
    pub fn snapshot(&self) -> (u64, RegistryData) {
        let data = self.read().clone();
        (self.version(), data)
    }

    /// The registry version this replica has read (every change is one).
    pub fn version(&self) -> u64 {
        self.document.version()
    }

    /// Up to `limit` versions after `after`, oldest first, each with what it changed.
    pub async fn history(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RegistryVersion>, StorageError> {
        let entries = self.document.history(after, limit).await?;
        let mut previous = match self.document.at(after).await? {
            Some(entry) => entry.document,
            None => RegistryData::default(),
        };
        let mut versions = Vec::with_capacity(entries.len());
        for entry in entries {
            versions.push(RegistryVersion {
                version: entry.version,
                written_at: entry.written_at,
                replica: entry.replica,
                by: entry.by,
                changes: changes(&previous, &entry.document),
            });
            previous = entry.document;
        }
        Ok(versions)
    }

    /// The registry as it was at `version` (`None`: no such version yet; 0 is the empty one).
    pub async fn at(&self, version: u64) -> Result<Option<RegistryData>, StorageError> {
        if version == 0 {
            return Ok(Some(RegistryData::default()));
        }
        Ok(self.document.at(version).await?.map(|entry| entry.document))
    }

    /// Reads changes other replicas made; whether there were any.
    pub async fn catch_up(&self) -> Result<bool, StorageError> {
        self.document.catch_up().await
    }

    pub fn get<E: Entity>(&self, key: &E::Key) -> Option<E> {
        E::table(&self.read()).get(key).cloned()
    }

    pub fn contains<E: Entity>(&self, key: &E::Key) -> bool {
        self.read().contains::<E>(key)
    }

    /// The keys of every record of a kind, without cloning the records.
    pub fn keys<E: Entity>(&self) -> Vec<E::Key> {
        E::table(&self.read()).keys().cloned().collect()
    }

    pub fn list<E: Entity>(&self) -> Vec<E> {
        self.read().list::<E>()
    }

    /// Applies `change` to the newest registry and stores the result; readers see it only once it
    /// is stored. Checks inside `change` run against the state the change is stored on top of.
    async fn change<T>(
        &self,
        by: &str,
        change: impl FnMut(&mut RegistryData) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.document.change(by, change).await
    }

    /// Stores `record`, created or replaced, as changed `by` (a key id).
    pub async fn put<E: Entity>(&self, by: &str, record: E) -> Result<Upsert, RegistryError> {
        self.change(by, |data| {
            record.check_references(data)?;
            let previous = E::table_mut(data).insert(record.key().clone(), record.clone());
            Ok(if previous.is_some() {
                Upsert::Updated
            } else {
                Upsert::Created
            })
        })
        .await
    }

    /// Records that readings for these sites and customers are about to be acknowledged; refused
    /// when one no longer exists (deleted since the batch was checked). Marked ids never leave, so
    /// the usual call reads and returns without a write.
    pub async fn mark_with_readings(
        &self,
        by: &str,
        sites: &[Id],
        customers: &[Id],
    ) -> Result<(), RegistryError> {
        let unmarked = |data: &RegistryData| {
            sites.iter().any(|s| !data.sites_with_readings.contains(s))
                || customers
                    .iter()
                    .any(|c| !data.customers_with_readings.contains(c))
        };
        if !unmarked(&self.read()) {
            return Ok(());
        }
        self.change(by, |data| {
            let missing = |kind: &'static str, id: &Id| RegistryError::UnknownReference {
                kind,
                id: id.to_string(),
            };
            for site in sites {
                if !data.sites.contains_key(site) {
                    return Err(missing(Site::KIND, site));
                }
                data.sites_with_readings.insert(site.clone());
            }
            for customer in customers {
                if !data.customers.contains_key(customer) {
                    return Err(missing(Customer::KIND, customer));
                }
                data.customers_with_readings.insert(customer.clone());
            }
            Ok(())
        })
        .await
    }

    /// Records that usage naming these power models is about to be acknowledged, as
    /// `mark_with_readings` does for sites and customers.
    pub async fn mark_power_models_in_use(
        &self,
        by: &str,
        models: &[Id],
    ) -> Result<(), RegistryError> {
        if models
            .iter()
            .all(|m| self.read().power_models_in_use.contains(m))
        {
            return Ok(());
        }
        self.change(by, |data| {
            for model in models {
                if !data.power_models.contains_key(model) {
                    return Err(RegistryError::UnknownReference {
                        kind: PowerModel::KIND,
                        id: model.to_string(),
                    });
                }
                data.power_models_in_use.insert(model.clone());
            }
            Ok(())
        })
        .await
    }

    /// Removes a record; `Ok(false)` when there was none.
    pub async fn delete<E: Entity>(&self, by: &str, key: &E::Key) -> Result<bool, RegistryError> {
        if !self.contains::<E>(key) {
            return Ok(false);
        }
        self.change(by, |data| {
            if let Some(by) = E::referenced_by(key, data) {
                return Err(RegistryError::InUse {
                    kind: E::KIND,
                    id: key.to_string(),
                    by,
                });
            }
            Ok(E::table_mut(data).remove(key).is_some())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerSpec, InstrumentKind, SiteSpec};
    use crate::storage::test_stores::TestStore;

    fn site(id: &str) -> Site {
        SiteSpec {
            name: "Site".into(),
            zone: "GB".into(),
            pue: 1.2,
            pue_schedule: vec![],
            retired_at: None,
            allocation: Default::default(),
            power_model: None,
        }
        .parse(Id::parse(id).unwrap())
        .unwrap()
    }

    fn instrument(site: &str) -> Instrument {
        Instrument {
            id: Id::parse("ppa").unwrap(),
            site: Id::parse(site).unwrap(),
            customer: None,
            from: "2026-01-01T00:00:00Z".parse().unwrap(),
            to: "2026-02-01T00:00:00Z".parse().unwrap(),
            energy_mwh: 1.0,
            gco2e_per_kwh: 0.0,
            kind: InstrumentKind::Ppa,
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_the_registry_on_every_store() {
        for place in TestStore::all() {
            records_survive_reopening(&place.location).await;
        }
    }

    async fn records_survive_reopening(location: &Location) {
        let registry = Registry::open(location, "a", None).await.unwrap();
        assert_eq!(
            registry.put("test", site("fra1")).await.unwrap(),
            Upsert::Created
        );
        assert_eq!(
            registry.put("test", site("fra1")).await.unwrap(),
            Upsert::Updated
        );
        let customer = CustomerSpec {
            name: "Acme".into(),
            retired_at: None,
        }
        .parse(Id::parse("acme").unwrap())
        .unwrap();
        registry.put("test", customer.clone()).await.unwrap();
        drop(registry);

        let reopened = Registry::open(location, "b", None).await.unwrap();
        assert_eq!(
            reopened.get::<Site>(&Id::parse("fra1").unwrap()),
            Some(site("fra1"))
        );
        assert_eq!(reopened.list::<Customer>(), vec![customer]);
    }

    #[tokio::test]
    async fn an_instrument_needs_its_site_and_blocks_the_sites_deletion() {
        let registry = Registry::open(&Location::memory(), "a", None)
            .await
            .unwrap();
        assert!(matches!(
            registry.put("test", instrument("fra1")).await,
            Err(RegistryError::UnknownReference { kind: "site", .. })
        ));
        registry.put("test", site("fra1")).await.unwrap();
        registry.put("test", instrument("fra1")).await.unwrap();
        let fra1 = Id::parse("fra1").unwrap();
        assert!(matches!(
            registry.delete::<Site>("test", &fra1).await,
            Err(RegistryError::InUse { .. })
        ));
        assert!(registry
            .delete::<Instrument>("test", &Id::parse("ppa").unwrap())
            .await
            .unwrap());
        assert!(registry.delete::<Site>("test", &fra1).await.unwrap());
        assert!(!registry.delete::<Site>("test", &fra1).await.unwrap());
    }
}
