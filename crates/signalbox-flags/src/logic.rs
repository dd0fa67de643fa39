//! JsonLogic targeting, compiled once per flag version into an expression tree.
//!
//! Compilation resolves `$ref`s to `$evaluators`, pre-splits `var` paths, pre-parses `sem_ver`
//! literals and operators, turns constant arrays into constants (and constant lists used by `in`
//! into `ConstantList` lookups), and recognises `$flagd.flagKey` / `$flagd.timestamp` so the
//! context is never cloned to inject them (flagd clones and re-marshals it per evaluation,
//! reference §2.1 and §4). Evaluation borrows from the rule and the context (`Cow`) and allocates
//! only when an operator builds a new string or array. `decision` compiles a rule further against
//! its flag's variants.
//!
//! Operators: JsonLogic (jsonlogic.com/operations.html) as flagd supports it (flagd-schemas
//! `targeting.json`) plus flagd's `fractional` (v2), `sem_ver`, `starts_with`, `ends_with`
//! (flagd docs "Custom Operations"). Value semantics are JavaScript's, see [`crate::js`].

use crate::fasthash::{KeyTable, Probe};
use crate::js::{self, as_js_str, loose_equal, number_value, strict_equal, to_number, truthy};
use crate::murmur3::Murmur3;
use crate::semver_op::{parse_context_version, parse_version, SemVerOp};
use semver::Version;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

mod decision;
pub(crate) use decision::{Direct, Outcome, Targeting};

/// Deepest nesting of operators accepted in a rule (serde_json itself stops at 128 while parsing).
pub const MAX_RULE_DEPTH: usize = 64;
/// Operator applications one evaluation may perform before it is stopped (hostile `map`/`reduce`).
pub const MAX_EVALUATION_STEPS: u32 = 100_000;
/// Largest string or array one operator may build during an evaluation.
pub const MAX_BUILT_LENGTH: usize = 1 << 20;
/// `fractional` weights and their sum must fit a signed 32-bit integer (flagd `MaxInt32`).
pub const MAX_FRACTIONAL_WEIGHT: u64 = i32::MAX as u64;

/// The operators a rule may use, listed in error messages.
pub const OPERATORS: &[&str] = &[
    "if",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "var",
    "missing",
    "missing_some",
    "cat",
    "substr",
    "+",
    "-",
    "*",
    "/",
    "%",
    "min",
    "max",
    "merge",
    "map",
    "filter",
    "reduce",
    "all",
    "some",
    "none",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

/// A rule that cannot be compiled, with the JSON path of the offending part and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

/// Why an evaluation stopped. flagd reports engine errors as `PARSE_ERROR` (reference §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    StepBudgetExceeded,
    OutputTooLarge,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StepBudgetExceeded => write!(formatter, "targeting needed more than {MAX_EVALUATION_STEPS} operations"),
            Self::OutputTooLarge => write!(formatter, "targeting built a string or array longer than {MAX_BUILT_LENGTH}"),
        }
    }
}

/// What a rule sees besides the context: the flag key and the evaluation time (`$flagd.*`).
#[derive(Debug)]
pub struct Env<'a> {
    pub flag_key: &'a str,
    pub timestamp: i64,
    pub root: &'a Value,
    /// The root's properties that rules read, by attribute index, when the context was prepared
    /// for the flag set (see [`Attributes`]); `None` reads them from `root`.
    attributes: Option<&'a [Option<&'a Value>]>,
    steps: Cell<u32>,
}

impl<'a> Env<'a> {
    pub fn new(flag_key: &'a str, timestamp: i64, root: &'a Value) -> Self {
        Self { flag_key, timestamp, root, attributes: None, steps: Cell::new(0) }
    }

    /// An environment whose root properties were looked up beforehand: `attributes[i]` is the
    /// root's property named by attribute `i` of the [`Attributes`] the rules were compiled with.
    pub(crate) fn prepared(flag_key: &'a str, timestamp: i64, root: &'a Value, attributes: Option<&'a [Option<&'a Value>]>) -> Self {
        Self { flag_key, timestamp, root, attributes, steps: Cell::new(0) }
    }

    /// The root property named by attribute `attribute`: `Some(None)` if the root has none, `None`
    /// if the context was not prepared (or not for these rules) and must be searched.
    #[inline(always)]
    fn attribute(&self, attribute: Option<u32>) -> Option<Option<&'a Value>> {
        prepared_attribute(self.attributes, attribute)
    }

    fn step(&self) -> Result<(), EvalError> {
        let steps = self.steps.get() + 1;
        if steps > MAX_EVALUATION_STEPS {
            return Err(EvalError::StepBudgetExceeded);
        }
        self.steps.set(steps);
        Ok(())
    }
}

/// The data `var` reads: the evaluation context at the top, an array element inside `map` & co.
#[derive(Debug, Clone, Copy)]
struct Scope<'a> {
    data: &'a Value,
    is_root: bool,
}

/// `attributes[attribute]`: `Some(None)` when the prepared context lacks the property, `None` when
/// there is no prepared value to read (no prepared context, or a path without an attribute number).
#[inline(always)]
fn prepared_attribute<'a>(attributes: Option<&'a [Option<&'a Value>]>, attribute: Option<u32>) -> Option<Option<&'a Value>> {
    attributes?.get(usize::try_from(attribute?).ok()?).copied()
}

/// The `$flagd` properties injected into the top-level context (flagd overwrites a caller's `$flagd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagdField {
    Whole,
    FlagKey,
    Timestamp,
    Absent,
}

#[derive(Debug, Clone)]
struct VarPath {
    /// Each segment with its lookup probe, read once at compile time.
    segments: Box<[(Box<str>, Probe)]>,
    flagd: Option<FlagdField>,
    /// The attribute index of the first segment, when the rule was compiled for a flag set (a
    /// prepared context holds the root's value for it); `None` for paths built at run time.
    attribute: Option<u32>,
}

/// The root properties that a flag set's rules read (the first segment of every constant `var`
/// path, and `targetingKey` for `fractional`), numbered at compile time. A context prepared for
/// the set ([`crate::PreparedContext`]) looks each of them up once, so a rule reads a property by
/// index instead of searching the context's map per flag.
#[derive(Debug, Clone)]
pub(crate) struct Attributes {
    names: Vec<Box<str>>,
    numbers: HashMap<Box<str>, u32>,
    /// Some rule may read `$flagd.timestamp`: through its path, the whole `$flagd` object, the
    /// whole data (which includes `$flagd`), or a path computed at evaluation time.
    reads_clock: bool,
}

/// `targetingKey` is always attribute 0 (`fractional` buckets by it without a `var`).
pub(crate) const TARGETING_KEY_ATTRIBUTE: u32 = 0;

impl Default for Attributes {
    fn default() -> Self {
        let mut attributes = Self { names: Vec::new(), numbers: HashMap::new(), reads_clock: false };
        attributes.number("targetingKey");
        attributes
    }
}

impl Attributes {
    /// The number of the property `name`, assigned on first use.
    fn number(&mut self, name: &str) -> Option<u32> {
        if let Some(number) = self.numbers.get(name) {
            return Some(*number);
        }
        let number = u32::try_from(self.names.len()).ok()?;
        self.names.push(Box::from(name));
        self.numbers.insert(Box::from(name), number);
        Some(number)
    }

    /// The property names, in attribute order.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Whether some rule compiled with these attributes may read the evaluation time.
    pub(crate) fn reads_clock(&self) -> bool {
        self.reads_clock
    }
}

impl VarPath {
    /// JsonLogic paths are dot-separated; numeric segments index arrays; "" is the whole data.
    fn parse(path: &str) -> Self {
        if path.is_empty() {
            return Self { segments: Box::new([]), flagd: None, attribute: None };
        }
        let segments: Box<[(Box<str>, Probe)]> =
            path.split('.').map(|segment| (Box::from(segment), Probe::new(segment.as_bytes()))).collect();
        let names: Vec<&str> = segments.iter().map(|(segment, _)| &**segment).collect();
        let flagd = match &names[..] {
            ["$flagd"] => Some(FlagdField::Whole),
            ["$flagd", "flagKey"] => Some(FlagdField::FlagKey),
            ["$flagd", "timestamp"] => Some(FlagdField::Timestamp),
            ["$flagd", ..] => Some(FlagdField::Absent),
            _ => None,
        };
        Self { segments, flagd, attribute: None }
    }

