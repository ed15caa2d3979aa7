//! When to run a job: windows of a given length ranked by their time-weighted average intensity, so
//! a 10-minute job never lands on one clean 5-minute point beside a dirty one.
use super::curve::{Curve, KindShares};
use chrono::{DateTime, Duration, Utc};

/// One place a job of the searched length could run, fully covered by points.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub average_gco2e_per_kwh: f64,
    pub kinds: KindShares,
}

/// Every window of `length` starting at `from`, `from + step`, ... and ending by `to`, where points
/// cover it all; windows over a gap are skipped, never guessed.
pub fn rolling(
    curve: &Curve,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    length: Duration,
    step: Duration,
) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    let (length_us, step_us) = (length.num_microseconds(), step.num_microseconds());
    let (Some(length_us), Some(step_us)) = (length_us, step_us) else {
        return candidates;
    };
    if length_us <= 0 || step_us <= 0 {
        return candidates;
    }
    let (mut start, last) = (from.timestamp_micros(), to.timestamp_micros() - length_us);
    while start <= last {
        if let Some((average, kinds)) = curve.average_us(start, start + length_us) {
            if let Some(at) = DateTime::from_timestamp_micros(start) {
                candidates.push(Candidate {
                    start: at,
                    end: at + length,
                    average_gco2e_per_kwh: average,
                    kinds,
                });
            }
        }
        start += step_us;
    }
    candidates
}

/// The `limit` lowest-average windows that do not overlap one another (the best first; of equal
/// averages, the earliest), so the answer offers real alternatives rather than one window shifted
/// by a step. `candidates` are ordered by start, as `rolling` gives them.
pub fn greenest(candidates: Vec<Candidate>, limit: usize) -> Vec<Candidate> {
    // A pass per window asked for (a handful) instead of sorting a year of candidates.
    let mut chosen: Vec<Candidate> = Vec::with_capacity(limit);
    while chosen.len() < limit {
        let free = |c: &&Candidate| {
            !chosen
                .iter()
                .any(|taken| taken.start < c.end && c.start < taken.end)
        };
        // Candidates come ordered by start, so the first of equal averages is the earliest.
        let best = candidates.iter().filter(free).reduce(|best, c| {
            if c.average_gco2e_per_kwh < best.average_gco2e_per_kwh {
                c
            } else {
                best
            }
        });
        match best {
            Some(best) => chosen.push(best.clone()),
            None => break,
        }
    }
    chosen
}

/// The candidates sharing the lowest average (the Carbon Aware SDK's `optimalDataPoints`).
pub fn optimal(candidates: &[Candidate]) -> Vec<Candidate> {
    let best = candidates
        .iter()
        .map(|c| c.average_gco2e_per_kwh)
        .min_by(f64::total_cmp);
    candidates
        .iter()
        .filter(|c| Some(c.average_gco2e_per_kwh) == best)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::intensity::{PointKind, Signal};
    use crate::insights::curve::tests::series;

    fn curve(values: &[f64]) -> Curve {
        Curve::of_signal(
            &series("2026-03-01T12:00:00Z", 5, values, PointKind::Forecast),
            Signal::Average,
        )
    }

    fn minutes(m: i64) -> Duration {
        Duration::minutes(m)
    }

    fn start() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_sdk_example_picks_the_window_averaging_10_not_the_single_point_of_5() {
        // 5-minute points 5, 55, 10, 10, 10 and a 10-minute job: the windows average
        // (5+55)/2 = 30, (55+10)/2 = 32.5, (10+10)/2 = 10, (10+10)/2 = 10.
        let curve = curve(&[5.0, 55.0, 10.0, 10.0, 10.0]);
        let all = rolling(
            &curve,
            start(),
            start() + minutes(25),
            minutes(10),
            minutes(5),
        );
        let averages: Vec<f64> = all.iter().map(|c| c.average_gco2e_per_kwh).collect();
        assert_eq!(averages, [30.0, 32.5, 10.0, 10.0]);
        let best = optimal(&all);
        assert_eq!(best.len(), 2);
        assert_eq!(best[0].start, start() + minutes(10));
        assert_eq!(best[0].kinds.forecast, 1.0);
        // Ranked and not overlapping: 12:10-12:20 (10), then 12:00-12:10 (30); 12:15 overlaps
        // the first and 12:05 both.
        let ranked = greenest(all, 5);
        let starts: Vec<DateTime<Utc>> = ranked.iter().map(|c| c.start).collect();
        assert_eq!(starts, [start() + minutes(10), start()]);
    }

    #[test]
    fn windows_straddling_points_average_by_time_and_gaps_are_skipped() {
        // 12:00-12:15 at 5-minute points 10, 20, 40; a 10-minute job stepped by 2.5 minutes
        // starting 12:02:30: (2.5 x 10 + 5 x 20 + 2.5 x 40) / 10 = 22.5.
        let curve = curve(&[10.0, 20.0, 40.0]);
        let half = Duration::seconds(150);
        let all = rolling(
            &curve,
            start() + half,
            start() + minutes(30),
            minutes(10),
            half,
        );
        assert_eq!(all[0].average_gco2e_per_kwh, 22.5);
        // The last that fits ends 12:15: starts 12:02:30 and 12:05 only.
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].average_gco2e_per_kwh, 30.0);
    }
}
