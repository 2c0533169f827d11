//! A verdict as one short live-log line, and its numbers as fields.
//!
//! The judge's `reason` says everything (the tests, p-values, the evidence window) and can
//! run to 280 characters; at 3 a.m. on an 80-column terminal what matters is the verdict, the
//! number that decided it and the streak, first. So the human line is built from the
//! verdict's findings, and the whole reason travels in the JSON form's `reason` field:
//!
//! ```text
//! green FAIL 2/2 → ROLLBACK: 5xx 30% (30/100) > 5% · bake 2s/5s
//! green pass: 5xx 0.1% (1/1000), latency 52ms · bake 1m/10m
//! ```

use crate::judge::{Finding, Outcome, Status, Verdict};

use super::Fields;

/// The line for `verdict` on the new colour `new`; `streak_limit` is the plan's
/// `failures_to_rollback` when the renderer knows it; `bake` the bake's progress (`2s/5s`).
pub(super) fn line(new: &str, v: &Verdict, streak_limit: Option<u32>, bake: Option<String>) -> String {
    let limit = streak_limit.or_else(|| limit_in(&v.reason));
    let (new_sample, _) = samples(v);
    let mut out = match v.outcome {
        Outcome::Fail => {
            let mut head = if v.critical {
                "FAIL (critical)".to_string()
            } else {
                match limit {
                    Some(m) => format!("FAIL {}/{m}", v.failures),
                    None => format!("FAIL {}", v.failures),
                }
            };
            if v.rollback {
                head.push_str(" → ROLLBACK");
            } else if v.would_rollback {
                head.push_str(" → would roll back (advisory mode: not rolling back)");
            }
            // A comparison with live adds nothing to the line when the absolute check it
            // compares failed too (30% > 5% says it; "+30pp over live" only widens the line
            // past 80 columns): the JSON's findings keep both.
            let failed = |check: &str| v.findings.iter().any(|f| f.check == check && f.status != Status::Ok);
            let decided: Vec<String> = v
                .findings
                .iter()
                .filter(|f| f.status != Status::Ok)
                .filter(|f| !(f.check == "error_rate_vs_live" && failed("error_rate")))
                .filter(|f| !(f.check == "latency_vs_live" && failed("latency")))
                .map(|f| finding(f, v))
                .collect();
            if decided.is_empty() {
                // No finding failed: no data counted as a failure (on_no_data = rollback).
                format!("{new} {head}: no requests reached {new}")
            } else {
                format!("{new} {head}: {}", decided.join(", "))
            }
        }
        Outcome::Pass => format!("{new} pass: {}", numbers(v)),
        Outcome::Inconclusive => format!(
            "{new} inconclusive: {} requests so far, {}",
            count(new_sample.requests),
            if v.evidence_pending {
                "gathering evidence"
            } else {
                "too few to judge"
            }
        ),
        Outcome::NoData => format!("{new} no data: no requests reached {new}"),
        Outcome::SharedFailure => {
            let shared: Vec<String> = v
                .findings
                .iter()
                .filter(|f| f.status == Status::Shared)
                .map(|f| finding(f, v))
                .collect();
            format!(
                "{new} shared failure, not blamed: {} (on both colours)",
                if shared.is_empty() {
                    "a threshold".into()
                } else {
                    shared.join(", ")
                }
            )
        }
    };
    if let Some(bake) = bake {
        out.push_str(&format!(" · bake {bake}"));
    }
    out
}

/// The verdict's numbers as fields for the JSON form.
pub(super) fn fields(v: &Verdict, streak_limit: Option<u32>) -> Fields {
    let (n, l) = samples(v);
    let threshold = |check: &str| v.findings.iter().find(|f| f.check == check).map(|f| f.threshold);
    Fields {
        reason: Some(v.reason.clone()),
        verdict: Some(v.outcome.as_str()),
        streak: Some(v.failures),
        streak_limit: streak_limit.or_else(|| limit_in(&v.reason)),
        rollback: Some(v.rollback),
        requests: Some(n.requests),
        errors: Some(n.errors),
        error_rate: n.error_rate(),
        threshold: threshold("error_rate"),
        latency_seconds: n.latency,
        latency_threshold_seconds: threshold("latency"),
        live_requests: Some(l.requests),
        live_error_rate: l.error_rate(),
        ..Fields::default()
    }
}