    /// This path with the attribute number of its first segment (for paths into the context).
    fn numbered(mut self, attributes: &mut Attributes) -> Self {
        if self.flagd.is_none() {
            if let Some((first, _)) = self.segments.first() {
                self.attribute = attributes.number(first);
            }
        }
        self
    }

    /// The value at this path in the top-level data, for a path that reads the context (not
    /// `$flagd`, not the whole data): from the prepared attributes when there are some.
    #[inline(always)]
    fn in_root<'a>(&self, root: &'a Value, attributes: Option<&'a [Option<&'a Value>]>) -> Option<&'a Value> {
        if let Some(first) = prepared_attribute(attributes, self.attribute) {
            return self.below(first);
        }
        let mut current = root;
        for (segment, probe) in self.segments.iter() {
            current = child(current, segment, probe)?;
        }
        Some(current)
    }

    /// The value at this path below the root, reading the first segment from `first` (the
    /// prepared attribute).
    #[inline(always)]
    fn below<'a>(&self, first: Option<&'a Value>) -> Option<&'a Value> {
        match &self.segments[..] {
            [_] => first,
            [_, rest @ ..] => Self::walk(first?, rest),
            [] => None,
        }
    }

    /// The value at the path `rest` below `current`.
    fn walk<'a>(mut current: &'a Value, rest: &[(Box<str>, Probe)]) -> Option<&'a Value> {
        for (segment, probe) in rest {
            current = child(current, segment, probe)?;
        }
        Some(current)
    }

    fn lookup<'a>(&self, scope: Scope<'a>, env: &Env<'a>) -> Option<Cow<'a, Value>> {
        if scope.is_root {
            if let Some(field) = self.flagd {
                return flagd_value(field, env);
            }
            if self.segments.is_empty() {
                // The whole top-level data includes the injected `$flagd`, as it does in flagd.
                let mut whole = scope.data.clone();
                if let (Value::Object(map), Some(flagd)) = (&mut whole, flagd_value(FlagdField::Whole, env)) {
                    map.insert("$flagd".to_owned(), flagd.into_owned());
                }
                return Some(Cow::Owned(whole));
            }
            if let Some(first) = env.attribute(self.attribute) {
                return self.below(first).map(Cow::Borrowed);
            }
        }
        let mut current = scope.data;
        for (segment, probe) in self.segments.iter() {
            current = child(current, segment, probe)?;
        }
        Some(Cow::Borrowed(current))
    }

    /// The value at this path when it is read straight from the data (`Some(None)`: absent), or
    /// `None` when the path needs the environment (`$flagd`, or the whole top-level data).
    #[inline]
    fn borrowed<'a>(&self, scope: Scope<'a>, env: &Env<'a>) -> Option<Option<&'a Value>> {
        if scope.is_root {
            if self.flagd.is_some() || self.segments.is_empty() {
                return None;
            }
            if let Some(first) = env.attribute(self.attribute) {
                return Some(self.below(first));
            }
        }
        let mut current = scope.data;
        for (segment, probe) in self.segments.iter() {
            match child(current, segment, probe) {
                Some(next) => current = next,
                None => return Some(None),
            }
        }
        Some(Some(current))
    }
}

#[inline(always)]
fn child<'v>(value: &'v Value, segment: &str, probe: &Probe) -> Option<&'v Value> {
    match value {
        Value::Object(map) => property(map, segment, probe),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    }
}

/// Objects up to this size are searched by a scan that compares lengths and probes (from the end
/// for keys that start late in the alphabet); see [`property`].
const PROPERTY_SCAN_LIMIT: usize = 16;

/// `map[key]` for a key whose probe was read at compile time. `serde_json::Map` is a B-tree in
/// key order: its search compares keys from the first, a `memcmp` call each whose outcome the
/// branch predictor cannot learn. A small object is scanned instead, comparing lengths and probes
/// (no key bytes are read except on a length match): from the end for a key that starts late in
/// the alphabet (`targetingKey`), from the front otherwise.
///
/// Always inlined, as is [`child`]: out of line, the call and the saved registers cost as much
/// as a short scan (callgrind: 42 of 355 instructions of an `in` evaluation, 61 of 383 of a
/// `fractional` one).
#[inline(always)]
pub(crate) fn property<'v>(map: &'v Map<String, Value>, key: &str, probe: &Probe) -> Option<&'v Value> {
    if map.len() > PROPERTY_SCAN_LIMIT {
        return map.get(key);
    }
    let matches = |(name, _): &(&String, &Value)| probe.matches(key.as_bytes(), name.as_bytes());
    if key.as_bytes().first().is_some_and(|first| *first >= b'n') {
        map.iter().rev().find(matches).map(|(_, value)| value)
    } else {
        map.iter().find(matches).map(|(_, value)| value)
    }
}

/// The context's `targetingKey` when it is a non-empty string (what `fractional` buckets by).
#[inline]
fn targeting_key<'a>(env: &Env<'a>) -> Option<&'a str> {
    targeting_key_in(env.root, env.attributes)
}

/// [`targeting_key`] of a context, read from its prepared attributes when there are some.
#[inline(always)]
pub(crate) fn targeting_key_in<'a>(root: &'a Value, attributes: Option<&'a [Option<&'a Value>]>) -> Option<&'a str> {
    const KEY: &str = "targetingKey";
    let found = match prepared_attribute(attributes, Some(TARGETING_KEY_ATTRIBUTE)) {
        Some(found) => found,
        None => {
            let Value::Object(map) = root else { return None };
            property(map, KEY, &Probe::new(KEY.as_bytes()))
        }
    };
    match found {
        Some(Value::String(key)) if !key.is_empty() => Some(key),
        _ => None,
    }
}

fn flagd_value<'a>(field: FlagdField, env: &Env<'a>) -> Option<Cow<'a, Value>> {
    match field {
        FlagdField::FlagKey => Some(Cow::Owned(Value::String(env.flag_key.to_owned()))),
        FlagdField::Timestamp => Some(Cow::Owned(Value::from(env.timestamp))),
        FlagdField::Whole => {
            let mut object = Map::new();
            object.insert("flagKey".to_owned(), Value::String(env.flag_key.to_owned()));
            object.insert("timestamp".to_owned(), Value::from(env.timestamp));
            Some(Cow::Owned(Value::Object(object)))
        }
        FlagdField::Absent => None,
    }
}

#[derive(Debug, Clone)]
enum Haystack {
    /// A constant list: `in` becomes a lookup by type (see [`ConstantList`]).
    Constant(Box<ConstantList>),
    Computed(Box<Expr>),
}

/// A constant JsonLogic array compiled for `in`, which tests membership with JavaScript's
/// `Array.prototype.includes` (SameValueZero): a string matches only an equal string, a number
/// only an equal number (`1` and `1.0` are the same number, `"1"` is not), booleans and `null`
/// only themselves, and an array or object never (a value from the context is never the same
/// object as one in the rule). Strings are found in a [`KeyTable`], numbers by a scan.
#[derive(Debug, Clone)]
struct ConstantList {
    strings: StringSet,
    numbers: Box<[f64]>,
    has_true: bool,
    has_false: bool,
    has_null: bool,
}

/// Lists of short strings up to this long are scanned word by word (see [`StringSet::Short`]).
const SHORT_SCAN_LIMIT: usize = 8;

/// Pads a [`StringSet::Short`] list: its top byte (0xff) is never the length byte of a
/// [`Probe::short_key`] word (0 to 7), so it equals no needle.
const NO_SHORT_KEY: u64 = u64::MAX;

/// Lists up to this long are scanned (every probe compared, no branch per entry); longer ones hashed.
const STRING_SCAN_LIMIT: usize = 8;

