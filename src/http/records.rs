//! The one way records besides readings (functional units, meter readings, usage) come in: decoded from
//! JSON, NDJSON, CSV or Arrow, every row checked, the key's sites enforced, the sites and customers
//! marked as holding data, then appended to the table's log before the answer.
use super::auth::Caller;
use super::problem::{ApiError, ErrorCode};
use super::AppState;
use crate::domain::row::Fields;
use crate::domain::{distinct, FieldError, Id};
use crate::ingest::records::{self, Schema};
use crate::ingest::{self, Format};
use crate::storage::logged::{LoggedTable, LoggedTableError};
use crate::storage::Entity;
use actix_web::{web, HttpRequest};
use polars::prelude::{DataFrame, PolarsResult};
use std::collections::HashSet;

/// What kind of record a batch holds, and how it is checked and stored.
pub(super) struct RecordKind<T> {
    /// Plural, for messages (`meter readings`).
    pub what: &'static str,
    pub fields: &'static [&'static str],
    /// The site a record is for, and its customer if it has one.
    pub owners: fn(&T) -> (&Id, Option<&Id>),
    /// The power model a record is priced with, if any: it must stay while the record does.
    pub power_model: fn(&T) -> Option<&Id>,
    pub frame: fn(&[T]) -> PolarsResult<DataFrame>,
}

/// The ids of every registered record of a kind, for a batch's checks.
pub(super) fn known<E: Entity<Key = Id>>(state: &AppState) -> HashSet<String> {
    state
        .registry
        .keys::<E>()
        .iter()
        .map(Id::to_string)
        .collect()
}

/// The number of records made durable in `table`, or why none were.
pub(super) async fn accept<T: 'static>(
    caller: &Caller,
    state: &AppState,
    request: &HttpRequest,
    body: web::Bytes,
    kind: RecordKind<T>,
    check: impl Fn(&dyn Fields) -> Result<T, Vec<FieldError>> + Send + 'static,
    table: &LoggedTable,
) -> Result<usize, ApiError> {
    caller.require_ingest(&format!("posting {}", kind.what))?;
    let content_type = super::content_type(request);
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type {content_type:?} is not one of {}, {}, {}, {}",
                ingest::JSON,
                ingest::NDJSON,
                ingest::CSV,
                ingest::ARROW_STREAM
            ),
        )
    })?;
    let max_rows = state.ingest.max_rows_per_batch;
    let grant = caller.grant.clone();
    let (prepared, sites, customers, models) = web::block(move || {
        let schema = Schema {
            fields: kind.fields,
            check: &check,
        };
        let batch = records::parse(format, &body, schema, max_rows)?;
        let owners: Vec<(&Id, Option<&Id>)> = batch.iter().map(kind.owners).collect();
        let sites = distinct(owners.iter().map(|(site, _)| *site));
        let customers = distinct(owners.iter().filter_map(|(_, c)| *c));
        let models = distinct(batch.iter().filter_map(kind.power_model));
        if let Some(site) = sites.iter().find(|site| !grant.may_write_site(site)) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this key may not post {} for site {site}", kind.what),
            ));
        }
        let prepared = (kind.frame)(&batch)
            .map_err(LoggedTableError::from)
            .and_then(LoggedTable::prepare)
            .map_err(|e| ApiError::internal(&e))?;
        Ok((prepared, sites, customers, models))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    // As for readings: from now on these sites and customers hold accounted data and stay.
    state
        .registry
        .mark_with_readings(caller.key_id.as_str(), &sites, &customers)
        .await?;
    if !models.is_empty() {
        state
            .registry
            .mark_power_models_in_use(caller.key_id.as_str(), &models)
            .await?;
    }
    let accepted = prepared.rows();
    table
        .append(prepared)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(accepted)
}
