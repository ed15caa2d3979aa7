//! Grid carbon-intensity points, and which of them is in force at each instant (DESIGN §2): the best
//! kind (actual > estimated > forecast), then average over marginal, then the latest received.
use super::{Checks, Id, Invalid, ZoneCode, MAX_INTENSITY_GCO2E_PER_KWH};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest interval one point may cover.
pub const MAX_POINT_SPAN: Duration = Duration::hours(24);

/// How a value was obtained; also the quality label of energy it applies to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Actual,
    Estimated,
    Forecast,
}

/// Average intensity of the grid mix, or the marginal emitter's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Average,
    Marginal,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Actual => "actual",
            Self::Estimated => "estimated",
            Self::Forecast => "forecast",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Actual, Self::Estimated, Self::Forecast]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Average => "average",
            Self::Marginal => "marginal",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Average, Self::Marginal]
            .into_iter()
            .find(|signal| signal.as_str() == raw)
    }
}

/// One value of a zone's grid intensity over [start, end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"zone": "DE", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z",
    "gco2e_per_kwh": 330.0, "kind": "actual", "signal": "average", "source": "manual",
    "source_detail": null, "received_at": "2026-03-01T10:05:00Z", "written_by": "k_3f9a"}))]
pub struct IntensityPoint {
    #[schema(value_type = String)]
    pub zone: ZoneCode,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub gco2e_per_kwh: f64,
    pub kind: PointKind,
    pub signal: Signal,
    /// The provider or pusher (`uk_carbon_intensity`, `electricity_maps`, `watttime`, `manual`).
    pub source: String,
    /// Provider detail kept for audit (Electricity Maps' emission factor type, WattTime's model).
    pub source_detail: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The API key that pushed the point; `null` for the server's own feeds (see `source`).
    pub written_by: Option<String>,
}

/// A point as pushed in `POST /v1/intensity`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub gco2e_per_kwh: f64,
    pub kind: PointKind,
}

/// The body of `POST /v1/intensity`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"zone": "DE", "source": "manual", "signal": "average",
    "points": [{"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z", "gco2e_per_kwh": 330,
                "kind": "actual"}]}))]
pub struct IntensityPush {
    pub zone: String,
    pub source: String,
    pub signal: Signal,
    pub points: Vec<PointSpec>,
}

impl IntensityPush {
    /// The points, stamped with when and by which key they arrived.
    pub fn parse(
        self,
        received_at: DateTime<Utc>,
        written_by: &Id,
    ) -> Result<Vec<IntensityPoint>, Invalid> {
        let mut checks = Checks::default();
        let zone = checks.parse("zone", ZoneCode::parse(&self.zone));
        let source_ok = !self.source.trim().is_empty() && self.source.len() <= 64;
        checks.require(source_ok, "source", "must be 1 to 64 characters");
        checks.require(
            !self.points.is_empty(),
            "points",
            "must hold at least one point",
        );
        for (i, point) in self.points.iter().enumerate() {
            check_point(&mut checks, &format!("points/{i}/"), point);
        }
        checks.finish(|| {
            let zone = zone?;
            Some(
                self.points
                    .into_iter()
                    .map(|p| IntensityPoint {
                        zone: zone.clone(),
                        start: p.start,
                        end: p.end,
                        gco2e_per_kwh: p.gco2e_per_kwh,
                        kind: p.kind,
                        signal: self.signal,
                        source: self.source.trim().to_owned(),
                        source_detail: None,
                        received_at,
                        written_by: Some(written_by.to_string()),
                    })
                    .collect(),
            )
        })
    }
}

fn check_point(checks: &mut Checks, prefix: &str, point: &PointSpec) {
    let span = point.end - point.start;
    checks.require(
        span > Duration::zero() && span <= MAX_POINT_SPAN,
        format!("{prefix}end"),
        "must be after start, by at most 24 hours",
    );
    checks.require(
        point.gco2e_per_kwh.is_finite()
            && (0.0..=MAX_INTENSITY_GCO2E_PER_KWH).contains(&point.gco2e_per_kwh),
        format!("{prefix}gco2e_per_kwh"),
        format!("must be a number from 0 to {MAX_INTENSITY_GCO2E_PER_KWH}"),
    );
}

/// Whether `a` takes precedence over `b` where both cover an instant.
fn outranks(a: &IntensityPoint, b: &IntensityPoint) -> bool {
    (a.kind, a.signal, std::cmp::Reverse(a.received_at))
        < (b.kind, b.signal, std::cmp::Reverse(b.received_at))
}

