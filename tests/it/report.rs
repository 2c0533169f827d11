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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::{Serve, TOKEN};
use crate::e2e::{profile, steps_with_deploy};
use crate::util::*;

/// The browser, or why not, naming the script that installs it.
fn chromium_at(path: &Path) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        Err(format!(
            "Chromium is not installed ({} missing): the report tests open reports in a real browser.\n\
             Install it with: deploy/local/install-chromium.sh\n(deploy/local/test.sh runs it)",
            path.display()
        ))
    }
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CUTOVER_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    chromium_at(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs headless Chromium on `page` with `args`, in a throwaway profile, within a minute.
fn browse(page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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
struct Expect {
    /// The new colour's share at each step of the weights line.
    levels: Vec<f64>,
    error_rate: f64,
    latency: f64,
    rollback: bool,
}

/// The page with the measuring script, dumped by the browser at 375 px: the chart checked
/// against `want`. Every problem found, one per line.
fn check_chart(wd: &Workdir, html: &str, want: &Expect) -> Result<(), String> {
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

/// Decodes a PNG (Python's zlib; RGB or RGBA, 8 bits, not interlaced) and measures it.
const PNG_STATS: &str = r#"
import json, struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b'IHDR':
        w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', body)
    elif kind == b'IDAT':
        idat += body
bpp = {2: 3, 6: 4}[ctype]
assert depth == 8 and interlace == 0
raw, stride, prev, i = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0
colours, background, other = set(), None, 0
for y in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + ((a + b) >> 1)) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x + 3])
        background = background or px
        colours.add(px)
        other += px != background
    prev = line
print(json.dumps({'width': w, 'height': h, 'colours': len(colours), 'other': other / (w * h)}))
"#;

/// A screenshot of `html` at `w`×`h`: checked to be a PNG of that size with real content.
fn screenshot(wd: &Workdir, html: &str, name: &str, (w, h): (u32, u32)) -> PathBuf {
    let page = wd.path().join(format!("{name}.html"));
    std::fs::write(&page, html).unwrap();
    let png = wd.path().join(format!("{name}.png"));
    browse(
        &page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={w},{h}"),
        ],
    );
    let out = Command::new(python())
        .args(["-c", PNG_STATS])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (stats["width"].as_u64(), stats["height"].as_u64()),
        (Some(w.into()), Some(h.into())),
        "{stats}"
    );
    // Text, a chart and colour, not a blank page: a share of non-background pixels, many colours.
    assert!(
        stats["other"].as_f64().unwrap() > 0.04 && stats["colours"].as_u64().unwrap() > 60,
        "{stats}"
    );
    if let Some(dir) = std::env::var_os("CUTOVER_REPORT_SHOTS") {
        std::fs::copy(&png, Path::new(&dir).join(format!("{name}.png"))).unwrap();
    }
    png
}

