//! Footprint reports over HTTP: one customer's (customer keys read only their own), or everyone's
//! (admin), as JSON, NDJSON, CSV or Parquet.
use super::auth::{Admin, Caller};
use super::problem::{ApiError, CommonErrors, ErrorCode};
use super::AppState;
use crate::domain::Id;
use crate::reports::{Figures, Footprint, FootprintQuery, FootprintRow, RawQuery, ReportError};
use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// JSON answers hold at most this many rows; larger results stream as NDJSON, CSV or Parquet.
pub const MAX_JSON_ROWS: usize = 50_000;
/// Rows per chunk of a streamed answer.
const CHUNK_ROWS: usize = 2_000;

pub fn configure(config: &mut ServiceConfig) {
    config.service(customer_footprint).service(all_footprints);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Inclusive start, RFC 3339.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// Exclusive end, RFC 3339.
    #[param(example = "2026-03-02T00:00:00Z")]
    pub to: DateTime<Utc>,
    /// `hour` (at most 31 days), `day` (366 days), `week` (ISO weeks, from Monday), `month`,
    /// `quarter`, `year` or `total` (the default), in the report's time zone.
    #[param(
        example = "hour",
        pattern = "^(hour|day|week|month|quarter|year|total)$"
    )]
    pub granularity: Option<String>,
    /// Comma list of `customer`, `workload`, `site`, `zone`.
    #[param(example = "workload")]
    pub group_by: Option<String>,
    /// IANA time zone of day and month buckets (default UTC).
    #[param(example = "Europe/London")]
    pub tz: Option<String>,
    /// `json`, `ndjson`, `csv` or `parquet`; wins over `Accept`.
    #[param(example = "json")]
    pub format: Option<String>,
    /// Only these workloads (comma list); all when absent.
    #[param(example = "api,batch")]
    pub workload: Option<String>,
    /// Only these sites (comma list); all when absent.
    #[param(example = "fra1")]
    pub site: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerFilter {
    /// Only this customer.
    #[param(example = "acme")]
    pub customer: Option<String>,
}

/// A footprint as JSON: the query echoed, the rows and the totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct FootprintResponse {
    pub customer: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub group_by: Vec<String>,
    pub tz: String,
    /// The workload and site filters (empty: all).
    pub workloads: Vec<String>,
    pub sites: Vec<String>,
    /// The readings table version the report read; the same version gives the same numbers.
    pub table_version: Option<u64>,
    /// Every version the report read: readings, intensity and registry.
    pub versions: crate::reports::Versions,
    /// Ordered by bucket_start, then the group keys.
    pub rows: Vec<FootprintRow>,
    pub totals: Figures,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Ndjson,
    Csv,
    Parquet,
}

fn format(request: &HttpRequest, param: Option<&str>) -> Result<Format, ApiError> {
    if let Some(param) = param {
        return match param {
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            other => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("format {other:?} is not one of json, ndjson, csv, parquet"),
            )),
        };
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("application/x-ndjson") {
        Format::Ndjson
    } else if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("application/vnd.apache.parquet") {
        Format::Parquet
    } else {
        Format::Json
    })
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        match &error {
            ReportError::BadParameter(_) => {
                ApiError::new(ErrorCode::InvalidQuery, error.to_string())
            }
            ReportError::RangeTooLong(_) => {
                ApiError::new(ErrorCode::RangeTooLong, error.to_string())
            }
            ReportError::UnknownCustomer(customer) => {
                ApiError::not_found(format_args!("customer {customer}"))
            }
            ReportError::Store(store) => ApiError::internal(store),
            ReportError::Render(_) => ApiError::internal(&error),
        }
    }
}

fn polars_error(error: polars::error::PolarsError) -> ApiError {
    ApiError::internal(&error)
}

/// An encoded answer: its media type, and its body whole or rendered a slice of rows at a time.
struct Rendered {
    content_type: &'static str,
    filename: Option<&'static str>,
    body: Body,
}

enum Body {
    Whole(Bytes),
    /// NDJSON or CSV: the report computed one part at a time (`FootprintQuery::in_parts`) and
    /// each part rendered `CHUNK_ROWS` rows at a time as the client reads, so the first bytes
    /// leave once the first part is known and memory holds one part, whatever the range.
    Rows(Box<RowStream>),
}

