//! What a user sees when AWS access is wrong (issue 14.1): the region from the plan's ARNs, a
//! region mismatch and missing credentials explained in one line with a hint, never the SDK's
//! debug dump. Against moto: the errors are the real wire protocol's.

use crate::util::*;

/// `cutover status` of `world`'s plan with AWS_REGION and the profile files out of the way.
fn status(wd: &Workdir, world: &World, region: Option<&str>, format: &str) -> std::process::Output {
    let plan = wd.write_plan(&plan(world, "", QUICK_STEPS));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["status", "--config", plan.to_str().unwrap(), "--log-format", format],
    );
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", wd.path().join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", wd.path().join("no-aws-credentials"));
    if let Some(r) = region {
        cmd.env("AWS_REGION", r);
    }
    run(cmd)
}

/// Regression (issue 14.1): without AWS_REGION every command failed; the ARNs carry the region.
#[test]
fn the_region_comes_from_the_plans_arns() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let out = status(&wd, &world, None, "text");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("weights: blue 100%"), "{stdout}");
    // No IMDS noise before the answer: the region was never looked for there.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Regression (issue 14.1): an AWS_REGION other than the ARNs' gave a bare ListenerNotFound.
#[test]
fn a_region_other_than_the_arns_is_warned_about_and_explained() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let out = status(&wd, &world, Some("eu-central-1"), "text");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "a warning and the error: {stderr}");
    assert!(
        lines[0].contains("says region eu-central-1, but the plan's ARNs are in us-east-1"),
        "{stderr}"
    );
    assert!(lines[1].contains("ListenerNotFound"), "{stderr}");
    assert!(
        lines[1].contains("eu-central-1, the region the calls went to"),
        "{stderr}"
    );
}

/// Regression (issue 14.1): without credentials, four IMDS warnings with the SDK's debug dump
/// (over 1 KB each) came first, and the error spanned six lines.
#[test]
fn missing_credentials_are_one_line_with_what_to_set() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    for format in ["text", "json"] {
        let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
        let mut cmd = wd.cutover(
            &world.endpoint,
            &["status", "--config", plan.to_str().unwrap(), "--log-format", format],
        );
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", wd.path().join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", wd.path().join("no-aws-credentials"));
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{format}: {stderr}");
        assert!(
            stderr.contains("no AWS credentials found: set AWS_PROFILE"),
            "{format}: {stderr}"
        );
        assert!(
            !stderr.contains("raw: Response") && stderr.len() < 1000,
            "{format}: {stderr}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(stderr.trim()).expect("a JSON line");
            assert_eq!(v["level"], "ERROR");
        }
    }
}

/// Regression (issue 14.1): against a hung endpoint `status` took 20 s (40 s for `rollback
/// --to`) before it said anything. An endpoint that accepts connections and never answers:
/// the interactive deadlines give up within seconds, with a hint at the endpoint.
#[test]
fn a_hung_endpoint_fails_interactive_commands_within_seconds() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    // Accepts, reads nothing, answers nothing: a black hole behind a load balancer.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    let _holder = std::thread::spawn(move || {
        let mut held = vec![];
        for s in hung.incoming().flatten() {
            held.push(s);
        }
    });
    for args in [
        vec!["status", "--config", plan.to_str().unwrap()],
        vec!["rollback", "--config", plan.to_str().unwrap(), "--to", "blue"],
    ] {
        let started = std::time::Instant::now();
        let out = run(wd.cutover(&hung_url, &args));
        let took = started.elapsed();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(took < std::time::Duration::from_secs(15), "{args:?} took {took:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("is AWS_ENDPOINT_URL={hung_url} reachable?")),
            "{args:?}: {stderr}"
        );
        // Each cause once: the rollback's UNSAFE line said "could not confirm traffic back" twice.
        assert!(
            stderr.matches("could not confirm traffic back").count() <= 1,
            "{stderr}"
        );
    }
}
