//! The errors the services send, as the proxy makes them up: the Query protocol's
//! `<ErrorResponse>` XML (ELBv2, CloudWatch) and awsJson's `__type` JSON with its CRC-32
//! (DynamoDB), each with the status, request id and [`FAULT_HEADER`] of a real answer.

use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::FAULT_HEADER;
use super::forward::{ProxyBody, full};
use super::protocol::{Call, Protocol};
use super::proxy::Shared;

pub(super) enum ErrorKind {
    Throttle,
    Server(u16),
    Coded(u16, String),
}

/// The XML namespace real Query services put on `<ErrorResponse>`, by API version.
fn query_namespace(version: Option<&str>) -> Option<String> {
    let host = match version? {
        "2015-12-01" | "2012-06-01" => "elasticloadbalancing",
        "2010-08-01" => "monitoring",
        _ => return None,
    };
    Some(format!("http://{host}.amazonaws.com/doc/{}/", version?))
}

/// The shape ID namespace awsJson services put before `#` in `__type`.
fn json_namespace(prefix: &str) -> Option<&'static str> {
    match prefix {
        "DynamoDB_20120810" => Some("com.amazonaws.dynamodb.v20120810"),
        "DynamoDBStreams_20120810" => Some("com.amazonaws.dynamodb.v20120810"),
        _ => None,
    }
}

pub(super) fn error_response(shared: &Shared, call: &Call, kind: ErrorKind) -> Response<ProxyBody> {
    let request_id = shared.request_id();
    let (status, fault) = match &kind {
        ErrorKind::Throttle => (400, "throttle"),
        ErrorKind::Server(status) => (*status, "server-error"),
        ErrorKind::Coded(status, _) => (*status, "error"),
    };
    let (content_type, body, error_type) = match &call.protocol {
        Protocol::Json { prefix, content_type } => {
            let (code, message) = match &kind {
                ErrorKind::Throttle => (
                    "ThrottlingException",
                    "Rate of requests exceeds the allowed throughput.",
                ),
                ErrorKind::Server(503) => ("ServiceUnavailable", "The service is unavailable. Please try again."),
                ErrorKind::Server(_) => ("InternalServerError", "Internal server error"),
                ErrorKind::Coded(_, code) => (code.as_str(), "injected by the fault proxy"),
            };
            let typ = match json_namespace(prefix) {
                Some(ns) => format!("{ns}#{code}"),
                None => code.to_string(),
            };
            let body = format!(r#"{{"__type":"{typ}","message":"{message}"}}"#);
            (content_type.clone(), body, Some(code))
        }
        Protocol::Query { .. } | Protocol::Other => {
            let version = match &call.protocol {
                Protocol::Query { version } => version.as_deref(),
                _ => None,
            };
            let (typ, code, message) = match &kind {
                ErrorKind::Throttle => ("Sender", "Throttling", "Rate exceeded"),
                ErrorKind::Coded(status, code) => (
                    if *status >= 500 { "Receiver" } else { "Sender" },
                    code.as_str(),
                    "injected by the fault proxy",
                ),
                ErrorKind::Server(503) => (
                    "Receiver",
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                ),
                ErrorKind::Server(_) => (
                    "Receiver",
                    "InternalFailure",
                    "The request processing has failed because of an unknown error, exception or failure.",
                ),
            };
            let xmlns = query_namespace(version)
                .map(|ns| format!(" xmlns=\"{ns}\""))
                .unwrap_or_default();
            let body = format!(
                "<ErrorResponse{xmlns}><Error><Type>{typ}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            ("text/xml".to_string(), body, None)
        }
    };
    let crc = crc32(body.as_bytes());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(CONTENT_TYPE, value(&content_type));
    headers.insert(HeaderName::from_static("x-amzn-requestid"), value(&request_id));
    if let Some(code) = error_type {
        headers.insert(HeaderName::from_static("x-amzn-errortype"), value(code));
        headers.insert(HeaderName::from_static("x-amz-crc32"), value(&crc.to_string()));
    }
    headers.insert(HeaderName::from_static(FAULT_HEADER), HeaderValue::from_static(fault));
    resp
}

/// CRC-32 (IEEE), as DynamoDB sends in `x-amz-crc32`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
