//! `POST /v1/readings`: decode, check, log durably, acknowledge.
use super::auth::Caller;
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::reading::ReadingRules;
use crate::domain::{Customer, Id, Site};
use crate::ingest::{self, Format};
use crate::storage::logged::LoggedTable;
use crate::storage::readings;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config.service(post_readings);
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"accepted": 2}))]
pub struct Accepted {
    /// Rows now durable (re-sent ones replace their earlier versions).
    pub accepted: usize,
}

/// One reading as JSON or NDJSON carry it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"site": "fra1", "customer": "acme", "workload": "api",
    "start": "2026-03-01T09:55:00Z", "duration_s": 600, "energy_j": 540000}))]
pub struct ReadingInput {
    #[schema(example = "fra1")]
    pub site: String,
    #[schema(example = "acme")]
    pub customer: String,
    /// Any id the customer's agents use: a VM, a pod, a service.
    #[schema(example = "api")]
    pub workload: String,
    /// Start of the interval, RFC 3339; at most 5 minutes in the future.
    pub start: chrono::DateTime<chrono::Utc>,
    /// Length of the interval, 1 to 3600 seconds.
    #[schema(minimum = 1, maximum = 3600)]
    pub duration_s: u32,
    /// Energy over the interval in joules; give this or `power_w`.
    pub energy_j: Option<f64>,
    /// Average power over the interval in watts; give this or `energy_j`.
    pub power_w: Option<f64>,
}

fn rules(state: &AppState) -> ReadingRules {
    let sites = state.registry.list::<Site>();
    let customers = state.registry.list::<Customer>();
    let retired = |records: Vec<(&Id, Option<chrono::DateTime<chrono::Utc>>)>| {
        records
            .into_iter()
            .filter_map(|(id, at)| Some((id.to_string(), at?.timestamp_micros())))
            .collect()
    };
    ReadingRules {
        now: state.clock.now(),
        max_power_w: state.ingest.max_power_w,
        known_sites: sites.iter().map(|s| s.id.to_string()).collect(),
        known_customers: customers.iter().map(|c| c.id.to_string()).collect(),
        retired_sites: retired(sites.iter().map(|s| (&s.id, s.retired_at)).collect()),
        retired_customers: retired(customers.iter().map(|c| (&c.id, c.retired_at)).collect()),
    }
}

/// Post readings
///
/// A batch of readings as a JSON array, NDJSON, CSV (header
/// `site,customer,workload,start,duration_s,energy_j,power_w`) or an Arrow IPC stream
/// (`start` a UTC timestamp, `energy_j`/`power_w` nullable float64), optionally gzip-compressed.
/// A batch is atomic: it is durable on disk before the 200, or nothing of it is stored and the
/// answer lists the bad rows. A reading's identity is (customer, workload, site, start): sending it
/// again replaces it, so retries never double-count. Needs an admin or ingest key.
#[utoipa::path(tag = "ingest", security(("bearer" = [])),
    request_body(description = "Readings", content(
        (Vec<ReadingInput> = "application/json"),
        (ReadingInput = "application/x-ndjson"),
        (String = "text/csv", example = "site,customer,workload,start,duration_s,energy_j,power_w\nfra1,acme,api,2026-03-01T09:55:00Z,600,540000,\n"),
        (Vec<u8> = "application/vnd.apache.arrow.stream"))),
    responses((status = 200, description = "Durable", body = Accepted), CommonErrors, BodyErrors))]
#[post("/readings")]
async fn post_readings(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let outcome = accept(caller, &state, &request, body).await;
    state.metrics.count_readings(outcome.as_ref().ok().copied());
    outcome.map(|accepted| HttpResponse::Ok().json(Accepted { accepted }))
}

/// The readings made durable, or why none were.
async fn accept(
    caller: Caller,
    state: &AppState,
    request: &HttpRequest,
    body: web::Bytes,
) -> Result<usize, ApiError> {
    caller.require_ingest("posting readings")?;
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
    let rules = rules(state);
    let max_rows = state.ingest.max_rows_per_batch;
    let (key_id, grant) = (caller.key_id, caller.grant);
    let (prepared, sites, customers) = web::block(move || {
        let batch = ingest::parse(format, &body, &rules, max_rows)?;
        let (sites, customers) = (batch.site.ids(), batch.customer.ids());
        if let Some(site) = sites.iter().find(|site| !grant.may_write_site(site)) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this key may not post readings for site {site}"),
            ));
        }
        let prepared = readings::frame(batch)
            .map_err(crate::storage::logged::LoggedTableError::from)
            .and_then(LoggedTable::prepare)
            .map_err(|e| ApiError::internal(&e))?;
        Ok((prepared, sites, customers))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    // Before the acknowledgement: from now on the site and customer cannot be deleted, and one
    // deleted since the batch was checked refuses it (422) instead of orphaning it.
    state
        .registry
        .mark_with_readings(key_id.as_str(), &sites, &customers)
        .await?;
    let accepted = prepared.rows();
    state
        .readings
        .append(prepared)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(accepted)
}
