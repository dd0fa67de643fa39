//! OFREP bodies and status codes (reference §1.2–§1.4), checked against the OpenAPI shapes.

use crate::support::{compile, NOW};
use serde_json::{json, Value};
use signalbox_flags::ofrep::{
    bulk_etag, bulk_item, if_none_match_matches, single_response, status_for, BulkEvaluationFailure, BulkEvaluationSuccess, BulkItem,
    EvaluationRequest, EventStream, RefetchEvaluationEvent, RequestPolicy,
};
use signalbox_flags::ErrorCode;

fn flags() -> signalbox_flags::CompiledFlagSet {
    compile(json!({
        "metadata": {"flagSetId": "web", "version": "1"},
        "flags": {
            "discount-banner": {"state": "ENABLED", "variants": {"enabled": true, "disabled": false}, "defaultVariant": "disabled",
                "targeting": {"if": [{"==": [{"var": "plan"}, "premium"]}, "enabled", null]}, "metadata": {"owner": "growth"}},
            "killed": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
            "code-default": {"state": "ENABLED", "variants": {"a": "A"}},
            "broken": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a", "targeting": {"if": [true, "zzz"]}}
        }
    }))
}

/// Checks a single-flag body against `evaluationSuccess` / `evaluationFailure` / `flagNotFound`.
fn assert_schema(body: &Value) {
    let object = body.as_object().expect("an object");
    assert!(object.get("key").is_some_and(Value::is_string), "key is required: {body}");
    if let Some(code) = object.get("errorCode") {
        let allowed = ["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL", "FLAG_NOT_FOUND"];
        assert!(allowed.contains(&code.as_str().unwrap_or("")), "{body}");
        assert!(object.keys().all(|key| ["key", "errorCode", "errorDetails", "metadata"].contains(&key.as_str())), "{body}");
    } else {
        assert!(object.get("reason").is_some_and(Value::is_string), "reason is required: {body}");
        assert!(object.keys().all(|key| ["key", "reason", "variant", "value", "metadata"].contains(&key.as_str())), "{body}");
    }
    if let Some(metadata) = object.get("metadata") {
        let flat = metadata.as_object().expect("metadata is an object").values().all(|v| v.is_string() || v.is_number() || v.is_boolean());
        assert!(flat, "metadata is flat: {body}");
    }
}

#[test]
fn single_responses_and_statuses() {
    let flags = flags();
    let premium = json!({"targetingKey": "user-123", "plan": "premium"});
    let cases = [
        (
            "discount-banner",
            premium.clone(),
            200,
            json!({"key": "discount-banner", "value": true, "reason": "TARGETING_MATCH", "variant": "enabled", "metadata": {"flagSetId": "web", "version": "1", "owner": "growth"}}),
        ),
        ("killed", premium.clone(), 200, json!({"key": "killed", "reason": "DISABLED", "metadata": {"flagSetId": "web", "version": "1"}})),
        (
            "code-default",
            premium.clone(),
            200,
            json!({"key": "code-default", "reason": "DEFAULT", "metadata": {"flagSetId": "web", "version": "1"}}),
        ),
        (
            "nope",
            premium.clone(),
            404,
            json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag \"nope\" not found", "metadata": {"flagSetId": "web", "version": "1"}}),
        ),
    ];
    for (key, context, status, expected) in cases {
        let response = single_response(key, &flags.evaluate(key, &context, NOW));
        assert_eq!(response.status(), status, "{key}");
        assert_eq!(response.to_json(), expected, "{key}");
        assert_schema(&response.to_json());
    }
    let broken = single_response("broken", &flags.evaluate("broken", &premium, NOW));
    assert_eq!(broken.status(), 400);
    assert_eq!(broken.to_json()["errorCode"], json!("GENERAL"));
    assert_schema(&broken.to_json());
}

#[test]
fn error_code_statuses() {
    assert_eq!(status_for(ErrorCode::FlagNotFound), 404);
    for code in
        [ErrorCode::ParseError, ErrorCode::TargetingKeyMissing, ErrorCode::InvalidContext, ErrorCode::General, ErrorCode::TypeMismatch]
    {
        assert_eq!(status_for(code), 400, "{code:?}");
    }
}

