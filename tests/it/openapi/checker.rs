//! The checker: `api/openapi.json` loaded into a JSON Schema registry, each answer checked for
//! its status, content type and body (an event stream event by event), each request body for
//! what the document accepts; and the test that it refuses what the document does not describe.

use std::convert::Infallible;

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt};
use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

use crate::util::*;

/// The document's URI in the validator's registry: its `#/…` references resolve against it.
const DOC_URI: &str = "urn:cutover:openapi";

/// `api/openapi.json`, ready to check requests and answers against.
pub(super) struct Doc {
    pub(super) doc: Value,
    registry: Registry<'static>,
}

/// One answer of the daemon, as it came over the wire.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) content_type: String,
    /// The body as it arrived, chunk by chunk (an event stream is parsed from these).
    pub(super) chunks: Vec<Vec<u8>>,
}

impl Answer {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.chunks.concat()).into_owned()
    }
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.text()).unwrap_or(Value::Null)
    }
}

/// At most 300 characters of `text`, for messages.
pub(super) fn short(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `/` and `~` escaped for a JSON pointer segment.
fn esc(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: characters a fragment cannot hold (`{id}`) percent-encoded.
fn fragment(pointer: &str) -> String {
    pointer
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Doc {
    pub(super) fn load() -> Doc {
        let path = root().join("api/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap();
        Doc::parse(serde_json::from_str(&text).expect("api/openapi.json is JSON"))
    }

    fn parse(doc: Value) -> Doc {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.") && !v.starts_with("3.0.")),
            "the schemas are JSON Schema 2020-12, which needs OpenAPI 3.1 or later"
        );
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(DOC_URI, doc.clone())
            .and_then(|r| r.prepare())
            .expect("api/openapi.json registers as a JSON Schema resource");
        Doc { doc, registry }
    }

    /// A validator for the schema at `pointer` in the document.
    fn validator(&self, pointer: &str) -> Validator {
        assert!(
            self.doc.pointer(pointer).is_some(),
            "api/openapi.json has no schema at {pointer}"
        );
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .build(&json!({ "$ref": format!("{DOC_URI}#{}", fragment(pointer)) }))
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
    }

    /// What is wrong with `instance` by the schema at `pointer`: nothing, or one line per error.
    fn validate(&self, pointer: &str, instance: &Value) -> Result<(), String> {
        let validator = self.validator(pointer);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n  "))
        }
    }

    /// `pointer`, or where it leads when it holds a local `$ref` (a response or a schema).
    fn follow(&self, pointer: String) -> String {
        match self
            .doc
            .pointer(&pointer)
            .and_then(|v| v.get("$ref"))
            .and_then(Value::as_str)
        {
            Some(r) => self.follow(r.strip_prefix('#').expect("a local $ref").to_string()),
            None => pointer,
        }
    }

    fn operation(&self, method: &str, route: &str) -> String {
        let pointer = format!("/paths/{}/{}", esc(route), method.to_ascii_lowercase());
        assert!(
            self.doc.pointer(&pointer).is_some(),
            "{method} {route} is not in api/openapi.json"
        );
        pointer
    }

    /// Checks one answer of `method route` against the document; returns the records of an
    /// event stream (none for other answers).
    pub(super) fn check_answer(&self, method: &str, route: &str, a: &Answer) -> Result<Vec<Value>, String> {
        let response = format!("{}/responses/{}", self.operation(method, route), a.status);
        if self.doc.pointer(&response).is_none() {
            return Err(format!(
                "status {} is not listed for {method} {route} (body {})",
                a.status,
                a.text()
            ));
        }
        let response = self.follow(response);
        let essence = a
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let media = format!("{response}/content/{}", esc(&essence));
        if self.doc.pointer(&media).is_none() {
            let declared: Vec<&String> = self
                .doc
                .pointer(&format!("{response}/content"))
                .and_then(Value::as_object)
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "{method} {route} {}: content type {:?} is not one of {declared:?}",
                a.status, a.content_type
            ));
        }
        let context = |e: String| format!("{method} {route} {}: {e}\n  body: {}", a.status, short(&a.text()));
        match essence.as_str() {
            "application/json" => {
                let body: Value = serde_json::from_str(&a.text()).map_err(|e| context(format!("not JSON: {e}")))?;
                self.validate(&format!("{media}/schema"), &body).map_err(context)?;
                Ok(vec![])
            }
            "text/event-stream" => self.check_event_stream(&media, &a.chunks).map_err(context),
            _ => {
                self.validate(&format!("{media}/schema"), &Value::String(a.text()))
                    .map_err(context)?;
                Ok(vec![])
            }
        }
    }

    /// Parses an event stream as SSE and checks every event and every record in it.
    fn check_event_stream(&self, media: &str, chunks: &[Vec<u8>]) -> Result<Vec<Value>, String> {
        let item = format!("{media}/itemSchema");
        if self.doc.pointer(&item).is_none() {
            return Err(format!("no itemSchema at {media}"));
        }
        let item = self.follow(item);
        let data = format!("{item}/properties/data/contentSchema");
        let events = futures_util::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>))
            .eventsource()
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("a stream over a vector is ready at once");
        let mut records = vec![];
        for (n, event) in events.into_iter().enumerate() {
            let event = event.map_err(|e| format!("event {}: not SSE: {e}", n + 1))?;
            let mut fields = json!({ "event": event.event, "id": event.id, "data": event.data });
            if let Some(retry) = event.retry {
                fields["retry"] = json!(retry.as_millis() as u64);
            }
            self.validate(&item, &fields)
                .map_err(|e| format!("event {}: {e}\n  event: {fields}", n + 1))?;
            // The document says ids count the records from 1.
            if event.id != (n + 1).to_string() {
                return Err(format!("event {} has id {:?}", n + 1, event.id));
            }
            let record: Value =
                serde_json::from_str(&event.data).map_err(|e| format!("event {}: data is not JSON: {e}", n + 1))?;
            self.validate(&data, &record)
                .map_err(|e| format!("record {}: {e}\n  record: {record}", n + 1))?;
            records.push(record);
        }
        Ok(records)
    }

    /// Whether the document accepts `body` as the request body of `method route`.
    pub(super) fn accepts_request(&self, method: &str, route: &str, body: &Value) -> Result<(), String> {
        let op = self.operation(method, route);
        self.validate(&format!("{op}/requestBody/content/application~1json/schema"), body)
    }
}

