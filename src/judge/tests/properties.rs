//! Property tests of the judge: a new colour no worse than the live one is never failed, and a
//! period without requests of the new colour never passes.

use proptest::prelude::*;

use crate::judge::*;

fn criteria_strategy() -> impl Strategy<Value = Criteria> {
    (
        0.0..0.2f64,
        proptest::option::of(0.01..2.0f64),
        1u64..500,
        1u32..4,
        prop_oneof![Just(NoData::Hold), Just(NoData::Pass), Just(NoData::Rollback)],
        0.9..0.9999f64,
        0.0..0.05f64,
        proptest::option::of(1.0..3.0f64),
        proptest::option::of(0.0..1.0f64),
        prop_oneof![Just(Mode::Auto), Just(Mode::Advise)],
    )
        .prop_map(
            |(max, lat, min_requests, failures, no_data, confidence, inc, ratio, crit, mode)| Criteria {
                max_error_rate: max,
                max_latency: lat,
                min_requests,
                failures_to_rollback: failures,
                on_no_data: no_data,
                confidence,
                max_error_rate_increase: inc,
                max_latency_ratio: ratio,
                on_shared_failure: OnShared::Hold,
                critical_error_rate: crit.map(|f| max + (1.0 - max) * f).filter(|&x| x > max),
                critical_min_requests: 10.min(min_requests),
                metrics: vec![],
                mode,
            },
        )
}

proptest! {
    /// A window whose new colour is no worse than the live colour — as many requests or
    /// fewer, an error rate and a latency no higher, beside a live colour with enough
    /// requests to compare with — is never failed.
    #[test]
    fn no_worse_than_live_never_fails_a_window(
        c in criteria_strategy(),
        live_requests in 0u64..100_000,
        live_error_fraction in 0.0..1.0f64,
        new_share in 0.0..1.0f64,
        new_error_share in 0.0..=1.0f64,
        live_latency in 0.001..5.0f64,
        new_latency_share in proptest::option::of(0.0..=1.0f64),
    ) {
        let live_requests = (live_requests + c.min_requests) as f64;
        let live_errors = (live_requests * live_error_fraction).floor();
        let new_requests = (live_requests * new_share).floor().max(1.0);
        let new_errors = (new_requests * (live_errors / live_requests) * new_error_share).floor();
        let w = Window {
            start: 0,
            end: 60,
            new: Sample { requests: new_requests, errors: new_errors, latency: new_latency_share.map(|s| live_latency * s) },
            live: Sample { requests: live_requests, errors: live_errors, latency: Some(live_latency) },
            metrics: vec![],
        };
        let v = Judge::new(c).judge(&w);
        prop_assert_ne!(v.outcome, Outcome::Fail, "{}", v.reason);
    }

    /// The same over a whole bake with the traffic split evenly (so that summing windows
    /// cannot turn "no worse in every window" into "worse in total").
    #[test]
    fn no_worse_than_live_never_fails_a_bake(
        c in criteria_strategy(),
        windows in proptest::collection::vec((0u64..400, 0.0..1.0f64, 0.0..=1.0f64, 0.001..5.0f64, 0.0..=1.0f64), 1..30),
    ) {
        let mut judge = Judge::new(c.clone());
        for (i, &(requests, live_error_fraction, new_error_share, live_latency, new_latency_share)) in windows.iter().enumerate() {
            let requests = requests as f64;
            let live_errors = (requests * live_error_fraction).floor();
            let new_errors = (live_errors * new_error_share).floor();
            let w = Window {
                start: i as u64 * 60,
                end: i as u64 * 60 + 60,
                new: Sample { requests, errors: new_errors, latency: Some(live_latency * new_latency_share) },
                live: Sample { requests, errors: live_errors, latency: Some(live_latency) },
                metrics: vec![],
            };
            let v = judge.judge(&w);
            if requests > 0.0 || c.on_no_data != NoData::Rollback {
                prop_assert_ne!(v.outcome, Outcome::Fail, "window {}: {}", i, v.reason);
            }
        }
    }

    /// Whatever came before, a window in which the new colour served nothing never passes.
    #[test]
    fn zero_requests_never_pass(
        c in criteria_strategy(),
        windows in proptest::collection::vec((0u64..2000, 0.0..1.0f64, 0u64..2000, 0.0..1.0f64), 1..30),
    ) {
        let mut judge = Judge::new(c);
        for (i, &(new_requests, new_rate, live_requests, live_rate)) in windows.iter().enumerate() {
            // Every third window has no requests of the new colour.
            let new_requests = if i % 3 == 2 { 0.0 } else { new_requests as f64 };
            let w = Window {
                start: i as u64 * 60,
                end: i as u64 * 60 + 60,
                new: Sample { requests: new_requests, errors: (new_requests * new_rate).floor(), latency: None },
                live: Sample { requests: live_requests as f64, errors: (live_requests as f64 * live_rate).floor(), latency: Some(0.1) },
                metrics: vec![],
            };
            let v = judge.judge(&w);
            if new_requests == 0.0 {
                prop_assert_ne!(v.outcome, Outcome::Pass, "{}", v.reason);
            }
        }
    }
}
