//! Telemetry over HTTP: the mappings (admin, registry records), the Prometheus remote-write
//! receiver (ingest or admin keys, as Prometheus' `remote_write.authorization`), and what each
//! source has delivered.
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::registry::{fetch, id_param, list, remove, upsert};
use super::AppState;
use crate::domain::mapping::{Mapping, MappingSpec};
use crate::domain::Grant;
use crate::sources::series::Counts;
use crate::sources::{otlp, remote_write, IngestContext, SourceStatus, UnmappedSeries};
use actix_web::HttpRequest;
use actix_web::{delete, get, post, put, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(list_mappings)
        .service(get_mapping)
        .service(put_mapping)
        .service(delete_mapping)
        .service(telemetry_sources)
        .service(telemetry_unmapped)
        .service(telemetry_flush);
}

/// The receivers, under the paths their senders use by convention.
pub fn configure_receivers(config: &mut ServiceConfig) {
    config.service(remote_write_receiver);
}

/// OTLP/HTTP, so that `OTEL_EXPORTER_OTLP_ENDPOINT=http://host:8080/otlp` works.
pub fn configure_otlp(config: &mut ServiceConfig) {
    config.service(otlp_metrics);
}

fn ingest_context<'a>(state: &'a AppState, grant: &'a Grant) -> IngestContext<'a> {
    IngestContext {
        registry: &state.registry,
        readings: &state.readings,
        functional_units: &state.functional_units,
        meters: &state.meters,
        grant,
        now: state.clock.now(),
        max_power_w: state.ingest.max_power_w,
    }
}

/// List telemetry mappings
///
/// Ordered by id; they are tried by `priority` (lowest first), then id.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    responses((status = 200, description = "The mappings", body = Vec<Mapping>), CommonErrors))]
#[get("/telemetry/mappings")]
async fn list_mappings(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    list::<Mapping>(&state)
}

/// Get a telemetry mapping
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    params(("mapping" = String, Path, description = "Mapping id", example = "kepler-fra1")),
    responses((status = 200, description = "The mapping", body = Mapping), CommonErrors))]
#[get("/telemetry/mappings/{mapping}")]
async fn get_mapping(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch::<Mapping>(&state, &id_param("mapping", &path)?)
}

/// Create or replace a telemetry mapping
///
/// Which metric's series become whose readings: label matchers (anchored regexes), the unit, and
/// templates for site, customer and workload built from labels (`{pod_name}`), with optional
/// lookup maps. `preset` (`kepler`, `scaphandre`) fills metric, unit, matchers and workload. A
/// fixed site or customer must exist (422 `unknown_site` / `unknown_customer`).
#[utoipa::path(tag = "telemetry", security(("bearer" = [])), request_body = MappingSpec,
    params(("mapping" = String, Path, description = "Mapping id", example = "kepler-fra1")),
    responses((status = 200, description = "Replaced", body = Mapping),
        (status = 201, description = "Created", body = Mapping), CommonErrors, BodyErrors))]
#[put("/telemetry/mappings/{mapping}")]
async fn put_mapping(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<MappingSpec>,
) -> Result<HttpResponse, ApiError> {
    let mapping = body.into_inner().parse(id_param("mapping", &path)?)?;
    upsert(&state, &admin, mapping).await
}

/// Delete a telemetry mapping
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    params(("mapping" = String, Path, description = "Mapping id", example = "kepler-fra1")),
    responses((status = 204, description = "Deleted"), CommonErrors))]
#[delete("/telemetry/mappings/{mapping}")]
async fn delete_mapping(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Mapping>(&state, &admin, id_param("mapping", &path)?).await
}

/// Prometheus remote-write 1.0 and 2.0
///
/// A snappy-compressed (block format) protobuf `WriteRequest`, as Prometheus sends it
/// (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf`), or a 2.0
/// `io.prometheus.write.v2.Request` (`Content-Type:
/// application/x-protobuf;proto=io.prometheus.write.v2.Request`; the samples written are in
/// `X-Prometheus-Remote-Write-Samples-Written`). Series are matched to the
/// mappings; counters' increases and gauges' power become readings in aligned windows
/// (`telemetry.window_s`), summed per site, customer and workload, so a retried batch replaces its
/// windows and never counts twice. 204 once durable; 400 for a body that can never be read; 5xx
/// only for what a retry can fix. Unmapped and ignored samples are counted in
/// `GET /v1/telemetry/sources`. Needs an ingest or admin key.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    request_body(description = "Snappy-compressed protobuf WriteRequest",
        content((Vec<u8> = "application/x-protobuf"))),
    responses((status = 204, description = "Durable"), CommonErrors, BodyErrors))]
