//! The guarantees of the sequential tests, checked three ways:
//!
//! * tables of e-values worked by hand (a two-point mixture, whose e-value is the average of two
//!   likelihood ratios anyone can compute);
//! * property tests of the one-step supermartingale inequality E[factor | past] ≤ 1, computed
//!   **exactly** by enumerating every outcome of a period through the tests' own update code, for
//!   random parameters inside the null;
//! * seeded Monte Carlo of whole streams at the null boundary — with changing traffic shares and
//!   shared error spikes — whose false-rejection rate must stay within α plus three standard
//!   errors of the simulation, and of the whole [`Judge`](crate::judge::Judge) on healthy
//!   cutovers; and the power of the same tests against real regressions, so they can fail both
//!   ways.

use proptest::prelude::*;

use super::Tests;
use super::difference::DifferenceTest;
use super::mixture::Grid;
use super::ratio::RatioTest;
use super::sign::SignTest;
use super::threshold::ThresholdTest;
use crate::judge::stats::ln_gamma;
use crate::judge::{Criteria, Judge, Mode, NoData, OnShared, Sample, Window};

/// xoshiro256** seeded through splitmix64: small, fast, reproducible.
struct Rng([u64; 4]);

impl Rng {
    fn seed(mut x: u64) -> Rng {
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    /// Uniform on (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Poisson by inversion (exact), in chunks of mean at most 100 so e^−mean does not underflow.
    fn poisson(&mut self, mean: f64) -> u64 {
        let mut total = 0;
        let mut left = mean;
        while left > 0.0 {
            let mu = left.min(100.0);
            left -= mu;
            let (mut x, mut p, mut u) = (0u64, (-mu).exp(), self.uniform());
            while u > p {
                u -= p;
                x += 1;
                p *= mu / x as f64;
                if p == 0.0 {
                    break;
                }
            }
            total += x;
        }
        total
    }

    /// Binomial by geometric waiting times (exact; O(np) for small p).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let (mut x, mut at) = (0u64, 0u64);
        let q = (1.0 - p).ln();
        loop {
            at += (self.uniform().ln() / q).floor() as u64 + 1;
            if at > n {
                return x;
            }
            x += 1;
        }
    }

    /// A standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// α plus three standard errors of a rejection rate measured over `runs`.
fn limit(alpha: f64, runs: usize) -> f64 {
    alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt()
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs().max(1e-12), "{a} vs {b}");
}

/// Two-point mixtures worked by hand: e-value = ½ LR(ψ₁) + ½ LR(ψ₂), with
/// LR(ψ) = ψ^S (1 + p₀(ψ − 1))^(−N).
#[test]
fn threshold_e_values_worked_by_hand() {
    let g = Grid::weighted(&[(2f64.ln(), 1.0), (4f64.ln(), 1.0)]);
    // (p₀, S, N, e-value)
    let table: &[(f64, u64, u64, f64)] = &[
        // ψ = 2: 2/1.5 = 1.3333; ψ = 4: 4/2.5 = 1.6.
        (0.5, 1, 1, 0.5 * (2.0 / 1.5) + 0.5 * (4.0 / 2.5)),
        // p₀ = 0.1, 1 in 10: 2/1.1^10 = 0.7711; 4/1.3^10 = 0.2757.
        (
            0.1,
            1,
            10,
            0.5 * (2.0 / 1.1f64.powi(10)) + 0.5 * (4.0 / 1.3f64.powi(10)),
        ),
        // p₀ = 0.01, 5 in 100: 32/1.01^100 = 11.831; 1024/1.03^100 = 53.282.
        (
            0.01,
            5,
            100,
            0.5 * (32.0 / 1.01f64.powi(100)) + 0.5 * (1024.0 / 1.03f64.powi(100)),
        ),
        // No successes: both ratios fall.
        (0.01, 0, 100, 0.5 / 1.01f64.powi(100) + 0.5 / 1.03f64.powi(100)),
    ];
    for &(p0, s, n, want) in table {
        let mut t = ThresholdTest::with_grid(p0, 0.01, g);
        t.update(s, n);
        close(t.log_e_value().exp(), want, 1e-12);
    }
    // The hand values of the third row, to four digits.
    close(32.0 / 1.01f64.powi(100), 11.831, 1e-4);
    close(1024.0 / 1.03f64.powi(100), 53.282, 1e-4);
}

