//! The state of one cutover as people and tools see it, folded once from its journal:
//! the JSON summary of the contract, plus where it stands now (step, weights, last
//! verdict, pause, phase) and the counts `/metrics` needs.
//!
//! One type serves `cutover run --output json` (its [`Summary`]), `cutover status`, the
//! daemon's list and get (serialised as they are), `/metrics`, and the client (which
//! deserialises what the daemon sends). It folds records incrementally ([`CutoverState::push`]),
//! so the daemon keeps one per journal and reads only what was appended since.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::color::{Color, Percents, Split};
use crate::journal::Record;
use crate::judge::Verdict;
use crate::saga::{Event, Outcome, Phase, Saga, StepStatus, Trigger};

/// The JSON summary of a cutover (`--output json`): the contract's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The cutover's id; left out of a summary of a cutover that never got one (not started
    /// before its journal was created), rather than `""`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub service: String,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub live_color: Option<Color>,
    pub new_color: Option<Color>,
    pub final_weights: Option<Percents>,
    pub steps: Vec<StepSummary>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One step of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub action: String,
    pub label: String,
    pub status: StepStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// Where a cutover stands, in one word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// No `Started` record yet.
    #[default]
    New,
    Running,
    RollingBack,
    Finished,
}

/// A cutover's state: its summary so far, plus `step`, `weights`, `last_verdict`, `paused`
/// and `phase` (the daemon's `GET /v1/cutovers/ID`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CutoverState {
    #[serde(flatten)]
    pub summary: Summary,
    /// The listener or rule whose traffic it shifts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_arn: Option<String>,
    /// Who holds the target's lease (from the store, not the journal), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::journal::LeaseInfo>,
    /// The label of the running step.
    pub step: Option<String>,
    /// The weights last verified by read-back.
    pub weights: Option<Percents>,
    pub last_verdict: Option<Verdict>,
    /// Why the bake clock is held, while it is.
    pub paused: Option<String>,
    pub phase: PhaseName,
    /// Judged windows by verdict (`pass`, `fail`, …), for `/metrics`.
    #[serde(skip)]
    pub verdicts: BTreeMap<&'static str, u64>,
    /// The end of the newest judged window (Unix seconds), for the poll lag.
    #[serde(skip)]
    pub last_window_end: Option<u64>,
    /// The raw weights last verified.
    #[serde(skip)]
    pub split: Option<Split>,
    /// What turned the cutover to rolling back first (a failed step or a request).
    #[serde(skip)]
    first_trigger: Option<Trigger>,
    /// When the rollback began (its first failed step or request), for its duration.
    #[serde(skip)]
    rollback_began: Option<String>,
    /// When the weights of the step now running were last verified: a bake's judging starts
    /// there, so a judge's rollback was detected that long after.
    #[serde(skip)]
    shifted_at: Option<String>,
    /// Seconds from the start of the rollback to traffic verified back on the live colour, for
    /// `/metrics`.
    #[serde(skip)]
    pub rollback_secs: Option<f64>,
    /// Seconds from the read-back of the shift whose bake failed to the judge's decision to
    /// roll back, for `/metrics`.
    #[serde(skip)]
    pub detection_secs: Option<f64>,
    #[serde(skip)]
    saga: Saga,
    /// Records folded so far.
    #[serde(skip)]
    pub records: u64,
    /// Set when the saga rejected a record: the state shows the journal up to there.
    #[serde(skip)]
    broken: bool,
}

impl CutoverState {
    /// The state after `records`.
    pub fn fold(records: &[Record]) -> CutoverState {
        let mut s = CutoverState::default();
        for r in records {
            s.push(r);
        }
        s
    }

    /// Folds one more record in.
    pub fn push(&mut self, r: &Record) {
        self.records += 1;
        // Best effort: an event the saga rejects is still shown up to there.
        if self.broken || self.saga.apply(&r.event).is_err() {
            self.broken = true;
            return;
        }
        let s = &mut self.summary;
        match &r.event {
            Event::Started {
                id,
                service,
                target_arn,
                live_color,
                new_color,
                steps,
                initial,
                ..
            } => {
                self.target_arn = Some(target_arn.clone());
                s.id = id.clone();
                s.service = service.clone();
                s.live_color = Some(*live_color);
                s.new_color = Some(*new_color);
                s.started_at = Some(r.at.clone());
                s.final_weights = Some(initial.percents());
                s.steps = steps
                    .iter()
                    .map(|st| StepSummary {
                        action: st.label.split(' ').next().unwrap_or_default().to_string(),
                        label: st.label.clone(),
                        status: StepStatus::Pending,
                        started_at: None,
                        finished_at: None,
                    })
                    .collect();
            }
            Event::StepStarted { step } => s.steps[*step].started_at = Some(r.at.clone()),
            Event::StepDone { step, .. } => s.steps[*step].finished_at = Some(r.at.clone()),
            Event::StepFailed { step, trigger, .. } => {
                s.steps[*step].finished_at = Some(r.at.clone());
                if self.first_trigger.is_none() && *trigger == Trigger::Judge {
                    self.detection_secs = seconds_between(self.shifted_at.as_deref(), &r.at);
                }
                self.first_trigger.get_or_insert(*trigger);
                self.rollback_began.get_or_insert_with(|| r.at.clone());
            }
            Event::RollbackRequested { trigger, .. } => {
                self.first_trigger.get_or_insert(*trigger);
                self.rollback_began.get_or_insert_with(|| r.at.clone());
            }
            Event::WeightVerified { split, .. } => {
                s.final_weights = Some(split.percents());
                self.shifted_at = Some(r.at.clone());
            }
            Event::TrafficRestored { split } => {
                s.final_weights = Some(split.percents());
                if self.rollback_secs.is_none() {
                    self.rollback_secs = seconds_between(self.rollback_began.as_deref(), &r.at);
                }
            }
            Event::Verdict { verdict, .. } => {
                *self.verdicts.entry(verdict.outcome.as_str()).or_default() += 1;
                self.last_window_end = Some(verdict.window.end);
                self.last_verdict = Some(verdict.clone());
            }
            // The saga's outcome, not the event's: a promotion journaled while an operator's
            // rollback runs does not end the cutover.
            Event::Finished { final_split, .. } => {
                if let Some((outcome, reason)) = self.saga.outcome() {
                    s.outcome = Some(outcome);
                    s.reason = Some(reason.to_string());
                    s.finished_at = Some(r.at.clone());
                }
                if let Some(split) = final_split {
                    s.final_weights = Some(split.percents());
                }
            }
            _ => {}
        }
        for (st, status) in s.steps.iter_mut().zip(&self.saga.status) {
            st.status = *status;
        }
        self.step = self.saga.running_step().map(|i| self.saga.steps[i].label.clone());
        self.split = self.saga.verified;
        self.weights = self.saga.verified.map(|s| s.percents());
        self.paused = self.saga.paused.clone();
        self.phase = match self.saga.phase {
            Phase::New => PhaseName::New,
            Phase::Forward => PhaseName::Running,
            Phase::RollingBack { .. } => PhaseName::RollingBack,
            Phase::Finished { .. } => PhaseName::Finished,
        };
    }

