//! JSON everywhere (issue 14.4): the live log as JSON lines with the cutover id and the
//! numbers as fields, `--output json` on `validate`, `start` and `watch`, the client commands'
//! text that is not raw JSON, and `status` in the JSON's words.

use serde_json::Value;

use crate::daemon::{Serve, TOKEN};
use crate::e2e::{profile, steps_with_deploy};
use crate::util::*;

/// Every line of `stderr`, each one JSON object, or a panic naming the line that is not.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Regression (issue 14.4): JSON lines lacked the cutover id and the numbers behind a verdict.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_live_log_carries_the_id_and_the_numbers() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(
        &world.endpoint,
        &[
            "run",
            "--config",
            plan.to_str().unwrap(),
            "--output",
            "json",
            "--log-format",
            "json",
        ],
    ));
    assert_eq!(out.status.code(), Some(3));
    let summary = json(&out);
    let id = summary["id"].as_str().unwrap();
    let lines = json_lines(&out.stderr);
    // Every line of the cutover names it (hook output lines are the hooks', not the journal's).
    let events: Vec<&Value> = lines.iter().filter(|l| l["event"].is_string()).collect();
    assert!(events.len() > 5, "{lines:#?}");
    assert!(events.iter().all(|l| l["cutover_id"] == id), "{events:#?}");
    let failed: Vec<&&Value> = events
        .iter()
        .filter(|l| l["event"] == "verdict" && l["verdict"] == "fail")
        .collect();
    assert!(!failed.is_empty(), "{events:#?}");
    let last_fail = failed.last().unwrap();
    assert_eq!(last_fail["rollback"], true, "{last_fail}");
    assert_eq!(last_fail["streak"], last_fail["streak_limit"], "{last_fail}");
    assert!(last_fail["requests"].as_f64().unwrap() > 0.0, "{last_fail}");
    assert!(
        last_fail["error_rate"].as_f64().unwrap() > last_fail["threshold"].as_f64().unwrap(),
        "{last_fail}"
    );
    assert!(
        last_fail["reason"].as_str().unwrap().contains("error rate too high"),
        "{last_fail}"
    );
    assert_eq!(last_fail["step"], "shift 50%", "{last_fail}");
    let finished = events.iter().find(|l| l["event"] == "finished").unwrap();
    assert_eq!(finished["outcome"], "rolled_back");
    assert_eq!(finished["mark"], "rollback");
    assert!(
        finished["message"].as_str().unwrap().starts_with("ROLLED BACK"),
        "{finished}"
    );
}

/// Regression (issue 14.4): `validate` had no `--output json`; (issue 14.6) it passed a plan
/// whose commands did not exist.
#[test]
fn validate_answers_in_json_and_names_what_would_not_run() {
    let moto_free = Workdir::new();
    let world = World {
        endpoint: "http://127.0.0.1:9".into(),
        listener_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/a/1/2".into(),
        rule_arn: None,
        blue: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/3".into(),
        green: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/g/4".into(),
        stopped_instance: None,
    };
    let validate = |text: &str| {
        let plan = moto_free.write_plan(text);
        let out = run(moto_free.cutover(
            &world.endpoint,
            &["validate", "--config", plan.to_str().unwrap(), "--output", "json"],
        ));
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
        (out.status.code(), v)
    };
    let (code, v) = validate(&plan(&world, "", QUICK_STEPS));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["steps"][0], "verify");
    let (code, v) = validate(&plan(&world, "bogus = 1", QUICK_STEPS));
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(v["ok"], false);
    assert!(v["errors"][0]["key"].as_str().unwrap().contains("bogus"), "{v}");
    let missing = "[[steps]]\naction = \"deploy\"\nrun = [\"./no-such-deploy.sh\"]\n";
    let (code, v) = validate(&plan(&world, "", &format!("{missing}{QUICK_STEPS}")));
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(v["errors"][0]["key"], "steps[0].run", "{v}");
    assert!(
        v["errors"][0]["reason"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
}

/// Regression (issue 14.4): `start --wait` and `watch` ignored `--log-format json` and had no
/// `--output json`; `pause` printed raw JSON in text mode; `status` printed `Done`.
#[tokio::test(flavor = "multi_thread")]
async fn the_clients_speak_json_when_asked_and_words_when_not() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.toml"), plan(&world, "", QUICK_STEPS)).unwrap();
    let slow = "[[steps]]\naction = \"shift\"\nweight = 50\nbake = \"10m\"\n\n[[steps]]\naction = \"shift\"\nweight = 100\nbake = \"3s\"\n";
    std::fs::write(dir.join("slow.toml"), plan(&world, "", slow)).unwrap();
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let client = |args: &[&str]| {
        let mut cmd = wd.cutover(&moto.endpoint, args);
        cmd.env("CUTOVER_TOKEN", TOKEN).env("CUTOVER_SERVER", &s.url);
        run(cmd)
    };
    let out = client(&["start", "web", "--wait", "--output", "json", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stdout: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stdout.len(), 2, "the id, then the summary: {stdout:?}");
    let id = stdout[0]["id"].as_str().unwrap().to_string();
    assert_eq!(stdout[1]["id"], id.as_str());
    assert_eq!(stdout[1]["outcome"], "promoted");
    let lines = json_lines(&out.stderr);
    let events: Vec<&Value> = lines.iter().filter(|l| l["event"].is_string()).collect();
    assert!(events.iter().all(|l| l["cutover_id"] == id.as_str()), "{events:#?}");
    // The records' own times, not the moment they were printed.
    assert!(events.iter().all(|l| l["at"].is_string()), "{events:#?}");
    assert!(events.iter().any(|l| l["verdict"] == "pass"), "{events:#?}");

    // `watch` of a finished cutover: the whole log again, and the summary.
    let out = client(&["watch", &id, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["outcome"], "promoted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROMOTED"));

    // `status` says `done` as the JSON does.
    let plan_file = dir.join("web.toml");
    let out = run(wd.cutover(&moto.endpoint, &["status", "--config", plan_file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" done") && !text.contains("Done"), "{text}");

    // The actions on a daemon's cutover answer in words, not the API's JSON.
    let out = client(&["start", "slow"]);
    assert_eq!(out.status.code(), Some(0));
    let slow_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let started = std::time::Instant::now();
    loop {
        let out = client(&["pause", &slow_id, "--reason", "dashboards"]);
        if out.status.code() == Some(0) {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.starts_with(&format!("{slow_id}: pause done; now running (paused)")),
                "{text}"
            );
            break;
        }
        // Not baking yet (409): try again.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "pause never accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = client(&["rollback", &slow_id, "--reason", "enough"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        // The first cutover promoted green: green is this one's live colour (ping-pong).
        text.starts_with(&format!("{slow_id}: traffic restored (blue 0% green 100%)")),
        "{text}"
    );
}
