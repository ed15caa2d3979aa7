//! Functional units in (ingest keys) and the Software Carbon Intensity out (customer keys for
//! their own workloads, admin for all).
use super::auth::Caller;
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::readings::Accepted;
use super::records::{self, RecordKind};
use super::AppState;
use crate::domain::functional_unit::{check_unit, FunctionalUnit, UnitRules, FIELDS};
use crate::domain::row::Fields;
use crate::domain::{Customer, Id, Site};
use crate::reports::sci::{SciError, SciRow, METHOD};
use crate::reports::{FootprintQuery, RawQuery};
use crate::storage::functional_units::frame;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config.service(post_functional_units).service(sci);
}

/// One count as JSON or NDJSON carry it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"site": "fra1", "customer": "acme", "workload": "api",
    "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "unit": "requests", "count": 1200}))]
pub struct FunctionalUnitInput {
    pub site: String,
    pub customer: String,
    pub workload: String,
    /// Start of the interval, RFC 3339; at most 5 minutes in the future.
    pub start: DateTime<Utc>,
    /// Length of the interval, 1 to 86,400 seconds.
    #[schema(minimum = 1, maximum = 86400)]
    pub duration_s: u32,
    /// `requests`, `jobs`, `users`, `gb`, or any name of lower-case letters, digits and `_`.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,31}$")]
    pub unit: String,
    /// How many units the workload served over the interval.
    #[schema(minimum = 0)]
    pub count: f64,
}

/// Post functional units
///
/// Counts per workload and interval (requests, jobs, users, GB) as a JSON array, NDJSON, CSV
/// (header `site,customer,workload,start,duration_s,unit,count`) or an Arrow IPC stream of those
/// columns (`start` a timestamp): the R of the SCI. Atomic and
/// durable before the 200, like readings; a count's identity is (customer, workload, site,
/// start, unit), so sending it again replaces it. Needs an admin or ingest key for the site.
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    request_body(description = "Counts", content(
        (Vec<FunctionalUnitInput> = "application/json"),
        (FunctionalUnitInput = "application/x-ndjson"),
        (String = "text/csv", example = "site,customer,workload,start,duration_s,unit,count\nfra1,acme,api,2026-03-01T09:00:00Z,3600,requests,1200\n"),
        (Vec<u8> = "application/vnd.apache.arrow.stream"))),
    responses((status = 200, description = "Durable", body = Accepted), CommonErrors, BodyErrors))]
#[post("/functional-units")]
async fn post_functional_units(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let rules = UnitRules {
        now: state.clock.now(),
        known_sites: records::known::<Site>(&state),
        known_customers: records::known::<Customer>(&state),
    };
    let kind = RecordKind {
        what: "functional units",
        fields: &FIELDS,
        owners: |unit: &FunctionalUnit| (&unit.site, Some(&unit.customer)),
        power_model: |_| None,
        frame,
    };
    let check = move |fields: &dyn Fields| FunctionalUnit::check(fields, &rules);
    let table = &state.functional_units;
    let accepted = records::accept(&caller, &state, &request, body, kind, check, table).await?;
    Ok(HttpResponse::Ok().json(Accepted { accepted }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SciParams {
    /// Inclusive start, RFC 3339.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339.
    #[param(example = "2026-03-02T00:00:00Z")]
    pub to: DateTime<Utc>,
    /// The functional unit R is counted in.
    #[param(example = "requests", pattern = "^[a-z][a-z0-9_]{0,31}$")]
    pub unit: String,
    /// Only these workloads (comma list); all when absent.
    #[param(example = "api")]
    pub workload: Option<String>,
    /// `hour`, `day`, `week` (ISO), `month`, `quarter`, `year` or `total` (the default).
    #[param(
        example = "day",
        pattern = "^(hour|day|week|month|quarter|year|total)$"
    )]
    pub granularity: Option<String>,
    /// IANA time zone of day and month buckets (default UTC).
    #[param(example = "Europe/London")]
    pub tz: Option<String>,
}

/// The SCI of a customer's workloads.
#[derive(Debug, Serialize, ToSchema)]
pub struct SciResponse {
    pub customer: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub tz: String,
    pub unit: String,
    /// Always `location`: the SCI excludes market-based instruments.
    #[schema(example = "location")]
    pub intensity_basis: String,
    /// How each term is computed.
    pub method: String,
    /// Per bucket and workload, ordered by bucket_start, then workload.
    pub rows: Vec<SciRow>,
    /// The whole range: sums of E, E x I, M and R, and their SCI.
    pub totals: SciRow,
}

impl From<SciError> for ApiError {
    fn from(error: SciError) -> Self {
        match error {
            SciError::Report(report) => report.into(),
            missing @ SciError::NoFunctionalUnits { .. } => {
                ApiError::new(ErrorCode::NoFunctionalUnits, missing.to_string())
            }
        }
    }
}

/// Software Carbon Intensity
///
/// SCI = ((E x I) + M) per R for each workload and bucket: location-based emissions of the
/// workload's facility energy, plus the embodied emissions of the hardware it reserved, per
/// functional unit counted (`POST /v1/functional-units`). Market-based instruments are excluded,
/// as the SCI specification requires. 422 `no_functional_units` when R is 0 over the range.
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"), SciParams),
    responses((status = 200, description = "The SCI", body = SciResponse), CommonErrors,
        (status = 422, description = "No functional units in the range, or range too long",
         body = super::problem::Problem, content_type = "application/problem+json")))]
#[get("/customers/{customer}/sci")]
async fn sci(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<SciParams>,
) -> Result<HttpResponse, ApiError> {
    let customer = Id::parse(&path)
        .map_err(|_| ApiError::not_found(format_args!("customer {}", path.as_str())))?;
    caller.require_customer(&customer)?;
    let params = params.into_inner();
    let unit = check_unit(&params.unit)
        .map_err(|reason| ApiError::new(ErrorCode::InvalidQuery, format!("unit: {reason}")))?;
    let query = FootprintQuery::parse(
        Some(customer.clone()),
        RawQuery {
            from: params.from,
            to: params.to,
            granularity: params.granularity.as_deref(),
            group_by: None,
            tz: params.tz.as_deref(),
            workload: params.workload.as_deref(),
            site: None,
        },
    )?;
    let window = query.window;
    let answer = state.reports.sci(query, &unit).await?;
    Ok(HttpResponse::Ok().json(SciResponse {
        customer: customer.to_string(),
        from: window.from,
        to: window.to,
        granularity: window.granularity.as_str().to_owned(),
        tz: window.tz.name().to_owned(),
        unit,
        intensity_basis: "location".into(),
        method: METHOD.into(),
        rows: answer.rows,
        totals: answer.totals,
    }))
}
