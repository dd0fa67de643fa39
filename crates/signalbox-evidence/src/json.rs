//! Typed JSON reading that reports where a document is wrong as a JSON path.

use serde::de::DeserializeOwned;

use crate::{EvidenceKind, ParseError};

/// Deserialises `text` as `T`. On failure the location is the JSON path of the offending value
/// (`runs[0].results[3].level`), followed by serde_json's line and column; syntax errors before
/// any value (path `.`) give only the line and column.
pub(crate) fn from_str<T: DeserializeOwned>(kind: EvidenceKind, text: &str) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        json_error(kind, &path, error.into_inner())
    })?;
    deserializer.end().map_err(|error| json_error(kind, ".", error))?;
    Ok(value)
}

fn json_error(kind: EvidenceKind, path: &str, error: serde_json::Error) -> ParseError {
    let position = format!("line {}, column {}", error.line(), error.column());
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    let message = match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!("not valid JSON: {message}"),
        serde_json::error::Category::Data | serde_json::error::Category::Io => message.to_string(),
    };
    let location = if path == "." || path.is_empty() { position } else { format!("{path}, {position}") };
    ParseError::new(kind, location, message)
}

/// The JSON path of an array element's field, for errors found after deserialising.
pub(crate) fn at(array: &str, index: usize, field: &str) -> String {
    if field.is_empty() {
        format!("{array}[{index}]")
    } else {
        format!("{array}[{index}].{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        runs: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        level: u8,
    }

    #[test]
    fn data_errors_name_the_json_path_and_position() {
        let error = from_str::<Outer>(EvidenceKind::Sarif, "{\"runs\":[{\"level\":1},\n{\"level\":\"high\"}]}").unwrap_err();
        assert_eq!(error.location, "runs[1].level, line 2, column 15");
        assert!(error.message.starts_with("invalid type: string \"high\""), "{}", error.message);
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_give_line_and_column() {
        let error = from_str::<Outer>(EvidenceKind::Sarif, "{\"runs\":[\n  {\"level\": 1,}]}").unwrap_err();
        assert!(error.location.ends_with("line 2, column 15"), "{}", error.location);
        assert!(error.message.starts_with("not valid JSON"), "{}", error.message);
        let error = from_str::<Outer>(EvidenceKind::Sarif, "{\"runs\":[]} {}").unwrap_err();
        assert_eq!(error.location, "line 1, column 13");
        assert!(error.message.contains("trailing"), "{}", error.message);
    }

    #[test]
    fn nesting_deeper_than_serde_json_allows_is_refused() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = from_str::<serde_json::Value>(EvidenceKind::Sarif, &deep).unwrap_err();
        assert!(error.message.contains("recursion limit"), "{}", error.message);
        let deep_ignored = format!("{{\"runs\":[],\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        // serde_json skips unknown values without recursing, so deep nesting there cannot
        // exhaust the stack either; it is simply ignored.
        assert!(from_str::<Outer>(EvidenceKind::Sarif, &deep_ignored).is_ok());
    }
}
