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
/// Answers 200 once this replica has replayed its write-ahead log (the server listens only after
/// that) and while its registry and keys are current with the shared store (read within the last
/// few `registry_poll_s`); 503 while the store is out of reach. No key needed.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "Ready", body = Status),
    (status = 503, description = "The shared store has not been reached for several polls",
     body = super::problem::Problem, content_type = "application/problem+json")))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.follower.current() {
        return Ok(HttpResponse::Ok().json(Status { status: "ready" }));
    }
    Err(ApiError::new(
        super::problem::ErrorCode::Unavailable,
        format!(
            "the registry was last read from the shared store {} s ago",
            state.follower.lag().as_secs()
        ),
    ))
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
    let mut body = state.metrics.render();
    body += &storage_metrics(&state).await;
    body += &state.telemetry.seen.render_metrics();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}

type HealthFigure = fn(&crate::storage::logged::TableHealth) -> f64;

/// The figures an operator of replicas alerts on: each table's backlog (acknowledged, not yet in
/// the shared table), flushes, the table version read, and how current the registry is.
async fn storage_metrics(state: &AppState) -> String {
    use std::fmt::Write;
    let tables = [
        state.readings.health().await,
        state.intensity.health().await,
    ];
    let replica = &state.replica.replica_id;
    let mut out = String::new();
    let gauges: [(&str, &str, HealthFigure); 9] = [
        ("storage_buffered_rows", "gauge", |h| h.buffered_rows as f64),
        ("storage_oldest_unflushed_seconds", "gauge", |h| {
            h.oldest_unflushed_s
        }),
        ("storage_wal_bytes", "gauge", |h| h.log_bytes as f64),
        ("storage_flushes_total", "counter", |h| h.flushes as f64),
        ("storage_flush_failures_total", "counter", |h| {
            h.flush_failures as f64
        }),
        ("storage_last_flush_seconds", "gauge", |h| h.last_flush_s),
        ("storage_contended_commits_total", "counter", |h| {
            h.contended_commits as f64
        }),
        ("storage_compaction_owner", "gauge", |h| {
            f64::from(u8::from(h.compaction_owner))
        }),
        ("storage_table_version", "gauge", |h| {
            h.table_version.map_or(-1.0, |v| v as f64)
        }),
    ];
    for (name, kind, value) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for health in &tables {
            let _ = writeln!(
                out,
                "{name}{{replica=\"{replica}\",table=\"{}\"}} {}",
                health.table,
                value(health)
            );
        }
    }
    let now = state.clock.now();
    let _ = writeln!(out, "# TYPE feed_staleness_seconds gauge");
    for feed in state.feeds.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        // Never succeeded: as stale as can be, so that an alert on it fires.
        let staleness = feed.last_success.map_or("+Inf".to_owned(), |t| {
            format!("{}", (now - t).num_milliseconds() as f64 / 1000.0)
        });
        let _ = writeln!(
            out,
            "feed_staleness_seconds{{provider=\"{}\",zones=\"{}\"}} {staleness}",
            feed.provider,
            feed.zones.join(",")
        );
    }
    let follower = &state.follower;
    let _ = writeln!(
        out,
        "# TYPE registry_version gauge\nregistry_version{{replica=\"{replica}\"}} {}\n\
         # TYPE registry_lag_seconds gauge\nregistry_lag_seconds{{replica=\"{replica}\"}} {:.3}\n\
         # TYPE registry_poll_failures_total counter\nregistry_poll_failures_total{{replica=\"{replica}\"}} {}",
        state.registry.version(),
        follower.lag().as_secs_f64(),
        follower.failures(),
    );
    out
}
