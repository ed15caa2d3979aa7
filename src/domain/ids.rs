//! Identifiers: site, customer, workload, instrument and key ids, and grid zone codes.
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// An id chosen by the operator or an agent: `[A-Za-z0-9._:-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "fra1")]
pub struct Id(String);

impl Id {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 1 to 128 characters of A-Z a-z 0-9 . _ : -".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Each id once, in order: the sites or customers a batch names.
pub fn distinct<'a>(ids: impl IntoIterator<Item = &'a Id>) -> Vec<Id> {
    let mut ids: Vec<Id> = ids.into_iter().cloned().collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A grid zone code as Electricity Maps writes them: an upper-case country code, then optional
/// `-` separated parts (`GB`, `DE`, `US-CAL-CISO`, `GB-13`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Z]{2}(-[A-Za-z0-9]{1,16}){0,4}$", example = "DE")]
pub struct ZoneCode(String);

impl ZoneCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = raw.split('-');
        let country_ok = parts
            .next()
            .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
        let rest: Vec<&str> = parts.collect();
        let rest_ok = rest.len() <= 4
            && rest.iter().all(|p| {
                !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if country_ok && rest_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be a grid zone code such as GB, DE or US-CAL-CISO".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                Self::parse(&raw)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
string_newtype_conversions!(Id, ZoneCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_charset_only() {
        for good in ["fra1", "a", "vm:01.prod_x-2", &"x".repeat(128)] {
            assert!(Id::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "slash/", "é", &"x".repeat(129)] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zone_codes_follow_the_electricity_maps_shape() {
        for good in ["GB", "DE", "US-CAL-CISO", "GB-13", "DK-DK1"] {
            assert!(ZoneCode::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "gb", "G", "GBR", "US--X", "US-CAL-", "DE DE"] {
            assert!(ZoneCode::parse(bad).is_err(), "{bad}");
        }
    }
}