/// The strings of a constant list: a few are compared probe by probe (no hash, and the entries
/// can be loaded before the needle is known), many go in a [`KeyTable`].
#[derive(Debug, Clone)]
enum StringSet {
    /// Up to [`SHORT_SCAN_LIMIT`] strings of at most 7 bytes (country codes, plan names): each is
    /// one word ([`Probe::short_key`]), padded with [`NO_SHORT_KEY`] to a fixed length, so
    /// membership is that many word compares, unrolled, with no loop and no branch per entry.
    Short(Box<[u64; SHORT_SCAN_LIMIT]>),
    Few(Box<[(Probe, Box<str>)]>),
    Many(KeyTable),
}

impl StringSet {
    fn new<'s>(strings: impl Iterator<Item = &'s str> + Clone) -> Self {
        let count = strings.clone().count();
        if count <= SHORT_SCAN_LIMIT && strings.clone().all(|text| text.len() < 8) {
            let mut words = Box::new([NO_SHORT_KEY; SHORT_SCAN_LIMIT]);
            for (word, text) in words.iter_mut().zip(strings) {
                *word = Probe::short_key(text.as_bytes()).unwrap_or(NO_SHORT_KEY);
            }
            Self::Short(words)
        } else if count <= STRING_SCAN_LIMIT {
            Self::Few(strings.map(|text| (Probe::new(text.as_bytes()), Box::from(text))).collect())
        } else {
            Self::Many(KeyTable::new(strings))
        }
    }

    #[inline(always)]
    fn contains(&self, needle: &str) -> bool {
        match self {
            Self::Short(words) => {
                Probe::short_key(needle.as_bytes()).is_some_and(|needle| words.iter().fold(false, |found, word| found | (*word == needle)))
            }
            Self::Few(entries) => {
                let probe = Probe::new(needle.as_bytes());
                if needle.len() <= 16 {
                    entries.iter().fold(false, |found, (entry, _)| found | (*entry == probe))
                } else {
                    entries.iter().any(|(entry, text)| *entry == probe && **text == *needle)
                }
            }
            Self::Many(table) => table.contains(needle),
        }
    }
}

impl ConstantList {
    fn new(items: &[Value]) -> Self {
        Self {
            strings: StringSet::new(items.iter().filter_map(Value::as_str)),
            numbers: items.iter().filter_map(Value::as_number).filter_map(serde_json::Number::as_f64).collect(),
            has_true: items.contains(&Value::Bool(true)),
            has_false: items.contains(&Value::Bool(false)),
            has_null: items.contains(&Value::Null),
        }
    }

    /// Equal to `contains(&Value::Array(items), needle)` for the items it was built from.
    #[inline(always)]
    fn contains(&self, needle: &Value) -> bool {
        match needle {
            Value::String(text) => self.strings.contains(text),
            Value::Number(number) => number.as_f64().is_some_and(|value| self.numbers.contains(&value)),
            Value::Bool(true) => self.has_true,
            Value::Bool(false) => self.has_false,
            Value::Null => self.has_null,
            Value::Array(_) | Value::Object(_) => false,
        }
    }
}

#[derive(Debug, Clone)]
enum SemVerArg {
    Version(Box<Version>),
    Computed(Box<Expr>),
}

#[derive(Debug, Clone)]
enum SemVerOpArg {
    Known(SemVerOp),
    Computed(Box<Expr>),
}

#[derive(Debug, Clone)]
enum FractionalArm {
    /// `[variant, weight?]` written out in the rule.
    Written { variant: Expr, weight: Option<Expr> },
    /// An expression that must evaluate to `[variant, weight?]`.
    Computed(Expr),
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(Value),
    Array(Vec<Expr>),
    Var {
        path: VarPath,
        default: Option<Box<Expr>>,
    },
    DynamicVar {
        path: Box<Expr>,
        default: Option<Box<Expr>>,
    },
    If(Vec<Expr>),
    Equal {
        strict: bool,
        negate: bool,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Truthy(Box<Expr>),
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Less {
        or_equal: bool,
        args: Vec<Expr>,
    },
    Greater {
        or_equal: bool,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    In {
        needle: Box<Expr>,
        haystack: Haystack,
    },
    Cat(Vec<Expr>),
    Substr(Vec<Expr>),
    Add(Vec<Expr>),
    Subtract(Vec<Expr>),
    Multiply(Vec<Expr>),
    Divide(Box<Expr>, Box<Expr>),
    Modulo(Box<Expr>, Box<Expr>),
    Min(Vec<Expr>),
    Max(Vec<Expr>),
    Merge(Vec<Expr>),
    Map(Box<Expr>, Box<Expr>),
    Filter(Box<Expr>, Box<Expr>),
    Reduce(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    All(Box<Expr>, Box<Expr>),
    Some(Box<Expr>, Box<Expr>),
    None(Box<Expr>, Box<Expr>),
    Missing(Vec<Expr>),
    MissingSome(Box<Expr>, Box<Expr>),
    StartsWith(Box<Expr>, Box<Expr>),
    EndsWith(Box<Expr>, Box<Expr>),
    SemVer {
        left: SemVerArg,
        op: SemVerOpArg,
        right: SemVerArg,
    },
    Fractional {
        bucket_by: Option<Box<Expr>>,
        arms: Vec<FractionalArm>,
    },
    /// `fractional` whose distributions are all written out with constant variants and weights
    /// (the usual case): weights are summed at compile time and nothing is evaluated per arm.
    ConstantFractional {
        bucket_by: Option<Box<Expr>>,
        arms: Vec<(Value, u64)>,
        total: u64,
    },
}

/// A compiled targeting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    expr: Expr,
}

struct Compiler<'e> {
    evaluators: &'e Map<String, Value>,
    attributes: RefCell<Attributes>,
}

impl Rule {
    /// Compiles `targeting`; `path` names it in errors (e.g. `flags.new-checkout.targeting`).
    pub fn compile(targeting: &Value, evaluators: &Map<String, Value>, path: &str) -> Result<Rule, CompileError> {
        Self::compile_numbered(targeting, evaluators, path, &mut Attributes::default())
    }

    /// [`Rule::compile`], numbering the context properties the rule reads in `attributes` (shared
    /// by every rule of a flag set).
    pub(crate) fn compile_numbered(
        targeting: &Value,
        evaluators: &Map<String, Value>,
        path: &str,
        attributes: &mut Attributes,
    ) -> Result<Rule, CompileError> {
        let compiler = Compiler { evaluators, attributes: RefCell::new(std::mem::take(attributes)) };
        let expr = compiler.compile(targeting, path, 0, false);
        *attributes = compiler.attributes.into_inner();
        Ok(Rule { expr: expr? })
    }

    /// Evaluates the rule against `context` (the top-level data) for `flag_key` at `timestamp`
    /// (Unix seconds, exposed as `$flagd.timestamp`).
    pub fn evaluate<'a>(&'a self, context: &'a Value, flag_key: &'a str, timestamp: i64) -> Result<Cow<'a, Value>, EvalError> {
        let env = Env::new(flag_key, timestamp, context);
        self.expr.eval(Scope { data: context, is_root: true }, &env)
    }
}

fn error(path: &str, message: impl Into<String>) -> CompileError {
    CompileError { path: path.to_owned(), message: message.into() }
}

fn arg_list(args: &Value) -> &[Value] {
    match args {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    }
}

