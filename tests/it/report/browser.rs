//! The real browser: headless Chromium found (or a loud failure naming its install script), run
//! on a page within a minute, and screenshots decoded and checked for their size and content.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
pub(super) fn browse(page: &Path, args: &[String]) -> String {
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
pub(super) fn screenshot(wd: &Workdir, html: &str, name: &str, (w, h): (u32, u32)) -> PathBuf {
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

#[test]
fn a_missing_browser_is_a_loud_failure_naming_the_install_script() {
    let e = chromium_at(Path::new("/nonexistent/chromium")).unwrap_err();
    assert!(
        e.contains("deploy/local/install-chromium.sh") && e.contains("/nonexistent/chromium"),
        "{e}"
    );
}