/// The difference test's factor exp(u e + f ln(1 − g) − n δ (e^u − 1)), g = (n/m)(e^u − 1),
/// worked by hand for a few periods.
#[test]
fn difference_e_values_worked_by_hand() {
    // (u, δ, n, e, m, f, ln F)
    let ln2 = 2f64.ln();
    let table: &[(f64, f64, u64, u64, u64, u64, f64)] = &[
        // e^u − 1 = 1, g = ½: 3 ln 2 + ln ½ − 1 = 2 ln 2 − 1.
        (ln2, 0.01, 100, 3, 200, 1, 2.0 * ln2 - 1.0),
        // No live errors: 2 ln 2 − 100 · 0.01.
        (ln2, 0.01, 100, 2, 200, 0, 2.0 * ln2 - 1.0),
        // δ = 0, g = 0.25 (n/m = ¼): ln 2 · 1 + 2 ln 0.75.
        (ln2, 0.0, 50, 1, 200, 2, ln2 + 2.0 * 0.75f64.ln()),
    ];
    for &(u, delta, n, e, m, f, want) in table {
        let mut t = DifferenceTest::with_grid(delta, 0.05, Grid::single(u));
        t.update(n, e, m, f);
        close(t.log_e_value(), want, 1e-12);
    }
}

fn binomial_ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if p >= 1.0 {
        return if k == n { 0.0 } else { f64::NEG_INFINITY };
    }
    let (k, nf) = (k as f64, n as f64);
    ln_gamma(nf + 1.0) - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0) + k * p.ln() + (nf - k) * (1.0 - p).ln()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The threshold test: E[factor] ≤ 1 for any rate p ≤ p₀.
    #[test]
    fn the_threshold_test_is_a_supermartingale(
        n in 1u64..150, p0 in 0.0f64..=1.0, frac in 0.0f64..=1.0, u in 0.01f64..8.0,
    ) {
        let p = p0 * frac;
        let mean: f64 = (0..=n)
            .map(|s| {
                let ln_pmf = binomial_ln_pmf(s, n, p);
                if ln_pmf == f64::NEG_INFINITY {
                    return 0.0;
                }
                let mut t = ThresholdTest::with_grid(p0, 0.05, Grid::single(u));
                t.update(s, n);
                (ln_pmf + t.log_e_value()).exp()
            })
            .sum();
        prop_assert!(mean <= 1.0 + 1e-9, "E = {mean}");
    }

    /// The difference test: E[F] ≤ 1 whenever a ≤ b + δ, for binomial counts, whatever the live
    /// rate b is, including capped tilts (a small live share).
    #[test]
    fn the_difference_test_is_a_supermartingale(
        n in 1u64..25, m in 1u64..25, b in 0.0f64..0.5, slack in 0.0f64..0.3,
        delta in 0.0f64..0.05, u in 0.01f64..3.0,
    ) {
        let a = (b + delta - slack).clamp(0.0, 1.0);
        let mut mean = 0.0;
        for e in 0..=n {
            let pe = binomial_ln_pmf(e, n, a);
            if pe == f64::NEG_INFINITY { continue; }
            for f in 0..=m {
                let pf = binomial_ln_pmf(f, m, b);
                if pf == f64::NEG_INFINITY { continue; }
                let mut t = DifferenceTest::with_grid(delta, 0.05, Grid::single(u));
                t.update(n, e, m, f);
                mean += (pe + pf + t.log_e_value()).exp();
            }
        }
        prop_assert!(mean <= 1.0 + 1e-9, "E = {mean} (a = {a}, b = {b})");
    }

    /// The anytime bounds sit where the e-value crosses 1/α, and move with the data.
    #[test]
    fn bounds_agree_with_rejections(e in 0u64..200, n in 200u64..5000, f in 0u64..50) {
        // (The bounds are bisected to 1e−8: closer than that to the limit, either answer is right.)
        let mut t = ThresholdTest::new(0.01, 0.01);
        t.update(e, n);
        let lb = t.lower_bound();
        if (lb - 0.01).abs() > 1e-7 {
            prop_assert_eq!(t.rejected(), lb > 0.01);
        }
        let mut d = DifferenceTest::new(0.005, 0.01);
        d.update(n, e, n, f);
        let lb = d.lower_bound();
        if (lb - 0.005).abs() > 1e-7 {
            prop_assert_eq!(d.rejected(), lb > 0.005);
        }
        let mut more = DifferenceTest::new(0.005, 0.01);
        more.update(n, e + 10, n, f);
        prop_assert!(more.lower_bound() >= d.lower_bound());
    }
}

