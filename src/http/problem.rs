//! The one place errors become responses: every failure, ours or actix's extractors', is an RFC 9457
//! `application/problem+json` body with a stable `code` from one exhaustive table.
use crate::domain::reading::RowErrorKind;
use crate::domain::{FieldError, Invalid};
use crate::ingest::IngestError;
use crate::storage::{RegistryError, StorageError};
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;
use utoipa::{IntoResponses, ToSchema};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
const PROBLEM_TYPE_BASE: &str = "https://carbon-ledger.dev/problems/";

/// Every error the API can answer with. Its snake_case name is the `code` clients match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    MalformedBody,
    InvalidReadings,
    MethodNotAllowed,
    RangeTooLong,
    InvalidBody,
    InvalidQuery,
    InvalidPath,
    ValidationFailed,
    UnknownSite,
    UnknownCustomer,
    UnknownHardware,
    UnknownPowerModel,
    Retired,
    NotFound,
    InUse,
    PeriodClosed,
    InsufficientHistory,
    NoFunctionalUnits,
    UnsupportedMediaType,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    Internal,
    Unavailable,
}

impl ErrorCode {
    /// The status, stable code and title of each error: the whole table.
    pub fn describe(self) -> (StatusCode, &'static str, &'static str) {
        use ErrorCode::*;
        match self {
            MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            MalformedBody => (StatusCode::BAD_REQUEST, "malformed_body", "Malformed body"),
            InvalidReadings => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_readings",
                "Invalid readings",
            ),
            RangeTooLong => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "range_too_long",
                "Range too long",
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            InvalidBody => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Body does not match the schema",
            ),
            InvalidQuery => (
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "Invalid query parameters",
            ),
            InvalidPath => (
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "Invalid path parameter",
            ),
            ValidationFailed => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Invalid field values",
            ),
            UnknownSite => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_site",
                "Unknown site",
            ),
            UnknownCustomer => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_customer",
                "Unknown customer",
            ),
            UnknownHardware => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_hardware",
                "Unknown hardware",
            ),
            UnknownPowerModel => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_power_model",
                "Unknown power model",
            ),
            Retired => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "retired",
                "Retired site or customer",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            InUse => (StatusCode::CONFLICT, "in_use", "Still referenced"),
            PeriodClosed => (
                StatusCode::CONFLICT,
                "period_closed",
                "Period already closed",
            ),
            InsufficientHistory => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_history",
                "Too little history",
            ),
            NoFunctionalUnits => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_functional_units",
                "No functional units",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
        }
    }
}

/// One refused field. `row` is set for batch inputs (the 0-based index in the batch).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemField {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    #[schema(example = "pue")]
    pub field: String,
    /// JSON pointer into the request body.
    #[schema(example = "/pue")]
    pub pointer: String,
    #[schema(example = "must be a number from 1.0 to 10")]
    pub reason: String,
}

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"type": "https://carbon-ledger.dev/problems/not_found", "title": "Not found",
    "status": 404, "detail": "site fra9 does not exist", "code": "not_found"}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, snake_case: what clients match on.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<ProblemField>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }

    /// A failure that is ours, not the caller's: logged whole once, answered with little.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "request failed");
        Self::new(
            ErrorCode::Internal,
            "the server could not complete the request",
        )
    }

    pub fn invalid_path(name: &str, reason: impl fmt::Display) -> Self {
        let mut error = Self::new(
            ErrorCode::InvalidPath,
            format!("path parameter {name}: {reason}"),
        );
        error.errors.push(ProblemField {
            row: None,
            field: name.to_owned(),
            pointer: String::new(),
            reason: reason.to_string(),
        });
        error
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.code.describe();
        Problem {
            problem_type: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail.clone(),
            code: code.to_owned(),
            errors: self.errors.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.describe().1, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.describe().0
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
        if self.code == ErrorCode::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"carbon-ledger\""));
        }
        response.json(self.problem())
    }
}

