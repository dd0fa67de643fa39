//! OFREP (OpenFeature Remote Evaluation Protocol) request and response bodies, the mapping from
//! error codes to HTTP status codes, and the bulk `ETag` (reference §1; open-feature/protocol
//! `service/openapi.yaml`, `info.version 0.3.0`). Types only: the HTTP server lives elsewhere.
//!
//! Decisions where the contract leaves room (documented in docs/FLAGS.md):
//! - A body that is not a JSON object, lacks `context`, or whose `context` is not an object, or has a
//!   non-string `targetingKey`, is `400 INVALID_CONTEXT`. A missing `targetingKey` is accepted (flagd
//!   does the same; static flags need none) unless [`RequestPolicy::require_targeting_key`] is set,
//!   which answers `400 TARGETING_KEY_MISSING`.
//! - `metadata` is always sent on success (flag-set metadata merged with the flag's), as flagd does.
//! - `DISABLED` and `DEFAULT`-without-default-variant responses carry no `value` (`codeDefaultFlag`).

use crate::evaluate::{ErrorCode, Reason, Resolution};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Deepest nesting accepted in an evaluation context.
pub const MAX_CONTEXT_DEPTH: usize = 32;

/// `evaluationRequest` and `bulkEvaluationRequest` (both `{ "context": {...} }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    pub context: Map<String, Value>,
}

/// How strict request validation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestPolicy {
    /// Answer `TARGETING_KEY_MISSING` when the context has no `targetingKey` (the OpenAPI schema
    /// marks it required; flagd does not enforce it).
    pub require_targeting_key: bool,
}

/// A request that cannot be evaluated, ready to become a 400 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub error_code: ErrorCode,
    pub error_details: String,
}

impl EvaluationRequest {
    /// Parses and checks a request body. The evaluation context is returned as a JSON object value
    /// ready for [`crate::CompiledFlagSet::evaluate`].
    pub fn parse(body: &[u8], policy: RequestPolicy) -> Result<Value, RequestError> {
        let invalid = |details: String| RequestError { error_code: ErrorCode::InvalidContext, error_details: details };
        let value: Value = serde_json::from_slice(body).map_err(|problem| invalid(format!("the body is not valid JSON: {problem}")))?;
        let Value::Object(mut root) = value else {
            return Err(invalid("the body must be a JSON object like {\"context\": {\"targetingKey\": \"user-1\"}}".to_owned()));
        };
        let context = match root.remove("context") {
            Some(context @ Value::Object(_)) => context,
            Some(_) => return Err(invalid("\"context\" must be a JSON object".to_owned())),
            None => return Err(invalid("the body is missing \"context\"; send {\"context\": {\"targetingKey\": \"user-1\"}}".to_owned())),
        };
        if depth(&context) > MAX_CONTEXT_DEPTH {
            return Err(invalid(format!("the context is nested deeper than {MAX_CONTEXT_DEPTH} levels")));
        }
        match context.get("targetingKey") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid("\"targetingKey\" must be a string".to_owned())),
            None if policy.require_targeting_key => {
                return Err(RequestError {
                    error_code: ErrorCode::TargetingKeyMissing,
                    error_details: "Context is missing required targetingKey property".to_owned(),
                })
            }
            None => {}
        }
        Ok(context)
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `evaluationSuccess` / `serverEvaluationSuccess`. `value` absent = `codeDefaultFlag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationSuccess {
    pub key: String,
    /// Any OpenFeature reason string (the OpenAPI enum omits DEFAULT and ERROR; flagd sends DEFAULT).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `evaluationFailure` and `flagNotFound` (the latter with `errorCode` `FLAG_NOT_FOUND`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationFailure {
    pub key: String,
    pub error_code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// One entry of a bulk response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BulkItem {
    Failure(EvaluationFailure),
    Success(EvaluationSuccess),
}

/// `bulkEvaluationSuccess`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationSuccess {
    pub flags: Vec<BulkItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_streams: Option<Vec<EventStream>>,
}

/// `bulkEvaluationFailure` (`errorCode` is a free string in the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationFailure {
    pub error_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
}

/// `generalErrorResponse` (500).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneralErrorResponse {
    pub error_details: String,
}

/// `eventStream` (ADR-0008): exactly one of `url` and `endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStream {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EventStreamEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_delay_sec: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStreamEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Starts with `/`.
    pub request_uri: String,
}

