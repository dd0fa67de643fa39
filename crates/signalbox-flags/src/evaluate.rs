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
use crate::logic::{Attributes, Direct, EvalError, Outcome, Rule, Targeting};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::OnceCell;

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
    /// On and without prerequisites: the result is the targeting's (or the default's).
    is_unconditional: bool,
    state: FlagState,
    variant_type: VariantType,
    /// The default variant's name and value, copied out of `variants` so the static path reads
    /// one cache line of the flag and nothing behind a pointer.
    default: Option<(Box<str>, Value)>,
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
    /// The context properties the rules read, by attribute number ([`Attributes`]).
    attributes: KeyTable,
    reads_clock: bool,
}

/// What one evaluation reads: the context, and (when it was prepared for the set) the properties
/// its rules read, looked up on first use.
#[derive(Clone, Copy)]
struct Input<'x, 'c> {
    context: &'c Value,
    prepared: Option<(&'x KeyTable, &'x OnceCell<AttributeValues<'c>>)>,
}

impl<'x, 'c> Input<'x, 'c> {
    #[inline(always)]
    fn plain(context: &'c Value) -> Self {
        Self { context, prepared: None }
    }

    /// The prepared attribute values (read now if no rule has needed them yet), or `None`.
    #[inline(always)]
    fn attributes(&self) -> Option<&'x [Option<&'c Value>]> {
        let (table, values) = self.prepared?;
        Some(values.get_or_init(|| AttributeValues::read(table, self.context)).as_slice(table.len()))
    }
}

/// Attribute values a [`PreparedContext`] keeps inline (no heap allocation); a set whose rules
/// read more distinct context properties than this allocates one vector per prepared context.
const INLINE_ATTRIBUTES: usize = 16;

/// The context's value for each attribute of a set (`None`: the context has no such property).
#[derive(Debug, Clone)]
struct AttributeValues<'c> {
    inline: [Option<&'c Value>; INLINE_ATTRIBUTES],
    spilled: Vec<Option<&'c Value>>,
}

impl<'c> AttributeValues<'c> {
    /// One pass over the context's properties, or one lookup per attribute when the context has
    /// many more properties than the rules read.
    fn read(table: &KeyTable, context: &'c Value) -> Self {
        let count = table.len();
        let mut read = Self { inline: [None; INLINE_ATTRIBUTES], spilled: Vec::new() };
        let values: &mut [Option<&'c Value>] = if count <= INLINE_ATTRIBUTES {
            &mut read.inline[..count]
        } else {
            read.spilled = vec![None; count];
            &mut read.spilled
        };
        if let Value::Object(map) = context {
            if map.len() <= 2 * count {
                for (name, value) in map {
                    if let Some(slot) = table.get(name).and_then(|number| values.get_mut(number)) {
                        *slot = Some(value);
                    }
                }
            } else {
                for (slot, name) in values.iter_mut().zip(table.keys()) {
                    *slot = map.get(&**name);
                }
            }
        }
        read
    }

    #[inline(always)]
    fn as_slice(&self, count: usize) -> &[Option<&'c Value>] {
        if count <= INLINE_ATTRIBUTES {
            &self.inline[..count]
        } else {
            &self.spilled
        }
    }
}

/// An evaluation context prepared for one compiled flag set: the top-level properties that the
/// set's rules read (`var` paths, `targetingKey`) are looked up in a single pass over the context,
/// the first time a rule needs one, and every flag's rule then reads them by index instead of
/// searching the context's map. Results are exactly those of [`CompiledFlagSet::evaluate`] on the
/// same context; preparing pays when several flags are evaluated for one context (OFREP bulk
/// evaluation). Flags without targeting never trigger the pass.
#[derive(Debug, Clone)]
pub struct PreparedContext<'s, 'c> {
    set: &'s CompiledFlagSet,
    context: &'c Value,
    attributes: OnceCell<AttributeValues<'c>>,
}

