//! The series state's changes in bytes, little endian: `newest_ms i64`, then four counted lists
//! (`u32` count): named series keys `(u32, str)`, named targets `(u32, site str, customer str,
//! workload str, functional unit opt-str, meter kind opt-str)`, series `(u32, i64 ms, f64)` and
//! windows `(u32, i64 ms, f64 J)`; `str` is a `u32` length and UTF-8, `opt-str` a 0/1 byte and a
//! `str` when 1. A request's change is a few bytes per sample where JSON spent a few hundred.
use super::series::{Delta, Target};
use crate::domain::meter::MeterKind;

pub fn encode(delta: &Delta) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        8 + 20 * (delta.series.len() + delta.windows.len()) + 64 * delta.series_keys.len(),
    );
    out.extend_from_slice(&delta.newest_ms.to_le_bytes());
    count(&mut out, delta.series_keys.len());
    for (id, key) in &delta.series_keys {
        out.extend_from_slice(&id.to_le_bytes());
        text(&mut out, key);
    }
    count(&mut out, delta.targets.len());
    for (id, target) in &delta.targets {
        out.extend_from_slice(&id.to_le_bytes());
        text(&mut out, &target.site);
        text(&mut out, &target.customer);
        text(&mut out, &target.workload);
        optional(&mut out, target.functional_unit.as_deref());
        optional(&mut out, target.meter_kind.map(MeterKind::as_str));
    }
    for list in [&delta.series, &delta.windows] {
        count(&mut out, list.len());
        for (id, at, value) in list {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

fn count(out: &mut Vec<u8>, n: usize) {
    // Entries are a request's windows and series, strings are ids and labels: far below 2^32.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn text(out: &mut Vec<u8>, s: &str) {
    count(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            text(out, s);
        }
        None => out.push(0),
    }
}

/// A change read back; `None` when the bytes are not one (a checksum guards the log, so this is
/// corruption, not a torn write).
pub fn decode(bytes: &[u8]) -> Option<Delta> {
    let mut r = Reader(bytes);
    let newest_ms = r.i64()?;
    let mut delta = Delta {
        newest_ms,
        ..Delta::default()
    };
    for _ in 0..r.count()? {
        delta.series_keys.push((r.u32()?, r.text()?));
    }
    for _ in 0..r.count()? {
        let id = r.u32()?;
        let target = Target {
            site: r.text()?,
            customer: r.text()?,
            workload: r.text()?,
            functional_unit: r.optional()?,
            meter_kind: match r.optional()? {
                Some(kind) => Some(MeterKind::parse(&kind)?),
                None => None,
            },
        };
        delta.targets.push((id, target));
    }
    for list in [&mut delta.series, &mut delta.windows] {
        for _ in 0..r.count()? {
            list.push((r.u32()?, r.i64()?, f64::from_bits(r.u64()?)));
        }
    }
    r.0.is_empty().then_some(delta)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }

    /// A count, bounded by the bytes left (each entry takes at least 4), so that a corrupt count
    /// cannot reserve memory.
    fn count(&mut self) -> Option<usize> {
        let n = self.u32()? as usize;
        (n <= self.0.len() / 4).then_some(n)
    }

    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        String::from_utf8(head.to_vec()).ok()
    }

    fn optional(&mut self) -> Option<Option<String>> {
        match self.take::<1>()? {
            [0] => Some(None),
            [1] => self.text().map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target(workload: String, meter: bool) -> Target {
        Target {
            site: "fra1".into(),
            customer: if meter { String::new() } else { "acme".into() },
            workload,
            functional_unit: (!meter).then(|| "requests".into()),
            meter_kind: meter.then_some(MeterKind::It),
        }
    }

    proptest! {
        #[test]
        fn a_delta_reads_back_as_written(
            newest_ms in any::<i64>(),
            keys in proptest::collection::vec((any::<u32>(), ".{0,40}"), 0..8),
            targets in proptest::collection::vec((any::<u32>(), "[a-z0-9-]{1,12}", any::<bool>()), 0..8),
            series in proptest::collection::vec((any::<u32>(), any::<i64>(), any::<f64>()), 0..8),
            windows in proptest::collection::vec((any::<u32>(), any::<i64>(), any::<f64>()), 0..8),
        ) {
            let delta = Delta {
                newest_ms,
                series_keys: keys,
                targets: targets.into_iter().map(|(id, w, m)| (id, target(w, m))).collect(),
                series,
                windows,
            };
            let back = decode(&encode(&delta)).unwrap();
            // Compared as bits: NaN values must come back as the same NaN.
            let bits = |d: &Delta| -> Vec<(u32, i64, u64)> {
                d.series.iter().chain(&d.windows).map(|&(i, t, v)| (i, t, v.to_bits())).collect()
            };
            prop_assert_eq!(bits(&back), bits(&delta));
            prop_assert_eq!((&back.series_keys, &back.targets, back.newest_ms), (&delta.series_keys, &delta.targets, delta.newest_ms));
        }

        /// Arbitrary bytes never panic the decoder (the log's checksum keeps them out, but a
        /// decoder must not trust that).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
