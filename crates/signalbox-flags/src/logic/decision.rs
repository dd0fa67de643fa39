//! A flag's targeting compiled against the flag itself: which variant each outcome names.
//!
//! flagd evaluates the rule to a value, prints it (`true`, `3`, `"beta"`) and looks the text up in
//! the flag's variants. Most rules end in constants — the branches of an `if`, the distributions of
//! a `fractional` — so that lookup is done here once per flag version: a constant outcome is
//! stored as the variant's index. Only an outcome computed at run time (a `var`, a `cat`, ...) is
//! looked up by name when it is produced. The `fractional` hash state after the flag key is also
//! computed here, since `flagKey + targetingKey` always starts with the same bytes.
//!
//! Evaluation counts operator steps exactly as [`Expr::eval`] would on the same tree, so limits are
//! reached at the same point.

use super::{
    pick_by_targeting_key, pick_constant_fractional, targeting_key_in, ConstantList, Env, EvalError, Expr, Haystack, Pick, Rule, Scope,
    VarPath,
};
use crate::fasthash::KeyTable;
use crate::js;
use crate::murmur3::Murmur3;
use serde_json::Value;
use std::borrow::Cow;

/// What targeting decided for one evaluation. Two words, so it comes back in registers rather
/// than through memory; the value of the error case is boxed (that path formats a message anyway).
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The variant at this index of the flag's variants (in name order).
    Variant(usize),
    /// `null`: the flag falls back to its default variant.
    Null,
    /// A value that names none of the flag's variants (an error), kept for the message.
    Unknown(Box<Value>),
}

/// An outcome decided by [`Targeting::decide_directly`]: [`Outcome`] without its error case.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direct {
    Variant(usize),
    Null,
}

#[derive(Debug, Clone)]
enum Leaf {
    Variant(usize),
    Null,
    Unknown(Value),
}

impl Leaf {
    fn outcome(&self) -> Outcome {
        match self {
            Leaf::Variant(index) => Outcome::Variant(*index),
            Leaf::Null => Outcome::Null,
            Leaf::Unknown(value) => Outcome::Unknown(Box::new(value.clone())),
        }
    }
}

/// The condition of an `if` branch.
#[derive(Debug, Clone)]
enum Condition {
    /// `{"in": [{"var": path}, [constants]]}` with a path read straight from the context (the
    /// usual targeting rule), tested without going through the general evaluator.
    VarIn {
        path: VarPath,
        list: Box<ConstantList>,
    },
    Test(Expr),
}

impl Condition {
    fn new(expr: Expr) -> Self {
        match expr {
            Expr::In { needle, haystack: Haystack::Constant(list) } => match *needle {
                Expr::Var { path, default: None } if path.flagd.is_none() && !path.segments.is_empty() => Condition::VarIn { path, list },
                needle => Condition::Test(Expr::In { needle: Box::new(needle), haystack: Haystack::Constant(list) }),
            },
            other => Condition::Test(other),
        }
    }

    #[inline]
    fn holds<'a>(&'a self, scope: Scope<'a>, env: &Env<'a>) -> Result<bool, EvalError> {
        match self {
            Condition::VarIn { path, list } => {
                // One step for `in`, one for its `var`, as `Expr::test` counts them.
                env.step()?;
                env.step()?;
                let needle = path.borrowed(scope, env).flatten().unwrap_or(&Value::Null);
                Ok(list.contains(needle))
            }
            Condition::Test(expr) => expr.test(scope, env),
        }
    }
}

#[derive(Debug, Clone)]
enum Decision {
    Leaf(Leaf),
    /// `if`: the first condition that holds picks its branch; `otherwise` (or `null`) if none does.
    If {
        branches: Box<[(Condition, Decision)]>,
        otherwise: Option<Box<Decision>>,
    },
    /// `if` with one condition choosing between two variants: chosen without a branch, since the
    /// condition is as unpredictable as the users it splits.
    Choose {
        condition: Condition,
        then: usize,
        otherwise: usize,
    },
    /// `fractional` with constant distributions ([`Expr::ConstantFractional`]).
    Fractional {
        bucket_by: Option<Box<Expr>>,
        arms: Box<[(Value, u64)]>,
        leaves: Box<[Leaf]>,
        total: u64,
        flag_key_hashed: Murmur3,
    },
    /// Anything else: evaluate, then look the result up by name.
    Computed(Expr),
}

