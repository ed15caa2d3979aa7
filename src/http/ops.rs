//! Operational endpoints: liveness, readiness and metrics.
use super::auth::Admin;
use super::problem::{ApiError, CommonErrors};
use super::AppState;
use actix_web::FromRequest;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config.service(healthz).service(readyz).service(metrics);
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Status {
    /// `ok` (alive) or `ready` (able to serve).
    pub status: &'static str,
}

/// Liveness
///
/// Answers 200 while the process serves HTTP. No key needed.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive", body = Status)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness
///
/// Answers 200 once the stores are open and the data directory is reachable. No key needed.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "Ready", body = Status),
    (status = 503, description = "The data directory is unreachable", body = super::problem::Problem,
     content_type = "application/problem+json")))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data_dir = state.data_dir.clone();
    let reachable = web::block(move || std::fs::metadata(&data_dir).map(|m| m.is_dir()))
        .await
        .map_err(|err| ApiError::internal(&err))?;
    match reachable {
        Ok(true) => Ok(HttpResponse::Ok().json(Status { status: "ready" })),
        _ => Err(ApiError::new(
            super::problem::ErrorCode::Unavailable,
            "the data directory is unreachable",
        )),
    }
}

/// Metrics
///
/// Request counts and latency histograms per route, in the Prometheus text format. Public unless
/// `metrics_public = false`, then it needs an admin key.
#[utoipa::path(tag = "operations", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain; version=0.0.4",
        example = "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1\n"),
        CommonErrors))]
#[get("/metrics")]
async fn metrics(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.metrics_public {
        Admin::extract(&request).await?;
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render() + &state.telemetry.render_metrics()))
}
