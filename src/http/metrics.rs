//! Request counts and latencies per route, rendered in the Prometheus text format. Routes are the
//! matched patterns (`/v1/sites/{site}`), never raw paths, so the label set stays small.
use super::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;
use tracing::Instrument;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_s: f64,
    /// Observations at or below each bound of `BUCKETS_S` (cumulative, as Prometheus wants).
    buckets: [u64; BUCKETS_S.len()],
}

#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    readings_accepted: std::sync::atomic::AtomicU64,
    batches_refused: std::sync::atomic::AtomicU64,
}

impl HttpMetrics {
    /// One `POST /v1/readings`: the readings it made durable, or `None` when it was refused.
    pub fn count_readings(&self, accepted: Option<usize>) {
        use std::sync::atomic::Ordering::Relaxed;
        match accepted {
            Some(rows) => self.readings_accepted.fetch_add(rows as u64, Relaxed),
            None => self.batches_refused.fetch_add(1, Relaxed),
        };
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        entry.count += 1;
        entry.sum_s += seconds;
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS_S) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for ((method, route, status), s) in &series {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(
            out,
            "# HELP ingest_readings_accepted_total Readings made durable by POST /v1/readings.\n\
             # TYPE ingest_readings_accepted_total counter\n\
             ingest_readings_accepted_total {}\n\
             # HELP ingest_batches_refused_total Batches POST /v1/readings refused whole (4xx, 5xx).\n\
             # TYPE ingest_batches_refused_total counter\n\
             ingest_batches_refused_total {}",
            self.readings_accepted.load(Relaxed),
            self.batches_refused.load(Relaxed)
        );
        out.push_str("# HELP http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in &series {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (bound, count) in BUCKETS_S.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_s
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// Middleware: one span and one log line per request, and its count and latency.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let span = tracing::info_span!("request", %method, %route);
    let response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(metrics) = metrics {
        metrics.observe(&method, &route, status, seconds);
    }
    span.in_scope(|| tracing::info!(status, elapsed_ms = seconds * 1000.0, "answered"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = HttpMetrics::default();
        metrics.observe("GET", "/healthz", 200, 0.003);
        metrics.observe("GET", "/healthz", 200, 0.2);
        let text = metrics.render();
        assert!(text
            .contains("http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"));
        assert!(text.contains("route=\"/healthz\",status=\"200\",le=\"0.0025\"} 0"));
        assert!(text.contains("route=\"/healthz\",status=\"200\",le=\"0.005\"} 1"));
        assert!(text.contains("route=\"/healthz\",status=\"200\",le=\"0.25\"} 2"));
    }
}
