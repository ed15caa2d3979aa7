//! API key administration. A token is shown once, in the answer that creates it.
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::{ApiKey, Grant, GrantFields, Id, Invalid, Role, ZoneCode};
use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(create_key)
        .service(list_keys)
        .service(revoke_key)
        .service(whoami);
}

/// A key as listed: everything but the token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "key_3f2a9c0d1e2b4a5c", "role": "customer", "customer": "acme",
    "created_at": "2026-11-24T10:00:00Z", "revoked_at": null}))]
pub struct KeyView {
    #[schema(value_type = String)]
    pub id: Id,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub customer: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub sites: Option<Vec<Id>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub zones: Option<Vec<ZoneCode>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        let GrantFields {
            role,
            customer,
            sites,
            zones,
        } = key.grant.into();
        Self {
            id: key.id,
            role,
            customer,
            sites,
            zones,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key with its token: the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "key_3f2a9c0d1e2b4a5c", "role": "customer", "customer": "acme",
    "created_at": "2026-11-24T10:00:00Z", "revoked_at": null,
    "token": "cl_5b0e0c8f3d7a4e21b9c6f1a2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2"}))]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// Send as `Authorization: Bearer <token>`. Not stored; not shown again.
    pub token: String,
}

/// Create an API key
///
/// `admin` keys may do everything; `ingest` keys post readings (only for `sites` when listed);
/// `intensity` keys push grid intensity (only for `zones` when listed); `customer` keys read one
/// customer's footprint and grid intensity.
#[utoipa::path(tag = "keys", security(("bearer" = [])), request_body = GrantFields,
    responses((status = 201, description = "Created; the token is in this answer only", body = CreatedKey),
        CommonErrors, BodyErrors))]
#[post("/api-keys")]
async fn create_key(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<GrantFields>,
) -> Result<HttpResponse, ApiError> {
    let grant =
        Grant::try_from(body.into_inner()).map_err(|error| ApiError::from(Invalid(vec![error])))?;
    let now = state.clock.now();
    let (key, token) = state.keys.create(admin.key_id.as_str(), grant, now).await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        key: key.into(),
        token,
    }))
}

/// List API keys
///
/// Every key, revoked ones included (with `revoked_at`); never a token.
#[utoipa::path(tag = "keys", security(("bearer" = [])),
    responses((status = 200, description = "The keys", body = Vec<KeyView>), CommonErrors))]
#[get("/api-keys")]
async fn list_keys(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    let keys: Vec<KeyView> = state.keys.list().into_iter().map(KeyView::from).collect();
    HttpResponse::Ok().json(keys)
}

/// The calling key
///
/// The key this request was made with: its id, role and limits (never its token). Any valid key;
/// a dashboard asks it to know which views to offer.
#[utoipa::path(tag = "keys", security(("bearer" = [])),
    responses((status = 200, description = "The calling key", body = KeyView), CommonErrors))]
#[get("/whoami")]
async fn whoami(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .keys
        .list()
        .into_iter()
        .find(|key| key.id == caller.key_id)
        .map(|key| HttpResponse::Ok().json(KeyView::from(key)))
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown or revoked API key"))
}

/// Revoke an API key
///
/// The key stops working at once; it stays listed with `revoked_at`.
#[utoipa::path(tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id", example = "key_3f2a9c0d1e2b4a5c")),
    responses((status = 200, description = "Revoked", body = KeyView), CommonErrors))]
#[delete("/api-keys/{id}")]
async fn revoke_key(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Id::parse(&path).map_err(|reason| ApiError::invalid_path("id", reason))?;
    let now = state.clock.now();
    let shown = id.to_string();
    let revoked = state.keys.revoke(admin.key_id.as_str(), &id, now).await?;
    revoked
        .map(|key| HttpResponse::Ok().json(KeyView::from(key)))
        .ok_or_else(|| ApiError::not_found(format_args!("api key {shown}")))
}
