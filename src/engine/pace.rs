//! Pacing: when a bake polls, and how late its polls are.
//!
//! Polls fall on ticks aligned on the wall clock: multiples of the poll interval since the Unix
//! epoch (every 15 s: at :00, :15, :30, :45). So the cutovers of one daemon with the same
//! interval poll at the same instants, and the shared readers put their reads into the same
//! calls; cutovers with 5 s and 15 s intervals meet every 15 s. (A bake's first poll is at once.)
//!
//! Every poll records its delay: from its tick to its reads answered and judged. A poll that
//! took a whole interval or more has missed the next tick: `cutover_polls_missed_total`.

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use super::Clock;

/// The instant of the first tick of `interval` after now, on `clock`.
pub(super) fn next_tick(clock: &Clock, interval: Duration) -> tokio::time::Instant {
    let now = clock.now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let every = interval.as_millis().max(1);
    let next = (now / every + 1) * every;
    tokio::time::Instant::now() + Duration::from_millis((next - now) as u64)
}

/// The upper bounds (seconds) of the delay histogram's buckets.
pub const DELAY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// The polls of this process since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polls {
    pub polls: u64,
    /// Polls that took at least their interval from their tick: the next tick passed unpolled.
    pub missed: u64,
    /// Polls per delay bucket (cumulative counts are made when rendering), and past the last.
    pub buckets: [u64; DELAY_BUCKETS.len() + 1],
    pub delay_sum: f64,
    /// The longest delay so far.
    pub delay_max: f64,
}

static POLLS: Mutex<Polls> = Mutex::new(Polls {
    polls: 0,
    missed: 0,
    buckets: [0; DELAY_BUCKETS.len() + 1],
    delay_sum: 0.0,
    delay_max: 0.0,
});

/// Records a poll that was due `delay` ago, with its bake's `interval`.
pub(super) fn record(delay: Duration, interval: Duration) {
    let d = delay.as_secs_f64();
    let mut p = POLLS.lock().unwrap();
    p.polls += 1;
    if delay >= interval {
        p.missed += 1;
    }
    let i = DELAY_BUCKETS
        .iter()
        .position(|b| d <= *b)
        .unwrap_or(DELAY_BUCKETS.len());
    p.buckets[i] += 1;
    p.delay_sum += d;
    p.delay_max = p.delay_max.max(d);
}

/// The counts so far, for `/metrics`.
pub fn snapshot() -> Polls {
    POLLS.lock().unwrap().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_are_multiples_of_the_interval_on_the_wall_clock() {
        let clock = Clock::at(UNIX_EPOCH + Duration::from_millis(1_800_000_007_250));
        let at = tokio::time::Instant::now();
        // 2026…07.25 s: the next 15 s tick is at …15 s, the next 5 s tick at …10 s.
        assert_eq!(
            next_tick(&clock, Duration::from_secs(15)) - at,
            Duration::from_millis(7_750)
        );
        assert_eq!(
            next_tick(&clock, Duration::from_secs(5)) - at,
            Duration::from_millis(2_750)
        );
        // On a tick: the next one.
        let clock = Clock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_015));
        assert_eq!(next_tick(&clock, Duration::from_secs(15)) - at, Duration::from_secs(15));
    }
}
