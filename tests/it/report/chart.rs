//! The chart as the browser built it: a test-only page frames the report at 375 px and writes each
//! element's measured box and each polyline's points into the DOM; the dump is checked against
//! what the record says the chart must show.

use std::collections::BTreeMap;

use crate::util::*;

use super::browser::browse;

/// Test-only: a page that shows the report in a 375 px frame (headless Chromium's own window
/// is at least 500 px wide), measures what the browser built there, and copies the measured
/// page into its own DOM, for `--dump-dom`. The report itself runs no script.
const MEASURE: &str = r#"<!doctype html><html><body style="margin:0"><script>
function measure(frame) {
  const doc = frame.contentDocument;
  for (const el of doc.querySelectorAll('svg [data-report]')) {
    const b = el.getBBox();
    el.setAttribute('data-bbox', [b.x, b.y, b.width, b.height].map(v => v.toFixed(2)).join(' '));
    if (el.points) el.setAttribute('data-built', Array.from(el.points, p => p.x.toFixed(2) + ',' + p.y.toFixed(2)).join(' '));
  }
  const out = document.getElementById('out');
  out.setAttribute('data-scroll-width', doc.documentElement.scrollWidth);
  out.setAttribute('data-client-width', doc.documentElement.clientWidth);
  out.appendChild(document.importNode(doc.body, true));
}
</script><iframe style="width:375px;height:6000px;border:0" onload="measure(this)" srcdoc="REPORT"></iframe>
<div id="out"></div></body></html>"#;

/// One start tag of the dumped DOM.
#[derive(Debug, Clone)]
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
}

impl Tag {
    fn get(&self, k: &str) -> &str {
        self.attrs.get(k).map_or("", String::as_str)
    }
    fn f(&self, k: &str) -> f64 {
        self.get(k).parse().unwrap_or(f64::NAN)
    }
    /// `x y width height` of its measured bounding box.
    fn bbox(&self) -> [f64; 4] {
        let v: Vec<f64> = self
            .get("data-bbox")
            .split(' ')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        [v[0], v[1], v[2], v[3]]
    }
}

/// The start tags of `html` (the browser serialises every attribute in double quotes).
fn tags(html: &str) -> Vec<Tag> {
    let mut out = vec![];
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if name.is_empty() {
            continue;
        }
        rest = &rest[name.len()..];
        let mut attrs = BTreeMap::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() || rest.starts_with('>') || rest.starts_with("/>") {
                break;
            }
            let key: String = rest.chars().take_while(|c| !"=> /\"".contains(*c)).collect();
            rest = &rest[key.len().max(1)..];
            if let Some(v) = rest.strip_prefix("=\"") {
                let end = v.find('"').unwrap_or(v.len());
                attrs.insert(key, v[..end].replace("&quot;", "\"").replace("&amp;", "&"));
                rest = &v[(end + 1).min(v.len())..];
            } else if !key.is_empty() {
                attrs.insert(key, String::new());
            }
        }
        out.push(Tag { name, attrs });
    }
    out
}

/// What a report's chart must show.
pub(super) struct Expect {
    /// The new colour's share at each step of the weights line.
    pub(super) levels: Vec<f64>,
    pub(super) error_rate: f64,
    pub(super) latency: f64,
    pub(super) rollback: bool,
}

