//! Reports of cutovers run from the command line: a promoted one shows its steps and no
//! rollback; a judge-rolled-back one marks the rollback, and the checks catch a chart drawn wrong.

use std::path::Path;

use serde_json::Value;

use crate::e2e::{profile, steps_with_deploy};
use crate::util::*;

use super::browser::screenshot;
use super::chart::{Expect, check_chart, expect};

/// `cutover report --config PLAN --format FORMAT --output FILE`, read back.
fn report(wd: &Workdir, world: &World, plan: &Path, format: &str) -> String {
    let file = wd.path().join(format!("report.{format}"));
    let out = run(wd.cutover(
        &world.endpoint,
        &[
            "report",
            "--config",
            plan.to_str().unwrap(),
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0));
    std::fs::read_to_string(file).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_cutover_s_report_shows_its_steps_and_no_rollback_in_a_browser() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));

    let record: Value = serde_json::from_str(&report(&wd, &world, &plan, "json")).unwrap();
    assert_eq!(record["outcome"], "promoted");
    assert_eq!(record["rollback"], Value::Null);
    assert_eq!(record["thresholds"]["max_error_rate"], 0.05);
    assert_eq!(record["thresholds"]["latency_statistic"], "Average");
    let shifts: Vec<&str> = record["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(shifts, ["shift 50%", "shift 100%", "observe"]);
    assert_eq!(record["shifts"][0]["new_percent"], 50.0);
    assert_eq!(record["shifts"][0]["new"]["error_rate"], 0.0);
    assert!(record["duration_secs"].as_f64().unwrap() > 8.0, "{record}");
    let md = report(&wd, &world, &plan, "markdown");
    assert!(
        md.contains("| Outcome | promoted |") && md.contains("| Rollback | none |"),
        "{md}"
    );

    let html = report(&wd, &world, &plan, "html");
    // Without --output (or with `-`) the report goes to stdout.
    let out = run(wd.cutover(&world.endpoint, &["report", "--config", plan.to_str().unwrap()]));
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout)),
        (Some(0), html.as_str().into())
    );
    let want = expect(&[0.0, 50.0, 100.0], false);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    screenshot(&wd, &html, "promoted-375", (375, 1400));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_cutover_s_report_marks_the_rollback_and_the_checks_catch_a_wrong_chart() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3));

    let record: Value = serde_json::from_str(&report(&wd, &world, &plan, "json")).unwrap();
    assert_eq!(record["outcome"], "rolled_back");
    let rb = &record["rollback"];
    assert_eq!(
        (rb["trigger"].as_str(), rb["initiated_by"].as_str()),
        (Some("judge"), Some("cutover"))
    );
    assert!(rb["reason"].as_str().unwrap().contains("error rate too high"), "{rb}");
    assert!(
        rb["traffic_restored_at"].is_string() && rb["completed_at"].is_string(),
        "{rb}"
    );
    let chain: Vec<&str> = record["undo_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["label"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["traffic", "deploy"]);
    assert!(
        record["shifts"][0]["new"]["error_rate"].as_f64().unwrap() > 0.2,
        "{record}"
    );
    assert!(
        record["shifts"][0]["verdicts"]["fail"].as_u64().unwrap() >= 2,
        "{record}"
    );

    let html = report(&wd, &world, &plan, "html");
    let want = expect(&[0.0, 50.0, 0.0], true);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    screenshot(&wd, &html, "rolled-back-375", (375, 1400));
    screenshot(&wd, &html, "rolled-back-1024", (1024, 1300));

    // The same checks on pages drawn wrong must fail, each saying what is wrong.
    let threshold = html.find(r#"data-check="error_rate""#).unwrap();
    let tag_end = threshold + html[threshold..].find('>').unwrap();
    let tag = &html[threshold..tag_end];
    let y = tag.split(" y1=\"").nth(1).unwrap().split('"').next().unwrap();
    let lowered = tag
        .replace(&format!("y1=\"{y}\""), "y1=\"30\"")
        .replace(&format!("y2=\"{y}\""), "y2=\"30\"");
    let moved = format!("{}{lowered}{}", &html[..threshold], &html[tag_end..]);
    let no_marker = html.replace(r#"data-report="rollback""#, r#"data-report="gone""#);
    let points = html.find(r#"data-report="weights""#).unwrap();
    let flat = {
        let start = points + html[points..].find(" points=\"").unwrap() + 9;
        let end = start + html[start..].find('"').unwrap();
        format!("{}36,70 352,70{}", &html[..start], &html[end..])
    };
    let wide = html.replacen("<main>", r#"<main><div style="width:420px">a wide banner</div>"#, 1);
    for (page, says) in [
        (&wide, "the page scrolls sideways at 375 px"),
        (&moved, "error_rate threshold 0.05 drawn at y"),
        (&no_marker, "no rollback marker"),
        (&flat, "weights line steps at"),
    ] {
        match check_chart(&wd, page, &want) {
            Ok(()) => panic!("a wrong chart passed the checks ({says})"),
            Err(e) => assert!(e.contains(says), "{e} does not say {says:?}"),
        }
    }
    assert!(
        check_chart(
            &wd,
            &html,
            &Expect {
                rollback: false,
                ..want
            }
        )
        .is_err_and(|e| e.contains("a rollback marker on a cutover that did not roll back"))
    );
}
