//! Humans in the loop (issue 11): Go/No-Go gates by CLI and API, the judge still armed while a
//! gate waits, rejections and timeouts, lifecycle hooks at every point, the deadline, and a
//! gradual rollback — real cutovers against moto.

use std::time::Duration;

use cutover::color::{Color, Split};
use serde_json::json;

use crate::e2e::{Background, hooks_log, journal_text, profile, steps_with_deploy, wait_for_event};
use crate::util::*;

/// 50 %, a gate, then 100 %: the runbook's "before the switch" decision at a partial weight.
fn gated_steps(gate: &str) -> String {
    format!(
        r#"
[[steps]]
action = "verify"

[[steps]]
action = "shift"
weight = 50
bake = "2s"

[[steps]]
action = "approve"
{gate}

[[steps]]
action = "shift"
weight = 100
bake = "2s"
"#
    )
}

fn set_profile(wd: &Workdir, p: serde_json::Value) {
    std::fs::write(wd.path().join("profile.json"), p.to_string()).unwrap();
}

/// A gate answered through the journal of a foreground run: `cutover approve --config`.
#[tokio::test(flavor = "multi_thread")]
async fn a_gate_approved_from_the_command_line_goes_on() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &gated_steps("timeout = \"10m\"")));
    let config = plan.to_str().unwrap();
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "approval_requested", Duration::from_secs(40));
    assert_eq!(
        weights(&world).await,
        Split::with_new(Color::Green, 500),
        "waits at 50 %"
    );
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["approve", "--config", config, "--reason", "dashboards green"],
    );
    cmd.env("USER", "carol");
    assert_eq!(run(cmd).status.code(), Some(0));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{s}");
    let journal = journal_text(&wd.state());
    assert!(
        journal.contains(r#""event":"approved","step":2,"by":"carol","reason":"dashboards green""#),
        "{journal}"
    );
    // Nothing waits any more: a second answer is refused.
    let out = run(wd.cutover(&world.endpoint, &["approve", "--config", config]));
    assert_eq!(out.status.code(), Some(1));
}

