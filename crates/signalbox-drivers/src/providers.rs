//! Metric providers: where rollout analysis gets its numbers.
//!
//! Each provider returns a [`ProviderReading`] and never an `Err`: for analysis, "Prometheus is
//! down" and "the query matched nothing" are *readings* with their own rules (the no-data and
//! error policies in `signalbox-rollout`), not failures of the caller. The application maps the
//! reading to the analysis crate's `Reading`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::webhook::error_chain;
use crate::{excerpt, head_bytes};

/// Prometheus answers larger than this are refused rather than buffered.
const MAX_PROMETHEUS_BODY: usize = 4 * 1024 * 1024;
/// An HTTP check reads at most this much of the body to look for `body_contains`.
const MAX_CHECK_BODY: usize = 1024 * 1024;

/// What one measurement produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderReading {
    /// One value per series (Prometheus) or the latency in ms (HTTP check). May contain NaN or
    /// infinities when Prometheus returns them.
    Values { values: Vec<f64>, source: String },
    /// The query was valid but matched no series.
    NoData { source: String },
    /// The provider could not be asked or did not answer sensibly.
    Error { message: String },
    /// An HTTP check got an answer that does not satisfy it.
    CheckFailed { message: String, latency_ms: Option<f64> },
}

/// Runs a PromQL instant query: `GET {address}/api/v1/query?query=...`.
///
/// `address` is the Prometheus base URL (`http://prometheus:9090`, a path prefix is kept).
/// A vector gives one value per series; a scalar one value; an empty vector [`ProviderReading::NoData`].
pub async fn prometheus_query(client: &reqwest::Client, address: &str, query: &str, timeout: Duration) -> ProviderReading {
    let endpoint = format!("{}/api/v1/query", address.trim().trim_end_matches('/'));
    let url = match reqwest::Url::parse_with_params(&endpoint, [("query", query)]) {
        Ok(url) => url,
        Err(e) => return error(format!("the Prometheus address {address:?} is not a URL ({e}); use e.g. http://prometheus:9090")),
    };
    let source = format!("prometheus {}: {}", address.trim().trim_end_matches('/'), head_bytes(query, 500));
    let response = match client.get(url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => return error(transport_message("Prometheus", address, timeout, &e)),
    };
    let status = response.status();
    let body = match read_bounded(response, MAX_PROMETHEUS_BODY).await {
        Ok((body, false)) => body,
        Ok((_, true)) => {
            return error(format!(
                "Prometheus at {address} answered more than {MAX_PROMETHEUS_BODY} bytes; aggregate the query (e.g. sum by (...))"
            ))
        }
        Err(e) => return error(transport_message("Prometheus", address, timeout, &e)),
    };
    parse_query_response(status.as_u16(), &body, source)
}

/// Interprets a Prometheus `/api/v1/query` answer (any HTTP status: errors come as JSON too).
pub fn parse_query_response(http_status: u16, body: &[u8], source: String) -> ProviderReading {
    let text = String::from_utf8_lossy(body);
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return error(format!("Prometheus answered HTTP {http_status} with a body that is not JSON: {}", excerpt(&text)));
    };
    match json.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            let kind = json.get("errorType").and_then(Value::as_str).unwrap_or("error");
            let detail = json.get("error").and_then(Value::as_str).unwrap_or("(no detail)");
            return error(format!("Prometheus rejected the query ({kind}, HTTP {http_status}): {detail}"));
        }
        _ => return error(format!("Prometheus answered HTTP {http_status} without a status field: {}", excerpt(&text))),
    }
    let data = json.get("data");
    let result_type = data.and_then(|d| d.get("resultType")).and_then(Value::as_str);
    let result = data.and_then(|d| d.get("result"));
    match (result_type, result) {
        (Some("vector"), Some(Value::Array(samples))) => {
            if samples.is_empty() {
                return ProviderReading::NoData { source };
            }
            let mut values = Vec::with_capacity(samples.len());
            for sample in samples {
                match sample.get("value").and_then(sample_value) {
                    Some(value) => values.push(value),
                    None => return error(format!("a vector sample has no readable value: {}", excerpt(&sample.to_string()))),
                }
            }
            ProviderReading::Values { values, source }
        }
        (Some("scalar"), Some(pair)) => match sample_value(pair) {
            Some(value) => ProviderReading::Values { values: vec![value], source },
            None => error(format!("the scalar result has no readable value: {}", excerpt(&pair.to_string()))),
        },
        (Some("matrix"), _) => {
            error("the query returns a range vector; wrap it in a function such as rate(...[5m]) or avg_over_time(...[5m])".to_owned())
        }
        (Some(other), _) => error(format!("the query returns a {other}, not a number; use a query that yields a vector or scalar")),
        (None, _) => error(format!("Prometheus answered without data.resultType: {}", excerpt(&text))),
    }
}

