use serde_json::Value;
use signalbox_flags::{CompiledFlagSet, FlagSet};

/// A fixed evaluation time (2026-01-01T00:00:00Z) so `$flagd.timestamp` rules are deterministic.
pub const NOW: i64 = 1_767_225_600;

pub fn compile(document: Value) -> CompiledFlagSet {
    let set = FlagSet::from_json(&document).unwrap_or_else(|invalid| panic!("document should be valid: {invalid:?}"));
    CompiledFlagSet::compile(&set).expect("a validated flag set compiles")
}

/// Field paths of the validation errors for `document` (empty when it is valid).
pub fn error_paths(document: Value) -> Vec<String> {
    match FlagSet::from_json(&document) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.0.into_iter().map(|error| error.field).collect(),
    }
}

pub fn error_messages(document: Value) -> Vec<(String, String)> {
    match FlagSet::from_json(&document) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.0.into_iter().map(|error| (error.field, error.message)).collect(),
    }
}
