//! Grid intensity: pushed points, and the points in force for a zone.
use super::auth::Caller;
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::readings::Accepted;
use super::AppState;
use crate::domain::intensity::{in_force, IntensityPoint, IntensityPush};
use crate::domain::{Grant, ZoneCode};
use crate::storage::intensity;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Longest range one intensity request may span.
const MAX_RANGE: Duration = Duration::days(93);

pub fn configure(config: &mut ServiceConfig) {
    config.service(post_intensity).service(zone_intensity);
}

/// Push intensity points
///
/// Points of one zone from one source and signal. Every point is kept (superseded ones for audit);
/// reads and reports use the one in force: the best kind (actual > estimated > forecast), then
/// average over marginal, then the latest received. Every customer in the zone is charged by these
/// points, so only an admin key or an `intensity` key (limited to listed zones, if it lists any)
/// may push them; each stored point keeps the id of the key that wrote it (`written_by`).
#[utoipa::path(tag = "intensity", security(("bearer" = [])), request_body = IntensityPush,
    responses((status = 200, description = "Durable", body = Accepted), CommonErrors, BodyErrors))]
#[post("/intensity")]
async fn post_intensity(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<IntensityPush>,
) -> Result<HttpResponse, ApiError> {
    let push = body.into_inner();
    let allowed = ZoneCode::parse(&push.zone).map_or(
        matches!(caller.grant, Grant::Admin | Grant::Intensity { .. }),
        |zone| caller.grant.may_write_zone(&zone),
    );
    if !allowed {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this key may not push intensity for zone {}: that needs an admin key or an \
                 intensity key for the zone",
                push.zone
            ),
        ));
    }
    let points = push.parse(state.clock.now(), &caller.key_id)?;
    let accepted = intensity::append(&state.intensity, points)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(Accepted { accepted }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Inclusive start, RFC 3339.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339.
    #[param(example = "2026-03-02T00:00:00Z")]
    pub to: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"zone": "DE", "points": [{"start": "2026-03-01T09:00:00Z",
    "end": "2026-03-01T10:00:00Z", "zone": "DE", "gco2e_per_kwh": 330.0, "kind": "actual",
    "signal": "average", "source": "manual", "source_detail": null,
    "received_at": "2026-03-01T10:05:00Z"}]}))]
pub struct ZoneIntensity {
    #[schema(value_type = String)]
    pub zone: ZoneCode,
    /// The points in force, clipped to the range and to the stretch each is in force over;
    /// ordered by start; where no point covers a time there is a gap.
    pub points: Vec<IntensityPoint>,
}

/// Intensity in force for a zone
///
/// The points in force over [from, to) after precedence, clipped to the range. Grid intensity is
/// public data: any key may read it.
#[utoipa::path(tag = "intensity", security(("bearer" = [])),
    params(("zone" = String, Path, description = "Grid zone code", example = "DE"), RangeQuery),
    responses((status = 200, description = "Points in force", body = ZoneIntensity), CommonErrors))]
#[get("/zones/{zone}/intensity")]
async fn zone_intensity(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let zone = ZoneCode::parse(&path).map_err(|reason| ApiError::invalid_path("zone", reason))?;
    let RangeQuery { from, to } = query.into_inner();
    if from >= to {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "from must be before to",
        ));
    }
    if to - from > MAX_RANGE {
        return Err(ApiError::new(
            ErrorCode::RangeTooLong,
            "ask for at most 93 days at a time",
        ));
    }
    let stored = intensity::load(
        &state.intensity,
        Some(std::slice::from_ref(&zone)),
        from,
        to,
        None,
    )
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let points = in_force(&stored)
        .into_iter()
        .filter(|s| s.end > from && s.start < to)
        .map(|s| IntensityPoint {
            start: s.start.max(from),
            end: s.end.min(to),
            ..s.point.clone()
        })
        .collect();
    Ok(HttpResponse::Ok().json(ZoneIntensity { zone, points }))
}
