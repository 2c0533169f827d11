//! The timeline chart: inline SVG, drawn from the report's [`Timeline`] alone.
//!
//! Top to bottom, on one time axis (seconds since the start): a band of marks (operator actions,
//! alarms, drift, adoptions), the new colour's share as a step line, its error rate and its
//! latency per judged period against the plan's thresholds (each period's mark coloured by its
//! verdict, the live colour as a grey line), and across all of them the rollback and the restore.
//!
//! The elements people and tests look for carry `data-report` attributes (`panel`, `weights`,
//! `threshold`, `verdict`, `mark`, `rollback`, `restored`) with the values behind them
//! (`data-value`, `data-levels`, `data-outcome`), so a browser's DOM can be checked against the
//! record without parsing coordinates back into numbers.

use std::fmt::Write;

use super::record::*;
use super::words::{self, esc, num};
use crate::judge::Outcome as VerdictOutcome;

/// The drawing's width in user units; it scales to the page (`width: 100%`).
const W: f64 = 360.0;
/// Left margin, for the y-axis labels.
const LEFT: f64 = 36.0;
const RIGHT: f64 = 8.0;
/// The band of marks above the panels.
const MARKS: f64 = 26.0;
/// Room for a panel's title above it.
const TITLE: f64 = 15.0;
const WEIGHTS_H: f64 = 56.0;
const PANEL_H: f64 = 78.0;
/// The time axis below the panels.
const AXIS: f64 = 18.0;

/// Colours of the verdicts, also used by the page's legend.
pub const PASS: &str = "#1a7f37";
pub const FAIL: &str = "#cf222e";
pub const INCONCLUSIVE: &str = "#8c959f";
pub const SHARED: &str = "#bf8700";
pub const WEIGHT: &str = "#8250df";
pub const LIVE: &str = "#6e7781";
pub const NEW: &str = "#24292f";

pub fn outcome_color(o: VerdictOutcome) -> &'static str {
    match o {
        VerdictOutcome::Pass => PASS,
        VerdictOutcome::Fail => FAIL,
        VerdictOutcome::Inconclusive | VerdictOutcome::NoData => INCONCLUSIVE,
        VerdictOutcome::SharedFailure => SHARED,
    }
}

/// A plot area: where values `0..max` are drawn, bottom to top.
struct Panel {
    top: f64,
    height: f64,
    max: f64,
}

impl Panel {
    fn y(&self, v: f64) -> f64 {
        self.top + self.height * (1.0 - (v / self.max).clamp(0.0, 1.0))
    }
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// A period's value in a panel: the new colour's and the live colour's.
type Pick = fn(&Period) -> (Option<f64>, Option<f64>);

struct Chart<'a> {
    out: String,
    r: &'a Report,
    span: f64,
}

/// A tick spacing that gives at most about six ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    ];
    STEPS.into_iter().find(|s| span / s <= 6.0).unwrap_or(86400.0)
}

/// The top of a value axis: a little above the highest value or threshold, never zero.
fn axis_max(values: impl Iterator<Item = f64>, threshold: Option<f64>, floor: f64) -> f64 {
    let top = values.fold(threshold.unwrap_or(0.0) * 1.25, |m, v| m.max(v * 1.1));
    if top > 0.0 { top } else { floor }
}