impl CompiledFlagSet {
    /// Compiles every flag's targeting once. A [`FlagSet`] has been validated, so this only fails if
    /// it was modified in code into an invalid state.
    pub fn compile(set: &FlagSet) -> Result<Self, signalbox_domain::validate::Invalid> {
        let empty = Map::new();
        let evaluators = set.evaluators.as_ref().unwrap_or(&empty);
        let set_metadata = set.metadata.clone().unwrap_or_default();
        let keys: Vec<String> = set.flags.keys().cloned().collect();
        let index = KeyTable::sparse(keys.iter().map(String::as_str));
        let mut flags = Vec::with_capacity(set.flags.len());
        let mut invalid = signalbox_domain::validate::Invalid::default();
        let mut attributes = Attributes::default();
        for (key, flag) in &set.flags {
            let targeting = match flag.effective_targeting() {
                Some(targeting) => {
                    match Rule::compile_numbered(targeting, evaluators, &format!("flags.{key}.targeting"), &mut attributes) {
                        Ok(rule) => Some(Targeting::new(rule, key, flag.variants.keys().map(String::as_str))),
                        Err(problem) => {
                            invalid.push(problem.path, problem.message);
                            continue;
                        }
                    }
                }
                None => None,
            };
            let mut metadata = set_metadata.clone();
            if let Some(own) = &flag.metadata {
                metadata.extend(own.iter().map(|(name, value)| (name.clone(), value.clone())));
            }
            let has_prerequisites = flag.prerequisites.as_ref().is_some_and(|list| !list.is_empty());
            flags.push(CompiledFlag {
                is_unconditional: flag.state == FlagState::Enabled && !has_prerequisites,
                default: flag
                    .default_variant
                    .name()
                    .and_then(|name| flag.variants.get_key_value(name))
                    .map(|(name, value)| (Box::from(name.as_str()), value.clone())),
                key: key.clone(),
                state: flag.state,
                variants: flag.variants.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
                variant_type: flag.variant_type,
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
        let reads_clock = attributes.reads_clock();
        let attributes = KeyTable::sparse(attributes.names().iter().map(|name| &**name));
        Ok(Self { flags, index, keys, metadata: set_metadata, attributes, reads_clock })
    }

    /// Prepares `context` for evaluating several of this set's flags (see [`PreparedContext`]):
    /// no work and no allocation until a rule reads the context.
    #[inline]
    pub fn prepare<'c>(&self, context: &'c Value) -> PreparedContext<'_, 'c> {
        PreparedContext { set: self, context, attributes: OnceCell::new() }
    }

    #[inline(always)]
    fn flag(&self, flag_key: &str) -> Option<&CompiledFlag> {
        self.index.get(flag_key).map(|index| &self.flags[index])
    }

    /// Flag keys in sorted order (bulk evaluation order).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Whether some flag's targeting may read `$flagd.timestamp` (the evaluation time), so that
    /// results can change with the clock and not only with the set and the context; a cache of
    /// results (the OFREP bulk `ETag`) must then take the time into account.
    pub fn reads_clock(&self) -> bool {
        self.reads_clock
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
        self.evaluate_found(self.flag(flag_key), flag_key, Input::plain(context), now)
    }

    #[inline(always)]
    fn evaluate_found<'s>(&'s self, flag: Option<&'s CompiledFlag>, flag_key: &str, input: Input<'_, '_>, now: i64) -> Resolution<'s> {
        let Some(flag) = flag else {
            return self.error(&self.metadata, ErrorCode::FlagNotFound, format!("flag \"{flag_key}\" not found"));
        };
        if !input.context.is_object() {
            return self.error(&flag.metadata, ErrorCode::InvalidContext, "the evaluation context must be a JSON object".to_owned());
        }
        if flag.state == FlagState::Disabled {
            return off(flag, None);
        }
        for prerequisite in &flag.prerequisites {
            let satisfied = prerequisite
                .flag
                .is_some_and(|parent| resolve(&self.flags[parent], input, now).variant == Some(prerequisite.variant.as_str()));
            if !satisfied {
                return off(flag, Some(&prerequisite.key));
            }
        }
        resolve(flag, input, now)
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

    /// A typed evaluation. A flag that is on, without prerequisites, and either without targeting
    /// or with one of the commonest rules (`if` + `in` over a context property between two
    /// variants, `fractional` over the targeting key with constant distributions;
    /// [`Targeting::decide_directly`]) is resolved here; any other takes
    /// [`Self::evaluate_typed_rest`], out of line, so the common paths do not pay for the
    /// registers and stack the rest of the evaluator needs.
    #[inline(always)]
    fn evaluate_typed<'s, T>(
        &'s self,
        flag_key: &str,
        input: Input<'_, '_>,
        now: i64,
        type_name: &'static str,
        extract: impl Fn(&'s Value) -> Option<T>,
    ) -> TypedResolution<'s, T> {
        let flag = self.flag(flag_key);
        if let Some(flag) = flag {
            if flag.is_unconditional && input.context.is_object() {
                match &flag.targeting {
                    None => {
                        if let Some((name, value)) = &flag.default {
                            return typed_variant(name, value, Reason::Static, &flag.metadata, type_name, extract);
                        }
                        return typed(default(flag, Reason::Static), type_name, extract);
                    }
                    Some(targeting) => match targeting.decide_directly(input.context, input.attributes()) {
                        Some(Direct::Variant(index)) => {
                            let (name, value) = &flag.variants[index];
                            return typed_variant(name, value, Reason::TargetingMatch, &flag.metadata, type_name, extract);
                        }
                        Some(Direct::Null) => return typed(default(flag, Reason::Default), type_name, extract),
                        None => {}
                    },
                }
            }
        }
        self.evaluate_typed_rest(flag, flag_key, input, now, type_name, extract)
    }

    #[inline(never)]
    fn evaluate_typed_rest<'s, T>(
        &'s self,
        flag: Option<&'s CompiledFlag>,
        flag_key: &str,
        input: Input<'_, '_>,
        now: i64,
        type_name: &'static str,
        extract: impl Fn(&'s Value) -> Option<T>,
    ) -> TypedResolution<'s, T> {
        typed(self.evaluate_found(flag, flag_key, input, now), type_name, extract)
    }

    #[inline]
    pub fn evaluate_bool<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, bool> {
        self.evaluate_typed(flag_key, Input::plain(context), now, "boolean", Value::as_bool)
    }

    #[inline]
    pub fn evaluate_string<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, &'s str> {
        self.evaluate_typed(flag_key, Input::plain(context), now, "string", Value::as_str)
    }

