//! The HTTP side: one client per command, requests under `/api/v1`, answers checked for their
//! status and decoded, lists followed page by page.

use super::error::{exit, CliError};
use super::output::{emit, note, reindent_json};
use super::{ClientOpts, OutputFormat};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, ETAG, IF_MATCH};
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// A connection to the server's API.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    /// The API root, ending in `/api/v1`.
    base: Url,
    auth: Option<HeaderValue>,
    pub output: OutputFormat,
}

impl Api {
    /// A client for commands that need a token.
    pub fn new(opts: &ClientOpts) -> Result<Api, CliError> {
        let api = Api::anonymous(opts)?;
        let token = opts.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(CliError::missing_token());
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| CliError::input("--token / SIGNALBOX_TOKEN", "contains characters a token cannot have"))?;
        auth.set_sensitive(true);
        Ok(Api { auth: Some(auth), ..api })
    }

    /// A client that sends no token (`login`).
    pub fn anonymous(opts: &ClientOpts) -> Result<Api, CliError> {
        let base = api_base(&opts.url)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("signalbox-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::other(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Api { http, base, auth: None, output: opts.output })
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    pub fn request(&self, method: Method, segments: &[&str]) -> Req<'_> {
        Req {
            api: self,
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            raw_body: None,
            headers: Vec::new(),
        }
    }

    pub fn get(&self, segments: &[&str]) -> Req<'_> {
        self.request(Method::GET, segments)
    }

    pub fn post(&self, segments: &[&str], body: Value) -> Req<'_> {
        self.request(Method::POST, segments).body(body)
    }

    pub fn patch(&self, segments: &[&str], body: Value) -> Req<'_> {
        self.request(Method::PATCH, segments).body(body)
    }

    pub fn put(&self, segments: &[&str], body: Value) -> Req<'_> {
        self.request(Method::PUT, segments).body(body)
    }

    pub fn delete(&self, segments: &[&str]) -> Req<'_> {
        self.request(Method::DELETE, segments)
    }

    /// One page of a list, or every page with `--all`.
    pub async fn list(
        &self,
        segments: &[&str],
        filters: &[(&'static str, Option<String>)],
        page: &super::args::PageArgs,
    ) -> Result<Listing, CliError> {
        let mut cursor = page.cursor.clone();
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut req = self.get(segments);
            for (key, value) in filters {
                req = req.query(key, value.clone());
            }
            let reply = req.query("limit", page.limit.map(|l| l.to_string())).query("cursor", cursor.clone()).send().await?;
            let (page_items, next) = split_page(&reply.body)?;
            if !page.all {
                return Ok(Listing { items: page_items, next_cursor: next, raw: Some(reply.raw) });
            }
            items.extend(page_items);
            match next {
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(CliError::other(format!("the server returned the cursor {next:?} twice; stopping to avoid a loop")));
                }
                Some(next) => cursor = Some(next),
                None => return Ok(Listing { items, next_cursor: None, raw: None }),
            }
        }
    }

    pub fn url_for(&self, segments: &[String]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        {
            let mut path =
                url.path_segments_mut().map_err(|_| CliError::input("--url / SIGNALBOX_URL", "is not a URL a path can be added to"))?;
            for s in segments {
                if s.is_empty() || s == "." || s == ".." {
                    return Err(CliError::input(
                        "identifier",
                        format!("{s:?} is not an identifier or name (empty, `.` and `..` are not accepted)"),
                    ));
                }
                path.push(s);
            }
        }
        Ok(url)
    }
}

/// The API root for a server URL given by the user: `http://host:8080` → `http://host:8080/api/v1`.
pub fn api_base(raw: &str) -> Result<Url, CliError> {
    let flag = "--url / SIGNALBOX_URL";
    let raw = raw.trim();
    let mut url = Url::parse(raw).map_err(|e| CliError::input(flag, format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::input(flag, format!("{raw:?} must start with http:// or https://")));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(CliError::input(flag, format!("{raw:?} has no host")));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_string();
    let path = if path.ends_with("/api/v1") { path } else { format!("{path}/api/v1") };
    url.set_path(&path);
    Ok(url)
}

/// The items and the next cursor of a list answer (`{"items": [...], "next_cursor": ...}`).
pub fn split_page(body: &Value) -> Result<(Vec<Value>, Option<String>), CliError> {
    match body {
        Value::Array(items) => Ok((items.clone(), None)),
        Value::Object(map) => match map.get("items") {
            Some(Value::Array(items)) => {
                let next = map.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty());
                Ok((items.clone(), next.map(String::from)))
            }
            _ => Err(CliError::other("the server's answer has no `items` list")),
        },
        _ => Err(CliError::other("the server's answer is not a list")),
    }
}

/// A list as read: the raw text is kept for a single page so `--output json` shows it as sent.
pub struct Listing {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
    pub raw: Option<String>,
}

