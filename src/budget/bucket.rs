//! One API class's token bucket: a refill rate and a burst, two lanes, and AIMD on throttling.
//!
//! 1. Tokens refill at the current rate up to the burst; a call takes one.
//! 2. A poll ([`Lane::Poll`]) takes a token only while more than the *reserve* (a quarter of the
//!    burst) is left, and never while an urgent call waits: polls cannot drain what a rollback
//!    needs.
//! 3. An urgent call ([`Lane::Urgent`]: a rollback's writes and read-back, the store's lease and
//!    journal writes) takes any token there is; when there is none it waits for the next one,
//!    ahead of every poll. So a rollback never waits behind a poll, and a storm of rollbacks
//!    still goes out at the bucket's rate rather than into AWS's throttling.
//! 4. A throttled answer from AWS halves the rate (at most once per [`DECREASE_EVERY`], so one
//!    burst of throttles counts once), down to a sixteenth of the configured rate; every second
//!    without throttling gives back a twentieth of the configured rate (about 20 s from the
//!    floor to the full rate), never above it.
//! 5. The halving slows polls only: urgent calls still go out at the *configured* rate, taking
//!    a token on credit when the bucket is empty (the debt, at most a burst, is the polls' to
//!    wait out). Throttling by another tool in the account must not make a storm of rollbacks
//!    wait 8 s each at the floor.
//! 6. An urgent call that stops waiting — it took its token, or its future was dropped (a
//!    timeout around a lease renewal, a client that hung up) — is no longer counted as waiting:
//!    a count left behind would stand every poll of the class aside for good.
//!
//! Time is tokio's clock, so the unit tests drive it with a paused runtime.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Lane;

/// A throttled answer within this long after the last decrease does not decrease again.
pub const DECREASE_EVERY: Duration = Duration::from_secs(1);
/// The rate never goes below the configured rate divided by this.
pub const FLOOR_DIVISOR: f64 = 16.0;
/// Each second without throttling, the rate grows back by the configured rate divided by this.
pub const RECOVERY_DIVISOR: f64 = 20.0;

/// A configured limit: `rate` calls a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    /// The current rate (the configured one, or less after throttling).
    rate: f64,
    refilled: Instant,
    /// When the rate was last halved.
    decreased: Option<Instant>,
    /// Since when the rate has not grown back: the last decrease or the last recovery step.
    recovered: Instant,
    urgent_waiting: u32,
    /// When an urgent call may next take a token on credit (at the configured rate).
    urgent_next: Instant,
    /// Per lane (urgent, poll): calls and the time they waited for their tokens.
    waits: [Waits; 2],
}

/// Calls of one lane and how long they waited for their tokens, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Waits {
    pub calls: u64,
    /// Calls that found no token for them and had to wait.
    pub delayed: u64,
    pub waited_secs: f64,
}

fn slot(lane: Lane) -> usize {
    match lane {
        Lane::Urgent => 0,
        Lane::Poll => 1,
    }
}

/// An urgent call's place among the waiting: counted while it waits, uncounted when it takes its
/// token or when its future is dropped mid-wait.
struct Waiting<'a> {
    bucket: &'a Bucket,
    counted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut s = self.bucket.state.lock().unwrap_or_else(|p| p.into_inner());
            s.urgent_waiting -= 1;
        }
    }
}

/// The bucket of one API class.
#[derive(Debug)]
pub struct Bucket {
    limit: Limit,
    state: Mutex<State>,
}

/// What a bucket reports for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStats {
    pub limit: Limit,
    /// The rate now (below `limit.rate` after throttling).
    pub rate: f64,
}

impl Bucket {
    pub fn new(limit: Limit) -> Bucket {
        let now = Instant::now();
        Bucket {
            limit,
            state: Mutex::new(State {
                tokens: limit.burst,
                rate: limit.rate,
                refilled: now,
                decreased: None,
                recovered: now,
                urgent_waiting: 0,
                urgent_next: now,
                waits: [Waits::default(); 2],
            }),
        }
    }

