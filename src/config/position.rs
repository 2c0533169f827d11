//! Where in the plan text an error is: its line, and the dotted key at a byte offset.
//!
//! toml reports syntax errors and duplicate keys with a byte span but no key. The key is
//! found in the document as toml's recovering parser reads it, which keeps every key,
//! value and table header it could read with its span, however broken the rest is:
//!
//! 1. on a table header line, that header (a duplicate `[alb]`, an unclosed `[service`), with
//!    its index if it is `[[x]]`: taken from the text, since a broken header is not in the
//!    document, or is there with a span the parser guessed;
//! 2. else the innermost key or value whose span holds the offset (`weight = 5x`; a duplicate
//!    key inside an inline table, whose own name is added: `steps[0].checks[1].http`);
//! 3. else the key written at the start of the offset's line, under the last table header
//!    above it: a duplicate key, which the parser drops, or a key without `=`.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The 1-based line of a byte offset.
///
/// Regression: this counted `text[..offset].lines()`, which is one short when the offset
/// starts a line (`"a\n".lines()` is one line), so a duplicate key on line 23 was reported
/// on line 22.
pub(super) fn line(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The dotted key (`steps[2].weight`) at a byte offset, if the text around it names one.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let (doc, _errors) = DeTable::parse_recoverable(text);
    let mut walk = Walk {
        text,
        offset,
        innermost: None,
        headers: Vec::new(),
    };
    walk.table(doc.get_ref(), "");

    let (line_start, line) = line_at(text, offset);
    if let Some(header) = line.trim_start().strip_prefix('[') {
        let (name, array) = match header.strip_prefix('[') {
            Some(rest) => (rest, true),
            None => (header, false),
        };
        let name = dotted(name.split(']').next().unwrap_or(""));
        if name.is_empty() || !array {
            return Some(name).filter(|n| !n.is_empty());
        }
        let index = walk
            .headers
            .iter()
            .filter(|(start, path)| {
                *start < line_start
                    && path
                        .strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with('['))
            })
            .count();
        return Some(format!("{name}[{index}]"));
    }
    if let Some(found) = walk.innermost {
        return Some(match found.kind {
            Kind::InlineTable => match bare_key(&text[offset..]) {
                "" => found.path,
                key => join(&found.path, key),
            },
            Kind::Other => found.path,
        });
    }
    let table = walk
        .headers
        .iter()
        .filter(|(start, _)| *start <= offset)
        .max_by_key(|(start, _)| *start)
        .map(|(_, path)| path.clone())
        .unwrap_or_default();
    // `key = …`, or a key without `=` (`weight 50`).
    let written = match line.split_once('=') {
        Some((key, _)) => key,
        None => line.split_whitespace().next().unwrap_or(""),
    };
    let key = dotted(written);
    match (table.is_empty(), key.is_empty()) {
        (true, true) => None,
        (_, true) => Some(table),
        _ => Some(join(&table, &key)),
    }
}

/// What kind of node holds the offset: an inline table may hold a key the parser dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InlineTable,
    Other,
}

#[derive(Debug)]
struct Found {
    path: String,
    len: usize,
    kind: Kind,
}

/// One pass over the recovered document: the innermost node holding the offset, and every
/// table header (`[x]`, `[[x]]`) with its start and its dotted path.
struct Walk<'a> {
    text: &'a str,
    offset: usize,
    innermost: Option<Found>,
    headers: Vec<(usize, String)>,
}

impl Walk<'_> {
    fn table(&mut self, table: &DeTable<'_>, prefix: &str) {
        for (key, value) in table.iter() {
            // An empty key is what the parser recovers from a line without one (`= 3`): the
            // error is the table's.
            if key.get_ref().is_empty() {
                continue;
            }
            let path = join(prefix, key.get_ref());
            // The key of an array of tables sits in its first `[[x]]` header, which names an
            // element (`x[0]`): the element's header span is the one to match.
            let array_of_tables = matches!(value.get_ref(), DeValue::Array(_)) && self.is_header(&value.span());
            if !array_of_tables {
                self.hit(&path, key.span(), Kind::Other);
            }
            self.value(value, path);
        }
    }

    fn value(&mut self, value: &Spanned<DeValue<'_>>, path: String) {
        let span = value.span();
        match value.get_ref() {
            DeValue::Table(t) => {
                let kind = if self.is_header(&span) {
                    self.headers.push((span.start, path.clone()));
                    Kind::Other
                } else if self.text.get(span.clone()).is_some_and(|s| s.starts_with('{')) {
                    Kind::InlineTable
                } else {
                    // An implicit table of a dotted key (`a.b = 1` makes `a`): its span is the key.
                    Kind::Other
                };
                self.hit(&path, span, kind);
                self.table(t, &path);
            }
            DeValue::Array(a) => {
                // An array of tables has its first header as its span: leave that to `x[0]`.
                if !self.is_header(&span) {
                    self.hit(&path, span, Kind::Other);
                }
                for (i, element) in a.iter().enumerate() {
                    self.value(element, format!("{path}[{i}]"));
                }
            }
            _ => self.hit(&path, span, Kind::Other),
        }
    }

    fn is_header(&self, span: &Range<usize>) -> bool {
        self.text.get(span.clone()).is_some_and(|s| s.starts_with('['))
    }

    /// Keeps `path` if its span holds the offset and is narrower than the best so far.
    fn hit(&mut self, path: &str, span: Range<usize>, kind: Kind) {
        // An empty span (a missing value, `weight =`) holds the offset it sits at.
        let holds = span.contains(&self.offset) || (span.is_empty() && span.start == self.offset);
        if holds && self.innermost.as_ref().is_none_or(|f| span.len() <= f.len) {
            self.innermost = Some(Found {
                path: path.to_string(),
                len: span.len(),
                kind,
            });
        }
    }
}

/// The line holding a byte offset (a line break is on the line it ends): its start, and its
/// text without the line break.
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    (start, text[start..end].trim_end_matches('\r'))
}

/// A dotted key as written (`a . b`, `'weight'`) in the form serde names keys (`a.b`,
/// `weight`), or "" if the text is not a key.
fn dotted(written: &str) -> String {
    let parts: Option<Vec<&str>> = written.split('.').map(|p| unquote(p.trim())).collect();
    parts.map(|p| p.join(".")).unwrap_or_default()
}

/// A bare key, or a quoted one without its quotes; `None` if it is neither.
fn unquote(part: &str) -> Option<&str> {
    let bare = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare(part) {
        return Some(part);
    }
    ['"', '\'']
        .iter()
        .find_map(|&q| part.strip_prefix(q).and_then(|p| p.strip_suffix(q)))
        .filter(|inner| !inner.contains(['"', '\'', '\\']))
}

/// The bare key at the start of `text` (`http` of `http = "y" }`), or "".
fn bare_key(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(text.len());
    &text[..end]
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}