/// The checker is not vacuous: answers the document does not describe are refused, each for the
/// reason the document gives.
#[test]
fn the_checker_refuses_answers_the_document_does_not_describe() {
    let doc = Doc::load();
    let json_answer = |status: u16, body: Value| Answer {
        status,
        content_type: "application/json".into(),
        chunks: vec![body.to_string().into_bytes()],
    };
    let get = |a: &Answer| doc.check_answer("GET", "/v1/cutovers/{id}", a);
    let state = json!({
        "id": "20261122T024630Z-276f", "service": "web", "outcome": null, "reason": null,
        "live_color": "blue", "new_color": "green", "final_weights": {"blue": 100.0, "green": 0.0},
        "steps": [], "started_at": "2026-11-22T02:46:30.453Z", "finished_at": null,
        "step": null, "weights": {"blue": 100.0, "green": 0.0}, "last_verdict": null,
        "paused": null, "phase": "running"
    });
    get(&json_answer(200, state.clone())).expect("a state as the daemon sends it");
    let mut missing = state.clone();
    missing.as_object_mut().unwrap().remove("phase");
    assert!(get(&json_answer(200, missing)).unwrap_err().contains("phase"));
    let mut extra = state.clone();
    extra["colour"] = json!("red");
    assert!(get(&json_answer(200, extra)).unwrap_err().contains("colour"));
    let mut wrong = state.clone();
    wrong["phase"] = json!("baking");
    assert!(get(&json_answer(200, wrong)).is_err());
    let mut bad_date = state;
    bad_date["started_at"] = json!("yesterday");
    assert!(get(&json_answer(200, bad_date)).is_err(), "formats are checked");
    assert!(
        get(&json_answer(409, json!({"error": "x"})))
            .unwrap_err()
            .contains("not listed")
    );
    assert!(get(&json_answer(404, json!({"message": "x"}))).is_err());
    let text = Answer {
        status: 404,
        content_type: "text/plain".into(),
        chunks: vec![b"no".to_vec()],
    };
    assert!(get(&text).unwrap_err().contains("content type"));

    let stream = |text: &str| Answer {
        status: 200,
        content_type: "text/event-stream".into(),
        chunks: text.as_bytes().chunks(7).map(<[u8]>::to_vec).collect(),
    };
    let events = |a: &Answer| doc.check_answer("GET", "/v1/cutovers/{id}/events", a);
    let record = r#"{"at":"2026-11-22T02:46:30.453Z","event":"step_started","step":0}"#;
    let ok = format!(":\n\nevent: record\nid: 1\ndata: {record}\n\n");
    assert_eq!(events(&stream(&ok)).unwrap().len(), 1);
    for (bad, why) in [
        (format!("id: 1\ndata: {record}\n\n"), "no event type"),
        (format!("event: record\nid: 2\ndata: {record}\n\n"), "ids count from 1"),
        (format!("event: record\ndata: {record}\n\n"), "no id"),
        (
            "event: record\nid: 1\ndata: {\"at\":\"x\",\"event\":\"step_started\",\"step\":0}\n\n".into(),
            "at",
        ),
        (
            format!(
                "event: record\nid: 1\ndata: {}\n\n",
                record.replace("step_started", "step_begun")
            ),
            "unknown event",
        ),
        (
            format!(
                "event: record\nid: 1\ndata: {}\n\n",
                record.replace("\"step\":0", "\"step\":0,\"x\":1")
            ),
            "unknown field",
        ),
        (
            format!("event: record\nid: 1\ndata: {}\n\n", record.replace(",\"step\":0", "")),
            "missing field",
        ),
    ] {
        assert!(events(&stream(&bad)).is_err(), "{why}: {bad}");
    }
}
