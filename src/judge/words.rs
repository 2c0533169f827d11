//! The wording of verdicts: numbers as people read them in the live log.

use super::{Evidence, Sample};

/// `["error rate too high", "error rate too high vs live"]` → `["error rate too high, also vs live"]`.
pub(super) fn merge_vs_live(heads: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in heads {
        if let Some(base) = h.strip_suffix(" vs live")
            && let Some(prev) = out.iter_mut().find(|p| p.as_str() == base)
        {
            prev.push_str(", also vs live");
        } else {
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

/// `5xx 2.50% (1/40) 52ms`
pub(super) fn brief(label: &str, s: &Sample) -> String {
    let mut out = format!(
        "{label} {} ({}/{})",
        pct(s.errors / s.requests.max(1.0)),
        count(s.errors),
        count(s.requests)
    );
    if let Some(l) = s.latency {
        out.push_str(&format!(" {}", ms(l)));
    }
    out
}

/// `vs live 0.10% (1/1000)`, or why there is no comparison.
pub(super) fn live_rate(live_name: &str, l: &Sample) -> String {
    if l.requests <= 0.0 {
        format!("no {live_name} traffic to compare")
    } else {
        format!(
            "{live_name} {} ({}/{}) too few to compare",
            pct(l.errors / l.requests),
            count(l.errors),
            count(l.requests)
        )
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

pub(super) fn pct0(x: f64) -> String {
    format!("{}%", x * 100.0)
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

pub(super) fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}
