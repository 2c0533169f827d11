//! Fixed-sample statistics, from first principles (no dependency): ln Γ, the binomial tail and
//! the Clopper–Pearson bound (public for `examples/judge_sim`, which reuses them). The baseline is one sample tested once, so it is judged with these;
//! everything judged during the cutover is judged sequentially ([`super::sequential`]).

use std::f64::consts::PI;

/// ln Γ(x) for x > 0: Lanczos (g = 7, 9 terms), about 15 significant digits.
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln of the binomial coefficient C(n, k).
pub fn ln_choose(n: f64, k: f64) -> f64 {
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
}

/// Sums a tail of a discrete distribution from its first term `t0` with the term ratio
/// `next(x) = t(x+1)/t(x)` (or t(x−1)/t(x) going down), stopping once the terms no longer matter.
pub fn tail(t0: f64, from: u64, to: u64, up: bool, next: impl Fn(f64) -> f64) -> f64 {
    let (mut sum, mut t, mut x) = (0.0, t0, from as f64);
    let steps = from.abs_diff(to);
    for _ in 0..=steps {
        sum += t;
        if t <= sum * 1e-16 {
            break;
        }
        t *= next(x);
        x += if up { 1.0 } else { -1.0 };
    }
    sum
}

/// P(X ≥ k) for X ~ Binomial(n, p): is a rate of k/n evidence that the true rate exceeds p?
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 || p >= 1.0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    let (nf, q) = (n as f64, 1.0 - p);
    let ln_pmf = |x: f64| ln_choose(nf, x) + x * p.ln() + (nf - x) * q.ln();
    if k as f64 > nf * p {
        // Above the mean the terms fall: sum upward from k.
        tail((ln_pmf(k as f64)).exp(), k, n, true, |x| (nf - x) / (x + 1.0) * p / q)
    } else {
        // At or below the mean: 1 − P(X ≤ k−1), summing downward from k−1.
        let below = tail((ln_pmf((k - 1) as f64)).exp(), k - 1, 0, false, |x| {
            x / (nf - x + 1.0) * q / p
        });
        (1.0 - below).clamp(0.0, 1.0)
    }
}

/// The exact one-sided (Clopper–Pearson) upper confidence bound of a binomial rate: the p with
/// P(X ≤ k; n, p) = α. With probability at least 1 − α the true rate is at most this (1 without
/// requests, or with every request an error).
pub fn clopper_pearson_upper(k: u64, n: u64, alpha: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    // P(X ≤ k; n, p) = 1 − P(X ≥ k + 1) falls from about 1 to 0 on [k/n, 1]: bisect.
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - binomial_sf(k + 1, n, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!(ln_gamma(1.0).abs() < 1e-13);
        close(ln_gamma(5.0), 24f64.ln(), 1e-13);
        close(ln_gamma(171.0), (1..171).map(|i| (i as f64).ln()).sum(), 1e-13);
        close(ln_gamma(0.5), PI.sqrt().ln(), 1e-13);
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // P(X ≥ 2 | n = 120, p = 0.01) = 1 − 0.99^120 − 120·0.01·0.99^119
        let direct = 1.0 - 0.99f64.powi(120) - 120.0 * 0.01 * 0.99f64.powi(119);
        close(binomial_sf(2, 120, 0.01), direct, 1e-10);
        // P(X ≥ 1 | n = 100, p = 0.001) = 1 − 0.999^100
        close(binomial_sf(1, 100, 0.001), 1.0 - 0.999f64.powi(100), 1e-10);
        // All ten of ten at p = 0.5.
        close(binomial_sf(10, 10, 0.5), 0.5f64.powi(10), 1e-12);
        assert_eq!(binomial_sf(0, 10, 0.5), 1.0);
        assert!(binomial_sf(5000, 1_000_000, 0.001) < 1e-300);
    }

    #[test]
    fn clopper_pearson_matches_closed_forms_and_tables() {
        // No errors: (1 − U)^n = α, so U = 1 − α^(1/n): 30 requests at 5 % → 0.095034.
        close(clopper_pearson_upper(0, 30, 0.05), 1.0 - 0.05f64.powf(1.0 / 30.0), 1e-9);
        close(clopper_pearson_upper(0, 30, 0.05), 0.095_034, 1e-4);
        // The textbook "rule of three": 0 of n at 95 % is about 3/n.
        close(clopper_pearson_upper(0, 3000, 0.05), 3.0 / 3000.0, 0.01);
        // At the bound, P(X ≤ k) = α.
        let u = clopper_pearson_upper(30, 30_000, 0.001);
        close(1.0 - binomial_sf(31, 30_000, u), 0.001, 1e-6);
        assert_eq!(clopper_pearson_upper(1, 1, 0.05), 1.0);
        assert_eq!(clopper_pearson_upper(0, 0, 0.05), 1.0);
    }
}