#[post("/write")]
async fn remote_write_receiver(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_ingest("remote-write")?;
    let version = remote_write::Version::of_content_type(super::content_type(&request));
    // A body as Prometheus sends it (2,000 samples, some 100 kB) decodes in about a millisecond:
    // on this thread, where its strings are later freed (a blocking thread's allocations freed
    // here kept the allocator initialising fresh pages). Larger ones go to a blocking thread.
    let series = if body.len() <= INLINE_DECODE_BYTES {
        remote_write::decode_version(&body, version)
    } else {
        web::block(move || remote_write::decode_version(&body, version))
            .await
            .map_err(|e| ApiError::internal(&e))?
    }
    .map_err(|e| ApiError::new(ErrorCode::MalformedBody, e.to_string()))?;
    let context = ingest_context(&state, &caller.grant);
    let counts = state
        .telemetry
        .ingest("remote_write", series, Counts::default(), context)
        .await?;
    // Remote-write 2.0 senders read what was written from these headers.
    Ok(HttpResponse::NoContent()
        .insert_header((
            "X-Prometheus-Remote-Write-Samples-Written",
            counts.samples_accepted.to_string(),
        ))
        .insert_header(("X-Prometheus-Remote-Write-Histograms-Written", "0"))
        .insert_header(("X-Prometheus-Remote-Write-Exemplars-Written", "0"))
        .finish())
}

/// Remote-write bodies up to this size are decoded on the request's own thread.
const INLINE_DECODE_BYTES: usize = 512 << 10;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// OTLP/HTTP metrics
///
/// An `ExportMetricsServiceRequest` as protobuf (`application/x-protobuf`) or JSON
/// (`application/json`), gzip or not. Sums (delta or cumulative) and gauges become series whose
/// labels are the resource's and the point's attributes and whose name is the metric's; the
/// mappings turn them into readings as for remote-write (presets `hw_energy`, `hw_power` for the
/// semantic conventions). The answer is an `ExportMetricsServiceResponse` in the request's
/// encoding; points that could not be taken are counted in `partial_success`. Needs an ingest or
/// admin key.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    request_body(description = "ExportMetricsServiceRequest", content(
        (Vec<u8> = "application/x-protobuf"),
        (serde_json::Value = "application/json", example = json!({"resourceMetrics": [{"resource": {"attributes": [
            {"key": "host.name", "value": {"stringValue": "fra1-n1"}}]}, "scopeMetrics": [{"metrics": [
            {"name": "hw.energy", "unit": "J", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
             "dataPoints": [{"timeUnixNano": "1772355600000000000", "asDouble": 3600.0,
               "attributes": [{"key": "hw.id", "value": {"stringValue": "psu-1"}}]}]}}]}]}]})))),
    responses((status = 200, description = "Durable; rejected points in partial_success",
        content((Vec<u8> = "application/x-protobuf"), (serde_json::Value = "application/json"))),
        CommonErrors, BodyErrors))]
#[post("/metrics")]
async fn otlp_metrics(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_ingest("OTLP")?;
    let content_type = super::content_type(&request);
    let protobuf = if content_type.starts_with(PROTOBUF) {
        true
    } else if content_type.starts_with(JSON) {
        false
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type {content_type:?} is not {PROTOBUF} or {JSON}"),
        ));
    };
    let decoded = web::block(move || match protobuf {
        true => otlp::decode_protobuf(&body),
        false => otlp::decode_json(&body),
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| ApiError::new(ErrorCode::MalformedBody, e.to_string()))?;
    let mut counts = Counts::default();
    if decoded.unsupported_points > 0 {
        counts.ignore("unsupported_metric_type", decoded.unsupported_points);
    }
    let context = ingest_context(&state, &caller.grant);
    let counts = state
        .telemetry
        .ingest("otlp", decoded.series, counts, context)
        .await?;
    let rejected: u64 = counts.samples_ignored.values().sum();
    let reasons = counts
        .samples_ignored
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(if protobuf {
        HttpResponse::Ok()
            .content_type(PROTOBUF)
            .body(otlp::response_protobuf(rejected, &reasons))
    } else {
        HttpResponse::Ok().json(otlp::response_json(rejected, &reasons))
    })
}

/// Telemetry sources
///
/// Per source: the newest sample, samples accepted, unmapped and ignored (by reason), gaps, counter
/// resets, readings written, active and unmapped series, and the last error. Counts start at the
/// server's start; the series state itself survives restarts. Admin keys only.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    responses((status = 200, description = "The sources", body = Vec<SourceStatus>), CommonErrors))]
#[get("/telemetry/sources")]
async fn telemetry_sources(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.telemetry.seen.sources())
}

/// What `POST /v1/telemetry/flush` wrote.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"windows_written": 12}))]
pub struct Flushed {
    /// Window readings written (or written again with their whole sum).
    pub windows_written: usize,
}

/// Write the waiting telemetry windows
///
/// A window's reading is written once a later sample of its target passes the window's end, or
/// `telemetry.flush_after_s` after it changed. This writes every window still waiting now (before
/// closing a period, or to see the newest samples in a report at once); it is durable when this
/// answers. Admin keys only.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    responses((status = 200, description = "The windows written", body = Flushed), CommonErrors))]
#[post("/telemetry/flush")]
async fn telemetry_flush(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let context = ingest_context(&state, &Grant::Admin);
    let windows_written = state.telemetry.write_waiting_windows(context, true).await?;
    Ok(HttpResponse::Ok().json(Flushed { windows_written }))
}

/// Series without a mapping
///
/// Metric names and label sets seen without a mapping (at most 1,000), so an operator can write
/// the mapping. Admin keys only.
#[utoipa::path(tag = "telemetry", security(("bearer" = [])),
    responses((status = 200, description = "Unmapped series", body = Vec<UnmappedSeries>), CommonErrors))]
#[get("/telemetry/unmapped")]
async fn telemetry_unmapped(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.telemetry.seen.unmapped())
}
