//! The commands that call no AWS: `validate` (the plan and its commands), `prune` (retention
//! of the state directory), `completions` and `man` (generated from the clap definitions in
//! [`super::args`], so they never drift from `--help`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use tracing::{error, info};

use super::args::{Cli, Output};
use super::{EXIT_OK, EXIT_USAGE};
use crate::journal::Store;

/// `cutover validate`: every key of the plan, then every command it runs (found, executable);
/// exit 0 or 2. With `--output json`, one object on stdout either way.
pub(super) fn validate(config: &Path, output: Output) -> i32 {
    let file = config.display().to_string();
    let plan = match crate::config::load(config) {
        Ok(plan) => plan,
        Err(e) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "file": file, "ok": false, "errors": [{ "key": e.key, "line": e.line, "reason": e.reason }] })
                ),
                Output::Text => error!("invalid plan: {e}"),
            }
            return EXIT_USAGE;
        }
    };
    let dir = crate::engine::start::plan_dir(&plan);
    let problems: Vec<(String, String)> = crate::hooks::plan_commands(&plan)
        .into_iter()
        .filter_map(|(key, argv)| crate::hooks::unrunnable(&argv, &dir).map(|why| (key, why)))
        .collect();
    match output {
        Output::Json => {
            let errors: Vec<_> = problems
                .iter()
                .map(|(key, reason)| serde_json::json!({ "key": key, "reason": reason }))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "file": file,
                    "ok": problems.is_empty(),
                    "service": plan.service,
                    "steps": plan.steps.iter().map(|s| s.label()).collect::<Vec<_>>(),
                    "errors": errors,
                })
            );
        }
        Output::Text => {
            for (key, why) in &problems {
                error!("invalid plan: {file}: {key}: {why}");
            }
            if problems.is_empty() {
                println!(
                    "{file}: ok: {} steps: {}",
                    plan.steps.len(),
                    crate::engine::describe_steps(&plan)
                );
            }
        }
    }
    if problems.is_empty() { EXIT_OK } else { EXIT_USAGE }
}

/// `cutover completions SHELL`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "cutover", &mut std::io::stdout());
    EXIT_OK
}

/// `cutover man`: the page of `cutover` on stdout, or with `--dir` one page per command
/// (`cutover.1`, `cutover-run.1`, …) written there.
pub(super) fn man(dir: Option<&Path>) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("writing the manual page")?;
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing manual pages into {}", dir.display()))?;
    info!("manual pages written to {}", dir.display());
    Ok(EXIT_OK)
}

/// `cutover prune`: deletes what [`crate::journal::retention::prunable`] allows.
pub(super) async fn prune(store: Arc<dyn Store>, older_than: Duration, dry_run: bool) -> anyhow::Result<i32> {
    let ids = crate::journal::retention::prunable(&store, older_than, std::time::SystemTime::now())
        .await
        .with_context(|| format!("reading the {}", store.describe()))?;
    for id in &ids {
        if dry_run {
            println!("would prune {id}");
        } else {
            store
                .remove(id)
                .await
                .with_context(|| format!("pruning {id} from the {}", store.describe()))?;
            println!("pruned {id}");
        }
    }
    info!(
        "{} {} finished cutover(s) older than {} from the {}",
        if dry_run { "would prune" } else { "pruned" },
        ids.len(),
        humantime::format_duration(older_than),
        store.describe()
    );
    Ok(EXIT_OK)
}
