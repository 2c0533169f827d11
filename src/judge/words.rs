//! The wording of verdicts: numbers as people read them in the live log.

use super::Evidence;

/// `["error rate too high", "error rate too high vs live"]` → `["error rate too high, also vs live"]`
/// (and the same for `vs baseline`).
pub(super) fn merge_vs_live(heads: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in heads {
        let merged = [" vs live", " vs baseline"].iter().any(|suffix| {
            if let Some(base) = h.strip_suffix(suffix)
                && let Some(prev) = out.iter_mut().find(|p| p.starts_with(base) && !p.ends_with(suffix))
            {
                prev.push_str(&format!(", also{suffix}"));
                true
            } else {
                false
            }
        });
        if !merged {
            out.push(h.clone());
        }
    }
    out
}

pub(super) fn ratio_of(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// `12:00:00–12:03:00, 3 windows` (UTC).
pub(super) fn span(ev: &Evidence) -> String {
    format!(
        "{}–{}, {} window{}",
        hms(ev.start),
        hms(ev.end),
        ev.windows,
        if ev.windows == 1 { "" } else { "s" }
    )
}

pub(super) fn hms(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60)
}

pub(super) fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

pub(super) fn count(x: f64) -> String {
    format!("{x}")
}

pub(super) fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:.3}")
    }
}

pub(super) fn ms(secs: f64) -> String {
    format!("{:.0}ms", secs * 1000.0)
}

/// `+0.82 pp`
pub(super) fn pp(x: f64) -> String {
    format!("{:+.2} pp", x * 100.0)
}

/// `×1.50`, `×∞`
pub(super) fn times(x: f64) -> String {
    if x.is_finite() {
        format!("×{x:.2}")
    } else {
        "×∞".into()
    }
}

/// An e-value (or any positive number) for people, from its logarithm: `0.52`, `0.0029`, `3.20`,
/// `240`, `1.2e6`, `2.0e−5`, `e^812`.
pub(super) fn e_value(log_e: f64) -> String {
    if log_e.abs() > 700.0 {
        return format!("e^{log_e:.0}");
    }
    let e = log_e.exp();
    if !(1e-3..1e4).contains(&e) {
        format!("{e:.1e}").replace("e-", "e−")
    } else if e >= 100.0 {
        format!("{e:.0}")
    } else if e >= 10.0 {
        format!("{e:.1}")
    } else if e >= 1.0 {
        format!("{e:.2}")
    } else {
        // Two significant digits.
        let decimals = (1.0 - e.log10().floor()) as usize;
        format!("{e:.decimals$}")
    }
}

pub(super) fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_values_read_as_people_read_them() {
        assert_eq!(e_value(240f64.ln()), "240");
        assert_eq!(e_value(3.2f64.ln()), "3.20");
        assert_eq!(e_value(12.5f64.ln()), "12.5");
        assert_eq!(e_value(1.2e6f64.ln()), "1.2e6");
        assert_eq!(e_value(0.00002f64.ln()), "2.0e−5");
        assert_eq!(e_value(0.52f64.ln()), "0.52");
        assert_eq!(e_value(0.0029f64.ln()), "0.0029");
        assert_eq!(e_value(812.0), "e^812");
    }

    #[test]
    fn headlines_vs_live_and_vs_baseline_merge_into_their_base() {
        let h = |v: &[&str]| merge_vs_live(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            h(&["error rate too high", "error rate too high vs live"]),
            ["error rate too high, also vs live"]
        );
        assert_eq!(h(&["error rate too high vs live"]), ["error rate too high vs live"]);
        assert_eq!(
            h(&[
                "error rate too high",
                "error rate too high vs baseline",
                "latency too high"
            ]),
            ["error rate too high, also vs baseline", "latency too high"]
        );
    }
}
