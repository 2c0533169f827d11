//! Help and shell (issue 14.5): the help text of every command against a golden file, every
//! flag and argument described, exit codes where a command ends with them, and the completion
//! scripts and manual pages generated from the same definitions.
//!
//! After a deliberate change to the help, regenerate the golden file with
//! `CUTOVER_BLESS=1 cargo test --test it help::` and review its diff.

use std::process::Command;

use clap::CommandFactory;
use cutover::cli::args::Cli;

use crate::util::root;

/// `cutover ARGS` with no CUTOVER_* variable set (clap shows an env variable's value in the
/// help): stdout, and the exit code.
fn cutover(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run cutover");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every command path: `[]`, `["run"]`, …, `["store", "init"]`.
fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd.get_subcommands() {
        let mut p = prefix.clone();
        p.push(sub.get_name().to_string());
        paths(sub, p, out);
    }
}

fn all_paths() -> Vec<Vec<String>> {
    let mut out = vec![];
    paths(&Cli::command(), vec![], &mut out);
    out
}

/// Regression (issue 14.5): the help is what users read first; a change to it is reviewed as a
/// diff of `tests/golden/help.txt`.
#[test]
fn the_help_of_every_command_matches_the_golden_file() {
    let mut text = String::new();
    for path in all_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, help) = cutover(&args);
        assert_eq!(code, Some(0), "{args:?}");
        text.push_str(&format!("$ cutover {}\n{help}\n", args.join(" ")));
    }
    let golden = root().join("tests/golden/help.txt");
    if std::env::var_os("CUTOVER_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (CUTOVER_BLESS=1 writes it)", golden.display()));
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "the help differs from {} from line {}:\n  golden: {:?}\n  now:    {:?}\n\
             (CUTOVER_BLESS=1 cargo test --test it help:: rewrites it after a deliberate change)",
            golden.display(),
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first)
        );
    }
}

/// Regression (issue 14.5): `--config`, `--wait`, `--listen`, `--reason`, `--output`, `PLAN`
/// and `ID` had empty descriptions.
#[test]
fn every_command_flag_and_argument_is_described() {
    fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd.get_about().is_none_or(|a| a.to_string().trim().is_empty()) {
            missing.push(format!("{path}: the command"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path}: {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = vec![];
    check(&Cli::command(), "cutover", &mut missing);
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}

/// Regression (issue 14.5): the exit codes were only in `backtest --help`. Every command that
/// ends with a cutover's outcome, or acts on one, lists its codes.
#[test]
fn the_commands_that_end_with_an_outcome_list_the_exit_codes() {
    for cmd in [
        "run", "start", "watch", "rollback", "pause", "resume", "promote", "approve", "reject",
    ] {
        let (_, help) = cutover(&[cmd, "--help"]);
        assert!(help.contains("Exit codes:"), "{cmd}: {help}");
        assert!(help.contains("  6  unsafe"), "{cmd}: {help}");
    }
    let (_, help) = cutover(&["run", "--help"]);
    assert!(help.contains("  3  rolled back automatically"), "{help}");
    assert!(help.contains("  5  not started"), "{help}");
}

/// `cutover completions bash|zsh|fish`: a script for each shell that knows every command and
/// the flags of `run`.
#[test]
fn completions_know_every_command() {
    let commands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cutover"),
        ("fish", "complete -c cutover"),
    ] {
        let (code, script) = cutover(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}");
        assert!(script.contains(marker), "{shell}: {marker} missing");
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell}: no {c}");
        }
        // fish spells a long flag `-l config`.
        let flag = |f: &str| script.contains(&format!("--{f}")) || script.contains(&format!("-l {f}"));
        assert!(flag("config") && flag("log-format"), "{shell}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bash"),
        "it names the shells"
    );
}

/// `cutover man` (one page on stdout) and `cutover man --dir DIR` (a page per command).
#[test]
fn man_pages_are_roff_from_the_same_definitions() {
    let (code, page) = cutover(&["man"]);
    assert_eq!(code, Some(0));
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH cutover"),
        "{page}"
    );
    assert!(page.contains(".TH cutover 1"), "{page}");
    assert!(page.contains("rollback"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _) = cutover(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0));
    for page in [
        "cutover.1",
        "cutover-run.1",
        "cutover-rollback.1",
        "cutover-store-init.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(dir.path().join("cutover-run.1")).unwrap();
    assert!(run.contains("Exit codes"), "{run}");
}