#[test]
fn bulk_body_mixes_success_and_failure() {
    let flags = flags();
    let context = json!({"targetingKey": "u"});
    let items: Vec<BulkItem> = flags.keys().iter().map(|key| bulk_item(key, &flags.evaluate(key, &context, NOW))).collect();
    let body = BulkEvaluationSuccess {
        flags: items,
        metadata: Some(flags.metadata().clone()),
        event_streams: Some(vec![EventStream {
            kind: "sse".to_owned(),
            url: Some("https://x/sse".to_owned()),
            endpoint: None,
            inactivity_delay_sec: Some(120),
        }]),
    };
    let json = serde_json::to_value(&body).expect("serializes");
    let flags_json = json["flags"].as_array().expect("flags array");
    assert_eq!(flags_json.len(), 4);
    for item in flags_json {
        assert_schema(item);
    }
    assert_eq!(json["eventStreams"][0], json!({"type": "sse", "url": "https://x/sse", "inactivityDelaySec": 120}));
    let back: BulkEvaluationSuccess = serde_json::from_value(json).expect("parses back");
    assert_eq!(back, body);
    let failure =
        serde_json::to_value(BulkEvaluationFailure { error_code: "INVALID_CONTEXT".to_owned(), error_details: None }).expect("serializes");
    assert_eq!(failure, json!({"errorCode": "INVALID_CONTEXT"}));
    let event = serde_json::to_value(RefetchEvaluationEvent::new(Some("\"e1\"".to_owned()), Some(1_700_000_000))).expect("serializes");
    assert_eq!(event, json!({"type": "refetchEvaluation", "etag": "\"e1\"", "lastModified": 1_700_000_000}));
}

#[test]
fn request_validation() {
    let strict = RequestPolicy { require_targeting_key: true };
    let lenient = RequestPolicy::default();
    let ok = EvaluationRequest::parse(br#"{"context": {"targetingKey": "u", "plan": "pro"}}"#, strict).expect("valid");
    assert_eq!(ok, json!({"targetingKey": "u", "plan": "pro"}));
    assert!(EvaluationRequest::parse(br#"{"context": {}}"#, lenient).is_ok(), "flagd-compatible: targetingKey optional");
    let cases: [(&[u8], RequestPolicy, ErrorCode); 7] = [
        (b"{\"context\": {}}", strict, ErrorCode::TargetingKeyMissing),
        (b"{\"context\": {\"targetingKey\": 5}}", lenient, ErrorCode::InvalidContext),
        (b"{\"context\": []}", lenient, ErrorCode::InvalidContext),
        (b"{}", lenient, ErrorCode::InvalidContext),
        (b"[]", lenient, ErrorCode::InvalidContext),
        (b"{\"context\": ", lenient, ErrorCode::InvalidContext),
        (b"\xff\xfe", lenient, ErrorCode::InvalidContext),
    ];
    for (body, policy, code) in cases {
        let error = EvaluationRequest::parse(body, policy).expect_err("invalid");
        assert_eq!(error.error_code, code, "{}", String::from_utf8_lossy(body));
        assert!(!error.error_details.is_empty());
    }
    let deep = format!("{{\"context\": {{\"a\": {}1{}}}}}", "[".repeat(40), "]".repeat(40));
    assert_eq!(EvaluationRequest::parse(deep.as_bytes(), lenient).expect_err("too deep").error_code, ErrorCode::InvalidContext);
}

#[test]
fn bulk_etag_depends_on_version_and_canonical_context() {
    let a = json!({"targetingKey": "u", "plan": "pro", "nested": {"x": 1, "y": [1, 2]}});
    let reordered: Value = serde_json::from_str(r#"{"nested": {"y": [1, 2], "x": 1}, "plan": "pro", "targetingKey": "u"}"#).expect("json");
    let etag = bulk_etag("v1", &a);
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
    assert_eq!(etag, bulk_etag("v1", &reordered));
    assert_ne!(etag, bulk_etag("v2", &a));
    assert_ne!(etag, bulk_etag("v1", &json!({"targetingKey": "u2", "plan": "pro", "nested": {"x": 1, "y": [1, 2]}})));
    assert_ne!(bulk_etag("v1", &json!({"a": "1"})), bulk_etag("v1", &json!({"a": 1})));
    assert!(if_none_match_matches(&etag, &etag));
    assert!(if_none_match_matches(&format!("W/{etag}, \"other\""), &etag));
    assert!(if_none_match_matches("*", &etag));
    assert!(!if_none_match_matches("\"other\"", &etag));
}
