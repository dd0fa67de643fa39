//! Unit tests of the client commands: exit codes, error rendering, argument parsing, and
//! requests against a scripted fake server.

use super::args::*;
use super::error::{exit, exit_code_for_status, render_problem, CliError};
use super::http::{api_base, Api};
use super::output::{cell, reindent_json, Fmt};
use super::*;
use clap::Parser;
use serde_json::{json, Value};

#[derive(clap::Parser, Debug)]
#[command(name = "signalbox", version, propagate_version = true)]
struct TestCli {
    #[command(flatten)]
    opts: ClientOpts,
    #[command(subcommand)]
    cmd: TestCmd,
}

// Parsed once per test; the size of the client command does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
enum TestCmd {
    #[command(flatten)]
    Client(ClientCommand),
    #[command(subcommand)]
    Audit(AuditClientCmd),
}

fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(std::iter::once("signalbox").chain(args.iter().copied()))
}

fn opts(url: &str, token: Option<&str>) -> ClientOpts {
    ClientOpts { url: url.into(), token: token.map(String::from), output: OutputFormat::Table }
}

#[test]
fn the_command_tree_is_a_valid_clap_definition() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
}

#[test]
fn http_statuses_map_to_the_documented_exit_codes() {
    let cases = [
        (200, 0),
        (201, 0),
        (204, 0),
        (400, 6),
        (401, 3),
        (403, 3),
        (404, 4),
        (405, 1),
        (409, 5),
        (412, 5),
        (413, 1),
        (422, 6),
        (429, 1),
        (500, 7),
        (502, 7),
        (503, 7),
        (504, 7),
    ];
    for (status, code) in cases {
        assert_eq!(exit_code_for_status(status), code, "HTTP {status}");
    }
    assert_eq!(exit::AUTH, 3);
    assert_eq!(exit::NOT_FOUND, 4);
    assert_eq!(exit::CONFLICT, 5);
    assert_eq!(exit::INVALID, 6);
    assert_eq!(exit::UNAVAILABLE, 7);
}

#[test]
fn problem_documents_render_title_detail_and_field_errors() {
    let body = json!({
        "type": "https://signalbox.dev/problems/validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "2 fields are invalid",
        "errors": [
            {"field": "version", "message": "must be SemVer 2.0.0, e.g. 1.4.0"},
            {"field": "digest", "message": "must be sha256: followed by 64 hex digits"}
        ]
    })
    .to_string();
    assert_eq!(
        render_problem(422, &body),
        "error: Invalid request: 2 fields are invalid\n  \
         - version: must be SemVer 2.0.0, e.g. 1.4.0\n  \
         - digest: must be sha256: followed by 64 hex digits"
    );
}

#[test]
fn a_lone_field_error_that_is_the_detail_is_said_once() {
    let body = json!({
        "title": "Invalid input",
        "status": 422,
        "detail": "digest: must be a sha256 digest",
        "errors": [{"field": "digest", "message": "must be a sha256 digest"}]
    })
    .to_string();
    assert_eq!(render_problem(422, &body), "error: Invalid input: digest: must be a sha256 digest");
}

