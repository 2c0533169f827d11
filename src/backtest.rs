//! `cutover backtest`: the plan's criteria replayed over historical CloudWatch data.
//!
//! A team checks its thresholds against last week's incident before trusting them:
//! `cutover backtest --config plan.toml --new green --from T1 --to T2` fetches both
//! target groups' metrics for `[T1, T2)`, judges them period by period with the
//! same [`Judge`] a live cutover uses (the sequential tests over everything seen, the
//! recent window of the per-window checks, consecutive failures, the fast path, shared
//! failures, custom metrics), prints one line per period, and names the first point at
//! which the cutover would have rolled back.
//!
//! It writes nothing anywhere: no ELBv2 call at all, and no journal.
//!
//! How it maps onto a live cutover:
//!
//! 1. The range is cut to whole periods, and never past the newest *settled* one
//!    (`settle` ago), which is all a live judge could have seen.
//! 2. History is fetched in pages of [`CloudWatch::periods_per_call`] periods, so a
//!    week of 1-second data is read whole, not truncated.
//! 3. The quarter hour before `--from` is the live colour's baseline, read and judged as
//!    verify would have: a live colour already failing the plan's thresholds means the
//!    cutover would not have started (the replay goes on, for the record).
//! 4. The whole range is one judge, as a whole cutover is: one body of evidence, one
//!    failure streak.
//! 5. A period ending at `E` is judged, live, once it has settled: at `E + settle`
//!    (plus up to one `poll_interval`). That is when the rollback would have happened.
//! 6. `mode = "advise"` makes no difference here: the question is what the criteria
//!    call for. Alarm history is not replayed.
//!
//! Exit codes: 0 would not have rolled back, 3 would have, 5 would not have started, 2 usage
//! or plan error, 1 other errors.
//!
//! `--output json` prints JSON lines instead: one `{"type": "baseline", …}` (the live colour's
//! quarter hour before the range), one `{"type": "period", …}` per period (its start and end,
//! verdict, numbers, whole reason, and `first_rollback` on the first that would have rolled
//! back) and one `{"type": "summary", …}` at the end.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tracing::error;

use crate::color::Color;
use crate::config::{self, Plan};
use crate::judge::{Baseline, Judge, Outcome, Verdict};
use crate::metrics::{self, CloudWatch, Metrics, MetricsError};

/// Exit code: the criteria would not have rolled back.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: the criteria would have rolled back (the same code as a real automatic rollback).
pub const EXIT_WOULD_ROLL_BACK: i32 = 3;
/// Exit code: usage or plan error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the live colour already failed the plan's thresholds before `--from` (the same code
/// as a cutover that verify refuses to start).
pub const EXIT_WOULD_NOT_START: i32 = 5;

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Periods judged, by outcome: pass, fail, inconclusive, no data, shared failure.
    pub counts: [u64; 5],
    /// The first verdict that called for a rollback, and when a live judge would have reached it.
    pub first_rollback: Option<(Verdict, u64)>,
    /// Why verify would have refused to start: the live colour failing before `--from`.
    pub not_started: Option<String>,
}

impl Report {
    pub fn windows(&self) -> u64 {
        self.counts.iter().sum()
    }
}

fn slot(o: Outcome) -> usize {
    match o {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
        Outcome::Inconclusive => 2,
        Outcome::NoData => 3,
        Outcome::SharedFailure => 4,
    }
}

