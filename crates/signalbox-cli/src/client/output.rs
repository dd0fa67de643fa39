//! Writing results: tables for people, JSON for scripts.

use super::error::{clean, exit, CliError};
use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;
use std::io::Write;

/// Writes `text` and a newline to standard output. A closed pipe (`signalbox … | head`) ends
/// the command quietly instead of panicking.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|_| if text.ends_with('\n') { Ok(()) } else { stdout.write_all(b"\n") })
        .and_then(|_| stdout.flush());
    result.map_err(|e| write_failed(&e, "standard output"))
}

/// A failure writing output: silent for a closed pipe, reported otherwise.
pub fn write_failed(e: &std::io::Error, target: &str) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError { code: exit::FAILURE, message: String::new() }
    } else {
        CliError::other(format!("cannot write to {target}: {e}"))
    }
}

/// A note for people on standard error (hints, progress); never part of the data.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Pretty-prints JSON text without parsing it into a map, so members keep the order and the
/// numbers keep the exact form the server sent. `raw` must be valid JSON.
pub fn reindent_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// How a cell shows its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// Text, numbers and booleans as they are; lists of text joined with `, `.
    Text,
    /// An RFC 3339 timestamp, shortened to the minute.
    Time,
    /// The number of elements of a list.
    Count,
    /// Text cut to 19 characters (digests, commit hashes).
    Short,
    /// A role-binding scope: `organization`, `domain:payments`.
    Scope,
    /// An environment tier: `prod`, or a custom tier's name.
    Tier,
    /// `yes` / `no`.
    YesNo,
    /// A list, one element per line.
    Lines,
}

/// One column of a table, or one row of a detail view: a header and a dotted path into the
/// resource (`protection.protected`).
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub header: &'static str,
    pub path: &'static str,
    pub fmt: Fmt,
}

pub const fn col(header: &'static str, path: &'static str) -> Col {
    Col { header, path, fmt: Fmt::Text }
}

pub const fn colf(header: &'static str, path: &'static str, fmt: Fmt) -> Col {
    Col { header, path, fmt }
}

/// The value at a dotted path, if there is one.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The text at a dotted path, or `-`.
pub fn text_at(value: &Value, path: &str) -> String {
    cell(lookup(value, path), Fmt::Text)
}

pub fn cell(value: Option<&Value>, fmt: Fmt) -> String {
    let value = match value {
        None | Some(Value::Null) => return "-".into(),
        Some(v) => v,
    };
    let text = match fmt {
        Fmt::Count => match value {
            Value::Array(items) => items.len().to_string(),
            Value::Object(map) => map.len().to_string(),
            other => plain(other),
        },
        Fmt::Time => match value.as_str().map(chrono::DateTime::parse_from_rfc3339) {
            Some(Ok(t)) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string(),
            _ => plain(value),
        },
        Fmt::Short => {
            let s = plain(value);
            if s.chars().count() > 19 {
                let mut cut: String = s.chars().take(18).collect();
                cut.push('…');
                cut
            } else {
                s
            }
        }
        Fmt::Scope => match (value.get("type").and_then(Value::as_str), value.get("id")) {
            (Some(kind), None | Some(Value::Null)) => kind.to_string(),
            (Some(kind), Some(id)) => format!("{kind}:{}", plain(id)),
            _ => plain(value),
        },
        Fmt::Tier => match value {
            Value::Object(map) if map.len() == 1 => map.values().next().map(plain).unwrap_or_default(),
            other => plain(other),
        },
        Fmt::YesNo => match value {
            Value::Bool(true) => "yes".into(),
            Value::Bool(false) => "no".into(),
            other => plain(other),
        },
        Fmt::Lines => match value {
            Value::Array(items) => items.iter().map(|i| clean(&plain(i))).collect::<Vec<_>>().join("\n"),
            other => plain(other),
        },
        Fmt::Text => plain(value),
    };
    if fmt == Fmt::Lines {
        return if text.is_empty() { "-".into() } else { text };
    }
    let text = clean(&text);
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        }
        Value::Array(items) => format!("{} items", items.len()),
        Value::Object(_) => value.to_string(),
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// No padding before the first column, two spaces between columns.
fn flush_left(table: &mut Table) {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
}

/// A table with one row per item.
pub fn table(items: &[Value], cols: &[Col]) -> String {
    let mut table = new_table();
    table.set_header(cols.iter().map(|c| c.header.to_uppercase()));
    for item in items {
        table.add_row(cols.iter().map(|c| cell(lookup(item, c.path), c.fmt)));
    }
    flush_left(&mut table);
    table.trim_fmt()
}

/// A two-column view of one resource: the given fields, then `extra` rows.
pub fn detail(value: &Value, rows: &[Col], extra: &[(&str, String)]) -> String {
    let mut table = new_table();
    for row in rows {
        table.add_row(vec![format!("{}:", row.header), cell(lookup(value, row.path), row.fmt)]);
    }
    for (name, text) in extra {
        table.add_row(vec![format!("{name}:"), clean(text)]);
    }
    flush_left(&mut table);
    table.trim_fmt()
}

/// The resource a response carries. Tolerates an envelope of `{"version", "value"}`.
pub fn resource(body: &Value) -> &Value {
    match body {
        Value::Object(map) if !map.contains_key("id") && map.contains_key("version") => map.get("value").unwrap_or(body),
        other => other,
    }
}
