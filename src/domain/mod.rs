//! Records that parse: once a value of these types exists it is valid, so no layer re-checks it.
pub mod capacity;
pub mod default_factors;
pub mod embodied;
pub mod functional_unit;
mod ids;
pub mod intensity;
mod keys;
pub mod mapping;
pub mod meter;
pub mod reading;
mod registry;
pub mod row;
pub mod usage;

pub use ids::{distinct, Id, ZoneCode};
pub use keys::{ApiKey, Grant, GrantFields, Role};
pub use registry::{
    Allocation, Customer, CustomerSpec, Instrument, InstrumentKind, InstrumentSpec, PueEntry, Site,
    SiteSpec, Zone, ZoneSpec, MAX_INTENSITY_GCO2E_PER_KWH,
};

/// Why one field of an input was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's JSON pointer below the document root, without the leading slash (`pue_schedule/0/pue`).
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found in one input, so a caller can fix them all at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct Invalid(pub Vec<FieldError>);

/// Collects field errors while a record is parsed.
#[derive(Debug, Default)]
pub(crate) struct Checks(Vec<FieldError>);

impl Checks {
    pub(crate) fn require(
        &mut self,
        ok: bool,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        if !ok {
            self.0.push(FieldError::new(field, reason));
        }
    }

    pub(crate) fn parse<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|reason| self.0.push(FieldError::new(field, reason)))
            .ok()
    }

    pub(crate) fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Invalid> {
        match (self.0.is_empty(), value()) {
            (true, Some(value)) => Ok(value),
            _ => Err(Invalid(self.0)),
        }
    }
}