/// `[<unix time>, "<value>"]` -> the value. Prometheus writes special values as `NaN`, `+Inf`, `-Inf`.
fn sample_value(pair: &Value) -> Option<f64> {
    let text = pair.as_array()?.get(1)?.as_str()?.trim();
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok(),
    }
}

/// An HTTP smoke check: `method url`, expecting `expect_status`, optionally a body containing
/// `body_contains`, and (optionally) an answer within `max_latency_ms`.
///
/// Latency is measured until the body has been read. A transport failure is
/// [`ProviderReading::Error`]; an answer that does not satisfy the check is
/// [`ProviderReading::CheckFailed`]; otherwise `Values([latency_ms])`.
pub async fn http_check(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    expect_status: u16,
    body_contains: Option<&str>,
    max_latency_ms: Option<f64>,
    timeout: Duration,
) -> ProviderReading {
    let source = format!("{method} {}", head_bytes(url, 500));
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return error(format!("the check URL {:?} is not a URL ({e})", head_bytes(url, 200))),
    };
    let started = Instant::now();
    let response = match client.request(method, parsed).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => return error(transport_message("the checked service", url, timeout, &e)),
    };
    let status = response.status().as_u16();
    let body = match read_bounded(response, MAX_CHECK_BODY).await {
        Ok((body, _)) => body,
        Err(e) => return error(transport_message("the checked service", url, timeout, &e)),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let failed = |message: String| ProviderReading::CheckFailed { message, latency_ms: Some(latency_ms) };
    if status != expect_status {
        return failed(format!("{source} answered HTTP {status}, expected {expect_status}"));
    }
    if let Some(needle) = body_contains {
        if !String::from_utf8_lossy(&body).contains(needle) {
            return failed(format!(
                "{source}: the body does not contain {:?} (first {MAX_CHECK_BODY} bytes searched)",
                head_bytes(needle, 200)
            ));
        }
    }
    if let Some(bound) = max_latency_ms {
        if latency_ms > bound {
            return failed(format!("{source} took {latency_ms:.0} ms, more than the {bound} ms allowed"));
        }
    }
    ProviderReading::Values { values: vec![latency_ms], source }
}

fn error(message: String) -> ProviderReading {
    ProviderReading::Error { message }
}

fn transport_message(what: &str, address: &str, timeout: Duration, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{what} at {} did not answer within {} ms", head_bytes(address, 200), timeout.as_millis())
    } else {
        format!("{what} at {} could not be reached: {}", head_bytes(address, 200), error_chain(e))
    }
}

/// Reads at most `limit` bytes; `true` when the body was longer.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> ProviderReading {
        parse_query_response(status, body.as_bytes(), "test".to_owned())
    }

    #[test]
    fn vectors_scalars_and_special_values() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1714000000.123,"0.01"]},
            {"metric":{"a":"2"},"value":[1714000000.123,"NaN"]},
            {"metric":{"a":"3"},"value":[1714000000.123,"+Inf"]},
            {"metric":{"a":"4"},"value":[1714000000.123,"-Inf"]}]}}"#;
        let ProviderReading::Values { values, .. } = parse(200, body) else { panic!("{:?}", parse(200, body)) };
        assert_eq!(values.len(), 4);
        assert_eq!(values[0], 0.01);
        assert!(values[1].is_nan());
        assert_eq!((values[2], values[3]), (f64::INFINITY, f64::NEG_INFINITY));

        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1714000000,"2.5"]}}"#;
        assert_eq!(parse(200, scalar), ProviderReading::Values { values: vec![2.5], source: "test".into() });
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(200, empty), ProviderReading::NoData { source: "test".into() });
    }

    #[test]
    fn errors_are_sentences_with_the_prometheus_detail() {
        let cases = [
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected <EOF>"}"#,
                "parse error: unexpected <EOF>",
            ),
            (502, "<html>bad gateway</html>", "not JSON"),
            (200, r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#, "range vector"),
            (200, r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#, "string"),
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"abc"]}]}}"#, "no readable value"),
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"value":5}]}}"#, "no readable value"),
            (200, r#"{"status":"success"}"#, "resultType"),
            (200, r#"[]"#, "without a status"),
        ];
        for (status, body, needle) in cases {
            match parse(status, body) {
                ProviderReading::Error { message } => assert!(message.contains(needle), "{message} lacks {needle}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
