//! The registry's history: every version, who made it and what it changed. Nothing a PUT or
//! DELETE does is lost; closed periods name the version they were computed from.
use super::auth::Admin;
use super::problem::{ApiError, CommonErrors};
use super::AppState;
use crate::domain::{FieldError, Invalid};
use crate::storage::registry::{ChangeKind, RecordChange, RegistryVersion};
use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Versions per page at most.
const MAX_LIMIT: usize = 1000;

pub fn configure(config: &mut ServiceConfig) {
    config.service(registry_history);
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Versions after this one (0: from the first).
    #[param(example = 0)]
    pub after: Option<u64>,
    /// How many versions at most (1-1000, default 100).
    #[param(example = 100)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"kind": "site", "id": "fra1", "change": "updated"}))]
pub struct ChangeView {
    /// `site`, `customer`, `zone`, `instrument` or `telemetry mapping`.
    pub kind: String,
    pub id: String,
    /// `created`, `updated`, `deleted`, or `has_readings` (readings were accepted for it).
    pub change: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"version": 3, "written_at": "2026-03-01T09:00:00Z", "replica": "r-1a2b3c4d5e6f",
    "by": "bootstrap-admin", "changes": [{"kind": "site", "id": "fra1", "change": "updated"}]}))]
pub struct VersionView {
    pub version: u64,
    pub written_at: DateTime<Utc>,
    /// The replica that wrote it.
    pub replica: String,
    /// The API key id that made the change, or `migration`, `demo`, `telemetry`.
    pub by: String,
    pub changes: Vec<ChangeView>,
}

fn change_name(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deleted => "deleted",
        ChangeKind::HasReadings => "has_readings",
    }
}

impl From<RegistryVersion> for VersionView {
    fn from(version: RegistryVersion) -> Self {
        Self {
            version: version.version,
            written_at: version.written_at,
            replica: version.replica,
            by: version.by,
            changes: version
                .changes
                .into_iter()
                .map(|RecordChange { kind, id, change }| ChangeView {
                    kind: kind.to_owned(),
                    id,
                    change: change_name(change).to_owned(),
                })
                .collect(),
        }
    }
}

/// Registry history
///
/// Every version of the registry (sites, customers, zones, instruments, telemetry mappings),
/// oldest first, with its time, the replica and key that wrote it, and the records it created,
/// updated or deleted. Page with `after` (the last version seen). Admin only.
#[utoipa::path(tag = "registry", security(("bearer" = [])), params(HistoryQuery),
    responses((status = 200, description = "Versions after `after`", body = Vec<VersionView>),
        CommonErrors))]
#[get("/registry/history")]
async fn registry_history(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Invalid(vec![FieldError::new("limit", "must be between 1 and 1000")]).into());
    }
    let versions = state
        .registry
        .history(query.after.unwrap_or(0), limit)
        .await?;
    let views: Vec<VersionView> = versions.into_iter().map(VersionView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}
