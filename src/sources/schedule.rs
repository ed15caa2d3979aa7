//! When a failing source is tried again, for every puller (intensity feeds, scrape targets,
//! BMCs): 1 s, 2 s, 4 s, ... up to its interval, times a jitter of 0.5-1.5 so sources do not retry
//! in step; a provider's Retry-After is a floor.
use std::time::Duration;

pub fn backoff(failures: u32, interval: Duration, retry_after: Option<Duration>) -> Duration {
    let exponential = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16)).min(interval);
    let jittered = exponential.mul_f64(0.5 + rand::random::<f64>());
    match retry_after {
        Some(floor) => jittered.max(floor),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_interval_and_honours_retry_after() {
        let interval = Duration::from_secs(60);
        let first = backoff(1, interval, None);
        assert!(first >= Duration::from_millis(500) && first < Duration::from_millis(1500));
        let late = backoff(12, interval, None);
        assert!(late >= Duration::from_secs(30) && late < Duration::from_secs(90));
        assert!(backoff(1, interval, Some(Duration::from_secs(45))) >= Duration::from_secs(45));
    }
}