    /// Integers: a number variant without a fractional part within the safe-integer range.
    #[inline]
    pub fn evaluate_int<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, i64> {
        typed(self.evaluate(flag_key, context, now), "integer", as_safe_integer)
    }

    #[inline]
    pub fn evaluate_float<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, f64> {
        typed(self.evaluate(flag_key, context, now), "number", Value::as_f64)
    }

    #[inline]
    pub fn evaluate_object<'s>(&'s self, flag_key: &str, context: &Value, now: i64) -> TypedResolution<'s, &'s Map<String, Value>> {
        typed(self.evaluate(flag_key, context, now), "object", Value::as_object)
    }
}

/// A number variant without a fractional part within the safe-integer range.
fn as_safe_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|n| n.fract() == 0.0 && n.abs() <= crate::document::MAX_SAFE_INTEGER).map(|n| n as i64))
}

impl<'s, 'c> PreparedContext<'s, 'c> {
    /// The context this was prepared from.
    pub fn context(&self) -> &'c Value {
        self.context
    }

    #[inline(always)]
    fn input(&self) -> Input<'_, 'c> {
        Input { context: self.context, prepared: Some((&self.set.attributes, &self.attributes)) }
    }

    /// [`CompiledFlagSet::evaluate`] on the prepared context.
    #[inline]
    pub fn evaluate(&self, flag_key: &str, now: i64) -> Resolution<'s> {
        self.set.evaluate_found(self.set.flag(flag_key), flag_key, self.input(), now)
    }

    /// Every flag of the set in key order (the OFREP bulk order), without looking keys up.
    pub fn evaluate_all(&self, now: i64, mut each: impl FnMut(&'s str, Resolution<'s>)) {
        let input = self.input();
        for flag in &self.set.flags {
            each(&flag.key, self.set.evaluate_found(Some(flag), &flag.key, input, now));
        }
    }

    #[inline]
    pub fn evaluate_bool(&self, flag_key: &str, now: i64) -> TypedResolution<'s, bool> {
        self.set.evaluate_typed(flag_key, self.input(), now, "boolean", Value::as_bool)
    }

    #[inline]
    pub fn evaluate_string(&self, flag_key: &str, now: i64) -> TypedResolution<'s, &'s str> {
        self.set.evaluate_typed(flag_key, self.input(), now, "string", Value::as_str)
    }

    /// Integers as [`CompiledFlagSet::evaluate_int`] reads them.
    #[inline]
    pub fn evaluate_int(&self, flag_key: &str, now: i64) -> TypedResolution<'s, i64> {
        typed(self.evaluate(flag_key, now), "integer", as_safe_integer)
    }

    #[inline]
    pub fn evaluate_float(&self, flag_key: &str, now: i64) -> TypedResolution<'s, f64> {
        typed(self.evaluate(flag_key, now), "number", Value::as_f64)
    }

    #[inline]
    pub fn evaluate_object(&self, flag_key: &str, now: i64) -> TypedResolution<'s, &'s Map<String, Value>> {
        typed(self.evaluate(flag_key, now), "object", Value::as_object)
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
fn resolve<'s>(flag: &'s CompiledFlag, input: Input<'_, '_>, now: i64) -> Resolution<'s> {
    if flag.state == FlagState::Disabled {
        return off(flag, None);
    }
    let Some(targeting) = &flag.targeting else {
        return default(flag, Reason::Static);
    };
    match targeting.evaluate(input.context, input.attributes(), &flag.key, now) {
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
    match &flag.default {
        Some((name, value)) => Resolution {
            value: Some(value),
            variant: Some(name),
            reason,
            error_code: None,
            error_message: None,
            flag_metadata: &flag.metadata,
            unsatisfied_prerequisite: None,
        },
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

/// `typed(success(..))` for a chosen variant, built directly: no intermediate [`Resolution`], and
/// the mismatch message (and the type's name) only on the cold path.
#[inline(always)]
fn typed_variant<'s, T>(
    name: &'s str,
    value: &'s Value,
    reason: Reason,
    flag_metadata: &'s Map<String, Value>,
    type_name: &'static str,
    extract: impl Fn(&'s Value) -> Option<T>,
) -> TypedResolution<'s, T> {
    match extract(value) {
        Some(extracted) => {
            TypedResolution { value: Some(extracted), variant: Some(name), reason, error_code: None, error_message: None, flag_metadata }
        }
        None => type_mismatch(value, type_name, flag_metadata),
    }
}

#[cold]
#[inline(never)]
fn type_mismatch<'s, T>(value: &Value, type_name: &str, flag_metadata: &'s Map<String, Value>) -> TypedResolution<'s, T> {
    TypedResolution {
        value: None,
        variant: None,
        reason: Reason::Error,
        error_code: Some(ErrorCode::TypeMismatch),
        error_message: Some(format!("the flag's value {} is not a {type_name}", short(value))),
        flag_metadata,
    }
}

#[inline(always)]
fn typed<'s, T>(resolution: Resolution<'s>, type_name: &str, extract: impl Fn(&'s Value) -> Option<T>) -> TypedResolution<'s, T> {
    match resolution.value.map(|value| (value, extract(value))) {
        Some((value, None)) => type_mismatch(value, type_name, resolution.flag_metadata),
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
