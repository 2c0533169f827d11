//! What commands and the daemon expose: hooks never see the API token, a token file readable by
//! others is refused, a clean environment, the daemon on loopback by default.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

/// Issue 8.11: `cutover serve` binds 127.0.0.1 unless told otherwise.
#[test]
fn serve_listens_on_loopback_by_default() {
    let wd = Workdir::new();
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let mut cmd = wd.cutover("http://127.0.0.1:9", &["serve", "--plans", plans.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", "0123456789abcdef0123")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.trim(), "listening on http://127.0.0.1:7878");
}

/// A deploy step that writes its whole environment to `env.txt`.
fn env_dumping_steps() -> String {
    format!(
        r#"
[[steps]]
action = "deploy"
run = ["sh", "-c", "env > env.txt"]
timeout = "10s"
{QUICK_STEPS}"#
    )
}

/// Regression (issue 8.8): hooks inherited the whole environment, and verify commands, deploy
/// and migrate runs saw `CUTOVER_TOKEN` under `cutover run` and under the daemon. They never
/// see the API token, whatever its source; the job's AWS credentials they do see (by default).
#[tokio::test(flavor = "multi_thread")]
async fn hooks_never_see_the_api_token() {
    use std::os::unix::fs::PermissionsExt;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &env_dumping_steps()));
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", "run-token-0123456789abcdef");
    assert_eq!(run(cmd).status.code(), Some(0));
    let env = std::fs::read_to_string(wd.path().join("env.txt")).unwrap();
    assert!(!env.contains("CUTOVER_TOKEN") && !env.contains("run-token"), "{env}");
    assert!(
        env.contains("AWS_SECRET_ACCESS_KEY=test"),
        "a CI deploy needs the job's credentials: {env}"
    );
    assert!(env.contains("CUTOVER_NEW_COLOR=green"), "{env}");

    // The daemon, with its token in a file: the token's value reaches no hook either.
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(plans.join("svc.toml"), plan_text_in(&wd, &world)).unwrap();
    let token_file = wd.path().join("token");
    std::fs::write(&token_file, "file-token-0123456789abcdef").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    cmd.arg(&token_file)
        .env("CUTOVER_TOKEN_COPY", "file-token-0123456789abcdef");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/cutovers"))
        .bearer_auth("file-token-0123456789abcdef")
        .header("content-type", "application/json")
        .body(json!({"plan": "svc"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let start = Instant::now();
    let env_file = plans.join("env.txt");
    while !env_file.exists() || std::fs::read_to_string(&env_file).unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "the deploy hook never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains("file-token"), "the token's value reached a hook: {env}");
}

/// The daemon's plan for `hooks_never_see_the_api_token`: the same steps, 1-second metrics.
fn plan_text_in(_wd: &Workdir, world: &World) -> String {
    plan(world, "", &env_dumping_steps())
}

/// Issue 8.8: a token file readable by group or others is refused at start, as ssh refuses
/// such keys.
#[test]
fn a_token_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new();
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let token_file = wd.path().join("token");
    std::fs::write(&token_file, "file-token-0123456789abcdef").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = wd.cutover(
        "http://127.0.0.1:9",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plans",
            plans.to_str().unwrap(),
            "--token-file",
        ],
    );
    cmd.arg(&token_file);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too open"));
}

/// Issue 8.8: a plan can ask for a clean environment for its commands: the basics, what
/// cutover sets, and what the plan names, nothing else (not the job's AWS credentials).
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_environment_keeps_only_what_the_plan_names() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = format!(
        "[environment]\nclean = true\npass = [\"AWS_REGION\"]\n\n{}",
        plan(&world, "", &env_dumping_steps())
    );
    let plan = wd.write_plan(&text);
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    let env = std::fs::read_to_string(wd.path().join("env.txt")).unwrap();
    assert!(!env.contains("AWS_SECRET_ACCESS_KEY"), "{env}");
    assert!(env.contains("AWS_REGION=us-east-1"), "the pass list: {env}");
    assert!(env.contains("\nPATH=") || env.starts_with("PATH="), "{env}");
    assert!(env.contains("CUTOVER_NEW_COLOR=green"), "{env}");
    assert!(
        !env.contains("CUTOVER_STATE_DIR"),
        "only the CUTOVER_* variables cutover sets: {env}"
    );
}