impl Compiler<'_> {
    fn compile(&self, value: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        if depth > MAX_RULE_DEPTH {
            return Err(error(
                path,
                format!("rule is nested deeper than {MAX_RULE_DEPTH} levels; flatten it or move parts into $evaluators"),
            ));
        }
        match value {
            Value::Array(items) => {
                let mut exprs = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    exprs.push(self.compile(item, &format!("{path}[{index}]"), depth + 1, in_evaluator)?);
                }
                Ok(constant_array(exprs))
            }
            Value::Object(map) if map.is_empty() => Ok(Expr::Literal(value.clone())),
            Value::Object(map) => {
                let mut entries = map.iter();
                let (Some((operator, args)), None) = (entries.next(), entries.next()) else {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    return Err(error(
                        path,
                        format!(
                            "a JsonLogic rule has exactly one operator key, found {} ({}); use one operator per object",
                            keys.len(),
                            keys.join(", ")
                        ),
                    ));
                };
                if operator == "$ref" {
                    return self.resolve_reference(args, path, depth, in_evaluator);
                }
                self.compile_operator(operator, args, &format!("{path}.{operator}"), depth + 1, in_evaluator)
            }
            literal => Ok(Expr::Literal(literal.clone())),
        }
    }

    fn resolve_reference(&self, name: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        let ref_path = format!("{path}.$ref");
        let Value::String(name) = name else {
            return Err(error(&ref_path, "$ref must be the name of an entry in $evaluators (a string)"));
        };
        if in_evaluator {
            return Err(error(
                &ref_path,
                "flagd resolves $ref one level deep only; inline this rule instead of referencing another evaluator",
            ));
        }
        let Some(rule) = self.evaluators.get(name) else {
            let known: Vec<&str> = self.evaluators.keys().map(String::as_str).collect();
            return Err(error(
                &ref_path,
                format!(
                    "unknown evaluator \"{name}\"; define it under $evaluators (defined: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            ));
        };
        self.compile(rule, &format!("$evaluators.{name}"), depth + 1, true)
    }

    fn compile_args(&self, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Vec<Expr>, CompileError> {
        let is_list = args.is_array();
        arg_list(args)
            .iter()
            .enumerate()
            .map(|(index, arg)| {
                let arg_path = if is_list { format!("{path}[{index}]") } else { path.to_owned() };
                self.compile(arg, &arg_path, depth + 1, in_evaluator)
            })
            .collect()
    }

    fn compile_operator(&self, operator: &str, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        match operator {
            "var" => return self.compile_var(args, path, depth, in_evaluator),
            "in" => return self.compile_in(args, path, depth, in_evaluator),
            "sem_ver" => return self.compile_sem_ver(args, path, depth, in_evaluator),
            "fractional" => return self.compile_fractional(args, path, depth, in_evaluator),
            _ => {}
        }
        let mut exprs = self.compile_args(args, path, depth, in_evaluator)?;
        let count = exprs.len();
        let arity = |min: usize, max: usize, usage: &str| -> Result<(), CompileError> {
            if count < min || count > max {
                Err(error(path, format!("\"{operator}\" takes {usage}, got {count}")))
            } else {
                Ok(())
            }
        };
        let take_two = |exprs: &mut Vec<Expr>| -> (Box<Expr>, Box<Expr>) {
            let right = exprs.pop().map(Box::new).unwrap_or_else(|| Box::new(Expr::Literal(Value::Null)));
            let left = exprs.pop().map(Box::new).unwrap_or_else(|| Box::new(Expr::Literal(Value::Null)));
            (left, right)
        };
        let expr = match operator {
            "if" => {
                arity(1, 3, "1 to 3 arguments (condition, then, else; nest another \"if\" in the else branch for more)")?;
                Expr::If(exprs)
            }
            "==" | "===" | "!=" | "!==" => {
                arity(2, 2, "2 arguments")?;
                let (left, right) = take_two(&mut exprs);
                Expr::Equal { strict: operator.len() == 3, negate: operator.starts_with('!'), left, right }
            }
            "!" | "!!" => {
                arity(1, 1, "1 argument")?;
                let only = Box::new(exprs.remove(0));
                if operator == "!" {
                    Expr::Not(only)
                } else {
                    Expr::Truthy(only)
                }
            }
            "or" | "and" => {
                arity(1, usize::MAX, "at least 1 argument")?;
                if operator == "or" {
                    Expr::Or(exprs)
                } else {
                    Expr::And(exprs)
                }
            }
            "<" | "<=" => {
                arity(2, 3, "2 arguments, or 3 for \"between\"")?;
                Expr::Less { or_equal: operator == "<=", args: exprs }
            }
            ">" | ">=" => {
                arity(2, 2, "2 arguments")?;
                let (left, right) = take_two(&mut exprs);
                Expr::Greater { or_equal: operator == ">=", left, right }
            }
            "cat" => {
                arity(1, usize::MAX, "at least 1 argument")?;
                Expr::Cat(exprs)
            }
            "substr" => {
                arity(2, 3, "2 or 3 arguments (string, start, length)")?;
                Expr::Substr(exprs)
            }
            "+" | "*" | "min" | "max" | "merge" => {
                arity(1, usize::MAX, "at least 1 argument")?;
                match operator {
                    "+" => Expr::Add(exprs),
                    "*" => Expr::Multiply(exprs),
                    "min" => Expr::Min(exprs),
                    "max" => Expr::Max(exprs),
                    _ => Expr::Merge(exprs),
                }
            }
            "-" => {
                arity(1, 2, "1 or 2 arguments")?;
                Expr::Subtract(exprs)
            }
            "/" | "%" => {
                arity(2, 2, "2 arguments")?;
                let (left, right) = take_two(&mut exprs);
                if operator == "/" {
                    Expr::Divide(left, right)
                } else {
                    Expr::Modulo(left, right)
                }
            }
            "map" | "filter" | "all" | "some" | "none" => {
                arity(2, 2, "2 arguments (an array and a rule applied to each element)")?;
                let (array, rule) = take_two(&mut exprs);
                match operator {
                    "map" => Expr::Map(array, rule),
                    "filter" => Expr::Filter(array, rule),
                    "all" => Expr::All(array, rule),
                    "some" => Expr::Some(array, rule),
                    _ => Expr::None(array, rule),
                }
            }
            "reduce" => {
                arity(2, 3, "2 or 3 arguments (an array, a rule over current and accumulator, an initial value)")?;
                let initial = if count == 3 { exprs.pop().map(Box::new) } else { None };
                let (array, rule) = take_two(&mut exprs);
                Expr::Reduce(array, rule, initial)
            }
            "missing" => Expr::Missing(exprs),
            "missing_some" => {
                arity(2, 2, "2 arguments (a minimum count and an array of paths)")?;
                let (minimum, keys) = take_two(&mut exprs);
                Expr::MissingSome(minimum, keys)
            }
            "starts_with" | "ends_with" => {
                arity(2, 2, "2 arguments (a string and a prefix or suffix)")?;
                let (text, affix) = take_two(&mut exprs);
                if operator == "starts_with" {
                    Expr::StartsWith(text, affix)
                } else {
                    Expr::EndsWith(text, affix)
                }
            }
            unknown => {
                return Err(error(path, format!("unknown operator \"{unknown}\"; flagd supports {}", OPERATORS.join(" "))));
            }
        };
        Ok(expr)
    }

    fn compile_var(&self, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        let items = arg_list(args);
        let (path_arg, default) = match items {
            [] => (&Value::Null, None),
            [only] => (only, None),
            [first, default] => (first, Some(Box::new(self.compile(default, &format!("{path}[1]"), depth + 1, in_evaluator)?))),
            _ => return Err(error(path, "\"var\" takes a path and an optional default value")),
        };
        let expr = match path_arg {
            Value::Null => Expr::Var { path: VarPath::parse(""), default },
            Value::String(text) => Expr::Var { path: VarPath::parse(text).numbered(&mut self.attributes.borrow_mut()), default },
            Value::Number(number) => {
                let text = js::json_number_to_js_string(number);
                Expr::Var { path: VarPath::parse(&text).numbered(&mut self.attributes.borrow_mut()), default }
            }
            computed => {
                let path_expr = self.compile(computed, &format!("{path}[0]"), depth + 1, in_evaluator)?;
                Expr::DynamicVar { path: Box::new(path_expr), default }
            }
        };
        let reads_clock = match &expr {
            Expr::Var { path, .. } => path.segments.is_empty() || matches!(path.flagd, Some(FlagdField::Timestamp | FlagdField::Whole)),
            _ => true,
        };
        if reads_clock {
            self.attributes.borrow_mut().reads_clock = true;
        }
        Ok(expr)
    }

    fn compile_in(&self, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        let mut exprs = self.compile_args(args, path, depth, in_evaluator)?;
        if exprs.len() != 2 {
            return Err(error(path, format!("\"in\" takes 2 arguments (a value and an array or string), got {}", exprs.len())));
        }
        let haystack = exprs.pop().unwrap_or(Expr::Literal(Value::Null));
        let needle = Box::new(exprs.pop().unwrap_or(Expr::Literal(Value::Null)));
        let haystack = match &haystack {
            Expr::Literal(Value::Array(items)) => Haystack::Constant(Box::new(ConstantList::new(items))),
            _ => Haystack::Computed(Box::new(haystack)),
        };
        Ok(Expr::In { needle, haystack })
    }

    fn compile_sem_ver(&self, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        let items = arg_list(args);
        let [left, op, right] = items else {
            return Err(error(path, format!("\"sem_ver\" takes 3 arguments (version, operator, version), got {}", items.len())));
        };
        let version_arg = |value: &Value, index: usize| -> Result<SemVerArg, CompileError> {
            let arg_path = format!("{path}[{index}]");
            match value {
                Value::String(text) => parse_version(text).map(|version| SemVerArg::Version(Box::new(version))).ok_or_else(|| {
                    error(&arg_path, format!("\"{text}\" is not a semantic version (MAJOR.MINOR.PATCH, e.g. \"1.4.0\" or \"2.0.0-rc.1\")"))
                }),
                other => Ok(SemVerArg::Computed(Box::new(self.compile(other, &arg_path, depth + 1, in_evaluator)?))),
            }
        };
        let op = match op {
            Value::String(text) => SemVerOp::parse(text).map(SemVerOpArg::Known).ok_or_else(|| {
                error(&format!("{path}[1]"), format!("unknown sem_ver operator \"{text}\"; use one of {}", SemVerOp::ALL.join(" ")))
            })?,
            other => SemVerOpArg::Computed(Box::new(self.compile(other, &format!("{path}[1]"), depth + 1, in_evaluator)?)),
        };
        Ok(Expr::SemVer { left: version_arg(left, 0)?, op, right: version_arg(right, 2)? })
    }

    fn compile_fractional(&self, args: &Value, path: &str, depth: usize, in_evaluator: bool) -> Result<Expr, CompileError> {
        let items = arg_list(args);
        let (bucket_by, arm_values, first_arm_index) = match items.first() {
            None => return Err(error(path, "\"fractional\" needs at least one [variant, weight] distribution")),
            Some(Value::Array(_)) => (None, items, 0),
            Some(bucket) => {
                let expr = self.compile(bucket, &format!("{path}[0]"), depth + 1, in_evaluator)?;
                (Some(Box::new(expr)), &items[1..], 1)
            }
        };
        if arm_values.is_empty() {
            return Err(error(path, "\"fractional\" needs at least one [variant, weight] distribution after the bucketing value"));
        }
        let mut arms = Vec::with_capacity(arm_values.len());
        let mut constant_total: u64 = 0;
        for (offset, arm) in arm_values.iter().enumerate() {
            let arm_path = format!("{path}[{}]", offset + first_arm_index);
            let Value::Array(parts) = arm else {
                arms.push(FractionalArm::Computed(self.compile(arm, &arm_path, depth + 1, in_evaluator)?));
                continue;
            };
            let (variant, weight) = match parts.as_slice() {
                [variant] => (variant, None),
                [variant, weight] => (variant, Some(weight)),
                _ => return Err(error(&arm_path, "a distribution is [variant] or [variant, weight]")),
            };
            if matches!(variant, Value::Array(_)) {
                return Err(error(&format!("{arm_path}[0]"), "the variant must be a string, boolean, number or null"));
            }
            let variant = self.compile(variant, &format!("{arm_path}[0]"), depth + 2, in_evaluator)?;
            if let Expr::Literal(Value::Object(_)) = variant {
                return Err(error(&format!("{arm_path}[0]"), "the variant must be a string, boolean, number or null"));
            }
            let weight = match weight {
                None => {
                    constant_total += 1;
                    None
                }
                Some(Value::Number(number)) => {
                    let weight_path = format!("{arm_path}[1]");
                    let value = number.as_f64().unwrap_or(f64::NAN);
                    if value.fract() != 0.0 || !value.is_finite() {
                        return Err(error(
                            &weight_path,
                            format!("weight {number} must be a whole number (weights are relative, e.g. 25 or 2500)"),
                        ));
                    }
                    if value < 0.0 {
                        return Err(error(&weight_path, format!("weight {number} must not be negative")));
                    }
                    if value > MAX_FRACTIONAL_WEIGHT as f64 {
                        return Err(error(&weight_path, format!("weight {number} exceeds {MAX_FRACTIONAL_WEIGHT}")));
                    }
                    constant_total += value as u64;
                    Some(Expr::Literal(Value::Number(number.clone())))
                }
                Some(computed) => Some(self.compile(computed, &format!("{arm_path}[1]"), depth + 2, in_evaluator)?),
            };
            arms.push(FractionalArm::Written { variant, weight });
        }
        if constant_total > MAX_FRACTIONAL_WEIGHT {
            return Err(error(path, format!("the weights add up to {constant_total}, more than {MAX_FRACTIONAL_WEIGHT}; scale them down")));
        }
        let constant_arms: Option<Vec<(Value, u64)>> = arms
            .iter()
            .map(|arm| match arm {
                FractionalArm::Written { variant: Expr::Literal(variant), weight: None } => Some((variant.clone(), 1)),
                FractionalArm::Written { variant: Expr::Literal(variant), weight: Some(Expr::Literal(weight)) } => {
                    distribution(Cow::Borrowed(variant), Some(weight)).map(|(variant, weight)| (variant.into_owned(), weight))
                }
                _ => None,
            })
            .collect();
        Ok(match constant_arms {
            // A constant bucketing value that is not a string (or null) makes the operator null at
            // run time; leave that rare shape to the general path.
            Some(arms) if !matches!(bucket_by.as_deref(), Some(Expr::Literal(value)) if !value.is_string() && !value.is_null()) => {
                Expr::ConstantFractional { bucket_by, arms, total: constant_total }
            }
            _ => Expr::Fractional { bucket_by, arms },
        })
    }
}

fn constant_array(exprs: Vec<Expr>) -> Expr {
    if exprs.iter().all(|expr| matches!(expr, Expr::Literal(_))) {
        let values = exprs
            .into_iter()
            .map(|expr| match expr {
                Expr::Literal(value) => value,
                _ => Value::Null,
            })
            .collect();
        Expr::Literal(Value::Array(values))
    } else {
        Expr::Array(exprs)
    }
}

type Evaluated<'a> = Result<Cow<'a, Value>, EvalError>;

fn boolean<'a>(flag: bool) -> Evaluated<'a> {
    Ok(Cow::Owned(Value::Bool(flag)))
}

fn number<'a>(value: f64) -> Evaluated<'a> {
    Ok(Cow::Owned(number_value(value)))
}

fn check_length(length: usize) -> Result<(), EvalError> {
    if length > MAX_BUILT_LENGTH {
        Err(EvalError::OutputTooLarge)
    } else {
        Ok(())
    }
}

impl Expr {
    /// [`Expr::eval`], with a shortcut for the commonest operand: a `var` without a default read
    /// straight from the data.
    #[inline]
    fn operand<'a>(&'a self, scope: Scope<'a>, env: &Env<'a>) -> Evaluated<'a> {
        if let Expr::Var { path, default: None } = self {
            if let Some(found) = path.borrowed(scope, env) {
                env.step()?;
                return Ok(match found {
                    Some(value) => Cow::Borrowed(value),
                    None => Cow::Owned(Value::Null),
                });
            }
        }
        self.eval(scope, env)
    }

    /// The truthiness of the expression's value, computed without materialising the value for the
    /// operators that produce booleans (conditions of `if`, `and`, `or`, `!`). Always equal to
    /// `truthy(&self.eval(..)?)`.
    fn test<'a>(&'a self, scope: Scope<'a>, env: &Env<'a>) -> Result<bool, EvalError> {
        match self {
            Expr::In { needle, haystack } => {
                env.step()?;
                let needle = needle.operand(scope, env)?;
                Ok(match haystack {
                    Haystack::Constant(list) => list.contains(&needle),
                    Haystack::Computed(haystack) => contains(&*haystack.eval(scope, env)?, &needle),
                })
            }
            Expr::Equal { strict, negate, left, right } => {
                env.step()?;
                let left = left.operand(scope, env)?;
                let right = right.operand(scope, env)?;
                let equal = if *strict { strict_equal(&left, &right) } else { loose_equal(&left, &right) };
                Ok(equal != *negate)
            }
            Expr::Not(arg) => {
                env.step()?;
                Ok(!arg.test(scope, env)?)
            }
            Expr::Truthy(arg) => {
                env.step()?;
                arg.test(scope, env)
            }
            // `and` yields its first falsy argument or its last: truthy exactly when all are truthy.
            Expr::And(args) => {
                env.step()?;
                for arg in args {
                    if !arg.test(scope, env)? {
                        return Ok(false);
                    }
                }
                Ok(!args.is_empty())
            }
            Expr::Or(args) => {
                env.step()?;
                for arg in args {
                    if arg.test(scope, env)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Expr::Var { path, default } => {
                env.step()?;
                match path.lookup(scope, env) {
                    Some(found) if !found.is_null() => Ok(truthy(&found)),
                    _ => default.as_ref().map_or(Ok(false), |default| default.test(scope, env)),
                }
            }
            Expr::Literal(value) => {
                env.step()?;
                Ok(truthy(value))
            }
            other => Ok(truthy(&*other.eval(scope, env)?)),
        }
    }

    fn eval<'a>(&'a self, scope: Scope<'a>, env: &Env<'a>) -> Evaluated<'a> {
        env.step()?;
        match self {
            Expr::Literal(value) => Ok(Cow::Borrowed(value)),
            Expr::Array(items) => {
                let values = items.iter().map(|item| item.eval(scope, env).map(Cow::into_owned)).collect::<Result<Vec<_>, _>>()?;
                Ok(Cow::Owned(Value::Array(values)))
            }
            Expr::Var { path, default } => match path.lookup(scope, env) {
                Some(found) if !found.is_null() => Ok(found),
                _ => default.as_ref().map_or(Ok(Cow::Owned(Value::Null)), |default| default.eval(scope, env)),
            },
            Expr::DynamicVar { path, default } => {
                let path_value = path.eval(scope, env)?;
                let var_path = match path_value.as_ref() {
                    Value::Null => VarPath::parse(""),
                    other => VarPath::parse(&as_js_str(other)),
                };
                match var_path.lookup(scope, env) {
                    Some(found) if !found.is_null() => Ok(found),
                    _ => default.as_ref().map_or(Ok(Cow::Owned(Value::Null)), |default| default.eval(scope, env)),
                }
            }
            Expr::If(args) => {
                let mut index = 0;
                while index + 1 < args.len() {
                    if args[index].test(scope, env)? {
                        return args[index + 1].eval(scope, env);
                    }
                    index += 2;
                }
                match args.get(index) {
                    Some(otherwise) if index + 1 == args.len() => otherwise.eval(scope, env),
                    _ => Ok(Cow::Owned(Value::Null)),
                }
            }
            Expr::Equal { strict, negate, left, right } => {
                let left = left.eval(scope, env)?;
                let right = right.eval(scope, env)?;
                let equal = if *strict { strict_equal(&left, &right) } else { loose_equal(&left, &right) };
                boolean(equal != *negate)
            }
            Expr::Not(arg) => boolean(!arg.test(scope, env)?),
            Expr::Truthy(arg) => boolean(arg.test(scope, env)?),
            Expr::Or(args) => {
                let mut last = Cow::Owned(Value::Null);
                for arg in args {
                    last = arg.eval(scope, env)?;
                    if truthy(&last) {
                        break;
                    }
                }
                Ok(last)
            }
            Expr::And(args) => {
                let mut last = Cow::Owned(Value::Null);
                for arg in args {
                    last = arg.eval(scope, env)?;
                    if !truthy(&last) {
                        break;
                    }
                }
                Ok(last)
            }
            Expr::Less { or_equal, args } => {
                let first = args[0].eval(scope, env)?;
                let second = args[1].eval(scope, env)?;
                let mut holds = js::less_than(&first, &second, *or_equal);
                if let Some(third) = args.get(2) {
                    // JavaScript's `&&` short-circuits, but evaluation has no side effects, so only the result matters.
                    let third = third.eval(scope, env)?;
                    holds = holds && js::less_than(&second, &third, *or_equal);
                }
                boolean(holds)
            }
            Expr::Greater { or_equal, left, right } => {
                let left = left.eval(scope, env)?;
                let right = right.eval(scope, env)?;
                boolean(js::less_than(&right, &left, *or_equal))
            }
            Expr::In { needle, haystack } => {
                let needle = needle.operand(scope, env)?;
                match haystack {
                    Haystack::Constant(list) => boolean(list.contains(&needle)),
                    Haystack::Computed(haystack) => boolean(contains(&*haystack.eval(scope, env)?, &needle)),
                }
            }
            Expr::Cat(args) => {
                let mut text = String::new();
                for arg in args {
                    text.push_str(&as_js_str(&*arg.eval(scope, env)?));
                    check_length(text.len())?;
                }
                Ok(Cow::Owned(Value::String(text)))
            }
            Expr::Substr(args) => {
                let source = args[0].eval(scope, env)?;
                let start = to_number(&*args[1].eval(scope, env)?);
                let length = match args.get(2) {
                    Some(length) => Some(to_number(&*length.eval(scope, env)?)),
                    None => None,
                };
                Ok(Cow::Owned(Value::String(substr(&as_js_str(&source), start, length))))
            }
            Expr::Add(args) => {
                let mut sum = 0.0;
                for arg in args {
                    sum += to_number(&*arg.eval(scope, env)?);
                }
                number(sum)
            }
            Expr::Multiply(args) => {
                let mut product = 1.0;
                for arg in args {
                    product *= to_number(&*arg.eval(scope, env)?);
                }
                number(product)
            }
            Expr::Subtract(args) => {
                let first = to_number(&*args[0].eval(scope, env)?);
                match args.get(1) {
                    Some(second) => number(first - to_number(&*second.eval(scope, env)?)),
                    None => number(-first),
                }
            }
            Expr::Divide(left, right) => number(to_number(&*left.eval(scope, env)?) / to_number(&*right.eval(scope, env)?)),
            Expr::Modulo(left, right) => number(to_number(&*left.eval(scope, env)?) % to_number(&*right.eval(scope, env)?)),
            Expr::Min(args) | Expr::Max(args) => {
                let is_min = matches!(self, Expr::Min(_));
                let mut best = if is_min { f64::INFINITY } else { f64::NEG_INFINITY };
                for arg in args {
                    let value = to_number(&*arg.eval(scope, env)?);
                    if value.is_nan() {
                        best = f64::NAN;
                    } else if !best.is_nan() {
                        best = if is_min { best.min(value) } else { best.max(value) };
                    }
                }
                number(best)
            }
            Expr::Merge(args) => {
                let mut merged = Vec::new();
                for arg in args {
                    match arg.eval(scope, env)?.into_owned() {
                        Value::Array(items) => merged.extend(items),
                        other => merged.push(other),
                    }
                    check_length(merged.len())?;
                }
                Ok(Cow::Owned(Value::Array(merged)))
            }
            Expr::Map(array, rule) => {
                let array = array.eval(scope, env)?;
                let mut mapped = Vec::new();
                for item in elements(&array) {
                    mapped.push(rule.eval(Scope { data: item, is_root: false }, env)?.into_owned());
                }
                Ok(Cow::Owned(Value::Array(mapped)))
            }
            Expr::Filter(array, rule) => {
                let array = array.eval(scope, env)?;
                let mut kept = Vec::new();
                for item in elements(&array) {
                    if truthy(&*rule.eval(Scope { data: item, is_root: false }, env)?) {
                        kept.push(item.clone());
                    }
                }
                Ok(Cow::Owned(Value::Array(kept)))
            }
            Expr::Reduce(array, rule, initial) => {
                let array = array.eval(scope, env)?;
                let mut accumulator = match initial {
                    Some(initial) => initial.eval(scope, env)?.into_owned(),
                    None => Value::Null,
                };
                for item in elements(&array) {
                    let mut data = Map::new();
                    data.insert("current".to_owned(), item.clone());
                    data.insert("accumulator".to_owned(), accumulator);
                    let data = Value::Object(data);
                    accumulator = rule.eval(Scope { data: &data, is_root: false }, env)?.into_owned();
                }
                Ok(Cow::Owned(accumulator))
            }
            Expr::All(array, rule) | Expr::Some(array, rule) | Expr::None(array, rule) => {
                let array = array.eval(scope, env)?;
                let items = elements(&array);
                let mut any_true = false;
                let mut all_true = true;
                for item in items {
                    if truthy(&*rule.eval(Scope { data: item, is_root: false }, env)?) {
                        any_true = true;
                    } else {
                        all_true = false;
                    }
                    // Short-circuit as JavaScript's every/some do.
                    match self {
                        Expr::All(..) if !all_true => break,
                        Expr::Some(..) | Expr::None(..) if any_true => break,
                        _ => {}
                    }
                }
                boolean(match self {
                    Expr::All(..) => !items.is_empty() && all_true,
                    Expr::Some(..) => any_true,
                    _ => !any_true,
                })
            }
            Expr::Missing(args) => {
                let mut keys = Vec::with_capacity(args.len());
                for arg in args {
                    keys.push(arg.eval(scope, env)?);
                }
                let keys: Vec<Value> = match keys.first().map(|first| first.as_ref()) {
                    Some(Value::Array(list)) => list.clone(),
                    _ => keys.into_iter().map(Cow::into_owned).collect(),
                };
                Ok(Cow::Owned(Value::Array(missing_keys(&keys, scope, env))))
            }
            Expr::MissingSome(minimum, keys) => {
                let minimum = to_number(&*minimum.eval(scope, env)?);
                let keys = keys.eval(scope, env)?;
                let keys = elements(&keys);
                let missing = missing_keys(keys, scope, env);
                let present = (keys.len() - missing.len()) as f64;
                Ok(Cow::Owned(Value::Array(if present >= minimum { Vec::new() } else { missing })))
            }
            Expr::StartsWith(text, affix) | Expr::EndsWith(text, affix) => {
                let text = text.operand(scope, env)?;
                let affix = affix.operand(scope, env)?;
                let (Some(text), Some(affix)) = (text.as_str(), affix.as_str()) else {
                    return Ok(Cow::Owned(Value::Null));
                };
                boolean(if matches!(self, Expr::StartsWith(..)) { text.starts_with(affix) } else { text.ends_with(affix) })
            }
            Expr::SemVer { left, op, right } => {
                let left = sem_ver_arg(left, scope, env)?;
                let right = sem_ver_arg(right, scope, env)?;
                let op = match op {
                    SemVerOpArg::Known(op) => Some(*op),
                    SemVerOpArg::Computed(expr) => expr.eval(scope, env)?.as_str().and_then(SemVerOp::parse),
                };
                match (left, op, right) {
                    (Some(left), Some(op), Some(right)) => boolean(op.holds(&left, &right)),
                    _ => Ok(Cow::Owned(Value::Null)),
                }
            }
            Expr::Fractional { bucket_by, arms } => fractional(bucket_by.as_deref(), arms, scope, env),
            Expr::ConstantFractional { bucket_by, arms, total } => {
                match pick_constant_fractional(bucket_by.as_deref(), arms, *total, None, scope, env)? {
                    Pick::Arm(index) => Ok(Cow::Borrowed(&arms[index].0)),
                    Pick::Null => Ok(Cow::Owned(Value::Null)),
                    Pick::Computed(value) => Ok(Cow::Owned(*value)),
                }
            }
        }
    }
}