/// Streams at the null boundary (equal rates, or a rate equal to p₀, or latency votes over half
/// the time) with traffic shares that change every period and a shared error spike every 50
/// periods; each test with its onset detector, at α = 5 % so that 1000 runs measure it.
#[test]
fn false_rejections_stay_within_alpha_under_changing_shares_and_shared_spikes() {
    let (alpha, runs, periods) = (0.05, 1000, 300);
    let mut rng = Rng::seed(20_260_601);
    let (mut diff, mut ratio, mut thr, mut sign) = (0, 0, 0, 0);
    for _ in 0..runs {
        let mut d = DifferenceTest::new(0.0, alpha).with_onset_detection(periods);
        let mut r = RatioTest::new(alpha);
        let mut t = ThresholdTest::new(0.01, alpha).with_onset_detection(periods);
        let mut s = SignTest::new(1.5, alpha, 1, Some(periods));
        for p in 0..periods {
            let share = 0.05 + 0.9 * rng.uniform();
            let rate = if p % 50 == 7 { 0.2 } else { 0.002 };
            let total = rng.poisson(200.0);
            let n = rng.binomial(total, share);
            let m = total - n;
            let (e, f) = (rng.binomial(n, rate), rng.binomial(m, rate));
            d.update(n, e, m, f);
            r.update(n, e, m, f);
            t.update(rng.binomial(n, 0.01), n);
            s.update(1.5 * (0.1 * rng.normal()).exp());
        }
        diff += usize::from(d.rejected());
        ratio += usize::from(r.log_e_value() >= -alpha.ln());
        thr += usize::from(t.rejected());
        sign += usize::from(s.rejected());
    }
    let lim = limit(alpha, runs);
    for (name, x) in [
        ("difference", diff),
        ("ratio", ratio),
        ("threshold", thr),
        ("sign", sign),
    ] {
        let rate = x as f64 / runs as f64;
        assert!(rate <= lim, "{name} test: {rate} > {lim}");
    }
}

/// The same tests catch real regressions nearly always: they are not valid by being inert.
#[test]
fn real_regressions_are_caught() {
    let (alpha, runs, periods) = (0.01, 200, 300);
    let mut rng = Rng::seed(7);
    let (mut diff, mut thr, mut sign) = (0, 0, 0);
    for _ in 0..runs {
        let mut d = DifferenceTest::new(0.0, alpha).with_onset_detection(periods);
        let mut t = ThresholdTest::new(0.01, alpha).with_onset_detection(periods);
        let mut s = SignTest::new(1.5, alpha, 1, Some(periods));
        for _ in 0..periods {
            let (n, m) = (rng.poisson(100.0), rng.poisson(100.0));
            d.update(n, rng.binomial(n, 0.006), m, rng.binomial(m, 0.002));
            t.update(rng.binomial(n, 0.02), n);
            s.update(2.0 * (0.1 * rng.normal()).exp());
        }
        diff += usize::from(d.rejected());
        thr += usize::from(t.rejected());
        sign += usize::from(s.rejected());
    }
    for (name, x) in [("difference", diff), ("threshold", thr), ("sign", sign)] {
        assert!(x as f64 / runs as f64 > 0.9, "{name} test power {x}/{runs}");
    }
}