/// The new and the live colour's numbers the verdict was reached on: its evidence (several
/// periods added together), else its one window.
fn samples(v: &Verdict) -> (crate::judge::Sample, crate::judge::Sample) {
    match &v.evidence {
        Some(ev) => (ev.new, ev.live),
        None => (v.window.new, v.window.live),
    }
}

/// `5xx 0.10% (1/1000), latency 52ms`
fn numbers(v: &Verdict) -> String {
    let (n, _) = samples(v);
    let mut out = format!(
        "5xx {} ({}/{})",
        pct(n.error_rate().unwrap_or(0.0)),
        count(n.errors),
        count(n.requests)
    );
    if let Some(l) = n.latency {
        out.push_str(&format!(", latency {}", ms(l)));
    }
    out
}

/// One failed (or shared) check, with the number that decided it and its threshold.
fn finding(f: &Finding, v: &Verdict) -> String {
    let (n, _) = samples(v);
    let live = f.live.map(pct).unwrap_or_else(|| "?".into());
    match f.check.as_str() {
        "error_rate" => format!(
            "5xx {} ({}/{}) > {}",
            pct(f.value),
            count(n.errors),
            count(n.requests),
            pct(f.threshold)
        ),
        "error_rate_vs_live" => format!(
            "5xx {}pp over live ({live}) > {}pp",
            signed(pct(f.value).trim_end_matches('%')),
            signed(pct(f.threshold).trim_end_matches('%'))
        ),
        "critical_error_rate" => format!("5xx {} ≥ {} critical", pct(f.value), pct(f.threshold)),
        "latency" => format!("latency {} > {}", ms(f.value), ms(f.threshold)),
        "latency_vs_live" => format!("latency {:.2}× live > {}×", f.value, f.threshold),
        other => format!(
            "{} {} (threshold {})",
            other.strip_prefix("metric:").unwrap_or(other),
            num(f.value),
            num(f.threshold)
        ),
    }
}

/// The streak limit in a judge's reason (`… — fail 1/2`), for a renderer that has no plan
/// (`cutover watch`).
fn limit_in(reason: &str) -> Option<u32> {
    let rest = &reason[reason.rfind(" — fail ")? + " — fail ".len()..];
    let (_, after) = rest.split_once('/')?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
}

/// A percentage to two decimals without trailing zeros (`30%`, `0.1%`, `0.12%`): the line
/// must fit 80 columns with the time and level in front.
fn pct(x: f64) -> String {
    let s = format!("{:.2}", x * 100.0);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}%")
}

/// A number with its sign, `+` for positive ones (`+0.5`).
fn signed(n: &str) -> String {
    if n.starts_with('-') {
        n.to_string()
    } else {
        format!("+{n}")
    }
}

fn count(x: f64) -> String {
    format!("{x}")
}

