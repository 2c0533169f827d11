//! `[[steps]]` validated: each step and its checks, then the order of the plan (shifts
//! increase, the last is to 100, observe after it). Without `[[steps]]`, the runbook's plan.

use std::time::Duration;

use super::Validator;
use crate::config::bounds;
use crate::config::raw::{RawCheck, RawStep};
use crate::config::*;

/// The plan's steps, each validated, in an order that can run.
pub(super) fn steps(v: &Validator, raw: Option<Vec<RawStep>>) -> Result<Vec<Step>, PlanError> {
    let steps = match raw {
        Some(steps) => steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| step(v, i, s))
            .collect::<Result<Vec<_>, _>>()?,
        None => default_steps(),
    };
    let mut last_shift: Option<u32> = None;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Shift { permille, .. } => {
                if let Some(prev) = last_shift
                    && *permille <= prev
                {
                    return Err(v.err(
                        format!("steps[{i}].weight"),
                        format!(
                            "{}% does not increase on the previous shift ({}%)",
                            fmt_permille(*permille),
                            fmt_permille(prev)
                        ),
                    ));
                }
                last_shift = Some(*permille);
            }
            Step::Observe { .. } if last_shift != Some(1000) => {
                return Err(v.err(format!("steps[{i}].action"), "observe must come after the shift to 100"));
            }
            _ => {}
        }
    }
    match last_shift {
        None => {
            return Err(v.err("steps", "the plan has no shift step: the last shift must be to 100"));
        }
        Some(p) if p != 1000 => {
            return Err(v.err(
                "steps",
                format!("the last shift is to {}%: it must be to 100", fmt_permille(p)),
            ));
        }
        _ => {}
    }

    Ok(steps)
}

fn step(v: &Validator, i: usize, s: RawStep) -> Result<Step, PlanError> {
    let k = |name: &str| format!("steps[{i}].{name}");
    let action = s.action.as_str();
    let command_step = |s: &RawStep, default_timeout: &str| -> Result<CommandStep, PlanError> {
        let run = s
            .run
            .clone()
            .ok_or_else(|| v.err(k("run"), format!("missing: a {action} step needs a command to run")))?;
        Ok(CommandStep {
            run: v.argv(&k("run"), run)?,
            undo: s.undo.clone().map(|u| v.argv(&k("undo"), u)).transpose()?,
            timeout: v.duration(
                &k("timeout"),
                s.timeout.as_deref(),
                Some(default_timeout),
                &bounds::STEP_TIMEOUT,
            )?,
        })
    };
    let step = match action {
        "verify" => {
            for (key, present) in [
                ("run", s.run.is_some()),
                ("undo", s.undo.is_some()),
                ("timeout", s.timeout.is_some()),
            ] {
                v.forbid(k(key), present, action)?;
            }
            let checks = s
                .checks
                .clone()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(j, c)| check(v, &format!("steps[{i}].checks[{j}]"), c))
                .collect::<Result<_, _>>()?;
            Step::Verify { checks }
        }
        "deploy" => Step::Deploy {
            command: command_step(&s, "15m")?,
            healthy_timeout: v.duration(
                &k("healthy_timeout"),
                s.healthy_timeout.as_deref(),
                Some("5m"),
                &bounds::STEP_TIMEOUT,
            )?,
        },
        "migrate" => Step::Migrate {
            command: command_step(&s, "10m")?,
        },
        "shift" => {
            let w = s
                .weight
                .ok_or_else(|| v.err(k("weight"), "missing: the new colour's share in percent, 0.1–100"))?;
            v.within(&k("weight"), w, w, &bounds::WEIGHT)?;
            let permille = (w * 10.0).round();
            if (permille - w * 10.0).abs() > 1e-6 {
                return Err(v.err(
                    k("weight"),
                    format!("{w} has more precision than ALB weights allow: use a multiple of 0.1"),
                ));
            }
            Step::Shift {
                permille: permille as u32,
                bake: v.duration(&k("bake"), s.bake.as_deref(), None, &bounds::BAKE)?,
            }
        }
        "observe" => Step::Observe {
            duration: v.duration(&k("duration"), s.duration.as_deref(), None, &bounds::BAKE)?,
        },
        "approve" => {
            let approvers = s.approvers.clone().unwrap_or_default();
            if let Some(j) = approvers
                .iter()
                .position(|a| a.trim().is_empty() || a.chars().any(char::is_whitespace))
            {
                return Err(v.err(
                    format!("steps[{i}].approvers[{j}]"),
                    "an approver is a name without spaces: a token's name, or a local user name",
                ));
            }
            Step::Approve {
                timeout: v.duration(
                    &k("timeout"),
                    s.timeout.as_deref(),
                    Some("30m"),
                    &bounds::APPROVAL_TIMEOUT,
                )?,
                on_timeout: s.on_timeout.unwrap_or_default(),
                approvers,
                require_other: s.require_other.unwrap_or(false),
            }
        }
        other => {
            return Err(v.err(
                k("action"),
                format!("unknown action {other:?}: expected verify, deploy, migrate, shift, observe or approve"),
            ));
        }
    };
    // Keys that exist in the file format but not for this action are errors, not silently ignored.
    let foreign: &[(&str, bool)] = &[
        ("checks", s.checks.is_some() && action != "verify"),
        ("run", s.run.is_some() && !matches!(action, "deploy" | "migrate")),
        ("undo", s.undo.is_some() && !matches!(action, "deploy" | "migrate")),
        (
            "timeout",
            s.timeout.is_some() && !matches!(action, "deploy" | "migrate" | "approve"),
        ),
        ("on_timeout", s.on_timeout.is_some() && action != "approve"),
        ("approvers", s.approvers.is_some() && action != "approve"),
        ("require_other", s.require_other.is_some() && action != "approve"),
        ("healthy_timeout", s.healthy_timeout.is_some() && action != "deploy"),
        ("weight", s.weight.is_some() && action != "shift"),
        ("bake", s.bake.is_some() && action != "shift"),
        ("duration", s.duration.is_some() && action != "observe"),
    ];
    for (key, present) in foreign {
        v.forbid(k(key), *present, action)?;
    }
    Ok(step)
}

