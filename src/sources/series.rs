//! From series of samples to readings. A counter's increase between two samples of a series is the
//! energy over that interval (a drop is a reset: the new value counts, as Prometheus' `increase`
//! does); a gauge's sample is the average power since the series' previous sample. Energy is
//! spread pro rata over aligned windows, series that map to the same site, customer and workload
//! are summed in them, and each window is one reading whose identity is the window: sending its
//! complete sum again replaces it, so a retried batch never counts twice.
use super::interned::{FastMap, Interned};
use super::open_windows::OpenWindows;
use super::{Sample, Series};
use crate::domain::mapping::Unit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Prometheus' stale marker, a NaN with this exact bit pattern.
pub const STALE_MARKER_BITS: u64 = 0x7ff0_0000_0000_0002;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub window_ms: i64,
    /// Longer intervals between two samples of a series are gaps: nothing is invented for them.
    pub max_gap_ms: i64,
}

/// Where a series' energy (or, for a counter of things, its count) goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    pub site: String,
    pub customer: String,
    pub workload: String,
    /// Set for counters of things: the windows sum units of this name, not joules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functional_unit: Option<String>,
    /// Set for site meters: `workload` is then the meter's id and `customer` empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_kind: Option<crate::domain::meter::MeterKind>,
}

/// One window of one target, by name (the state's first on-disk format kept windows this way).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowKey {
    pub target: Target,
    pub start_ms: i64,
}

/// One window of one target, by the target's number in the state: (target, window start ms).
pub type WindowAt = (u32, i64);

/// How far a target's data has come, and which of its windows still wait for their reading.
/// Their sums are in the state (and its log), so a reading written late loses nothing: a window
/// is written once a later sample of its target passes its end, rather than on every sample
/// that adds to it, or after a quiet spell when its exporter stops.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The newest sample any of the target's series brought.
    newest_ms: i64,
    /// Joules so far per open window, and which wait for their reading.
    windows: OpenWindows,
    /// The source whose sample changed the target last (the caller's number for it).
    source: u16,
}

/// When a window's reading is written: at once on every change, or once its target's data has
/// passed its end (and after `after_ms` of quiet at the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    AtOnce,
    Passed { after_ms: i64 },
}

/// A window whose reading is due: where, its whole sum in joules, and the source to credit.
pub type Due = (WindowAt, f64, u16);

/// What to do with a series' samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Into `target`'s windows; samples at or after `until_ms` (a retirement) are refused.
    Mapped {
        target: Arc<Target>,
        unit: Unit,
        until_ms: Option<i64>,
    },
    /// No mapping matched: counted, listed, not converted.
    Unmapped,
    /// A mapping matched but its samples can never become readings (the reason is counted).
    Refused(&'static str),
}

/// One mapped series on its way into the windows.
#[derive(Clone, Copy)]
struct Route<'a> {
    key: &'a str,
    target: u32,
    unit: Unit,
    until_ms: Option<i64>,
    delta: bool,
}

/// A series' last sample (timestamp ms, value in the series' unit), and where its samples went.
#[derive(Debug, Clone)]
struct Tracked {
    last: (i64, f64),
    routed: Option<Routed>,
}

/// A mapped series' resolution, kept with its state for the registry version it was made under,
/// so that a request finds a series' state and its target with one lookup of its key.
#[derive(Debug, Clone)]
struct Routed {
    version: u64,
    /// The target as the state holds it: `target_id` is its number while the state holds this
    /// very target (pruning frees numbers for reuse).
    target: Arc<Target>,
    target_id: u32,
    unit: Unit,
    until_ms: Option<i64>,
}

/// What happened to the samples of one request (or, summed, of a source).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// Samples of mapped series taken into the series' state (first samples included).
    pub samples_accepted: u64,
    pub samples_unmapped: u64,
    /// Samples that added nothing, by reason (`stale_marker`, `not_finite`, `duplicate`,
    /// `out_of_order`, `retired`, `unknown_site`, ...).
    pub samples_ignored: BTreeMap<String, u64>,
    /// Intervals longer than `max_gap_s`, not bridged.
    pub gaps: u64,
    /// Counter drops taken as resets.
    pub resets: u64,
    /// Readings (windows) written or rewritten.
    pub readings_written: u64,
}

impl Counts {
    pub fn ignore(&mut self, reason: &str, n: u64) {
        *self.samples_ignored.entry(reason.to_owned()).or_default() += n;
    }

