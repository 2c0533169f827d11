//! The cutover report (issue 13): real cutovers against moto (promoted, rolled back by the
//! judge, rolled back by an operator through the daemon), their reports opened in a real
//! headless Chromium.
//!
//! 1. A screenshot at phone width must be a PNG of the requested size with real content.
//! 2. The chart is checked as the browser built it: a measuring script, injected into a copy of
//!    the page for this test only (the report itself has no script), writes each `data-report`
//!    element's `getBBox()` and a polyline's parsed points into the DOM, and `--dump-dom` hands
//!    them back. The weights' steps, the thresholds' heights and the rollback marker are then
//!    compared with the record; the page must not scroll sideways at 375 px.
//! 3. The same checks fail on a page whose threshold is drawn at the wrong height, whose weights
//!    line lost a step, or whose rollback marker is gone: a checker that passes everything
//!    would not.
//!
//! Chromium comes from Debian's packages through `deploy/local/install-chromium.sh` (which
//! `deploy/local/test.sh` runs); without it these tests fail, naming that script.
//!
//! Its files: `browser` (finding and running Chromium, screenshots decoded and measured), `chart`
//! (the chart as the browser built it, checked against the record), `cutovers` (the reports of a
//! promoted and a judge-rolled-back cutover) and `operator` (an operator rollback on the daemon,
//! reported by the daemon).

mod browser;
mod chart;
mod cutovers;
mod operator;
