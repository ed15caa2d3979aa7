//! Arrow IPC streams (`application/vnd.apache.arrow.stream`), for high-volume agents: the columns
//! arrive typed, so only the row rules remain to check.
use super::{check_room, IngestError};
use crate::domain::reading::{RawReading, RawStart, ReadingBatchBuilder};
use polars::prelude::*;
use std::io::Cursor;

fn column<'f>(frame: &'f DataFrame, name: &str) -> Result<&'f Column, IngestError> {
    frame.column(name).map_err(|_| IngestError::Malformed {
        row: None,
        line: None,
        field: Some(name.to_owned()),
        reason: format!("the stream has no column {name}"),
    })
}

fn wrong_type(name: &str, error: PolarsError) -> IngestError {
    IngestError::Malformed {
        row: None,
        line: None,
        field: Some(name.to_owned()),
        reason: format!("column {name} has the wrong type: {error}"),
    }
}

fn strings(frame: &DataFrame, name: &str) -> Result<StringChunked, IngestError> {
    column(frame, name)?
        .str()
        .cloned()
        .map_err(|e| wrong_type(name, e))
}

fn floats(
    frame: &DataFrame,
    name: &str,
    required: bool,
) -> Result<Option<Float64Chunked>, IngestError> {
    if !required && frame.column(name).is_err() {
        return Ok(None);
    }
    let values = column(frame, name)?;
    if !values.dtype().is_primitive_numeric() {
        return Err(wrong_type(
            name,
            polars_err!(SchemaMismatch: "expected a number, found {}", values.dtype()),
        ));
    }
    let cast = values
        .cast(&DataType::Float64)
        .map_err(|e| wrong_type(name, e))?;
    cast.f64()
        .cloned()
        .map(Some)
        .map_err(|e| wrong_type(name, e))
}

/// A timestamp column as microseconds: any Arrow timestamp unit, naive or zoned (instants
/// either way).
pub(super) fn micros(name: &str, values: &Column) -> Result<Int64Chunked, IngestError> {
    let DataType::Datetime(unit, _) = values.dtype() else {
        return Err(wrong_type(
            name,
            polars_err!(SchemaMismatch: "expected a timestamp, found {}", values.dtype()),
        ));
    };
    let physical = values
        .datetime()
        .map_err(|e| wrong_type(name, e))?
        .physical()
        .clone();
    Ok(match unit {
        TimeUnit::Nanoseconds => physical.apply_values(|ns| ns / 1_000),
        TimeUnit::Microseconds => physical,
        TimeUnit::Milliseconds => physical.apply_values(|ms| ms.saturating_mul(1_000)),
    })
}

/// The stream's columns as one frame, at most `max_rows` rows.
pub(super) fn decode(body: &[u8], max_rows: usize) -> Result<DataFrame, IngestError> {
    // polars 0.55.2 unwraps on some malformed streams (a column declared Float16, found by the
    // fuzz tests): a bad body must be a 400, never a crashed worker, so its panic is caught too.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        IpcStreamReader::new(Cursor::new(body)).finish()
    }));
    let frame = match decoded {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => {
            return Err(IngestError::malformed(format!(
                "not an Arrow IPC stream: {e}"
            )))
        }
        Err(_) => return Err(IngestError::malformed("not a readable Arrow IPC stream")),
    };
    if frame.height() > max_rows {
        return Err(IngestError::TooManyRows { limit: max_rows });
    }
    Ok(frame)
}

pub fn parse(
    body: &[u8],
    builder: &mut ReadingBatchBuilder<'_>,
    max_rows: usize,
) -> Result<(), IngestError> {
    let frame = decode(body, max_rows)?;
    // One chunk each, read as Arrow arrays: `ChunkedArray::get` finds the chunk on every call.
    let [site, customer, workload] = ["site", "customer", "workload"]
        .map(|name| strings(&frame, name).map(|c| c.rechunk().into_owned()));
    let (site, customer, workload) = (site?, customer?, workload?);
    let (site, customer, workload) = (
        site.downcast_as_array(),
        customer.downcast_as_array(),
        workload.downcast_as_array(),
    );
    let start = micros("start", column(&frame, "start")?)?
        .rechunk()
        .into_owned();
    let start = start.downcast_as_array();
    let numbers = |name, required| -> Result<Option<Float64Chunked>, IngestError> {
        Ok(floats(&frame, name, required)?.map(|c| c.rechunk().into_owned()))
    };
    let duration = numbers("duration_s", true)?.unwrap_or_default();
    let duration = duration.downcast_as_array();
    let (energy, power) = (numbers("energy_j", false)?, numbers("power_w", false)?);
    let energy = energy.as_ref().map(|c| c.downcast_as_array());
    let power = power.as_ref().map(|c| c.downcast_as_array());
    for i in 0..frame.height() {
        check_room(builder, max_rows)?;
        builder.push(RawReading {
            site: site.get(i),
            customer: customer.get(i),
            workload: workload.get(i),
            start: start.get(i).map(RawStart::Micros),
            duration_s: duration.get(i),
            energy_j: energy.and_then(|c| c.get(i)),
            power_w: power.and_then(|c| c.get(i)),
        });
    }
    Ok(())
}