struct RowStream {
    format: Format,
    state: web::Data<AppState>,
    current: Footprint,
    /// The next row of `current` to send.
    offset: usize,
    rest: std::collections::VecDeque<FootprintQuery>,
}

impl RowStream {
    /// The next slice of rows; the next part's report when this one is sent; `None` at the end.
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        while self.offset >= self.current.height() {
            let query = self.rest.pop_front()?;
            match self.state.reports.footprint(query).await {
                Ok(footprint) => (self.current, self.offset) = (footprint, 0),
                Err(error) => {
                    // The status has gone: end the body early, so the client sees it cut short.
                    self.rest.clear();
                    return Some((Err(ApiError::from(error).into()), self));
                }
            }
        }
        let chunk = flat_chunk(&self.current, self.format, self.offset).map_err(Into::into);
        self.offset += CHUNK_ROWS;
        Some((chunk, self))
    }
}

impl Rendered {
    fn flat(rows: RowStream) -> Self {
        let csv = rows.format == Format::Csv;
        Rendered {
            content_type: match csv {
                true => "text/csv; charset=utf-8",
                false => "application/x-ndjson",
            },
            filename: csv.then_some("footprint.csv"),
            body: Body::Rows(Box::new(rows)),
        }
    }

    /// Sends the body (chunked transfer for rows, so large answers start at once).
    fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        response.content_type(self.content_type);
        if let Some(name) = self.filename {
            response.insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ));
        }
        match self.body {
            Body::Whole(bytes) => response.body(bytes),
            Body::Rows(rows) => {
                let header = (rows.format == Format::Csv)
                    .then(|| Bytes::from(format!("{}\r\n", rows.current.flat_header().join(","))));
                let rows = futures_util::stream::unfold(*rows, RowStream::next);
                let header = futures_util::stream::iter(header.map(Ok));
                response.streaming(futures_util::StreamExt::chain(header, rows))
            }
        }
    }
}

/// `CHUNK_ROWS` rows from `offset` as NDJSON lines or CSV records.
fn flat_chunk(footprint: &Footprint, format: Format, offset: usize) -> Result<Bytes, ApiError> {
    let header = footprint.flat_header();
    let rows = footprint
        .flat_rows(offset, CHUNK_ROWS)
        .map_err(polars_error)?;
    // About 600 bytes a row: one allocation per slice rather than a dozen doublings.
    let mut out = Vec::with_capacity(rows.len() * 640);
    if format == Format::Ndjson {
        // Written field by field in the CSV's column order, with no map built per row.
        for record in rows {
            for (i, (name, value)) in header.iter().zip(&record).enumerate() {
                out.push(if i == 0 { b'{' } else { b',' });
                serde_json::to_writer(&mut out, name).map_err(|e| ApiError::internal(&e))?;
                out.push(b':');
                serde_json::to_writer(&mut out, value).map_err(|e| ApiError::internal(&e))?;
            }
            out.extend_from_slice(b"}\n");
        }
        return Ok(Bytes::from(out));
    }
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    for record in rows {
        let cells: Vec<String> = record
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
        writer
            .write_record(&cells)
            .map_err(|e| ApiError::internal(&e))?;
    }
    writer
        .into_inner()
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.error()))
}