/// What a `fractional` with constant distributions chose. Two words, so it is returned in
/// registers; the rare computed result is boxed.
enum Pick {
    /// The distribution at this index.
    Arm(usize),
    Null,
    /// The result of the general path (a bucketing expression that yielded a distribution).
    Computed(Box<Value>),
}

/// [`Expr::ConstantFractional`]: hashes the bucketing string as a stream (a `cat` is hashed part by
/// part, never built), or `flagKey + targetingKey` when there is none; `flag_key_hashed` is the hash
/// state after the flag key, when the caller computed it once at compile time.
fn pick_constant_fractional<'a>(
    bucket_by: Option<&'a Expr>,
    arms: &'a [(Value, u64)],
    total: u64,
    flag_key_hashed: Option<&Murmur3>,
    scope: Scope<'a>,
    env: &Env<'a>,
) -> Result<Pick, EvalError> {
    let mut hasher = Murmur3::with_seed(0);
    let by_targeting_key = match bucket_by {
        None => true,
        Some(Expr::Cat(parts)) => {
            env.step()?;
            let mut length = 0;
            for part in parts {
                length += hash_js_str(part, scope, env, &mut hasher)?;
                check_length(length)?;
            }
            false
        }
        Some(expr) => {
            let bucket_value = expr.eval(scope, env)?;
            match bucket_value.as_ref() {
                Value::String(text) => {
                    hasher.write(text.as_bytes());
                    false
                }
                Value::Null => true,
                // Anything else (including a computed distribution) takes the general path's rules.
                _ => return Ok(Pick::Computed(Box::new(fractional_slow_path(Some(bucket_value), arms, env)?.into_owned()))),
            }
        }
    };
    if by_targeting_key {
        let Some(key) = targeting_key(env) else { return Ok(Pick::Null) };
        match flag_key_hashed {
            Some(state) => hasher = state.clone(),
            None => hasher.write(env.flag_key.as_bytes()),
        }
        hasher.write(key.as_bytes());
    }
    Ok(pick_arm(hasher.finish(), arms, total).map_or(Pick::Null, Pick::Arm))
}

