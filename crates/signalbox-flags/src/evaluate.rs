//! Flag resolution with flagd's semantics (reference §2.1, flagd `core/pkg/evaluator/json.go`), plus
//! Signalbox's prerequisites.
//!
//! ```text
//! unknown key                      -> ERROR, FLAG_NOT_FOUND
//! context is not a JSON object     -> ERROR, INVALID_CONTEXT
//! state DISABLED (kill switch)     -> DISABLED, no value (the SDK uses its code default)
//! a prerequisite not on its variant-> DISABLED, no value, `unsatisfied_prerequisite` names it
//! targeting present and not {}:
//!     engine error                 -> ERROR, PARSE_ERROR
//!     result null                  -> defaultVariant ? (default, DEFAULT) : (no value, DEFAULT)
//!     result names a variant       -> TARGETING_MATCH   (true/false/numbers name variants by their text)
//!     anything else                -> ERROR, GENERAL
//! no targeting                     -> defaultVariant ? (default, STATIC) : (no value, DEFAULT)
//! typed helpers: wrong value type  -> ERROR, TYPE_MISMATCH
//! ```
//! `fractional` results are reported as `TARGETING_MATCH`, as flagd does (it defines `SPLIT` but never
//! emits it); reporting the same reason keeps SDK caches and the differential test against flagd
//! aligned. `SPLIT` is accepted when read back but never produced.

