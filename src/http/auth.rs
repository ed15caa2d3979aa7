//! Bearer-key authentication as extractors: a handler states the role it needs in its signature, so
//! no route can forget to check.
use super::problem::{ApiError, ErrorCode};
use super::AppState;
use crate::domain::{Grant, Id};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};

/// The key a request was made with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Id,
    pub grant: Grant,
}

impl Caller {
    /// Writing telemetry or readings needs an admin or ingest key; `what` names the operation.
    pub fn require_ingest(&self, what: &str) -> Result<(), ApiError> {
        match self.grant {
            Grant::Admin | Grant::Ingest { .. } => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{what} needs an admin or ingest key"),
            )),
        }
    }

    /// A customer key asking for any customer but its own gets the same 404 as for a customer that
    /// does not exist, so existence does not leak.
    pub fn require_customer(&self, customer: &Id) -> Result<(), ApiError> {
        match &self.grant {
            Grant::Ingest { .. } | Grant::Intensity { .. } => Err(ApiError::new(
                ErrorCode::Forbidden,
                "reading footprints needs an admin or customer key",
            )),
            grant if grant.may_read_customer(customer) => Ok(()),
            _ => Err(ApiError::not_found(format_args!("customer {customer}"))),
        }
    }
}

fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))?;
    let token = bearer_token(request).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "send an API key as Authorization: Bearer <token>",
        )
    })?;
    let (key_id, grant) = state
        .keys
        .authenticate(token)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown or revoked API key"))?;
    Ok(Caller { key_id, grant })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
}

/// Proof that the caller holds an admin key, and which.
#[derive(Debug, Clone)]
pub struct Admin {
    pub key_id: Id,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(request).and_then(|caller| match caller.grant {
            Grant::Admin => Ok(Admin {
                key_id: caller.key_id,
            }),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this operation needs an admin key",
            )),
        }))
    }
}
