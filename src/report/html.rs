//! The report as one self-contained HTML page: inline CSS, the chart as inline SVG, no script,
//! no font or style from elsewhere. Readable on a phone (tables turn into cards below 640 px,
//! long words wrap) and printable (`@media print`).

use std::fmt::Write;

use super::markdown::{self, status};
use super::record::*;
use super::svg::{self, FAIL, INCONCLUSIVE, LIVE, NEW, PASS, SHARED, WEIGHT};
use super::words::{self, esc};

const STYLE: &str = r#"
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:#1f2328;background:#fff}
main{max-width:960px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0;overflow-wrap:anywhere}
h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.eyebrow{margin:0;color:#57606a;font-size:.85em;text-transform:uppercase;letter-spacing:.06em}
.id{font-weight:400;color:#57606a;font-size:.7em}
.outcome{display:inline-block;margin:.3em 0;padding:.2em .6em;border-radius:6px;font-weight:600;color:#fff;background:#57606a}
.outcome.promoted{background:#1a7f37}.outcome.rolled_back,.outcome.rolled_back_by_operator{background:#cf222e}
.outcome.unsafe,.outcome.error{background:#6639ba}.outcome.not_started{background:#9a6700}
.reason,.lede{margin:.3em 0;overflow-wrap:anywhere}
.lede{color:#57606a}
figure{margin:0}
svg{display:block;width:100%;height:auto;max-width:680px}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;fill:#1f2328}
svg .title{font-size:9.5px;font-weight:600}
svg .tick,svg .step,svg .value{font-size:8px;fill:#57606a}
svg .limit{font-size:8px;fill:#cf222e;font-weight:600}
svg .rollback{font-size:9.5px;fill:#cf222e;font-weight:700}
figcaption{font-size:.85em;color:#57606a;margin-top:.4em}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1em;padding:0;margin:.4em 0 0;list-style:none}
.legend span{display:inline-block;width:.9em;height:.9em;border-radius:50%;vertical-align:-.1em;margin-right:.3em}
.legend .bar{border-radius:0;height:.25em;vertical-align:.2em}
dl.record{display:grid;grid-template-columns:minmax(8em,14em) 1fr;gap:.25em 1em;margin:0}
dl.record dt{color:#57606a}
dl.record dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:.92em}
/* break-word, not anywhere, in cells: anywhere shrinks a column's minimum width to one letter, and a
   long reason beside it squeezed "failed" into "fa il ed". */
th,td{text-align:left;vertical-align:top;padding:.35em .5em;border-bottom:1px solid #d8dee4;overflow-wrap:break-word}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;white-space:nowrap}
.status-failed,.status-undo_failed,.result-failed{color:#cf222e;font-weight:600}
.status-done,.status-undone,.result-done{color:#1a7f37}
ol.events{list-style:none;padding:0;margin:0}
ol.events li{display:grid;grid-template-columns:4.5em 1fr;gap:.5em;padding:.25em 0;border-bottom:1px solid #eaeef2}
ol.events time{font-variant-numeric:tabular-nums;color:#57606a}
ol.events .what{font-weight:600}
ol.events .text{overflow-wrap:anywhere}
ol.events li.k-rollback .what,ol.events li.k-alarm .what,ol.events li.k-step_failed .what,ol.events li.k-verdict .what{color:#cf222e}
ol.events li.k-operator .what{color:#0969da}
footer{margin-top:2em;color:#57606a;font-size:.85em;overflow-wrap:anywhere}
@media (max-width:640px){
 main{padding:12px}
 dl.record{grid-template-columns:1fr;gap:0}
 dl.record dd{margin-bottom:.45em}
 table,thead,tbody,tr,th,td{display:block}
 thead{position:absolute;left:-9999px;top:-9999px}
 tr{border:1px solid #d0d7de;border-radius:6px;margin-bottom:.6em;padding:.2em .4em}
 td{border:0;padding:.15em 0;text-align:left}
 td.num{text-align:left;white-space:normal}
 td::before{content:attr(data-label) ": ";color:#57606a}
}
@media print{
 @page{margin:14mm}
 body{font-size:10pt;color:#000}
 main{max-width:none;padding:0}
 figure,tr,ol.events li,dl.record{break-inside:avoid}
 h2{break-after:avoid}
 svg,.outcome,.legend span{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 th{background:none}
}
"#;

/// A table: a header row, and rows of `(class, text)` cells labelled for narrow screens.
fn table(out: &mut String, id: &str, head: &[&str], rows: &[Vec<(&str, String)>]) {
    let _ = writeln!(out, r#"<table id="{id}"><thead><tr>"#);
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for ((class, text), h) in row.iter().zip(head) {
            let _ = write!(out, r#"<td class="{class}" data-label="{}">{}</td>"#, esc(h), esc(text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn legend(out: &mut String) {
    out.push_str(r#"<ul class="legend">"#);
    for (color, label, bar) in [
        (WEIGHT, "new colour's share", true),
        (NEW, "new colour", true),
        (LIVE, "live colour", true),
        (FAIL, "threshold", true),
        (PASS, "pass", false),
        (FAIL, "fail", false),
        (INCONCLUSIVE, "inconclusive / no data (hollow)", false),
        (SHARED, "shared failure, drift", false),
        ("#0969da", "operator action", false),
    ] {
        let class = if bar { r#" class="bar""# } else { "" };
        let _ = write!(
            out,
            r#"<li><span{class} style="background:{color}"></span>{}</li>"#,
            esc(label)
        );
    }
    out.push_str("</ul>\n");
}

/// The report as one HTML page.
pub fn page(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("unfinished");
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"cutover report {}\">\
         <title>Cutover report: {} {} — {}</title><style>{STYLE}</style></head>\n<body><main>\n",
        REPORT_VERSION,
        esc(&r.service),
        esc(&r.id),
        esc(&r.state)
    );

    // What happened, in one glance.
    let _ = writeln!(
        out,
        r#"<header><p class="eyebrow">cutover report</p><h1>{} <span class="id">{}</span></h1>"#,
        esc(&r.service),
        esc(&r.id)
    );
    let _ = writeln!(
        out,
        r#"<p><span class="outcome {outcome}" data-report="outcome">{}</span></p>"#,
        esc(&r.state.replace('_', " "))
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, r#"<p class="reason">{}</p>"#, esc(reason));
    }
    let colors = match (r.live_color, r.new_color) {
        (Some(l), Some(n)) => format!("{l} was live, {n} was new · "),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        r#"<p class="lede">{colors}started {} · lasted {} · final weights {}</p></header>"#,
        esc(&words::at(r.started_at.as_deref())),
        esc(&words::duration(r.duration_secs)),
        esc(&words::weights(r.final_weights))
    );

    out.push_str("<section id=\"timeline\"><h2>Timeline</h2><figure>\n");
    out.push_str(&svg::chart(r));
    let rollback = match &r.rollback {
        Some(_) => {
            " The red line across the chart is the rollback, the dashed green one traffic verified back on the \
             live colour."
        }
        None => "",
    };
    let _ = write!(
        out,
        "<figcaption>Time since the start ({}). Each dot is one judged period of the new colour, \
         coloured by its verdict; the dashed red lines are the plan's thresholds.{rollback}",
        esc(&words::at(r.started_at.as_deref()))
    );
    legend(&mut out);
    out.push_str("</figcaption></figure></section>\n");

    out.push_str("<section id=\"record\"><h2>The record</h2><dl class=\"record\">\n");
    for (k, v) in markdown::record_rows(r) {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    out.push_str("</dl></section>\n");

    out.push_str("<section id=\"shifts\"><h2>At each shift</h2>\n");
    if r.shifts.is_empty() {
        out.push_str("<p>No step was judged.</p>\n");
    } else {
        let stat = markdown::stat(r);
        let (lat_new, lat_max, lat_live) = (
            format!("{stat} (new)"),
            format!("max {stat} (new)"),
            format!("{stat} (live)"),
        );
        let head = [
            "Step",
            "New colour's share",
            "Periods",
            "Requests (new)",
            "Error rate (new)",
            lat_new.as_str(),
            lat_max.as_str(),
            "Error rate (live)",
            lat_live.as_str(),
            "Verdicts",
        ];
        let rows: Vec<Vec<(&str, String)>> = r
            .shifts
            .iter()
            .map(|s| {
                vec![
                    ("", s.label.clone()),
                    (
                        "num",
                        s.new_percent.map(|p| format!("{p}%")).unwrap_or_else(|| "—".into()),
                    ),
                    ("num", s.periods.to_string()),
                    ("num", words::count(s.new.requests)),
                    ("num", words::rate(s.new.error_rate)),
                    ("num", words::latency(s.new.latency_secs)),
                    ("num", words::latency(s.new.max_latency_secs)),
                    ("num", words::rate(s.live.error_rate)),
                    ("num", words::latency(s.live.latency_secs)),
                    ("", markdown::verdicts(s)),
                ]
            })
            .collect();
        table(&mut out, "shift-table", &head, &rows);
    }
    out.push_str("</section>\n");

    out.push_str("<section id=\"steps\"><h2>Steps</h2>\n");
    let rows: Vec<Vec<(&str, String)>> = r
        .steps
        .iter()
        .map(|s| {
            let mut result: Vec<String> = s.failure.iter().cloned().collect();
            result.extend(s.hooks.iter().cloned());
            vec![
                ("num", (s.step + 1).to_string()),
                ("", s.label.clone()),
                (status_class(s.status), status(s.status).to_string()),
                ("", words::at(s.started_at.as_deref())),
                ("", words::at(s.finished_at.as_deref())),
                ("num", words::duration(s.duration_secs)),
                ("", words::or_dash(Some(&result.join("; ")))),
            ]
        })
        .collect();
    table(
        &mut out,
        "step-table",
        &["#", "Step", "Status", "Start", "End", "Duration", "Result"],
        &rows,
    );
    out.push_str("</section>\n");

    out.push_str("<section id=\"undo\"><h2>Undo chain</h2>\n");
    if r.undo_chain.is_empty() {
        out.push_str("<p>Nothing was undone.</p>\n");
    } else {
        let rows: Vec<Vec<(&str, String)>> = r
            .undo_chain
            .iter()
            .enumerate()
            .map(|(i, u)| {
                vec![
                    ("num", (i + 1).to_string()),
                    ("", u.label.clone()),
                    (result_class(&u.result), u.result.clone()),
                    ("", words::at(u.started_at.as_deref())),
                    ("", words::at(u.finished_at.as_deref())),
                    ("", words::or_dash(u.detail.as_deref())),
                ]
            })
            .collect();
        table(
            &mut out,
            "undo-table",
            &["#", "Undo", "Result", "Start", "End", "Detail"],
            &rows,
        );
    }
    out.push_str("</section>\n");

    out.push_str("<section id=\"operators\"><h2>Operator actions</h2>\n");
    if r.operator_actions.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        let rows: Vec<Vec<(&str, String)>> = r
            .operator_actions
            .iter()
            .map(|a| {
                vec![
                    ("", a.at.clone()),
                    ("", a.action.clone()),
                    ("", a.by.clone()),
                    ("", a.reason.clone()),
                    ("", words::or_dash(a.step.as_deref())),
                ]
            })
            .collect();
        table(
            &mut out,
            "operator-table",
            &["Time", "Action", "By", "Reason", "Step"],
            &rows,
        );
    }
    out.push_str("</section>\n");

    out.push_str("<section id=\"events\"><h2>What happened</h2><ol class=\"events\">\n");
    for l in markdown::events(r) {
        let _ = writeln!(
            out,
            r#"<li class="k-{}"><time>+{}</time><div><span class="what">{}</span> <span class="text">{}</span></div></li>"#,
            l.kind,
            words::clock(l.t),
            esc(&l.what),
            esc(&l.text)
        );
    }
    out.push_str("</ol></section>\n");

    let _ = writeln!(
        out,
        "<footer>Built from the {} journal records of cutover {} (report version {REPORT_VERSION}); \
         nothing in it was read from AWS.</footer>\n</main></body></html>",
        r.records,
        esc(&r.id)
    );
    out
}

fn status_class(s: crate::saga::StepStatus) -> &'static str {
    use crate::saga::StepStatus::*;
    match s {
        Failed => "status-failed",
        UndoFailed => "status-undo_failed",
        Done => "status-done",
        Undone => "status-undone",
        _ => "",
    }
}

fn result_class(result: &str) -> &'static str {
    match result {
        "failed" => "result-failed",
        "done" => "result-done",
        _ => "",
    }
}