use crate::document::{FlagSet, FlagState, VariantType};
use crate::fasthash::KeyTable;
use crate::logic::{EvalError, Outcome, Rule, Targeting};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// OpenFeature resolution reasons (OpenFeature spec "Resolution Details"; OFREP `evaluationSuccess.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    TargetingMatch,
    Split,
    Default,
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Default => "DEFAULT",
            Self::Disabled => "DISABLED",
            Self::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes (OFREP `evaluationFailure.errorCode` plus the provider-side `TYPE_MISMATCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FlagNotFound => "FLAG_NOT_FOUND",
            Self::ParseError => "PARSE_ERROR",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            Self::InvalidContext => "INVALID_CONTEXT",
            Self::General => "GENERAL",
        }
    }
}

/// The outcome of one evaluation. Borrows from the compiled flag set, so the static and rule paths
/// allocate nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'s> {
    /// `None` means "use the code default" (DISABLED, or DEFAULT without a default variant, or ERROR).
    pub value: Option<&'s Value>,
    pub variant: Option<&'s str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    /// Flag-set metadata merged with the flag's (the flag's keys win); the set's alone for unknown flags.
    pub flag_metadata: &'s Map<String, Value>,
    /// The prerequisite flag that kept this flag off, if any.
    pub unsatisfied_prerequisite: Option<&'s str>,
}

/// The outcome of a typed evaluation (`TYPE_MISMATCH` when the variant has another type).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedResolution<'s, T> {
    pub value: Option<T>,
    pub variant: Option<&'s str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub flag_metadata: &'s Map<String, Value>,
}

/// In declaration order (`repr(C)`): what every evaluation reads comes first, in the flag's first
/// cache line; the key and metadata, read only to build messages or returned by reference, last.
#[derive(Debug, Clone)]
#[repr(C)]
struct CompiledFlag {
    state: FlagState,
    variant_type: VariantType,
    /// Index into `variants` of the default variant.
    default_variant: Option<usize>,
    prerequisites: Box<[Prerequisite]>,
    /// Variants in name order; targeting outcomes are indexes into this list.
    variants: Box<[(String, Value)]>,
    targeting: Option<Targeting>,
    key: String,
    metadata: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct Prerequisite {
    key: String,
    /// Index of the prerequisite flag, `None` if the set has no such flag (never satisfied).
    flag: Option<usize>,
    variant: String,
}

/// A flag set compiled for evaluation: build once per flag-set version, share read-only.
#[derive(Debug, Clone)]
pub struct CompiledFlagSet {
    /// Flags in key order, found through `index`.
    flags: Vec<CompiledFlag>,
    index: KeyTable,
    keys: Vec<String>,
    metadata: Map<String, Value>,
}

impl CompiledFlagSet {
    /// Compiles every flag's targeting once. A [`FlagSet`] has been validated, so this only fails if
    /// it was modified in code into an invalid state.
    pub fn compile(set: &FlagSet) -> Result<Self, signalbox_domain::validate::Invalid> {
        let empty = Map::new();
        let evaluators = set.evaluators.as_ref().unwrap_or(&empty);
        let set_metadata = set.metadata.clone().unwrap_or_default();
        let keys: Vec<String> = set.flags.keys().cloned().collect();
        let index = KeyTable::new(keys.iter().map(String::as_str));
        let mut flags = Vec::with_capacity(set.flags.len());
        let mut invalid = signalbox_domain::validate::Invalid::default();
        for (key, flag) in &set.flags {
            let targeting = match flag.effective_targeting() {
                Some(targeting) => match Rule::compile(targeting, evaluators, &format!("flags.{key}.targeting")) {
                    Ok(rule) => Some(Targeting::new(rule, key, flag.variants.keys().map(String::as_str))),
                    Err(problem) => {
                        invalid.push(problem.path, problem.message);
                        continue;
                    }
                },
                None => None,
            };
            let mut metadata = set_metadata.clone();
            if let Some(own) = &flag.metadata {
                metadata.extend(own.iter().map(|(name, value)| (name.clone(), value.clone())));
            }
            flags.push(CompiledFlag {
                key: key.clone(),
                state: flag.state,
                variants: flag.variants.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
                variant_type: flag.variant_type,
                default_variant: flag.default_variant.name().and_then(|name| flag.variants.keys().position(|key| key == name)),
                targeting,
                metadata,
                prerequisites: flag
                    .prerequisites
                    .iter()
                    .flatten()
                    .map(|p| Prerequisite { key: p.flag.clone(), flag: index.get(&p.flag), variant: p.variant.clone() })
                    .collect(),
            });
        }
        invalid.into_result()?;
        Ok(Self { flags, index, keys, metadata: set_metadata })
    }

    #[inline(always)]
    fn flag(&self, flag_key: &str) -> Option<&CompiledFlag> {
        self.index.get(flag_key).map(|index| &self.flags[index])
    }

    /// Flag keys in sorted order (bulk evaluation order).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The flag-set metadata alone.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// The declared value type of a flag.
    pub fn variant_type(&self, flag_key: &str) -> Option<VariantType> {
        self.flag(flag_key).map(|flag| flag.variant_type)
    }

    /// Evaluates `flag_key` for `context` (a JSON object) at `now` (Unix seconds, `$flagd.timestamp`).
    // Inlined into the typed helpers: the resolution is then never returned through memory and
    // read back with wider loads than it was written with (a store-forwarding stall).
    #[inline(always)]
    pub fn evaluate<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> Resolution<'s> {
        self.evaluate_found(self.flag(flag_key), flag_key, context, now)
    }

    #[inline(always)]
    fn evaluate_found<'s>(&'s self, flag: Option<&'s CompiledFlag>, flag_key: &str, context: &Value, now: i64) -> Resolution<'s> {
        let Some(flag) = flag else {
            return self.error(&self.metadata, ErrorCode::FlagNotFound, format!("flag \"{flag_key}\" not found"));
        };
        if !context.is_object() {
            return self.error(&flag.metadata, ErrorCode::InvalidContext, "the evaluation context must be a JSON object".to_owned());
        }
        if flag.state == FlagState::Disabled {
            return off(flag, None);
        }
        for prerequisite in &flag.prerequisites {
            let satisfied = prerequisite
                .flag
                .is_some_and(|parent| resolve(&self.flags[parent], context, now).variant == Some(prerequisite.variant.as_str()));
            if !satisfied {
                return off(flag, Some(&prerequisite.key));
            }
        }
        resolve(flag, context, now)
    }

    #[cold]
    fn error<'s>(&'s self, metadata: &'s Map<String, Value>, code: ErrorCode, message: String) -> Resolution<'s> {
        Resolution {
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message),
            flag_metadata: metadata,
            unsatisfied_prerequisite: None,
        }
    }

    /// A typed evaluation. A flag that is on, with no targeting and no prerequisites, is resolved
    /// here; any other takes [`Self::evaluate_typed_rest`], out of line, so the common static path
    /// does not pay for the registers and stack the rest of the evaluator needs.
    #[inline(always)]
    fn evaluate_typed<'s, T>(
        &'s self,
        flag_key: &str,
        context: &Value,
        now: i64,
        type_name: &'static str,
        extract: impl Fn(&'s Value) -> Option<T>,
    ) -> TypedResolution<'s, T> {
        let flag = self.flag(flag_key);
        if let Some(flag) = flag {
            if flag.targeting.is_none() && flag.prerequisites.is_empty() && flag.state == FlagState::Enabled && context.is_object() {
                return typed(default(flag, Reason::Static), type_name, extract);
            }
        }
        self.evaluate_typed_rest(flag, flag_key, context, now, type_name, extract)
    }

    #[inline(never)]
    fn evaluate_typed_rest<'s, T>(
        &'s self,
        flag: Option<&'s CompiledFlag>,
        flag_key: &str,
        context: &Value,
        now: i64,
        type_name: &'static str,
        extract: impl Fn(&'s Value) -> Option<T>,
    ) -> TypedResolution<'s, T> {
        typed(self.evaluate_found(flag, flag_key, context, now), type_name, extract)
    }

    pub fn evaluate_bool<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, bool> {
        self.evaluate_typed(flag_key, context, now, "boolean", Value::as_bool)
    }

    pub fn evaluate_string<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, &'s str> {
        self.evaluate_typed(flag_key, context, now, "string", Value::as_str)
    }

    /// Integers: a number variant without a fractional part within the safe-integer range.
    pub fn evaluate_int<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, i64> {
        typed(self.evaluate(flag_key, context, now), "integer", |value| {
            value
                .as_i64()
                .or_else(|| value.as_f64().filter(|n| n.fract() == 0.0 && n.abs() <= crate::document::MAX_SAFE_INTEGER).map(|n| n as i64))
        })
    }

    pub fn evaluate_float<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, f64> {
        typed(self.evaluate(flag_key, context, now), "number", Value::as_f64)
    }

    pub fn evaluate_object<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, &'s Map<String, Value>> {
        typed(self.evaluate(flag_key, context, now), "object", Value::as_object)
    }
}

fn off<'s>(flag: &'s CompiledFlag, prerequisite: Option<&'s str>) -> Resolution<'s> {
    Resolution {
        value: None,
        variant: None,
        reason: Reason::Disabled,
        error_code: None,
        error_message: None,
        flag_metadata: &flag.metadata,
        unsatisfied_prerequisite: prerequisite,
    }
}

#[inline(always)]
fn resolve<'s>(flag: &'s CompiledFlag, context: &Value, now: i64) -> Resolution<'s> {
    if flag.state == FlagState::Disabled {
        return off(flag, None);
    }
    let Some(targeting) = &flag.targeting else {
        return default(flag, Reason::Static);
    };
    match targeting.evaluate(context, &flag.key, now) {
        Ok(Outcome::Variant(index)) => success(flag, index, Reason::TargetingMatch),
        Ok(Outcome::Null) => default(flag, Reason::Default),
        Ok(Outcome::Unknown(result)) => failure(
            flag,
            ErrorCode::General,
            format!("targeting of \"{}\" returned {}, which is not one of its variants", flag.key, short(&result)),
        ),
        Err(problem @ (EvalError::StepBudgetExceeded | EvalError::OutputTooLarge)) => {
            failure(flag, ErrorCode::ParseError, format!("targeting of \"{}\" failed: {problem}", flag.key))
        }
    }
}

/// The default variant with `reason`, or no value (reason `DEFAULT`) when the flag has none.
#[inline(always)]
fn default(flag: &CompiledFlag, reason: Reason) -> Resolution<'_> {
    match flag.default_variant {
        Some(index) => success(flag, index, reason),
        None => Resolution {
            value: None,
            variant: None,
            reason: Reason::Default,
            error_code: None,
            error_message: None,
            flag_metadata: &flag.metadata,
            unsatisfied_prerequisite: None,
        },
    }
}

#[cold]
fn failure(flag: &CompiledFlag, code: ErrorCode, message: String) -> Resolution<'_> {
    Resolution {
        value: None,
        variant: None,
        reason: Reason::Error,
        error_code: Some(code),
        error_message: Some(message),
        flag_metadata: &flag.metadata,
        unsatisfied_prerequisite: None,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        let cut = (0..=80).rev().find(|&index| text.is_char_boundary(index)).unwrap_or(0);
        format!("{}…", &text[..cut])
    } else {
        text
    }
}

#[inline(always)]
fn success(flag: &CompiledFlag, index: usize, reason: Reason) -> Resolution<'_> {
    let (name, value) = &flag.variants[index];
    Resolution {
        value: Some(value),
        variant: Some(name),
        reason,
        error_code: None,
        error_message: None,
        flag_metadata: &flag.metadata,
        unsatisfied_prerequisite: None,
    }
}

#[inline(always)]
fn typed<'s, T>(resolution: Resolution<'s>, type_name: &str, extract: impl Fn(&'s Value) -> Option<T>) -> TypedResolution<'s, T> {
    match resolution.value.map(|value| (value, extract(value))) {
        Some((value, None)) => TypedResolution {
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(ErrorCode::TypeMismatch),
            error_message: Some(format!("the flag's value {} is not a {type_name}", short(value))),
            flag_metadata: resolution.flag_metadata,
        },
        Some((_, extracted)) => TypedResolution {
            value: extracted,
            variant: resolution.variant,
            reason: resolution.reason,
            error_code: resolution.error_code,
            error_message: resolution.error_message,
            flag_metadata: resolution.flag_metadata,
        },
        None => TypedResolution {
            value: None,
            variant: resolution.variant,
            reason: resolution.reason,
            error_code: resolution.error_code,
            error_message: resolution.error_message,
            flag_metadata: resolution.flag_metadata,
        },
    }
}
