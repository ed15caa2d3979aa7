//! CSV (RFC 4180) with the header `site,customer,workload,start,duration_s,energy_j,power_w`; the
//! columns may come in any order, and one of `energy_j` / `power_w` may be left out.
use super::{check_room, IngestError};
use crate::domain::reading::{RawReading, RawStart, ReadingBatchBuilder};

const REQUIRED: [&str; 5] = ["site", "customer", "workload", "start", "duration_s"];

struct Columns {
    site: usize,
    customer: usize,
    workload: usize,
    start: usize,
    duration_s: usize,
    energy_j: Option<usize>,
    power_w: Option<usize>,
}

fn columns(header: &csv::ByteRecord) -> Result<Columns, IngestError> {
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_ascii() == name.as_bytes())
    };
    if let Some(missing) = REQUIRED.iter().find(|name| find(name).is_none()) {
        return Err(IngestError::Malformed {
            row: None,
            line: Some(1),
            field: Some((*missing).to_owned()),
            reason: format!("the header has no column {missing}"),
        });
    }
    let known = |h: &[u8]| {
        REQUIRED
            .iter()
            .chain(&["energy_j", "power_w"])
            .any(|n| n.as_bytes() == h.trim_ascii())
    };
    if let Some(unknown) = header.iter().find(|h| !known(h)) {
        let name = String::from_utf8_lossy(unknown).into_owned();
        return Err(IngestError::Malformed {
            row: None,
            line: Some(1),
            field: Some(name.clone()),
            reason: format!("unknown column {name}"),
        });
    }
    Ok(Columns {
        site: find("site").unwrap_or_default(),
        customer: find("customer").unwrap_or_default(),
        workload: find("workload").unwrap_or_default(),
        start: find("start").unwrap_or_default(),
        duration_s: find("duration_s").unwrap_or_default(),
        energy_j: find("energy_j"),
        power_w: find("power_w"),
    })
}

fn text(record: &csv::ByteRecord, index: usize) -> Option<&str> {
    record
        .get(index)
        .and_then(|cell| std::str::from_utf8(cell).ok())
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
}

pub fn parse(
    body: &[u8],
    builder: &mut ReadingBatchBuilder<'_>,
    max_rows: usize,
) -> Result<(), IngestError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| IngestError::malformed(format!("unreadable CSV header: {e}")))?
        .clone();
    let columns = columns(&header)?;
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(error) => {
                return Err(IngestError::Malformed {
                    row: Some(builder.rows()),
                    line: Some(line as usize),
                    field: None,
                    reason: format!("unreadable CSV: {error}"),
                })
            }
        }
        check_room(builder, max_rows)?;
        let number = |index: Option<usize>, field: &str| -> Result<Option<f64>, IngestError> {
            match index.and_then(|i| text(&record, i)) {
                None => Ok(None),
                Some(cell) => cell
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| IngestError::Malformed {
                        row: Some(builder.rows()),
                        line: Some(line as usize),
                        field: Some(field.to_owned()),
                        reason: format!("{field} is not a number: {cell:?}"),
                    }),
            }
        };
        let duration_s = number(Some(columns.duration_s), "duration_s")?;
        let energy_j = number(columns.energy_j, "energy_j")?;
        let power_w = number(columns.power_w, "power_w")?;
        builder.push(RawReading {
            site: text(&record, columns.site),
            customer: text(&record, columns.customer),
            workload: text(&record, columns.workload),
            start: text(&record, columns.start).map(RawStart::Text),
            duration_s,
            energy_j,
            power_w,
        });
    }
}
