//! Closing reporting periods and the customers' statements of closed periods.
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::{Customer, FieldError, Id, Invalid, Site, ZoneCode};
use crate::reports::statement::{statement, Statement, METHOD_VERSION};
use crate::reports::statement_formats;
use crate::reports::{Figures, FootprintQuery, RawQuery};
use crate::storage::intensity;
use crate::storage::periods::{Period, Reissue, Versions};
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(close_period)
        .service(list_periods)
        .service(get_period)
        .service(reissue_period)
        .service(period_drift)
        .service(period_export)
        .service(customer_statement);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "late meter data from fra1"}))]
pub struct ReissueSpec {
    /// Why the statements are issued again: shown in every statement of the new version.
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementParams {
    /// Statement version (1: as closed); the newest when absent.
    #[param(example = 1)]
    pub version: Option<u32>,
    /// `json` (the default, sealed), `csv`, or `html` (a printable page).
    #[param(example = "json")]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Statement version (1: as closed); the newest when absent.
    #[param(example = 1)]
    pub version: Option<u32>,
}

/// The statement in the asked format.
fn statement_response(issued: Issued, format: Option<&str>) -> Result<HttpResponse, ApiError> {
    let statement = &issued.statement;
    match format.unwrap_or("json") {
        "json" => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(issued.json)),
        "csv" => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(
                statement_formats::csv(std::slice::from_ref(statement))
                    .map_err(|e| ApiError::internal(&e))?,
            )),
        "html" => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(statement_formats::html(statement))),
        other => Err(Invalid(vec![FieldError::new(
            "format",
            format!("{other:?} is not one of json, csv, html"),
        )])
        .into()),
    }
}

/// This replica's acknowledged data flushed, then the versions everything stands at.
async fn current_versions(state: &AppState) -> Result<Versions, ApiError> {
    for table in [
        &state.readings,
        &state.intensity,
        &state.meters,
        &state.usage,
    ] {
        table.flush().await.map_err(|e| ApiError::internal(&e))?;
    }
    Ok(state.reports.versions().await)
}

fn closed_period(state: &AppState, raw: &str) -> Result<Period, ApiError> {
    let id = period_param(raw)?;
    state
        .periods
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format_args!("period {id}")))
}

/// A customer's statement of a period at one of its versions: as first issued when it has been,
/// else computed from the recorded versions and kept as issued.
async fn issued_statement(
    state: &AppState,
    period: &Period,
    version: u32,
    customer: &Id,
) -> Result<Issued, ApiError> {
    let stored = match state.periods.issued(&period.id, version, customer).await? {
        Some(bytes) => bytes,
        None => {
            let computed = compute_statement(state, period, version, customer).await?;
            let bytes = computed.to_json().map_err(|e| ApiError::internal(&e))?;
            state
                .periods
                .issue(&period.id, version, customer, bytes.into())
                .await?
        }
    };
    let statement = serde_json::from_slice(&stored).map_err(|e| ApiError::internal(&e))?;
    Ok(Issued {
        statement,
        json: stored,
    })
}

/// A statement, and its JSON exactly as issued.
struct Issued {
    statement: Statement,
    json: bytes::Bytes,
}

/// A customer's statement of a period at one of its versions, computed from the versions recorded.
async fn compute_statement(
    state: &AppState,
    period: &Period,
    version: u32,
    customer: &Id,
) -> Result<Statement, ApiError> {
    let versions = period.versions_of(version).ok_or_else(|| {
        ApiError::not_found(format_args!(
            "statement version {version} of period {}",
            period.id
        ))
    })?;
    let registry = state.registry.at(versions.registry).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "registry version {} is not read here yet; retry",
                versions.registry
            ),
        )
    })?;
    Ok(statement(
        &state.reports,
        period,
        (version, versions),
        customer,
        registry,
    )
    .await?)
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
    let versions = current_versions(&state).await?;
    let period = Period {
        id,
        from: spec.from,
        to: spec.to,
        closed_at: state.clock.now(),
        closed_by: admin.key_id.to_string(),
        versions,
        method_version: METHOD_VERSION.to_owned(),
        service_version: env!("CARGO_PKG_VERSION").to_owned(),
        reissues: Vec::new(),
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
    Ok(HttpResponse::Ok().json(closed_period(&state, &path)?))
}

