//! Plan files: every bad plan exits 2, names the key, and changes nothing.

use cutover::color::Color;

use crate::util::*;

#[test]
fn validate_accepts_the_examples_and_names_the_key_of_an_error() {
    let wd = Workdir::new();
    // Regression (issue 14.6): config/example.toml called scripts that did not exist, and
    // validate did not notice; its commands are now the stand-ins in config/runbook/.
    for example in ["config/example.toml", "config/minimal.toml", "config/runbook.toml"] {
        let path = root().join(example);
        let out = run(wd.cutover("http://127.0.0.1:9", &["validate", "--config", path.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(0), "{example}");
    }
    let text = std::fs::read_to_string(root().join("config/minimal.toml"))
        .unwrap()
        .replace("0.001", "1.5");
    let plan = wd.write_plan(&text);
    let out = run(wd.cutover("http://127.0.0.1:9", &["validate", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "plan.toml: rollback.max_error_rate: 1.5 is above the maximum 1 (allowed 0–1): a fraction, 0.001 means 0.1 %"
        ),
        "{err}"
    );
}

/// Issue 8: `poll_interval = "1ns"` validated, and then sent 165 DescribeListeners a second.
#[test]
fn validate_refuses_a_value_outside_its_range_and_names_the_range() {
    let wd = Workdir::new();
    let text = std::fs::read_to_string(root().join("config/example.toml"))
        .unwrap()
        .replace("poll_interval = \"15s\"", "poll_interval = \"1ns\"");
    let plan = wd.write_plan(&text);
    let out = run(wd.cutover("http://127.0.0.1:9", &["validate", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"plan.toml: metrics.poll_interval: "1ns" is below the minimum 1s (allowed 1s–10m)"#),
        "{err}"
    );
}

/// Regression (issue 8): a duplicate key was reported one line above its own, with no key.
#[test]
fn validate_reports_a_duplicate_key_on_its_own_line_with_its_key() {
    let wd = Workdir::new();
    let example = std::fs::read_to_string(root().join("config/example.toml")).unwrap();
    let text = example.replacen("weight = 100\n", "weight = 100\nweight = 100\n", 1);
    let line = text.lines().position(|l| l == "weight = 100").unwrap() + 2;
    let plan = wd.write_plan(&text);
    let out = run(wd.cutover("http://127.0.0.1:9", &["validate", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("plan.toml: steps[4].weight (line {line}): duplicate key")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_plans_exit_2_and_change_nothing() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let before = weights(&world).await;
    let good = plan(&world, "", QUICK_STEPS);
    // The key, and for an error toml found in the text the line of the replacement's last line.
    let bad = [
        ("weight = 50", "weight = 150", "steps[1].weight", false),
        ("weight = 100", "weight = 90", "steps[3].action", false),
        ("bake = \"3s\"", "bake = \"0s\"", "steps[1].bake", false),
        (
            "max_error_rate = 0.05",
            "max_error_rate = 5",
            "rollback.max_error_rate",
            false,
        ),
        ("[service]", "[service]\ncolor = \"blue\"", "service.color", true),
        ("period = \"1s\"", "period = \"soon\"", "metrics.period", false),
        (
            "poll_interval = \"1s\"",
            "poll_interval = \"1ns\"",
            "metrics.poll_interval",
            false,
        ),
    ];
    for (from, to, key, has_line) in bad {
        let wd = Workdir::new();
        let text = good.replacen(from, to, 1);
        let key = if has_line {
            let last = to.lines().last().unwrap();
            format!("{key} (line {})", text.lines().position(|l| l == last).unwrap() + 1)
        } else {
            key.to_string()
        };
        let plan = wd.write_plan(&text);
        for cmd in ["run", "rollback"] {
            let out = run(wd.cutover(
                &world.endpoint,
                &[cmd, "--config", plan.to_str().unwrap(), "--to", "green"][..if cmd == "run" { 3 } else { 5 }],
            ));
            assert_eq!(out.status.code(), Some(2), "{cmd} with {to}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&format!("plan.toml: {key}: ")), "{cmd} with {to}: {err}");
        }
        assert!(
            !wd.state().join("cutovers").exists()
                || std::fs::read_dir(wd.state().join("cutovers")).unwrap().next().is_none()
        );
    }
    assert_eq!(weights(&world).await, before, "a bad plan changed the weights");
    assert_eq!(before.holder(), Some(Color::Blue));
}

/// Regression (issue 7): `status --state-dir FILE/x` printed `Not a directory (os error 20)`
/// twice, once from the error's message and once from its `source()`.
#[test]
fn an_error_prints_its_cause_once() {
    let wd = Workdir::new();
    let file = wd.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let plan = root().join("config/minimal.toml");
    let state = file.join("x");
    let out = run(wd.cutover(
        "http://127.0.0.1:9",
        &[
            "status",
            "--config",
            plan.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
    assert!(err.contains("opening the state directory"), "{err}");
}
