//! API keys: who may call, in which role, and for which customer or sites.
use super::{Id, ZoneCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Posts readings, optionally for listed sites only.
    Ingest,
    /// Pushes grid intensity (the operator's own pushers), optionally for listed zones only.
    Intensity,
    /// Reads one customer's footprint, and grid intensity (public data).
    Customer,
}

/// What a key may do, as checked on each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    /// `None`: every site.
    Ingest {
        sites: Option<Vec<Id>>,
    },
    /// `None`: every zone.
    Intensity {
        zones: Option<Vec<ZoneCode>>,
    },
    Customer {
        customer: Id,
    },
}

impl Grant {
    pub fn role(&self) -> Role {
        match self {
            Grant::Admin => Role::Admin,
            Grant::Ingest { .. } => Role::Ingest,
            Grant::Intensity { .. } => Role::Intensity,
            Grant::Customer { .. } => Role::Customer,
        }
    }

    /// Whether this key may read the given customer's data.
    pub fn may_read_customer(&self, customer: &Id) -> bool {
        match self {
            Grant::Admin => true,
            Grant::Customer { customer: own } => own == customer,
            Grant::Ingest { .. } | Grant::Intensity { .. } => false,
        }
    }

    /// Whether this key may write data for the given site.
    /// Whether this key may write readings for any site there is (or will be).
    pub fn may_write_every_site(&self) -> bool {
        matches!(self, Grant::Admin | Grant::Ingest { sites: None })
    }

    pub fn may_write_site(&self, site: &Id) -> bool {
        match self {
            Grant::Admin | Grant::Ingest { sites: None } => true,
            Grant::Ingest { sites: Some(sites) } => sites.contains(site),
            Grant::Intensity { .. } | Grant::Customer { .. } => false,
        }
    }

    /// Whether this key may write grid intensity for the given zone: what every customer in that
    /// zone is charged rests on it, so a site's agent may not.
    pub fn may_write_zone(&self, zone: &ZoneCode) -> bool {
        match self {
            Grant::Admin | Grant::Intensity { zones: None } => true,
            Grant::Intensity { zones: Some(zones) } => zones.contains(zone),
            Grant::Ingest { .. } | Grant::Customer { .. } => false,
        }
    }
}

/// A stored key. The token itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub grant: Grant,
    pub token_sha256: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GrantFields::from(self.clone()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = GrantFields::deserialize(deserializer)?;
        fields.try_into().map_err(serde::de::Error::custom)
    }
}

/// A grant as flat fields, the shape of the API and of the key file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "customer", "customer": "acme"}))]
pub struct GrantFields {
    pub role: Role,
    /// The one customer a `customer` key reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "acme")]
    pub customer: Option<Id>,
    /// The sites an `ingest` key may write; every site when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub sites: Option<Vec<Id>>,
    /// The zones an `intensity` key may write; every zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["DE", "FR"]))]
    pub zones: Option<Vec<ZoneCode>>,
}

impl From<Grant> for GrantFields {
    fn from(grant: Grant) -> Self {
        let role = grant.role();
        let (customer, sites, zones) = match grant {
            Grant::Admin => (None, None, None),
            Grant::Ingest { sites } => (None, sites, None),
            Grant::Intensity { zones } => (None, None, zones),
            Grant::Customer { customer } => (Some(customer), None, None),
        };
        Self {
            role,
            customer,
            sites,
            zones,
        }
    }
}

impl TryFrom<GrantFields> for Grant {
    type Error = super::FieldError;

    fn try_from(fields: GrantFields) -> Result<Self, Self::Error> {
        use super::FieldError;
        match (fields.role, fields.customer, fields.sites, fields.zones) {
            (Role::Admin, None, None, None) => Ok(Grant::Admin),
            (Role::Ingest, None, sites, None) => Ok(Grant::Ingest { sites }),
            (Role::Intensity, None, None, zones) => Ok(Grant::Intensity { zones }),
            (Role::Customer, Some(customer), None, None) => Ok(Grant::Customer { customer }),
            (Role::Customer, None, _, _) => Err(FieldError::new(
                "customer",
                "a customer key needs its customer",
            )),
            (_, Some(_), _, _) => Err(FieldError::new(
                "customer",
                "only a customer key names a customer",
            )),
            (_, _, Some(_), _) => Err(FieldError::new("sites", "only an ingest key lists sites")),
            (_, _, _, Some(_)) => Err(FieldError::new(
                "zones",
                "only an intensity key lists zones",
            )),
        }
    }
}

impl std::fmt::Display for super::FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
