//! The fold: journal records in, one [`Report`] out. Pure: no IO, no clock (times come from the
//! records), so the same journal always gives the same report.
//!
//! 1. Every record goes through [`CutoverState`] (the summary, the steps, the saga) and the
//!    live log's [`Renderer`] (the words of each mark), in journal order.
//! 2. The saga's phase says when the rollback started: the record that turned it to rolling
//!    back, whatever it was (a failed step, a verdict, an alarm, an operator's request).
//! 3. Verdicts become periods of the chart and the numbers of their step; weights become the
//!    step line; everything else that happened becomes a mark. An event this version does not
//!    know is a generic mark with the live log's line for it, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use super::record::*;
use crate::color::{Color, Split};
use crate::journal::Record;
use crate::live_log::Renderer;
use crate::saga::{Event, Phase, StepStatus, Trigger};
use crate::state::CutoverState;

/// The report of the cutover whose journal is `records`; `plan_text` is the plan copy the
/// cutover started with (for the thresholds no verdict named), when the store kept one.
pub fn build(records: &[Record], plan_text: Option<&str>) -> Report {
    let mut f = Fold::default();
    for r in records {
        f.push(r);
    }
    f.finish(plan_text)
}

/// Seconds since the Unix epoch of a journal timestamp.
pub(super) fn unix_secs(at: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339(at).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// The journal's name of an event (`step_failed`), as serde writes its tag.
fn event_name(event: &Event) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| "event".into())
}

fn percent_of(split: &Split, color: Option<Color>) -> f64 {
    let p = split.percent(color.unwrap_or(Color::Green));
    (p * 10.0).round() / 10.0
}

/// Sums of one colour over periods.
#[derive(Default)]
struct Sums {
    requests: f64,
    errors: f64,
    latency_weighted: f64,
    latency_requests: f64,
    max_latency: Option<f64>,
}

impl Sums {
    fn add(&mut self, s: &crate::judge::Sample) {
        self.requests += s.requests;
        self.errors += s.errors;
        if let Some(l) = s.latency {
            // A period without requests has no say in the mean, but its statistic still counts as seen.
            self.latency_weighted += l * s.requests;
            self.latency_requests += s.requests;
            self.max_latency = Some(self.max_latency.map_or(l, |m: f64| m.max(l)));
        }
    }

    fn numbers(&self) -> Numbers {
        Numbers {
            requests: self.requests,
            errors: self.errors,
            error_rate: (self.requests > 0.0).then(|| self.errors / self.requests),
            latency_secs: (self.latency_requests > 0.0).then(|| self.latency_weighted / self.latency_requests),
            max_latency_secs: self.max_latency,
        }
    }
}

/// One judged step as it is being folded.
#[derive(Default)]
struct Judged {
    new_percent: Option<f64>,
    verdicts: BTreeMap<String, u32>,
    periods: u32,
    new: Sums,
    live: Sums,
    last_reason: Option<String>,
}

#[derive(Default)]
struct Fold {
    state: CutoverState,
    renderer: Renderer,
    start: Option<f64>,
    last_t: f64,
    new_color: Option<Color>,
    pid: Option<u32>,
    /// Who started it, as `Started` names them (a user, a token's name).
    principal: Option<String>,
    plan: Option<String>,
    initial: Option<Split>,
    adopted_by: Vec<String>,
    /// The live colour before the start, in the live log's words (the `baseline` event).
    baseline: Option<String>,
    /// Every `by` seen, to name the starting process where one of its own events did.
    bys: Vec<String>,
    /// The new colour's share last verified.
    new_percent: Option<f64>,
    judged: BTreeMap<usize, Judged>,
    failures: BTreeMap<usize, String>,
    hooks: BTreeMap<usize, Vec<String>>,
    rollback: Option<RollbackRecord>,
    operator: Vec<OperatorAction>,
    undo: Vec<UndoRecord>,
    weights: Vec<WeightPoint>,
    periods: Vec<Period>,
    marks: Vec<Mark>,
    max_error_rate: Option<f64>,
    max_latency: Option<f64>,
}