/// The page with the measuring script, dumped by the browser at 375 px: the chart checked
/// against `want`. Every problem found, one per line.
pub(super) fn check_chart(wd: &Workdir, html: &str, want: &Expect) -> Result<(), String> {
    assert!(!html.contains("<script"), "the report itself runs no script");
    let page = tempfile::Builder::new().suffix(".html").tempfile_in(wd.path()).unwrap();
    let srcdoc = html.replace('&', "&amp;").replace('"', "&quot;");
    std::fs::write(page.path(), MEASURE.replacen("REPORT", &srcdoc, 1)).unwrap();
    let dom = browse(page.path(), &["--window-size=800,900".into(), "--dump-dom".into()]);
    let all = tags(&dom);
    let mut problems = vec![];
    let root = all
        .iter()
        .find(|t| t.get("id") == "out" && t.attrs.contains_key("data-client-width"))
        .unwrap_or_else(|| panic!("the measuring page did not run: {}", &dom[..dom.len().min(2000)]));
    let (scroll, client) = (root.f("data-scroll-width"), root.f("data-client-width"));
    if !(client == 375.0 && scroll <= client) {
        problems.push(format!("the page scrolls sideways at 375 px: {scroll} > {client}"));
    }
    let by = |kind: &str| -> Vec<&Tag> { all.iter().filter(|t| t.get("data-report") == kind).collect() };
    let panel = |name: &str| by("panel").into_iter().find(|t| t.get("data-panel") == name).cloned();
    let (Some(weights_panel), Some(errors), Some(latency)) = (panel("weights"), panel("error_rate"), panel("latency"))
    else {
        return Err(format!("panels missing: {:?}", by("panel")));
    };

    // The weights: a step line whose horizontal runs sit at the record's levels.
    match by("weights").first() {
        None => problems.push("no weights line".into()),
        Some(line) if line.name != "polyline" => problems.push(format!("the weights line is a <{}>", line.name)),
        Some(line) => {
            let [_, top, _, height] = weights_panel.bbox();
            let points: Vec<(f64, f64)> = line
                .get("data-built")
                .split(' ')
                .filter_map(|p| p.split_once(','))
                .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                .collect();
            let levels: Vec<f64> = points
                .windows(2)
                .filter(|w| (w[0].1 - w[1].1).abs() < 0.01 && w[1].0 > w[0].0)
                .map(|w| (100.0 * (top + height - w[0].1) / height * 10.0).round() / 10.0)
                .collect();
            if levels != want.levels {
                problems.push(format!("weights line steps at {levels:?}, want {:?}", want.levels));
            }
            if line.f("data-steps") != want.levels.len() as f64 {
                problems.push(format!("data-steps {} for {:?}", line.get("data-steps"), want.levels));
            }
        }
    }

    // The thresholds: horizontal lines across their panel, at their value's height.
    for (check, value, p) in [
        ("error_rate", want.error_rate, &errors),
        ("latency", want.latency, &latency),
    ] {
        let Some(line) = by("threshold").into_iter().find(|t| t.get("data-check") == check) else {
            problems.push(format!("no {check} threshold line"));
            continue;
        };
        let [px, py, pw, ph] = p.bbox();
        let [x, y, w, h] = line.bbox();
        let expected = py + ph * (1.0 - value / p.f("data-max"));
        if line.f("data-value") != value
            || (y - expected).abs() > 0.5
            || h > 0.01
            || (x - px).abs() > 0.5
            || (w - pw).abs() > 0.5
        {
            problems.push(format!(
                "{check} threshold {} drawn at y {y} (x {x}, width {w}), want {value} at y {expected:.2} across x {px}..{}",
                line.get("data-value"),
                px + pw
            ));
        }
    }

    // The rollback marker: there for a rollback, spanning every panel, where traffic went back.
    let marker = by("rollback");
    match (marker.first(), want.rollback) {
        (Some(m), true) => {
            let [x, y, _, h] = m.bbox();
            let [_, lat_y, _, lat_h] = latency.bbox();
            let [_, w_y, _, _] = weights_panel.bbox();
            if y > w_y || y + h < lat_y + lat_h - 0.5 {
                problems.push(format!("rollback marker spans y {y}..{}, not every panel", y + h));
            }
            let restored = by("restored").first().map(|r| r.bbox()[0]);
            if restored.is_none_or(|r| r < x - 0.5) {
                problems.push(format!(
                    "traffic restored at x {restored:?}, before the rollback at x {x}"
                ));
            }
        }
        (None, false) => {}
        (Some(_), false) => problems.push("a rollback marker on a cutover that did not roll back".into()),
        (None, true) => problems.push("no rollback marker".into()),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What `util::plan` judges against: `max_error_rate = 0.05`, `max_latency = "250ms"`.
pub(super) fn expect(levels: &[f64], rollback: bool) -> Expect {
    Expect {
        levels: levels.to_vec(),
        error_rate: 0.05,
        latency: 0.25,
        rollback,
    }
}