/// `[[hooks]]`: each a check (command or HTTP call) at its point.
pub(super) fn hooks(v: &Validator, raw: Vec<crate::config::raw::RawHook>) -> Result<Vec<LifecycleHook>, PlanError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, h)| {
            let c = RawCheck {
                http: h.http,
                expect_status: h.expect_status,
                command: h.command,
                timeout: h.timeout,
            };
            Ok(LifecycleHook {
                at: h.at,
                check: check(v, &format!("hooks[{i}]"), c)?,
            })
        })
        .collect()
}

fn check(v: &Validator, key: &str, c: RawCheck) -> Result<Check, PlanError> {
    let timeout = |default| {
        v.duration(
            &format!("{key}.timeout"),
            c.timeout.as_deref(),
            Some(default),
            &bounds::CHECK_TIMEOUT,
        )
    };
    match (c.http, c.command) {
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(&url).is_err() {
                return Err(v.err(
                    format!("{key}.http"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            let expect_status = c.expect_status.unwrap_or(200);
            v.within(
                &format!("{key}.expect_status"),
                expect_status,
                expect_status,
                &bounds::EXPECT_STATUS,
            )?;
            Ok(Check::Http {
                url,
                // In range (checked above), so it fits.
                expect_status: expect_status as u16,
                timeout: timeout("10s")?,
            })
        }
        (None, Some(argv)) => {
            if c.expect_status.is_some() {
                return Err(v.err(format!("{key}.expect_status"), "only for http checks"));
            }
            Ok(Check::Command {
                argv: v.argv(&format!("{key}.command"), argv)?,
                timeout: timeout("60s")?,
            })
        }
        (Some(_), Some(_)) => Err(v.err(key, "a check is either http or command, not both")),
        (None, None) => Err(v.err(key, "a check needs http = \"URL\" or command = [\"PROGRAM\", …]")),
    }
}

/// The runbook's plan, used when the file has no `[[steps]]`.
fn default_steps() -> Vec<Step> {
    vec![
        Step::Verify { checks: vec![] },
        Step::Shift {
            permille: 500,
            bake: Duration::from_secs(600),
        },
        Step::Shift {
            permille: 1000,
            bake: Duration::from_secs(300),
        },
        Step::Observe {
            duration: Duration::from_secs(1800),
        },
    ]
}
