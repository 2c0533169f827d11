//! The live log: one line per journal event, rendered the same way wherever it is
//! shown — by `cutover run` as it happens, and by `cutover watch` / `start --wait`
//! from the daemon's event stream.
//!
//! **Architecture Invariant:** the live log is a view of the journal. The engine
//! never logs a decision that is not an event (hook output lines are the one
//! exception: they are streamed, not journaled).
//!
//! A [`Line`] is for people (its `message`, short, the decisive part first) and for machines
//! (its `fields`: the cutover id, the event, the numbers behind a verdict, the whole reason).
//! The human form shows the message; the JSON form (`--log-format json`) shows both.
//!
//! * `mod.rs` (this file): [`Renderer`], one event in, one [`Line`] out;
//! * `verdict.rs`: a verdict's short line and its fields;
//! * [`output`]: where lines go: the tracing subscriber, its human and JSON forms, colour.

pub mod output;
mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use crate::color::Color;
use crate::saga::{Event, Level, StepInfo};

/// What rendering needs to remember from earlier events: colours and step labels.
#[derive(Debug, Clone, Default)]
pub struct Renderer {
    live: Option<Color>,
    new: Option<Color>,
    steps: Vec<StepInfo>,
    /// Step index → its label, for lines about a step.
    labels: BTreeMap<usize, String>,
    /// Step index → its bake length in seconds.
    bake_secs: BTreeMap<usize, u64>,
    /// The plan's `failures_to_rollback`, when known (the engine knows; a watcher parses it
    /// from the judge's reason).
    streak_limit: Option<u32>,
    /// Reasons already shown (a verdict's, a rollback's): a later line refers to them instead
    /// of repeating them.
    said: BTreeSet<String>,
}

/// A rendered line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub level: Level,
    /// The step label, when the event is about a step.
    pub step: Option<String>,
    pub message: String,
    /// The journal event it renders (`verdict`, `step_failed`, …).
    pub kind: &'static str,
    /// What the human form highlights.
    pub mark: Option<Mark>,
    /// The numbers and words behind the line, for the JSON form.
    pub fields: Fields,
}

/// A line the human form highlights (in colour, and in capitals without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The decision to roll back, and the outcome of a rollback.
    Rollback,
    /// A rollback that could not be confirmed.
    Unsafe,
    /// The new colour holds all traffic.
    Promoted,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Rollback => "rollback",
            Mark::Unsafe => "unsafe",
            Mark::Promoted => "promoted",
        }
    }
}

