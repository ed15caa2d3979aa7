//! JSON arrays and NDJSON, deserialized row by row into the builder's columns with borrowed strings.
use super::{check_room, IngestError};
use crate::domain::reading::{RawReading, RawStart, ReadingBatchBuilder};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReading<'a> {
    #[serde(borrow, default)]
    site: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    customer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    workload: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    start: Option<Cow<'a, str>>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    energy_j: Option<f64>,
    #[serde(default)]
    power_w: Option<f64>,
}

impl WireReading<'_> {
    fn push_into(&self, builder: &mut ReadingBatchBuilder<'_>) {
        builder.push(RawReading {
            site: self.site.as_deref(),
            customer: self.customer.as_deref(),
            workload: self.workload.as_deref(),
            start: self.start.as_deref().map(RawStart::Text),
            duration_s: self.duration_s,
            energy_j: self.energy_j,
            power_w: self.power_w,
        });
    }
}

/// The field a serde message names (`unknown field `foo``, `invalid type ... for key `x``).
pub fn named_field(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn malformed(row: Option<usize>, error: &serde_json::Error, line: Option<usize>) -> IngestError {
    let message = error.to_string();
    IngestError::Malformed {
        row,
        line: line.or(Some(error.line())),
        field: named_field(&message).map(str::to_owned),
        reason: message,
    }
}

struct Rows<'b, 'r> {
    builder: &'b mut ReadingBatchBuilder<'r>,
    max_rows: usize,
    full: &'b mut bool,
}

impl<'de> DeserializeSeed<'de> for Rows<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of readings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            if self.builder.rows() >= self.max_rows {
                // One more element means the batch is over the limit.
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    *self.full = true;
                    return Err(serde::de::Error::custom("too many readings"));
                }
                return Ok(());
            }
            match seq.next_element::<WireReading<'de>>()? {
                Some(row) => row.push_into(self.builder),
                None => return Ok(()),
            }
        }
    }
}

pub fn parse_array(
    body: &[u8],
    builder: &mut ReadingBatchBuilder<'_>,
    max_rows: usize,
) -> Result<(), IngestError> {
    let mut full = false;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let rows = Rows {
        builder,
        max_rows,
        full: &mut full,
    };
    match rows
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
    {
        Ok(()) => Ok(()),
        Err(_) if full => Err(IngestError::TooManyRows { limit: max_rows }),
        Err(error) => Err(malformed(Some(builder.rows()), &error, None)),
    }
}

pub fn parse_lines(
    body: &[u8],
    builder: &mut ReadingBatchBuilder<'_>,
    max_rows: usize,
) -> Result<(), IngestError> {
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        check_room(builder, max_rows)?;
        let row: WireReading<'_> = serde_json::from_slice(line)
            .map_err(|error| malformed(Some(builder.rows()), &error, Some(index + 1)))?;
        row.push_into(builder);
    }
    Ok(())
}
