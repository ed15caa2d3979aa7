//! The one owner of the background tasks. They stop in a fixed order at shutdown: first what
//! brings data in (feeds, scrapers, BMC pollers), so nothing is written after the last flush; then
//! what follows the shared store (registry polls, cache warm-up); the flushers last.
use tokio::task::JoinHandle;

/// Where a task stands in the stop order (earlier stops first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Sources,
    Followers,
    Storage,
}

#[derive(Default)]
pub struct Supervisor {
    tasks: Vec<(Stage, JoinHandle<()>)>,
}

impl Supervisor {
    pub fn add(&mut self, stage: Stage, task: JoinHandle<()>) {
        self.tasks.push((stage, task));
    }

    pub fn add_all(&mut self, stage: Stage, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.tasks
            .extend(tasks.into_iter().map(|task| (stage, task)));
    }

    /// Stops every task, stage by stage, each stage's tasks waited for before the next stops. A
    /// task stopped halfway leaves its work undone, never half-written: flushes commit or not,
    /// and what they did not commit is in the log.
    pub async fn stop(mut self) {
        for stage in [Stage::Sources, Stage::Followers, Stage::Storage] {
            let in_stage = self.tasks.iter_mut().filter(|(s, _)| *s == stage);
            let tasks: Vec<&mut JoinHandle<()>> = in_stage.map(|(_, task)| task).collect();
            for task in &tasks {
                task.abort();
            }
            for task in tasks {
                let _ = task.await; // cancelled, or finished on its own
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_stop_stage_by_stage_sources_first() {
        let stopped = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut supervisor = Supervisor::default();
        for (stage, name) in [
            (Stage::Storage, "flusher"),
            (Stage::Sources, "feed"),
            (Stage::Followers, "registry"),
        ] {
            let (stopped, running) = (stopped.clone(), running.clone());
            // Records its name when dropped, which is what aborting does to a task's future.
            struct OnDrop(Arc<Mutex<Vec<&'static str>>>, &'static str);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.0.lock().unwrap().push(self.1);
                }
            }
            supervisor.add(
                stage,
                tokio::spawn(async move {
                    let _guard = OnDrop(stopped, name);
                    running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }),
            );
        }
        while running.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        supervisor.stop().await;
        assert_eq!(*stopped.lock().unwrap(), ["feed", "registry", "flusher"]);
    }
}
