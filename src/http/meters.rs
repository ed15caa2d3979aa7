//! Site meters in (admin, or an ingest key for the site) and a site's books out (admin).
use super::auth::{Admin, Caller};
use super::problem::{ApiError, BodyErrors, CommonErrors, ErrorCode};
use super::readings::Accepted;
use super::records::{self, RecordKind};
use super::registry::id_param;
use super::AppState;
use crate::domain::meter::{MeterReading, MeterRules, FIELDS};
use crate::domain::row::Fields;
use crate::domain::Site;
use crate::reports::{reconciliation_parquet, FootprintQuery, RawQuery, ReconciliationRow};
use crate::storage::meters::frame;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(config: &mut ServiceConfig) {
    config.service(post_meters).service(reconciliation);
}

/// Site meters may draw megawatts; this bounds typos (1 GW), not sites.
const MAX_SITE_POWER_W: f64 = 1.0e9;

/// One meter reading as JSON or NDJSON carry it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"site": "fra1", "meter": "main", "kind": "facility",
    "start": "2026-03-01T09:00:00Z", "duration_s": 900, "energy_j": 54000000}))]
pub struct MeterInput {
    pub site: String,
    /// The meter's id at the site (`main`, `ups-a`, `pdu-r12`).
    pub meter: String,
    pub kind: crate::domain::meter::MeterKind,
    /// Start of the interval, RFC 3339; at most 5 minutes in the future.
    pub start: DateTime<Utc>,
    /// Length of the interval, 1 to 3600 seconds.
    #[schema(minimum = 1, maximum = 3600)]
    pub duration_s: u32,
    /// Energy over the interval in joules; give this or `power_w`.
    pub energy_j: Option<f64>,
    /// Average power over the interval in watts; give this or `energy_j`.
    pub power_w: Option<f64>,
}

/// Post site meter readings
///
/// What the site's meters measured per interval: `facility` (the utility or main meter), `it`
/// (UPS or PDU output feeding IT), `cooling`, `other`; as a JSON array, NDJSON, CSV (header
/// `site,meter,kind,start,duration_s,energy_j,power_w`) or an Arrow IPC stream of those columns
/// (`start` a timestamp). Atomic and durable before the 200; a
/// meter reading's identity is (site, meter, start), so sending it again replaces it. Needs an
/// admin key or an ingest key for the site.
#[utoipa::path(tag = "ingest", security(("bearer" = [])),
    request_body(description = "Meter readings", content(
        (Vec<MeterInput> = "application/json"),
        (MeterInput = "application/x-ndjson"),
        (String = "text/csv", example = "site,meter,kind,start,duration_s,energy_j,power_w\nfra1,main,facility,2026-03-01T09:00:00Z,900,54000000,\n"),
        (Vec<u8> = "application/vnd.apache.arrow.stream"))),
    responses((status = 200, description = "Durable", body = Accepted), CommonErrors, BodyErrors))]
#[post("/meters")]
async fn post_meters(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let rules = MeterRules {
        now: state.clock.now(),
        known_sites: records::known::<Site>(&state),
        max_power_w: MAX_SITE_POWER_W,
    };
    let kind = RecordKind {
        what: "meter readings",
        fields: &FIELDS,
        owners: |reading: &MeterReading| (&reading.site, None),
        power_model: |_| None,
        frame,
    };
    let check = move |fields: &dyn Fields| MeterReading::check(fields, &rules);
    let accepted =
        records::accept(&caller, &state, &request, body, kind, check, &state.meters).await?;
    Ok(HttpResponse::Ok().json(Accepted { accepted }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationParams {
    /// Inclusive start, RFC 3339.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339.
    #[param(example = "2026-03-02T00:00:00Z")]
    pub to: DateTime<Utc>,
    /// `hour`, `day`, `week`, `month`, `quarter`, `year` or `total` (the default).
    #[param(
        example = "hour",
        pattern = "^(hour|day|week|month|quarter|year|total)$"
    )]
    pub granularity: Option<String>,
    /// IANA time zone of the buckets (default UTC).
    #[param(example = "Europe/Berlin")]
    pub tz: Option<String>,
    /// `json` (the default), `csv` or `parquet`.
    #[param(example = "json", pattern = "^(json|csv|parquet)$")]
    pub format: Option<String>,
}

/// A site's books.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationResponse {
    pub site: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub tz: String,
    /// Ordered by bucket_start.
    pub rows: Vec<ReconciliationRow>,
    /// The whole range (coverage: the mean of the buckets').
    pub totals: ReconciliationRow,
}