/// Reissue a period's statements
///
/// Issues every statement of the period again from today's data (this replica flushed first) as
/// the next statement version, with the reason given. Earlier versions stay as they were
/// (`?version=1`). Admin only.
#[utoipa::path(tag = "periods", security(("bearer" = [])), request_body = ReissueSpec,
    params(("period" = String, Path, description = "Period id", example = "2026-Q1")),
    responses((status = 201, description = "Reissued", body = Reissue), CommonErrors, BodyErrors))]
#[post("/periods/{period}/reissue")]
async fn reissue_period(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ReissueSpec>,
) -> Result<HttpResponse, ApiError> {
    let period = closed_period(&state, &path)?;
    let reason = body.into_inner().reason;
    if reason.trim().is_empty() {
        return Err(Invalid(vec![FieldError::new("reason", "must say why")]).into());
    }
    let versions = current_versions(&state).await?;
    let now = state.clock.now();
    let reissue = state
        .periods
        .reissue(&period.id, admin.key_id.as_str(), &reason, now, versions)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("period {}", period.id)))?;
    Ok(HttpResponse::Created().json(reissue))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerDrift {
    pub customer: String,
    /// The newest statement's totals.
    pub issued: Figures,
    /// The same figures from today's data.
    pub today: Figures,
    /// Today minus issued.
    pub it_energy_kwh: f64,
    pub location_emissions_gco2e: f64,
    pub market_emissions_gco2e: f64,
    /// Readings in the period today minus at the issue (late or re-sent readings).
    pub late_readings: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Drift {
    pub period: String,
    pub statement_version: u32,
    pub versions: Versions,
    /// Versions as of now.
    pub today: Versions,
    pub customers: Vec<CustomerDrift>,
    /// Intensity points received after the issue for the zones of the period's sites.
    pub intensity_points_after_issue: usize,
    /// Registry records created, updated or deleted since the issue, by version.
    pub registry_changes: Vec<super::history::VersionView>,
}

/// A period's drift
///
/// Each customer's newest statement beside the same figures from today's data, and why they
/// differ: readings that arrived after the issue, intensity points received after it, and the
/// registry changes made since (sites, PUE, zones, instruments). Admin only.
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    params(("period" = String, Path, description = "Period id", example = "2026-Q1")),
    responses((status = 200, description = "Drift since the newest issue", body = Drift),
        CommonErrors))]
