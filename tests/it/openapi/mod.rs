//! The API document and the API agree (issue 8, item 10).
//!
//! `cutover serve` runs on moto and is driven through every route of `api/openapi.json`: a
//! cutover from start to promotion with its live event stream, the operator actions, rollbacks,
//! and each error the routes list. Every answer is checked against the document:
//!
//! 1. its status is one the document lists for that route;
//! 2. its content type is one that response declares;
//! 3. its body validates against the schema declared there (JSON Schema 2020-12, by the
//!    `jsonschema` crate, with the whole document registered as one resource so that its `$ref`s
//!    resolve); an event stream is parsed as SSE (`eventsource-stream`), each event checked
//!    against the response's `itemSchema` and each record against its `contentSchema`.
//!
//! Every request body sent is checked too: the document must refuse exactly the bodies that the
//! daemon answers with 400. The checker itself is tested on answers the document does not
//! describe, so that a checker which accepts everything cannot pass for agreement.
//!
//! Its files: `checker` (the document loaded, and answers and request bodies checked against it;
//! the checker's own test), `client` (a running daemon whose every answer is checked) and `live`
//! (the daemon driven through every route).

mod checker;
mod client;
mod live;

const TOKEN: &str = "test-token-openapi-0123456789abcdef";