async fn answer(
    state: &web::Data<AppState>,
    request: &HttpRequest,
    customer: Option<Id>,
    params: ReportParams,
) -> Result<HttpResponse, ApiError> {
    let format = format(request, params.format.as_deref())?;
    let query = FootprintQuery::parse(
        customer,
        RawQuery {
            from: params.from,
            to: params.to,
            granularity: params.granularity.as_deref(),
            group_by: params.group_by.as_deref(),
            tz: params.tz.as_deref(),
            workload: params.workload.as_deref(),
            site: params.site.as_deref(),
        },
    )?;
    if let Format::Ndjson | Format::Csv = format {
        let mut rest: std::collections::VecDeque<_> = query.in_parts().into();
        let first = rest.pop_front().unwrap_or(query);
        let rows = RowStream {
            format,
            state: state.clone(),
            current: state.reports.footprint(first).await?,
            offset: 0,
            rest,
        };
        return Ok(Rendered::flat(rows).into_response());
    }
    let footprint = state.reports.footprint(query).await?;
    if format == Format::Json && footprint.report.rows.height() > MAX_JSON_ROWS {
        return Err(ApiError::new(
            ErrorCode::RangeTooLong,
            format!(
                "{} rows is more than a JSON answer holds ({MAX_JSON_ROWS}); ask for format=ndjson, csv or parquet, or a coarser granularity",
                footprint.report.rows.height()
            ),
        ));
    }
    let rendered = web::block(move || match format {
        Format::Parquet => parquet(footprint),
        _ => json(footprint),
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(rendered.into_response())
}

fn json(footprint: Footprint) -> Result<Rendered, ApiError> {
    let query = &footprint.query;
    let body = serde_json::to_vec(&FootprintResponse {
        customer: query.customer.as_ref().map(ToString::to_string),
        from: query.window.from,
        to: query.window.to,
        granularity: query.window.granularity.as_str().to_owned(),
        group_by: query
            .group_by
            .iter()
            .map(|k| k.column().to_owned())
            .collect(),
        tz: query.window.tz.name().to_owned(),
        workloads: query.workloads.iter().map(ToString::to_string).collect(),
        sites: query.sites.iter().map(ToString::to_string).collect(),
        table_version: footprint.table_version,
        versions: footprint.versions,
        rows: footprint.rows().map_err(polars_error)?,
        totals: footprint.totals().map_err(polars_error)?,
    })
    .map_err(|e| ApiError::internal(&e))?;
    Ok(Rendered {
        content_type: "application/json",
        filename: None,
        body: Body::Whole(Bytes::from(body)),
    })
}

fn parquet(footprint: Footprint) -> Result<Rendered, ApiError> {
    let bytes = footprint.parquet().map_err(polars_error)?;
    Ok(Rendered {
        content_type: "application/vnd.apache.parquet",
        filename: Some("footprint.parquet"),
        body: Body::Whole(Bytes::from(bytes)),
    })
}

/// A customer's footprint
///
/// Energy and emissions of one customer's workloads over [from, to), per bucket and group, with
/// data-quality shares. A customer key reads only its own customer; any other answers 404, exactly
/// as for a customer that does not exist. Formats: JSON (default), NDJSON, CSV or Parquet, by
/// `Accept` or `format=`.
#[utoipa::path(tag = "reports", security(("bearer" = [])),
    params(("customer" = String, Path, description = "Customer id", example = "acme"), ReportParams),
    responses(
        (status = 200, description = "The footprint", content(
            (FootprintResponse = "application/json"),
            (FootprintRow = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        CommonErrors,
        (status = 422, description = "Range too long for the granularity, or too many rows for JSON",
         body = super::problem::Problem, content_type = "application/problem+json")))]
#[get("/customers/{customer}/footprint")]
async fn customer_footprint(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    params: web::Query<ReportParams>,
) -> Result<HttpResponse, ApiError> {
    let customer = Id::parse(&path)
        .map_err(|_| ApiError::not_found(format_args!("customer {}", path.as_str())))?;
    caller.require_customer(&customer)?;
    answer(&state, &request, Some(customer), params.into_inner()).await
}

/// Everyone's footprint
///
/// The same report over all customers (or the one named by `customer`), for the operator's
/// sustainability team. Admin keys only.
#[utoipa::path(tag = "reports", security(("bearer" = [])),
    params(ReportParams, CustomerFilter),
    responses(
        (status = 200, description = "The footprint", content(
            (FootprintResponse = "application/json"),
            (FootprintRow = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        CommonErrors,
        (status = 422, description = "Range too long for the granularity, or too many rows for JSON",
         body = super::problem::Problem, content_type = "application/problem+json")))]
#[get("/footprint")]
async fn all_footprints(
    _admin: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    params: web::Query<ReportParams>,
    filter: web::Query<CustomerFilter>,
) -> Result<HttpResponse, ApiError> {
    let customer = match filter.into_inner().customer {
        Some(raw) => {
            Some(Id::parse(&raw).map_err(|_| ApiError::not_found(format_args!("customer {raw}")))?)
        }
        None => None,
    };
    answer(&state, &request, customer, params.into_inner()).await
}