/// The machine-readable side of a line: each field is present only where it means something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    /// The whole reason (a verdict's, a failure's, an outcome's), however long.
    pub reason: Option<String>,
    /// `pass`, `fail`, `inconclusive`, `no_data`, `shared_failure`.
    pub verdict: Option<&'static str>,
    /// Consecutive failed verdicts, this one included.
    pub streak: Option<u32>,
    /// `failures_to_rollback`.
    pub streak_limit: Option<u32>,
    /// Whether this verdict rolls back.
    pub rollback: Option<bool>,
    /// The new colour's requests and 5xx errors the verdict was reached on, and their ratio.
    pub requests: Option<f64>,
    pub errors: Option<f64>,
    pub error_rate: Option<f64>,
    /// `max_error_rate`.
    pub threshold: Option<f64>,
    pub latency_seconds: Option<f64>,
    pub latency_threshold_seconds: Option<f64>,
    pub live_requests: Option<f64>,
    pub live_error_rate: Option<f64>,
    /// Judged time of the bake so far, and its length.
    pub baked_secs: Option<u64>,
    pub bake_secs: Option<u64>,
    /// The new colour's share of traffic, in percent, after a verified write.
    pub new_percent: Option<f64>,
    /// `promoted`, `rolled_back`, … on the last line.
    pub outcome: Option<&'static str>,
    /// What started a rollback: `judge`, `step`, `operator`, …
    pub trigger: Option<&'static str>,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
    }

    /// A renderer that knows the plan's `failures_to_rollback` (for `FAIL 1/2`).
    pub fn with_streak_limit(mut self, limit: u32) -> Renderer {
        self.streak_limit = Some(limit);
        self
    }

    fn new_color(&self) -> String {
        self.new.map(|c| c.to_string()).unwrap_or_else(|| "new".into())
    }

    fn live_color(&self) -> String {
        self.live.map(|c| c.to_string()).unwrap_or_else(|| "live".into())
    }

    fn label(&self, step: usize) -> String {
        self.labels
            .get(&step)
            .cloned()
            .unwrap_or_else(|| format!("step {step}"))
    }

    /// Renders one event.
    pub fn render(&mut self, event: &Event) -> Line {
        let mut line = self.render_words(event);
        line.kind = kind(event);
        line
    }

    fn render_words(&mut self, event: &Event) -> Line {
        use Level::*;
        let line = |level, step: Option<String>, message: String| Line {
            level,
            step,
            message,
            kind: "",
            mark: None,
            fields: Fields::default(),
        };
        match event {
            Event::Started {
                id,
                service,
                live_color,
                new_color,
                initial,
                steps,
                vars,
                ..
            } => {
                self.live = Some(*live_color);
                self.new = Some(*new_color);
                self.steps = steps.clone();
                self.labels = steps.iter().enumerate().map(|(i, s)| (i, s.label.clone())).collect();
                let names: Vec<&str> = steps.iter().map(|s| s.label.as_str()).collect();
                let vars = if vars.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; vars {}",
                        vars.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                line(
                    Info,
                    None,
                    format!(
                        "cutover {id} of {service}: {live_color} is live ({initial}), {new_color} is new; steps: {}{vars}",
                        names.join(" → ")
                    ),
                )
            }
            Event::StepStarted { step } => {
                let l = self.label(*step);
                line(
                    Info,
                    Some(l.clone()),
                    format!("step {}/{} {l}: started", step + 1, self.steps.len()),
                )
            }
            Event::WeightIntent { step, split } => line(Info, Some(self.label(*step)), format!("weights → {split}")),
            Event::WeightVerified {
                step,
                split,
                elapsed_ms,
                ..
            } => {
                let mut l = line(
                    Info,
                    Some(self.label(*step)),
                    format!("weights verified by read-back in {}: {split}", fmt_ms(*elapsed_ms)),
                );
                l.fields.new_percent = self.new.map(|c| split.percent(c));
                l
            }
            Event::BakeStarted {
                step, duration_secs, ..
            } => {
                self.bake_secs.insert(*step, *duration_secs);
                line(
                    Info,
                    Some(self.label(*step)),
                    format!(
                        "baking {} of judged traffic",
                        humantime::format_duration(std::time::Duration::from_secs(*duration_secs))
                    ),
                )
            }
            Event::Baseline { step, baseline: b } => {
                let latency = b
                    .latency
                    .map(|l| format!(", latency {:.0}ms (median)", l * 1000.0))
                    .unwrap_or_default();
                line(
                    Info,
                    Some(self.label(*step)),
                    format!(
                        "baseline of {}: {} periods, 5xx {:.2}% ({}/{}) ≤ {:.2}% (upper bound){latency}; \
                         the judge compares {} with it where {} has no traffic left",
                        self.live_color(),
                        b.periods,
                        b.error_rate() * 100.0,
                        b.errors,
                        b.requests,
                        b.upper * 100.0,
                        self.new_color(),
                        self.live_color(),
                    ),
                )
            }
            Event::Verdict {
                step,
                verdict,
                counted,
                baked_secs,
            } => {
                let total = self.bake_of(*step);
                let bake = total.map(|total| {
                    format!(
                        "{}/{}{}",
                        humantime::format_duration(std::time::Duration::from_secs((*baked_secs).min(total))),
                        humantime::format_duration(std::time::Duration::from_secs(total)),
                        if *counted { "" } else { " (clock held)" }
                    )
                });
                let message = verdict::line(&self.new_color(), verdict, self.streak_limit, bake);
                let level = match verdict.outcome {
                    crate::judge::Outcome::Fail | crate::judge::Outcome::SharedFailure => Warn,
                    _ if verdict.would_rollback => Warn,
                    _ => Info,
                };
                let mut l = line(level, Some(self.label(*step)), message);
                l.fields = verdict::fields(verdict, self.streak_limit);
                l.fields.baked_secs = Some(*baked_secs);
                l.fields.bake_secs = total;
                if verdict.rollback {
                    l.mark = Some(Mark::Rollback);
                    // The engine fails the step with the verdict's reason behind the colour's name.
                    self.said.insert(verdict.reason.clone());
                    self.said.insert(format!("{} {}", self.new_color(), verdict.reason));
                }
                l
            }
            Event::Drift { step, expected, found } => line(
                Warn,
                Some(self.label(*step)),
                format!("weights changed outside cutover: expected {expected}, found {found}"),
            ),
            Event::HookStarted { step, phase, what } => {
                let prefix = if phase == "undo" { "undo: " } else { "" };
                line(Info, Some(self.label(*step)), format!("{prefix}running {what}"))
            }
            Event::Hook {
                step,
                phase,
                what,
                ok,
                detail,
                elapsed_ms,
            } => {
                let prefix = match phase.as_str() {
                    "check" => "check ",
                    "undo" => "undo: ",
                    _ => "",
                };
                line(
                    if *ok { Info } else { Warn },
                    Some(self.label(*step)),
                    format!("{prefix}{what}: {detail} in {}", fmt_ms(*elapsed_ms)),
                )
            }
            Event::Note { step, level, message } => line(*level, step.map(|s| self.label(s)), message.clone()),
            Event::ApprovalRequested {
                step,
                approvers,
                timeout_secs,
            } => line(
                Warn,
                Some(self.label(*step)),
                format!(
                    "waiting for approval{} (up to {}): `cutover approve` or `cutover reject`",
                    if approvers.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", approvers.join(" or "))
                    },
                    humantime::format_duration(std::time::Duration::from_secs(*timeout_secs))
                ),
            ),
            Event::Approved { step, by, reason } => {
                line(Info, Some(self.label(*step)), format!("approved by {by}: {reason}"))
            }
            Event::Rejected { step, by, reason } => {
                line(Warn, Some(self.label(*step)), format!("rejected by {by}: {reason}"))
            }
            Event::LifecycleHook {
                point,
                what,
                ok,
                detail,
                elapsed_ms,
            } => line(
                if *ok { Info } else { Warn },
                None,
                format!("hook {point} {what}: {detail} in {}", fmt_ms(*elapsed_ms)),
            ),
            Event::Adopted {
                by,
                previous_owner,
                action,
            } => line(
                Warn,
                None,
                format!(
                    "adopted by {by} from {} (its owner stopped renewing its lease): {action}",
                    previous_owner.as_deref().unwrap_or("an owner that left no name")
                ),
            ),
            Event::StepDone { step, elapsed_ms } => {
                let l = self.label(*step);
                line(
                    Info,
                    Some(l.clone()),
                    format!("step {l}: done in {}", fmt_ms(*elapsed_ms)),
                )
            }
            Event::StepFailed { step, trigger, reason } => {
                let l = self.label(*step);
                // A judge's failure was just shown as its verdict, an operator's or an interrupt's
                // reason as its request: refer to it.
                let message = if self.said.contains(reason) {
                    format!(
                        "ROLLING BACK from {l} ({}): {} above",
                        trigger.as_str(),
                        if *trigger == crate::saga::Trigger::Judge {
                            "the verdict"
                        } else {
                            "the reason"
                        }
                    )
                } else {
                    format!("ROLLING BACK from {l}: step failed ({}): {reason}", trigger.as_str())
                };
                self.said.insert(reason.clone());
                let mut out = line(Warn, Some(l), message);
                out.mark = Some(Mark::Rollback);
                out.fields.reason = Some(reason.clone());
                out.fields.trigger = Some(trigger.as_str());
                out
            }
            Event::RollbackRequested { trigger, reason, by } => {
                let message = if self.said.contains(reason) {
                    format!("ROLLBACK requested ({}) by {by} (the reason above)", trigger.as_str())
                } else {
                    format!("ROLLBACK requested ({}) by {by}: {reason}", trigger.as_str())
                };
                self.said.insert(reason.clone());
                let mut out = line(Warn, None, message);
                out.mark = Some(Mark::Rollback);
                out.fields.reason = Some(reason.clone());
                out.fields.trigger = Some(trigger.as_str());
                out
            }
            Event::Paused { by, reason } => line(Warn, None, format!("paused by {by}: {reason}; the bake clock holds")),
            Event::Resumed { by, reason } => line(Info, None, format!("resumed by {by}: {reason}")),
            Event::PromoteRequested { step, by, reason } => line(
                Info,
                Some(self.label(*step)),
                format!("promote by {by}: {reason}; ending this bake now"),
            ),
            Event::TrafficRestored { split } => line(
                Info,
                None,
                format!("traffic restored to {}: {split}", self.live_color()),
            ),
            Event::UndoStarted { step } => {
                let l = self.label(*step);
                line(Info, Some(l.clone()), format!("undo {l}: started"))
            }
            Event::UndoDone { step } => {
                let l = self.label(*step);
                line(Info, Some(l.clone()), format!("undo {l}: done"))
            }
            Event::UndoFailed { step, reason } => {
                let l = self.label(*step);
                line(Error, Some(l.clone()), format!("undo {l} failed: {reason}"))
            }
            Event::Finished {
                outcome,
                reason,
                final_split,
            } => {
                use crate::saga::Outcome as O;
                let weights = final_split
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "weights unknown".into());
                let (level, mark, head) = match outcome {
                    O::Promoted => (Info, Some(Mark::Promoted), "PROMOTED".to_string()),
                    O::RolledBack | O::RolledBackByOperator => (
                        Warn,
                        Some(Mark::Rollback),
                        format!(
                            "ROLLED BACK{}: traffic on {}",
                            if *outcome == O::RolledBackByOperator {
                                " by an operator"
                            } else {
                                ""
                            },
                            self.live_color()
                        ),
                    ),
                    O::Unsafe => (Error, Some(Mark::Unsafe), "UNSAFE".to_string()),
                    O::Error => (Error, None, "error".to_string()),
                    O::NotStarted => (Warn, None, "not started".to_string()),
                };
                // The reason of a rollback was shown when it began: the last line says where
                // traffic is.
                let message = if self.said.contains(reason) {
                    format!("{head} ({weights})")
                } else {
                    format!("{head}: {reason} ({weights})")
                };
                let mut out = line(level, None, message);
                out.mark = mark;
                out.fields.reason = Some(reason.clone());
                out.fields.outcome = Some(outcome.as_str());
                out
            }
        }
    }

    fn bake_of(&self, step: usize) -> Option<u64> {
        self.bake_secs.get(&step).copied()
    }
}