/// `cutover report --config PLAN --format FORMAT --output FILE`, read back.
fn report(wd: &Workdir, world: &World, plan: &Path, format: &str) -> String {
    let file = wd.path().join(format!("report.{format}"));
    let out = run(wd.cutover(
        &world.endpoint,
        &[
            "report",
            "--config",
            plan.to_str().unwrap(),
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0));
    std::fs::read_to_string(file).unwrap()
}

/// What `util::plan` judges against: `max_error_rate = 0.05`, `max_latency = "250ms"`.
fn expect(levels: &[f64], rollback: bool) -> Expect {
    Expect {
        levels: levels.to_vec(),
        error_rate: 0.05,
        latency: 0.25,
        rollback,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_cutover_s_report_shows_its_steps_and_no_rollback_in_a_browser() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));

    let record: Value = serde_json::from_str(&report(&wd, &world, &plan, "json")).unwrap();
    assert_eq!(record["outcome"], "promoted");
    assert_eq!(record["rollback"], Value::Null);
    assert_eq!(record["thresholds"]["max_error_rate"], 0.05);
    assert_eq!(record["thresholds"]["latency_statistic"], "Average");
    let shifts: Vec<&str> = record["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(shifts, ["shift 50%", "shift 100%", "observe"]);
    assert_eq!(record["shifts"][0]["new_percent"], 50.0);
    assert_eq!(record["shifts"][0]["new"]["error_rate"], 0.0);
    assert!(record["duration_secs"].as_f64().unwrap() > 8.0, "{record}");
    let md = report(&wd, &world, &plan, "markdown");
    assert!(
        md.contains("| Outcome | promoted |") && md.contains("| Rollback | none |"),
        "{md}"
    );

    let html = report(&wd, &world, &plan, "html");
    // Without --output (or with `-`) the report goes to stdout.
    let out = run(wd.cutover(&world.endpoint, &["report", "--config", plan.to_str().unwrap()]));
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout)),
        (Some(0), html.as_str().into())
    );
    let want = expect(&[0.0, 50.0, 100.0], false);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    screenshot(&wd, &html, "promoted-375", (375, 1400));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_cutover_s_report_marks_the_rollback_and_the_checks_catch_a_wrong_chart() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3));

    let record: Value = serde_json::from_str(&report(&wd, &world, &plan, "json")).unwrap();
    assert_eq!(record["outcome"], "rolled_back");
    let rb = &record["rollback"];
    assert_eq!(
        (rb["trigger"].as_str(), rb["initiated_by"].as_str()),
        (Some("judge"), Some("cutover"))
    );
    assert!(rb["reason"].as_str().unwrap().contains("error rate too high"), "{rb}");
    assert!(
        rb["traffic_restored_at"].is_string() && rb["completed_at"].is_string(),
        "{rb}"
    );
    let chain: Vec<&str> = record["undo_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["label"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["traffic", "deploy"]);
    assert!(
        record["shifts"][0]["new"]["error_rate"].as_f64().unwrap() > 0.2,
        "{record}"
    );
    assert!(
        record["shifts"][0]["verdicts"]["fail"].as_u64().unwrap() >= 2,
        "{record}"
    );

    let html = report(&wd, &world, &plan, "html");
    let want = expect(&[0.0, 50.0, 0.0], true);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    screenshot(&wd, &html, "rolled-back-375", (375, 1400));
    screenshot(&wd, &html, "rolled-back-1024", (1024, 1300));

    // The same checks on pages drawn wrong must fail, each saying what is wrong.
    let threshold = html.find(r#"data-check="error_rate""#).unwrap();
    let tag_end = threshold + html[threshold..].find('>').unwrap();
    let tag = &html[threshold..tag_end];
    let y = tag.split(" y1=\"").nth(1).unwrap().split('"').next().unwrap();
    let lowered = tag
        .replace(&format!("y1=\"{y}\""), "y1=\"30\"")
        .replace(&format!("y2=\"{y}\""), "y2=\"30\"");
    let moved = format!("{}{lowered}{}", &html[..threshold], &html[tag_end..]);
    let no_marker = html.replace(r#"data-report="rollback""#, r#"data-report="gone""#);
    let points = html.find(r#"data-report="weights""#).unwrap();
    let flat = {
        let start = points + html[points..].find(" points=\"").unwrap() + 9;
        let end = start + html[start..].find('"').unwrap();
        format!("{}36,70 352,70{}", &html[..start], &html[end..])
    };
    let wide = html.replacen("<main>", r#"<main><div style="width:420px">a wide banner</div>"#, 1);
    for (page, says) in [
        (&wide, "the page scrolls sideways at 375 px"),
        (&moved, "error_rate threshold 0.05 drawn at y"),
        (&no_marker, "no rollback marker"),
        (&flat, "weights line steps at"),
    ] {
        match check_chart(&wd, page, &want) {
            Ok(()) => panic!("a wrong chart passed the checks ({says})"),
            Err(e) => assert!(e.contains(says), "{e} does not say {says:?}"),
        }
    }
    assert!(
        check_chart(
            &wd,
            &html,
            &Expect {
                rollback: false,
                ..want
            }
        )
        .is_err_and(|e| e.contains("a rollback marker on a cutover that did not roll back"))
    );
}

/// A GET with the token: status, content type and body.
async fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rollback_on_the_daemon_is_reported_by_the_daemon_with_who_and_why() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"");
    std::fs::write(plans.join("web.toml"), plan(&world, "", &steps)).unwrap();
    let s = Serve::start(&wd, &moto.endpoint, &plans);
    let (code, v) = crate::daemon::api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let wait = |what: &'static str, pred: fn(&Value) -> bool| {
        let (s, id) = (&s, &id);
        async move {
            let start = Instant::now();
            loop {
                let (_, v) = crate::daemon::api(s, "GET", &format!("/v1/cutovers/{id}"), None).await;
                if pred(&v) {
                    return v;
                }
                assert!(start.elapsed() < Duration::from_secs(40), "{what}: not yet: {v}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait("a pass at 50 %", |v| v["last_verdict"]["outcome"] == "pass").await;
    for (action, body) in [
        ("pause", json!({"reason": "checking dashboards", "by": "alice"})),
        ("resume", json!({"by": "alice"})),
        ("rollback", json!({"reason": "pager fired", "by": "bob"})),
    ] {
        let (code, v) = crate::daemon::api(&s, "POST", &format!("/v1/cutovers/{id}/{action}"), Some(body)).await;
        assert_eq!(code, 200, "{action}: {v}");
        // Apart on the timeline, as an operator's actions are.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    wait("rolled back", |v| v["outcome"].is_string()).await;

    let url = format!("{}/v1/cutovers/{id}/report", s.url);
    let (code, ct, html) = get(&url, Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "text/html; charset=utf-8"));
    let (code, ct, text) = get(&format!("{url}?format=json"), Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["outcome"], "rolled_back_by_operator");
    let rb = &record["rollback"];
    assert_eq!(
        (rb["trigger"].as_str(), rb["reason"].as_str()),
        (Some("operator"), Some("pager fired"))
    );
    // The token's name (a lone token is `api`) is who acted; `by` is what the caller says.
    let initiated_by = rb["initiated_by"].as_str().unwrap();
    assert!(
        initiated_by.starts_with("api (API, 127.0.0.1:") && initiated_by.ends_with(", says bob)"),
        "{rb}"
    );
    let actions: Vec<(&str, &str)> = record["operator_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["by"]
                    .as_str()
                    .unwrap()
                    .rsplit("says ")
                    .next()
                    .unwrap()
                    .trim_end_matches(')'),
            )
        })
        .collect();
    assert_eq!(actions, [("pause", "alice"), ("resume", "alice"), ("rollback", "bob")]);
    let (code, ct, md) = get(&format!("{url}?format=markdown"), Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "text/markdown; charset=utf-8"));
    assert!(md.contains("| Rollback reason | pager fired |"), "{md}");
    // Behind the token, 404 for a cutover that is not there, 400 for a format that is not one.
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(
        get(
            &format!("{}/v1/cutovers/20260101T000000Z-0000/report", s.url),
            Some(TOKEN)
        )
        .await
        .0,
        404
    );
    assert_eq!(get(&format!("{url}?format=pdf"), Some(TOKEN)).await.0, 400);
    // The API document describes the route and what it answers.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(root().join("api/openapi.json")).unwrap()).unwrap();
    let op = &doc["paths"]["/v1/cutovers/{id}/report"]["get"];
    for media in ["text/html", "application/json", "text/markdown"] {
        assert!(
            op["responses"]["200"]["content"][media].is_object(),
            "{media} not in api/openapi.json"
        );
    }
    let registry = jsonschema::Registry::new()
        .draft(jsonschema::Draft::Draft202012)
        .add("urn:cutover:openapi", doc.clone())
        .and_then(|r| r.prepare())
        .unwrap();
    let report_schema = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&registry)
        .build(&json!({"$ref": "urn:cutover:openapi#/components/schemas/Report"}))
        .unwrap();
    let errors: Vec<String> = report_schema
        .iter_errors(&record)
        .map(|e| format!("{}: {e}", e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "the record is not what api/openapi.json says: {errors:#?}"
    );

    // `cutover report ID --server URL` writes what the daemon serves.
    let file = wd.path().join("from-daemon.html");
    let out = run(wd.cutover(
        &moto.endpoint,
        &[
            "report",
            &id,
            "--server",
            &s.url,
            "--token",
            TOKEN,
            "--output",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), html);

    let want = expect(&[0.0, 50.0, 0.0], true);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        html.matches(r#"data-kind="operator""#).count() >= 3,
        "pause, resume and rollback marks"
    );
    screenshot(&wd, &html, "operator-375", (375, 1400));
}

#[test]
fn a_missing_browser_is_a_loud_failure_naming_the_install_script() {
    let e = chromium_at(Path::new("/nonexistent/chromium")).unwrap_err();
    assert!(
        e.contains("deploy/local/install-chromium.sh") && e.contains("/nonexistent/chromium"),
        "{e}"
    );
}