impl Fold {
    fn t(&self, unix: f64) -> f64 {
        self.start.map_or(0.0, |s| unix - s)
    }

    fn label(&self, step: usize) -> String {
        self.state
            .saga()
            .steps
            .get(step)
            .map(|s| s.label.clone())
            .unwrap_or_else(|| format!("step {step}"))
    }

    fn mark(&mut self, r: &Record, t: f64, kind: MarkKind, step: Option<usize>, by: Option<&str>, text: &str) {
        self.marks.push(Mark {
            t,
            at: r.at.clone(),
            kind,
            event: event_name(&r.event),
            step: step.map(|s| self.label(s)),
            by: by.map(str::to_string),
            text: text.to_string(),
        });
    }

    fn weight(&mut self, r: &Record, t: f64, split: &Split, source: &str) {
        let p = percent_of(split, self.new_color);
        if self.weights.last().is_some_and(|w| w.new_percent == p) {
            return;
        }
        self.weights.push(WeightPoint {
            t,
            at: r.at.clone(),
            new_percent: p,
            source: source.into(),
        });
    }

    fn operator(&mut self, r: &Record, action: &str, by: &str, reason: &str, step: Option<usize>) {
        let step = step.or(self.state.saga().running_step()).map(|s| self.label(s));
        self.operator.push(OperatorAction {
            at: r.at.clone(),
            action: action.into(),
            by: by.into(),
            reason: reason.into(),
            step,
        });
    }