/// The distribution a bucketing hash falls in: `bucket = (hash × total) >> 32`, and the first
/// distribution whose cumulative weight exceeds it; `None` (the operator's `null`) when the weights
/// sum to 0 or the bucket lies past them.
#[inline(always)]
fn pick_arm(hash: u32, arms: &[(Value, u64)], total: u64) -> Option<usize> {
    if total == 0 {
        return None;
    }
    let bucket = (u64::from(hash) * total) >> 32;
    // The first distribution whose cumulative weight exceeds the bucket is the number of those that
    // do not; counted without a branch, as the bucket is random and the branch would mispredict.
    let mut cumulative = 0;
    let mut index = 0;
    for (_, weight) in arms {
        cumulative += weight;
        index += usize::from(cumulative <= bucket);
    }
    (index < arms.len()).then_some(index)
}

/// `fractional` without a bucketing expression and with constant distributions: buckets
/// `flagKey + targetingKey` from the hash state after the flag key; `None` when there is no
/// (non-empty) targeting key or no distribution is picked. What [`pick_constant_fractional`] picks
/// for such an operator.
#[inline(always)]
pub(crate) fn pick_by_targeting_key(
    flag_key_hashed: &Murmur3,
    targeting_key: Option<&str>,
    arms: &[(Value, u64)],
    total: u64,
) -> Option<usize> {
    let key = targeting_key?;
    let mut hasher = flag_key_hashed.clone();
    hasher.write(key.as_bytes());
    pick_arm(hasher.finish(), arms, total)
}

