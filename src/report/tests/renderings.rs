//! The renderings of the record (Markdown, JSON, HTML) from the hand-made journals of
//! [`super`]. The browser checks of the HTML are in `tests/it/report/`.

use super::*;

#[test]
fn markdown_has_the_record_the_shifts_and_the_rollback() {
    let md = render(&build(&rolled_back(), None), Format::Markdown);
    for line in [
        "# Cutover report: checkout 20261201T100000Z-abcd",
        "**rolled_back**: green error rate too high",
        "| Start | 2026-12-01T10:00:00.000Z |",
        "| End | 2026-12-01T10:00:07.800Z |",
        "| Duration | 7.8s |",
        "| Live colour | blue |",
        "| Rollback initiated by | cutover |",
        "| Rollback started | 2026-12-01T10:00:07.100Z |",
        "| Traffic restored | 2026-12-01T10:00:07.400Z (300ms after the start of the rollback) |",
        "| Final weights | blue 100% / green 0% |",
        "| Thresholds | error rate ≤ 5.00%; latency ≤ 250ms |",
        "- `+0:07` **rollback (shift 50%)**: rollback (judge) by cutover: green error rate too high",
        "| shift 50% | 50% | 4 | 400 | 18.00% | 55ms | 70ms | 0.00% | 50ms | fail 2, pass 2 |",
        "| 2 | shift 50% | failed | 2026-12-01T10:00:01.000Z | 2026-12-01T10:00:07.100Z | 6.1s | failed (judge): green error rate too high |",
        "1. **traffic**: done at 2026-12-01T10:00:07.400Z — back on the live colour: blue 100% green 0% (weights 999/0)",
        "2. **deploy**: done at 2026-12-01T10:00:07.700Z — undo ./undeploy.sh: exited 0",
        "- `+0:06` **verdict fail**: 5xx 40/100 <b>",
    ] {
        assert!(md.lines().any(|l| l == line), "no line {line:?} in:\n{md}");
    }
    assert!(md.contains("## Operator actions\n\nNone."), "{md}");
}

#[test]
fn markdown_escapes_pipes_in_cells() {
    let mut records = operator_rolled_back();
    if let Event::RollbackRequested { reason, .. } = &mut records[13].event {
        *reason = "a | b".into();
    }
    let md = render(&build(&records, None), Format::Markdown);
    assert!(md.contains("| Rollback reason | a \\| b |"), "{md}");
}

#[test]
fn json_is_the_record_and_reads_back() {
    let report = build(&operator_rolled_back(), None);
    let text = render(&report, Format::Json);
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["report_version"], 1);
    assert_eq!(v["outcome"], "rolled_back_by_operator");
    assert_eq!(v["rollback"]["initiated_by"], "bob@ops pid 77");
    assert_eq!(v["operator_actions"][0]["action"], "pause");
    assert_eq!(v["shifts"][0]["new"]["error_rate"], 0.01);
    assert_eq!(v["timeline"]["marks"][0]["kind"], "started");
}

/// The attribute `name` of the first tag holding `marker`.
fn attr<'a>(html: &'a str, marker: &str, name: &str) -> Option<&'a str> {
    let tag = &html[html.find(marker)?..];
    let tag = &tag[..tag.find('>')?];
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn html_is_self_contained_and_marks_what_the_browser_test_checks() {
    let promoted = render(&build(&promoted(), None), Format::Html);
    let rolled = render(&build(&rolled_back(), None), Format::Html);
    for page in [&promoted, &rolled] {
        assert!(page.starts_with("<!doctype html>"));
        // Nothing from elsewhere, and nothing to run.
        for banned in ["<script", " src=", " href=", "@import", "url(", "<link"] {
            assert!(!page.contains(banned), "{banned} in the page");
        }
        assert!(page.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
        assert!(page.contains("@media print"));
        assert_eq!(
            attr(page, r#"data-check="error_rate""#, "data-value"),
            Some("0.05"),
            "the error-rate threshold"
        );
        assert_eq!(attr(page, r#"data-check="latency""#, "data-value"), Some("0.25"));
    }
    assert_eq!(
        attr(&promoted, r#"data-report="weights""#, "data-levels"),
        Some("0 50 100")
    );
    assert_eq!(attr(&rolled, r#"data-report="weights""#, "data-levels"), Some("0 50 0"));
    assert!(!promoted.contains(r#"data-report="rollback""#));
    assert!(rolled.contains(r#"data-report="rollback""#));
    assert_eq!(
        rolled.matches(r#"data-outcome="fail""#).count(),
        4,
        "two periods in two panels"
    );
    // What the journal says is text, never markup.
    assert!(!rolled.contains("<b>") && rolled.contains("&lt;b&gt;"));
}
