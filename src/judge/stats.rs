//! The statistical tests, from first principles (no dependency): all one-sided, "is the new
//! colour worse?". Each is exact where counts are small, and costs microseconds.

use std::f64::consts::{PI, SQRT_2};

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

fn ln_choose(n: f64, k: f64) -> f64 {
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
}

/// P(Z ≥ z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// The complementary error function, fractional error below 1.2e-7 everywhere
/// (the Chebyshev fit of Numerical Recipes' `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Sums a tail of a discrete distribution from its first term `t0` with the term ratio
/// `next(x) = t(x+1)/t(x)` (or t(x−1)/t(x) going down), stopping once the terms no longer matter.
fn tail(t0: f64, from: u64, to: u64, up: bool, next: impl Fn(f64) -> f64) -> f64 {
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

/// Fisher's exact test, one-sided: P(X ≥ e1) where X, the errors of the first group, is
/// hypergeometric given both groups' totals.
pub fn fisher_sf(e1: u64, n1: u64, e2: u64, n2: u64) -> f64 {
    let (n, k) = ((n1 + n2) as f64, (e1 + e2) as f64);
    let n1f = n1 as f64;
    let lo = (n1 + e1 + e2).saturating_sub(n1 + n2);
    let hi = n1.min(e1 + e2);
    if e1 <= lo {
        return 1.0;
    }
    if e1 > hi {
        return 0.0;
    }
    let ln_pmf = |x: f64| ln_choose(k, x) + ln_choose(n - k, n1f - x) - ln_choose(n, n1f);
    if e1 as f64 > n1f * k / n {
        tail(ln_pmf(e1 as f64).exp(), e1, hi, true, |x| {
            (k - x) * (n1f - x) / ((x + 1.0) * (n - k - n1f + x + 1.0))
        })
    } else {
        let below = tail(ln_pmf((e1 - 1) as f64).exp(), e1 - 1, lo, false, |x| {
            x * (n - k - n1f + x) / ((k - x + 1.0) * (n1f - x + 1.0))
        });
        (1.0 - below).clamp(0.0, 1.0)
    }
}

/// One-sided two-proportion test of "the first group's rate is higher": the pooled z test
/// when every expected count is at least 5, Fisher's exact test otherwise.
/// Returns the p-value and, for the z test, z.
pub fn two_proportion(e1: u64, n1: u64, e2: u64, n2: u64) -> (f64, Option<f64>) {
    if n1 == 0 || n2 == 0 {
        return (1.0, None);
    }
    let (e1f, n1f, e2f, n2f) = (e1 as f64, n1 as f64, e2 as f64, n2 as f64);
    let pooled = (e1f + e2f) / (n1f + n2f);
    let expected = [n1f * pooled, n2f * pooled, n1f * (1.0 - pooled), n2f * (1.0 - pooled)];
    if expected.iter().any(|&x| x < 5.0) {
        return (fisher_sf(e1, n1, e2, n2), None);
    }
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let z = (e1f / n1f - e2f / n2f) / se;
    (normal_sf(z), Some(z))
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
    fn normal_tail_matches_tables() {
        close(normal_sf(0.0), 0.5, 1e-7);
        close(normal_sf(1.959_964), 0.025, 1e-5);
        close(normal_sf(2.326_348), 0.01, 1e-5);
        close(normal_sf(-1.644_854), 0.95, 1e-6);
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
    fn fisher_matches_the_tea_tasting_lady() {
        // Fisher's own example: 3 of 4 right in each group of 4 → one-sided p = 17/70.
        close(fisher_sf(3, 4, 1, 4), 17.0 / 70.0, 1e-12);
        close(fisher_sf(4, 4, 0, 4), 1.0 / 70.0, 1e-12);
        assert_eq!(fisher_sf(0, 4, 4, 4), 1.0);
    }

    #[test]
    fn two_proportion_picks_its_test() {
        let (p, z) = two_proportion(63, 3000, 3, 3100);
        assert!(z.is_some() && p < 1e-6, "{p} {z:?}");
        let (p, z) = two_proportion(1, 30, 0, 30);
        assert!(z.is_none() && (p - 0.5).abs() < 1e-9, "{p} {z:?}");
    }
}
