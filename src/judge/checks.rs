//! The checks behind a verdict: each one records a [`Finding`] with its numbers, and a clause
//! in words, into the [`Assessment`] being assembled for one window.

use super::stats;
use super::words::{count, fmt_p, live_rate, ms, num, pct, pct0, ratio_of};
use super::{Assessment, Criteria, Direction, Evidence, Finding, Sample, Status, Window};

/// The fast path on the evidence so far: true when it fired (and was recorded).
pub(super) fn fast_path(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) -> bool {
    let Some(critical) = c.critical_error_rate else {
        return false;
    };
    let n = &ev.new;
    if n.requests < c.critical_min_requests as f64 || n.errors / n.requests < critical {
        return false;
    }
    let rate = n.errors / n.requests;
    let l = &ev.live;
    // Both colours at the critical rate, and the new one not significantly worse: an outage they share.
    let shared = l.requests >= c.critical_min_requests as f64
        && l.errors / l.requests >= critical
        && !relative_errors(c, n, l).fail;
    let status = if shared { Status::Shared } else { Status::Fail };
    a.critical = !shared;
    a.record(
        "critical error rate",
        Finding {
            check: "critical_error_rate".into(),
            status,
            value: rate,
            threshold: critical,
            live: l.error_rate(),
            p_value: None,
            statistic: None,
        },
    );
    a.clauses.push(format!(
        "5xx {} ({}/{}) ≥ critical {}, {}",
        pct(rate),
        count(n.errors),
        count(n.requests),
        pct(critical),
        live_rate(live_name, l)
    ));
    true
}

/// The relative error-rate test: new vs live.
struct Relative {
    diff: f64,
    p: f64,
    z: Option<f64>,
    fail: bool,
}

fn relative_errors(c: &Criteria, n: &Sample, l: &Sample) -> Relative {
    let (e1, n1, e2, n2) = (n.errors, n.requests, l.errors, l.requests);
    let diff = e1 / n1 - e2 / n2.max(1.0);
    let (p, z) = stats::two_proportion(
        e1.round() as u64,
        n1.round() as u64,
        e2.round() as u64,
        n2.round() as u64,
    );
    Relative {
        diff,
        p,
        z,
        fail: diff > c.max_error_rate_increase && p < 1.0 - c.confidence,
    }
}

pub(super) fn assess_errors(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) {
    let (n, l) = (&ev.new, &ev.live);
    let rate = n.errors / n.requests;
    let alpha = 1.0 - c.confidence;
    let comparable = l.requests >= c.min_requests as f64;

    // Against the threshold: is the true rate above it, beyond reasonable doubt?
    let p_abs = (rate > c.max_error_rate)
        .then(|| stats::binomial_sf(n.errors.round() as u64, n.requests.round() as u64, c.max_error_rate));
    let over = p_abs.is_some_and(|p| p < alpha);
    let rel = comparable.then(|| relative_errors(c, n, l));
    let rel_fail = rel.as_ref().is_some_and(|r| r.fail);
    let live_over = comparable && l.errors / l.requests > c.max_error_rate;

    // Fast path, when configured, also on judged evidence.
    if let Some(critical) = c.critical_error_rate
        && rate >= critical
        && n.requests >= c.critical_min_requests as f64
    {
        let shared = comparable && l.errors / l.requests >= critical && !rel_fail;
        a.critical |= !shared;
        a.record(
            "critical error rate",
            Finding {
                check: "critical_error_rate".into(),
                status: if shared { Status::Shared } else { Status::Fail },
                value: rate,
                threshold: critical,
                live: l.error_rate(),
                p_value: None,
                statistic: None,
            },
        );
    }

    let abs_status = match (over, live_over && !rel_fail) {
        (false, _) => Status::Ok,
        (true, true) => Status::Shared,
        (true, false) => Status::Fail,
    };
    a.record(
        "error rate too high",
        Finding {
            check: "error_rate".into(),
            status: abs_status,
            value: rate,
            threshold: c.max_error_rate,
            live: comparable.then(|| l.errors / l.requests),
            p_value: p_abs,
            statistic: None,
        },
    );
    let mut clause = format!(
        "5xx {} ({}/{}) {} {}",
        pct(rate),
        count(n.errors),
        count(n.requests),
        if over { ">" } else { "≤" },
        pct(c.max_error_rate)
    );
    if let Some(p) = p_abs {
        clause.push_str(&format!(
            " ({}{})",
            fmt_p(p),
            if over { "" } else { ", not significant" }
        ));
    }
    match &rel {
        Some(r) => {
            a.record(
                "error rate too high vs live",
                Finding {
                    check: "error_rate_vs_live".into(),
                    status: if r.fail { Status::Fail } else { Status::Ok },
                    value: r.diff,
                    threshold: c.max_error_rate_increase,
                    live: Some(l.errors / l.requests),
                    p_value: Some(r.p),
                    statistic: r.z,
                },
            );
            let test = match r.z {
                Some(z) => format!("z = {z:.2}, {}", fmt_p(r.p)),
                None => format!("Fisher {}", fmt_p(r.p)),
            };
            clause.push_str(&format!(
                ", vs {live_name} {} ({}/{}): {:+.2} pp {} +{:.2} pp ({test})",
                pct(l.errors / l.requests),
                count(l.errors),
                count(l.requests),
                r.diff * 100.0,
                if r.fail { ">" } else { "≤" },
                c.max_error_rate_increase * 100.0,
            ));
            if !r.fail && r.diff > c.max_error_rate_increase {
                clause.push_str(&format!(" not significant at {}", pct0(c.confidence)));
            }
        }
        None => clause.push_str(&format!(", {}", live_rate(live_name, l))),
    }
    a.clauses.push(clause);
}

