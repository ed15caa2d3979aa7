//! Requests convert their series one at a time, then take turns in the order they converted: to
//! put their readings in the tables' logs (so a window two requests rewrote keeps the later sum),
//! and, once those are durable, to write their state change to the series log. A change rests on
//! the ones converted before it, so when one fails to reach the log every later one must fail too
//! (the senders retry them), and the state is reloaded from disk before the next conversion.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Turns {
    /// The last ticket whose turn is over.
    done: watch::Sender<u64>,
    /// A change converted in memory did not reach the log.
    broken: AtomicBool,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            done: watch::Sender::new(0),
            broken: AtomicBool::new(false),
        }
    }
}

impl Turns {
    /// Whether the state in memory is ahead of the disk and must be reloaded.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Waits until every ticket through `last` has had its turn.
    pub async fn settled(&self, last: u64) {
        let mut done = self.done.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = done.wait_for(|&d| d >= last).await;
    }

    /// A change whose turn is over did not reach the disk after all (its sync failed).
    pub fn break_state(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    /// The state was reloaded from disk: conversions may go on.
    pub fn mended(&self) {
        self.broken.store(false, Ordering::SeqCst);
    }

    fn end(&self, n: u64, ok: bool) {
        if !ok {
            self.broken.store(true, Ordering::SeqCst);
        }
        self.done.send_replace(n);
    }
}

/// A converted request's place in the log's order. Dropped before `finish` (a failure, or the
/// request abandoned), it breaks the state once its turn comes: its change may be lost.
pub struct Ticket {
    turns: Arc<Turns>,
    n: u64,
    ended: bool,
}

impl Ticket {
    /// The ticket after `last`; take it while holding the state the change was converted from.
    pub fn after(turns: &Arc<Turns>, last: u64) -> Self {
        Self {
            turns: turns.clone(),
            n: last + 1,
            ended: false,
        }
    }

    pub fn number(&self) -> u64 {
        self.n
    }

    /// Waits for this ticket's turn; `false` if an earlier change was lost (this one rests on it).
    pub async fn turn(&self) -> bool {
        self.turns.settled(self.n - 1).await;
        !self.turns.broken()
    }

    /// Ends the turn: the change is on disk (`true`), or it is not and the state is broken.
    pub fn finish(mut self, durable: bool) {
        self.ended = true;
        self.turns.end(self.n, durable);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (turns, n) = (self.turns.clone(), self.n);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    turns.settled(n - 1).await;
                    turns.end(n, false);
                });
            }
            // Outside a runtime nothing can wait: break the state now (it reloads once the turns
            // before settle).
            Err(_) => turns.end(n, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_come_in_ticket_order_and_a_lost_change_fails_the_later_ones() {
        let turns = Arc::new(Turns::default());
        let (first, second, third) = (
            Ticket::after(&turns, 0),
            Ticket::after(&turns, 1),
            Ticket::after(&turns, 2),
        );
        let waiting = tokio::spawn(async move {
            let ok = second.turn().await;
            second.finish(ok);
            ok
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        assert!(first.turn().await);
        drop(first); // abandoned before it finished: its change may be lost
        assert!(!waiting.await.unwrap(), "the second rests on the first");
        assert!(!third.turn().await);
        third.finish(false);
        turns.settled(3).await;
        assert!(turns.broken());
        turns.mended();
        let fourth = Ticket::after(&turns, 3);
        assert!(fourth.turn().await);
        fourth.finish(true);
        assert!(!turns.broken());
    }
}
