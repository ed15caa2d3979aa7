//! A zone's intensity in force as a step function with running integrals, so the time-weighted
//! average over any interval, and which kinds of data it rests on, cost two binary searches.
use crate::domain::intensity::{in_force, IntensityPoint, PointKind, Signal};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Time shares of an interval by the kind of point in force; they sum to 1 over a covered interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct KindShares {
    pub actual: f64,
    pub estimated: f64,
    pub forecast: f64,
}

const KINDS: [PointKind; 3] = [PointKind::Actual, PointKind::Estimated, PointKind::Forecast];

fn kind_index(kind: PointKind) -> usize {
    match kind {
        PointKind::Actual => 0,
        PointKind::Estimated => 1,
        PointKind::Forecast => 2,
    }
}

/// The intensity in force over time for one signal, with gaps where no point covers a time.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Piece edges in microseconds: piece i covers [starts[i], ends[i]); ordered, disjoint.
    starts: Vec<i64>,
    ends: Vec<i64>,
    values: Vec<f64>,
    kinds: Vec<PointKind>,
    /// Before piece i: the integral of intensity over time (g/kWh x µs), and covered µs per kind.
    area_before: Vec<f64>,
    covered_before: Vec<[i64; 3]>,
    /// The native length of the first piece's point (the SDK's tick when it slides a window).
    first_point_span: Option<Duration>,
}

impl Curve {
    /// The points of `signal` only, with DESIGN §2's precedence among them (best kind, then the
    /// latest received). `points` come in stored order, as `in_force` expects.
    pub fn of_signal(points: &[IntensityPoint], signal: Signal) -> Self {
        // Most zones publish one signal: then nothing needs copying out.
        let chosen: Vec<IntensityPoint>;
        let of_signal = if points.iter().all(|p| p.signal == signal) {
            points
        } else {
            chosen = points
                .iter()
                .filter(|p| p.signal == signal)
                .cloned()
                .collect();
            &chosen
        };
        let stretches = in_force(of_signal);
        let mut curve = Curve {
            starts: Vec::with_capacity(stretches.len()),
            ends: Vec::with_capacity(stretches.len()),
            values: Vec::with_capacity(stretches.len()),
            kinds: Vec::with_capacity(stretches.len()),
            area_before: Vec::with_capacity(stretches.len() + 1),
            covered_before: Vec::with_capacity(stretches.len() + 1),
            first_point_span: stretches.first().map(|s| s.point.end - s.point.start),
        };
        let (mut area, mut covered) = (0.0, [0i64; 3]);
        for stretch in &stretches {
            let (start, end) = (
                stretch.start.timestamp_micros(),
                stretch.end.timestamp_micros(),
            );
            curve.area_before.push(area);
            curve.covered_before.push(covered);
            curve.starts.push(start);
            curve.ends.push(end);
            curve.values.push(stretch.point.gco2e_per_kwh);
            curve.kinds.push(stretch.point.kind);
            area += stretch.point.gco2e_per_kwh * (end - start) as f64;
            covered[kind_index(stretch.point.kind)] += end - start;
        }
        curve.area_before.push(area);
        curve.covered_before.push(covered);
        curve
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Where the data ends: the end of the last piece.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.ends
            .last()
            .and_then(|us| DateTime::from_timestamp_micros(*us))
    }

    /// Where the data starts: the start of the first piece at or after `t`, or the one covering it.
    pub fn first_start_from(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let us = t.timestamp_micros();
        let i = self.ends.partition_point(|end| *end <= us);
        self.starts
            .get(i)
            .map(|start| (*start).max(us))
            .and_then(DateTime::from_timestamp_micros)
    }

    pub fn first_point_span(&self) -> Option<Duration> {
        self.first_point_span
    }

    /// The integral of intensity and the covered time per kind over (-inf, t).
    fn running(&self, t: i64) -> (f64, [i64; 3]) {
        // The piece holding t, if any: the last starting at or before t.
        let i = self.starts.partition_point(|start| *start <= t);
        if i == 0 {
            return (0.0, [0; 3]);
        }
        let piece = i - 1;
        let (mut area, mut covered) = (self.area_before[piece], self.covered_before[piece]);
        let inside = (t.min(self.ends[piece]) - self.starts[piece]).max(0);
        area += self.values[piece] * inside as f64;
        covered[kind_index(self.kinds[piece])] += inside;
        (area, covered)
    }