/// The JSON carried in an SSE event's `data` (`type` is always `refetchEvaluation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefetchEvaluationEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
}

impl RefetchEvaluationEvent {
    pub fn new(etag: Option<String>, last_modified: Option<i64>) -> Self {
        Self { kind: "refetchEvaluation".to_owned(), etag, last_modified }
    }
}

/// HTTP status for a single-flag evaluation error (reference §1.4, §1.6): `FLAG_NOT_FOUND` is 404,
/// every other code is 400. `TYPE_MISMATCH` never arises on the server (OFREP carries no type,
/// ADR-0003); it maps to 400 for completeness.
pub fn status_for(error_code: ErrorCode) -> u16 {
    match error_code {
        ErrorCode::FlagNotFound => 404,
        ErrorCode::ParseError
        | ErrorCode::TypeMismatch
        | ErrorCode::TargetingKeyMissing
        | ErrorCode::InvalidContext
        | ErrorCode::General => 400,
    }
}

/// A single-flag response: the status and the body (`evaluationSuccess`, `evaluationFailure` or `flagNotFound`).
#[derive(Debug, Clone, PartialEq)]
pub enum SingleResponse {
    Success(EvaluationSuccess),
    Failure { status: u16, body: EvaluationFailure },
}

impl SingleResponse {
    pub fn status(&self) -> u16 {
        match self {
            Self::Success(_) => 200,
            Self::Failure { status, .. } => *status,
        }
    }

    pub fn to_json(&self) -> Value {
        let serialized = match self {
            Self::Success(body) => serde_json::to_value(body),
            Self::Failure { body, .. } => serde_json::to_value(body),
        };
        serialized.unwrap_or(Value::Null)
    }
}

/// The OFREP item for one resolution. Evaluation errors become `evaluationFailure` items.
pub fn bulk_item(key: &str, resolution: &Resolution<'_>) -> BulkItem {
    let metadata = Some(metadata_with_prerequisite(resolution));
    match (resolution.reason, resolution.error_code) {
        (Reason::Error, code) | (_, code @ Some(_)) => BulkItem::Failure(EvaluationFailure {
            key: key.to_owned(),
            error_code: code.unwrap_or(ErrorCode::General),
            error_details: resolution.error_message.clone(),
            metadata,
        }),
        (reason, None) => BulkItem::Success(EvaluationSuccess {
            key: key.to_owned(),
            reason: reason.as_str().to_owned(),
            variant: resolution.variant.map(str::to_owned),
            value: resolution.value.cloned(),
            metadata,
        }),
    }
}

/// [`bulk_item`] without copying anything: borrows the key and the resolution and serializes to
/// exactly the JSON of `bulk_item(key, resolution)`. Serializing it allocates nothing (beyond the
/// output buffer) unless the resolution names an unsatisfied prerequisite, whose metadata entry is
/// then merged into a new map as [`bulk_item`] does. For bulk responses written item by item, where
/// [`bulk_item`] copies the key, reason, variant, value and the whole metadata map of every flag.
#[derive(Debug, Clone, Copy)]
pub struct BulkItemRef<'r, 's> {
    key: &'r str,
    resolution: &'r Resolution<'s>,
}

/// The borrowed OFREP item for one resolution (see [`BulkItemRef`]).
pub fn bulk_item_ref<'r, 's>(key: &'r str, resolution: &'r Resolution<'s>) -> BulkItemRef<'r, 's> {
    BulkItemRef { key, resolution }
}

impl Serialize for BulkItemRef<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let resolution = self.resolution;
        let merged;
        let metadata = match resolution.unsatisfied_prerequisite {
            None => resolution.flag_metadata,
            Some(_) => {
                merged = metadata_with_prerequisite(resolution);
                &merged
            }
        };
        // Field order and omissions as the derived serializers of EvaluationFailure / EvaluationSuccess.
        match (resolution.reason, resolution.error_code) {
            (Reason::Error, code) | (_, code @ Some(_)) => {
                let mut item = serializer.serialize_struct("EvaluationFailure", 4)?;
                item.serialize_field("key", self.key)?;
                item.serialize_field("errorCode", &code.unwrap_or(ErrorCode::General))?;
                if let Some(details) = &resolution.error_message {
                    item.serialize_field("errorDetails", details)?;
                }
                item.serialize_field("metadata", metadata)?;
                item.end()
            }
            (reason, None) => {
                let mut item = serializer.serialize_struct("EvaluationSuccess", 5)?;
                item.serialize_field("key", self.key)?;
                item.serialize_field("reason", reason.as_str())?;
                if let Some(variant) = resolution.variant {
                    item.serialize_field("variant", variant)?;
                }
                if let Some(value) = resolution.value {
                    item.serialize_field("value", value)?;
                }
                item.serialize_field("metadata", metadata)?;
                item.end()
            }
        }
    }
}