/// A stretch of time over which one point is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce<'p> {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub point: &'p IntensityPoint,
}

/// The points in force over time, as maximal stretches ordered by start; gaps have none.
/// `points` come in the order they were stored: of two that rank equal (same kind and signal,
/// received at the same instant), the one stored later is in force, as a resend replaces.
pub fn in_force(points: &[IntensityPoint]) -> Vec<InForce<'_>> {
    let mut edges: Vec<DateTime<Utc>> = points.iter().flat_map(|p| [p.start, p.end]).collect();
    edges.sort_unstable();
    edges.dedup();
    let mut by_start: Vec<(usize, &IntensityPoint)> = points.iter().enumerate().collect();
    by_start.sort_by_key(|(_, p)| p.start);
    let mut stretches: Vec<InForce<'_>> = Vec::new();
    let mut active: Vec<(usize, &IntensityPoint)> = Vec::new();
    let mut next = 0;
    for window in edges.windows(2) {
        let (from, to) = (window[0], window[1]);
        active.retain(|(_, p)| p.end > from);
        while next < by_start.len() && by_start[next].1.start <= from {
            if by_start[next].1.end > from {
                active.push(by_start[next]);
            }
            next += 1;
        }
        let best = active.iter().copied().reduce(|best, candidate| {
            let ties = !outranks(best.1, candidate.1) && !outranks(candidate.1, best.1);
            if outranks(candidate.1, best.1) || (ties && candidate.0 > best.0) {
                candidate
            } else {
                best
            }
        });
        if let Some((_, point)) = best {
            match stretches.last_mut() {
                Some(last) if last.end == from && std::ptr::eq(last.point, point) => last.end = to,
                _ => stretches.push(InForce {
                    start: from,
                    end: to,
                    point,
                }),
            }
        }
    }
    stretches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(
        start: &str,
        end: &str,
        value: f64,
        kind: PointKind,
        signal: Signal,
        received: &str,
    ) -> IntensityPoint {
        IntensityPoint {
            zone: ZoneCode::parse("GB").unwrap(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            gco2e_per_kwh: value,
            kind,
            signal,
            source: "test".into(),
            source_detail: None,
            received_at: received.parse().unwrap(),
            written_by: None,
        }
    }

    #[test]
    fn an_actual_replaces_a_forecast_and_average_beats_marginal() {
        use PointKind::*;
        use Signal::*;
        let points = vec![
            point(
                "2026-03-01T09:00:00Z",
                "2026-03-01T10:00:00Z",
                200.0,
                Forecast,
                Average,
                "2026-03-01T08:00:00Z",
            ),
            point(
                "2026-03-01T09:00:00Z",
                "2026-03-01T09:30:00Z",
                180.0,
                Actual,
                Average,
                "2026-03-01T09:35:00Z",
            ),
            point(
                "2026-03-01T09:30:00Z",
                "2026-03-01T10:00:00Z",
                400.0,
                Forecast,
                Marginal,
                "2026-03-01T09:40:00Z",
            ),
        ];
        let values: Vec<(String, f64)> = in_force(&points)
            .iter()
            .map(|s| (s.start.format("%H:%M").to_string(), s.point.gco2e_per_kwh))
            .collect();
        assert_eq!(values, [("09:00".into(), 180.0), ("09:30".into(), 200.0)]);
    }

    #[test]
    fn among_equals_the_latest_received_wins_and_gaps_stay_gaps() {
        use PointKind::*;
        use Signal::*;
        let points = vec![
            point(
                "2026-03-01T09:00:00Z",
                "2026-03-01T09:30:00Z",
                100.0,
                Estimated,
                Average,
                "2026-03-01T10:00:00Z",
            ),
            point(
                "2026-03-01T09:00:00Z",
                "2026-03-01T09:30:00Z",
                120.0,
                Estimated,
                Average,
                "2026-03-01T11:00:00Z",
            ),
            point(
                "2026-03-01T10:00:00Z",
                "2026-03-01T10:30:00Z",
                90.0,
                Actual,
                Average,
                "2026-03-01T11:00:00Z",
            ),
        ];
        let stretches = in_force(&points);
        assert_eq!(stretches.len(), 2);
        assert_eq!(stretches[0].point.gco2e_per_kwh, 120.0);
        assert_eq!(
            stretches[1].start,
            "2026-03-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