/// A flag's compiled targeting (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Targeting {
    decision: Decision,
    variants: KeyTable,
}

impl Targeting {
    /// `variant_names` in the order [`Outcome::Variant`] indexes.
    pub(crate) fn new<'n>(rule: Rule, flag_key: &str, variant_names: impl IntoIterator<Item = &'n str>) -> Self {
        let variants = KeyTable::new(variant_names);
        let decision = decide(rule.expr, flag_key, &variants);
        Self { decision, variants }
    }

    /// Evaluates the targeting against `context` for `flag_key` at `timestamp`; `attributes` are
    /// the context's properties looked up beforehand for the set's [`super::Attributes`], if any.
    #[inline]
    pub(crate) fn evaluate<'a>(
        &'a self,
        context: &'a Value,
        attributes: Option<&'a [Option<&'a Value>]>,
        flag_key: &'a str,
        timestamp: i64,
    ) -> Result<Outcome, EvalError> {
        let env = Env::prepared(flag_key, timestamp, context, attributes);
        let scope = Scope { data: context, is_root: true };
        // The commonest rule shape is decided here, without the out-of-line recursive walk.
        match &self.decision {
            Decision::Choose { condition, then, otherwise } => choose(condition, *then, *otherwise, scope, &env),
            decision => self.run(decision, scope, &env),
        }
    }

    /// The outcome for the commonest rule shape, `if` with one `in` over a context property
    /// choosing between two variants, decided without an evaluation environment; `None` for shapes
    /// it does not handle. Equal to what [`Self::evaluate`] returns for that shape: its four
    /// operator steps cannot reach the step limit, and nothing in it can fail.
    ///
    /// Likewise a `fractional` over `flagKey + targetingKey` with constant distributions (one step)
    /// whose outcome is a variant or `null` ([`Outcome::Null`]); a distribution naming no variant
    /// (an error, reported with its value) is left to [`Self::evaluate`].
    #[inline(always)]
    pub(crate) fn decide_directly<'a>(&'a self, context: &'a Value, attributes: Option<&'a [Option<&'a Value>]>) -> Option<Direct> {
        match &self.decision {
            Decision::Choose { condition: Condition::VarIn { path, list }, then, otherwise } => {
                let needle = path.in_root(context, attributes).unwrap_or(&Value::Null);
                Some(Direct::Variant(if list.contains(needle) { *then } else { *otherwise }))
            }
            Decision::Fractional { bucket_by: None, arms, leaves, total, flag_key_hashed } => {
                match pick_by_targeting_key(flag_key_hashed, targeting_key_in(context, attributes), arms, *total) {
                    None => Some(Direct::Null),
                    Some(index) => match leaves.get(index)? {
                        Leaf::Variant(variant) => Some(Direct::Variant(*variant)),
                        Leaf::Null => Some(Direct::Null),
                        Leaf::Unknown(_) => None,
                    },
                }
            }
            _ => None,
        }
    }

    fn run<'a>(&'a self, decision: &'a Decision, scope: Scope<'a>, env: &Env<'a>) -> Result<Outcome, EvalError> {
        match decision {
            Decision::Leaf(leaf) => {
                env.step()?;
                Ok(leaf.outcome())
            }
            Decision::If { branches, otherwise } => {
                env.step()?;
                for (condition, branch) in branches.iter() {
                    if condition.holds(scope, env)? {
                        return self.run(branch, scope, env);
                    }
                }
                match otherwise {
                    Some(otherwise) => self.run(otherwise, scope, env),
                    None => Ok(Outcome::Null),
                }
            }
            Decision::Choose { condition, then, otherwise } => choose(condition, *then, *otherwise, scope, env),
            Decision::Fractional { bucket_by, arms, leaves, total, flag_key_hashed } => {
                env.step()?;
                Ok(match pick_constant_fractional(bucket_by.as_deref(), arms, *total, Some(flag_key_hashed), scope, env)? {
                    Pick::Arm(index) => leaves[index].outcome(),
                    Pick::Null => Outcome::Null,
                    Pick::Computed(value) => self.name(Cow::Owned(*value)),
                })
            }
            Decision::Computed(expr) => Ok(self.name(expr.eval(scope, env)?)),
        }
    }

    /// The variant a value names: strings name themselves, `true`/`false`/numbers their text.
    fn name(&self, value: Cow<'_, Value>) -> Outcome {
        match leaf_index(&value, &self.variants) {
            Some(Leaf::Variant(index)) => Outcome::Variant(index),
            Some(Leaf::Null) => Outcome::Null,
            Some(Leaf::Unknown(_)) | None => Outcome::Unknown(Box::new(value.into_owned())),
        }
    }
}

