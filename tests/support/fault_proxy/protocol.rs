//! Recognising a request's protocol and operation: `X-Amz-Target` (awsJson, DynamoDB), or
//! `Action=` in a form body or the query string (awsQuery: ELBv2, CloudWatch).

use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName};
use hyper::http::request::Parts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Protocol {
    /// awsQuery (ELBv2, CloudWatch ≤ 1.99, …), with the request's `Version`.
    Query { version: Option<String> },
    /// awsJson 1.0/1.1: `X-Amz-Target: <prefix>.<Operation>`.
    Json { prefix: String, content_type: String },
    /// Anything else; its faults are answered in the Query shape.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Call {
    pub(super) protocol: Protocol,
    pub(super) operation: Option<String>,
}

pub(super) fn recognise(parts: &Parts, body: &[u8]) -> Call {
    let header = |name: HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(target) = header(HeaderName::from_static("x-amz-target")) {
        let (prefix, operation) = target.rsplit_once('.').unwrap_or(("", target));
        let content_type = header(CONTENT_TYPE)
            .filter(|ct| ct.starts_with("application/x-amz-json-"))
            .unwrap_or("application/x-amz-json-1.0");
        return Call {
            protocol: Protocol::Json {
                prefix: prefix.to_string(),
                content_type: content_type.to_string(),
            },
            operation: (!operation.is_empty()).then(|| operation.to_string()),
        };
    }
    let form = header(CONTENT_TYPE).is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        && header(CONTENT_ENCODING).is_none_or(|ce| ce.eq_ignore_ascii_case("identity"));
    let sources = [form.then_some(body), parts.uri.query().map(str::as_bytes)];
    for source in sources.into_iter().flatten() {
        let (mut action, mut version) = (None, None);
        for pair in source.split(|&b| b == b'&') {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            match k {
                b"Action" => action = Some(form_decode(v)),
                b"Version" => version = Some(form_decode(v)),
                _ => {}
            }
        }
        if let Some(action) = action.filter(|a| !a.is_empty()) {
            return Call {
                protocol: Protocol::Query { version },
                operation: Some(action),
            };
        }
    }
    Call {
        protocol: Protocol::Other,
        operation: None,
    }
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space, `%XX` a byte).
fn form_decode(v: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < v.len() => match (hex(v[i + 1]), hex(v[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
