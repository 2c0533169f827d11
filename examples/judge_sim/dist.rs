//! Exact Poisson and binomial samplers.
//!
//! * Small means (< 10): inversion, walking the pmf from 0 (expected mean + 1 steps; exact to
//!   floating-point rounding).
//! * Large means: Hörmann's transformed rejection with squeeze — PTRS for Poisson (1993) and BTRS
//!   for the binomial (1993) — which are exact (rejection sampling against the true pmf), and take
//!   about 1.1 uniforms pairs per variate. No normal approximation is used anywhere.

pub use cutover::judge::stats::ln_gamma;

use super::rng::Rng;

/// A Poisson(`mean`) variate.
pub fn poisson(rng: &mut Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 10.0 {
        poisson_inversion(rng, mean)
    } else {
        poisson_ptrs(rng, mean)
    }
}

fn poisson_inversion(rng: &mut Rng, mean: f64) -> u64 {
    loop {
        let mut u = rng.uniform();
        let mut p = (-mean).exp();
        let mut x = 0u64;
        while x < 1000 {
            if u < p {
                return x;
            }
            u -= p;
            x += 1;
            p *= mean / x as f64;
        }
        // Rounding left u above the summed pmf: draw again (probability ~1e-16).
    }
}

fn poisson_ptrs(rng: &mut Rng, lam: f64) -> u64 {
    let slam = lam.sqrt();
    let loglam = lam.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.uniform() - 0.5;
        let v = rng.uniform();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lam + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln() <= -lam + k * loglam - ln_gamma(k + 1.0) {
            return k as u64;
        }
    }
}

/// A Binomial(`n`, `p`) variate.
pub fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if p > 0.5 {
        return n - binomial(rng, n, 1.0 - p);
    }
    if (n as f64) * p < 10.0 {
        binomial_inversion(rng, n, p)
    } else {
        binomial_btrs(rng, n, p)
    }
}

fn binomial_inversion(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let q = 1.0 - p;
    let s = p / q;
    let a = (n as f64 + 1.0) * s;
    let r0 = (n as f64 * (-p).ln_1p()).exp();
    loop {
        let mut u = rng.uniform();
        let mut r = r0;
        let mut x = 0u64;
        while x <= n {
            if u < r {
                return x;
            }
            u -= r;
            x += 1;
            r *= a / x as f64 - s;
        }
    }
}

fn binomial_btrs(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let nf = n as f64;
    let q = 1.0 - p;
    let spq = (nf * p * q).sqrt();
    let b = 1.15 + 2.53 * spq;
    let a = -0.0873 + 0.0248 * b + 0.01 * p;
    let c = nf * p + 0.5;
    let vr = 0.92 - 4.2 / b;
    let alpha = (2.83 + 5.1 / b) * spq;
    let lpq = (p / q).ln();
    let m = ((nf + 1.0) * p).floor();
    let h = ln_gamma(m + 1.0) + ln_gamma(nf - m + 1.0);
    loop {
        let u = rng.uniform() - 0.5;
        let v = rng.uniform();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + c).floor();
        if k < 0.0 || k > nf {
            continue;
        }
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        let lv = (v * alpha / (a / (us * us) + b)).ln();
        if lv <= h - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0) + (k - m) * lpq {
            return k as u64;
        }
    }
}