    /// Tokens polls must leave for urgent calls: a quarter of the burst, at least one, and always
    /// less than the burst (a burst of 1 with a reserve of 1 left polls needing 2 tokens of 1).
    fn reserve(&self) -> f64 {
        (self.limit.burst / 4.0).max(1.0).min(self.limit.burst - 1.0).max(0.0)
    }

    /// The tokens a poll needs in the bucket before it takes one.
    fn poll_floor(&self) -> f64 {
        1.0 + self.reserve()
    }

    fn refill(&self, s: &mut State, now: Instant) {
        // Recovery first: a second without throttling gives back a twentieth of the rate.
        if s.rate < self.limit.rate {
            let steps = now.saturating_duration_since(s.recovered).as_secs();
            if steps >= 1 {
                s.rate = (s.rate + steps as f64 * self.limit.rate / RECOVERY_DIVISOR).min(self.limit.rate);
                s.recovered += Duration::from_secs(steps);
            }
        }
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(self.limit.burst);
        s.refilled = now;
    }

    /// Takes one token for a call in `lane`, waiting as long as the lane's rules say.
    pub async fn acquire(&self, lane: Lane) {
        let mut waiting = Waiting {
            bucket: self,
            counted: false,
        };
        let started = Instant::now();
        let mut slept = false;
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap();
                let now = Instant::now();
                self.refill(&mut s, now);
                let took = |s: &mut State| {
                    let w = &mut s.waits[slot(lane)];
                    w.calls += 1;
                    if slept {
                        w.delayed += 1;
                        w.waited_secs += now.saturating_duration_since(started).as_secs_f64();
                    }
                };
                match lane {
                    Lane::Urgent => {
                        let on_credit = s.tokens < 1.0 && now >= s.urgent_next;
                        if s.tokens >= 1.0 || on_credit {
                            took(&mut s);
                            s.tokens = (s.tokens - 1.0).max(-self.limit.burst);
                            if on_credit {
                                s.urgent_next = now + Duration::from_secs_f64(1.0 / self.limit.rate);
                            }
                            if waiting.counted {
                                s.urgent_waiting -= 1;
                                waiting.counted = false;
                            }
                            return;
                        }
                        if !waiting.counted {
                            s.urgent_waiting += 1;
                            waiting.counted = true;
                        }
                        ((1.0 - s.tokens) / s.rate).min(s.urgent_next.saturating_duration_since(now).as_secs_f64())
                    }
                    Lane::Poll => {
                        if s.urgent_waiting == 0 && s.tokens >= self.poll_floor() {
                            took(&mut s);
                            s.tokens -= 1.0;
                            return;
                        }
                        self.poll_wait(&s)
                    }
                }
            };
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
            slept = true;
        }
    }

    /// Resolves once a call in `lane` would get a token at once (as [`Bucket::acquire`] would
    /// give it), without taking it or counting a call: a coalesced batch waits here with its
    /// group still open, then takes its tokens.
    pub async fn ready(&self, lane: Lane) {
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap();
                let now = Instant::now();
                self.refill(&mut s, now);
                match lane {
                    Lane::Urgent if s.tokens >= 1.0 || now >= s.urgent_next => return,
                    Lane::Urgent => {
                        ((1.0 - s.tokens) / s.rate).min(s.urgent_next.saturating_duration_since(now).as_secs_f64())
                    }
                    Lane::Poll if s.urgent_waiting == 0 && s.tokens >= self.poll_floor() => return,
                    Lane::Poll => self.poll_wait(&s),
                }
            };
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }

    /// How long a poll that cannot take a token now sleeps before it looks again: until the
    /// bucket holds its floor, and, behind an urgent call, at least one token's time (not a
    /// millisecond's spin).
    fn poll_wait(&self, s: &State) -> f64 {
        let until_floor = (self.poll_floor() - s.tokens).max(0.0) / s.rate;
        if s.urgent_waiting > 0 {
            until_floor.max(1.0 / s.rate)
        } else {
            until_floor
        }
    }

    /// AWS answered a call of this class with throttling: halve the rate (see the module doc).
    pub fn throttled(&self) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        self.refill(&mut s, now);
        if s.decreased
            .is_some_and(|d| now.saturating_duration_since(d) < DECREASE_EVERY)
        {
            return;
        }
        s.rate = (s.rate / 2.0).max(self.limit.rate / FLOOR_DIVISOR);
        s.decreased = Some(now);
        s.recovered = now;
    }

    /// The calls of `lane` so far and how long they waited.
    pub fn waits(&self, lane: Lane) -> Waits {
        self.state.lock().unwrap().waits[slot(lane)]
    }

    pub fn stats(&self) -> BucketStats {
        let mut s = self.state.lock().unwrap();
        self.refill(&mut s, Instant::now());
        BucketStats {
            limit: self.limit,
            rate: s.rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn bucket(rate: f64, burst: f64) -> Arc<Bucket> {
        Arc::new(Bucket::new(Limit { rate, burst }))
    }

    /// How many of `n` acquisitions in `lane` complete within `within` from now.
    async fn completed(b: &Arc<Bucket>, lane: Lane, n: usize, within: Duration) -> usize {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..n {
            let (b, done) = (b.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(lane).await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        tokio::time::sleep(within).await;
        for t in tasks {
            t.abort();
        }
        done.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn polls_get_the_burst_less_the_reserve_then_the_rate() {
        let b = bucket(10.0, 20.0);
        // 20 tokens, 5 reserved: 15 at once, then 10 a second.
        assert_eq!(completed(&b, Lane::Poll, 100, Duration::from_millis(1)).await, 15);
        let b = bucket(10.0, 20.0);
        assert_eq!(
            completed(&b, Lane::Poll, 100, Duration::from_millis(2_050)).await,
            15 + 20
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_call_takes_the_reserve_that_polls_leave() {
        let b = bucket(10.0, 20.0);
        assert_eq!(completed(&b, Lane::Poll, 100, Duration::from_millis(1)).await, 15);
        let before = Instant::now();
        b.acquire(Lane::Urgent).await;
        assert_eq!(before.elapsed(), Duration::ZERO, "the urgent call waited");
    }

    #[tokio::test(start_paused = true)]
    async fn the_waits_of_each_lane_are_counted() {
        let b = bucket(10.0, 20.0);
        assert_eq!(completed(&b, Lane::Poll, 16, Duration::from_secs(1)).await, 16);
        b.acquire(Lane::Urgent).await;
        let (poll, urgent) = (b.waits(Lane::Poll), b.waits(Lane::Urgent));
        assert_eq!((poll.calls, poll.delayed), (16, 1), "{poll:?}");
        assert!(poll.waited_secs > 0.0);
        assert_eq!((urgent.calls, urgent.delayed), (1, 0), "{urgent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_urgent_calls_go_before_waiting_polls() {
        let b = bucket(1.0, 4.0);
        // Drain everything (urgent calls may take the reserve too).
        assert_eq!(completed(&b, Lane::Urgent, 4, Duration::from_millis(1)).await, 4);
        let order = Arc::new(Mutex::new(vec![]));
        let mut tasks = vec![];
        for (i, lane) in [Lane::Poll, Lane::Poll, Lane::Urgent, Lane::Urgent]
            .into_iter()
            .enumerate()
        {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                // The polls queue first.
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                b.acquire(lane).await;
                order.lock().unwrap().push(lane);
            }));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let order = order.lock().unwrap().clone();
        assert_eq!(&order[..2], &[Lane::Urgent, Lane::Urgent], "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_once_per_second_and_it_grows_back() {
        let b = bucket(16.0, 16.0);
        b.throttled();
        b.throttled(); // the same burst of throttles: counted once
        assert_eq!(b.stats().rate, 8.0);
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            b.throttled();
        }
        assert_eq!(b.stats().rate, 1.0, "floored at a sixteenth");
        // A twentieth of 16 (0.8) per quiet second: full again after 19 s, not before.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rate = b.stats().rate;
        assert!(rate > 1.0 && rate < 16.0, "{rate}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(b.stats().rate, 16.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_class_hands_out_fewer_tokens_to_polls() {
        let polls_in_two_seconds = |throttled: bool| async move {
            let b = bucket(10.0, 5.0);
            assert_eq!(completed(&b, Lane::Urgent, 5, Duration::from_millis(1)).await, 5);
            if throttled {
                b.throttled();
            }
            completed(&b, Lane::Poll, 100, Duration::from_millis(2_001)).await
        };
        let (full, halved) = (polls_in_two_seconds(false).await, polls_in_two_seconds(true).await);
        // 10 a second: 20 tokens less the floor of 2.25. Halved: 5 a second, growing back by 0.5
        // after the first second, so about 10.5 less the floor.
        assert_eq!(full, 18);
        assert!((8..=9).contains(&halved), "{halved} polls at the halved rate");
    }

    /// Regression (review of issue 12): a throttle by anyone in the account halved the rate
    /// rollbacks refill at too; at Modify's floor (0.125 a second) each restore of a storm waited
    /// 8 s. Urgent calls go out at the configured rate, on credit, whatever the AIMD says.
    #[tokio::test(start_paused = true)]
    async fn throttling_slows_polls_not_the_urgent_lane() {
        let b = bucket(2.0, 4.0);
        for _ in 0..5 {
            b.throttled();
            tokio::time::sleep(Duration::from_millis(1_001)).await;
        }
        let rate = b.stats().rate;
        assert!(rate < 0.3, "the rate went down to {rate}, not near the floor");
        // The burst, and one on credit.
        assert_eq!(completed(&b, Lane::Urgent, 100, Duration::from_millis(1)).await, 5);
        // Then 2 a second, the configured rate, not one every 8 s.
        let next = completed(&b, Lane::Urgent, 100, Duration::from_millis(5_001)).await;
        assert!((10..=11).contains(&next), "{next} urgent calls in 5 s");
        // The debt is the polls': none goes out while the bucket is below its floor.
        assert_eq!(completed(&b, Lane::Poll, 10, Duration::from_secs(5)).await, 0);
    }

    /// Regression (review of issue 12): an urgent call counted itself as waiting and uncounted
    /// itself only when it took a token, so one dropped mid-wait (a lease renewal's timeout, a
    /// client that hung up) stood every later poll of its class aside for good.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_urgent_wait_does_not_stand_polls_aside_for_good() {
        let b = bucket(1.0, 4.0);
        // The burst and one on credit: the next urgent call waits a second.
        assert_eq!(completed(&b, Lane::Urgent, 5, Duration::from_millis(1)).await, 5);
        // An urgent call that waits, and is dropped before it gets its token.
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire(Lane::Urgent).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiter.abort();
        let _ = waiter.await;
        // Refilled from the debt of 1 to the floor (2 tokens) in about 3 s: a poll goes out.
        assert_eq!(completed(&b, Lane::Poll, 1, Duration::from_secs(5)).await, 1);
    }

    /// Regression (review of issue 12): a burst of 1 (any rate ≤ 0.5 without a burst) kept a
    /// reserve of 1, so polls needed 2 tokens of a bucket that holds 1, and never went out.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_still_serves_polls() {
        let b = bucket(0.5, 1.0);
        assert_eq!(completed(&b, Lane::Poll, 3, Duration::from_millis(4_001)).await, 3);
    }

    /// `ready` waits as a poll's `acquire` would, but takes nothing: the batch that waited
    /// still gets its token at once.
    #[tokio::test(start_paused = true)]
    async fn ready_waits_for_a_token_without_taking_it() {
        let b = bucket(10.0, 4.0);
        // 4 tokens, 1 reserved: 3 polls at once, then none is ready until one more refills.
        assert_eq!(completed(&b, Lane::Poll, 3, Duration::from_millis(1)).await, 3);
        let started = Instant::now();
        b.ready(Lane::Poll).await;
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "{:?}",
            started.elapsed()
        );
        // Ready again at once: the first took nothing.
        b.ready(Lane::Poll).await;
        assert!(
            started.elapsed() <= Duration::from_millis(110),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(completed(&b, Lane::Poll, 1, Duration::from_millis(1)).await, 1);
        assert_eq!(b.waits(Lane::Poll).calls, 4, "ready counted as a call");
    }
}