const CSV_HEADER: &str = "bucket_start,facility_meter_kwh,it_meter_kwh,cooling_meter_kwh,\
other_meter_kwh,facility_meter_coverage,it_meter_coverage,measured_workloads_kwh,\
modelled_workloads_kwh,unattributed_it_kwh,attribution_coverage,measured_pue,allocated_it_kwh,operator_it_kwh,\
discrepancies";

fn csv(rows: &[ReconciliationRow]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER.split(','))?;
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in rows {
        writer.write_record([
            row.bucket_start.clone().unwrap_or_default(),
            row.facility_meter_kwh.to_string(),
            row.it_meter_kwh.to_string(),
            row.cooling_meter_kwh.to_string(),
            row.other_meter_kwh.to_string(),
            row.facility_meter_coverage.to_string(),
            row.it_meter_coverage.to_string(),
            row.measured_workloads_kwh.to_string(),
            row.modelled_workloads_kwh.to_string(),
            optional(row.unattributed_it_kwh),
            optional(row.attribution_coverage),
            optional(row.measured_pue),
            row.allocated_it_kwh.to_string(),
            optional(row.operator_it_kwh),
            row.discrepancies.join("; "),
        ])?;
    }
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

/// A site's books
///
/// Per bucket: what the site's facility, IT, cooling and other meters measured (spread over
/// buckets by time, with the share of the bucket the meters covered), the IT energy of every
/// workload's readings there, what the IT meters measured beyond them (unattributed: idle and
/// unmetered equipment), the share attributed, and the measured PUE (facility over IT). A meter
/// gap, workloads measuring more than the meter, or a PUE below 1.0 are listed in
/// `discrepancies` and never used. Admin keys only.
#[utoipa::path(tag = "reports", security(("bearer" = [])),
    params(("site" = String, Path, description = "Site id", example = "fra1"), ReconciliationParams),
    responses(
        (status = 200, description = "The site's books", content(
            (ReconciliationResponse = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        CommonErrors))]
#[get("/sites/{site}/reconciliation")]
async fn reconciliation(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ReconciliationParams>,
) -> Result<HttpResponse, ApiError> {
    let site = id_param("site", &path)?;
    if !state.registry.contains::<Site>(&site) {
        return Err(ApiError::not_found(format_args!("site {site}")));
    }
    let params = params.into_inner();
    let format = params.format.as_deref().unwrap_or("json");
    if !["json", "csv", "parquet"].contains(&format) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("format {format:?} is not one of json, csv, parquet"),
        ));
    }
    let query = FootprintQuery::parse(
        None,
        RawQuery {
            from: params.from,
            to: params.to,
            granularity: params.granularity.as_deref(),
            group_by: None,
            tz: params.tz.as_deref(),
            workload: None,
            site: None,
        },
    )?;
    let window = query.window;
    let (rows, totals) = state.reports.reconciliation(&site, query).await?;
    match format {
        "csv" => {
            let body = csv(&rows).map_err(|e| ApiError::internal(&e))?;
            return Ok(HttpResponse::Ok().content_type("text/csv").body(body));
        }
        "parquet" => {
            let body = web::block(move || reconciliation_parquet(&rows))
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map_err(|e| ApiError::internal(&e))?;
            return Ok(HttpResponse::Ok()
                .content_type("application/vnd.apache.parquet")
                .body(body));
        }
        _ => {}
    }
    Ok(HttpResponse::Ok().json(ReconciliationResponse {
        site: site.to_string(),
        from: window.from,
        to: window.to,
        granularity: window.granularity.as_str().to_owned(),
        tz: window.tz.name().to_owned(),
        rows,
        totals,
    }))
}
