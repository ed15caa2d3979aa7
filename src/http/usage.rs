//! The completeness records: usage of workloads no meter measures (ingest), the power models
//! that price it, and the capacity customers reserved at a site (admin).
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors};
use super::readings::Accepted;
use super::records::{self, RecordKind};
use super::registry::{fetch, id_param, list, remove, upsert};
use super::AppState;
use crate::domain::capacity::{Capacity, CapacitySpec};
use crate::domain::row::Fields;
use crate::domain::usage::{PowerModel, PowerModelSpec, Usage, UsageRules, FIELDS};
use crate::domain::{Customer, Site};
use crate::storage::usage::frame;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(post_usage)
        .service(list_power_models)
        .service(get_power_model)
        .service(put_power_model)
        .service(delete_power_model)
        .service(list_capacity)
        .service(get_capacity)
        .service(put_capacity)
        .service(delete_capacity);
}

/// One usage record as JSON or NDJSON carry it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"site": "fra1", "customer": "acme", "workload": "batch",
    "start": "2026-03-01T09:00:00Z", "duration_s": 3600, "vcpu_hours": 16,
    "memory_gb_hours": 64, "gpu_hours": 0, "utilisation": 0.5}))]
pub struct UsageInput {
    pub site: String,
    pub customer: String,
    pub workload: String,
    /// Start of the interval, RFC 3339; at most 5 minutes in the future.
    pub start: DateTime<Utc>,
    /// Length of the interval, 1 to 3600 seconds.
    #[schema(minimum = 1, maximum = 3600)]
    pub duration_s: u32,
    /// vCPUs held times hours over the interval (0 when left out).
    pub vcpu_hours: Option<f64>,
    /// GB of memory held times hours (0 when left out).
    pub memory_gb_hours: Option<f64>,
    /// GPUs held times hours (0 when left out).
    pub gpu_hours: Option<f64>,
    /// Average utilisation of the vCPUs and GPUs, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub utilisation: f64,
    /// The machine class's power model (`PUT /v1/power-models/{id}`); absent: Cloud Carbon
    /// Footprint's published coefficients.
    pub power_model: Option<String>,
}

/// Post usage of unmetered workloads
///
/// For workloads without a power meter: what they held per interval (vCPU, memory and GPU hours
/// at an average utilisation), as a JSON array, NDJSON, CSV (header
/// `site,customer,workload,start,duration_s,vcpu_hours,memory_gb_hours,gpu_hours,utilisation,power_model`)
/// or an Arrow IPC stream of those columns (`start` a timestamp).
/// Reports price it with the record's power model when they run (watts = vCPUs x (idle +
/// utilisation x (max - idle)) + GPUs x (idle + utilisation x (max - idle)) + GB x W/GB) and
/// flag the result as modelled (`modelled_it_energy_kwh`, `modelled_share`). Atomic and
/// durable before the 200; the identity is a reading's (customer, workload, site, start), so
/// sending it again replaces it.
#[utoipa::path(tag = "ingest", security(("bearer" = [])),
    request_body(description = "Usage records", content(
        (Vec<UsageInput> = "application/json"),
        (UsageInput = "application/x-ndjson"),
        (String = "text/csv", example = "site,customer,workload,start,duration_s,vcpu_hours,memory_gb_hours,gpu_hours,utilisation,power_model\nfra1,acme,batch,2026-03-01T09:00:00Z,3600,16,64,0,0.5,\n"),
        (Vec<u8> = "application/vnd.apache.arrow.stream"))),
    responses((status = 200, description = "Durable", body = Accepted), CommonErrors, BodyErrors))]
#[post("/usage")]
async fn post_usage(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let rules = UsageRules {
        now: state.clock.now(),
        known_sites: records::known::<Site>(&state),
        known_customers: records::known::<Customer>(&state),
        known_power_models: records::known::<PowerModel>(&state),
    };
    let kind = RecordKind {
        what: "usage",
        fields: &FIELDS,
        owners: |usage: &Usage| (&usage.site, Some(&usage.customer)),
        power_model: |usage: &Usage| usage.power_model.as_ref(),
        frame,
    };
    let check = move |fields: &dyn Fields| Usage::check(fields, &rules);
    let accepted =
        records::accept(&caller, &state, &request, body, kind, check, &state.usage).await?;
    Ok(HttpResponse::Ok().json(Accepted { accepted }))
}

/// List power models
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "Every power model, ordered by id", body = Vec<PowerModel>), CommonErrors))]
#[get("/power-models")]
async fn list_power_models(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<PowerModel>(&state)
}

/// Get a power model
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("power_model" = String, Path, description = "Power model id", example = "xeon-a100")),
    responses((status = 200, description = "The power model", body = PowerModel), CommonErrors))]
#[get("/power-models/{power_model}")]
async fn get_power_model(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<PowerModel>(&state, &id_param("power_model", &path)?)
}

/// Create or replace a power model
///
/// A machine class's watts per vCPU (idle and full load), per GB of memory and per GPU (idle and
/// full load), with their source. Usage naming it is priced with the model in force when a
/// report runs; statements of closed periods keep the registry version they were issued at.
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = PowerModelSpec,
    params(("power_model" = String, Path, description = "Power model id", example = "xeon-a100")),
    responses((status = 200, description = "Replaced", body = PowerModel),
        (status = 201, description = "Created", body = PowerModel), CommonErrors, BodyErrors))]
#[put("/power-models/{power_model}")]
async fn put_power_model(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<PowerModelSpec>,
) -> Result<HttpResponse, ApiError> {
    let model = body.into_inner().parse(id_param("power_model", &path)?)?;
    upsert(&state, &admin, model).await
}

/// Delete a power model
///
/// Refused (409 `in_use`) once usage names it: that usage is priced with it in every report.
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("power_model" = String, Path, description = "Power model id", example = "xeon-a100")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/power-models/{power_model}")]
async fn delete_power_model(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<PowerModel>(&state, &admin, id_param("power_model", &path)?).await
}

/// List reserved capacity
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "Every capacity reservation, ordered by id", body = Vec<Capacity>), CommonErrors))]
#[get("/capacity")]
async fn list_capacity(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Capacity>(&state)
}

/// Get a capacity reservation
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("capacity" = String, Path, description = "Capacity reservation id", example = "acme-fra1-2026")),
    responses((status = 200, description = "The reservation", body = Capacity), CommonErrors))]
#[get("/capacity/{capacity}")]
async fn get_capacity(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Capacity>(&state, &id_param("capacity", &path)?)
}

/// Create or replace a capacity reservation
///
/// The kW `customer` contracted at `site` over [from, to). A site whose `allocation` is
/// `reserved_proportional` spreads what its IT meters measured beyond all its workloads over
/// the customers in proportion to the capacity each held at that instant. The site and the
/// customer must exist (422).
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = CapacitySpec,
    params(("capacity" = String, Path, description = "Capacity reservation id", example = "acme-fra1-2026")),
    responses((status = 200, description = "Replaced", body = Capacity),
        (status = 201, description = "Created", body = Capacity), CommonErrors, BodyErrors))]
#[put("/capacity/{capacity}")]
async fn put_capacity(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CapacitySpec>,
) -> Result<HttpResponse, ApiError> {
    let capacity = body.into_inner().parse(id_param("capacity", &path)?)?;
    upsert(&state, &admin, capacity).await
}

/// Delete a capacity reservation
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("capacity" = String, Path, description = "Capacity reservation id", example = "acme-fra1-2026")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/capacity/{capacity}")]
async fn delete_capacity(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Capacity>(&state, &admin, id_param("capacity", &path)?).await
}