fn ms(secs: f64) -> String {
    format!("{:.0}ms", secs * 1000.0)
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::judge::{Evidence, Sample, Window};

    /// A verdict on 30 errors in 100 requests, with `failures` and `rollback` as given.
    pub(in crate::live_log) fn verdict(
        outcome: Outcome,
        failures: u32,
        rollback: bool,
        findings: Vec<Finding>,
    ) -> Verdict {
        let new = Sample {
            requests: 100.0,
            errors: 30.0,
            latency: Some(0.05),
        };
        let live = Sample {
            requests: 100.0,
            errors: 0.0,
            latency: Some(0.05),
        };
        Verdict {
            outcome,
            window: Window {
                start: 0,
                end: 1,
                new,
                live,
                metrics: vec![],
            },
            failures,
            counts_toward_bake: true,
            rollback,
            would_rollback: rollback,
            critical: false,
            evidence: Some(Evidence {
                start: 0,
                end: 1,
                windows: 1,
                new,
                live,
            }),
            evidence_pending: false,
            findings,
            reason: format!(
                "error rate too high: 5xx 30.00% (30/100) > 5.00% (exact binomial, p < 0.001), latency 50ms ≤ 250ms \
                 vs live 0.00% (0/100) [evidence 00:00:00–00:00:01, 1 window] — fail {failures}/2{}",
                if rollback { " → rollback" } else { "" }
            ),
        }
    }

    pub(in crate::live_log) fn error_rate(status: Status) -> Finding {
        Finding {
            check: "error_rate".into(),
            status,
            value: 0.3,
            threshold: 0.05,
            live: None,
            p_value: Some(0.0001),
            statistic: None,
            test: None,
            log_e_value: None,
            log_threshold: None,
            bound: None,
        }
    }

    /// Regression (issue 14.2): the decisive part of a verdict came last in a 280-character
    /// line; now the verdict, the streak and the number that decided lead, within 80 columns.
    #[test]
    fn a_failing_verdict_leads_with_the_streak_and_the_number_that_decided() {
        let v = verdict(Outcome::Fail, 2, true, vec![error_rate(Status::Fail)]);
        let text = line("green", &v, None, Some("2s/5s".into()));
        assert_eq!(text, "green FAIL 2/2 → ROLLBACK: 5xx 30% (30/100) > 5% · bake 2s/5s");
        // With the time and level in front, it still fits 80 columns.
        assert!(format!("02:46:30 WARN  {text}").chars().count() <= 80, "{text}");
        let first = verdict(Outcome::Fail, 1, false, vec![error_rate(Status::Fail)]);
        assert_eq!(
            line("green", &first, Some(3), None),
            "green FAIL 1/3: 5xx 30% (30/100) > 5%"
        );
    }

    #[test]
    fn other_verdicts_say_what_they_are_first() {
        let mut pass = verdict(Outcome::Pass, 0, false, vec![error_rate(Status::Ok)]);
        pass.evidence.as_mut().unwrap().new.errors = 1.0;
        assert_eq!(
            line("green", &pass, None, Some("1m/10m".into())),
            "green pass: 5xx 1% (1/100), latency 50ms · bake 1m/10m"
        );
        let none = verdict(Outcome::NoData, 0, false, vec![]);
        assert_eq!(
            line("blue", &none, None, None),
            "blue no data: no requests reached blue"
        );
        let gathering = verdict(Outcome::Inconclusive, 0, false, vec![]);
        assert!(line("green", &gathering, None, None).starts_with("green inconclusive: 100 requests so far"));
    }

    /// Seen in the demo: both the absolute and the vs-live check failed, and the line said
    /// both, 105 columns with the time in front.
    #[test]
    fn a_comparison_with_live_is_left_out_when_the_absolute_check_failed_too() {
        let vs_live = Finding {
            check: "error_rate_vs_live".into(),
            value: 0.3,
            threshold: 0.005,
            live: Some(0.0),
            ..error_rate(Status::Fail)
        };
        let both = verdict(Outcome::Fail, 2, true, vec![error_rate(Status::Fail), vs_live.clone()]);
        assert_eq!(
            line("blue", &both, Some(2), Some("2s/5s".into())),
            "blue FAIL 2/2 → ROLLBACK: 5xx 30% (30/100) > 5% · bake 2s/5s"
        );
        // Alone, it is the number that decided.
        let only = verdict(Outcome::Fail, 1, false, vec![error_rate(Status::Ok), vs_live]);
        assert_eq!(
            line("blue", &only, Some(2), None),
            "blue FAIL 1/2: 5xx +30pp over live (0%) > +0.5pp"
        );
        // The JSON keeps both.
        assert_eq!(both.findings.len(), 2);
    }

    #[test]
    fn percentages_drop_trailing_zeros() {
        assert_eq!(pct(0.3), "30%");
        assert_eq!(pct(0.001), "0.1%");
        assert_eq!(pct(0.0012), "0.12%");
        assert_eq!(pct(0.0), "0%");
    }

    #[test]
    fn the_json_fields_carry_the_numbers_and_the_whole_reason() {
        let v = verdict(Outcome::Fail, 2, true, vec![error_rate(Status::Fail)]);
        let f = fields(&v, None);
        assert_eq!(f.verdict, Some("fail"));
        assert_eq!((f.streak, f.streak_limit, f.rollback), (Some(2), Some(2), Some(true)));
        assert_eq!(
            (f.requests, f.errors, f.error_rate),
            (Some(100.0), Some(30.0), Some(0.3))
        );
        assert_eq!(f.threshold, Some(0.05));
        assert_eq!(f.reason.as_deref(), Some(v.reason.as_str()));
    }
}