impl Listing {
    /// Prints the list: JSON as received, or a table (`render`) with a hint about more pages.
    pub fn print(&self, api: &Api, noun: &str, render: impl Fn(&[Value]) -> String) -> Result<(), CliError> {
        if api.json() {
            return match &self.raw {
                Some(raw) => emit(&reindent_json(raw)),
                None => {
                    let all = serde_json::json!({ "items": self.items, "next_cursor": null });
                    emit(&serde_json::to_string_pretty(&all).unwrap_or_default())
                }
            };
        }
        if self.items.is_empty() {
            emit(&format!("No {noun} found."))?;
        } else {
            emit(&render(&self.items))?;
        }
        if let Some(next) = &self.next_cursor {
            note(&format!("More {noun}: rerun with --cursor {next}, or with --all for every page."));
        }
        Ok(())
    }
}

/// A request being built. Invalid parts are reported when it is sent.
pub struct Req<'a> {
    api: &'a Api,
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    /// A file sent as it is (evidence uploads), instead of a JSON body.
    raw_body: Option<Vec<u8>>,
    headers: Vec<(&'static str, &'static str, String)>,
}

impl Req<'_> {
    pub fn query(mut self, key: &str, value: Option<String>) -> Self {
        if let Some(v) = value {
            self.query.push((key.to_string(), v));
        }
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn raw_body(mut self, bytes: Vec<u8>) -> Self {
        self.raw_body = Some(bytes);
        self
    }

    /// `If-Match`: `3` and `"3"` both mean the ETag `"3"`.
    pub fn if_match(mut self, etag: Option<&str>) -> Self {
        if let Some(etag) = etag {
            let etag = etag.trim();
            let value =
                if etag == "*" || etag.starts_with('"') || etag.starts_with("W/") { etag.to_string() } else { format!("\"{etag}\"") };
            self.headers.push(("If-Match", "--if-match", value));
        }
        self
    }

    pub fn idempotency_key(mut self, key: Option<&str>) -> Self {
        if let Some(key) = key {
            self.headers.push(("Idempotency-Key", "--idempotency-key", key.trim().to_string()));
        }
        self
    }

    /// Sends the request and returns the answer if its status is a success.
    pub async fn send_raw(self) -> Result<reqwest::Response, CliError> {
        let mut url = self.api.url_for(&self.segments)?;
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.query {
                pairs.append_pair(k, v);
            }
        }
        let mut headers = HeaderMap::new();
        if let Some(auth) = &self.api.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        for (name, flag, value) in &self.headers {
            if value.is_empty() {
                return Err(CliError::input(flag, "must not be empty"));
            }
            let value = HeaderValue::from_str(value).map_err(|_| CliError::input(flag, "contains characters a header cannot carry"))?;
            let name = if *name == "If-Match" { IF_MATCH } else { reqwest::header::HeaderName::from_static("idempotency-key") };
            headers.insert(name, value);
        }
        let shown_url = self.api.base.to_string();
        let mut req = self.api.http.request(self.method, url).headers(headers);
        if let Some(body) = &self.body {
            req = req.json(body);
        }
        if let Some(bytes) = self.raw_body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(bytes);
        }
        let response = req.send().await.map_err(|e| CliError::from_reqwest(&shown_url, &e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let mut e = CliError::from_response(status, &body);
        if status == 401 && self.api.auth.is_some() {
            e.message.push_str("\n  hint: the server did not accept the token from --token / SIGNALBOX_TOKEN");
        }
        Err(e)
    }

    /// Sends the request and decodes the JSON answer.
    pub async fn send(self) -> Result<Reply, CliError> {
        let shown_url = self.api.base.to_string();
        let response = self.send_raw().await?;
        let status = response.status().as_u16();
        let etag =
            response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(|v| v.trim_start_matches("W/").trim_matches('"').to_string());
        let replayed =
            response.headers().get("idempotency-replayed").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let raw = response.text().await.map_err(|e| CliError::from_reqwest(&shown_url, &e))?;
        let body = if raw.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&raw)
                .map_err(|e| CliError::new(exit::FAILURE, format!("the server's answer (HTTP {status}) is not JSON: {e}")))?
        };
        Ok(Reply { etag, replayed, raw, body })
    }
}

/// A successful answer.
pub struct Reply {
    /// The `ETag` without its quotes (the value to give `--if-match`).
    pub etag: Option<String>,
    /// The server answered a repeated `Idempotency-Key` with the first result.
    pub replayed: bool,
    pub raw: String,
    pub body: Value,
}

impl Reply {
    /// In JSON mode, prints the answer as received and returns `true`.
    pub fn print_json(&self, api: &Api) -> Result<bool, CliError> {
        if !api.json() {
            return Ok(false);
        }
        if !self.raw.trim().is_empty() {
            emit(&reindent_json(&self.raw))?;
        }
        Ok(true)
    }
}
