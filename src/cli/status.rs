//! `cutover status`, and the summaries the commands print: the JSON summary on stdout
//! (also when a cutover never started, so pipelines always get one) or a line of text.

use std::sync::Arc;

use anyhow::Context;
use tracing::error;

use super::args::Output;
use crate::aws::{Clients, Patience};
use crate::color::Color;
use crate::config::Plan;
use crate::journal::{self, Journal, Store};
use crate::saga::Outcome;
use crate::state::{CutoverState, Summary};
use crate::traffic::{Alb, Traffic};

/// `cutover status`: the weights now, and the latest cutover of the plan's target.
pub(super) async fn status(plan: Plan, store: Arc<dyn Store>, output: Output) -> anyhow::Result<i32> {
    let target = plan.alb.target_arn().to_string();
    // Someone is waiting at a terminal: an unreachable endpoint is an error within seconds.
    let clients = Clients::load(crate::aws::arn_region(&plan.alb.listener_arn), Patience::Interactive).await;
    let alb = Alb::new(clients.elbv2, &plan.alb);
    let split = alb
        .read()
        .await
        .with_context(|| format!("reading the weights of {target}"))?;
    let latest = match store.latest(&target).await? {
        Some(id) => Some(Journal::new(store.clone(), &id).read_all().await?),
        None => None,
    };
    let state = latest.as_deref().map(CutoverState::fold);
    // Who holds the target's lease, read without taking it (taking it, even briefly, could
    // make a concurrent `rollback` or `run` think a live owner holds it).
    let lease = store.lease(&target).await?;
    let running = state.as_ref().is_some_and(|s| s.outcome().is_none()) && lease.as_ref().is_some_and(|l| l.held);
    let summary = state.map(|s| s.summary);
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "target_arn": target,
                "weights": split.percents(),
                "raw_weights": split,
                "running": running,
                "lease": lease,
                "latest": summary,
            });
            println!("{v}");
        }
        Output::Text => {
            println!("{target}");
            println!("weights: {split}");
            match summary {
                Some(s) => {
                    let state = s.outcome.map(Outcome::as_str).unwrap_or(if running {
                        "running"
                    } else {
                        "unfinished (process gone)"
                    });
                    println!(
                        "latest cutover: {} ({} → {}) {state}",
                        s.id,
                        color_str(s.live_color),
                        color_str(s.new_color)
                    );
                    if let Some(r) = &s.reason {
                        println!("reason: {r}");
                    }
                    if s.outcome.is_none() {
                        match &lease {
                            Some(l) if l.held => println!(
                                "driven by {}{}",
                                l.owner,
                                l.expires_at
                                    .as_deref()
                                    .map(|t| format!(" (lease until {t})"))
                                    .unwrap_or_default()
                            ),
                            Some(l) => println!(
                                "nobody drives it (last owner {}, lease ran out): `cutover rollback --config FILE` finishes it, \
                                 or a daemon on this store adopts it",
                                l.owner
                            ),
                            None => println!("nobody drives it"),
                        }
                    }
                    for st in &s.steps {
                        // The same word as the JSON (`done`, `undone`), not Rust's `Done`.
                        let word = serde_json::to_value(st.status).expect("a step status serializes");
                        println!("  {:<12} {}", st.label, word.as_str().unwrap_or_default());
                    }
                }
                None => println!("latest cutover: none recorded in the {}", store.describe()),
            }
        }
    }
    Ok(0)
}

/// A cutover that did not start (before it had a journal): logs why, and prints the
/// summary when asked for JSON so that pipelines always get one.
pub(super) fn not_started(plan: &Plan, output: Output, reason: String) -> i32 {
    error!("not started: {reason}");
    print_bare(plan, output, Outcome::NotStarted, reason);
    Outcome::NotStarted.exit_code()
}

/// A summary without a journal (`not_started` before one existed, or `error`).
pub(super) fn print_bare(plan: &Plan, output: Output, outcome: Outcome, reason: String) {
    if output == Output::Json {
        let now = journal::now_rfc3339();
        let summary = Summary {
            service: plan.service.clone(),
            outcome: Some(outcome),
            reason: Some(reason),
            started_at: Some(now.clone()),
            finished_at: Some(now),
            ..Summary::default()
        };
        print_summary(&summary, output);
    }
}

fn color_str(c: Option<Color>) -> &'static str {
    c.map(Color::as_str).unwrap_or("?")
}

pub(super) fn print_summary(summary: &Summary, output: Output) {
    match output {
        Output::Json => println!("{}", serde_json::to_string(summary).expect("summary serializes")),
        Output::Text => println!(
            "{} {}: {} — {} (final weights {})",
            summary.id,
            summary.outcome.map(Outcome::as_str).unwrap_or("unfinished"),
            summary.service,
            summary.reason.as_deref().unwrap_or(""),
            summary
                .final_weights
                .as_ref()
                .map(|w| serde_json::to_string(w).expect("weights serialize"))
                .unwrap_or_default()
        ),
    }
}
