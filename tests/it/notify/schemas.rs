//! What the receiver checks: PagerDuty's Events API v2 and Slack's Block Kit as JSON Schemas,
//! and the webhook's `X-Cutover-Signature` recomputed and compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use jsonschema::{Draft, Validator};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Got;

fn validator(schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .expect("the test's schema compiles")
}

pub(super) fn assert_valid(v: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the schema:\n  {}\n{instance:#}",
        errors.join("\n  ")
    );
}

/// PagerDuty Events API v2, as documented
/// (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>,
/// `/resolve-events/`): the fields, their types and enums, and which are required.
pub(super) fn pagerduty_schema() -> Validator {
    validator(&json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["routing_key", "event_action"],
        "properties": {
            "routing_key": {"type": "string", "minLength": 1},
            "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
            "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
            "payload": {
                "type": "object",
                "additionalProperties": false,
                "required": ["summary", "source", "severity"],
                "properties": {
                    "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "source": {"type": "string", "minLength": 1},
                    "severity": {"enum": ["critical", "error", "warning", "info"]},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "component": {"type": "string"},
                    "group": {"type": "string"},
                    "class": {"type": "string"},
                    "custom_details": {"type": "object"}
                }
            },
            "images": {"type": "array"},
            "links": {
                "type": "array",
                "items": {"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}, "text": {"type": "string"}}}
            },
            "client": {"type": "string"},
            "client_url": {"type": "string"}
        },
        "allOf": [
            {"if": {"properties": {"event_action": {"const": "trigger"}}}, "then": {"required": ["payload"]}},
            {"if": {"properties": {"event_action": {"enum": ["acknowledge", "resolve"]}}}, "then": {"required": ["dedup_key"]}}
        ]
    }))
}

/// Slack's Block Kit (<https://api.slack.com/reference/block-kit/blocks>), for the blocks and
/// text objects these messages use: limits on lengths and counts, and what each block holds.
pub(super) fn slack_schema() -> Validator {
    validator(&json!({
        "$defs": {
            "text": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "text"],
                "properties": {
                    "type": {"enum": ["plain_text", "mrkdwn"]},
                    "text": {"type": "string", "minLength": 1, "maxLength": 3000},
                    "emoji": {"type": "boolean"},
                    "verbatim": {"type": "boolean"}
                }
            },
            "header": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "text"],
                "properties": {
                    "type": {"const": "header"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "text": {
                        "allOf": [{"$ref": "#/$defs/text"}],
                        "properties": {"type": {"const": "plain_text"}, "text": {"maxLength": 150}}
                    }
                }
            },
            "section": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type"],
                "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                "properties": {
                    "type": {"const": "section"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "text": {"$ref": "#/$defs/text"},
                    "fields": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10,
                        "items": {"allOf": [{"$ref": "#/$defs/text"}], "properties": {"text": {"maxLength": 2000}}}
                    }
                }
            },
            "context": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "elements"],
                "properties": {
                    "type": {"const": "context"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"$ref": "#/$defs/text"}}
                }
            }
        },
        "type": "object",
        "additionalProperties": false,
        "required": ["text", "blocks"],
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "blocks": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {"oneOf": [{"$ref": "#/$defs/header"}, {"$ref": "#/$defs/section"}, {"$ref": "#/$defs/context"}]}
            }
        }
    }))
}

/// Checks `X-Cutover-Signature: sha256=HEX` over the exact body bytes, in constant time
/// (`Mac::verify_slice`).
pub(super) fn assert_signed(g: &Got, secret: &[u8]) {
    let sig = g.header("x-cutover-signature");
    let hex_sig = sig
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature {sig:?} is not sha256=HEX"));
    let tag = hex::decode(hex_sig).expect("hex signature");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(&g.body);
    mac.verify_slice(&tag)
        .unwrap_or_else(|_| panic!("bad signature on {}", g.header("x-cutover-event")));
}