    pub fn add(&mut self, other: &Counts) {
        self.samples_accepted += other.samples_accepted;
        self.samples_unmapped += other.samples_unmapped;
        for (reason, n) in &other.samples_ignored {
            self.ignore(reason, *n);
        }
        self.gaps += other.gaps;
        self.resets += other.resets;
        self.readings_written += other.readings_written;
    }
}

/// Every series' last sample and the windows still open: what must survive a restart. Series keys
/// and targets are numbered (`Interned`), so a sample costs one string hash per series, and the
/// log names each key once per log file and a number after that.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Series key (its sorted labels) -> its last sample and resolution.
    series: Interned<String, Tracked>,
    /// Targets (shared with the resolutions that name them), how far their data has come and
    /// their open windows.
    targets: Interned<Arc<Target>, Progress>,
    newest_ms: i64,
    /// Series changed since the last `delta`.
    dirty: FastSet<u32>,
    /// Windows changed, and targets that took a sample, since the last `due`.
    fresh: Vec<WindowAt>,
    advanced: FastSet<u32>,
    /// `newest_ms` when the state was last pruned.
    pruned_at_ms: i64,
    /// The log being written: a key is named once in each (see `Delta`).
    generation: u64,
}

/// What one request changed, in absolute values (so applying it twice is applying it once): the
/// unit of the state's log on disk. Keys and targets are named the first time a log file uses
/// their number and by number after that; a snapshot is one delta naming everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub newest_ms: i64,
    /// (number, series key) named in this delta.
    pub series_keys: Vec<(u32, String)>,
    /// (number, target) named in this delta.
    pub targets: Vec<(u32, Target)>,
    /// (series number, timestamp ms, value).
    pub series: Vec<(u32, i64, f64)>,
    /// (target number, window start ms, joules).
    pub windows: Vec<(u32, i64, f64)>,
}

/// The names a log file gave its numbers, while it is replayed.
#[derive(Debug, Default)]
pub struct Replay {
    series_keys: FastMap<u32, String>,
    targets: FastMap<u32, Arc<Target>>,
}

impl State {
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// The target numbered `id`: live for the windows `convert`, `due` and `idle` returned until
    /// the next `delta`.
    pub fn target(&self, id: u32) -> Option<&Arc<Target>> {
        self.targets.key(id)
    }

    /// Starts a new log file: every key is named again the first time it is used in it.
    pub fn new_log(&mut self) {
        self.generation += 1;
    }

    /// What changed since the last call, given the windows `convert` reported; then forgets what
    /// no later sample can reach (so call it once per `convert`, after using its windows).
    pub fn delta(&mut self, changed: &[(WindowAt, f64)], windows: Windows) -> Delta {
        let mut delta = Delta {
            newest_ms: self.newest_ms,
            ..Delta::default()
        };
        let mut dirty: Vec<u32> = self.dirty.drain().collect();
        dirty.sort_unstable();
        // Keys are copied only when this log has not named them yet: after the first request of
        // a log, a series or window costs no string copy here.
        for id in dirty {
            let Some(&Tracked { last: (t, v), .. }) = self.series.value(id) else {
                continue;
            };
            if self.series.log_in(id, self.generation) {
                if let Some(key) = self.series.key(id) {
                    delta.series_keys.push((id, key.clone()));
                }
            }
            delta.series.push((id, t, v));
        }
        for &((target, start_ms), joules) in changed {
            if self.targets.log_in(target, self.generation) {
                if let Some(named) = self.targets.key(target) {
                    delta.targets.push((target, Target::clone(named)));
                }
            }
            delta.windows.push((target, start_ms, joules));
        }
        self.prune(windows);
        delta
    }

    /// Everything, as one delta that names every key (what a snapshot holds).
    pub fn snapshot(&self) -> Delta {
        Delta {
            newest_ms: self.newest_ms,
            series_keys: self
                .series
                .iter()
                .map(|(id, k, _)| (id, k.clone()))
                .collect(),
            targets: self
                .targets
                .iter()
                .map(|(id, t, _)| (id, Target::clone(t)))
                .collect(),
            series: self
                .series
                .iter()
                .map(|(id, _, tracked)| (id, tracked.last.0, tracked.last.1))
                .collect(),
            windows: self
                .targets
                .iter()
                .flat_map(|(id, _, progress)| {
                    let windows = progress.windows.iter();
                    windows.map(move |(start, joules)| (id, start, joules))
                })
                .collect(),
        }
    }

