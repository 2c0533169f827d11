//! The cutover report: what a cutover saw and did, built from its journal alone, as one
//! self-contained HTML page (a timeline chart in inline SVG), JSON, or Markdown.
//!
//! **Architecture Invariant:** a report is a view of the journal. It reads the journal's records
//! and the plan copy the cutover started with, never AWS, and the same journal gives the same
//! report. The HTML page needs nothing from outside (no scripts, fonts or styles) and no
//! JavaScript to be read.
//!
//! 1. [`load`] reads a cutover's records and plan copy from a store;
//! 2. [`build()`] folds them into one [`Report`] (the record to keep, and the timeline);
//! 3. [`render`] writes it in a [`Format`]: `json` is the record serialised as it is, `markdown`
//!    the record for a ticket or a post-mortem, `html` the record with its chart.
//!
//! * [`record`]: the [`Report`] type, the record's shape;
//! * `build.rs`: the fold;
//! * `markdown.rs`, `html.rs` and `svg.rs` (the chart): the renderings;
//! * [`client`]: the report of a daemon's cutover (`cutover report ID --server URL`).

mod build;
pub mod client;
mod html;
mod markdown;
pub mod record;
mod svg;
#[cfg(test)]
mod tests;
mod words;

use std::sync::Arc;

pub use build::build;
pub use record::{REPORT_VERSION, Report};

use crate::journal::{Journal, JournalError, Store};

/// How a report is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// One self-contained HTML page with the timeline chart (the default).
    #[default]
    Html,
    /// The record as one JSON object.
    Json,
    /// The record in Markdown, for a ticket or a post-mortem.
    Markdown,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Json => "json",
            Format::Markdown => "markdown",
        }
    }

    /// The HTTP content type of a report in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
            Format::Markdown => "text/markdown; charset=utf-8",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            "markdown" | "md" => Ok(Format::Markdown),
            other => Err(format!("unknown report format {other:?}: html, json or markdown")),
        }
    }
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Html => html::page(report),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report).expect("a report serializes");
            text.push('\n');
            text
        }
        Format::Markdown => markdown::document(report),
    }
}

/// Whether `id` can be a cutover id (the daemon's rule): a store is never asked for a path.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The report of cutover `id` in `store`: its journal and the plan copy it started with.
pub async fn load(store: &Arc<dyn Store>, id: &str) -> Result<Report, JournalError> {
    if !valid_id(id) {
        return Err(JournalError::NotFound(id.to_string()));
    }
    let journal = Journal::new(store.clone(), id);
    let records = journal.read_all().await?;
    let plan = journal.saved_plan().await?;
    Ok(build(&records, plan.as_deref()))
}