impl Chart<'_> {
    fn x(&self, t: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * (t / self.span).clamp(0.0, 1.0)
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {attrs}/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    fn text(&mut self, x: f64, y: f64, attrs: &str, s: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{}" y="{}" {attrs}>{}</text>"#,
            num(x),
            num(y),
            esc(s)
        );
    }

    /// The frame, title and value labels of a panel; `label` formats a value for the axis.
    fn frame(&mut self, p: &Panel, name: &str, title: &str, label: &dyn Fn(f64) -> String) {
        let _ = writeln!(
            self.out,
            r##"<rect data-report="panel" data-panel="{name}" data-max="{}" x="{}" y="{}" width="{}" height="{}" fill="#f6f8fa" stroke="#d0d7de"/>"##,
            p.max,
            num(LEFT),
            num(p.top),
            num(W - LEFT - RIGHT),
            num(p.height)
        );
        self.text(LEFT, p.top - 5.0, r#"class="title""#, title);
        self.text(
            LEFT - 4.0,
            p.bottom() + 3.0,
            r#"class="tick" text-anchor="end""#,
            &label(0.0),
        );
        self.text(
            LEFT - 4.0,
            p.top + 8.0,
            r#"class="tick" text-anchor="end""#,
            &label(p.max),
        );
    }

    /// Light bands for the steps, labelled (in the top panel) where there is room.
    fn step_bands(&mut self, top: f64, bottom: f64, labels: bool) {
        let starts: Vec<(f64, String)> = self
            .r
            .timeline
            .marks
            .iter()
            .filter(|m| m.kind == MarkKind::StepStarted)
            .map(|m| (m.t, m.step.clone().unwrap_or_default()))
            .collect();
        for (i, (t, label)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(self.span, |n| n.0);
            let (x1, x2) = (self.x(*t), self.x(end));
            if i % 2 == 1 {
                let _ = writeln!(
                    self.out,
                    r##"<rect data-report="step-band" x="{}" y="{}" width="{}" height="{}" fill="#eaeef2" opacity="0.6"/>"##,
                    num(x1),
                    num(top),
                    num((x2 - x1).max(0.0)),
                    num(bottom - top)
                );
            }
            self.line(x1, top, x1, bottom, r##"stroke="#afb8c1" stroke-width="0.5""##);
            if labels && (x2 - x1) > 6.0 * label.chars().count() as f64 {
                self.text(x1 + 2.0, top + 9.0, r#"class="step""#, label);
            }
        }
    }

    fn weights(&mut self, p: &Panel) {
        let w = &self.r.timeline.weights;
        if w.is_empty() {
            return;
        }
        let mut points = vec![(self.x(w[0].t.max(0.0)), p.y(w[0].new_percent))];
        for pair in w.windows(2) {
            let x = self.x(pair[1].t);
            points.push((x, p.y(pair[0].new_percent)));
            points.push((x, p.y(pair[1].new_percent)));
        }
        points.push((self.x(self.span), p.y(w[w.len() - 1].new_percent)));
        let levels: Vec<String> = w.iter().map(|x| x.new_percent.to_string()).collect();
        let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", num(*x), num(*y))).collect();
        let _ = writeln!(
            self.out,
            r#"<polyline data-report="weights" data-steps="{}" data-levels="{}" points="{}" fill="none" stroke="{WEIGHT}" stroke-width="2.5" stroke-linejoin="round"/>"#,
            w.len(),
            levels.join(" "),
            pts.join(" ")
        );
        for x in w {
            let label = format!("{}%", x.new_percent);
            // Above the line, or below it near the top (where the step labels are).
            let y = if x.new_percent > 75.0 {
                p.y(x.new_percent) + 10.0
            } else {
                p.y(x.new_percent) - 3.0
            };
            let at = self.x(x.t);
            // A change near the right edge is labelled on its left, inside the chart.
            if at > W - RIGHT - 24.0 {
                self.text(at - 3.0, y, r#"class="value" text-anchor="end""#, &label);
            } else {
                self.text(at + 3.0, y, r#"class="value""#, &label);
            }
        }
    }

    fn threshold(&mut self, p: &Panel, check: &str, value: Option<f64>, label: String) {
        let Some(v) = value else { return };
        let y = p.y(v);
        let _ = writeln!(
            self.out,
            r#"<line data-report="threshold" data-check="{check}" data-value="{v}" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{FAIL}" stroke-width="1.2" stroke-dasharray="5 3"/>"#,
            num(LEFT),
            num(y),
            num(W - RIGHT),
            num(y)
        );
        // On the left: a rollback, and so the busiest part of the chart, is at its right end.
        self.text(LEFT + 3.0, y - 3.0, r#"class="limit""#, &label);
    }

    /// One colour's series: the live colour as a grey line, the new one as verdict-coloured marks.
    fn series(&mut self, p: &Panel, name: &str, value: Pick) {
        let periods = &self.r.timeline.periods;
        let live: Vec<String> = periods
            .iter()
            .filter_map(|q| {
                let v = value(q).1?;
                Some(format!("{},{}", num(self.x((q.t_start + q.t_end) / 2.0)), num(p.y(v))))
            })
            .collect();
        if live.len() > 1 {
            let _ = writeln!(
                self.out,
                r#"<polyline data-report="live" data-panel="{name}" points="{}" fill="none" stroke="{LIVE}" stroke-width="1" stroke-dasharray="2 2"/>"#,
                live.join(" ")
            );
        }
        let new: Vec<String> = periods
            .iter()
            .filter_map(|q| {
                let v = value(q).0?;
                Some(format!("{},{}", num(self.x((q.t_start + q.t_end) / 2.0)), num(p.y(v))))
            })
            .collect();
        if new.len() > 1 {
            let _ = writeln!(
                self.out,
                r#"<polyline data-report="new" data-panel="{name}" points="{}" fill="none" stroke="{NEW}" stroke-width="1.2"/>"#,
                new.join(" ")
            );
        }
        for q in periods {
            let x = self.x((q.t_start + q.t_end) / 2.0);
            let (v, _) = value(q);
            let tip = format!(
                "+{} {}: {} requests, 5xx {}, {}",
                words::clock(q.t_start),
                q.outcome.as_str(),
                words::count(q.new_requests),
                words::rate(q.new_error_rate),
                words::latency(q.new_latency_secs)
            );
            let (y, fill) = match v {
                Some(v) => (p.y(v), outcome_color(q.outcome)),
                // No data: a hollow mark on the baseline.
                None => (p.bottom(), "#ffffff"),
            };
            let _ = writeln!(
                self.out,
                r#"<circle data-report="verdict" data-panel="{name}" data-outcome="{}" cx="{}" cy="{}" r="2.6" fill="{fill}" stroke="{}" stroke-width="1"><title>{}</title></circle>"#,
                q.outcome.as_str(),
                num(x),
                num(y),
                outcome_color(q.outcome),
                esc(&tip)
            );
        }
    }

    fn marks(&mut self) {
        let marks: Vec<Mark> = self
            .r
            .timeline
            .marks
            .iter()
            .filter(|m| {
                matches!(
                    m.kind,
                    MarkKind::Operator | MarkKind::Alarm | MarkKind::Drift | MarkKind::Adopted | MarkKind::Other
                )
            })
            .cloned()
            .collect();
        for m in &marks {
            let x = self.x(m.t);
            let (shape, color) = match m.kind {
                MarkKind::Alarm => ("M-5,8 L0,-1 L5,8 Z", FAIL),
                MarkKind::Drift => ("M0,-1 L5,4 L0,9 L-5,4 Z", SHARED),
                MarkKind::Other => ("M-3.5,0.5 h7 v7 h-7 Z", LIVE),
                _ => ("M-5,-1 L5,-1 L0,8 Z", "#0969da"),
            };
            let tip = match &m.by {
                Some(by) => format!("+{} {} by {by}: {}", words::clock(m.t), m.event, m.text),
                None => format!("+{} {}: {}", words::clock(m.t), m.event, m.text),
            };
            let _ = writeln!(
                self.out,
                r#"<path data-report="mark" data-kind="{}" data-event="{}" transform="translate({},{})" d="{shape}" fill="{color}"><title>{}</title></path>"#,
                kind_name(m.kind),
                esc(&m.event),
                num(x),
                num(MARKS - 12.0),
                esc(&tip)
            );
        }
    }

    /// The rollback (a red line across every panel) and the verified restore (a dashed one).
    fn rollback(&mut self, bottom: f64) {
        let marks = self.r.timeline.marks.clone();
        if let Some(m) = marks.iter().find(|m| m.kind == MarkKind::Rollback) {
            let x = self.x(m.t);
            let reason = self.r.rollback.as_ref().map(|r| r.reason.as_str()).unwrap_or(&m.text);
            let _ = writeln!(
                self.out,
                r#"<g data-report="rollback" data-t="{}"><title>{}</title>"#,
                num(m.t),
                esc(&format!("rollback at +{}: {reason}", words::clock(m.t)))
            );
            self.line(x, 4.0, x, bottom, &format!(r#"stroke="{FAIL}" stroke-width="2""#));
            let anchor = if x > W * 0.7 { "end" } else { "start" };
            let dx = if anchor == "end" { -4.0 } else { 4.0 };
            self.text(
                x + dx,
                12.0,
                &format!(r#"class="rollback" text-anchor="{anchor}""#),
                "rollback",
            );
            self.out.push_str("</g>\n");
        }
        if let Some(m) = marks.iter().find(|m| m.kind == MarkKind::TrafficRestored) {
            let x = self.x(m.t);
            let _ = writeln!(
                self.out,
                r#"<g data-report="restored" data-t="{}"><title>{}</title>"#,
                num(m.t),
                esc(&format!("+{} {}", words::clock(m.t), m.text))
            );
            self.line(
                x,
                MARKS,
                x,
                bottom,
                &format!(r#"stroke="{PASS}" stroke-width="1.5" stroke-dasharray="4 3""#),
            );
            self.out.push_str("</g>\n");
        }
    }

    fn axis(&mut self, y: f64) {
        let step = tick_step(self.span);
        let mut t = 0.0;
        while t <= self.span + 1e-9 {
            let x = self.x(t);
            self.line(x, y, x, y + 3.0, r##"stroke="#57606a""##);
            self.text(x, y + 13.0, r#"class="tick" text-anchor="middle""#, &words::clock(t));
            t += step;
        }
    }
}

pub fn kind_name(k: MarkKind) -> &'static str {
    match k {
        MarkKind::Started => "started",
        MarkKind::StepStarted => "step_started",
        MarkKind::StepDone => "step_done",
        MarkKind::StepFailed => "step_failed",
        MarkKind::Alarm => "alarm",
        MarkKind::Operator => "operator",
        MarkKind::Adopted => "adopted",
        MarkKind::Drift => "drift",
        MarkKind::Rollback => "rollback",
        MarkKind::TrafficRestored => "traffic_restored",
        MarkKind::Undo => "undo",
        MarkKind::Hook => "hook",
        MarkKind::Note => "note",
        MarkKind::Finished => "finished",
        MarkKind::Other => "other",
    }
}

/// The chart of `r`, as one `<svg>` element.
pub fn chart(r: &Report) -> String {
    let tl = &r.timeline;
    let mut c = Chart {
        out: String::new(),
        r,
        span: tl.span_secs.max(1.0),
    };
    let weights = Panel {
        top: MARKS + TITLE,
        height: WEIGHTS_H,
        max: 100.0,
    };
    let errors = Panel {
        top: weights.bottom() + TITLE + 8.0,
        height: PANEL_H,
        max: axis_max(
            tl.periods
                .iter()
                .flat_map(|p| [p.new_error_rate, p.live_error_rate])
                .flatten(),
            r.thresholds.max_error_rate,
            0.01,
        ),
    };
    let latency = Panel {
        top: errors.bottom() + TITLE + 8.0,
        height: PANEL_H,
        max: axis_max(
            tl.periods
                .iter()
                .flat_map(|p| [p.new_latency_secs, p.live_latency_secs])
                .flatten(),
            r.thresholds.max_latency_secs,
            0.1,
        ),
    };
    let height = latency.bottom() + AXIS;
    let stat = super::markdown::stat(r);
    let _ = writeln!(
        c.out,
        r#"<svg data-report="timeline" viewBox="0 0 {W} {}" width="100%" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">"#,
        num(height)
    );
    let _ = writeln!(
        c.out,
        r#"<title id="chart-title">Timeline of cutover {}: weights, error rate and {stat} latency per judged period</title>"#,
        esc(&r.id)
    );
    c.frame(&weights, "weights", "new colour's share of traffic", &|v| {
        format!("{v:.0}%")
    });
    c.frame(&errors, "error_rate", "new colour's 5xx error rate per period", &|v| {
        format!("{}%", num(v * 100.0))
    });
    c.frame(
        &latency,
        "latency",
        &format!("new colour's latency ({stat}) per period"),
        &|v| words::latency(Some(v)),
    );
    for (p, labels) in [(&weights, true), (&errors, false), (&latency, false)] {
        c.step_bands(p.top, p.bottom(), labels);
    }
    c.weights(&weights);
    c.threshold(
        &errors,
        "error_rate",
        r.thresholds.max_error_rate,
        format!("max {}", words::rate(r.thresholds.max_error_rate)),
    );
    c.series(&errors, "error_rate", |q| (q.new_error_rate, q.live_error_rate));
    c.threshold(
        &latency,
        "latency",
        r.thresholds.max_latency_secs,
        format!("max {}", words::latency(r.thresholds.max_latency_secs)),
    );
    c.series(&latency, "latency", |q| (q.new_latency_secs, q.live_latency_secs));
    c.marks();
    c.rollback(latency.bottom());
    c.axis(latency.bottom());
    c.out.push_str("</svg>\n");
    c.out
}