    fn push(&mut self, r: &Record) {
        let was_rolling_back = matches!(self.state.saga().phase, Phase::RollingBack { .. });
        let running = self.state.saga().running_step();
        self.state.push(r);
        let text = self.renderer.render(&r.event).message;
        let unix = unix_secs(&r.at);
        if self.start.is_none() && matches!(r.event, Event::Started { .. }) {
            self.start = unix;
        }
        let t = unix.map_or(self.last_t, |u| self.t(u));
        self.last_t = self.last_t.max(t);

        // The record that turned the saga to rolling back starts the rollback.
        if let Phase::RollingBack {
            trigger, reason, by, ..
        } = &self.state.saga().phase
            && !was_rolling_back
        {
            let at_step = running.or(self.state.saga().running_step()).map(|s| self.label(s));
            self.rollback = Some(RollbackRecord {
                trigger: *trigger,
                reason: reason.clone(),
                initiated_by: by.clone(),
                started_at: r.at.clone(),
                at_step,
                traffic_restored_at: None,
                restored_weights: None,
                time_to_restore_secs: None,
                completed_at: None,
            });
            self.undo.clear();
            let why = format!("rollback ({}) by {by}: {reason}", trigger.as_str());
            let by = by.clone();
            self.mark(r, t, MarkKind::Rollback, running, Some(&by), &why);
        }

        match &r.event {
            Event::Started {
                new_color,
                initial,
                pid,
                plan,
                started_by,
                ..
            } => {
                self.new_color = Some(*new_color);
                self.pid = Some(*pid);
                self.principal = started_by.clone();
                self.plan = Some(plan.clone());
                self.initial = Some(*initial);
                self.new_percent = Some(percent_of(initial, self.new_color));
                self.weight(r, t, initial, "start");
                self.mark(r, t, MarkKind::Started, None, None, &text);
            }
            // Read by verify before any weight moved: a row of the record, not a mark on the chart.
            Event::Baseline { step, .. } => {
                self.baseline = Some(text.clone());
                self.mark(r, t, MarkKind::Note, Some(*step), None, &text);
            }
            Event::StepStarted { step } => self.mark(r, t, MarkKind::StepStarted, Some(*step), None, &text),
            Event::StepDone { step, .. } => self.mark(r, t, MarkKind::StepDone, Some(*step), None, &text),
            Event::StepFailed { step, reason, trigger } => {
                self.failures
                    .insert(*step, format!("failed ({}): {reason}", trigger.as_str()));
                let kind = if is_alarm(reason) {
                    MarkKind::Alarm
                } else {
                    MarkKind::StepFailed
                };
                self.mark(r, t, kind, Some(*step), None, &text);
            }
            Event::WeightVerified { step, split, .. } => {
                self.new_percent = Some(percent_of(split, self.new_color));
                self.weight(r, t, split, "verified");
                if let Some(j) = self.judged.get_mut(step) {
                    j.new_percent = self.new_percent;
                }
            }
            Event::BakeStarted { step, .. } => {
                let new_percent = self.new_percent;
                self.judged.entry(*step).or_default().new_percent = new_percent;
            }
            Event::Verdict {
                step, verdict, counted, ..
            } => self.verdict(*step, verdict, *counted),
            Event::Drift { step, found, .. } => {
                self.weight(r, t, found, "drift");
                self.mark(r, t, MarkKind::Drift, Some(*step), None, &text);
            }
            Event::Hook {
                step,
                phase,
                what,
                ok,
                detail,
                ..
            } => {
                let line = format!("{phase} {what}: {detail}{}", if *ok { "" } else { " (failed)" });
                if phase == "undo" {
                    if let Some(u) = self.undo.iter_mut().rev().find(|u| u.step == Some(*step)) {
                        u.detail = Some(line);
                    }
                } else {
                    self.hooks.entry(*step).or_default().push(line);
                }
                self.mark(r, t, MarkKind::Hook, Some(*step), None, &text);
            }
            Event::RollbackRequested { trigger, reason, by } => {
                self.bys.push(by.clone());
                if matches!(trigger, Trigger::Operator | Trigger::Interrupt | Trigger::Orphaned) {
                    self.operator(r, "rollback", by, reason, None);
                    self.mark(r, t, MarkKind::Operator, running, Some(by), &text);
                }
            }
            Event::Paused { by, reason } => {
                self.bys.push(by.clone());
                if by == "cutover" {
                    // The engine's own pause, for a drift: not an operator's.
                    self.mark(r, t, MarkKind::Drift, running, Some(by), &text);
                } else {
                    self.operator(r, "pause", by, reason, None);
                    self.mark(r, t, MarkKind::Operator, running, Some(by), &text);
                }
            }
            Event::Resumed { by, reason } => {
                self.bys.push(by.clone());
                self.operator(r, "resume", by, reason, None);
                self.mark(r, t, MarkKind::Operator, running, Some(by), &text);
            }
            Event::PromoteRequested { step, by, reason } => {
                self.bys.push(by.clone());
                self.operator(r, "promote", by, reason, Some(*step));
                self.mark(r, t, MarkKind::Operator, Some(*step), Some(by), &text);
            }
            Event::Adopted { by, action, .. } => {
                self.adopted_by.push(by.clone());
                self.operator(r, "adopt", by, &format!("{action}: {text}"), None);
                self.mark(r, t, MarkKind::Adopted, running, Some(by), &text);
            }
            Event::TrafficRestored { split } => {
                self.weight(r, t, split, "restored");
                if let Some(rb) = &mut self.rollback
                    && rb.traffic_restored_at.is_none()
                {
                    rb.traffic_restored_at = Some(r.at.clone());
                    rb.restored_weights = Some(split.percents());
                    rb.time_to_restore_secs = match (unix, unix_secs(&rb.started_at)) {
                        (Some(a), Some(b)) => Some((a - b).max(0.0)),
                        _ => None,
                    };
                    self.undo.push(UndoRecord {
                        step: None,
                        label: "traffic".into(),
                        started_at: Some(rb.started_at.clone()),
                        finished_at: Some(r.at.clone()),
                        result: "done".into(),
                        detail: Some(format!("back on the live colour: {split}")),
                    });
                }
                self.mark(r, t, MarkKind::TrafficRestored, None, None, &text);
            }
            Event::UndoStarted { step } => {
                self.undo.push(UndoRecord {
                    step: Some(*step),
                    label: self.label(*step),
                    started_at: Some(r.at.clone()),
                    finished_at: None,
                    result: "running".into(),
                    detail: None,
                });
                self.mark(r, t, MarkKind::Undo, Some(*step), None, &text);
            }
            Event::UndoDone { step } | Event::UndoFailed { step, .. } => {
                let failed = match &r.event {
                    Event::UndoFailed { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                if let Some(u) = self.undo.iter_mut().rev().find(|u| u.step == Some(*step)) {
                    u.finished_at = Some(r.at.clone());
                    u.result = if failed.is_some() { "failed" } else { "done" }.into();
                    if failed.is_some() {
                        u.detail = failed;
                    }
                }
                self.mark(r, t, MarkKind::Undo, Some(*step), None, &text);
            }
            Event::Finished { .. } => {
                if let Some(rb) = &mut self.rollback
                    && self.state.outcome().is_some()
                {
                    rb.completed_at = Some(r.at.clone());
                }
                self.mark(r, t, MarkKind::Finished, None, None, &text);
            }
            // Intents and starts: the results they lead to are what the report shows.
            Event::WeightIntent { .. } | Event::HookStarted { .. } => {}
            // Notes, and events newer than this report (approvals…): a generic mark with the live
            // log's words, never a failure.
            other => {
                let (kind, step) = match other {
                    Event::Note { step, message, .. } if is_alarm(message) => (MarkKind::Alarm, *step),
                    Event::Note { step, .. } => (MarkKind::Note, *step),
                    _ => (MarkKind::Other, running),
                };
                self.mark(r, t, kind, step, None, &text);
            }
        }
    }

    fn verdict(&mut self, step: usize, v: &crate::judge::Verdict, counted: bool) {
        for f in &v.findings {
            match f.check.as_str() {
                "error_rate" => self.max_error_rate = Some(f.threshold),
                "latency" => self.max_latency = Some(f.threshold),
                _ => {}
            }
        }
        let w = &v.window;
        let new_percent = self.new_percent;
        let j = self.judged.entry(step).or_default();
        j.new_percent = j.new_percent.or(new_percent);
        j.periods += 1;
        *j.verdicts.entry(v.outcome.as_str().to_string()).or_default() += 1;
        j.new.add(&w.new);
        j.live.add(&w.live);
        j.last_reason = Some(v.reason.clone());
        let (t_start, t_end) = (self.t(w.start as f64), self.t(w.end as f64));
        self.last_t = self.last_t.max(t_end);
        self.periods.push(Period {
            step,
            t_start,
            t_end,
            outcome: v.outcome,
            counted,
            new_requests: w.new.requests,
            new_error_rate: w.new.error_rate(),
            new_latency_secs: w.new.latency,
            live_requests: w.live.requests,
            live_error_rate: w.live.error_rate(),
            live_latency_secs: w.live.latency,
            reason: (v.outcome != crate::judge::Outcome::Pass).then(|| v.reason.clone()),
        });
    }

    fn finish(self, plan_text: Option<&str>) -> Report {
        let s = &self.state.summary;
        let started = self.state.saga().steps.clone();
        let plan_path = self.plan.clone();
        let plan = match (plan_text, &plan_path) {
            (Some(text), Some(path)) => crate::config::parse(Path::new(path), text).ok(),
            _ => None,
        };
        let thresholds = Thresholds {
            max_error_rate: self
                .max_error_rate
                .or(plan.as_ref().map(|p| p.rollback.criteria.max_error_rate)),
            max_latency_secs: self
                .max_latency
                .or(plan.as_ref().and_then(|p| p.rollback.criteria.max_latency)),
            latency_statistic: plan.as_ref().map(|p| p.metrics.latency_statistic.clone()),
            min_requests: plan.as_ref().map(|p| p.rollback.criteria.min_requests),
            failures_to_rollback: plan.as_ref().map(|p| p.rollback.criteria.failures_to_rollback),
            alarms: plan.as_ref().map(|p| p.rollback.alarms.clone()).unwrap_or_default(),
        };
        let between = |a: &Option<String>, b: &Option<String>| match (a.as_deref(), b.as_deref()) {
            (Some(a), Some(b)) => Some((unix_secs(b)? - unix_secs(a)?).max(0.0)),
            _ => None,
        };
        let steps: Vec<StepRecord> = s
            .steps
            .iter()
            .enumerate()
            .map(|(i, st)| StepRecord {
                step: i,
                label: st.label.clone(),
                status: st.status,
                started_at: st.started_at.clone(),
                finished_at: st.finished_at.clone(),
                duration_secs: between(&st.started_at, &st.finished_at),
                failure: self.failures.get(&i).cloned(),
                hooks: self.hooks.get(&i).cloned().unwrap_or_default(),
            })
            .collect();
        let shifts = self
            .judged
            .iter()
            .map(|(i, j)| ShiftRecord {
                step: *i,
                label: started.get(*i).map(|s| s.label.clone()).unwrap_or_default(),
                new_percent: j.new_percent,
                started_at: s.steps.get(*i).and_then(|st| st.started_at.clone()),
                finished_at: s.steps.get(*i).and_then(|st| st.finished_at.clone()),
                status: s.steps.get(*i).map_or(StepStatus::Pending, |st| st.status),
                periods: j.periods,
                verdicts: j.verdicts.clone(),
                new: j.new.numbers(),
                live: j.live.numbers(),
                last_verdict: j.last_reason.clone(),
            })
            .collect();
        let last_at = self.marks.last().map(|m| m.at.clone());
        let end_at = s.finished_at.clone().or(last_at);
        Report {
            report_version: REPORT_VERSION,
            service: s.service.clone(),
            id: s.id.clone(),
            target_arn: self.state.target_arn.clone(),
            plan: plan_path,
            started_by: self.started_by(),
            baseline: self.baseline.clone(),
            vars: self.state.saga().vars.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            duration_secs: between(&s.started_at, &end_at),
            live_color: s.live_color,
            new_color: s.new_color,
            outcome: s.outcome,
            state: self.state.state_word(),
            reason: s.reason.clone(),
            initial_weights: self.initial.map(|i| i.percents()),
            final_weights: s.final_weights,
            thresholds,
            shifts,
            rollback: self.rollback.clone(),
            operator_actions: self.operator.clone(),
            steps,
            undo_chain: self.undo.clone(),
            timeline: Timeline {
                start: self.start,
                span_secs: self.last_t.max(1.0),
                weights: self.weights.clone(),
                periods: self.periods.clone(),
                marks: self.marks.clone(),
            },
            records: self.state.records,
        }
    }

    /// Who started it (`Started.started_by`) and its process (`pid N`, named `user@host pid N`
    /// where one of its own events, an interrupt's rollback request, says so); and whoever
    /// adopted the cutover.
    fn started_by(&self) -> Option<String> {
        let pid = format!("pid {}", self.pid?);
        let own = format!(" {pid}");
        let process = self.bys.iter().find(|b| b.ends_with(&own)).cloned().unwrap_or(pid);
        let who = match &self.principal {
            Some(principal) => format!("{principal} ({process})"),
            None => process,
        };
        Some(match self.adopted_by.as_slice() {
            [] => who,
            adopters => format!("{who}; adopted by {}", adopters.join(", ")),
        })
    }
}

/// Whether a reason is about a CloudWatch alarm (the judge's words for one in ALARM).
fn is_alarm(reason: &str) -> bool {
    reason.contains("alarm in ALARM")
}
