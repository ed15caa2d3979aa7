//! A target's open windows: the joules each aligned window holds so far, and which still wait for
//! their reading. A target has a handful (those a gap can still reach), kept in start order beside
//! the target, so adding a sample's energy is a short scan where one map over every target's
//! windows cost two hash probes and a cache miss per window.

#[derive(Debug, Clone)]
struct Open {
    start_ms: i64,
    joules: f64,
    /// When it first changed since its reading was last written (the writer's clock; `i64::MIN`
    /// for windows replayed after a restart, written at the first chance); `None` once written.
    unwritten_since: Option<i64>,
    /// Changed by the conversion under way and not yet reported (see `State::convert`).
    touched: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct OpenWindows(Vec<Open>);

impl OpenWindows {
    /// The window starting at `start_ms`, opened empty if it is new.
    fn at(&mut self, start_ms: i64) -> &mut Open {
        // Samples come in time order: the window is almost always the last or a new one after it.
        let after = self
            .0
            .iter()
            .rposition(|w| w.start_ms <= start_ms)
            .map_or(0, |i| i + 1);
        if after == 0 || self.0[after - 1].start_ms != start_ms {
            let open = Open {
                start_ms,
                joules: 0.0,
                unwritten_since: None,
                touched: false,
            };
            self.0.insert(after, open);
            return &mut self.0[after];
        }
        &mut self.0[after - 1]
    }

    fn get(&self, start_ms: i64) -> Option<&Open> {
        self.0.iter().find(|w| w.start_ms == start_ms)
    }

    fn get_mut(&mut self, start_ms: i64) -> Option<&mut Open> {
        self.0.iter_mut().find(|w| w.start_ms == start_ms)
    }

    /// Adds `joules` to a window; true when that is its first change since `untouch`.
    pub(super) fn add(&mut self, start_ms: i64, joules: f64) -> bool {
        let open = self.at(start_ms);
        open.joules += joules;
        !std::mem::replace(&mut open.touched, true)
    }

    /// A touched window's sum, now reported.
    pub(super) fn untouch(&mut self, start_ms: i64) -> Option<f64> {
        let open = self.get_mut(start_ms)?;
        open.touched = false;
        Some(open.joules)
    }

    pub(super) fn joules(&self, start_ms: i64) -> Option<f64> {
        self.get(start_ms).map(|w| w.joules)
    }

    /// Sets a window's sum as replayed from the log: it is written again at the first chance.
    pub(super) fn replayed(&mut self, start_ms: i64, joules: f64) {
        let open = self.at(start_ms);
        open.joules = joules;
        open.unwritten_since = Some(i64::MIN);
    }

    /// Notes that a window changed at `now_ms`, unless it already waited since earlier.
    pub(super) fn changed(&mut self, start_ms: i64, now_ms: i64) {
        if let Some(open) = self.get_mut(start_ms) {
            open.unwritten_since.get_or_insert(now_ms);
        }
    }

    /// Marks written the waiting windows `due` accepts, given (start, waiting since).
    pub(super) fn written_if(&mut self, mut due: impl FnMut(i64, i64) -> bool) {
        for open in &mut self.0 {
            if let Some(since) = open.unwritten_since {
                if due(open.start_ms, since) {
                    open.unwritten_since = None;
                }
            }
        }
    }

    /// Forgets written windows that `reachable` rejects; false when none is left.
    pub(super) fn prune(&mut self, reachable: impl Fn(i64) -> bool) -> bool {
        self.0
            .retain(|w| w.unwritten_since.is_some() || reachable(w.start_ms));
        !self.0.is_empty()
    }

    /// (start, joules) of every window, in start order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.0.iter().map(|w| (w.start_ms, w.joules))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stay_in_start_order_and_report_each_change_once() {
        let mut windows = OpenWindows::default();
        assert!(windows.add(120, 1.0));
        assert!(windows.add(0, 2.0), "an earlier window goes before");
        assert!(!windows.add(120, 3.0), "already touched");
        assert!(windows.add(60, 4.0));
        assert_eq!(
            windows.iter().collect::<Vec<_>>(),
            [(0, 2.0), (60, 4.0), (120, 4.0)]
        );
        assert_eq!(windows.untouch(120), Some(4.0));
        assert!(windows.add(120, 1.0), "reported, so a new change");
        windows.replayed(60, 9.0);
        windows.changed(0, 7);
        windows.changed(0, 8);
        let mut waiting = Vec::new();
        windows.written_if(|start, since| {
            waiting.push((start, since));
            start == 0
        });
        assert_eq!(waiting, [(0, 7), (60, i64::MIN)]);
        assert!(windows.prune(|start| start >= 120), "60 still waits");
        assert_eq!(windows.iter().collect::<Vec<_>>(), [(60, 9.0), (120, 5.0)]);
    }
}