pub(super) fn assess_latency(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) {
    let (n, l) = (&ev.new, &ev.live);
    let Some(lat) = n.latency else {
        if c.max_latency.is_some() || c.max_latency_ratio.is_some() {
            a.clauses.push("latency no data".into());
        }
        return;
    };
    let live_lat = l.latency.filter(|&x| x > 0.0 && l.requests >= c.min_requests as f64);
    let ratio = live_lat.map(|ll| lat / ll);
    let ratio_fail = matches!((ratio, c.max_latency_ratio), (Some(r), Some(max)) if r > max);
    let mut clause = format!("latency {}", ms(lat));
    if let Some(max) = c.max_latency {
        let over = lat > max;
        let shared = over && !ratio_fail && live_lat.is_some_and(|ll| ll > max);
        a.record(
            "latency too high",
            Finding {
                check: "latency".into(),
                status: match (over, shared) {
                    (false, _) => Status::Ok,
                    (true, true) => Status::Shared,
                    (true, false) => Status::Fail,
                },
                value: lat,
                threshold: max,
                live: live_lat,
                p_value: None,
                statistic: None,
            },
        );
        clause.push_str(&format!(" {} {}", if over { ">" } else { "≤" }, ms(max)));
    }
    match (live_lat, ratio) {
        (Some(ll), Some(r)) => {
            clause.push_str(&format!(", vs {live_name} {} ×{r:.2}", ms(ll)));
            if let Some(max) = c.max_latency_ratio {
                a.record(
                    "latency too high vs live",
                    Finding {
                        check: "latency_vs_live".into(),
                        status: if ratio_fail { Status::Fail } else { Status::Ok },
                        value: r,
                        threshold: max,
                        live: Some(ll),
                        p_value: None,
                        statistic: Some(r),
                    },
                );
                clause.push_str(&format!(" {} ×{max:.2}", if ratio_fail { ">" } else { "≤" }));
            }
        }
        _ if c.max_latency_ratio.is_some() => clause.push_str(&format!(", too little {live_name} traffic to compare")),
        _ => {}
    }
    a.clauses.push(clause);
}

/// `[[rollback.metrics]]`, judged per window (they are not counts that add up).
pub(super) fn assess_metrics(c: &Criteria, live_name: &str, w: &Window, a: &mut Assessment) {
    for (i, m) in c.metrics.iter().enumerate() {
        let s = w.metrics.get(i).copied().unwrap_or_default();
        let Some(v) = s.new else {
            a.clauses.push(format!("{} no data", m.name));
            continue;
        };
        let crosses = |x: f64| match m.direction {
            Direction::Above => x > m.threshold,
            Direction::Below => x < m.threshold,
        };
        let live = s.live.filter(|_| m.compare_with_live);
        // How much worse the new colour is than the live one, as a factor ≥ 1 when worse.
        let ratio = live.map(|l| match m.direction {
            Direction::Above => ratio_of(v, l),
            Direction::Below => ratio_of(l, v),
        });
        let ratio_fail = matches!((ratio, m.max_ratio), (Some(r), Some(max)) if r > max);
        let crossed = crosses(v);
        let shared = crossed && !ratio_fail && live.is_some_and(crosses);
        let status = if ratio_fail || (crossed && !shared) {
            Status::Fail
        } else if shared {
            Status::Shared
        } else {
            Status::Ok
        };
        let word = match m.direction {
            Direction::Above => "too high",
            Direction::Below => "too low",
        };
        a.record(
            &format!("{} {word}", m.name),
            Finding {
                check: format!("metric:{}", m.name),
                status,
                value: v,
                threshold: m.threshold,
                live,
                p_value: None,
                statistic: ratio,
            },
        );
        let bad = match m.direction {
            Direction::Above => (">", "≤"),
            Direction::Below => ("<", "≥"),
        };
        let mut clause = format!(
            "{} {} {} {}",
            m.name,
            num(v),
            if crossed { bad.0 } else { bad.1 },
            num(m.threshold)
        );
        if let Some(l) = live {
            clause.push_str(&format!(", vs {live_name} {}", num(l)));
            if let (Some(r), Some(max)) = (ratio, m.max_ratio) {
                clause.push_str(&format!(" ×{r:.2} {} ×{max:.2}", if ratio_fail { ">" } else { "≤" }));
            }
        } else if m.compare_with_live {
            clause.push_str(&format!(", {live_name} no data"));
        }
        a.clauses.push(clause);
    }
}