#[test]
fn problem_without_detail_or_title_still_says_something() {
    assert_eq!(render_problem(404, r#"{"title":"Not found"}"#), "error: Not found");
    assert_eq!(render_problem(404, r#"{"status":404}"#), "error: HTTP 404 Not Found");
    assert_eq!(render_problem(502, "<html>Bad gateway</html>"), "error: HTTP 502 Bad Gateway: <html>Bad gateway</html>");
    assert_eq!(render_problem(503, ""), "error: HTTP 503 Service Unavailable");
    assert_eq!(render_problem(599, "[]"), "error: HTTP 599: []");
}

#[test]
fn problem_extensions_are_listed_and_control_characters_neutralised() {
    let body = json!({
        "title": "Transition refused",
        "status": 409,
        "detail": "R-12 cannot go from testing to awaiting_approval",
        "reasons": ["The rollback plan is missing.", "Task smoke-tests is not done."],
        "request_id": "req_1",
        "errors": [{"field": "to\u{1b}[31m", "message": "refused"}],
    })
    .to_string();
    let text = render_problem(409, &body);
    assert!(text.starts_with("error: Transition refused: R-12 cannot go from testing to awaiting_approval\n"));
    assert!(text.contains("\n  - to [31m: refused"), "{text}");
    assert!(text.contains("\n  reasons:\n  - The rollback plan is missing.\n  - Task smoke-tests is not done."), "{text}");
    assert!(text.contains("\n  request_id: req_1"), "{text}");
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn error_responses_carry_their_exit_code() {
    let e = CliError::from_response(412, r#"{"title":"Precondition failed","detail":"ETag is 4"}"#);
    assert_eq!(e.code, 5);
    assert_eq!(e.message, "error: Precondition failed: ETag is 4");
    let e = CliError::from_response(401, r#"{"title":"Unauthorized"}"#);
    assert_eq!(e.code, 3);
}

#[test]
fn a_missing_token_names_the_variable_and_the_flag() {
    for token in [None, Some(""), Some("   ")] {
        let e = Api::new(&opts("http://127.0.0.1:1", token)).expect_err("must fail");
        assert_eq!(e.code, exit::AUTH);
        assert!(e.message.contains("SIGNALBOX_TOKEN") && e.message.contains("--token"), "{}", e.message);
    }
    let e = Api::new(&opts("http://127.0.0.1:1", Some("bad\ntoken"))).expect_err("must fail");
    assert_eq!(e.code, exit::INVALID);
}

#[test]
fn server_urls_become_api_roots() {
    let ok = [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v1"),
        ("https://sb.example.com/base/", "https://sb.example.com/base/api/v1"),
        ("https://sb.example.com/api/v1/", "https://sb.example.com/api/v1"),
        (" http://h:1?x=1#y ", "http://h:1/api/v1"),
    ];
    for (raw, want) in ok {
        assert_eq!(api_base(raw).map(|u| u.to_string()).ok().as_deref(), Some(want), "{raw}");
    }
    for bad in ["", "localhost:8080", "ftp://h/", "mailto:x@y", "http://", "not a url"] {
        let e = api_base(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert_eq!(e.code, exit::INVALID);
        assert!(e.message.contains("--url"), "{}", e.message);
    }
}

#[test]
fn identifiers_are_escaped_in_paths_and_dot_segments_refused() {
    let api = Api::new(&opts("http://h:1", Some("t"))).expect("api");
    let url = api.url_for(&["services".into(), "a b/c?d".into()]).expect("url");
    assert_eq!(url.as_str(), "http://h:1/api/v1/services/a%20b%2Fc%3Fd");
    for bad in ["", ".", ".."] {
        let e = api.url_for(&["services".into(), bad.into()]).expect_err("refused");
        assert_eq!(e.code, exit::INVALID);
    }
}

#[test]
fn json_is_reindented_without_reordering_or_renumbering() {
    let raw = r#"{"z":1.50,"a":[],"m":{"s":"a,b:{[\"x\\","e":{}},"n":[1,2e3,null,true]}"#;
    let pretty = reindent_json(raw);
    assert_eq!(
        pretty,
        "{\n  \"z\": 1.50,\n  \"a\": [],\n  \"m\": {\n    \"s\": \"a,b:{[\\\"x\\\\\",\n    \"e\": {}\n  },\n  \
         \"n\": [\n    1,\n    2e3,\n    null,\n    true\n  ]\n}"
    );
    let a: Value = serde_json::from_str(raw).expect("raw");
    let b: Value = serde_json::from_str(&pretty).expect("pretty is JSON");
    assert_eq!(a, b);
    assert_eq!(reindent_json(" [ ] "), "[]");
    assert_eq!(reindent_json("\"x\""), "\"x\"");
}

#[test]
fn value_parsers_accept_what_the_server_takes() {
    assert_eq!(parse_scope("organization"), Ok(json!({"type": "organization"})));
    assert_eq!(parse_scope("domain:payments"), Ok(json!({"type": "domain", "id": "payments"})));
    assert_eq!(parse_scope("environment:prod"), Ok(json!({"type": "environment", "id": "prod"})));
    for bad in ["", "domain", "domain:", "galaxy:x", "organization:x"] {
        assert!(parse_scope(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_tier("prod"), Ok(json!("prod")));
    assert_eq!(parse_tier("perf"), Ok(json!({"custom": "perf"})));
    assert!(parse_tier(" ").is_err());
    assert_eq!(
        parse_action_item("alice:2025-07-01:Alert on queue depth: p99"),
        Ok(json!({"description": "Alert on queue depth: p99", "owner": "alice", "due": "2025-07-01"}))
    );
    for bad in ["alice", "alice:2025-07-01", "alice:tomorrow:x", ":2025-07-01:x", "alice:2025-02-30:x"] {
        assert!(parse_action_item(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_time("2025-06-01").map(|t| time_text(&t)), Ok("2025-06-01T00:00:00Z".into()));
    assert_eq!(parse_time("2025-06-01T11:00:00+02:00").map(|t| time_text(&t)), Ok("2025-06-01T09:00:00Z".into()));
    assert!(parse_time("yesterday").is_err());
    assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
    assert!(parse_key_value("=x").is_err());
}

#[test]
fn enum_values_offered_by_the_cli_are_the_domain_s() {
    use signalbox_domain::model::{ChangeKind, Criticality, DataClassification};
    use signalbox_domain::tasks::{TaskKind, TaskStatus};
    fn all_parse<T: serde::de::DeserializeOwned>(values: &[&str]) {
        for v in values {
            assert!(serde_json::from_value::<T>(json!(v)).is_ok(), "{v}");
        }
    }
    all_parse::<TaskStatus>(&TASK_STATUSES);
    all_parse::<TaskKind>(&TASK_KINDS);
    all_parse::<ChangeKind>(&CHANGE_KINDS);
    all_parse::<Criticality>(&CRITICALITIES);
    all_parse::<DataClassification>(&DATA_CLASSIFICATIONS);
    // Every variant is offered: these matches stop compiling when the domain grows one.
    let _ = |s: TaskStatus| match s {
        TaskStatus::Pending | TaskStatus::InProgress | TaskStatus::Done | TaskStatus::Skipped | TaskStatus::Failed => {}
    };
    let _ = |k: TaskKind| match k {
        TaskKind::Manual | TaskKind::Approval | TaskKind::Gate | TaskKind::Deploy | TaskKind::WaitForWindow | TaskKind::Notification => {}
    };
    assert_eq!(TASK_STATUSES.len(), 5);
    assert_eq!(TASK_KINDS.len(), 6);
}

#[test]
fn cells_show_values_readably() {
    assert_eq!(cell(None, Fmt::Text), "-");
    assert_eq!(cell(Some(&json!(["a", "b"])), Fmt::Text), "a, b");
    assert_eq!(cell(Some(&json!([{"a": 1}])), Fmt::Text), "1 items");
    assert_eq!(cell(Some(&json!("2025-06-01T09:30:12.123456Z")), Fmt::Time), "2025-06-01 09:30 UTC");
    assert_eq!(cell(Some(&json!({"type": "domain", "id": "payments"})), Fmt::Scope), "domain:payments");
    assert_eq!(cell(Some(&json!({"type": "organization"})), Fmt::Scope), "organization");
    assert_eq!(cell(Some(&json!({"custom": "perf"})), Fmt::Tier), "perf");
    assert_eq!(cell(Some(&json!(true)), Fmt::YesNo), "yes");
    assert_eq!(cell(Some(&json!("line\nbreak\u{7}")), Fmt::Text), "line break ");
}

#[test]
fn commands_parse_with_kebab_case_names_and_global_options() {
    let cli = parse(&["releases", "transition", "R-12", "awaiting_approval", "--reason", "tests green", "--if-match", "3", "-o", "json"])
        .expect("parses");
    assert_eq!(cli.opts.output, OutputFormat::Json);
    match cli.cmd {
        TestCmd::Client(ClientCommand::Releases(ReleasesCmd::Transition { id, to, reason, if_match, .. })) => {
            assert_eq!((id.as_str(), to.as_str()), ("R-12", "awaiting_approval"));
            assert_eq!(reason.as_deref(), Some("tests green"));
            assert_eq!(if_match.if_match.as_deref(), Some("3"));
        }
        other => panic!("{other:?}"),
    }
    let ok: &[&[&str]] = &[
        &["domains", "list", "--all"],
        &["teams", "create", "--name", "checkout", "--domain", "payments", "--idempotency-key", "k1"],
        &["services", "update", "api", "--criticality", "customer_facing", "--if-match", "\"2\""],
        &["environments", "create", "--name", "perf", "--tier", "perf", "--position", "25", "--config", "A=1"],
        &["environments", "update", "prod", "--protected", "true", "--unset-config", "A"],
        &["artifacts", "register", "--service", "api", "--version", "1.2.0", "--digest", "sha256:00"],
        &["changes", "record", "--kind", "pull_request", "--reference", "42", "--title", "t", "--author", "a"],
        &["releases", "list", "--state", "planning", "--limit", "10", "--cursor", "abc"],
        &["releases", "create", "--name", "n", "--window-start", "2025-06-01", "--window-end", "2025-06-02"],
        &["releases", "add-component", "R-1", "api@1.2.0"],
        &["releases", "transitions", "R-1"],
        &["releases", "review", "R-1", "--summary", "fine", "--action-item", "bob:2025-07-01:fix"],
        &["releases", "review", "R-1", "--file", "review.toml"],
        &["releases", "tasks", "R-1"],
        &["releases", "add-task", "R-1", "--key", "k", "--name", "n", "--kind", "manual"],
        &["releases", "task", "R-1", "smoke-tests", "--status", "in_progress"],
        &["templates", "create", "--file", "t.toml"],
        &["users", "me"],
        &["users", "create", "--username", "bob", "--password-stdin"],
        &["tokens", "create", "--name", "ci", "--expires-at", "2026-01-01"],
        &["tokens", "revoke", "tok_1"],
        &["role-bindings", "create", "--user", "bob", "--role", "release_manager", "--scope", "domain:payments"],
        &["role-bindings", "delete", "rb_1"],
        &["login", "--username", "admin", "--password-stdin"],
        &["audit", "list", "--subject-kind", "release", "--since", "2025-01-01"],
        &["audit", "export", "--file", "audit.jsonl"],
    ];
    for args in ok {
        if let Err(e) = parse(args) {
            panic!("{args:?}: {e}");
        }
    }
    let bad: &[&[&str]] = &[
        &["releases", "transition", "R-1", "shipped"],
        &["releases", "list", "--limit", "0"],
        &["releases", "create", "--name", "n", "--window-start", "2025-06-01"],
        &["releases", "review", "R-1"],
        &["releases", "review", "R-1", "--summary", "s", "--file", "f.json"],
        &["releases", "review", "R-1", "--summary", "s", "--action-item", "bob:soon:x"],
        &["role-bindings", "create", "--user", "u", "--role", "emperor", "--scope", "organization"],
        &["role-bindings", "create", "--user", "u", "--role", "admin", "--scope", "planet:x"],
        &["login", "--username", "admin", "--password", "hunter2"],
        &["releases", "task", "R-1", "k", "--status", "finished"],
    ];
    for args in bad {
        let e = parse(args).err().unwrap_or_else(|| panic!("{args:?} accepted"));
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn login_refuses_to_run_without_password_stdin() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cmd = ClientCommand::Login { username: "admin".into(), password_stdin: false, token_name: None };
    let e = rt.block_on(dispatch(cmd, &opts("http://127.0.0.1:1", None))).expect_err("refused");
    assert_eq!(e.code, exit::USAGE);
    assert!(e.message.contains("--password-stdin"));
}

#[test]
fn run_is_send_so_callers_may_spawn_it() {
    fn assert_send<T: Send>(_: &T) {}
    let o = opts("http://127.0.0.1:1", Some("t"));
    let f = run(ClientCommand::Users(UsersCmd::Me), &o);
    assert_send(&f);
    let g = run_audit(AuditClientCmd::Export { file: None }, &o);
    assert_send(&g);
}

/// A scripted HTTP server: answers each connection with the next response and records what
/// it was sent.
mod fake {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: String,
    }

    pub fn reply(status: u16, body: serde_json::Value) -> Reply {
        let content_type = if status >= 400 { "application/problem+json" } else { "application/json" };
        Reply { status, headers: vec![("Content-Type", content_type.into())], body: body.to_string() }
    }

    /// Starts the server; returns its URL and the receiver of what it saw.
    pub fn serve(replies: Vec<Reply>) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        headers.push((n.trim().to_string(), v.trim().to_string()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = tx.send(Seen { method, target, headers, body: String::from_utf8_lossy(&body).into() });
                let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n", reply.status, reply.body.len());
                for (n, v) in &reply.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&reply.body);
                let mut stream = reader.into_inner();
                let _ = stream.write_all(out.as_bytes());
                let _ = stream.flush();
            }
        });
        (url, rx)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

fn run_args(url: &str, args: &[&str]) -> Result<(), CliError> {
    let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let o = ClientOpts { url: url.into(), token: Some("sbx_test".into()), output: cli.opts.output };
    block_on(async {
        match cli.cmd {
            TestCmd::Client(c) => dispatch(c, &o).await,
            TestCmd::Audit(c) => audit::run(&Api::new(&o)?, c).await,
        }
    })
}

#[test]
fn list_all_follows_cursors_and_sends_the_token() {
    let (url, seen) = fake::serve(vec![
        fake::reply(200, json!({"items": [{"id": "dom_1", "name": "payments"}], "next_cursor": "c1"})),
        fake::reply(200, json!({"items": [{"id": "dom_2", "name": "search"}], "next_cursor": null})),
    ]);
    run_args(&url, &["domains", "list", "--all", "--limit", "1"]).expect("ok");
    let seen: Vec<_> = seen.try_iter().collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].target, "/api/v1/domains?limit=1");
    assert_eq!(seen[1].target, "/api/v1/domains?limit=1&cursor=c1");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sbx_test"));
}

#[test]
fn a_refused_transition_exits_5_and_sends_if_match() {
    let (url, seen) = fake::serve(vec![fake::reply(
        409,
        json!({"title": "Transition refused", "status": 409, "detail": "The rollback plan is missing."}),
    )]);
    let e = run_args(&url, &["releases", "transition", "R-12", "awaiting_approval", "--if-match", "7"]).expect_err("refused");
    assert_eq!(e.code, exit::CONFLICT);
    assert_eq!(e.message, "error: Transition refused: The rollback plan is missing.");
    let s = seen.recv().expect("request");
    assert_eq!((s.method.as_str(), s.target.as_str()), ("POST", "/api/v1/releases/R-12/transitions"));
    assert_eq!(s.header("if-match"), Some("\"7\""));
    assert_eq!(serde_json::from_str::<Value>(&s.body).ok(), Some(json!({"to": "awaiting_approval"})));
}

#[test]
fn statuses_from_the_server_become_exit_codes() {
    for (status, code) in [(401, 3), (403, 3), (404, 4), (412, 5), (422, 6), (500, 7)] {
        let (url, _seen) = fake::serve(vec![fake::reply(status, json!({"title": "t", "status": status}))]);
        let e = run_args(&url, &["services", "get", "api"]).expect_err("fails");
        assert_eq!(e.code, code, "HTTP {status}");
        // A refused token is named as the likely cause.
        assert_eq!(e.message.contains("SIGNALBOX_TOKEN"), status == 401, "{}", e.message);
    }
}

#[test]
fn create_sends_the_idempotency_key_and_the_fields_given() {
    let (url, seen) = fake::serve(vec![fake::reply(201, json!({"id": "art_1", "version": "1.2.0"}))]);
    run_args(
        &url,
        &["artifacts", "register", "--service", "api", "--version", "1.2.0", "--digest", "sha256:ab", "--idempotency-key", "build-77"],
    )
    .expect("ok");
    let s = seen.recv().expect("request");
    assert_eq!(s.header("idempotency-key"), Some("build-77"));
    assert_eq!(serde_json::from_str::<Value>(&s.body).ok(), Some(json!({"service": "api", "version": "1.2.0", "digest": "sha256:ab"})));
}

#[test]
fn environment_update_merges_config_and_guards_with_the_etag_it_read() {
    let current = json!({"id": "env_1", "name": "prod", "config": {"A": "1", "B": "2"}, "protection": {"protected": false, "deployer_roles": ["sre"]}});
    let mut get = fake::reply(200, current);
    get.headers.push(("ETag", "\"5\"".into()));
    let (url, seen) = fake::serve(vec![get, fake::reply(200, json!({"id": "env_1", "name": "prod"}))]);
    run_args(&url, &["environments", "update", "prod", "--protected", "true", "--config", "C=3", "--unset-config", "A"]).expect("ok");
    let seen: Vec<_> = seen.try_iter().collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, "PATCH");
    assert_eq!(seen[1].header("if-match"), Some("\"5\""));
    assert_eq!(
        serde_json::from_str::<Value>(&seen[1].body).ok(),
        Some(json!({"config": {"B": "2", "C": "3"}, "protection": {"protected": true, "deployer_roles": ["sre"]}}))
    );
}

#[test]
fn an_unreachable_server_exits_7() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let e = run_args(&format!("http://127.0.0.1:{port}"), &["domains", "list"]).expect_err("fails");
    assert_eq!(e.code, exit::UNAVAILABLE);
    assert!(e.message.contains("cannot reach the server"), "{}", e.message);
}

#[test]
fn unusable_local_input_names_the_flag_and_exits_6() {
    let e = run_args("http://127.0.0.1:1", &["templates", "create", "--file", "/nonexistent/t.toml"]).expect_err("fails");
    assert_eq!(e.code, exit::INVALID);
    assert!(e.message.starts_with("error: --file: cannot read"), "{}", e.message);
    let e = run_args("http://127.0.0.1:1", &["releases", "update", "R-1", "--release-notes", "@/nonexistent"]).expect_err("fails");
    assert_eq!(e.code, exit::INVALID);
    assert!(e.message.contains("--release-notes"), "{}", e.message);
    let e = run_args("http://127.0.0.1:1", &["services", "update", "api"]).expect_err("fails");
    assert_eq!(e.code, exit::INVALID);
}

#[test]
fn documents_parse_from_json_and_toml() {
    let dir = std::env::temp_dir().join(format!("sbx-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let toml_path = dir.join("t.toml");
    std::fs::write(&toml_path, "name = \"hotfix\"\n[[phases]]\nname = \"build\"\ntasks = []\n").expect("write");
    let v = read_document("--file", toml_path.to_str().unwrap_or_default()).expect("toml");
    assert_eq!(v, json!({"name": "hotfix", "phases": [{"name": "build", "tasks": []}]}));
    let json_path = dir.join("t.json");
    std::fs::write(&json_path, "{\"name\": \"x\"").expect("write");
    let e = read_document("--file", json_path.to_str().unwrap_or_default()).expect_err("invalid");
    assert_eq!(e.code, exit::INVALID);
    assert!(e.message.contains("--file") && e.message.contains("not valid JSON"), "{}", e.message);
    let list_path = dir.join("t");
    std::fs::write(&list_path, "[1]").expect("write");
    assert!(read_document("--file", list_path.to_str().unwrap_or_default()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
