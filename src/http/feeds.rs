//! `GET /v1/feeds`: the state of each configured grid-intensity feed.
use super::auth::Admin;
use super::problem::CommonErrors;
use super::AppState;
use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config.service(list_feeds);
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"provider": "uk_carbon_intensity", "zones": ["GB"],
    "last_success": "2026-03-01T10:00:00Z", "last_error": null, "last_error_at": null,
    "consecutive_failures": 0, "next_run": "2026-03-01T10:30:00Z", "staleness_s": 120,
    "points_stored": 96}))]
pub struct FeedView {
    /// `uk_carbon_intensity`, `electricity_maps` or `watttime`.
    pub provider: String,
    pub zones: Vec<String>,
    pub last_success: Option<DateTime<Utc>>,
    /// The last failure (timeouts, refused credentials, 429, 5xx, malformed bodies).
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub next_run: Option<DateTime<Utc>>,
    /// Seconds since the last success; null before the first.
    pub staleness_s: Option<i64>,
    pub points_stored: u64,
}

/// Feed status
///
/// Each configured provider: zones, last success, last error, next run and staleness. Credentials
/// are never shown. Admin keys only.
#[utoipa::path(tag = "intensity", security(("bearer" = [])),
    responses((status = 200, description = "The feeds", body = Vec<FeedView>), CommonErrors))]
#[get("/feeds")]
async fn list_feeds(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now();
    let feeds: Vec<FeedView> = state
        .feeds
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|f| FeedView {
            provider: f.provider.to_owned(),
            zones: f.zones.clone(),
            last_success: f.last_success,
            last_error: f.last_error.clone(),
            last_error_at: f.last_error_at,
            consecutive_failures: f.consecutive_failures,
            next_run: f.next_run,
            staleness_s: f.last_success.map(|t| (now - t).num_seconds()),
            points_stored: f.points_stored,
        })
        .collect();
    HttpResponse::Ok().json(feeds)
}
