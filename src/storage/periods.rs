//! Closed reporting periods, shared by every replica like the registry. A period records the
//! versions it was closed at, so its statements are computed from exactly that state for ever.
use super::location::{Created, Location};
use super::shared_document::SharedDocument;
use super::StorageError;
use crate::domain::Id;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a report read, by version: on a replica, how current it was (compare with the newest
/// versions in the store); for an audit, what to read again to get the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"readings": 42, "intensity": 7, "registry": 12}))]
pub struct Versions {
    /// The readings table version (`null`: nothing committed yet).
    pub readings: Option<u64>,
    /// The intensity table version.
    pub intensity: Option<u64>,
    /// The registry log version (sites, zones, instruments as of the report).
    pub registry: u64,
    /// The meters table version (`null`: nothing committed, or a period closed before meters
    /// were kept: its reports use the configured PUE, as they did then).
    #[serde(default)]
    pub meters: Option<u64>,
    /// The usage table version (`null`: nothing committed, or a period closed before usage was
    /// kept: nothing was modelled then).
    #[serde(default)]
    pub usage: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "2026-Q1", "from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z",
    "closed_at": "2026-04-02T09:00:00Z", "closed_by": "bootstrap-admin",
    "versions": {"readings": 42, "intensity": 7, "registry": 12},
    "method_version": "1", "service_version": "0.1.0"}))]
pub struct Period {
    #[schema(value_type = String)]
    pub id: Id,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    /// The admin key that closed it.
    pub closed_by: String,
    /// The state its statements are computed from.
    pub versions: Versions,
    /// The accounting method's version at the close.
    pub method_version: String,
    /// The carbon-ledger release that closed it.
    pub service_version: String,
    /// Statements issued again from later data (version 2, 3, ...), each with its reason;
    /// version 1 is the close itself and stays as it was.
    #[serde(default)]
    pub reissues: Vec<Reissue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"version": 2, "issued_at": "2026-05-02T09:00:00Z", "issued_by": "bootstrap-admin",
    "reason": "late meter data from fra1", "versions": {"readings": 57, "intensity": 9, "registry": 15}}))]
pub struct Reissue {
    /// The statement version it makes (2 for the first reissue).
    pub version: u32,
    pub issued_at: DateTime<Utc>,
    pub issued_by: String,
    pub reason: String,
    pub versions: Versions,
}

impl Period {
    /// The versions statement `version` is computed from (1: the close), if it exists.
    pub fn versions_of(&self, version: u32) -> Option<Versions> {
        match version {
            1 => Some(self.versions),
            _ => self
                .reissues
                .iter()
                .find(|reissue| reissue.version == version)
                .map(|reissue| reissue.versions),
        }
    }

    /// The newest statement version.
    pub fn latest_version(&self) -> u32 {
        self.reissues.last().map_or(1, |reissue| reissue.version)
    }
}

pub struct Periods {
    document: SharedDocument<BTreeMap<Id, Period>>,
    location: Location,
}

impl Periods {
    pub async fn open(location: &Location, replica: &str) -> Result<Self, StorageError> {
        Ok(Self {
            document: SharedDocument::open(location, "periods", replica, None).await?,
            location: location.clone(),
        })
    }

    pub fn list(&self) -> Vec<Period> {
        self.document.read().values().cloned().collect()
    }

    pub fn get(&self, id: &Id) -> Option<Period> {
        self.document.read().get(id).cloned()
    }

    /// Records `period` as closed; `Ok(Some(existing))` when one with its id was closed already
    /// (a closed period never changes).
    pub async fn close(&self, period: Period) -> Result<Option<Period>, StorageError> {
        let by = period.closed_by.clone();
        self.document
            .change(&by, |periods| {
                Ok::<_, StorageError>(match periods.get(&period.id) {
                    Some(existing) => Some(existing.clone()),
                    None => {
                        periods.insert(period.id.clone(), period.clone());
                        None
                    }
                })
            })
            .await
    }

    /// Issues the period's statements again from `versions`; the new statement version, or
    /// `None` when there is no such period.
    pub async fn reissue(
        &self,
        id: &Id,
        by: &str,
        reason: &str,
        issued_at: DateTime<Utc>,
        versions: Versions,
    ) -> Result<Option<Reissue>, StorageError> {
        self.document
            .change(by, |periods| {
                Ok::<_, StorageError>(periods.get_mut(id).map(|period| {
                    let reissue = Reissue {
                        version: period.latest_version() + 1,
                        issued_at,
                        issued_by: by.to_owned(),
                        reason: reason.to_owned(),
                        versions,
                    };
                    period.reissues.push(reissue.clone());
                    reissue
                }))
            })
            .await
    }

    fn statement_path(&self, id: &Id, version: u32, customer: &Id) -> object_store::path::Path {
        self.location.path_of(&format!(
            "periods/{id}/statements/v{version}/{customer}.json"
        ))
    }

    /// A statement as first issued, if it has been.
    pub async fn issued(
        &self,
        id: &Id,
        version: u32,
        customer: &Id,
    ) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .location
            .get(&self.statement_path(id, version, customer))
            .await?)
    }

    /// Keeps a statement as issued: the first one stored wins (another replica may have issued the
    /// same statement a moment earlier) and is returned. Recomputing it from the recorded versions
    /// gives the same figures; keeping the first makes it the same bytes too, as float sums
    /// running in parallel may differ in the last digit.
    pub async fn issue(
        &self,
        id: &Id,
        version: u32,
        customer: &Id,
        statement: Bytes,
    ) -> Result<Bytes, StorageError> {
        let path = self.statement_path(id, version, customer);
        match self.location.create(&path, statement.clone()).await? {
            Created::Written => Ok(statement),
            Created::AlreadyExists => self
                .location
                .get(&path)
                .await?
                .ok_or_else(|| StorageError::Store(format!("{path} was there and is gone"))),
        }
    }

    /// Reads periods closed on other replicas.
    pub async fn catch_up(&self) -> Result<bool, StorageError> {
        self.document.catch_up().await
    }
}