/// Feeds `expr`'s value as `cat` would print it into `hasher`; returns the byte count. Reads
/// `$flagd.flagKey` from the environment instead of building a string for it.
fn hash_js_str<'a>(expr: &'a Expr, scope: Scope<'a>, env: &Env<'a>, hasher: &mut Murmur3) -> Result<usize, EvalError> {
    if let (Expr::Var { path: VarPath { flagd: Some(FlagdField::FlagKey), .. }, .. }, true) = (expr, scope.is_root) {
        env.step()?;
        hasher.write(env.flag_key.as_bytes());
        return Ok(env.flag_key.len());
    }
    let value = expr.operand(scope, env)?;
    let text = as_js_str(&value);
    hasher.write(text.as_bytes());
    Ok(text.len())
}

fn elements(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// JsonLogic `in`: substring when the haystack is a string, strict membership when it is an array.
pub(crate) fn contains(haystack: &Value, needle: &Value) -> bool {
    match haystack {
        Value::String(text) => text.contains(&*as_js_str(needle)),
        Value::Array(items) => items.iter().any(|item| strict_equal(item, needle)),
        _ => false,
    }
}

/// JavaScript `String.prototype.substr` semantics as json-logic-js uses them (negative start counts
/// from the end; negative length drops characters from the end). Indexes count characters.
pub(crate) fn substr(source: &str, start: f64, length: Option<f64>) -> String {
    let chars: Vec<char> = source.chars().collect();
    let total = chars.len() as f64;
    let start = if start.is_nan() { 0.0 } else { start.trunc() };
    let begin = if start < 0.0 { (total + start).max(0.0) } else { start.min(total) } as usize;
    let rest = &chars[begin..];
    let take = match length {
        None => rest.len(),
        Some(length) if length.is_nan() => 0,
        Some(length) if length < 0.0 => (rest.len() as f64 + length.trunc()).max(0.0) as usize,
        Some(length) => length.trunc().min(rest.len() as f64) as usize,
    };
    rest[..take].iter().collect()
}

fn missing_keys<'a>(keys: &[Value], scope: Scope<'a>, env: &Env<'a>) -> Vec<Value> {
    keys.iter()
        .filter(|key| {
            let path = match key {
                Value::Null => VarPath::parse(""),
                other => VarPath::parse(&as_js_str(other)),
            };
            match path.lookup(scope, env) {
                None => true,
                // flagd-core (json-logic-engine) counts only absent and null as missing; json-logic-js
                // also counted "", which we do not.
                Some(found) => found.is_null(),
            }
        })
        .cloned()
        .collect()
}

