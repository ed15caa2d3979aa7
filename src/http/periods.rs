//! Closing reporting periods and the customers' statements of closed periods.
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::{FieldError, Id, Invalid};
use crate::reports::statement::{statement, Statement, METHOD_VERSION};
use crate::storage::periods::{Period, Versions};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(close_period)
        .service(list_periods)
        .service(get_period)
        .service(customer_statement);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "2026-Q1", "from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}))]
pub struct PeriodSpec {
    pub id: String,
    /// Inclusive start, RFC 3339.
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339.
    pub to: DateTime<Utc>,
}

fn period_param(raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|_| ApiError::not_found(format_args!("period {raw}")))
}

/// Close a period
///
/// Records the versions of the readings and intensity tables and of the registry as of now (this
/// replica's acknowledged readings are flushed first), with the method and release versions.
/// Statements of the period are computed from exactly that state from then on, whatever arrives
/// or changes later. A closed period never changes: closing it again is a 409. Periods may
/// overlap (a month and its quarter). Admin only.
#[utoipa::path(tag = "periods", security(("bearer" = [])), request_body = PeriodSpec,
    responses((status = 201, description = "Closed", body = Period), CommonErrors, BodyErrors,
        (status = 409, description = "A period with this id is closed already",
         body = super::problem::Problem, content_type = "application/problem+json")))]
#[post("/periods")]
async fn close_period(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<PeriodSpec>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner();
    let mut errors = Vec::new();
    let id = Id::parse(&spec.id).map_err(|reason| errors.push(FieldError::new("id", reason)));
    if spec.from >= spec.to {
        errors.push(FieldError::new("to", "must be after from"));
    }
    let id = match (id, errors.is_empty()) {
        (Ok(id), true) => id,
        _ => return Err(Invalid(errors).into()),
    };
    for table in [&state.readings, &state.intensity] {
        table.flush().await.map_err(|e| ApiError::internal(&e))?;
    }
    let period = Period {
        id,
        from: spec.from,
        to: spec.to,
        closed_at: state.clock.now(),
        closed_by: admin.key_id.to_string(),
        versions: Versions {
            readings: state.readings.table_version().await,
            intensity: state.intensity.table_version().await,
            registry: state.registry.version(),
        },
        method_version: METHOD_VERSION.to_owned(),
        service_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    match state.periods.close(period.clone()).await? {
        None => Ok(HttpResponse::Created().json(period)),
        Some(existing) => Err(ApiError::new(
            ErrorCode::PeriodClosed,
            format!(
                "period {} was closed at {} and never changes",
                existing.id,
                existing.closed_at.to_rfc3339()
            ),
        )),
    }
}

/// List closed periods
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    responses((status = 200, description = "Closed periods", body = Vec<Period>), CommonErrors))]
#[get("/periods")]
async fn list_periods(_caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.periods.list())
}

/// Get a closed period
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    params(("period" = String, Path, description = "Period id", example = "2026-Q1")),
    responses((status = 200, description = "The period", body = Period), CommonErrors))]
#[get("/periods/{period}")]
async fn get_period(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = period_param(&path)?;
    state
        .periods
        .get(&id)
        .map(|period| HttpResponse::Ok().json(period))
        .ok_or_else(|| ApiError::not_found(format_args!("period {id}")))
}

/// A customer's statement of a closed period
///
/// Scope 2 location- and market-based totals for the period, per month, site, zone and workload,
/// with the sites' PUE, the zones' factors and the instruments that applied, the method and its
/// version, the versions read, and a `sha256` of the statement's JSON without that field. Computed
/// from the period's recorded versions: byte-identical on every request, whatever arrived or
/// changed after the close. The customer's own key or an admin key; other customers get 404.
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"),
        ("period" = String, Path, description = "Period id", example = "2026-Q1")),
    responses((status = 200, description = "The statement", body = Statement), CommonErrors))]
#[get("/customers/{customer}/statements/{period}")]
async fn customer_statement(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (customer, period) = path.into_inner();
    let customer = Id::parse(&customer)
        .map_err(|_| ApiError::not_found(format_args!("customer {customer}")))?;
    caller.require_customer(&customer)?;
    let id = period_param(&period)?;
    let period = state
        .periods
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format_args!("period {id}")))?;
    let registry = state
        .registry
        .at(period.versions.registry)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "registry version {} is not read here yet; retry",
                    period.versions.registry
                ),
            )
        })?;
    let statement = statement(&state.reports, &period, &customer, registry).await?;
    let body = statement.to_json().map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
