//! Where the live log goes and how it looks: the tracing subscriber on stderr, in a human
//! form or as JSON lines, with or without colour.
//!
//! * **Human** (`--log-format text`, the default): `HH:MM:SS LEVEL message`, UTC, one line per
//!   event, the decisive part first; no span prefixes, no empty `step=`; rollbacks in bold red
//!   (and in capitals, so they stand out without colour too), a promotion in bold green.
//! * **JSON** (`--log-format json`): one object per line with `timestamp`, `level`, `message`,
//!   and the line's fields: `cutover_id`, `event`, `step`, `at` (the record's own time, when it
//!   was read back from a journal), `mark`, the verdict's numbers, the whole `reason`.
//!
//! Colour ([`wants_color`]): `--color always|never` decide; `auto` (the default) colours a
//! terminal unless `NO_COLOR` is set to anything but the empty string, or `TERM=dumb`.
//!
//! Every line goes through [`log`], whether the engine journaled its event a moment ago
//! (`cutover run`, the daemon) or a client read it from a daemon's event stream (`cutover
//! watch`, `start --wait`): one format for both.

use std::ffi::OsStr;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::{Line, Mark};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` or `TERM=dumb` say otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether to write ANSI colours: `choice`, for a stderr that `is_terminal` or not, with the
/// environment's `NO_COLOR` and `TERM` (<https://no-color.org>: a flag beats the variable).
pub fn wants_color(choice: ColorChoice, is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb"),
    }
}

/// The filter when `CUTOVER_LOG` is not set: cutover's own lines, and only errors of the SDK
/// (its credential chain warns once per provider it tries, IMDS four times on a laptop; what
/// matters reaches the user as the call's error, with a hint).
const DEFAULT_FILTER: &str = "error,cutover=info";

/// Installs the subscriber: JSON lines or the human form, on stderr, filtered by `CUTOVER_LOG`
/// (an `EnvFilter`: `debug` shows the SDK's own logs and the whole error of every failed call).
pub fn init(json: bool, ansi: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).with_span_list(false).init();
    } else {
        builder.event_format(Human { ansi }).init();
    }
}

/// Logs one live-log line of cutover `id`; `at` is its record's time when it was read back
/// from a journal rather than journaled just now.
pub fn log(line: &Line, id: Option<&str>, at: Option<&str>) {
    let f = &line.fields;
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                $level,
                cutover_id = id,
                event = line.kind,
                step = line.step.as_deref(),
                at = at,
                mark = line.mark.map(Mark::as_str),
                verdict = f.verdict,
                streak = f.streak,
                streak_limit = f.streak_limit,
                rollback = f.rollback,
                requests = f.requests,
                errors = f.errors,
                error_rate = f.error_rate,
                threshold = f.threshold,
                latency_seconds = f.latency_seconds,
                latency_threshold_seconds = f.latency_threshold_seconds,
                live_requests = f.live_requests,
                live_error_rate = f.live_error_rate,
                baked_secs = f.baked_secs,
                bake_secs = f.bake_secs,
                new_percent = f.new_percent,
                outcome = f.outcome,
                trigger = f.trigger,
                reason = f.reason.as_deref(),
                "{}",
                line.message
            )
        };
    }
    match line.level {
        crate::saga::Level::Info => event!(Level::INFO),
        crate::saga::Level::Warn => event!(Level::WARN),
        crate::saga::Level::Error => event!(Level::ERROR),
    }
}

/// The fields [`log`] adds for machines: the human form does not repeat them.
const MACHINE_FIELDS: &[&str] = &[
    "cutover_id",
    "event",
    "step",
    "at",
    "mark",
    "verdict",
    "streak",
    "streak_limit",
    "rollback",
    "requests",
    "errors",
    "error_rate",
    "threshold",
    "latency_seconds",
    "latency_threshold_seconds",
    "live_requests",
    "live_error_rate",
    "baked_secs",
    "bake_secs",
    "new_percent",
    "outcome",
    "trigger",
    "reason",
    // Context the engine's other lines carry, already in their message.
    "id",
    "service",
];

/// The human form: `HH:MM:SS LEVEL message`, and any field that is not a machine field
/// (`key=value`, for the SDK's own lines under `CUTOVER_LOG=debug`).
struct Human {
    ansi: bool,
}

#[derive(Default)]
struct Collect {
    message: String,
    at: Option<String>,
    mark: Option<String>,
    extra: Vec<(String, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "at" => self.at = Some(value.to_string()),
            "mark" => self.mark = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name if MACHINE_FIELDS.contains(&name) => {}
            name => self.extra.push((name.to_string(), value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            name if MACHINE_FIELDS.contains(&name) => {}
            name => self.extra.push((name.to_string(), format!("{value:?}"))),
        }
    }
}

/// `HH:MM:SS` of an RFC 3339 time (`2026-11-22T02:46:30.453Z`).
fn clock(rfc3339: &str) -> Option<&str> {
    rfc3339.get(11..19).filter(|t| t.as_bytes().get(2) == Some(&b':'))
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut c = Collect::default();
        event.record(&mut c);
        let now = crate::journal::now_rfc3339();
        let time = c.at.as_deref().and_then(clock).or(clock(&now)).unwrap_or("--:--:--");
        let level = *event.metadata().level();
        let (name, colour) = match level {
            Level::ERROR => ("ERROR", "31"),
            Level::WARN => ("WARN ", "33"),
            Level::INFO => ("INFO ", "32"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::TRACE => ("TRACE", "35"),
        };
        let emphasis = match c.mark.as_deref() {
            Some("rollback") => Some("1;31"),
            Some("unsafe") => Some("1;7;31"),
            Some("promoted") => Some("1;32"),
            _ => None,
        };
        if self.ansi {
            write!(w, "\x1b[2m{time}\x1b[0m \x1b[{colour}m{name}\x1b[0m ")?;
            match emphasis {
                Some(e) => write!(w, "\x1b[{e}m{}\x1b[0m", c.message)?,
                None => write!(w, "{}", c.message)?,
            }
        } else {
            write!(w, "{time} {name} {}", c.message)?;
        }
        if level > Level::INFO {
            // DEBUG and TRACE come from libraries: say which.
            write!(w, " [{}]", event.metadata().target())?;
        }
        for (k, v) in &c.extra {
            if self.ansi {
                write!(w, " \x1b[2m{k}=\x1b[0m{v}")?;
            } else {
                write!(w, " {k}={v}")?;
            }
        }
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 14.3): `with_ansi(is_terminal())` ignored `NO_COLOR` on a terminal.
    #[test]
    fn no_color_and_the_flag_decide_colour() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        let dumb = Some(OsStr::new("dumb"));
        let cases = [
            (ColorChoice::Auto, true, None, None, true),
            (ColorChoice::Auto, true, set, None, false),
            // An empty NO_COLOR is as if unset.
            (ColorChoice::Auto, true, empty, None, true),
            (ColorChoice::Auto, true, None, dumb, false),
            (ColorChoice::Auto, false, None, None, false),
            (ColorChoice::Always, false, set, dumb, true),
            (ColorChoice::Never, true, None, None, false),
        ];
        for (choice, tty, no_color, term, want) in cases {
            assert_eq!(
                wants_color(choice, tty, no_color, term),
                want,
                "{choice:?} tty={tty} NO_COLOR={no_color:?} TERM={term:?}"
            );
        }
    }

    #[test]
    fn the_clock_comes_from_the_record() {
        assert_eq!(clock("2026-11-22T02:46:30.453Z"), Some("02:46:30"));
        assert_eq!(clock("garbage"), None);
    }
}