/// `cutover backtest`: loads the plan, reads CloudWatch, prints, and returns the exit code.
pub async fn run(config: &Path, new: Color, from: &str, to: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let plan = match config::load(config) {
        Ok(p) => p,
        Err(e) => {
            error!("invalid plan: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let now = SystemTime::now();
    let range = parse_time(from, now).and_then(|f| Ok((f, to.map_or(Ok(now), |t| parse_time(t, now))?)));
    let (from, to) = match range {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return Ok(EXIT_USAGE);
        }
    };
    let Some((from, to)) = periods(&plan, from, to, now) else {
        error!(
            "nothing to replay: --from must be before --to, and the range must hold at least one whole {} period that ended at least settle ({}) ago",
            humantime::format_duration(plan.metrics.period),
            humantime::format_duration(plan.metrics.settle)
        );
        return Ok(EXIT_USAGE);
    };
    // Through the counted clients, like every other command (the IAM policy test reads the counts).
    let clients = crate::aws::Clients::load(
        crate::aws::arn_region(&plan.alb.listener_arn),
        crate::aws::Patience::Driving,
    )
    .await;
    let cw = CloudWatch::new(clients.cloudwatch, &plan.metrics, &plan.alb, new, &plan.rollback.alarms)
        .with_custom(&plan.rollback.metrics);
    let chunk = cw.periods_per_call();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let report = replay(&plan, &cw, chunk, new, from, to, json, &mut out)
        .await
        .context("reading CloudWatch history")?;
    Ok(conclude(&plan, new, &report, json, &mut out)?)
}

/// `[from, to)` cut to whole periods and to the newest settled one; `None` when empty.
pub fn periods(plan: &Plan, from: SystemTime, to: SystemTime, now: SystemTime) -> Option<(u64, u64)> {
    let m = &plan.metrics;
    let p = m.period.as_secs().max(1);
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let from = secs(from) / p * p;
    let to = (secs(to) / p * p).min(metrics::settled_end(now, m.settle, m.period));
    (to > from).then_some((from, to))
}

/// An RFC 3339 time (`2026-05-01T10:00:00Z`), or a duration ago (`3h`, `90m`), or `now`.
pub fn parse_time(s: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    if s == "now" {
        return Ok(now);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now - d);
    }
    anyhow::bail!("{s:?} is not a time: use RFC 3339 (2026-05-01T10:00:00Z) or a duration ago (3h)")
}

/// Judges every period of `[from, to)`, fetched `chunk` periods per call, printing one line
/// each (a JSON line each with `json`).
#[allow(
    clippy::too_many_arguments,
    reason = "the range, the page size and the output form are each the caller's to choose"
)]
pub async fn replay<M: Metrics>(
    plan: &Plan,
    metrics: &M,
    chunk: u64,
    new: Color,
    from: u64,
    to: u64,
    json: bool,
    out: &mut impl Write,
) -> Result<Report, MetricsError> {
    let p = plan.metrics.period.as_secs().max(1);
    let settle = plan.metrics.settle.as_secs();
    let criteria = &plan.rollback.criteria;
    let mut report = Report::default();
    if !json {
        let _ = writeln!(
            out,
            "backtest of {} ({new} new, {} live): {} periods {} → {}",
            plan.service,
            new.other(),
            humantime::format_duration(plan.metrics.period),
            rfc3339(from),
            rfc3339(to)
        );
    }
    // The baseline, as verify reads it: the quarter hour before the start.
    let before = from.saturating_sub(Baseline::periods_for(p) * p);
    let mut history = Vec::new();
    let mut t = before;
    while t < from {
        let end = from.min(t + chunk.max(1) * p);
        history.extend(metrics.windows(t, end).await?);
        t = end;
    }
    let mut judge = Judge::new(criteria.clone()).named(new.other());
    match Baseline::from_windows(&history, criteria) {
        Some(b) => {
            let failing = b.failing(criteria, &new.other().to_string());
            if json {
                let line = serde_json::json!({
                    "type": "baseline",
                    "color": new.other(),
                    "start": rfc3339(b.start),
                    "end": rfc3339(b.end),
                    "periods": b.periods,
                    "requests": b.requests,
                    "errors": b.errors,
                    "error_rate": b.error_rate(),
                    "failing": failing,
                });
                let _ = writeln!(out, "{line}");
            } else {
                let _ = writeln!(
                    out,
                    "baseline of {} {} → {}: {} periods, 5xx {:.2}% ({}/{}){}",
                    new.other(),
                    rfc3339(b.start),
                    rfc3339(b.end),
                    b.periods,
                    b.error_rate() * 100.0,
                    b.errors,
                    b.requests,
                    if failing.is_empty() {
                        String::new()
                    } else {
                        format!("; already failing: {}", failing.join("; "))
                    }
                );
            }
            if !failing.is_empty() {
                report.not_started = Some(failing.join("; "));
            }
            judge.set_baseline(b);
        }
        None if json => {
            let line = serde_json::json!({"type": "baseline", "color": new.other(), "periods": 0});
            let _ = writeln!(out, "{line}");
        }
        None => {
            let _ = writeln!(
                out,
                "no baseline: {} served no request in the {} periods before {}",
                new.other(),
                Baseline::periods_for(p),
                rfc3339(from)
            );
        }
    }
    let mut t = from;
    while t < to {
        let end = to.min(t + chunk.max(1) * p);
        for w in metrics.windows(t, end).await? {
            let v = judge.judge(&w);
            report.counts[slot(v.outcome)] += 1;
            let first = v.would_rollback && report.first_rollback.is_none();
            let decided = w.end + settle;
            if json {
                let n = &v.window.new;
                let line = serde_json::json!({
                    "type": "period",
                    "start": rfc3339(w.start),
                    "end": rfc3339(w.end),
                    "verdict": v.outcome.as_str(),
                    "streak": v.failures,
                    "would_rollback": v.would_rollback,
                    "requests": n.requests,
                    "errors": n.errors,
                    "error_rate": n.error_rate(),
                    "latency_seconds": n.latency,
                    "reason": v.reason,
                    "first_rollback": first.then(|| rfc3339(decided)),
                });
                let _ = writeln!(out, "{line}");
            } else {
                let mut line = format!("{} {new} {}: {}", rfc3339(w.start), v.outcome.as_str(), v.reason);
                if first {
                    line.push_str(&format!("  ◀ first rollback, live at {}", rfc3339(decided)));
                }
                let _ = writeln!(out, "{line}");
            }
            if first {
                report.first_rollback = Some((v, decided));
            }
        }
        t = end;
    }
    Ok(report)
}