    /// The time-weighted average intensity over [from, to) and the kinds it rests on; `None` unless
    /// points cover all of it.
    pub fn average(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<(f64, KindShares)> {
        self.average_us(from.timestamp_micros(), to.timestamp_micros())
    }

    /// `average` over [a, b) in microseconds.
    pub fn average_us(&self, a: i64, b: i64) -> Option<(f64, KindShares)> {
        if b <= a {
            return None;
        }
        let ((area_a, cov_a), (area_b, cov_b)) = (self.running(a), self.running(b));
        let covered: [i64; 3] = std::array::from_fn(|k| cov_b[k] - cov_a[k]);
        let span = b - a;
        if covered.iter().sum::<i64>() != span {
            return None;
        }
        let share = |kind: PointKind| covered[kind_index(kind)] as f64 / span as f64;
        let [actual, estimated, forecast] = KINDS.map(share);
        Some((
            (area_b - area_a) / span as f64,
            KindShares {
                actual,
                estimated,
                forecast,
            },
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::ZoneCode;

    /// Points of `minutes` each from `start`, all of one kind, received at `start`.
    pub(crate) fn series(
        start: &str,
        minutes: i64,
        values: &[f64],
        kind: PointKind,
    ) -> Vec<IntensityPoint> {
        let start: DateTime<Utc> = start.parse().unwrap();
        values
            .iter()
            .enumerate()
            .map(|(i, value)| IntensityPoint {
                zone: ZoneCode::parse("GB").unwrap(),
                start: start + Duration::minutes(minutes * i as i64),
                end: start + Duration::minutes(minutes * (i as i64 + 1)),
                gco2e_per_kwh: *value,
                kind,
                signal: Signal::Average,
                source: "test".into(),
                source_detail: None,
                received_at: start,
                written_by: None,
            })
            .collect()
    }

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().unwrap()
    }

    #[test]
    fn averages_weigh_each_point_by_the_time_it_covers() {
        // 01:00-02:00 30, 02:00-03:00 100, 03:00-04:00 50: over 01:30-03:30,
        // (30 x 30 + 100 x 60 + 50 x 30) / 120 = (900 + 6000 + 1500) / 120 = 70.
        let curve = Curve::of_signal(
            &series(
                "2026-03-01T01:00:00Z",
                60,
                &[30.0, 100.0, 50.0],
                PointKind::Actual,
            ),
            Signal::Average,
        );
        let (average, kinds) = curve
            .average(at("2026-03-01T01:30:00Z"), at("2026-03-01T03:30:00Z"))
            .unwrap();
        assert!((average - 70.0).abs() < 1e-12);
        assert_eq!(kinds.actual, 1.0);
        // Past the last point nothing is known.
        assert!(curve
            .average(at("2026-03-01T03:30:00Z"), at("2026-03-01T04:30:00Z"))
            .is_none());
    }

    #[test]
    fn kinds_are_time_shares_and_gaps_refuse_an_average() {
        let mut points = series("2026-03-01T00:00:00Z", 30, &[100.0], PointKind::Actual);
        points.extend(series(
            "2026-03-01T00:30:00Z",
            30,
            &[200.0],
            PointKind::Forecast,
        ));
        points.extend(series(
            "2026-03-01T02:00:00Z",
            30,
            &[50.0],
            PointKind::Forecast,
        ));
        let curve = Curve::of_signal(&points, Signal::Average);
        // 00:15-00:45: 15 min actual at 100, 15 min forecast at 200: average 150, half and half.
        let (average, kinds) = curve
            .average(at("2026-03-01T00:15:00Z"), at("2026-03-01T00:45:00Z"))
            .unwrap();
        assert!((average - 150.0).abs() < 1e-12);
        assert_eq!((kinds.actual, kinds.forecast), (0.5, 0.5));
        // 01:00-02:00 is a gap.
        assert!(curve
            .average(at("2026-03-01T00:30:00Z"), at("2026-03-01T02:30:00Z"))
            .is_none());
        // Marginal points are another signal: none here.
        assert!(Curve::of_signal(&points, Signal::Marginal).is_empty());
    }
}