    /// The saga as folded so far.
    pub fn saga(&self) -> &Saga {
        &self.saga
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.summary.outcome
    }

    /// What started the rollback of a cutover that is rolling back or was rolled back.
    pub fn rollback_trigger(&self) -> Option<Trigger> {
        let rolled_back = self.phase == PhaseName::RollingBack
            || matches!(
                self.outcome(),
                Some(Outcome::RolledBack | Outcome::RolledBackByOperator)
            );
        rolled_back.then(|| self.first_trigger.unwrap_or(Trigger::Step))
    }

    /// Who drives an unfinished cutover, for tables: its owner, or that nobody does (an orphan:
    /// its owner's lease is free or ran out).
    pub fn driver(&self) -> String {
        if self.outcome().is_some() {
            return "-".into();
        }
        match &self.lease {
            Some(l) if l.held => l.owner.clone(),
            Some(l) => format!("nobody (was {})", l.owner),
            None => "nobody".into(),
        }
    }

    /// `running`, `rolled_back`, `running (paused)`…: the state in a word, for tables.
    pub fn state_word(&self) -> String {
        let word = match (self.outcome(), self.phase) {
            (Some(o), _) => o.as_str(),
            (None, PhaseName::New) => "new",
            (None, PhaseName::Running) => "running",
            (None, PhaseName::RollingBack) => "rolling_back",
            (None, PhaseName::Finished) => "finished",
        };
        match &self.paused {
            Some(_) if self.outcome().is_none() => format!("{word} (paused)"),
            _ => word.to_string(),
        }
    }
}

/// Seconds from `from` to `to`, two records' RFC 3339 times; `None` without a start, or if
/// either does not parse or the clock went backwards.
fn seconds_between(from: Option<&str>, to: &str) -> Option<f64> {
    let from = humantime::parse_rfc3339_weak(from?).ok()?;
    let to = humantime::parse_rfc3339_weak(to).ok()?;
    to.duration_since(from).ok().map(|d| d.as_secs_f64())
}

/// The summary of a cutover from its journal records.
pub fn summarize(records: &[Record]) -> Summary {
    CutoverState::fold(records).summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::StepInfo;

    fn rec(event: Event) -> Record {
        Record {
            at: "2026-12-01T00:00:00.000Z".into(),
            event,
        }
    }

    #[test]
    fn the_state_folds_summary_step_weights_and_trigger_and_round_trips_as_json() {
        let records = vec![
            rec(Event::Started {
                id: "c1".into(),
                service: "svc".into(),
                plan: "plan.toml".into(),
                target_arn: "arn".into(),
                live_color: Color::Blue,
                new_color: Color::Green,
                initial: Split::all_on(Color::Blue),
                action: None,
                steps: vec![StepInfo {
                    label: "shift 50%".into(),
                    has_effects: true,
                    has_undo: false,
                }],
                pid: 1,
                started_by: None,
                vars: Default::default(),
            }),
            rec(Event::StepStarted { step: 0 }),
            rec(Event::WeightVerified {
                step: 0,
                split: Split::with_new(Color::Green, 500),
                elapsed_ms: 3,
                action: None,
            }),
        ];
        let mut state = CutoverState::fold(&records);
        assert_eq!(state.phase, PhaseName::Running);
        assert_eq!(state.step.as_deref(), Some("shift 50%"));
        assert_eq!(
            state.weights,
            Some(Percents {
                blue: 50.0,
                green: 50.0
            })
        );
        assert_eq!(state.rollback_trigger(), None);
        state.push(&rec(Event::RollbackRequested {
            trigger: Trigger::Operator,
            reason: "pager".into(),
            by: "me".into(),
        }));
        assert_eq!(state.phase, PhaseName::RollingBack);
        assert_eq!(state.rollback_trigger(), Some(Trigger::Operator));
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["phase"], "rolling_back");
        assert_eq!(json["steps"][0]["status"], "running");
        assert_eq!(json["weights"]["green"], 50.0);
        let back: CutoverState = serde_json::from_value(json).unwrap();
        assert_eq!(back.summary, state.summary);
        assert_eq!(back.step, state.step);
    }
}
