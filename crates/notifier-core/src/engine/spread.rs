//! Spreading the fetches of a popular slot's new version over time.
//!
//! When thousands of clients watch one slot (a grid's news directory, a folder shared with
//! everyone), each learns of a change within milliseconds of the others and would fetch the
//! new listing through its gateway at once: the storage nodes would see thousands of reads in
//! one second. Updates servers say how many connections hold a popular slot (the protocol's
//! `subscribers` extension, at least 64, rounded down to a power of two); the engine then
//! waits a random time before fetching, chosen so that the grid sees about
//! [`SpreadPolicy::fetches_per_second`] fetches of that slot per second. A slot watched by a
//! few gets no hint and no wait. When the wait is long the user is told at once that something
//! changed, and what changed when the listing has been fetched.

use std::time::Duration;

use rand::Rng;

/// How the fetches of a popular slot are spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpreadPolicy {
    /// Fetches of one slot per second the grid should see from all its subscribers together.
    /// 25 by default: below what one Tahoe gateway served on the 2-core test machine (the
    /// `herd` benchmark: ~65 listings per second before its answers slowed), since many
    /// users of a grid share the gateway its operator names.
    pub fetches_per_second: f64,
    /// The longest any fetch waits (a news item still arrives within this).
    pub max_wait: Duration,
    /// A change whose details wait at least this long is announced at once, details to follow.
    pub early_notice_after: Duration,
}

impl Default for SpreadPolicy {
    fn default() -> Self {
        SpreadPolicy {
            fetches_per_second: 25.0,
            max_wait: Duration::from_secs(30),
            early_notice_after: Duration::from_secs(2),
        }
    }
}

impl SpreadPolicy {
    /// No waiting at all, whatever the servers say (the benchmark's "without spreading").
    pub fn off() -> SpreadPolicy {
        SpreadPolicy {
            max_wait: Duration::ZERO,
            ..SpreadPolicy::default()
        }
    }

    /// The window a slot's fetches are spread over, from the server's `subscribers` hint.
    /// The hint is rounded down to a power of two, so the audience is between it and twice
    /// it: the window is sized for the middle, 1.5 times the hint.
    pub fn window(&self, subscribers: Option<u64>) -> Duration {
        let Some(subscribers) = subscribers.filter(|n| *n > 0) else {
            return Duration::ZERO;
        };
        if self.fetches_per_second <= 0.0 {
            return self.max_wait;
        }
        let seconds = 1.5 * subscribers as f64 / self.fetches_per_second;
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.max_wait)
            .min(self.max_wait)
    }

    /// This client's wait before fetching: uniform over the window.
    pub fn wait(&self, subscribers: Option<u64>, rng: &mut impl Rng) -> Duration {
        let window = self.window(subscribers);
        if window.is_zero() {
            return Duration::ZERO;
        }
        window.mul_f64(rng.gen::<f64>())
    }

    /// Whether a change waiting `wait` for its details is announced at once.
    pub fn announces_early(&self, wait: Duration) -> bool {
        wait >= self.early_notice_after && !wait.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn slots_without_a_hint_are_fetched_at_once() {
        let policy = SpreadPolicy::default();
        assert_eq!(policy.window(None), Duration::ZERO);
        assert_eq!(policy.window(Some(0)), Duration::ZERO);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(policy.wait(None, &mut rng), Duration::ZERO);
    }

    #[test]
    fn the_window_grows_with_the_audience_up_to_the_cap() {
        let policy = SpreadPolicy::default();
        // 64 to 127 connections: about 96 fetches at 25 per second.
        assert_eq!(policy.window(Some(64)), Duration::from_millis(3840));
        assert_eq!(policy.window(Some(256)), Duration::from_secs_f64(15.36));
        assert_eq!(policy.window(Some(512)), Duration::from_secs(30));
        assert_eq!(policy.window(Some(u64::MAX)), Duration::from_secs(30));
        assert_eq!(SpreadPolicy::off().window(Some(8192)), Duration::ZERO);
    }

    #[test]
    fn waits_cover_the_window_evenly() {
        let policy = SpreadPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..10_000)
            .map(|_| policy.wait(Some(512), &mut rng))
            .collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(30)));
        // Each 3 s tenth of the window gets about a tenth of the fetches.
        for tenth in 0..10u32 {
            let from = Duration::from_secs(3) * tenth;
            let to = from + Duration::from_secs(3);
            let count = waits.iter().filter(|w| **w >= from && **w < to).count();
            assert!((800..1200).contains(&count), "tenth {tenth}: {count}");
        }
    }

    #[test]
    fn only_long_waits_are_announced_early() {
        let policy = SpreadPolicy::default();
        assert!(!policy.announces_early(Duration::ZERO));
        assert!(!policy.announces_early(Duration::from_millis(1999)));
        assert!(policy.announces_early(Duration::from_secs(2)));
    }
}
