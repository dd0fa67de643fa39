//! The flagd flag-set document: parsing with validation, and exact export.
//!
//! Format: flagd-schemas `json/flags.json` (draft-07, `$id https://flagd.dev/schema/v0/flags.json`)
//! and flagd docs "Flag Definitions" (reference §2.1). `flags` may be a map (the provider form) or an
//! array of flags with a `key` (the `flagdImport` form); the form is remembered so that export gives
//! back an equal JSON value. Unknown keys are preserved untouched, because the schema allows them.
//!
//! Signalbox extension, ignored by flagd: a flag may carry
//! `"prerequisites": [{"flag": "<key>", "variant": "<variant>"}]`, and is then served only when every
//! named flag resolves to the named variant. Prerequisites are one level deep (a prerequisite flag may
//! not have prerequisites itself), which rules out chains and cycles at validation time.

use crate::logic::Rule;
use serde_json::{Map, Value};
use signalbox_domain::validate::Invalid;
use std::collections::BTreeMap;

/// JavaScript's `Number.MAX_SAFE_INTEGER`: larger numbers read differently across SDKs
/// (flagd-schemas negative test `number-variant-exceeds-safe-integer-range.json`).
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
/// Most prerequisites one flag may name.
pub const MAX_PREREQUISITES: usize = 16;

/// A whole flag-set document.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSet {
    /// The flags, by key.
    pub flags: BTreeMap<String, Flag>,
    /// Shared rules referenced from targeting with `{"$ref": "<name>"}`; `None` when the document had no `$evaluators`.
    pub evaluators: Option<Map<String, Value>>,
    /// Flag-set metadata (`flagSetId`, `version`, anything flat); flag metadata wins on merge.
    pub metadata: Option<Map<String, Value>>,
    /// The order of `flags` when the document used the array form; `None` for the map form.
    pub array_order: Option<Vec<String>>,
    /// Top-level keys other than `flags`, `$evaluators` and `metadata` (e.g. `$schema`), kept verbatim.
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagState {
    Enabled,
    Disabled,
}

impl FlagState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Disabled => "DISABLED",
        }
    }
}

/// The one value type all variants of a flag share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantType {
    Boolean,
    String,
    Number,
    Object,
}

impl VariantType {
    pub fn of(value: &Value) -> Option<Self> {
        Some(match value {
            Value::Bool(_) => Self::Boolean,
            Value::String(_) => Self::String,
            Value::Number(_) => Self::Number,
            Value::Object(_) => Self::Object,
            Value::Null | Value::Array(_) => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Number => "number",
            Self::Object => "object",
        }
    }
}

/// `defaultVariant` as written. `Absent` and `Null` mean the same thing (flagd-schemas 0.2.12 on):
/// the flag has no server-side default, so when no targeting rule picks a variant the evaluation
/// returns reason `DEFAULT` without a value or variant, and the SDK uses the default in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultVariant {
    Absent,
    Null,
    Named(String),
}

impl DefaultVariant {
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Absent | Self::Null => None,
        }
    }
}

/// Signalbox extension: serve this flag only while `flag` resolves to `variant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prerequisite {
    pub flag: String,
    pub variant: String,
}

/// One flag definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub state: FlagState,
    pub variants: Map<String, Value>,
    pub variant_type: VariantType,
    pub default_variant: DefaultVariant,
    /// The rule as written (with `$ref`s unresolved); `None` when absent.
    pub targeting: Option<Value>,
    pub metadata: Option<Map<String, Value>>,
    pub prerequisites: Option<Vec<Prerequisite>>,
    /// Keys flagd does not define, kept verbatim.
    pub other: Map<String, Value>,
}

impl Flag {
    /// Targeting that is present and not `{}` (an empty object counts as no targeting in flagd).
    pub fn effective_targeting(&self) -> Option<&Value> {
        self.targeting.as_ref().filter(|rule| !matches!(rule, Value::Object(map) if map.is_empty()))
    }
}

const FLAG_KNOWN_KEYS: [&str; 6] = ["state", "variants", "defaultVariant", "targeting", "metadata", "prerequisites"];

impl FlagSet {
    /// Parses and validates a document from bytes (JSON syntax errors name line and column).
    pub fn parse(bytes: &[u8]) -> Result<FlagSet, Invalid> {
        let value: Value = serde_json::from_slice(bytes).map_err(|problem| {
            Invalid::one("", format!("not valid JSON ({problem}); a flagd flag set is a JSON object like {{\"flags\": {{...}}}}"))
        })?;
        Self::from_json(&value)
    }

