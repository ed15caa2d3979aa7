//! What each telemetry source has delivered and what no mapping took: the counters behind
//! `GET /v1/telemetry/sources` and `/metrics`, and the bounded list behind
//! `GET /v1/telemetry/unmapped`, so that nothing is dropped unseen.
use super::series::Counts;
use super::Series;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use utoipa::ToSchema;

/// What a source has delivered, as `GET /v1/telemetry/sources` shows it.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(example = json!({"source": "remote_write", "last_sample_at": "2026-03-01T10:00:00Z",
    "samples_accepted": 120, "samples_unmapped": 40, "samples_ignored": {"stale_marker": 2},
    "gaps": 0, "resets": 1, "readings_written": 8, "series_active": 4, "series_unmapped": 10,
    "last_error": null}))]
pub struct SourceStatus {
    /// `remote_write`.
    pub source: String,
    pub last_sample_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Series with state, over every source.
    pub series_active: usize,
    /// Distinct series seen without a mapping (bounded, see `/v1/telemetry/unmapped`).
    pub series_unmapped: usize,
    pub last_error: Option<String>,
}

/// A series seen without a mapping: what an operator writes a mapping for.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"metric": "kepler_node_cpu_joules_total",
    "labels": {"node_name": "worker-01", "zone": "package"}, "samples": 12,
    "last_seen": "2026-03-01T10:00:00Z"}))]
pub struct UnmappedSeries {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub samples: u64,
    pub last_seen: DateTime<Utc>,
}

/// Unmapped series listed at most; further ones are still counted.
const MAX_UNMAPPED_LISTED: usize = 1000;

/// Counts per source and the unmapped series, as the requests and pulls leave them.
#[derive(Default)]
pub struct Seen {
    /// The sources by the number the series state credits windows with.
    names: Mutex<Vec<String>>,
    sources: Mutex<BTreeMap<String, SourceStatus>>,
    unmapped: Mutex<HashMap<String, UnmappedSeries>>,
}

impl Seen {
    /// The number `State` credits a source's windows with.
    pub(super) fn number(&self, source: &str) -> u16 {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match names.iter().position(|n| n == source) {
            Some(i) => i as u16,
            None => {
                names.push(source.to_owned());
                (names.len() - 1).min(usize::from(u16::MAX)) as u16
            }
        }
    }

    /// The source numbered `number`.
    pub(super) fn name(&self, number: u16) -> Option<String> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.get(usize::from(number)).cloned()
    }

    pub(super) fn note_unmapped(&self, series: &Series, now: DateTime<Utc>) {
        let mut unmapped = self.unmapped.lock().unwrap_or_else(|p| p.into_inner());
        let key = series.labels.key();
        if let Some(seen) = unmapped.get_mut(key) {
            seen.samples += series.samples.len() as u64;
            seen.last_seen = now;
        } else if unmapped.len() < MAX_UNMAPPED_LISTED {
            unmapped.insert(
                key.to_owned(),
                UnmappedSeries {
                    metric: series.label("__name__").unwrap_or_default().to_owned(),
                    labels: series
                        .labels
                        .iter()
                        .filter(|(n, _)| *n != "__name__")
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect(),
                    samples: series.samples.len() as u64,
                    last_seen: now,
                },
            );
        }
    }

    /// Adds a committed request's counts to its source, or notes why a request failed (its
    /// samples are not counted: the sender retries them).
    pub(super) fn record(
        &self,
        source: &str,
        outcome: Result<(&Counts, Option<i64>, usize), String>,
    ) {
        let unmapped = self
            .unmapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let status = sources
            .entry(source.to_owned())
            .or_insert_with(|| SourceStatus {
                source: source.to_owned(),
                ..SourceStatus::default()
            });
        status.series_unmapped = unmapped;
        match outcome {
            Ok((counts, newest_ms, series_active)) => {
                status.counts.add(counts);
                if let Some(newest) = newest_ms.and_then(DateTime::from_timestamp_millis) {
                    status.last_sample_at = status.last_sample_at.max(Some(newest));
                }
                status.series_active = series_active;
            }
            Err(error) => status.last_error = Some(error),
        }
    }

    /// A pull that brought nothing (a scrape target down, a body that does not parse).
    pub fn note_failure(&self, source: &str, reason: &str) {
        self.record(source, Err(reason.to_owned()));
    }

    /// The sources' counters in the Prometheus text format, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let families = [
            (
                "telemetry_samples_accepted_total",
                "Samples of mapped series taken in.",
            ),
            (
                "telemetry_samples_unmapped_total",
                "Samples of series no mapping matched.",
            ),
            (
                "telemetry_samples_ignored_total",
                "Samples that added nothing, by reason.",
            ),
            (
                "telemetry_readings_written_total",
                "Window readings written or rewritten.",
            ),
            (
                "telemetry_gaps_total",
                "Intervals longer than max_gap_s, not bridged.",
            ),
        ];
        let sources = self.sources();
        for (name, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &sources {
                let source = &s.source;
                let c = &s.counts;
                match name {
                    "telemetry_samples_ignored_total" => {
                        for (reason, n) in &c.samples_ignored {
                            let _ = writeln!(
                                out,
                                "{name}{{source=\"{source}\",reason=\"{reason}\"}} {n}"
                            );
                        }
                    }
                    _ => {
                        let n = match name {
                            "telemetry_samples_accepted_total" => c.samples_accepted,
                            "telemetry_samples_unmapped_total" => c.samples_unmapped,
                            "telemetry_readings_written_total" => c.readings_written,
                            _ => c.gaps,
                        };
                        let _ = writeln!(out, "{name}{{source=\"{source}\"}} {n}");
                    }
                }
            }
        }
        out
    }

    pub fn sources(&self) -> Vec<SourceStatus> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn unmapped(&self) -> Vec<UnmappedSeries> {
        let mut listed: Vec<UnmappedSeries> = self
            .unmapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        listed.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        listed
    }
}
