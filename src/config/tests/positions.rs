//! The line and the dotted key of every error toml finds in the text: syntax errors,
//! duplicate keys, unknown keys, wrong types. Each test is named after what was wrong.

use std::path::Path;

use crate::config::{parse, position};

/// The good plan, one line per entry, so that a test's line numbers can be read off it.
const LINES: &[&str] = &[
    "[service]",                                                                              // 1
    r#"name = "checkout""#,                                                                   // 2
    "",                                                                                       // 3
    "[alb]",                                                                                  // 4
    r#"listener_arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2""#,       // 5
    r#"blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/1""#,  // 6
    r#"green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/g/2""#, // 7
    "",                                                                                       // 8
    "[rollback]",                                                                             // 9
    "max_error_rate = 0.001",                                                                 // 10
    "",                                                                                       // 11
    "[[steps]]",                                                                              // 12
    r#"action = "verify""#,                                                                   // 13
    r#"checks = [{ http = "http://127.0.0.1:8080/health" }]"#,                                // 14
    "",                                                                                       // 15
    "[[steps]]",                                                                              // 16
    r#"action = "shift""#,                                                                    // 17
    "weight = 50",                                                                            // 18
    r#"bake = "10m""#,                                                                        // 19
    "",                                                                                       // 20
    "[[steps]]",                                                                              // 21
    r#"action = "shift""#,                                                                    // 22
    "weight = 100",                                                                           // 23
    r#"bake = "5m""#,                                                                         // 24
];

/// The plan with line `n` (1-based) replaced by `with` (which may hold several lines), and
/// the error it gets.
fn error_with(n: usize, with: &str) -> String {
    let mut lines: Vec<&str> = LINES.to_vec();
    lines[n - 1] = with;
    let text = lines.join("\n") + "\n";
    parse(Path::new("plan.toml"), &text)
        .expect_err("plan should be rejected")
        .to_string()
}

#[test]
fn the_good_plan_parses() {
    parse(Path::new("plan.toml"), &(LINES.join("\n") + "\n")).unwrap();
}

/// Regression (issue 8): a duplicate key on line 23 was reported on line 22, every time
/// (the line was counted as `text[..start].lines()`, one short when the span starts a
/// line), and named no key.
#[test]
fn a_duplicate_key_is_reported_on_its_own_line_with_its_key() {
    assert_eq!(
        error_with(22, "weight = 100"),
        "plan.toml: steps[2].weight (line 23): duplicate key"
    );
    assert_eq!(
        error_with(19, "name = \"x\"\nname = \"y\""),
        "plan.toml: steps[1].name (line 20): duplicate key"
    );
}

#[test]
fn a_line_is_counted_from_one_and_a_line_break_ends_it() {
    assert_eq!(position::line("a\nb\n", 0), 1);
    assert_eq!(position::line("a\nb\n", 1), 1, "the line break is on the line it ends");
    assert_eq!(position::line("a\nb\n", 2), 2, "the start of a line is on that line");
    assert_eq!(position::line("a\r\nb", 3), 2);
    assert_eq!(position::line("a", 99), 1, "past the end is the last line");
}

/// A plan saved with Windows line endings is reported on the same lines.
#[test]
fn a_duplicate_key_in_a_crlf_file_is_reported_on_its_own_line() {
    let mut lines: Vec<&str> = LINES.to_vec();
    lines[21] = "weight = 100";
    let text = lines.join("\r\n") + "\r\n";
    let e = parse(Path::new("plan.toml"), &text).unwrap_err();
    assert_eq!(e.to_string(), "plan.toml: steps[2].weight (line 23): duplicate key");
}

#[test]
fn a_duplicate_key_in_an_inline_table_names_the_table_and_the_key() {
    assert_eq!(
        error_with(
            14,
            r#"checks = [{ http = "http://a/" }, { http = "http://b/", http = "http://c/" }]"#
        ),
        "plan.toml: steps[0].checks[1].http (line 14): duplicate key"
    );
}

#[test]
fn a_duplicate_table_names_the_table() {
    assert_eq!(error_with(11, "[alb]"), "plan.toml: alb (line 11): duplicate key");
}

#[test]
fn an_unclosed_table_header_names_its_table() {
    assert_eq!(
        error_with(1, "[service"),
        "plan.toml: service (line 1): unclosed table, expected `]`"
    );
    assert_eq!(
        error_with(21, "[[steps]"),
        "plan.toml: steps[2] (line 21): unclosed array table, expected `]`"
    );
}

#[test]
fn an_unquoted_duration_names_its_key() {
    assert_eq!(
        error_with(19, "bake = 10m"),
        "plan.toml: steps[1].bake (line 19): string values must be quoted, expected literal string"
    );
}

#[test]
fn a_missing_value_names_its_key() {
    assert_eq!(
        error_with(18, "weight ="),
        "plan.toml: steps[1].weight (line 18): string values must be quoted, expected literal string"
    );
}

#[test]
fn a_key_without_equals_names_its_table() {
    assert_eq!(
        error_with(18, "weight 50"),
        "plan.toml: steps[1].weight (line 18): key with no value, expected `=`"
    );
}

#[test]
fn an_unknown_key_names_its_line() {
    assert_eq!(
        error_with(3, "colour = 1"),
        "plan.toml: service.colour (line 3): unknown field `colour`, expected `name`"
    );
    assert_eq!(
        error_with(20, "wieght = 3"),
        "plan.toml: steps[1].wieght (line 20): unknown field `wieght`, expected one of `action`, `checks`, `run`, `undo`, `timeout`, `healthy_timeout`, `weight`, `bake`, `duration`, `on_timeout`, `approvers`, `require_other`"
    );
}

#[test]
fn a_wrong_type_names_its_line() {
    assert_eq!(
        error_with(10, r#"max_error_rate = "lots""#),
        r#"plan.toml: rollback.max_error_rate (line 10): invalid type: string "lots", expected f64"#
    );
}

#[test]
fn a_missing_key_names_its_table_on_the_header_line() {
    assert_eq!(
        error_with(10, ""),
        "plan.toml: rollback (line 9): missing field `max_error_rate`"
    );
}

/// A missing top-level table is no line of the file: the error names neither.
#[test]
fn a_missing_table_names_no_line() {
    let text = LINES.join("\n").replace("[rollback]\nmax_error_rate = 0.001", "");
    let e = parse(Path::new("plan.toml"), &text).unwrap_err();
    assert_eq!(e.to_string(), "plan.toml: missing field `rollback`");
    assert_eq!((e.key.as_str(), e.line), ("", None));
}

/// Validation errors are found in values, not in the text: they name the key, no line.
#[test]
fn a_validation_error_names_the_key_only() {
    let e = error_with(18, "weight = 150");
    assert_eq!(
        e,
        "plan.toml: steps[1].weight: 150 is above the maximum 100 (allowed 0.1–100): percent of traffic on the new colour"
    );
}
