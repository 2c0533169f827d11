//! Packaging (issue 14.9): the systemd unit, the container image's files and the release
//! workflow example, checked against the binary they package, so that a renamed flag or a
//! changed exit code breaks a test rather than a deployment.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use cutover::cli::args::Cli;

use crate::daemon::Serve;
use crate::util::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `KEY=VALUE` lines of a unit file (comments left out), in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Regression (issue 14.9): the unit's comment named RUST_LOG (it is CUTOVER_LOG), a missing
/// token restarted the daemon every 2 s for ever, and the token file had to be the service
/// user's (the install steps made it group-readable, which the daemon refuses).
#[test]
fn the_systemd_unit_starts_the_daemon_as_the_binary_reads_it() {
    let text = read("deploy/cutover.service");
    assert!(!text.contains("RUST_LOG"), "the filter variable is CUTOVER_LOG");
    assert!(text.contains("CUTOVER_LOG="));
    let settings = unit_settings(&text);
    let get = |k: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    // A usage error (no token, a bad flag) is not restarted into again.
    assert_eq!(
        get("RestartPreventExitStatus"),
        [cutover::cli::EXIT_USAGE.to_string().as_str()]
    );
    // The token comes from a credential, and the daemon reads it from the credentials directory.
    let credential = get("LoadCredential");
    assert_eq!(credential.len(), 1, "{credential:?}");
    let (name, source) = credential[0].split_once(':').unwrap();
    assert!(source.starts_with('/'), "{source}");
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    let argv: Vec<String> = exec[0]
        .split_whitespace()
        .map(|a| a.replace("%d", "/run/credentials/cutover.service"))
        .collect();
    assert_eq!(argv[0], "/usr/local/bin/cutover");
    let token_file = format!("/run/credentials/cutover.service/{name}");
    assert!(argv.contains(&token_file), "{argv:?} does not read {token_file}");
    // The command line is one the binary accepts, flag for flag.
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("ExecStart does not parse: {e}"));
    assert!(matches!(cli.command, cutover::cli::args::Command::Serve { .. }));
}

/// `systemd-analyze verify` reads the unit as systemd would (unknown keys, bad values,
/// specifiers). The unit is copied with ExecStart pointing at the test's binary, which verify
/// requires to exist.
#[test]
fn systemd_analyze_accepts_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("cutover.service");
    let text = read("deploy/cutover.service").replace("/usr/local/bin/cutover", env!("CARGO_BIN_EXE_cutover"));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed for this test: apt-get install systemd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about the unit name the file; other units of the host are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("cutover.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

/// The image's build context is an allow-list: only what the COPY lines need, and all of it.
/// Regression (issue 14.9): without a .dockerignore the context was 4 GB.
#[test]
fn the_container_build_context_is_what_the_containerfile_copies() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules.first(), Some(&"*"), "an allow-list starts by ignoring everything");
    let allowed: Vec<&str> = rules[1..]
        .iter()
        .map(|r| {
            r.strip_prefix('!')
                .expect("after `*`, only exceptions")
                .trim_end_matches('/')
        })
        .collect();
    let containerfile = read("deploy/Containerfile");
    let mut copied = vec![];
    for line in containerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(root().join(source).exists(), "COPY {source}: no such file");
            assert!(
                allowed.contains(source),
                "COPY {source}, which .dockerignore leaves out"
            );
            copied.push(*source);
        }
    }
    for a in &allowed {
        assert!(copied.contains(a), ".dockerignore lets in {a}, which nothing copies");
    }
    assert!(!allowed.contains(&"target") && !allowed.contains(&".venv-moto"));
}

/// Regression (issue 14.9): floating base tags, no dependency layer, no health check.
#[test]
fn the_containerfile_pins_its_bases_caches_dependencies_and_checks_health() {
    let text = read("deploy/Containerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        // A release (1.95.0, 12.12) or a digest, never `latest`, `1` or a bare codename.
        let pinned = image.contains("@sha256:")
            || tag
                .split(['-', '.'])
                .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
                .count()
                >= 2;
        assert!(pinned, "{from}: not pinned to a release");
    }
    // The Rust image is at least the crate's rust-version.
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let msrv = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| version(v.trim_matches('"')))
        .unwrap();
    let tag = froms[0].split("rust:").nth(1).unwrap().split('-').next().unwrap();
    assert!(version(tag) >= msrv, "{}: older than rust-version {msrv:?}", froms[0]);
    // The dependencies are compiled before the sources are copied in.
    let build_deps = text.find("cargo build --release --locked").unwrap();
    let copy_src = text.find("COPY src ").unwrap();
    assert!(build_deps < copy_src, "no dependency layer before COPY src");
    // The health check is a command of the binary itself.
    let check = text
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    let json = &check[check.find("CMD [").unwrap() + 4..];
    let argv: Vec<String> = serde_json::from_str(json).unwrap();
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{check}: {e}"));
    assert!(
        matches!(cli.command, cutover::cli::args::Command::Health { .. }),
        "{check}"
    );
}

/// `cutover health`, the image's health check: 0 while a daemon answers, 1 when none does.
#[test]
fn health_answers_for_a_daemon_and_fails_without_one() {
    let moto = Moto::start();
    let wd = Workdir::new();
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let s = Serve::start(&wd, &moto.endpoint, &plans);
    let health = |url: &str| run(wd.cutover(&moto.endpoint, &["health", "--server", url]));
    let out = health(&s.url);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}: healthy\n", s.url));
    drop(s);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = health(&format!("http://{closed}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy: GET"),
        "{out:?}"
    );
    let out = health("127.0.0.1:7878");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an http:// or https:// URL"));
}

/// The release workflow example builds what the issue asks for, and checks it.
#[test]
fn the_release_workflow_builds_static_binaries_for_both_architectures_and_an_image() {
    let path = root().join("deploy/ci/release.yml");
    // YAML through the tests' Python (PyYAML comes with moto): a workflow that does not
    // parse is the first thing GitHub refuses.
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = &wf["jobs"];
    let targets = &jobs["binaries"]["strategy"]["matrix"]["target"];
    assert_eq!(
        targets,
        &serde_json::json!(["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"])
    );
    let steps = jobs["binaries"]["steps"].to_string();
    assert!(
        steps.contains("statically linked") && steps.contains("26214400"),
        "{steps}"
    );
    let image = jobs["image"]["steps"].to_string();
    assert!(
        image.contains("deploy/Containerfile") && image.contains("linux/amd64,linux/arm64"),
        "{image}"
    );
    assert_eq!(jobs["release"]["needs"], serde_json::json!(["binaries", "image"]));
    assert!(Path::new(&root().join("deploy/Containerfile")).exists());
}
