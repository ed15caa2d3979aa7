//! The Prometheus text exposition format (what Kepler, Scaphandre and node exporters serve on
//! `/metrics`), and its OpenMetrics variant: `name{label="value",...} value [timestamp]` lines,
//! `#` comments, label values with `\\`, `\"` and `\n` escapes, `NaN` and `±Inf` values. Text
//! format timestamps are milliseconds, OpenMetrics ones seconds; a sample without one gets the
//! scrape's time.
use super::{Labels, Sample, Series};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// How the body's timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `text/plain; version=0.0.4`: integer milliseconds.
    Text,
    /// `application/openmetrics-text`: seconds, with a fraction.
    OpenMetrics,
}

impl Flavour {
    pub fn of_content_type(content_type: &str) -> Self {
        if content_type.starts_with("application/openmetrics-text") {
            Flavour::OpenMetrics
        } else {
            Flavour::Text
        }
    }
}

fn metric_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn value(raw: &str) -> Option<f64> {
    match raw {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

type LabelPairs = Vec<(String, String)>;

/// `{a="x",b="y"}` at the start of `rest`: the labels and what follows the closing brace.
fn labels(rest: &str) -> Result<(LabelPairs, &str), String> {
    let mut out = Vec::new();
    let mut chars = rest.char_indices().peekable();
    chars.next(); // the '{'
    loop {
        while chars.next_if(|(_, c)| *c == ' ' || *c == ',').is_some() {}
        match chars.peek() {
            Some((at, '}')) => return Ok((out, &rest[at + 1..])),
            None => return Err("labels are not closed with '}'".into()),
            _ => {}
        }
        let mut name = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && *c != '}' && *c != ',') {
            name.push(c);
        }
        let name = name.trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .enumerate()
                .all(|(i, c)| metric_name_char(c, i == 0) && c != ':')
        {
            return Err(format!("{name:?} is not a label name"));
        }
        if chars.next().map(|(_, c)| c) != Some('=') || chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name} has no quoted value"));
        }
        let mut text = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((_, '"')) => break,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => text.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => text.push(c),
                    _ => return Err(format!("label {name}'s value has an unknown escape")),
                },
                Some((_, c)) => text.push(c),
            }
        }
        out.push((name, text));
    }
}

/// The series of an exposition body; samples without a timestamp get `scraped_ms`.
pub fn parse(body: &str, flavour: Flavour, scraped_ms: i64) -> Result<Vec<Series>, ParseError> {
    let mut series: BTreeMap<LabelPairs, Vec<Sample>> = BTreeMap::new();
    for (index, raw) in body.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| ParseError {
            line: index + 1,
            reason,
        };
        let name_end = line
            .char_indices()
            .find(|&(i, c)| !metric_name_char(c, i == 0))
            .map_or(line.len(), |(i, _)| i);
        if name_end == 0 {
            return Err(fail("a sample line starts with a metric name".into()));
        }
        let name = &line[..name_end];
        let (mut set, rest) = match line[name_end..].strip_prefix('{') {
            Some(_) => labels(&line[name_end..]).map_err(fail)?,
            None => (Vec::new(), &line[name_end..]),
        };
        let mut fields = rest.split_whitespace();
        let sample_value = fields
            .next()
            .and_then(value)
            .ok_or_else(|| fail(format!("{name} has no number for its value")))?;
        let timestamp_ms = match fields.next() {
            None => scraped_ms,
            Some(raw) => match flavour {
                Flavour::Text => raw
                    .parse::<i64>()
                    .map_err(|_| fail(format!("timestamp {raw:?} is not integer milliseconds")))?,
                Flavour::OpenMetrics => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| (s * 1000.0).round() as i64)
                    .ok_or_else(|| fail(format!("timestamp {raw:?} is not seconds")))?,
            },
        };
        if fields.next().is_some() {
            return Err(fail(
                "more than a value and a timestamp after the labels".into(),
            ));
        }
        set.push(("__name__".into(), name.to_owned()));
        set.sort();
        series.entry(set).or_default().push(Sample {
            timestamp_ms,
            value: sample_value,
            start_ms: None,
        });
    }
    Ok(series
        .into_iter()
        .map(|(pairs, samples)| Series {
            labels: Labels::from_pairs(pairs),
            samples,
            delta: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEPLER: &str = include_str!("../../fixtures/telemetry/kepler_metrics.prom");
    const SCAPHANDRE: &str = include_str!("../../fixtures/telemetry/scaphandre_metrics.prom");

    #[test]
    fn the_recorded_kepler_exposition_parses_with_its_labels() {
        let series = parse(KEPLER, Flavour::Text, 1_000).unwrap();
        let package = series
            .iter()
            .find(|s| {
                s.label("__name__") == Some("kepler_container_cpu_joules_total")
                    && s.label("container_name") == Some("api-server")
                    && s.label("zone") == Some("package")
            })
            .unwrap();
        assert_eq!(
            package.samples,
            [Sample {
                timestamp_ms: 1_000,
                value: 15422.87,
                start_ms: None
            }]
        );
        assert!(parse(SCAPHANDRE, Flavour::Text, 1_000)
            .unwrap()
            .iter()
            .any(|s| s.label("__name__") == Some("scaph_host_power_microwatts")));
    }

    #[test]
    fn escapes_special_values_and_timestamps_are_read_as_the_format_says() {
        let body = "# TYPE m gauge\nm{path=\"C:\\\\x\",say=\"a \\\"b\\\"\\n\"} NaN 1700000000000\nn +Inf\n";
        let series = parse(body, Flavour::Text, 5).unwrap();
        let m = series
            .iter()
            .find(|s| s.label("__name__") == Some("m"))
            .unwrap();
        assert_eq!(m.label("path"), Some("C:\\x"));
        assert_eq!(m.label("say"), Some("a \"b\"\n"));
        assert!(m.samples[0].value.is_nan());
        assert_eq!(m.samples[0].timestamp_ms, 1_700_000_000_000);
        let n = series
            .iter()
            .find(|s| s.label("__name__") == Some("n"))
            .unwrap();
        assert_eq!(
            (n.samples[0].value, n.samples[0].timestamp_ms),
            (f64::INFINITY, 5)
        );
        let open = parse("m 1 1700000000.250\n# EOF\n", Flavour::OpenMetrics, 0).unwrap();
        assert_eq!(open[0].samples[0].timestamp_ms, 1_700_000_000_250);
    }

    #[test]
    fn a_bad_line_is_named_with_its_reason() {
        let error = parse("ok 1\nbad{zone=\"x} 1\n", Flavour::Text, 0).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("not closed"), "{error}");
        assert!(parse("m one\n", Flavour::Text, 0)
            .unwrap_err()
            .reason
            .contains("no number"));
    }

    proptest! {
        /// Fuzz: any text parses or fails with a line number, never panics.
        #[test]
        fn any_text_parses_or_fails_without_panicking(text in "\\PC{0,300}") {
            let _ = parse(&text, Flavour::Text, 0);
            let _ = parse(&text, Flavour::OpenMetrics, 0);
        }

        /// Fuzz: the recorded exposition with characters replaced parses or fails, never panics.
        #[test]
        fn a_damaged_exposition_parses_or_fails_without_panicking(flips in proptest::collection::vec((any::<usize>(), any::<char>()), 1..8)) {
            let mut chars: Vec<char> = KEPLER.chars().collect();
            for (at, c) in flips {
                let len = chars.len();
                chars[at % len] = c;
            }
            let text: String = chars.into_iter().collect();
            let _ = parse(&text, Flavour::Text, 0);
        }
    }
}