/// While a gate waits at a partial weight the judge keeps judging: a failure rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_gate_does_not_disarm_the_judge() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &gated_steps("timeout = \"10m\"")));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "approval_requested", Duration::from_secs(40));
    set_profile(&wd, profile(0.5, 0.05));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// A No-Go rolls back, by the rejecting person's hand (an operator's rollback: exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_gate_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &gated_steps("")));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "approval_requested", Duration::from_secs(40));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &[
            "reject",
            "--config",
            plan.to_str().unwrap(),
            "--reason",
            "checkout latency in EU",
        ],
    );
    cmd.env("USER", "dave");
    assert_eq!(run(cmd).status.code(), Some(0));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 4, "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("rejected by dave: checkout latency in EU"),
        "{s}"
    );
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Unanswered in time, `on_timeout = "rollback"` (the default) rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_gate_rolls_back_at_its_timeout() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &gated_steps("timeout = \"1m\"")));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    let (code, s) = bg.wait(Duration::from_secs(150));
    assert_eq!(code, 3, "{s}");
    assert!(s["reason"].as_str().unwrap().contains("no approval within 1m"), "{s}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// The daemon names its callers by their tokens: an approval is the token's, whatever the body
/// says; only the plan's approvers may answer, and not the person who started the cutover.
#[tokio::test(flavor = "multi_thread")]
async fn a_gate_approved_through_the_api_by_a_named_token() {
    use std::os::unix::fs::PermissionsExt;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let gate = "timeout = \"10m\"\napprovers = [\"alice\", \"bob\"]\nrequire_other = true";
    std::fs::write(plans.join("svc.toml"), plan(&world, "", &gated_steps(gate))).unwrap();
    let tokens = wd.path().join("tokens");
    std::fs::write(
        &tokens,
        "# name token\nalice alice-token-0123456789\nbob bob-token-0123456789ab\neve eve-token-0123456789ab\n",
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = wd.cutover(
        &world.endpoint,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plans",
            plans.to_str().unwrap(),
            "--token-file",
        ],
    );
    cmd.arg(&tokens)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let post = |token: &'static str, path: String, body: serde_json::Value| {
        let url = url.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{url}{path}"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default();
            (status, v)
        }
    };
    let (status, v) = post("alice-token-0123456789", "/v1/cutovers".into(), json!({"plan": "svc"})).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for_event(&wd.state(), "approval_requested", Duration::from_secs(40));
    let approve = format!("/v1/cutovers/{id}/approve");
    let (status, v) = post(
        "eve-token-0123456789ab",
        approve.clone(),
        json!({"reason": "lgtm", "by": "bob"}),
    )
    .await;
    assert_eq!(status, 403, "eve is not an approver, whatever the body says: {v}");
    let (status, v) = post("alice-token-0123456789", approve.clone(), json!({"reason": "lgtm"})).await;
    assert_eq!(status, 403, "alice started it: {v}");
    assert!(v["error"].as_str().unwrap().contains("requires someone else"), "{v}");
    let (status, v) = post("bob-token-0123456789ab", approve, json!({"reason": "lgtm"})).await;
    assert_eq!(status, 200, "{v}");
    wait_for_event(&wd.state(), "finished", Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let journal = journal_text(&wd.state());
    assert!(journal.contains(r#""started_by":"alice""#), "{journal}");
    assert!(
        journal.contains(r#""event":"approved","step":2,"by":"bob""#),
        "{journal}"
    );
    assert!(journal.contains(r#""outcome":"promoted""#), "{journal}");
}

/// Hooks that log where they ran: `[[hooks]]` at every point.
fn hooks_everywhere() -> String {
    [
        "before_shift",
        "after_shift",
        "before_promote",
        "after_promote",
        "on_rollback",
    ]
    .iter()
    .map(|at| {
        format!(
            "\n[[hooks]]\nat = \"{at}\"\ncommand = [\"sh\", \"-c\", \"echo {at} $CUTOVER_NEW_COLOR >> hooks.log\"]\n"
        )
    })
    .collect()
}

/// Each hook point, in a promoted and a rolled-back cutover: in order, and `on_rollback` once,
/// after traffic is back and before the undo chain.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_hooks_run_at_their_points() {
    let moto = Moto::start();
    let wd = Workdir::new();
    let world = fixture(&moto, &[]);
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = format!(
        "{}{}",
        plan(&world, "", &steps_with_deploy(QUICK_STEPS)),
        hooks_everywhere()
    );
    let plan_path = wd.write_plan(&text);
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan_path.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        hooks_log(&wd),
        [
            "deploy green",
            "before_shift green",
            "after_shift green",
            "before_shift green",
            "before_promote green",
            "after_shift green",
            "after_promote green",
        ]
    );
    std::fs::remove_file(wd.path().join("hooks.log")).unwrap();
    // The way back (blue is new now), failing: on_rollback once, between restore and undo.
    set_profile(
        &wd,
        json!({"rps": 200, "blue_error_rate": 0.5, "green_error_rate": 0.0, "blue_latency": 0.05, "green_latency": 0.05}),
    );
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan_path.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        hooks_log(&wd),
        [
            "deploy blue",
            "before_shift blue",
            "after_shift blue",
            "on_rollback blue",
            "undeploy blue",
        ]
    );
}

/// A failing before-hook fails its step: the shift never writes, and the cutover rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_before_shift_hook_stops_the_shift() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = format!(
        "{}\n[[hooks]]\nat = \"before_shift\"\ncommand = [\"sh\", \"-c\", \"echo not ready; exit 9\"]\n",
        plan(&world, "", QUICK_STEPS)
    );
    let plan_path = wd.write_plan(&text);
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan_path.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        json(&out)["reason"]
            .as_str()
            .unwrap()
            .contains("before_shift hook sh -c"),
        "{}",
        json(&out)
    );
    assert!(!journal_text(&wd.state()).contains("weight_intent"), "nothing written");
}

/// Regression (issue 11): a cutover that could not make progress waited for ever. Past the
/// plan's `deadline` it rolls back with trigger `deadline`, whatever it was doing.
#[tokio::test(flavor = "multi_thread")]
async fn past_its_deadline_a_cutover_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = QUICK_STEPS.replace("bake = \"3s\"", "bake = \"10m\"");
    let plan_path = wd.write_plan(&format!("deadline = \"1m\"\n{}", plan(&world, "", &steps)));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan_path.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        json(&out)["reason"].as_str().unwrap().contains("deadline of 1m passed"),
        "{}",
        json(&out)
    );
    assert!(journal_text(&wd.state()).contains(r#""trigger":"deadline""#));
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// `rollback.gradual`: an automatic rollback steps the new colour down (here 25 %, then 0),
/// each step read back, `gradual_pause` apart.
#[tokio::test(flavor = "multi_thread")]
async fn a_gradual_rollback_steps_down() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.5, 0.05));
    let text = plan(&world, "gradual = [25, 0]\ngradual_pause = \"2s\"", QUICK_STEPS);
    let plan_path = wd.write_plan(&text);
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan_path.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    let journal = journal_text(&wd.state());
    let step = journal
        .find("gradual rollback: blue 75% green 25%")
        .expect("the 25 % step");
    let restored = journal.find(r#""event":"traffic_restored""#).expect("restored");
    assert!(step < restored, "{journal}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}
