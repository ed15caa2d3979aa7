//! The registry's admin endpoints: sites, customers, zones and instruments. Each handler parses its
//! input into a domain record and hands it to the generic store operations below.
use super::auth::Admin;
use super::problem::{ApiError, BodyErrors, CommonErrors};
use super::AppState;
use crate::domain::{
    Customer, CustomerSpec, Id, Instrument, InstrumentSpec, Site, SiteSpec, Zone, ZoneCode,
    ZoneSpec,
};
use crate::storage::registry::{Upsert, READINGS};
use crate::storage::{readings, Entity, RegistryError};
use actix_web::{delete, get, put, web, HttpResponse};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(list_sites)
        .service(get_site)
        .service(put_site)
        .service(delete_site)
        .service(list_customers)
        .service(get_customer)
        .service(put_customer)
        .service(delete_customer)
        .service(list_zones)
        .service(get_zone)
        .service(put_zone)
        .service(delete_zone)
        .service(list_instruments)
        .service(get_instrument)
        .service(put_instrument)
        .service(delete_instrument);
}

pub(super) fn id_param(name: &str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|reason| ApiError::invalid_path(name, reason))
}

fn zone_param(raw: &str) -> Result<ZoneCode, ApiError> {
    ZoneCode::parse(raw).map_err(|reason| ApiError::invalid_path("zone", reason))
}

pub(super) async fn upsert<E: Entity + Serialize>(
    state: &AppState,
    admin: &Admin,
    record: E,
) -> Result<HttpResponse, ApiError> {
    let outcome = state
        .registry
        .put(admin.key_id.as_str(), record.clone())
        .await?;
    Ok(match outcome {
        Upsert::Created => HttpResponse::Created().json(record),
        Upsert::Updated => HttpResponse::Ok().json(record),
    })
}

pub(super) fn fetch<E: Entity + Serialize>(
    state: &AppState,
    key: &E::Key,
) -> Result<HttpResponse, ApiError> {
    state
        .registry
        .get::<E>(key)
        .map(|record| HttpResponse::Ok().json(record))
        .ok_or_else(|| ApiError::not_found(format_args!("{} {key}", E::KIND)))
}

/// Deletes a record nothing refers to. One that readings name (marked at ingest, or found in the
/// table for readings stored before marks existed) stays: its energy must stay in every report.
pub(super) async fn remove<E: Entity>(
    state: &AppState,
    admin: &Admin,
    key: E::Key,
) -> Result<HttpResponse, ApiError> {
    let registry = state.registry.clone();
    let shown = key.to_string();
    if let Some(column) = E::READINGS_COLUMN {
        if registry.contains::<E>(&key)
            && readings::mention(&state.readings, column, &shown)
                .await
                .map_err(|e| ApiError::internal(&e))?
        {
            return Err(RegistryError::InUse {
                kind: E::KIND,
                id: shown,
                by: READINGS.into(),
            }
            .into());
        }
    }
    let removed = registry.delete::<E>(admin.key_id.as_str(), &key).await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format_args!("{} {shown}", E::KIND)))
    }
}

pub(super) fn list<E: Entity + Serialize>(state: &AppState) -> HttpResponse {
    HttpResponse::Ok().json(state.registry.list::<E>())
}

/// List sites
///
/// Every registered site, ordered by id.
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "The sites", body = Vec<Site>), CommonErrors))]
#[get("/sites")]
async fn list_sites(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Site>(&state)
}

/// Get a site
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("site" = String, Path, description = "Site id", example = "fra1")),
    responses((status = 200, description = "The site", body = Site), CommonErrors))]
#[get("/sites/{site}")]
async fn get_site(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Site>(&state, &id_param("site", &path)?)
}

/// Create or replace a site
///
/// The site's grid zone decides which intensity series applies; its PUE (default and schedule)
/// scales IT energy to facility energy.
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = SiteSpec,
    params(("site" = String, Path, description = "Site id", example = "fra1")),
    responses((status = 200, description = "Replaced", body = Site),
        (status = 201, description = "Created", body = Site), CommonErrors, BodyErrors))]
#[put("/sites/{site}")]
async fn put_site(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SiteSpec>,
) -> Result<HttpResponse, ApiError> {
    let site = body.into_inner().parse(id_param("site", &path)?)?;
    upsert(&state, &admin, site).await
}

/// Delete a site
///
/// Refused with 409 while an instrument names the site.
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("site" = String, Path, description = "Site id", example = "fra1")),
    responses((status = 204, description = "Deleted"), CommonErrors,
        (status = 409, description = "Still referenced", body = super::problem::Problem,
         content_type = "application/problem+json")))]