fn field_error(error: FieldError) -> ProblemField {
    ProblemField {
        row: None,
        pointer: format!("/{}", error.field),
        field: error.field,
        reason: error.reason,
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        let detail = invalid
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            code: ErrorCode::ValidationFailed,
            detail,
            errors: invalid.0.into_iter().map(field_error).collect(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let error = match error {
            RegistryError::Storage(storage) => return storage.into(),
            other => other,
        };
        match &error {
            RegistryError::UnknownReference { kind, .. } => {
                let code = match *kind {
                    "site" => ErrorCode::UnknownSite,
                    "hardware" => ErrorCode::UnknownHardware,
                    "power model" => ErrorCode::UnknownPowerModel,
                    _ => ErrorCode::UnknownCustomer,
                };
                let mut api = Self::new(code, error.to_string());
                api.errors.push(field_error(FieldError::new(
                    kind.replace(' ', "_"),
                    "does not exist",
                )));
                api
            }
            RegistryError::InUse { .. } => Self::new(ErrorCode::InUse, error.to_string()),
            RegistryError::Overbooked { .. } => {
                let mut api = Self::new(ErrorCode::ValidationFailed, error.to_string());
                api.errors.push(field_error(FieldError::new(
                    "reserved",
                    "more than the hardware has at some instant",
                )));
                api
            }
            RegistryError::Storage(_) => Self::internal(&error),
        }
    }
}

impl From<crate::sources::TelemetryError> for ApiError {
    fn from(error: crate::sources::TelemetryError) -> Self {
        use crate::sources::TelemetryError;
        match error {
            TelemetryError::Registry(registry) => registry.into(),
            TelemetryError::Interrupted => Self::new(ErrorCode::Unavailable, error.to_string()),
            // Storage trouble is what a sender's retry can fix: 5xx.
            other => Self::internal(&other),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            // The shared store is out of reach (an outage, a network split): nothing was stored,
            // and the same request succeeds once it is back.
            StorageError::Store(reason) => Self::new(
                ErrorCode::Unavailable,
                format!("the shared store cannot be reached, nothing was changed; retry: {reason}"),
            ),
            other => Self::internal(&other),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Malformed {
                row,
                line,
                field,
                reason,
            } => {
                let detail = match line {
                    Some(line) => format!("line {line}: {reason}"),
                    None => reason.clone(),
                };
                let mut api = Self::new(ErrorCode::MalformedBody, detail);
                let field = field.unwrap_or_default();
                let pointer = match (row, field.is_empty()) {
                    (Some(row), false) => format!("/{row}/{field}"),
                    (Some(row), true) => format!("/{row}"),
                    (None, _) => String::new(),
                };
                api.errors.push(ProblemField {
                    row,
                    field,
                    pointer,
                    reason,
                });
                api
            }
            IngestError::TooManyRows { .. } => {
                Self::new(ErrorCode::PayloadTooLarge, error.to_string())
            }
            IngestError::InvalidRows { ref errors, .. } => {
                let mut api = Self::new(ErrorCode::ValidationFailed, error.to_string());
                api.errors = errors
                    .iter()
                    .map(|(row, e)| ProblemField {
                        row: Some(*row),
                        field: e.field.clone(),
                        pointer: format!("/{row}/{}", e.field),
                        reason: e.reason.clone(),
                    })
                    .collect();
                api
            }
            IngestError::Invalid(ref invalid) => {
                let kinds = |kind| invalid.errors.iter().all(|e| e.kind == kind);
                let code = if kinds(RowErrorKind::UnknownSite) {
                    ErrorCode::UnknownSite
                } else if kinds(RowErrorKind::UnknownCustomer) {
                    ErrorCode::UnknownCustomer
                } else if kinds(RowErrorKind::Retired) {
                    ErrorCode::Retired
                } else {
                    ErrorCode::InvalidReadings
                };
                let mut api = Self::new(code, error.to_string());
                api.errors = invalid
                    .errors
                    .iter()
                    .map(|e| ProblemField {
                        row: Some(e.row),
                        field: e.field.to_owned(),
                        pointer: format!("/{}/{}", e.row, e.field),
                        reason: e.reason.clone(),
                    })
                    .collect();
                api
            }
        }
    }
}

/// Middleware: any 4xx/5xx of the API that did not come from an `ApiError` (actix's own payload
/// limits, a wrong method) is rewritten as problem+json, so no error ever leaves as plain text.
/// The dashboard's pages answer for themselves (its 404 is a page).
pub async fn ensure_problem_bodies(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let page = crate::dashboard::serves(request.path());
    let response = next.call(request).await?;
    if page {
        return Ok(response.map_into_boxed_body());
    }
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_CONTENT_TYPE.as_bytes());
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return Ok(response.map_into_boxed_body());
    }
    let detail = response
        .response()
        .error()
        .map(ToString::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        s if s.is_client_error() => ErrorCode::MalformedBody,
        _ => ErrorCode::Internal,
    };
    let (request, _) = response.into_parts();
    let problem = ApiError::new(code, detail).error_response();
    Ok(actix_web::dev::ServiceResponse::new(request, problem))
}

fn payload_error(error: &PayloadError) -> ApiError {
    match error {
        PayloadError::Overflow => ApiError::new(ErrorCode::PayloadTooLarge, error.to_string()),
        _ => ApiError::new(
            ErrorCode::MalformedJson,
            format!("unreadable body: {error}"),
        ),
    }
}

pub fn json_error(error: JsonPayloadError, _request: &HttpRequest) -> actix_web::Error {
    let api = match &error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, error.to_string())
        }
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "this endpoint takes Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(serde) if serde.is_data() => {
            let message = serde.to_string();
            let mut api = ApiError::new(ErrorCode::InvalidBody, message.clone());
            let field = crate::ingest::named_field(&message).unwrap_or("");
            api.errors.push(ProblemField {
                row: None,
                field: field.to_owned(),
                pointer: if field.is_empty() {
                    String::new()
                } else {
                    format!("/{field}")
                },
                reason: message,
            });
            api
        }
        JsonPayloadError::Deserialize(serde) => ApiError::new(
            ErrorCode::MalformedJson,
            format!("body is not valid JSON: {serde}"),
        ),
        JsonPayloadError::Payload(payload) => payload_error(payload),
        _ => ApiError::new(ErrorCode::MalformedJson, error.to_string()),
    };
    api.into()
}

pub fn query_error(error: QueryPayloadError, _request: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::InvalidQuery, error.to_string()).into()
}

pub fn path_error(error: PathError, _request: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::InvalidPath, error.to_string()).into()
}

/// Error answers shared by the operations, for the contract. Never constructed: utoipa reads the
/// variants to document the responses that `ApiError` produces.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed JSON, or a bad path or query parameter.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The key's role may not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such record (or not visible to this key).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// Error answers of operations that take a body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// Larger than `max_body_bytes`.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// Not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Well-formed but refused: each bad field is named in `errors`.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
}
