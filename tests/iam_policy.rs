//! The IAM policies stay exact (issue 14.10): after a whole run of the integration suite
//! (`cargo test --test it`), every AWS operation the code called is granted by
//! `deploy/iam-policy.json` (ELBv2 and CloudWatch) or `deploy/dynamodb/iam-policy.json` (the
//! shared store), and they grant nothing else.
//!
//! The operations come from the call counters (`cutover::aws::calls`): every `cutover` process
//! the suite starts, and the product code it runs in process, append each `SERVICE:Operation`
//! they call to `target/tmp/aws-calls/it-PID.log` (`tests/it/util.rs`, `call_log`). This target
//! reads the newest log of a whole run (one with `it-PID.full` beside it), so it runs after the
//! suite: `deploy/local/test.sh` runs it last, and it is kept out of `cargo test --all-targets`
//! (`test = false` in Cargo.toml) so that it never runs before the suite it checks.
//!
//! Its own tests (`the_check_*`) show that the check can fail, both ways.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// An IAM action (`elasticloadbalancing:DescribeListeners`) for one SDK operation, or the
/// actions of its parts. DynamoDB's `TransactWriteItems` has no action of its own: IAM checks
/// each item's (the store writes `Put` and `ConditionCheck` items; `src/journal/dynamo/mod.rs`).
fn actions(service: &str, operation: &str) -> Result<Vec<String>, String> {
    let prefix = match service {
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "CloudWatch" => "cloudwatch",
        "DynamoDB" => "dynamodb",
        other => return Err(format!("{other}:{operation}: a service cutover should not call")),
    };
    Ok(match (prefix, operation) {
        ("dynamodb", "TransactWriteItems") => vec!["dynamodb:PutItem".into(), "dynamodb:ConditionCheckItem".into()],
        _ => vec![format!("{prefix}:{operation}")],
    })
}

/// The `Action`s a policy document allows.
fn allowed(policy: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("Statement is a list") {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                out.insert(a.clone());
            }
            serde_json::Value::Array(list) => out.extend(list.iter().map(|a| a.as_str().unwrap().to_string())),
            other => panic!("Action {other}"),
        }
    }
    out
}

/// What is wrong with `policy` for the `called` operations (`SERVICE:Operation` lines): the
/// actions called but not granted, and the actions granted but never called.
fn check(called: &BTreeSet<String>, policy: &BTreeSet<String>) -> Vec<String> {
    let mut needed = BTreeSet::new();
    let mut problems = vec![];
    for line in called {
        let Some((service, operation)) = line.split_once(':') else {
            problems.push(format!("{line:?}: not SERVICE:Operation"));
            continue;
        };
        match actions(service, operation) {
            Ok(a) => needed.extend(a),
            Err(e) => problems.push(e),
        }
    }
    for a in needed.difference(policy) {
        problems.push(format!("{a} is called but not granted"));
    }
    for a in policy.difference(&needed) {
        problems.push(format!("{a} is granted but the suite never called it"));
    }
    problems
}

/// The newest log of a whole run of the suite.
fn newest_whole_run(dir: &Path) -> Option<PathBuf> {
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log") && p.with_extension("full").exists())
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    logs.sort();
    logs.pop().map(|(_, p)| p)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    allowed(&serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Regression (issue 14.10): the policy was written by hand and checked by nobody.
#[test]
fn the_iam_policies_grant_exactly_what_the_integration_suite_called() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aws-calls");
    let log = newest_whole_run(&dir).unwrap_or_else(|| {
        panic!(
            "no log of a whole run of the integration suite in {}: run `cargo test --test it` \
             (no filter) first, or deploy/local/test.sh, which runs both",
            dir.display()
        )
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let called: BTreeSet<String> = text.lines().map(str::to_string).collect();
    let (store, rest): (BTreeSet<String>, BTreeSet<String>) =
        called.into_iter().partition(|l| l.starts_with("DynamoDB:"));
    let mut problems = vec![];
    for (file, called) in [
        ("deploy/iam-policy.json", rest),
        ("deploy/dynamodb/iam-policy.json", store),
    ] {
        problems.extend(
            check(&called, &policy(file))
                .into_iter()
                .map(|p| format!("{file}: {p}")),
        );
    }
    assert!(problems.is_empty(), "from {}:\n{}", log.display(), problems.join("\n"));
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_check_fails_for_an_operation_the_policy_does_not_grant() {
    let called = set(&[
        "Elastic Load Balancing v2:DescribeListeners",
        "CloudWatch:PutMetricData",
    ]);
    let granted = set(&["elasticloadbalancing:DescribeListeners"]);
    assert_eq!(
        check(&called, &granted),
        ["cloudwatch:PutMetricData is called but not granted"]
    );
}

#[test]
fn the_check_fails_for_an_action_nobody_called() {
    let called = set(&["CloudWatch:GetMetricData"]);
    let granted = set(&["cloudwatch:GetMetricData", "cloudwatch:DescribeAlarms"]);
    assert_eq!(
        check(&called, &granted),
        ["cloudwatch:DescribeAlarms is granted but the suite never called it"]
    );
}

#[test]
fn the_check_knows_transactions_and_refuses_other_services() {
    let called = set(&["DynamoDB:TransactWriteItems", "STS:GetCallerIdentity"]);
    let granted = set(&["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]);
    assert_eq!(
        check(&called, &granted),
        ["STS:GetCallerIdentity: a service cutover should not call"]
    );
}

#[test]
fn the_policies_are_allow_statements_of_known_actions() {
    for file in ["deploy/iam-policy.json", "deploy/dynamodb/iam-policy.json"] {
        let actions = policy(file);
        assert!(!actions.is_empty(), "{file}");
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "{file}: a wildcard action: {actions:?}"
        );
    }
}
