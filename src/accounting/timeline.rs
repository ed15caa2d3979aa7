//! The piecewise-constant timeline of a report, built once per report in plain Rust (it is small):
//! per zone the intensity in force with its fallbacks, per site the segments between every
//! boundary where anything changes (intensity pieces, carry-window ends, PUE schedule entries,
//! instrument periods, report buckets). Readings are then split against these segments in polars.
use crate::domain::intensity::{in_force, IntensityPoint, PointKind};
use crate::domain::Site;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// How a part's location-based intensity was obtained (DESIGN §3 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    Actual,
    Estimated,
    Forecast,
    CarriedForward,
    DefaultFactor,
    Missing,
}

impl Quality {
    pub const ALL: [Quality; 6] = [
        Quality::Actual,
        Quality::Estimated,
        Quality::Forecast,
        Quality::CarriedForward,
        Quality::DefaultFactor,
        Quality::Missing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Actual => "actual",
            Quality::Estimated => "estimated",
            Quality::Forecast => "forecast",
            Quality::CarriedForward => "carried_forward",
            Quality::DefaultFactor => "default_factor",
            Quality::Missing => "missing",
        }
    }

    fn of(kind: PointKind) -> Self {
        match kind {
            PointKind::Actual => Quality::Actual,
            PointKind::Estimated => Quality::Estimated,
            PointKind::Forecast => Quality::Forecast,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    /// ISO weeks: from Monday's local midnight.
    Week,
    Month,
    /// Calendar quarters: from January, April, July and October.
    Quarter,
    Year,
    Total,
}

impl Granularity {
    pub const ALL: [Self; 7] = [
        Self::Hour,
        Self::Day,
        Self::Week,
        Self::Month,
        Self::Quarter,
        Self::Year,
        Self::Total,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
            Self::Total => "total",
        }
    }
}

/// The first day of the month `months` after `date`'s month.
fn first_of_month(date: NaiveDate, months: u32) -> Option<NaiveDate> {
    let index = date.year() * 12 + date.month0() as i32 + months as i32;
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
}

/// What a report covers: [from, to), bucketed in an IANA time zone.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
    pub tz: Tz,
}

/// Readings last at most an hour: the timeline starts this long before `from`.
pub const LOOKBACK: Duration = Duration::hours(1);

fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight)
        .earliest()
        // A zone that skips midnight on a DST day starts that day an hour later.
        .or_else(|| {
            tz.from_local_datetime(&(midnight + Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

impl Window {
    /// The start of the bucket holding `t`.
    pub fn bucket_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let local = t.with_timezone(&self.tz);
        match self.granularity {
            Granularity::Total => self.from,
            // Truncating the local minutes keeps the two 01:00 hours of a DST fall-back apart.
            Granularity::Hour => {
                t - Duration::seconds(i64::from(local.minute() * 60 + local.second()))
                    - Duration::nanoseconds(i64::from(local.nanosecond()))
            }
            Granularity::Day => local_midnight(self.tz, local.date_naive()),
            Granularity::Week => {
                let back = local.weekday().num_days_from_monday();
                local_midnight(
                    self.tz,
                    local.date_naive() - Duration::days(i64::from(back)),
                )
            }
            Granularity::Month | Granularity::Quarter | Granularity::Year => {
                let date = local.date_naive();
                let months_back = match self.granularity {
                    Granularity::Quarter => date.month0() % 3,
                    Granularity::Year => date.month0(),
                    _ => 0,
                };
                let first = NaiveDate::from_ymd_opt(date.year(), date.month() - months_back, 1);
                local_midnight(self.tz, first.unwrap_or_default())
            }
        }
    }

    fn next_bucket(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = start.with_timezone(&self.tz).date_naive();
        match self.granularity {
            Granularity::Total => None,
            Granularity::Hour => Some(start + Duration::hours(1)),
            Granularity::Day => local.succ_opt().map(|d| local_midnight(self.tz, d)),
            Granularity::Week => local
                .checked_add_days(chrono::Days::new(7))
                .map(|d| local_midnight(self.tz, d)),
            Granularity::Month => first_of_month(local, 1).map(|d| local_midnight(self.tz, d)),
            Granularity::Quarter => first_of_month(local, 3).map(|d| local_midnight(self.tz, d)),
            Granularity::Year => first_of_month(local, 12).map(|d| local_midnight(self.tz, d)),
        }
    }

    /// Bucket edges strictly inside (start, end).
    pub fn bucket_edges(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut edges = Vec::new();
        let mut next = self.next_bucket(self.bucket_start(start));
        while let Some(edge) = next.filter(|e| *e < end) {
            if edge > start {
                edges.push(edge);
            }
            next = self.next_bucket(edge);
        }
        edges
    }
}

/// A stretch of a zone's intensity with its quality; `value` is `None` where it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct IntensityPiece {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub value: Option<f64>,
    pub quality: Quality,
}

/// A zone's intensity over [start, end): the points in force, gaps carried forward from the last
/// point for up to `max_carry`, then the default factor, else missing.
pub fn zone_pieces(
    points: &[IntensityPoint],
    default_factor: Option<f64>,
    max_carry: Duration,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<IntensityPiece> {
    let mut pieces = Vec::new();
    let mut cursor = start;
    let mut previous: Option<(DateTime<Utc>, f64)> = None;
    let fill_gap = |pieces: &mut Vec<IntensityPiece>,
                    from: DateTime<Utc>,
                    to: DateTime<Utc>,
                    previous: Option<(DateTime<Utc>, f64)>| {
        let mut at = from;
        if let Some((ended, value)) = previous {
            let carry_end = (ended + max_carry).min(to);
            if carry_end > at {
                pieces.push(IntensityPiece {
                    start: at,
                    end: carry_end,
                    value: Some(value),
                    quality: Quality::CarriedForward,
                });
                at = carry_end;
            }
        }
        if to > at {
            pieces.push(IntensityPiece {
                start: at,
                end: to,
                value: default_factor,
                quality: if default_factor.is_some() {
                    Quality::DefaultFactor
                } else {
                    Quality::Missing
                },
            });
        }
    };
    for stretch in in_force(points) {
        if stretch.end <= start {
            previous = Some((stretch.end, stretch.point.gco2e_per_kwh));
            continue;
        }
        if stretch.start >= end {
            break;
        }
        if stretch.start > cursor {
            fill_gap(&mut pieces, cursor, stretch.start, previous);
        }
        pieces.push(IntensityPiece {
            start: stretch.start.max(cursor),
            end: stretch.end.min(end),
            value: Some(stretch.point.gco2e_per_kwh),
            quality: Quality::of(stretch.point.kind),
        });
        cursor = stretch.end.min(end);
        previous = Some((stretch.end, stretch.point.gco2e_per_kwh));
    }
    if end > cursor {
        fill_gap(&mut pieces, cursor, end, previous);
    }
    pieces
}

/// A span of one site over which nothing changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub site: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Whether the segment counts in the report (it lies in [from, to)).
    pub in_window: bool,
    pub bucket: DateTime<Utc>,
    pub pue: f64,
    /// Whether `pue` was measured by the site's meters rather than configured.
    pub pue_measured: bool,
    /// Allocated IT energy per kWh measured (energy-proportional sites with IT meters).
    pub allocation_extra: f64,
    /// Unattributed IT power spread by reserved capacity (reserved-proportional sites).
    pub idle_kw: f64,
    pub intensity: Option<f64>,
    pub quality: Quality,
}

fn pue_at(site: &Site, t: DateTime<Utc>) -> f64 {
    site.pue_schedule
        .iter()
        .rev()
        .find(|entry| entry.from <= t)
        .map_or(site.pue, |entry| entry.pue)
}

/// Every instant at which something about `site` changes in a timeline over `window` (some lie
/// outside it): the timeline's own ends, `bucket_edges`, intensity pieces, PUE schedule entries,
/// instrument periods, reservations, meters' pieces and reserved capacity.
pub fn site_edges(
    inputs: &super::Inputs<'_>,
    site: &Site,
    window: &Window,
    bucket_edges: &[DateTime<Utc>],
) -> BTreeSet<DateTime<Utc>> {
    let start = window.from - LOOKBACK;
    let mut edges: BTreeSet<DateTime<Utc>> = [start, window.from, window.to].into();
    edges.extend(bucket_edges.iter().copied());
    if let Some(pieces) = inputs.pieces.get(&site.zone) {
        edges.extend(pieces.iter().flat_map(|p| [p.start, p.end]));
    }
    edges.extend(site.pue_schedule.iter().map(|entry| entry.from));
    edges.extend(
        (inputs.instruments.iter())
            .filter(|i| i.site == site.id)
            .flat_map(|i| [i.from, i.to]),
    );
    edges.extend(inputs.holdings.edges(&site.id));
    if let Some(measured) = inputs.measured_pue.get(&site.id) {
        edges.extend(measured.iter().flat_map(|p| [p.start, p.end]));
    }
    if let Some(allocated) = inputs.allocation.get(&site.id) {
        edges.extend(allocated.iter().flat_map(|p| [p.start, p.end]));
    }
    if site.allocation == crate::domain::Allocation::ReservedProportional {
        edges.extend(inputs.capacities.edges(&site.id));
    }
    edges
}

/// Segments of every site over [window.from - LOOKBACK, window.to), ordered by site, then time.
pub fn segments(inputs: &super::Inputs<'_>, window: &Window) -> Vec<Segment> {
    let super::Inputs {
        sites,
        pieces: zone_pieces,
        measured_pue,
        allocation,
        ..
    } = *inputs;
    let no_measurements = Vec::new();
    let no_allocation = Vec::new();
    let start = window.from - LOOKBACK;
    let bucket_edges = window.bucket_edges(start, window.to);
    let mut segments = Vec::new();
    for (index, site) in sites.iter().enumerate() {
        let pieces = zone_pieces
            .get(&site.zone)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let measured = measured_pue.get(&site.id).unwrap_or(&no_measurements);
        let allocated = allocation.get(&site.id).unwrap_or(&no_allocation);
        let edges = site_edges(inputs, site, window, &bucket_edges);
        let edges: Vec<_> = edges.range(start..=window.to).copied().collect();
        for span in edges.windows(2) {
            let (from, to) = (span[0], span[1]);
            let piece = pieces
                .get(pieces.partition_point(|p| p.end <= from))
                .filter(|p| p.start <= from);
            let measured_at = measured
                .get(measured.partition_point(|p| p.end <= from))
                .filter(|p| p.start <= from);
            segments.push(Segment {
                site: index,
                start: from,
                end: to,
                in_window: from >= window.from,
                bucket: window.bucket_start(from),
                pue: measured_at.map_or_else(|| pue_at(site, from), |measured| measured.pue),
                pue_measured: measured_at.is_some(),
                allocation_extra: super::allocation::piece_at(allocated, from)
                    .map_or(0.0, |i| allocated[i].extra),
                idle_kw: super::allocation::piece_at(allocated, from)
                    .map_or(0.0, |i| allocated[i].idle_kw),
                intensity: piece.and_then(|p| p.value),
                quality: piece.map_or(Quality::Missing, |p| p.quality),
            });
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::intensity::Signal;
    use crate::domain::ZoneCode;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn london_days_follow_the_clock_change() {
        let window = Window {
            from: t("2026-03-28T00:00:00Z"),
            to: t("2026-03-31T00:00:00Z"),
            granularity: Granularity::Day,
            tz: chrono_tz::Europe::London,
        };
        // Summer time starts 2026-03-29 01:00 UTC: that local day has 23 hours, and the next
        // local midnights fall at 23:00 UTC.
        assert_eq!(
            window.bucket_edges(window.from, window.to),
            [
                t("2026-03-29T00:00:00Z"),
                t("2026-03-29T23:00:00Z"),
                t("2026-03-30T23:00:00Z")
            ]
        );
        assert_eq!(
            window.bucket_start(t("2026-03-30T22:59:00Z")),
            t("2026-03-29T23:00:00Z")
        );
    }

    #[test]
    fn months_start_at_local_midnight() {
        let window = Window {
            from: t("2026-01-01T00:00:00Z"),
            to: t("2026-03-01T00:00:00Z"),
            granularity: Granularity::Month,
            tz: chrono_tz::America::New_York,
        };
        assert_eq!(
            window.bucket_start(t("2026-02-01T04:00:00Z")),
            t("2026-01-01T05:00:00Z")
        );
        assert_eq!(
            window.bucket_start(t("2026-02-01T05:00:00Z")),
            t("2026-02-01T05:00:00Z")
        );
    }

    #[test]
    fn weeks_start_on_local_mondays_quarters_and_years_on_their_first_day() {
        let window = |granularity| Window {
            from: t("2026-01-01T00:00:00Z"),
            to: t("2027-01-01T00:00:00Z"),
            granularity,
            tz: chrono_tz::Europe::Berlin,
        };
        // Wednesday 2026-04-01 10:00 in Berlin (summer time, UTC+2): its ISO week began on
        // Monday 2026-03-30, local midnight = 2026-03-29T22:00Z.
        let week = window(Granularity::Week);
        assert_eq!(
            week.bucket_start(t("2026-04-01T08:00:00Z")),
            t("2026-03-29T22:00:00Z")
        );
        // The week of the clock change (Sunday 2026-03-29) began on Monday 23 March, UTC+1.
        assert_eq!(
            week.bucket_start(t("2026-03-29T12:00:00Z")),
            t("2026-03-22T23:00:00Z")
        );
        assert_eq!(
            week.bucket_edges(t("2026-03-23T00:00:00Z"), t("2026-04-07T00:00:00Z")),
            [t("2026-03-29T22:00:00Z"), t("2026-04-05T22:00:00Z")]
        );
        let quarter = window(Granularity::Quarter);
        assert_eq!(
            quarter.bucket_start(t("2026-05-15T00:00:00Z")),
            t("2026-03-31T22:00:00Z")
        );
        assert_eq!(
            quarter.bucket_edges(t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z")),
            [
                t("2026-03-31T22:00:00Z"),
                t("2026-06-30T22:00:00Z"),
                t("2026-09-30T22:00:00Z"),
                t("2026-12-31T23:00:00Z")
            ]
        );
        let year = window(Granularity::Year);
        assert_eq!(
            year.bucket_start(t("2026-12-31T22:59:00Z")),
            t("2025-12-31T23:00:00Z")
        );
        assert_eq!(
            year.bucket_edges(t("2025-06-01T00:00:00Z"), t("2027-06-01T00:00:00Z")),
            [t("2025-12-31T23:00:00Z"), t("2026-12-31T23:00:00Z")]
        );
    }

    #[test]
    fn gaps_are_carried_forward_then_filled_with_the_default() {
        let point = IntensityPoint {
            zone: ZoneCode::parse("GB").unwrap(),
            start: t("2026-03-01T09:00:00Z"),
            end: t("2026-03-01T09:30:00Z"),
            gco2e_per_kwh: 200.0,
            kind: PointKind::Actual,
            signal: Signal::Average,
            source: "s".into(),
            source_detail: None,
            received_at: t("2026-03-01T10:00:00Z"),
            written_by: None,
        };
        let pieces = zone_pieces(
            &[point],
            Some(300.0),
            Duration::hours(2),
            t("2026-03-01T08:00:00Z"),
            t("2026-03-01T13:00:00Z"),
        );
        let summary: Vec<_> = pieces
            .iter()
            .map(|p| {
                (
                    p.start.hour(),
                    p.end.hour(),
                    p.end.minute(),
                    p.value,
                    p.quality,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (8, 9, 0, Some(300.0), Quality::DefaultFactor),
                (9, 9, 30, Some(200.0), Quality::Actual),
                (9, 11, 30, Some(200.0), Quality::CarriedForward),
                (11, 13, 0, Some(300.0), Quality::DefaultFactor),
            ]
        );
    }
}
