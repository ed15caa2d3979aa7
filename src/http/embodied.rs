//! Hardware and its reservations (admin): the registry records that embodied emissions and the
//! SCI rest on. Handlers parse into domain records and use the registry's generic operations.
use super::auth::Admin;
use super::problem::{ApiError, BodyErrors, CommonErrors};
use super::registry::{fetch, id_param, list, remove, upsert};
use super::AppState;
use crate::domain::embodied::{Hardware, HardwareSpec, Reservation, ReservationSpec};
use actix_web::{delete, get, put, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(list_hardware)
        .service(get_hardware)
        .service(put_hardware)
        .service(delete_hardware)
        .service(list_reservations)
        .service(get_reservation)
        .service(put_reservation)
        .service(delete_reservation);
}

/// List hardware
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    responses((status = 200, description = "Every machine, ordered by id", body = Vec<Hardware>), CommonErrors))]
#[get("/hardware")]
async fn list_hardware(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Hardware>(&state)
}

/// Get a machine
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    params(("hardware" = String, Path, description = "Hardware id", example = "fra1-r42-s07")),
    responses((status = 200, description = "The machine", body = Hardware), CommonErrors))]
#[get("/hardware/{hardware}")]
async fn get_hardware(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Hardware>(&state, &id_param("hardware", &path)?)
}

/// Create or replace a machine
///
/// A server (or GPU box, storage node, rack) at a site with its embodied emissions, amortised
/// over `lifespan_years` from `in_service` and shared by `total` units of `shared_by`. A `class`
/// of the shipped table (Cloud Carbon Footprint's coefficients) fills the figures left out. Its
/// site must exist (422 `unknown_site`); a total below what its reservations hold is refused.
#[utoipa::path(tag = "embodied", security(("bearer" = [])), request_body = HardwareSpec,
    params(("hardware" = String, Path, description = "Hardware id", example = "fra1-r42-s07")),
    responses((status = 200, description = "Replaced", body = Hardware),
        (status = 201, description = "Created", body = Hardware), CommonErrors, BodyErrors))]
#[put("/hardware/{hardware}")]
async fn put_hardware(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<HardwareSpec>,
) -> Result<HttpResponse, ApiError> {
    let hardware = body.into_inner().parse(id_param("hardware", &path)?)?;
    upsert(&state, &admin, hardware).await
}

/// Delete a machine
///
/// Refused (409 `in_use`) while a reservation names it: its emissions stay in every report.
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    params(("hardware" = String, Path, description = "Hardware id", example = "fra1-r42-s07")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/hardware/{hardware}")]
async fn delete_hardware(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Hardware>(&state, &admin, id_param("hardware", &path)?).await
}

/// List reservations
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    responses((status = 200, description = "Every reservation, ordered by id", body = Vec<Reservation>), CommonErrors))]
#[get("/reservations")]
async fn list_reservations(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Reservation>(&state)
}

/// Get a reservation
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    params(("reservation" = String, Path, description = "Reservation id", example = "acme-api-2026-03")),
    responses((status = 200, description = "The reservation", body = Reservation), CommonErrors))]
#[get("/reservations/{reservation}")]
async fn get_reservation(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Reservation>(&state, &id_param("reservation", &path)?)
}

/// Create or replace a reservation
///
/// Workload `workload` of `customer` held `reserved` of the machine's `shared_by` units over
/// [from, to): it carries that share of the machine's embodied emissions for that time. The
/// machine and the customer must exist (422 `unknown_hardware` / `unknown_customer`), and the
/// machine's reservations may never hold more than its `total` at once (422).
#[utoipa::path(tag = "embodied", security(("bearer" = [])), request_body = ReservationSpec,
    params(("reservation" = String, Path, description = "Reservation id", example = "acme-api-2026-03")),
    responses((status = 200, description = "Replaced", body = Reservation),
        (status = 201, description = "Created", body = Reservation), CommonErrors, BodyErrors))]
#[put("/reservations/{reservation}")]
async fn put_reservation(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ReservationSpec>,
) -> Result<HttpResponse, ApiError> {
    let reservation = body.into_inner().parse(id_param("reservation", &path)?)?;
    upsert(&state, &admin, reservation).await
}

/// Delete a reservation
#[utoipa::path(tag = "embodied", security(("bearer" = [])),
    params(("reservation" = String, Path, description = "Reservation id", example = "acme-api-2026-03")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/reservations/{reservation}")]
async fn delete_reservation(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Reservation>(&state, &admin, id_param("reservation", &path)?).await
}