    /// Sets a series' last sample, by key.
    pub fn set_series(&mut self, key: &str, last: (i64, f64)) {
        match self.series.id(key).and_then(|id| self.series.value_mut(id)) {
            Some(tracked) => tracked.last = last,
            None => {
                let routed = None;
                self.series.insert(key.to_owned(), Tracked { last, routed });
            }
        }
    }

    fn target_id(&mut self, target: &Arc<Target>) -> u32 {
        match self.targets.id(&**target) {
            Some(id) => id,
            None => self.targets.insert(target.clone(), Progress::default()),
        }
    }

    /// Sets a window's sum, by target, as replayed from the log: whether its reading was
    /// written before the restart is not known, so it is written again at the first chance
    /// (the same sum under the same identity replaces itself).
    pub fn set_window(&mut self, target: &Arc<Target>, start_ms: i64, joules: f64) {
        let id = self.target_id(target);
        if let Some(progress) = self.targets.value_mut(id) {
            progress.windows.replayed(start_ms, joules);
        }
    }

    /// The windows whose reading is due after a `convert`, with their sums: every window it
    /// changed (`AtOnce`), or (`Passed`) those of the targets it moved on whose end their data
    /// has reached; the others wait (`idle`). `source` is credited with them.
    pub fn due(
        &mut self,
        writing: Writing,
        now_ms: i64,
        source: u16,
        windows: Windows,
    ) -> Vec<Due> {
        for (target, start) in self.fresh.drain(..) {
            if let Some(progress) = self.targets.value_mut(target) {
                progress.windows.changed(start, now_ms);
            }
        }
        let mut due = Vec::new();
        for target in self.advanced.drain() {
            let Some(progress) = self.targets.value_mut(target) else {
                continue;
            };
            progress.source = source;
            let reached = progress.newest_ms;
            progress.windows.written_if(|start, _| {
                let complete = writing == Writing::AtOnce || start + windows.window_ms <= reached;
                if complete {
                    due.push((target, start));
                }
                complete
            });
        }
        self.summed(due)
    }

    /// The windows that waited `after_ms` or longer since they changed (their target's data has
    /// not passed them: an exporter that stopped, or a target between samples).
    pub fn idle(&mut self, now_ms: i64, after_ms: i64) -> Vec<Due> {
        let mut due = Vec::new();
        let waited = now_ms.saturating_sub(after_ms);
        for (target, progress) in self.targets.values_mut() {
            progress.windows.written_if(|start, since| {
                let quiet = since <= waited;
                if quiet {
                    due.push((target, start));
                }
                quiet
            });
        }
        self.summed(due)
    }

    fn summed(&self, mut due: Vec<WindowAt>) -> Vec<Due> {
        due.sort_unstable();
        due.into_iter()
            .filter_map(|at| {
                let progress = self.targets.value(at.0)?;
                Some((at, progress.windows.joules(at.1)?, progress.source))
            })
            .collect()
    }

    /// Replays a logged change (read with `replay`'s names for its log file), then forgets what it
    /// made unreachable, as `delta` does. Numbers the file never named are skipped: a log only
    /// uses numbers it named before.
    pub fn apply(&mut self, delta: Delta, replay: &mut Replay, windows: Windows) {
        replay.series_keys.extend(delta.series_keys);
        replay
            .targets
            .extend(delta.targets.into_iter().map(|(id, t)| (id, Arc::new(t))));
        for (id, t, v) in delta.series {
            if let Some(key) = replay.series_keys.get(&id) {
                self.set_series(key, (t, v));
            }
        }
        for (id, start_ms, joules) in delta.windows {
            if let Some(target) = replay.targets.get(&id) {
                self.set_window(&target.clone(), start_ms, joules);
            }
        }
        self.settle(delta.newest_ms, windows);
    }

    /// Takes the newest sample time a replayed change saw, then prunes as after a request.
    pub fn settle(&mut self, newest_ms: i64, windows: Windows) {
        self.newest_ms = self.newest_ms.max(newest_ms);
        self.prune(windows);
    }

    /// Adds `joules` over (from_ms, to_ms] to the windows it overlaps, pro rata by time.
    fn spread(
        &mut self,
        target: u32,
        (from_ms, to_ms): (i64, i64),
        joules: f64,
        windows: Windows,
        touched: &mut Vec<WindowAt>,
    ) {
        let Some(progress) = self.targets.value_mut(target) else {
            return;
        };
        let span = (to_ms - from_ms) as f64;
        let mut start = from_ms.div_euclid(windows.window_ms) * windows.window_ms;
        while start < to_ms {
            let end = start + windows.window_ms;
            let overlap = (end.min(to_ms) - start.max(from_ms)) as f64;
            if progress.windows.add(start, joules * overlap / span) {
                touched.push((target, start));
            }
            start = end;
        }
    }