#[inline(always)]
fn choose<'a>(condition: &'a Condition, then: usize, otherwise: usize, scope: Scope<'a>, env: &Env<'a>) -> Result<Outcome, EvalError> {
    // The `if` and the chosen literal each count a step, as in `Expr::eval`.
    env.step()?;
    let holds = condition.holds(scope, env)?;
    env.step()?;
    Ok(Outcome::Variant(if holds { then } else { otherwise }))
}

/// The leaf for a constant outcome; `Unknown` carries no value here (the caller has it).
fn leaf_index(value: &Value, variants: &KeyTable) -> Option<Leaf> {
    let found = match value {
        Value::Null => return Some(Leaf::Null),
        Value::String(name) => variants.get(name),
        Value::Bool(true) => variants.get("true"),
        Value::Bool(false) => variants.get("false"),
        Value::Number(number) => variants.get(&js::json_number_to_js_string(number)),
        Value::Array(_) | Value::Object(_) => None,
    };
    Some(found.map_or(Leaf::Unknown(Value::Null), Leaf::Variant))
}

fn leaf(value: Value, variants: &KeyTable) -> Leaf {
    match leaf_index(&value, variants) {
        Some(Leaf::Variant(index)) => Leaf::Variant(index),
        Some(Leaf::Null) => Leaf::Null,
        Some(Leaf::Unknown(_)) | None => Leaf::Unknown(value),
    }
}

fn decide(expr: Expr, flag_key: &str, variants: &KeyTable) -> Decision {
    match expr {
        Expr::Literal(value) => Decision::Leaf(leaf(value, variants)),
        Expr::If(args) => {
            let mut args = args.into_iter();
            let mut branches = Vec::new();
            let mut otherwise = None;
            while let Some(first) = args.next() {
                match args.next() {
                    Some(then) => branches.push((Condition::new(first), decide(then, flag_key, variants))),
                    None => otherwise = Some(Box::new(decide(first, flag_key, variants))),
                }
            }
            match (branches.pop(), otherwise) {
                (Some((condition, Decision::Leaf(Leaf::Variant(then)))), Some(otherwise)) if branches.is_empty() => match *otherwise {
                    Decision::Leaf(Leaf::Variant(otherwise)) => Decision::Choose { condition, then, otherwise },
                    otherwise => Decision::If {
                        branches: Box::new([(condition, Decision::Leaf(Leaf::Variant(then)))]),
                        otherwise: Some(Box::new(otherwise)),
                    },
                },
                (last, otherwise) => {
                    branches.extend(last);
                    Decision::If { branches: branches.into_boxed_slice(), otherwise }
                }
            }
        }
        Expr::ConstantFractional { bucket_by, arms, total } => {
            let mut flag_key_hashed = Murmur3::with_seed(0);
            flag_key_hashed.write(flag_key.as_bytes());
            Decision::Fractional {
                bucket_by,
                leaves: arms.iter().map(|(variant, _)| leaf(variant.clone(), variants)).collect(),
                arms: arms.into_boxed_slice(),
                total,
                flag_key_hashed,
            }
        }
        other => Decision::Computed(other),
    }
}
