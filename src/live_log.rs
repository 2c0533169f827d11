//! The live log: one line per journal event, rendered the same way wherever it is
//! shown — by `cutover run` as it happens, and by `cutover watch` / `start --wait`
//! from the daemon's event stream.
//!
//! **Architecture Invariant:** the live log is a view of the journal. The engine
//! never logs a decision that is not an event (hook output lines are the one
//! exception: they are streamed, not journaled).

use std::collections::BTreeMap;

use crate::color::Color;
use crate::journal::Record;
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
}

/// A rendered line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub level: Level,
    /// The step label, when the event is about a step.
    pub step: Option<String>,
    pub message: String,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
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
        use Level::*;
        let line = |level, step: Option<String>, message: String| Line { level, step, message };
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
            } => line(
                Info,
                Some(self.label(*step)),
                format!("weights verified by read-back in {}: {split}", fmt_ms(*elapsed_ms)),
            ),
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
                let bake = self.bake_of(*step);
                let mut message = format!("{} {}: {}", self.new_color(), verdict.outcome.as_str(), verdict.reason);
                if let Some(total) = bake {
                    message.push_str(&format!(
                        " | bake {}/{}{}",
                        humantime::format_duration(std::time::Duration::from_secs((*baked_secs).min(total))),
                        humantime::format_duration(std::time::Duration::from_secs(total)),
                        if *counted { "" } else { " (clock held)" }
                    ));
                }
                let level = match verdict.outcome {
                    crate::judge::Outcome::Fail | crate::judge::Outcome::SharedFailure => Warn,
                    _ if verdict.would_rollback => Warn,
                    _ => Info,
                };
                line(level, Some(self.label(*step)), message)
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
                line(
                    Warn,
                    Some(l.clone()),
                    format!("step {l}: failed ({}): {reason}", trigger.as_str()),
                )
            }
            Event::RollbackRequested { trigger, reason, by } => line(
                Warn,
                None,
                format!("rollback requested ({}) by {by}: {reason}", trigger.as_str()),
            ),
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
                let weights = final_split
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "weights unknown".into());
                let level = match outcome {
                    crate::saga::Outcome::Promoted => Info,
                    crate::saga::Outcome::Unsafe | crate::saga::Outcome::Error => Error,
                    _ => Warn,
                };
                line(
                    level,
                    None,
                    format!("cutover {}: {reason} ({weights})", outcome.as_str()),
                )
            }
        }
    }

    fn bake_of(&self, step: usize) -> Option<u64> {
        self.bake_secs.get(&step).copied()
    }

    /// Renders a journal record as a text line: `TIME LEVEL message`.
    pub fn text(&mut self, record: &Record) -> String {
        let line = self.render(&record.event);
        let level = match line.level {
            Level::Info => " INFO",
            Level::Warn => " WARN",
            Level::Error => "ERROR",
        };
        format!("{} {level} {}", record.at, line.message)
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