fn sem_ver_arg<'a>(arg: &'a SemVerArg, scope: Scope<'a>, env: &Env<'a>) -> Result<Option<Cow<'a, Version>>, EvalError> {
    Ok(match arg {
        SemVerArg::Version(version) => Some(Cow::Borrowed(&**version)),
        SemVerArg::Computed(expr) => parse_context_version(&*expr.operand(scope, env)?).map(Cow::Owned),
    })
}

/// flagd `fractional` v2 (reference §2.1, flagd PR #1909): murmur3 x86_32 (seed 0) of the bucketing
/// string, `bucket = (hash * Σweights) >> 32`, first distribution whose cumulative weight exceeds
/// the bucket. Any invalid input makes the operator return `null` (the flag then falls back to its
/// default variant), as flagd does.
fn fractional<'a>(bucket_by: Option<&'a Expr>, arms: &'a [FractionalArm], scope: Scope<'a>, env: &Env<'a>) -> Evaluated<'a> {
    let null = || Ok(Cow::Owned(Value::Null));
    let mut hasher = Murmur3::with_seed(0);
    let bucket_value = match bucket_by {
        Some(expr) => Some(expr.eval(scope, env)?),
        None => None,
    };
    // flagd: a string first argument is the bucketing value; otherwise (null, or a distribution
    // computed by an expression) the bucketing value is flagKey + targetingKey, no separator.
    let mut leading_arm = None;
    match bucket_value.as_deref() {
        Some(Value::String(text)) => hasher.write(text.as_bytes()),
        Some(Value::Null | Value::Array(_)) | None => {
            match env.root.get("targetingKey") {
                Some(Value::String(key)) if !key.is_empty() => {
                    hasher.write(env.flag_key.as_bytes());
                    hasher.write(key.as_bytes());
                }
                _ => return null(),
            }
            if let Some(Value::Array(parts)) = bucket_value.as_deref() {
                let checked = match parts.as_slice() {
                    [variant] => distribution(Cow::Owned(variant.clone()), None),
                    [variant, weight] => distribution(Cow::Owned(variant.clone()), Some(weight)),
                    _ => None,
                };
                match checked {
                    Some(arm) => leading_arm = Some(arm),
                    None => return null(),
                }
            }
        }
        Some(_) => return null(),
    }
    // First pass: validate every distribution and add up the weights.
    let mut total: u64 = leading_arm.as_ref().map_or(0, |(_, weight)| *weight);
    for arm in arms {
        match arm_parts(arm, scope, env)? {
            Some((_, weight)) => total += weight,
            None => return null(),
        }
        if total > MAX_FRACTIONAL_WEIGHT {
            return null();
        }
    }
    if total == 0 {
        return null();
    }
    let bucket = (u64::from(hasher.finish()) * total) >> 32;
    let mut cumulative: u64 = 0;
    if let Some((variant, weight)) = leading_arm {
        cumulative += weight;
        if cumulative > bucket {
            return Ok(Cow::Owned(variant.into_owned()));
        }
    }
    for arm in arms {
        let Some((variant, weight)) = arm_parts(arm, scope, env)? else { return null() };
        cumulative += weight;
        if cumulative > bucket {
            return Ok(variant);
        }
    }
    null()
}

/// The variant value and the clamped weight of one distribution, or `None` when it is invalid.
fn arm_parts<'a>(arm: &'a FractionalArm, scope: Scope<'a>, env: &Env<'a>) -> Result<Option<(Cow<'a, Value>, u64)>, EvalError> {
    match arm {
        FractionalArm::Written { variant, weight } => {
            let variant = variant.eval(scope, env)?;
            let weight = match weight {
                Some(weight) => Some(weight.eval(scope, env)?),
                None => None,
            };
            Ok(distribution(variant, weight.as_deref()))
        }
        FractionalArm::Computed(expr) => {
            let value = expr.eval(scope, env)?;
            let parts = match value.as_ref() {
                Value::Array(parts) => parts,
                _ => return Ok(None),
            };
            Ok(match parts.as_slice() {
                [variant] => distribution(Cow::Owned(variant.clone()), None),
                [variant, weight] => distribution(Cow::Owned(variant.clone()), Some(weight)),
                _ => None,
            })
        }
    }
}

/// Checks one evaluated `[variant, weight?]` pair (shared with the oracle so both agree on the rules).
pub(crate) fn distribution<'a>(variant: Cow<'a, Value>, weight: Option<&Value>) -> Option<(Cow<'a, Value>, u64)> {
    if matches!(variant.as_ref(), Value::Array(_) | Value::Object(_)) {
        return None;
    }
    let weight = match weight {
        None => 1,
        Some(Value::Number(number)) => {
            let value = number.as_f64()?;
            if value.fract() != 0.0 || !value.is_finite() {
                return None;
            }
            if value > MAX_FRACTIONAL_WEIGHT as f64 {
                return None;
            }
            // Negative weights are clamped: they can come out of time-based ramp arithmetic.
            value.max(0.0) as u64
        }
        Some(_) => return None,
    };
    Some((variant, weight))
}

/// [`Expr::ConstantFractional`] when the bucketing expression produced neither a string nor null:
/// an array is a leading distribution (bucketing by flagKey + targetingKey), anything else is null.
fn fractional_slow_path<'a>(bucket_value: Option<Cow<'a, Value>>, arms: &'a [(Value, u64)], env: &Env<'a>) -> Evaluated<'a> {
    let null = || Ok(Cow::Owned(Value::Null));
    let Some(Value::Array(parts)) = bucket_value.as_deref() else { return null() };
    let leading = match parts.as_slice() {
        [variant] => distribution(Cow::Owned(variant.clone()), None),
        [variant, weight] => distribution(Cow::Owned(variant.clone()), Some(weight)),
        _ => None,
    };
    let Some((leading_variant, leading_weight)) = leading else { return null() };
    let Some(Value::String(key)) = env.root.get("targetingKey").filter(|key| key.as_str().is_some_and(|text| !text.is_empty())) else {
        return null();
    };
    let total = leading_weight + arms.iter().map(|(_, weight)| weight).sum::<u64>();
    if total == 0 || total > MAX_FRACTIONAL_WEIGHT {
        return null();
    }
    let mut hasher = Murmur3::with_seed(0);
    hasher.write(env.flag_key.as_bytes());
    hasher.write(key.as_bytes());
    let bucket = (u64::from(hasher.finish()) * total) >> 32;
    if leading_weight > bucket {
        return Ok(Cow::Owned(leading_variant.into_owned()));
    }
    let mut cumulative = leading_weight;
    for (variant, weight) in arms {
        cumulative += weight;
        if cumulative > bucket {
            return Ok(Cow::Borrowed(variant));
        }
    }
    null()
}