/// The HTTP status of the single-flag response for one resolution: 200 for a success item, else
/// [`status_for`] its error code (always `single_response(key, resolution).status()`). With
/// [`bulk_item_ref`] as the body it answers a single evaluation without copying the resolution.
pub fn single_status(resolution: &Resolution<'_>) -> u16 {
    match (resolution.reason, resolution.error_code) {
        (Reason::Error, code) | (_, code @ Some(_)) => status_for(code.unwrap_or(ErrorCode::General)),
        (_, None) => 200,
    }
}

/// The single-flag response for one resolution, with its HTTP status.
pub fn single_response(key: &str, resolution: &Resolution<'_>) -> SingleResponse {
    match bulk_item(key, resolution) {
        BulkItem::Success(body) => SingleResponse::Success(body),
        BulkItem::Failure(body) => SingleResponse::Failure { status: status_for(body.error_code), body },
    }
}

fn metadata_with_prerequisite(resolution: &Resolution<'_>) -> Map<String, Value> {
    let mut metadata = resolution.flag_metadata.clone();
    if let Some(prerequisite) = resolution.unsatisfied_prerequisite {
        // Same key as go-feature-flag's dependency feature (reference §7.2), flat as OFREP metadata must be.
        metadata.insert("unsatisfiedPrerequisite".to_owned(), Value::String(prerequisite.to_owned()));
    }
    metadata
}

/// A strong ETag for a bulk response: SHA-256 over the flag-set version and the canonical form of
/// the context (object keys sorted at every level, numbers as written, no whitespace), so two
/// contexts that differ only in key order share an ETag, and any flag change (new version) or
/// context change gives a new one (reference §1.5 implementation note).
pub fn bulk_etag(flag_set_version: &str, context: &Value) -> String {
    let mut hasher = HashWriter(Sha256::new());
    hasher.0.update(b"ofrep-bulk\0");
    hasher.0.update((flag_set_version.len() as u64).to_be_bytes());
    hasher.0.update(flag_set_version.as_bytes());
    // The canonical form (exactly what `write_canonical` writes) is hashed as it is produced,
    // without building it: a per-request cost of the bulk endpoint.
    hash_canonical(context, &mut hasher);
    let digest = hasher.0.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for byte in &digest[..16] {
        etag.push(char::from(HEX[usize::from(byte >> 4)]));
        etag.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    etag.push('"');
    etag
}

/// Feeds serde_json's output into the hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`write_canonical`] into a hash: the same bytes, no allocation unless an object's keys are not
/// already in order (they are with serde_json's default `BTreeMap`).
fn hash_canonical(value: &Value, out: &mut HashWriter) {
    // Writing a string or scalar into a hash cannot fail (Value keys are strings, floats finite).
    match value {
        Value::Object(map) => {
            out.0.update(b"{");
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a <= b);
            let mut entry = |index: usize, key: &String, entry: &Value| {
                if index > 0 {
                    out.0.update(b",");
                }
                let _ = serde_json::to_writer(&mut *out, key);
                out.0.update(b":");
                hash_canonical(entry, out);
            };
            if sorted {
                for (index, (key, value)) in map.iter().enumerate() {
                    entry(index, key, value);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (index, (key, value)) in entries.into_iter().enumerate() {
                    entry(index, key, value);
                }
            }
            out.0.update(b"}");
        }
        Value::Array(items) => {
            out.0.update(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.0.update(b",");
                }
                hash_canonical(item, out);
            }
            out.0.update(b"]");
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// Canonical JSON: sorted keys regardless of how the map type orders them.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, entry)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(entry, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Does an `If-None-Match` header value match `etag`? Accepts `*`, lists and weak validators
/// (RFC 9110 §13.1.2 uses the weak comparison for `If-None-Match`).
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let wanted = bare(etag);
    header.split(',').any(|candidate| candidate.trim() == "*" || bare(candidate) == wanted)
}
