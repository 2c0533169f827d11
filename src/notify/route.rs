//! Which `[[notify]]` entry is sent what: the decision for one entry and one [`Change`]. Pure.
//!
//! * **Slack and webhooks** get a change when it carries an event name the entry subscribes to
//!   (one message per record, named after the first such name).
//! * **PagerDuty** acts on a rollback as it happens, because a page is worth most while traffic
//!   may still be on the broken version:
//!   1. the record that turns the cutover to rolling back **triggers** the cutover's alert, when
//!      the entry subscribes to the outcome that rollback is heading for (`rolled_back`,
//!      `rolled_back_by_operator`) or, for a stall, to `stalled`; a rollback heading for
//!      `not_started` (the first verify failed: nothing changed) pages nobody;
//!   2. once traffic is verified back on the live colour (`traffic_restored`, or a `finished`
//!      rollback when this process never saw the restore), the alert is **resolved**, once per
//!      rollback, unless `resolve = false`; the resolve is sent even when another process sent
//!      the trigger (PagerDuty ignores a resolve of an alert it does not have);
//!   3. `unsafe` (traffic not confirmed back) triggers with severity `critical`;
//!   4. any other subscribed event triggers with its severity (see [`super::pagerduty::Severity`]).

use std::collections::BTreeSet;

use super::fold::Change;
use crate::config::notify::{EventName, Notify, NotifyKind};
use crate::saga::{Outcome, Trigger};

/// What to send an entry about one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A Slack message or a webhook delivery, named after this event.
    Send(EventName),
    /// A PagerDuty `trigger` for this event.
    Trigger(EventName),
    /// A PagerDuty `resolve` of the cutover's alert.
    Resolve,
}

impl Action {
    /// The event name a delivery is logged and counted under.
    pub fn name(self) -> &'static str {
        match self {
            Action::Send(e) | Action::Trigger(e) => e.as_str(),
            Action::Resolve => "resolve",
        }
    }
}

/// One entry's subscriptions, and what it remembers between changes.
#[derive(Debug, Clone)]
pub struct Route {
    kind: NotifyKind,
    events: BTreeSet<EventName>,
    resolve: bool,
    /// PagerDuty: the rollback under way has been resolved already.
    resolved: bool,
}

impl Route {
    pub fn new(n: &Notify) -> Route {
        Route {
            kind: n.kind,
            events: n.events.clone(),
            resolve: n.resolve,
            resolved: false,
        }
    }

    /// What this entry is sent about `c`, if anything. Call it for every record in order (also
    /// for records that are not sent, so that what it remembers is right).
    pub fn decide(&mut self, c: &Change) -> Option<Action> {
        match self.kind {
            NotifyKind::PagerDuty => self.pagerduty(c),
            NotifyKind::Slack | NotifyKind::Webhook => c
                .names
                .iter()
                .copied()
                .find(|n| self.events.contains(n))
                .map(Action::Send),
        }
    }

    fn pagerduty(&mut self, c: &Change) -> Option<Action> {
        if c.rollback_started {
            self.resolved = false;
            return self.pages(c).map(Action::Trigger);
        }
        let back = c.traffic_restored
            || matches!(
                c.finished,
                Some((Outcome::RolledBack | Outcome::RolledBackByOperator, _))
            );
        if back {
            if self.resolve && !self.resolved && self.pages(c).is_some() {
                self.resolved = true;
                return Some(Action::Resolve);
            }
            return None;
        }
        // Rollbacks and stalls page when they begin (above), not when they end.
        c.names
            .iter()
            .copied()
            .filter(|n| {
                !matches!(
                    n,
                    EventName::RolledBack | EventName::RolledBackByOperator | EventName::Stalled
                )
            })
            .find(|n| self.events.contains(n))
            .map(Action::Trigger)
    }

    /// The name the rollback under way pages as, when this entry subscribes to it.
    fn pages(&self, c: &Change) -> Option<EventName> {
        let rb = c.facts.rollback.as_ref()?;
        let name = match rb.heading {
            Outcome::RolledBack => EventName::RolledBack,
            Outcome::RolledBackByOperator => EventName::RolledBackByOperator,
            _ => return None,
        };
        if rb.trigger == Trigger::Stalled && self.events.contains(&EventName::Stalled) {
            return Some(EventName::Stalled);
        }
        self.events.contains(&name).then_some(name)
    }
}