    /// Validates a document and collects every problem with its JSON path.
    pub fn from_json(document: &Value) -> Result<FlagSet, Invalid> {
        let mut errors = Invalid::default();
        let Value::Object(root) = document else {
            return Err(Invalid::one("", "a flag set must be a JSON object with a \"flags\" member"));
        };
        let evaluators = match root.get("$evaluators") {
            None => None,
            Some(Value::Object(map)) => {
                for (name, rule) in map {
                    if name.is_empty() {
                        errors.push("$evaluators", "an evaluator name must not be empty");
                    }
                    if !rule.is_object() {
                        errors.push(format!("$evaluators.{name}"), "an evaluator must be a JsonLogic rule object");
                    }
                }
                Some(map.clone())
            }
            Some(_) => {
                errors.push("$evaluators", "must be an object mapping names to JsonLogic rules");
                None
            }
        };
        let empty = Map::new();
        let evaluator_map = evaluators.as_ref().unwrap_or(&empty);
        for (name, rule) in evaluator_map {
            if rule.is_object() && !name.is_empty() {
                let reference = serde_json::json!({ "$ref": name });
                if let Err(problem) = Rule::compile(&reference, evaluator_map, &format!("$evaluators.{name}")) {
                    errors.push(problem.path, problem.message);
                }
            }
        }
        let metadata = match root.get("metadata") {
            None => None,
            Some(value) => validate_metadata(value, "metadata", &mut errors),
        };
        let mut flags = BTreeMap::new();
        let mut array_order = None;
        match root.get("flags") {
            None => errors.push("flags", "required; add \"flags\": {} with one entry per flag key"),
            Some(Value::Object(map)) => {
                for (key, flag) in map {
                    let path = format!("flags.{key}");
                    if key.is_empty() {
                        errors.push("flags", "a flag key must not be empty");
                        continue;
                    }
                    if let Some(flag) = parse_flag(flag, &path, evaluator_map, &[], &mut errors) {
                        flags.insert(key.clone(), flag);
                    }
                }
            }
            Some(Value::Array(items)) => {
                let mut order = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let index_path = format!("flags[{index}]");
                    let key = match item.get("key") {
                        Some(Value::String(key)) if !key.is_empty() => key.clone(),
                        _ => {
                            errors.push(format!("{index_path}.key"), "required in the array form: a non-empty string naming the flag");
                            continue;
                        }
                    };
                    if flags.contains_key(&key) {
                        errors.push(format!("{index_path}.key"), format!("flag \"{key}\" is defined twice; keep one definition"));
                        continue;
                    }
                    if let Some(flag) = parse_flag(item, &format!("flags.{key}"), evaluator_map, &["key"], &mut errors) {
                        order.push(key.clone());
                        flags.insert(key, flag);
                    }
                }
                array_order = Some(order);
            }
            Some(_) => errors.push("flags", "must be an object mapping flag keys to flags (or an array of flags with \"key\")"),
        }
        let declared: Vec<String> = match root.get("flags") {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(|item| item.get("key")?.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        validate_prerequisites(&flags, &declared, &mut errors);
        let other = root
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "flags" | "$evaluators" | "metadata"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        errors.into_result()?;
        Ok(FlagSet { flags, evaluators, metadata, array_order, other })
    }

    /// The document as flagd JSON; `FlagSet::from_json(&set.to_json())` gives back an equal set, and
    /// exporting an imported document gives back an equal JSON value.
    pub fn to_json(&self) -> Value {
        let mut root = self.other.clone();
        let flags = match &self.array_order {
            Some(order) => Value::Array(
                order
                    .iter()
                    .filter_map(|key| {
                        let flag = self.flags.get(key)?;
                        let mut object = Map::new();
                        object.insert("key".to_owned(), Value::String(key.clone()));
                        object.extend(flag_to_json(flag));
                        Some(Value::Object(object))
                    })
                    .collect(),
            ),
            None => Value::Object(self.flags.iter().map(|(key, flag)| (key.clone(), Value::Object(flag_to_json(flag)))).collect()),
        };
        root.insert("flags".to_owned(), flags);
        if let Some(evaluators) = &self.evaluators {
            root.insert("$evaluators".to_owned(), Value::Object(evaluators.clone()));
        }
        if let Some(metadata) = &self.metadata {
            root.insert("metadata".to_owned(), Value::Object(metadata.clone()));
        }
        Value::Object(root)
    }
}

fn flag_to_json(flag: &Flag) -> Map<String, Value> {
    let mut object = flag.other.clone();
    object.insert("state".to_owned(), Value::String(flag.state.as_str().to_owned()));
    object.insert("variants".to_owned(), Value::Object(flag.variants.clone()));
    match &flag.default_variant {
        DefaultVariant::Absent => {}
        DefaultVariant::Null => {
            object.insert("defaultVariant".to_owned(), Value::Null);
        }
        DefaultVariant::Named(name) => {
            object.insert("defaultVariant".to_owned(), Value::String(name.clone()));
        }
    }
    if let Some(targeting) = &flag.targeting {
        object.insert("targeting".to_owned(), targeting.clone());
    }
    if let Some(metadata) = &flag.metadata {
        object.insert("metadata".to_owned(), Value::Object(metadata.clone()));
    }
    if let Some(prerequisites) = &flag.prerequisites {
        let list = prerequisites
            .iter()
            .map(|prerequisite| serde_json::json!({ "flag": prerequisite.flag, "variant": prerequisite.variant }))
            .collect();
        object.insert("prerequisites".to_owned(), Value::Array(list));
    }
    object
}

fn validate_metadata(value: &Value, path: &str, errors: &mut Invalid) -> Option<Map<String, Value>> {
    let Value::Object(map) = value else {
        errors.push(path, "metadata must be an object of flat string, number or boolean values");
        return None;
    };
    for (key, entry) in map {
        if !matches!(entry, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            errors.push(format!("{path}.{key}"), "metadata values must be a string, number or boolean (no objects, arrays or null)");
        }
    }
    if let Some(flag_set_id) = map.get("flagSetId").filter(|value| !value.is_string()) {
        errors.push(format!("{path}.flagSetId"), format!("must be a string, got {flag_set_id}"));
    }
    if let Some(version) = map.get("version").filter(|value| !value.is_string()) {
        errors.push(format!("{path}.version"), format!("must be a string, got {version}; quote it"));
    }
    Some(map.clone())
}

fn parse_flag(value: &Value, path: &str, evaluators: &Map<String, Value>, skip_keys: &[&str], errors: &mut Invalid) -> Option<Flag> {
    let Value::Object(object) = value else {
        errors.push(path, "a flag must be an object with \"state\" and \"variants\"");
        return None;
    };
    let before = errors.0.len();
    let state = match object.get("state") {
        Some(Value::String(text)) if text == "ENABLED" => FlagState::Enabled,
        Some(Value::String(text)) if text == "DISABLED" => FlagState::Disabled,
        Some(other) => {
            errors.push(format!("{path}.state"), format!("must be \"ENABLED\" or \"DISABLED\", got {other}"));
            FlagState::Enabled
        }
        None => {
            errors.push(format!("{path}.state"), "required: \"ENABLED\" or \"DISABLED\"");
            FlagState::Enabled
        }
    };
    let (variants, variant_type) = parse_variants(object.get("variants"), &format!("{path}.variants"), errors);
    let default_variant = match object.get("defaultVariant") {
        None => DefaultVariant::Absent,
        Some(Value::Null) => DefaultVariant::Null,
        Some(Value::String(name)) => {
            if !variants.is_empty() && !variants.contains_key(name) {
                let names: Vec<&str> = variants.keys().map(String::as_str).collect();
                errors.push(
                    format!("{path}.defaultVariant"),
                    format!("\"{name}\" is not a variant of this flag; use one of {} or null for the code default", names.join(", ")),
                );
            }
            DefaultVariant::Named(name.clone())
        }
        Some(other) => {
            errors.push(format!("{path}.defaultVariant"), format!("must be a variant name or null, got {other}"));
            DefaultVariant::Absent
        }
    };
    let targeting = object.get("targeting").cloned();
    match &targeting {
        None => {}
        Some(Value::Object(rule)) if rule.is_empty() => {}
        Some(rule @ Value::Object(_)) => {
            if let Err(problem) = Rule::compile(rule, evaluators, &format!("{path}.targeting")) {
                errors.push(problem.path, problem.message);
            }
        }
        Some(_) => errors.push(format!("{path}.targeting"), "must be a JsonLogic rule object (or {} for none)"),
    }
    let metadata = object.get("metadata").and_then(|value| validate_metadata(value, &format!("{path}.metadata"), errors));
    let prerequisites = object.get("prerequisites").map(|value| parse_prerequisites(value, &format!("{path}.prerequisites"), errors));
    let other = object
        .iter()
        .filter(|(key, _)| !FLAG_KNOWN_KEYS.contains(&key.as_str()) && !skip_keys.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if errors.0.len() != before {
        return None;
    }
    Some(Flag { state, variants, variant_type: variant_type?, default_variant, targeting, metadata, prerequisites, other })
}

fn parse_variants(value: Option<&Value>, path: &str, errors: &mut Invalid) -> (Map<String, Value>, Option<VariantType>) {
    let Some(value) = value else {
        errors.push(path, "required: an object of variant name to value, e.g. {\"on\": true, \"off\": false}");
        return (Map::new(), None);
    };
    let Value::Object(map) = value else {
        errors.push(path, "must be an object of variant name to value");
        return (Map::new(), None);
    };
    if map.is_empty() {
        errors.push(path, "needs at least one variant");
        return (Map::new(), None);
    }
    let mut first_type: Option<(VariantType, &str)> = None;
    let mut consistent = true;
    for (name, variant) in map {
        let variant_path = format!("{path}.{name}");
        if name.is_empty() {
            errors.push(path, "a variant name must not be empty");
        }
        let Some(kind) = VariantType::of(variant) else {
            errors.push(variant_path, "a variant value must be a boolean, string, number or object");
            consistent = false;
            continue;
        };
        if let Value::Number(number) = variant {
            let magnitude = number.as_f64().map(f64::abs).unwrap_or(f64::INFINITY);
            if magnitude > MAX_SAFE_INTEGER && number.as_f64().is_none_or(|n| n.fract() == 0.0) {
                errors.push(
                    format!("{path}.{name}"),
                    format!(
                        "{number} is outside ±{MAX_SAFE_INTEGER} (the safe-integer range every SDK reads exactly); use a string variant"
                    ),
                );
            }
        }
        match first_type {
            None => first_type = Some((kind, name)),
            Some((expected, first_name)) if expected != kind => {
                errors.push(
                    variant_path,
                    format!(
                        "is a {} but variant \"{first_name}\" is a {}; all variants of a flag have one type",
                        kind.as_str(),
                        expected.as_str()
                    ),
                );
                consistent = false;
            }
            Some(_) => {}
        }
    }
    (map.clone(), first_type.filter(|_| consistent).map(|(kind, _)| kind))
}

fn parse_prerequisites(value: &Value, path: &str, errors: &mut Invalid) -> Vec<Prerequisite> {
    let Value::Array(items) = value else {
        errors.push(path, "must be an array of {\"flag\": \"<key>\", \"variant\": \"<variant>\"}");
        return Vec::new();
    };
    if items.len() > MAX_PREREQUISITES {
        errors.push(path, format!("at most {MAX_PREREQUISITES} prerequisites per flag"));
    }
    let mut prerequisites = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let fields = item.as_object().map(|object| (object.get("flag"), object.get("variant"), object.len()));
        match fields {
            Some((Some(Value::String(flag)), Some(Value::String(variant)), 2)) => {
                prerequisites.push(Prerequisite { flag: flag.clone(), variant: variant.clone() })
            }
            _ => errors.push(item_path, "must be exactly {\"flag\": \"<key>\", \"variant\": \"<variant>\"}"),
        }
    }
    prerequisites
}

/// Prerequisites must name an existing flag and one of its variants, never the flag itself, and
/// never a flag that has prerequisites of its own (one level: no chains, hence no cycles).
fn validate_prerequisites(flags: &BTreeMap<String, Flag>, declared: &[String], errors: &mut Invalid) {
    for (key, flag) in flags {
        for (index, prerequisite) in flag.prerequisites.iter().flatten().enumerate() {
            let path = format!("flags.{key}.prerequisites[{index}]");
            if &prerequisite.flag == key {
                errors.push(format!("{path}.flag"), "a flag cannot be its own prerequisite; remove this entry");
                continue;
            }
            let Some(parent) = flags.get(&prerequisite.flag) else {
                // A flag that is declared but invalid has its own errors; do not report it twice.
                if !declared.contains(&prerequisite.flag) {
                    errors
                        .push(format!("{path}.flag"), format!("no flag \"{}\" in this flag set; add it or fix the key", prerequisite.flag));
                }
                continue;
            };
            if parent.prerequisites.as_ref().is_some_and(|list| !list.is_empty()) {
                errors.push(
                    format!("{path}.flag"),
                    format!(
                        "\"{}\" has prerequisites of its own; prerequisites are one level deep (this also prevents cycles), so depend on its prerequisites directly",
                        prerequisite.flag
                    ),
                );
            }
            if !parent.variants.contains_key(&prerequisite.variant) {
                let names: Vec<&str> = parent.variants.keys().map(String::as_str).collect();
                errors.push(
                    format!("{path}.variant"),
                    format!("\"{}\" is not a variant of \"{}\"; use one of {}", prerequisite.variant, prerequisite.flag, names.join(", ")),
                );
            }
        }
    }
}