/// Prints the conclusion and gives the exit code.
pub fn conclude(plan: &Plan, new: Color, report: &Report, json: bool, out: &mut impl Write) -> std::io::Result<i32> {
    let [pass, fail, inconclusive, no_data, shared] = report.counts;
    if json {
        let first = report.first_rollback.as_ref().map(|(v, decided)| {
            serde_json::json!({
                "at": rfc3339(*decided),
                "period_start": rfc3339(v.window.start),
                "period_end": rfc3339(v.window.end),
                "reason": v.reason,
            })
        });
        let line = serde_json::json!({
            "type": "summary",
            "service": plan.service,
            "new_color": new,
            "periods": report.windows(),
            "counts": {"pass": pass, "fail": fail, "inconclusive": inconclusive, "no_data": no_data, "shared_failure": shared},
            "would_start": report.not_started.is_none(),
            "not_started_reason": report.not_started,
            "would_roll_back": first.is_some(),
            "first_rollback": first,
        });
        writeln!(out, "{line}")?;
        return Ok(if report.not_started.is_some() {
            EXIT_WOULD_NOT_START
        } else if report.first_rollback.is_some() {
            EXIT_WOULD_ROLL_BACK
        } else {
            EXIT_CLEAN
        });
    }
    let tally = format!(
        "{} periods: {pass} pass, {fail} fail, {inconclusive} inconclusive, {no_data} no data, {shared} shared failure",
        report.windows()
    );
    if let Some(why) = &report.not_started {
        writeln!(
            out,
            "would not have started: {} already failed the plan's thresholds before the range: {why}",
            new.other(),
        )?;
        writeln!(out, "{tally}")?;
        return Ok(EXIT_WOULD_NOT_START);
    }
    match &report.first_rollback {
        Some((v, decided)) => {
            writeln!(
                out,
                "would have rolled back at {} (period {} → {}, judged once settled, within one poll_interval of {}): {new} {}",
                rfc3339(*decided),
                rfc3339(v.window.start),
                rfc3339(v.window.end),
                humantime::format_duration(plan.metrics.poll_interval),
                v.reason
            )?;
            writeln!(out, "{tally}")?;
            Ok(EXIT_WOULD_ROLL_BACK)
        }
        None => {
            writeln!(out, "would not have rolled back; {tally}")?;
            Ok(EXIT_CLEAN)
        }
    }
}

fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeMetrics;
    use crate::judge::{Sample, Window};
    use std::sync::Mutex;

    const PLAN: &str = r#"
[service]
name = "svc"
[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/1"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/g/2"
[metrics]
period = "60s"
settle = "120s"
[rollback]
max_error_rate = 0.01
min_requests = 100
"#;

    fn plan() -> Plan {
        config::parse(Path::new("plan.toml"), PLAN).unwrap()
    }

    /// A recorded history: the new colour's errors per period, and the calls made to read it.
    struct History {
        errors: Vec<f64>,
        start: u64,
        calls: Mutex<Vec<(u64, u64)>>,
    }

    impl Metrics for History {
        async fn windows(&self, from: u64, to: u64) -> Result<Vec<Window>, MetricsError> {
            self.calls.lock().unwrap().push((from, to));
            // The history begins at `start`: nothing before it (so no baseline).
            Ok((from.max(self.start)..to)
                .step_by(60)
                .map(|t| {
                    let i = ((t - self.start) / 60) as usize;
                    Window {
                        start: t,
                        end: t + 60,
                        new: Sample {
                            requests: 1000.0,
                            errors: self.errors.get(i).copied().unwrap_or(0.0),
                            latency: Some(0.05),
                        },
                        live: Sample {
                            requests: 1000.0,
                            errors: 1.0,
                            latency: Some(0.05),
                        },
                        metrics: vec![],
                    }
                })
                .collect())
        }
        async fn alarms(&self) -> Result<metrics::Alarms, MetricsError> {
            Ok(Default::default())
        }
    }

    #[tokio::test]
    async fn names_the_first_rollback_and_pages_through_history() {
        let start = 1_800_000_000 / 60 * 60;
        let mut errors = vec![0.0; 10];
        errors.extend([50.0, 60.0, 70.0]);
        let history = History {
            errors,
            start,
            calls: Mutex::new(vec![]),
        };
        let mut out = Vec::new();
        let report = replay(
            &plan(),
            &history,
            4,
            Color::Green,
            start,
            start + 13 * 60,
            false,
            &mut out,
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        // The baseline's 15 periods before the range, then the 13 periods of the range, in pages of
        // 4: every period read once, none skipped.
        assert_eq!(
            history
                .calls
                .lock()
                .unwrap()
                .iter()
                .map(|(f, t)| (t - f) / 60)
                .collect::<Vec<_>>(),
            [4, 4, 4, 3, 4, 4, 4, 1]
        );
        assert_eq!(report.counts, [10, 3, 0, 0, 0]);
        let (v, decided) = report.first_rollback.clone().unwrap();
        // The 12th period (index 11) is the second consecutive failure; live, it is judged 2 minutes after it ends.
        assert_eq!(v.window.start, start + 11 * 60);
        assert_eq!(decided, start + 12 * 60 + 120);
        assert_eq!(text.lines().count(), 15, "{text}");
        assert!(
            text.contains("no baseline: blue served no request in the 15 periods before"),
            "{text}"
        );
        assert!(
            text.contains("green fail: error rate too high, also vs live: 5xx 6.00% (60/1000)"),
            "{text}"
        );
        assert_eq!(text.matches("◀ first rollback").count(), 1, "{text}");
        let mut out = Vec::new();
        assert_eq!(
            conclude(&plan(), Color::Green, &report, false, &mut out).unwrap(),
            EXIT_WOULD_ROLL_BACK
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("would have rolled back at 2027-01-15T08:14:00Z"),
            "{text}"
        );
    }

    /// Regression (issue 14.4): `backtest` had no `--output json`.
    #[tokio::test]
    async fn json_output_is_one_line_per_period_and_a_summary() {
        let start = 1_800_000_000 / 60 * 60;
        let mut errors = vec![0.0; 10];
        errors.extend([50.0, 60.0, 70.0]);
        let history = History {
            errors,
            start,
            calls: Mutex::new(vec![]),
        };
        let mut out = Vec::new();
        let report = replay(
            &plan(),
            &history,
            4,
            Color::Green,
            start,
            start + 13 * 60,
            true,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            conclude(&plan(), Color::Green, &report, true, &mut out).unwrap(),
            EXIT_WOULD_ROLL_BACK
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        // The baseline, 13 periods, the summary.
        assert_eq!(lines.len(), 15);
        assert_eq!(lines[0]["type"], "baseline");
        assert_eq!(lines[12]["verdict"], "fail");
        assert_eq!(lines[12]["first_rollback"], "2027-01-15T08:14:00Z");
        assert_eq!(lines[12]["requests"], 1000.0);
        let summary = &lines[14];
        assert_eq!(summary["type"], "summary");
        assert_eq!(summary["counts"]["fail"], 3);
        assert_eq!(summary["first_rollback"]["at"], "2027-01-15T08:14:00Z");
    }

    #[tokio::test]
    async fn a_healthy_history_would_not_have_rolled_back() {
        let metrics = FakeMetrics::healthy(60);
        metrics.set_live(Sample {
            requests: 1000.0,
            errors: 2.0,
            latency: Some(0.05),
        });
        let mut out = Vec::new();
        let report = replay(&plan(), &metrics, 1440, Color::Blue, 0, 3600, false, &mut out)
            .await
            .unwrap();
        assert_eq!(report.counts, [60, 0, 0, 0, 0]);
        let mut out = Vec::new();
        assert_eq!(
            conclude(&plan(), Color::Blue, &report, false, &mut out).unwrap(),
            EXIT_CLEAN
        );
        assert_eq!(
            String::from_utf8(out).unwrap().trim(),
            "would not have rolled back; 60 periods: 60 pass, 0 fail, 0 inconclusive, 0 no data, 0 shared failure"
        );
    }

    /// Regression (issue 10): a live colour already failing the plan's thresholds in the quarter
    /// hour before the range would have stopped verify; the backtest says so, with exit 5, and
    /// still replays the range.
    #[tokio::test]
    async fn a_live_colour_failing_before_the_range_would_not_have_started() {
        let metrics = FakeMetrics::healthy(60);
        metrics.set_live(Sample {
            requests: 1000.0,
            errors: 200.0,
            latency: Some(0.05),
        });
        let mut out = Vec::new();
        let report = replay(&plan(), &metrics, 1440, Color::Green, 3600, 7200, false, &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("baseline of blue 1970-01-01T00:45:00Z → 1970-01-01T01:00:00Z: 15 periods, 5xx 20.00% (3000/15000); already failing: blue's error rate 20.00%"),
            "{text}"
        );
        assert_eq!(report.windows(), 60);
        let mut out = Vec::new();
        assert_eq!(
            conclude(&plan(), Color::Green, &report, false, &mut out).unwrap(),
            EXIT_WOULD_NOT_START
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("would not have started: blue already failed the plan's thresholds before the range"),
            "{text}"
        );
    }

    #[test]
    fn the_range_is_whole_settled_periods() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let now = at(10_000);
        // Settled end: (10000 − 120) / 60 · 60 = 9840.
        assert_eq!(periods(&plan(), at(6_030), at(9_999), now), Some((6_000, 9_840)));
        assert_eq!(periods(&plan(), at(9_900), now, now), None);
        assert_eq!(parse_time("2h", now).unwrap(), at(10_000 - 7200));
        assert_eq!(parse_time("1970-01-01T01:00:00Z", now).unwrap(), at(3600));
        assert!(parse_time("yesterday", now).is_err());
    }
}