/// The criteria of the whole-judge Monte Carlo: every check on, `failures_to_rollback` 1 (so
/// every rejection counts), and a baseline.
fn mc_criteria() -> Criteria {
    Criteria {
        max_error_rate: 0.02,
        max_latency: None,
        min_requests: 1,
        failures_to_rollback: 1,
        on_no_data: NoData::Hold,
        confidence: 0.9,
        max_error_rate_increase: 0.01,
        max_latency_ratio: Some(1.5),
        on_shared_failure: OnShared::Hold,
        critical_error_rate: None,
        critical_min_requests: 1,
        metrics: vec![],
        mode: Mode::Auto,
    }
}

/// One cutover through the whole judge: 200 minute-long periods at a drifting share, then 100 at
/// 100 %. The new colour sits on every null boundary at once: its error rate is the live
/// colour's plus δ, equal to `max_error_rate`, and the baseline's plus δ; its latency is exactly
/// `max_latency_ratio` times the live colour's, with independent noise. Returns whether it rolled
/// back.
fn healthy_cutover(rng: &mut Rng, new_rate: f64) -> bool {
    let mut baseline_windows = Vec::new();
    for i in 0..15u64 {
        let m = rng.poisson(200.0);
        baseline_windows.push(Window {
            start: i * 60,
            end: i * 60 + 60,
            new: Sample::default(),
            live: Sample {
                requests: m as f64,
                errors: rng.binomial(m, 0.01) as f64,
                latency: Some(0.05),
            },
            metrics: vec![],
        });
    }
    let c = mc_criteria();
    let b = crate::judge::Baseline::from_windows(&baseline_windows, &c).unwrap();
    let mut judge = Judge::new(c).with_baseline(b);
    for p in 0..300u64 {
        let share = if p < 200 { 0.1 + 0.8 * rng.uniform() } else { 1.0 };
        let total = rng.poisson(200.0);
        let n = rng.binomial(total, share);
        let m = total - n;
        let live_latency = 0.05 * (0.2 * rng.normal()).exp();
        let w = Window {
            start: 900 + p * 60,
            end: 960 + p * 60,
            new: Sample {
                requests: n as f64,
                errors: rng.binomial(n, new_rate) as f64,
                latency: Some(1.5 * live_latency * (0.1 * rng.normal()).exp()),
            },
            live: Sample {
                requests: m as f64,
                errors: rng.binomial(m, 0.01) as f64,
                latency: (m > 0).then_some(live_latency),
            },
            metrics: vec![],
        };
        if judge.judge(&w).rollback {
            return true;
        }
    }
    false
}

/// The promise, on the product's judge: a healthy release rolls back with probability at
/// most 1 − confidence over the whole cutover, however many periods it looks at.
#[test]
fn a_healthy_release_rolls_back_within_one_minus_confidence() {
    let mut rng = Rng::seed(10);
    let runs = 300;
    let rollbacks = (0..runs).filter(|_| healthy_cutover(&mut rng, 0.02)).count();
    let rate = rollbacks as f64 / runs as f64;
    assert!(
        rate <= limit(0.1, runs),
        "{rollbacks}/{runs} healthy cutovers rolled back"
    );
    // And the judge is not inert: 6 % (the live rate + 5 pp) is caught in every run.
    assert!((0..20).all(|_| healthy_cutover(&mut rng, 0.06)));
}

/// The budget spends exactly 1 − confidence, split over the checks a plan has.
#[test]
fn the_tests_spend_the_whole_budget_and_no_more() {
    let c = mc_criteria();
    let t = Tests::new(&c, Some((1, 100)), 1440, 1);
    assert!((t.budget.total() - 0.1).abs() < 1e-15);
    let t = Tests::new(&c, None, 1440, 1);
    assert!((t.budget.total() - 0.1).abs() < 1e-15);
    assert!(t.vs_baseline.is_none());
}