#[delete("/sites/{site}")]
async fn delete_site(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Site>(&state, &admin, id_param("site", &path)?).await
}

/// List customers
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "The customers", body = Vec<Customer>), CommonErrors))]
#[get("/customers")]
async fn list_customers(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Customer>(&state)
}

/// Get a customer
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme")),
    responses((status = 200, description = "The customer", body = Customer), CommonErrors))]
#[get("/customers/{customer}")]
async fn get_customer(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Customer>(&state, &id_param("customer", &path)?)
}

/// Create or replace a customer
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = CustomerSpec,
    params(("customer" = String, Path, description = "Customer id", example = "acme")),
    responses((status = 200, description = "Replaced", body = Customer),
        (status = 201, description = "Created", body = Customer), CommonErrors, BodyErrors))]
#[put("/customers/{customer}")]
async fn put_customer(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CustomerSpec>,
) -> Result<HttpResponse, ApiError> {
    let customer = body.into_inner().parse(id_param("customer", &path)?)?;
    upsert(&state, &admin, customer).await
}

/// Delete a customer
///
/// Refused with 409 while an instrument names the customer.
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme")),
    responses((status = 204, description = "Deleted"), CommonErrors,
        (status = 409, description = "Still referenced", body = super::problem::Problem,
         content_type = "application/problem+json")))]
#[delete("/customers/{customer}")]
async fn delete_customer(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Customer>(&state, &admin, id_param("customer", &path)?).await
}

/// List zones
///
/// Zones with registered factors (default factor, residual mix per year).
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "The zones", body = Vec<Zone>), CommonErrors))]
#[get("/zones")]
async fn list_zones(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Zone>(&state)
}

/// Get a zone's factors
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("zone" = String, Path, description = "Grid zone code", example = "DE")),
    responses((status = 200, description = "The zone", body = Zone), CommonErrors))]
#[get("/zones/{zone}")]
async fn get_zone(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Zone>(&state, &zone_param(&path)?)
}

/// Set a zone's factors
///
/// The default factor applies only where no intensity data covers a time; the residual mix per
/// year applies to energy that no instrument covers (market-based).
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = ZoneSpec,
    params(("zone" = String, Path, description = "Grid zone code", example = "DE")),
    responses((status = 200, description = "Replaced", body = Zone),
        (status = 201, description = "Created", body = Zone), CommonErrors, BodyErrors))]
#[put("/zones/{zone}")]
async fn put_zone(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ZoneSpec>,
) -> Result<HttpResponse, ApiError> {
    let zone = body.into_inner().parse(zone_param(&path)?)?;
    upsert(&state, &admin, zone).await
}

/// Delete a zone's factors
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("zone" = String, Path, description = "Grid zone code", example = "DE")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/zones/{zone}")]
async fn delete_zone(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Zone>(&state, &admin, zone_param(&path)?).await
}

/// List instruments
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    responses((status = 200, description = "The instruments", body = Vec<Instrument>), CommonErrors))]
#[get("/instruments")]
async fn list_instruments(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Instrument>(&state)
}

/// Get an instrument
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("instrument" = String, Path, description = "Instrument id", example = "ppa-2026-q1")),
    responses((status = 200, description = "The instrument", body = Instrument), CommonErrors))]
#[get("/instruments/{instrument}")]
async fn get_instrument(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Instrument>(&state, &id_param("instrument", &path)?)
}

/// Create or replace an instrument
///
/// A PPA, REC, GO or green tariff covering energy of a site (or of one customer at it) over
/// [from, to). Its site and customer must exist (422 `unknown_site` / `unknown_customer`).
#[utoipa::path(tag = "registry", security(("bearer" = [])), request_body = InstrumentSpec,
    params(("instrument" = String, Path, description = "Instrument id", example = "ppa-2026-q1")),
    responses((status = 200, description = "Replaced", body = Instrument),
        (status = 201, description = "Created", body = Instrument), CommonErrors, BodyErrors))]
#[put("/instruments/{instrument}")]
async fn put_instrument(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<InstrumentSpec>,
) -> Result<HttpResponse, ApiError> {
    let instrument = body.into_inner().parse(id_param("instrument", &path)?)?;
    upsert(&state, &admin, instrument).await
}

/// Delete an instrument
#[utoipa::path(tag = "registry", security(("bearer" = [])),
    params(("instrument" = String, Path, description = "Instrument id", example = "ppa-2026-q1")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/instruments/{instrument}")]
async fn delete_instrument(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Instrument>(&state, &admin, id_param("instrument", &path)?).await
}