/// The journal's name of an event (its `event` tag).
fn kind(event: &Event) -> &'static str {
    match event {
        Event::Started { .. } => "started",
        Event::StepStarted { .. } => "step_started",
        Event::WeightIntent { .. } => "weight_intent",
        Event::WeightVerified { .. } => "weight_verified",
        Event::BakeStarted { .. } => "bake_started",
        Event::Baseline { .. } => "baseline",
        Event::Verdict { .. } => "verdict",
        Event::Drift { .. } => "drift",
        Event::HookStarted { .. } => "hook_started",
        Event::Hook { .. } => "hook",
        Event::Note { .. } => "note",
        Event::ApprovalRequested { .. } => "approval_requested",
        Event::Approved { .. } => "approved",
        Event::Rejected { .. } => "rejected",
        Event::LifecycleHook { .. } => "lifecycle_hook",
        Event::Adopted { .. } => "adopted",
        Event::StepDone { .. } => "step_done",
        Event::StepFailed { .. } => "step_failed",
        Event::RollbackRequested { .. } => "rollback_requested",
        Event::Paused { .. } => "paused",
        Event::Resumed { .. } => "resumed",
        Event::PromoteRequested { .. } => "promote_requested",
        Event::TrafficRestored { .. } => "traffic_restored",
        Event::UndoStarted { .. } => "undo_started",
        Event::UndoDone { .. } => "undo_done",
        Event::UndoFailed { .. } => "undo_failed",
        Event::Finished { .. } => "finished",
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests;
