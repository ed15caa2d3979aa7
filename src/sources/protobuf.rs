//! Just enough of the protobuf wire format to read the messages telemetry arrives in (Prometheus
//! remote-write): varints, 64-bit fixed fields and length-delimited fields. Unknown fields are
//! skipped, as protobuf requires; anything truncated or malformed is an error, never a panic.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed protobuf at byte {offset}: {reason}")]
pub struct WireError {
    pub offset: usize,
    pub reason: &'static str,
}

/// One field of a message as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one message, in wire order.
pub struct Fields<'a> {
    data: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self::at(data, 0)
    }

    /// Fields of a nested message found at `base` in the outer buffer (for error offsets).
    fn at(data: &'a [u8], base: usize) -> Self {
        Self { data, at: 0, base }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn fail(&self, reason: &'static str) -> WireError {
        WireError {
            offset: self.base + self.at,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .data
                .get(self.at)
                .ok_or(self.fail("truncated varint"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(self.fail("field runs past the end"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// The next (field number, value), or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.at >= self.data.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| self.fail("field number too large"))?;
        if number == 0 {
            return Err(self.fail("field number 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| self.fail("short fixed64"))?,
            )),
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| self.fail("length too large"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?
                    .try_into()
                    .map_err(|_| self.fail("short fixed32"))?,
            )),
            _ => return Err(self.fail("unsupported wire type")),
        };
        Ok(Some((number, value)))
    }

    /// The next varint of a packed repeated field (this reader over its bytes), or `None` at
    /// the end.
    pub fn next_packed_varint(&mut self) -> Result<Option<u64>, WireError> {
        if self.at >= self.data.len() {
            return Ok(None);
        }
        self.varint().map(Some)
    }

    /// The fields of a length-delimited value that holds a nested message.
    pub fn nested(&self, bytes: &'a [u8]) -> Fields<'a> {
        let offset = bytes.as_ptr() as usize - self.data.as_ptr() as usize;
        Fields::at(bytes, self.base + offset)
    }

    /// The error for a field of the wrong wire type.
    pub fn wrong_type(&self, reason: &'static str) -> WireError {
        self.fail(reason)
    }
}

pub mod encode {
    //! The other direction, field by field: for the answers we send (OTLP's response) and for
    //! tests and benchmarks that build requests as senders do.
    pub fn varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
        varint(out, u64::from(field) << 3 | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    pub fn double(out: &mut Vec<u8>, field: u32, value: f64) {
        varint(out, u64::from(field) << 3 | 1);
        out.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    pub fn int(out: &mut Vec<u8>, field: u32, value: i64) {
        varint(out, u64::from(field) << 3);
        varint(out, value as u64);
    }

    pub fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
        varint(out, u64::from(field) << 3 | 1);
        out.extend_from_slice(&value.to_le_bytes());
    }

    /// A Prometheus remote-write `WriteRequest` of (labels, samples as (timestamp ms, value)),
    /// snappy block-compressed as Prometheus sends it.
    pub fn write_request<'a>(
        series: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], &'a [(i64, f64)])>,
    ) -> Vec<u8> {
        let mut request = Vec::new();
        for (labels, samples) in series {
            let mut message = Vec::new();
            for (name, value) in labels {
                let mut label = Vec::new();
                bytes(&mut label, 1, name.as_bytes());
                bytes(&mut label, 2, value.as_bytes());
                bytes(&mut message, 1, &label);
            }
            for (timestamp, value) in samples {
                let mut sample = Vec::new();
                double(&mut sample, 1, *value);
                int(&mut sample, 2, *timestamp);
                bytes(&mut message, 2, &sample);
            }
            bytes(&mut request, 1, &message);
        }
        snap::raw::Encoder::new()
            .compress_vec(&request)
            .unwrap_or_default()
    }
}