#[get("/periods/{period}/drift")]
async fn period_drift(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let period = closed_period(&state, &path)?;
    let version = period.latest_version();
    let issued_versions = period.versions_of(version).unwrap_or(period.versions);
    let registry = state.registry.at(issued_versions.registry).await?;
    let customers: Vec<Id> = registry
        .as_ref()
        .map(|r| r.list::<Customer>().into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let mut drifts = Vec::new();
    for customer in &customers {
        let issued = issued_statement(&state, &period, version, customer)
            .await?
            .statement;
        let query = FootprintQuery::parse(
            Some(customer.clone()),
            RawQuery {
                from: period.from,
                to: period.to,
                granularity: None,
                group_by: None,
                tz: None,
                workload: None,
                site: None,
            },
        )?;
        let today = state.reports.footprint(query).await?;
        let today = today.totals().map_err(|e| ApiError::internal(&e))?;
        drifts.push(CustomerDrift {
            customer: customer.to_string(),
            it_energy_kwh: today.it_energy_kwh - issued.totals.it_energy_kwh,
            location_emissions_gco2e: today.location_emissions_gco2e
                - issued.totals.location_emissions_gco2e,
            market_emissions_gco2e: today.market_emissions_gco2e
                - issued.totals.market_emissions_gco2e,
            late_readings: today.readings - issued.totals.readings,
            issued: issued.totals,
            today,
        });
    }
    let zones: Vec<ZoneCode> = state
        .registry
        .list::<Site>()
        .into_iter()
        .map(|site| site.zone)
        .collect();
    // The intensity table keeps every point ever received: what it holds now beyond what it
    // held at the issue arrived after it.
    let received = |version: Option<u64>| {
        let zones = zones.clone();
        let table = state.intensity.clone();
        async move {
            intensity::load(&table, Some(&zones), period.from, period.to, version)
                .await
                .map(|points| points.len())
                .map_err(|e| ApiError::internal(&e))
        }
    };
    let points_now = received(None).await?;
    let points_then = match issued_versions.intensity {
        Some(version) => received(Some(version)).await?,
        None => 0,
    };
    let registry_changes = state
        .registry
        .history(issued_versions.registry, 1000)
        .await?
        .into_iter()
        .map(super::history::VersionView::from)
        .collect();
    Ok(HttpResponse::Ok().json(Drift {
        period: period.id.to_string(),
        statement_version: version,
        versions: issued_versions,
        today: state.reports.versions().await,
        customers: drifts,
        intensity_points_after_issue: points_now.saturating_sub(points_then),
        registry_changes,
    }))
}

/// A customer's statement of a closed period
///
/// Scope 2 location- and market-based totals for the period, per month, site, zone and workload,
/// with the sites' PUE, the zones' factors and the instruments that applied, the method and its
/// version, the versions read, and a `sha256` of the statement's JSON without that field. Computed
/// from the recorded versions of the statement version asked for (the newest by default):
/// byte-identical on every request, whatever arrived or changed after it was issued. The
/// customer's own key or an admin key; other customers get 404.
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"),
        ("period" = String, Path, description = "Period id", example = "2026-Q1"),
        StatementParams),
    responses((status = 200, description = "The statement", body = Statement), CommonErrors))]
#[get("/customers/{customer}/statements/{period}")]
async fn customer_statement(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    params: web::Query<StatementParams>,
) -> Result<HttpResponse, ApiError> {
    let (customer, period) = path.into_inner();
    let customer = Id::parse(&customer)
        .map_err(|_| ApiError::not_found(format_args!("customer {customer}")))?;
    caller.require_customer(&customer)?;
    let period = closed_period(&state, &period)?;
    let version = params.version.unwrap_or_else(|| period.latest_version());
    let issued = issued_statement(&state, &period, version, &customer).await?;
    statement_response(issued, params.format.as_deref())
}

/// Every customer's statement of a period, as CSV
///
/// The sustainability team's export of a closed period: every customer's statement rows (month,
/// site, zone, workload) under one header, the columns named like Google Cloud's carbon
/// footprint export where they mean the same (kgCO2e, `carbon_model_version` is the method
/// version), each row naming its statement version and seal. Admin only.
#[utoipa::path(tag = "periods", security(("bearer" = [])),
    params(("period" = String, Path, description = "Period id", example = "2026-Q1"), ExportParams),
    responses((status = 200, description = "Every customer's statement rows", body = String,
        content_type = "text/csv"), CommonErrors))]
#[get("/periods/{period}/export")]
async fn period_export(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    let period = closed_period(&state, &path)?;
    let version = params.version.unwrap_or_else(|| period.latest_version());
    let versions = period.versions_of(version).ok_or_else(|| {
        ApiError::not_found(format_args!(
            "statement version {version} of period {}",
            period.id
        ))
    })?;
    let customers: Vec<Id> = state
        .registry
        .at(versions.registry)
        .await?
        .map(|registry| {
            registry
                .list::<Customer>()
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .unwrap_or_default();
    let mut statements = Vec::with_capacity(customers.len());
    for customer in &customers {
        statements.push(
            issued_statement(&state, &period, version, customer)
                .await?
                .statement,
        );
    }
    let body = statement_formats::csv(&statements).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"statements-{}-v{version}.csv\"",
                period.id
            ),
        ))
        .body(body))
}
