//! Numbers and times as the report prints them, the same in HTML and Markdown.

use crate::color::Percents;

/// `0.3` → `30.00%`.
pub fn rate(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.2}%", r * 100.0),
        None => "—".into(),
    }
}

/// Seconds of latency: `0.05` → `50ms`, `1.5` → `1.50s`.
pub fn latency(s: Option<f64>) -> String {
    match s {
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
        None => "—".into(),
    }
}

/// A duration: `4.2s`, `2m 05s`, `1h 02m`.
pub fn duration(s: Option<f64>) -> String {
    let Some(s) = s else { return "—".into() };
    if s < 1.0 {
        return format!("{:.0}ms", s * 1000.0);
    }
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

/// An offset on the timeline: `0:07`, `12:30`, `1:02:03`.
pub fn clock(t: f64) -> String {
    let s = t.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `blue 0% / green 100%`.
pub fn weights(w: Option<Percents>) -> String {
    match w {
        Some(w) => format!("blue {}% / green {}%", w.blue, w.green),
        None => "—".into(),
    }
}

/// A count of requests: `1200`, `1.2M` past a million.
pub fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else {
        format!("{n:.0}")
    }
}

/// A journal timestamp, or a dash.
pub fn at(a: Option<&str>) -> String {
    a.unwrap_or("—").to_string()
}

/// `Some(x)` as text, or a dash.
pub fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "—".into(),
    }
}

/// Text for HTML and SVG: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or value for an attribute: at most two decimals, no trailing zeros.
pub fn num(x: f64) -> String {
    let s = format!("{:.2}", if x.is_finite() { x } else { 0.0 });
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}