    /// Takes a series' samples (`id` is its number, if it has state); returns its number once it
    /// has state.
    fn take(
        &mut self,
        (route, mut id): (&Route<'_>, Option<u32>),
        samples: &[Sample],
        windows: Windows,
        counts: &mut Counts,
        touched: &mut Vec<WindowAt>,
    ) -> Option<u32> {
        let Route {
            key,
            target,
            unit,
            until_ms,
            delta,
        } = *route;
        let mut reached = None;
        for sample in samples {
            let (t, v) = (sample.timestamp_ms, sample.value);
            if v.to_bits() == STALE_MARKER_BITS {
                counts.ignore("stale_marker", 1);
                continue;
            }
            if !v.is_finite() {
                counts.ignore("not_finite", 1);
                continue;
            }
            if !unit.is_counter() && v < 0.0 {
                counts.ignore("negative_power", 1);
                continue;
            }
            if until_ms.is_some_and(|until| t >= until) {
                counts.ignore("retired", 1);
                continue;
            }
            let previous = id.and_then(|id| Some(self.series.value(id)?.last));
            match previous {
                Some((last_t, _)) if t == last_t => {
                    counts.ignore("duplicate", 1);
                    continue;
                }
                Some((last_t, _)) if t < last_t => {
                    counts.ignore("out_of_order", 1);
                    continue;
                }
                _ => {}
            }
            counts.samples_accepted += 1;
            let live = match id.and_then(|live| Some((live, self.series.value_mut(live)?))) {
                Some((live, tracked)) => {
                    tracked.last = (t, v);
                    live
                }
                None => {
                    let tracked = Tracked {
                        last: (t, v),
                        routed: None,
                    };
                    *id.insert(self.series.insert(key.to_owned(), tracked))
                }
            };
            self.dirty.insert(live);
            self.newest_ms = self.newest_ms.max(t);
            reached = reached.max(Some(t));
            if delta && unit.is_counter() {
                // The point is its own increase, over its own interval (or since the last one).
                let from = sample
                    .start_ms
                    .or(previous.map(|(last_t, _)| last_t))
                    .filter(|&from| from < t);
                match from {
                    Some(from) if t - from > windows.max_gap_ms => counts.gaps += 1,
                    Some(from) => {
                        self.spread(target, (from, t), v * unit.scale(), windows, touched)
                    }
                    None => counts.ignore("delta_without_interval", 1),
                }
                continue;
            }
            let Some((last_t, last_v)) = previous else {
                continue; // the first sample of a series only sets its state
            };
            if t - last_t > windows.max_gap_ms {
                counts.gaps += 1;
                continue;
            }
            let joules = if unit.is_counter() {
                let increase = v - last_v;
                if increase < 0.0 {
                    counts.resets += 1;
                    v * unit.scale()
                } else {
                    increase * unit.scale()
                }
            } else {
                v * unit.scale() * (t - last_t) as f64 / 1000.0
            };
            self.spread(target, (last_t, t), joules, windows, touched);
        }
        if let Some(reached) = reached {
            if let Some(progress) = self.targets.value_mut(target) {
                progress.newest_ms = progress.newest_ms.max(reached);
            }
            self.advanced.insert(target);
        }
        id
    }

    /// Forgets series silent for longer than a gap (their next sample starts afresh), windows no
    /// live series can reach any more, and targets without windows.
    /// A pass over every series and window: done once the newest sample has moved on by a window
    /// (keeping state a little longer changes no figure), not on every request.
    fn prune(&mut self, windows: Windows) {
        if self.newest_ms < self.pruned_at_ms + windows.window_ms {
            return;
        }
        self.pruned_at_ms = self.newest_ms;
        let series_horizon = self.newest_ms - windows.max_gap_ms;
        self.series
            .retain(|_, tracked| tracked.last.0 >= series_horizon);
        let window_horizon = series_horizon - windows.window_ms;
        // A target whose windows are all gone goes with them.
        self.targets.retain(|_, progress| {
            let reachable = |start| start + windows.window_ms > window_horizon;
            progress.windows.prune(reachable)
        });
    }

    /// Takes a request's series in; returns each window it changed with its whole sum, in joules,
    /// in window order (targets by number): what the log must hold. Which readings to write then
    /// is `due`'s answer. A series is resolved by `resolve` unless the state kept its resolution
    /// under `reuse`, the registry version whose resolutions the request may reuse.
    pub fn convert(
        &mut self,
        series: &[Series],
        reuse: Option<u64>,
        mut resolve: impl FnMut(&Series) -> Resolution,
        windows: Windows,
        counts: &mut Counts,
    ) -> Vec<(WindowAt, f64)> {
        let mut touched = Vec::new();
        for one in series {
            let key = one.labels.key();
            let id = self.series.id(key);
            let kept = id
                .zip(reuse)
                .and_then(|(id, version)| self.routed(id, version));
            let (target, unit, until_ms) = match kept {
                Some(kept) => kept,
                None => match resolve(one) {
                    Resolution::Mapped {
                        target,
                        unit,
                        until_ms,
                    } => (self.target_id(&target), unit, until_ms),
                    Resolution::Unmapped => {
                        counts.samples_unmapped += one.samples.len() as u64;
                        continue;
                    }
                    Resolution::Refused(reason) => {
                        counts.ignore(reason, one.samples.len() as u64);
                        continue;
                    }
                },
            };
            // Senders send a series' samples in time order: sort only when they are not.
            let sorted;
            let samples = if one.samples.is_sorted_by_key(|s| s.timestamp_ms) {
                &one.samples
            } else {
                let mut copy = one.samples.clone();
                copy.sort_by_key(|s| s.timestamp_ms);
                sorted = copy;
                &sorted
            };
            let route = Route {
                key,
                target,
                unit,
                until_ms,
                delta: one.delta,
            };
            let id = self.take((&route, id), samples, windows, counts, &mut touched);
            if let (None, Some(version), Some(id)) = (kept, reuse, id) {
                self.keep_route(id, version, &route);
            }
        }
        touched.sort_unstable();
        let changed: Vec<(WindowAt, f64)> = touched
            .into_iter()
            .filter_map(|at| Some((at, self.targets.value_mut(at.0)?.windows.untouch(at.1)?)))
            .collect();
        self.fresh.extend(changed.iter().map(|&(at, _)| at));
        changed
    }

    /// The series' kept resolution under `version`: (target number, unit, retirement), while the
    /// state still holds that target.
    fn routed(&self, id: u32, version: u64) -> Option<(u32, Unit, Option<i64>)> {
        let routed = self.series.value(id)?.routed.as_ref()?;
        let held = self.targets.key(routed.target_id)?;
        (routed.version == version && Arc::ptr_eq(held, &routed.target)).then_some((
            routed.target_id,
            routed.unit,
            routed.until_ms,
        ))
    }

    fn keep_route(&mut self, id: u32, version: u64, route: &Route<'_>) {
        let Some(target) = self.targets.key(route.target).cloned() else {
            return;
        };
        if let Some(tracked) = self.series.value_mut(id) {
            tracked.routed = Some(Routed {
                version,
                target,
                target_id: route.target,
                unit: route.unit,
                until_ms: route.until_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Labels;
    use proptest::prelude::*;

    const W: Windows = Windows {
        window_ms: 60_000,
        max_gap_ms: 600_000,
    };
    /// The registry version whose resolutions the state may keep and reuse.
    const KEPT: Option<u64> = Some(1);

    fn target(workload: &str) -> Target {
        Target {
            site: "fra1".into(),
            customer: "acme".into(),
            workload: workload.into(),
            functional_unit: None,
            meter_kind: None,
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: samples
                .iter()
                .map(|&(timestamp_ms, value)| Sample {
                    timestamp_ms,
                    value,
                    start_ms: None,
                })
                .collect(),
            delta: false,
        }
    }

    fn by_workload(unit: Unit) -> impl Fn(&Series) -> Resolution {
        move |s: &Series| match s.label("container_name") {
            Some(workload) => Resolution::Mapped {
                target: Arc::new(target(workload)),
                unit,
                until_ms: None,
            },
            None => Resolution::Unmapped,
        }
    }

    fn resolved(state: &State, changed: Vec<(WindowAt, f64)>) -> BTreeMap<WindowKey, f64> {
        changed
            .into_iter()
            .map(|((target, start_ms), j)| {
                let target = Target::clone(state.target(target).unwrap());
                (WindowKey { target, start_ms }, j)
            })
            .collect()
    }

    fn sums(state: &State, changed: &[(WindowAt, f64)]) -> Vec<(String, i64, f64)> {
        changed
            .iter()
            .map(|&((target, start_ms), j)| {
                (
                    state.target(target).unwrap().workload.clone(),
                    start_ms,
                    (j * 1e6).round() / 1e6,
                )
            })
            .collect()
    }

    #[test]
    fn a_counters_increase_is_spread_over_the_windows_it_spans() {
        let mut state = State::default();
        let mut counts = Counts::default();
        // 30 s -> 90 s, 1,200 J: half of the interval, so half of the energy, in each window.
        let changed = state.convert(
            &[series(
                &[("container_name", "api")],
                &[(30_000, 100.0), (90_000, 1_300.0)],
            )],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        assert_eq!(
            sums(&state, &changed),
            [("api".into(), 0, 600.0), ("api".into(), 60_000, 600.0)]
        );
        assert_eq!(counts.samples_accepted, 2);
    }

    fn counter(workload: &str, samples: &[(i64, f64)]) -> Series {
        series(&[("container_name", workload)], samples)
    }

    /// `due` after a `convert`, as (workload, window start, joules).
    fn due_now(
        state: &mut State,
        writing: Writing,
        now_ms: i64,
        sent: &[Series],
    ) -> Vec<(String, i64, f64)> {
        let mut counts = Counts::default();
        state.convert(sent, KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
        let due = state.due(writing, now_ms, 0, W);
        named(state, &due)
    }

    fn named(state: &State, due: &[Due]) -> Vec<(String, i64, f64)> {
        let windows: Vec<(WindowAt, f64)> = due.iter().map(|&(at, j, _)| (at, j)).collect();
        sums(state, &windows)
    }

    #[test]
    fn a_window_is_due_once_its_targets_data_passes_its_end_or_after_a_quiet_spell() {
        const LATER: Writing = Writing::Passed { after_ms: 60_000 };
        let mut state = State::default();
        // 150 J every 15 s: the first window is still open at 45 s.
        let first = counter(
            "api",
            &[(0, 0.0), (15_000, 150.0), (30_000, 300.0), (45_000, 450.0)],
        );
        assert_eq!(due_now(&mut state, LATER, 1_000, &[first]), []);
        // 45 s -> 75 s adds 300 J, half to each window: the first is complete (600 J), the second
        // (150 J so far) waits.
        let second = counter("api", &[(75_000, 750.0)]);
        assert_eq!(
            due_now(&mut state, LATER, 2_000, &[second]),
            [("api".into(), 0, 600.0)]
        );
        // It waits until a minute after it changed, then is due with what it holds.
        assert_eq!(named(&state, &state.clone().idle(61_999, 60_000)), []);
        let quiet = state.idle(62_000, 60_000);
        assert_eq!(named(&state, &quiet), [("api".into(), 60_000, 150.0)]);
        assert_eq!(state.idle(200_000, 60_000), [], "written once");
        // A late sample of another series of the target changes a written window: due again,
        // with the whole sum (its reading replaces the first).
        let mut at_once = State::default();
        let both = [
            counter("api", &[(0, 0.0), (30_000, 300.0)]),
            counter("web", &[(0, 0.0), (30_000, 60.0)]),
        ];
        assert_eq!(
            due_now(&mut at_once, Writing::AtOnce, 0, &both),
            [("api".into(), 0, 300.0), ("web".into(), 0, 60.0)],
            "at once: every window changed"
        );
    }

    #[test]
    fn replayed_windows_are_written_again_at_the_first_chance_and_outlive_pruning() {
        let mut state = State::default();
        let api = Arc::new(target("api"));
        state.set_window(&api, 0, 42.0);
        // Another target's data moves on by far more than a gap: the replayed window is kept
        // until it is written.
        let later = counter("web", &[(3_600_000, 0.0), (3_630_000, 10.0)]);
        let mut counts = Counts::default();
        state.convert(
            &[later],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        state.delta(&[], W);
        let due = state.idle(0, 60_000);
        assert_eq!(named(&state, &due), [("api".into(), 0, 42.0)]);
        state.due(Writing::AtOnce, 0, 0, W);
        state.delta(&[], W);
        state.settle(3_700_000, W);
        assert_eq!(
            state.snapshot().windows.len(),
            1,
            "written, then pruned: {:?}",
            state.snapshot().windows
        );
    }

    #[test]
    fn a_kept_resolution_is_reused_under_its_version_and_never_outlives_its_target() {
        let mut state = State::default();
        let mut counts = Counts::default();
        let resolved = std::cell::Cell::new(0);
        let resolve = |s: &Series| {
            resolved.set(resolved.get() + 1);
            by_workload(Unit::JoulesTotal)(s)
        };
        let api = |samples: &[(i64, f64)]| counter("api", samples);
        state.convert(&[api(&[(0, 0.0)])], Some(1), resolve, W, &mut counts);
        state.convert(&[api(&[(30_000, 30.0)])], Some(1), resolve, W, &mut counts);
        assert_eq!(resolved.get(), 1, "kept under version 1");
        state.convert(&[api(&[(45_000, 45.0)])], Some(2), resolve, W, &mut counts);
        state.convert(&[api(&[(50_000, 50.0)])], None, resolve, W, &mut counts);
        assert_eq!(
            resolved.get(),
            3,
            "a new version, then a key that may not reuse"
        );
        // `api` took only a first sample: its target has no window and goes at the next prune,
        // and `web`, new, takes the freed number. `api`'s next sample still counts for `api`.
        let mut pruned = State::default();
        pruned.convert(&[api(&[(0, 0.0)])], Some(1), resolve, W, &mut counts);
        let db = counter("db", &[(60_000, 0.0), (75_000, 15.0)]);
        pruned.convert(&[db], Some(1), resolve, W, &mut counts);
        pruned.delta(&[], W);
        let web = counter("web", &[(60_000, 0.0), (75_000, 15.0)]);
        pruned.convert(&[web], Some(1), resolve, W, &mut counts);
        assert_eq!(
            pruned.target(0).unwrap().workload,
            "web",
            "took api's number"
        );
        let changed = pruned.convert(&[api(&[(90_000, 90.0)])], Some(1), resolve, W, &mut counts);
        // 0 -> 90 s, 90 J: 60 J in the first window, 30 J in the second.
        assert_eq!(
            sums(&pruned, &changed),
            [("api".into(), 0, 60.0), ("api".into(), 60_000, 30.0)]
        );
    }

    #[test]
    fn a_reset_counts_the_new_value_and_a_gap_is_not_bridged() {
        let mut state = State::default();
        let mut counts = Counts::default();
        let samples = [
            (0, 500.0),
            (60_000, 800.0),
            (120_000, 50.0),
            (900_000, 70.0),
            (960_000, 100.0),
        ];
        let changed = state.convert(
            &[series(&[("container_name", "api")], &samples)],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        // 300 J in [0,60); after the reset 50 J in [60,120); 120 s -> 900 s is a gap; then 30 J.
        assert_eq!(
            sums(&state, &changed),
            [
                ("api".into(), 0, 300.0),
                ("api".into(), 60_000, 50.0),
                ("api".into(), 900_000, 30.0)
            ]
        );
        assert_eq!((counts.resets, counts.gaps), (1, 1));
    }

    #[test]
    fn gauges_are_average_power_since_the_previous_sample_in_their_unit() {
        let mut state = State::default();
        let mut counts = Counts::default();
        // 2,000,000 µW = 2 W for 30 s = 60 J.
        let changed = state.convert(
            &[series(
                &[("container_name", "api")],
                &[(0, 5.0), (30_000, 2_000_000.0)],
            )],
            KEPT,
            by_workload(Unit::Microwatts),
            W,
            &mut counts,
        );
        assert_eq!(sums(&state, &changed), [("api".into(), 0, 60.0)]);
    }

    #[test]
    fn two_rapl_zones_of_one_workload_are_summed_and_a_resent_batch_adds_nothing() {
        let mut state = State::default();
        let mut counts = Counts::default();
        let batch = [
            series(
                &[("container_name", "api"), ("zone", "package")],
                &[(0, 0.0), (60_000, 100.0)],
            ),
            series(
                &[("container_name", "api"), ("zone", "dram")],
                &[(0, 0.0), (60_000, 20.0)],
            ),
            series(&[("job", "other")], &[(0, 1.0)]),
        ];
        let changed = state.convert(&batch, KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
        assert_eq!(sums(&state, &changed), [("api".into(), 0, 120.0)]);
        assert_eq!(counts.samples_unmapped, 1);
        let again = state.convert(&batch, KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
        assert!(again.is_empty());
        // The newest sample of each series is a duplicate; the ones before it are older than
        // the series' state (a retry cannot be told from a late sample): out of order.
        assert_eq!(counts.samples_ignored["duplicate"], 2);
        assert_eq!(counts.samples_ignored["out_of_order"], 2);
    }

    #[test]
    fn stale_markers_nan_and_out_of_order_samples_are_ignored_and_counted() {
        let mut state = State::default();
        let mut counts = Counts::default();
        let stale = f64::from_bits(STALE_MARKER_BITS);
        let mut s = series(
            &[("container_name", "api")],
            &[(0, 0.0), (60_000, 60.0), (30_000, 1.0)],
        );
        s.samples.push(Sample {
            timestamp_ms: 70_000,
            value: stale,
            start_ms: None,
        });
        s.samples.push(Sample {
            timestamp_ms: 80_000,
            value: f64::NAN,
            start_ms: None,
        });
        let changed = state.convert(&[s], KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
        // Sorted by time, 30 s comes between: 0 -> 30 s adds 1 J, 60 s then adds 59 J.
        assert_eq!(sums(&state, &changed), [("api".into(), 0, 60.0)]);
        assert_eq!(counts.samples_ignored["stale_marker"], 1);
        assert_eq!(counts.samples_ignored["not_finite"], 1);
        let late = series(&[("container_name", "api")], &[(45_000, 50.0)]);
        state.convert(
            &[late],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        assert_eq!(counts.samples_ignored["out_of_order"], 1);
    }

    #[test]
    fn delta_points_are_their_own_increase_over_their_own_interval() {
        let mut state = State::default();
        let mut counts = Counts::default();
        let mut s = series(
            &[("container_name", "api")],
            &[(60_000, 120.0), (90_000, 30.0)],
        );
        s.delta = true;
        s.samples[0].start_ms = Some(0);
        // 0 -> 60 s: 120 J in [0, 60); then 60 -> 90 s (no start: since the previous point): 30 J.
        let changed = state.convert(
            &[s.clone()],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        assert_eq!(
            sums(&state, &changed),
            [("api".into(), 0, 120.0), ("api".into(), 60_000, 30.0)]
        );
        assert!(
            state
                .convert(&[s], KEPT, by_workload(Unit::JoulesTotal), W, &mut counts)
                .is_empty(),
            "a resent export adds nothing"
        );
    }

    #[test]
    fn state_survives_a_round_trip_through_its_snapshot() {
        let mut state = State::default();
        let mut counts = Counts::default();
        state.convert(
            &[series(
                &[("container_name", "api")],
                &[(0, 0.0), (30_000, 30.0)],
            )],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        let mut restored = State::default();
        restored.apply(state.snapshot(), &mut Replay::default(), W);
        let changed = restored.convert(
            &[series(&[("container_name", "api")], &[(60_000, 60.0)])],
            KEPT,
            by_workload(Unit::JoulesTotal),
            W,
            &mut counts,
        );
        // The window's whole sum, not only the new part: the reading replaces the earlier one.
        assert_eq!(sums(&restored, &changed), [("api".into(), 0, 60.0)]);
    }

    proptest! {
        /// However a counter's samples are split into batches, repeated or resent, the windows end
        /// with the same joules, and their sum is the counter's increase (energy conserved).
        #[test]
        fn batching_and_retries_never_change_the_energy(
            steps in proptest::collection::vec((1i64..90_000, 0.0f64..500.0), 2..40),
            cuts in proptest::collection::vec(any::<bool>(), 40),
            resend in any::<bool>(),
        ) {
            let mut t = 0;
            let mut value = 0.0;
            let mut samples = vec![(0i64, 0.0f64)];
            for (dt, dv) in &steps {
                t += dt;
                value += dv;
                samples.push((t, value));
            }
            let whole = {
                let mut state = State::default();
                let mut counts = Counts::default();
                let changed = state.convert(&[series(&[("container_name", "a")], &samples)], KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
                resolved(&state, changed)
            };
            let mut state = State::default();
            let mut counts = Counts::default();
            let mut windows = BTreeMap::new();
            let mut batch = Vec::new();
            for (i, sample) in samples.iter().enumerate() {
                batch.push(*sample);
                if cuts[i % cuts.len()] || i == samples.len() - 1 {
                    for _ in 0..(1 + usize::from(resend)) {
                        let changed = state.convert(&[series(&[("container_name", "a")], &batch)], KEPT, by_workload(Unit::JoulesTotal), W, &mut counts);
                        windows.extend(resolved(&state, changed));
                    }
                    batch.clear();
                }
            }
            prop_assert_eq!(windows.len(), whole.len());
            for (key, joules) in &whole {
                prop_assert!((windows[key] - joules).abs() < 1e-6);
            }
            let gapless: f64 = samples.windows(2)
                .filter(|w| w[1].0 - w[0].0 <= W.max_gap_ms)
                .map(|w| w[1].1 - w[0].1)
                .sum();
            let total: f64 = windows.values().sum();
            prop_assert!((total - gapless).abs() < 1e-6 * gapless.max(1.0));
        }
    }
}
