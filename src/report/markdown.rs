//! The record in Markdown (GitHub's tables), for pasting into a ticket or a post-mortem.

use std::fmt::Write;

use super::record::*;
use super::words;
use crate::judge::Outcome as VerdictOutcome;

/// A table cell: pipes escaped, one line.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn row(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, names: &[&str]) {
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(names.len()));
}

/// The thresholds in one line: `error rate ≤ 5.00%, latency (Average) ≤ 250ms, …`.
pub(super) fn thresholds_line(t: &Thresholds) -> String {
    let mut parts = vec![];
    if let Some(e) = t.max_error_rate {
        parts.push(format!("error rate ≤ {}", words::rate(Some(e))));
    }
    if let Some(l) = t.max_latency_secs {
        let stat = match t.latency_statistic.as_deref() {
            Some(s) => format!(" ({s})"),
            None => String::new(),
        };
        parts.push(format!("latency{stat} ≤ {}", words::latency(Some(l))));
    }
    if let Some(n) = t.min_requests {
        parts.push(format!("at least {n} requests a verdict"));
    }
    if let Some(n) = t.failures_to_rollback {
        parts.push(format!("{n} failed verdicts in a row roll back"));
    }
    if !t.alarms.is_empty() {
        parts.push(format!("alarms {}", t.alarms.join(", ")));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

/// The record's rows, in the order the runbook asks for them: (label, value).
pub(super) fn record_rows(r: &Report) -> Vec<(&'static str, String)> {
    let color = |c: Option<crate::color::Color>| c.map(|c| c.to_string()).unwrap_or_else(|| "—".into());
    let mut rows = vec![
        ("Service", words::or_dash(Some(&r.service))),
        ("Cutover", r.id.clone()),
        ("Listener or rule", words::or_dash(r.target_arn.as_deref())),
        ("Plan", words::or_dash(r.plan.as_deref())),
        ("Started by", words::or_dash(r.started_by.as_deref())),
    ];
    if !r.vars.is_empty() {
        let vars: Vec<String> = r.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("Variables", vars.join(" ")));
    }
    rows.extend([
        ("Start", words::at(r.started_at.as_deref())),
        ("End", words::at(r.finished_at.as_deref())),
        ("Duration", words::duration(r.duration_secs)),
        ("Live colour", color(r.live_color)),
        ("Live before the start", words::or_dash(r.baseline.as_deref())),
        ("New colour", color(r.new_color)),
        ("Outcome", r.state.clone()),
        ("Reason", words::or_dash(r.reason.as_deref())),
        ("Initial weights", words::weights(r.initial_weights)),
        ("Final weights", words::weights(r.final_weights)),
        ("Thresholds", thresholds_line(&r.thresholds)),
    ]);
    for s in &r.shifts {
        rows.push((
            "At a shift",
            format!(
                "{}: error rate {}, {} {} (live {}, {})",
                s.label,
                words::rate(s.new.error_rate),
                stat(r),
                words::latency(s.new.latency_secs),
                words::rate(s.live.error_rate),
                words::latency(s.live.latency_secs)
            ),
        ));
    }
    match &r.rollback {
        Some(rb) => rows.extend([
            ("Rollback reason", rb.reason.clone()),
            ("Rollback trigger", rb.trigger.as_str().to_string()),
            ("Rollback initiated by", rb.initiated_by.clone()),
            ("Rollback started", rb.started_at.clone()),
            (
                "Traffic restored",
                match &rb.traffic_restored_at {
                    Some(at) => format!(
                        "{at} ({} after the start of the rollback)",
                        words::duration(rb.time_to_restore_secs)
                    ),
                    None => "not confirmed".into(),
                },
            ),
            ("Rollback completed", words::at(rb.completed_at.as_deref())),
        ]),
        None => rows.push(("Rollback", "none".into())),
    }
    rows
}

/// The latency statistic's name, for column headers.
pub(super) fn stat(r: &Report) -> String {
    r.thresholds
        .latency_statistic
        .clone()
        .unwrap_or_else(|| "latency".into())
}

/// The verdict counts of a step: `pass 3, fail 2`.
pub(super) fn verdicts(s: &ShiftRecord) -> String {
    if s.verdicts.is_empty() {
        return "—".into();
    }
    s.verdicts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of the "what happened" list.
pub(super) struct Line {
    pub t: f64,
    /// The mark's kind (`operator`, `rollback`, …), or `verdict`.
    pub kind: &'static str,
    pub what: String,
    pub text: String,
}

/// The timeline's lines in time order: every mark, and every verdict that failed (alone or
/// shared); passes, inconclusive verdicts and periods without data are in the counts.
pub(super) fn events(r: &Report) -> Vec<Line> {
    let mut lines: Vec<Line> = r
        .timeline
        .marks
        .iter()
        .map(|m| Line {
            t: m.t,
            kind: super::svg::kind_name(m.kind),
            what: {
                // The rollback is its own line, whichever event started it.
                let name = if m.kind == MarkKind::Rollback {
                    "rollback"
                } else {
                    &m.event
                };
                match &m.step {
                    Some(s) => format!("{name} ({s})"),
                    None => name.to_string(),
                }
            },
            text: match &m.by {
                Some(by) if !m.text.contains(by.as_str()) => format!("{} (by {by})", m.text),
                _ => m.text.clone(),
            },
        })
        .collect();
    for p in &r.timeline.periods {
        if matches!(p.outcome, VerdictOutcome::Fail | VerdictOutcome::SharedFailure) {
            lines.push(Line {
                t: p.t_end,
                kind: "verdict",
                what: format!("verdict {}", p.outcome.as_str()),
                text: p.reason.clone().unwrap_or_default(),
            });
        }
    }
    // Stable: marks journaled at the same instant keep their journal order.
    lines.sort_by(|a, b| a.t.total_cmp(&b.t));
    lines
}

/// The whole record as a Markdown document.
pub fn document(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Cutover report: {} {}\n", r.service, r.id);
    let _ = writeln!(
        out,
        "**{}**{}\n",
        r.state,
        r.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
    );

    let _ = writeln!(out, "## The record\n");
    header(&mut out, &["Field", "Value"]);
    for (k, v) in record_rows(r) {
        row(&mut out, &[k.to_string(), v]);
    }

    let _ = writeln!(out, "\n## At each shift\n");
    if r.shifts.is_empty() {
        let _ = writeln!(out, "No step was judged.");
    } else {
        let stat = stat(r);
        header(
            &mut out,
            &[
                "Step",
                "New colour's share",
                "Periods",
                "Requests (new)",
                "Error rate (new)",
                &format!("{stat} (new)"),
                &format!("max {stat} (new)"),
                "Error rate (live)",
                &format!("{stat} (live)"),
                "Verdicts",
            ],
        );
        for s in &r.shifts {
            row(
                &mut out,
                &[
                    s.label.clone(),
                    s.new_percent.map(|p| format!("{p}%")).unwrap_or_else(|| "—".into()),
                    s.periods.to_string(),
                    words::count(s.new.requests),
                    words::rate(s.new.error_rate),
                    words::latency(s.new.latency_secs),
                    words::latency(s.new.max_latency_secs),
                    words::rate(s.live.error_rate),
                    words::latency(s.live.latency_secs),
                    verdicts(s),
                ],
            );
        }
    }

    let _ = writeln!(out, "\n## Operator actions\n");
    if r.operator_actions.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        header(&mut out, &["Time", "Action", "By", "Reason", "Step"]);
        for a in &r.operator_actions {
            row(
                &mut out,
                &[
                    a.at.clone(),
                    a.action.clone(),
                    a.by.clone(),
                    a.reason.clone(),
                    words::or_dash(a.step.as_deref()),
                ],
            );
        }
    }

    let _ = writeln!(out, "\n## Steps\n");
    header(&mut out, &["#", "Step", "Status", "Start", "End", "Duration", "Result"]);
    for s in &r.steps {
        let mut result = s.failure.clone().unwrap_or_default();
        if !s.hooks.is_empty() {
            if !result.is_empty() {
                result.push_str("; ");
            }
            result.push_str(&s.hooks.join("; "));
        }
        row(
            &mut out,
            &[
                (s.step + 1).to_string(),
                s.label.clone(),
                status(s.status).into(),
                words::at(s.started_at.as_deref()),
                words::at(s.finished_at.as_deref()),
                words::duration(s.duration_secs),
                words::or_dash(Some(&result)),
            ],
        );
    }

    let _ = writeln!(out, "\n## Undo chain\n");
    if r.undo_chain.is_empty() {
        let _ = writeln!(out, "Nothing was undone.");
    } else {
        for (i, u) in r.undo_chain.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}. **{}**: {} at {}{}",
                i + 1,
                u.label,
                u.result,
                words::at(u.finished_at.as_deref().or(u.started_at.as_deref())),
                u.detail.as_deref().map(|d| format!(" — {d}")).unwrap_or_default()
            );
        }
    }

    let _ = writeln!(out, "\n## Timeline\n");
    for l in events(r) {
        let _ = writeln!(out, "- `+{}` **{}**: {}", words::clock(l.t), l.what, l.text);
    }
    let _ = writeln!(
        out,
        "\n_Built from {} journal records of cutover {} (report version {})._",
        r.records, r.id, r.report_version
    );
    out
}

/// A step's status in words.
pub(super) fn status(s: crate::saga::StepStatus) -> &'static str {
    use crate::saga::StepStatus::*;
    match s {
        Pending => "not run",
        Running => "running",
        Done => "done",
        Failed => "failed",
        Undoing => "undoing",
        Undone => "undone",
        UndoFailed => "undo failed",
    }
}
