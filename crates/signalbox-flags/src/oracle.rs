//! A deliberately plain JsonLogic interpreter, used as the test oracle for the compiled evaluator.
//!
//! It does what flagd does on every evaluation: clone the context, inject `$flagd`, look up `$ref`s
//! as it meets them, and walk the rule JSON. Property tests check that [`crate::logic::Rule`] gives
//! the same result for any rule that compiles. Slow by design; not for production use.
//! It shares only the value primitives of [`crate::js`], the hash and the SemVer parser.

use crate::js::{self, as_js_str, loose_equal, number_value, strict_equal, to_number, truthy};
use crate::logic::{contains, distribution, substr, MAX_FRACTIONAL_WEIGHT};
use crate::murmur3::murmur3_x86_32;
use crate::semver_op::{parse_context_version, SemVerOp};
use serde_json::{json, Map, Value};

/// Evaluates `rule` for `flag_key` at `timestamp` against `context`. Assumes the rule compiles
/// (arity and shape errors are the compiler's job) and has no resource-limit failure.
pub fn interpret(rule: &Value, evaluators: &Map<String, Value>, context: &Value, flag_key: &str, timestamp: i64) -> Value {
    let mut data = context.clone();
    if let Value::Object(map) = &mut data {
        map.insert("$flagd".to_owned(), json!({ "flagKey": flag_key, "timestamp": timestamp }));
    }
    let oracle = Oracle { evaluators, root: &data, flag_key };
    oracle.apply(rule, &data)
}

struct Oracle<'o> {
    evaluators: &'o Map<String, Value>,
    root: &'o Value,
    flag_key: &'o str,
}

fn get_path(data: &Value, path: &str) -> Value {
    if path.is_empty() {
        return data.clone();
    }
    let mut current = data;
    for segment in path.split('.') {
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
            _ => None,
        };
        match next {
            Some(value) => current = value,
            None => return Value::Null,
        }
    }
    current.clone()
}

fn path_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        other => as_js_str(other).into_owned(),
    }
}

impl Oracle<'_> {
    fn apply(&self, rule: &Value, data: &Value) -> Value {
        match rule {
            Value::Array(items) => Value::Array(items.iter().map(|item| self.apply(item, data)).collect()),
            Value::Object(map) if map.len() == 1 => {
                let (operator, args) = map.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Value::Null));
                self.operate(operator, args, data)
            }
            other => other.clone(),
        }
    }

    fn args<'r>(&self, args: &'r Value) -> Vec<&'r Value> {
        match args {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        }
    }

    fn values(&self, args: &Value, data: &Value) -> Vec<Value> {
        self.args(args).into_iter().map(|arg| self.apply(arg, data)).collect()
    }

    fn operate(&self, operator: &str, raw: &Value, data: &Value) -> Value {
        let raw_args = self.args(raw);
        match operator {
            "$ref" => {
                let rule = raw.as_str().and_then(|name| self.evaluators.get(name)).cloned().unwrap_or(Value::Null);
                self.apply(&rule, data)
            }
            "var" => {
                let path = raw_args.first().map(|arg| self.apply(arg, data)).unwrap_or(Value::Null);
                let found = get_path(data, &path_text(&path));
                if found.is_null() {
                    raw_args.get(1).map(|default| self.apply(default, data)).unwrap_or(Value::Null)
                } else {
                    found
                }
            }
            "if" => {
                let mut index = 0;
                while index + 1 < raw_args.len() {
                    if truthy(&self.apply(raw_args[index], data)) {
                        return self.apply(raw_args[index + 1], data);
                    }
                    index += 2;
                }
                if index + 1 == raw_args.len() {
                    self.apply(raw_args[index], data)
                } else {
                    Value::Null
                }
            }
            "or" | "and" => {
                let mut last = Value::Null;
                for arg in raw_args {
                    last = self.apply(arg, data);
                    if truthy(&last) == (operator == "or") {
                        break;
                    }
                }
                last
            }
            "map" | "filter" | "all" | "some" | "none" | "reduce" => self.iterate(operator, &raw_args, data),
            _ => {
                let values = self.values(raw, data);
                self.compute(operator, &values, data)
            }
        }
    }

    fn iterate(&self, operator: &str, raw_args: &[&Value], data: &Value) -> Value {
        let array = self.apply(raw_args[0], data);
        let items = match &array {
            Value::Array(items) => items.clone(),
            _ => Vec::new(),
        };
        let rule = raw_args[1];
        match operator {
            "map" => Value::Array(items.iter().map(|item| self.apply(rule, item)).collect()),
            "filter" => Value::Array(items.into_iter().filter(|item| truthy(&self.apply(rule, item))).collect()),
            "all" => Value::Bool(!items.is_empty() && items.iter().all(|item| truthy(&self.apply(rule, item)))),
            "some" => Value::Bool(items.iter().any(|item| truthy(&self.apply(rule, item)))),
            "none" => Value::Bool(!items.iter().any(|item| truthy(&self.apply(rule, item)))),
            _ => {
                let mut accumulator = raw_args.get(2).map(|initial| self.apply(initial, data)).unwrap_or(Value::Null);
                for item in items {
                    let scope = json!({ "current": item, "accumulator": accumulator });
                    accumulator = self.apply(rule, &scope);
                }
                accumulator
            }
        }
    }

    fn compute(&self, operator: &str, values: &[Value], data: &Value) -> Value {
        let first = values.first().cloned().unwrap_or(Value::Null);
        let second = values.get(1).cloned().unwrap_or(Value::Null);
        match operator {
            "==" => Value::Bool(loose_equal(&first, &second)),
            "!=" => Value::Bool(!loose_equal(&first, &second)),
            "===" => Value::Bool(strict_equal(&first, &second)),
            "!==" => Value::Bool(!strict_equal(&first, &second)),
            "!" => Value::Bool(!truthy(&first)),
            "!!" => Value::Bool(truthy(&first)),
            "<" | "<=" => {
                let or_equal = operator == "<=";
                let mut holds = js::less_than(&first, &second, or_equal);
                if let Some(third) = values.get(2) {
                    holds = holds && js::less_than(&second, third, or_equal);
                }
                Value::Bool(holds)
            }
            ">" => Value::Bool(js::less_than(&second, &first, false)),
            ">=" => Value::Bool(js::less_than(&second, &first, true)),
            "in" => Value::Bool(contains(&second, &first)),
            "cat" => Value::String(values.iter().map(|value| as_js_str(value).into_owned()).collect()),
            "substr" => Value::String(substr(&as_js_str(&first), to_number(&second), values.get(2).map(to_number))),
            "+" => number_value(values.iter().map(to_number).sum()),
            "*" => number_value(values.iter().map(to_number).product()),
            "-" if values.len() == 1 => number_value(-to_number(&first)),
            "-" => number_value(to_number(&first) - to_number(&second)),
            "/" => number_value(to_number(&first) / to_number(&second)),
            "%" => number_value(to_number(&first) % to_number(&second)),
            "min" | "max" => {
                let numbers: Vec<f64> = values.iter().map(to_number).collect();
                if numbers.iter().any(|n| n.is_nan()) {
                    return Value::Null;
                }
                let folded = if operator == "min" {
                    numbers.into_iter().fold(f64::INFINITY, f64::min)
                } else {
                    numbers.into_iter().fold(f64::NEG_INFINITY, f64::max)
                };
                number_value(folded)
            }
            "merge" => Value::Array(
                values
                    .iter()
                    .flat_map(|value| match value {
                        Value::Array(items) => items.clone(),
                        other => vec![other.clone()],
                    })
                    .collect(),
            ),
            "missing" => {
                let keys = match values.first() {
                    Some(Value::Array(list)) => list.clone(),
                    _ => values.to_vec(),
                };
                Value::Array(self.missing(&keys, data))
            }
            "missing_some" => {
                let keys = match &second {
                    Value::Array(list) => list.clone(),
                    _ => Vec::new(),
                };
                let missing = self.missing(&keys, data);
                if (keys.len() - missing.len()) as f64 >= to_number(&first) {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(missing)
                }
            }
            "starts_with" | "ends_with" => match (first.as_str(), second.as_str()) {
                (Some(text), Some(affix)) => {
                    Value::Bool(if operator == "starts_with" { text.starts_with(affix) } else { text.ends_with(affix) })
                }
                _ => Value::Null,
            },
            "sem_ver" => {
                let left = parse_context_version(&first);
                let op = second.as_str().and_then(SemVerOp::parse);
                let right = values.get(2).and_then(parse_context_version);
                match (left, op, right) {
                    (Some(left), Some(op), Some(right)) => Value::Bool(op.holds(&left, &right)),
                    _ => Value::Null,
                }
            }
            "fractional" => self.fractional(values),
            _ => Value::Null,
        }
    }

    fn missing(&self, keys: &[Value], data: &Value) -> Vec<Value> {
        keys.iter()
            .filter(|key| {
                let found = get_path(data, &path_text(key));
                found.is_null()
            })
            .cloned()
            .collect()
    }

    /// flagd `fractional` v2, written out as the reference describes it (§2.1).
    fn fractional(&self, values: &[Value]) -> Value {
        let (bucket_by, arms) = match values.first() {
            Some(Value::String(text)) => (text.clone(), &values[1..]),
            Some(Value::Array(_)) => match self.default_bucket() {
                Some(text) => (text, values),
                None => return Value::Null,
            },
            Some(Value::Null) => match self.default_bucket() {
                Some(text) => (text, &values[1..]),
                None => return Value::Null,
            },
            _ => return Value::Null,
        };
        let mut parsed = Vec::new();
        for arm in arms {
            let Value::Array(parts) = arm else { return Value::Null };
            let checked = match parts.as_slice() {
                [variant] => distribution(std::borrow::Cow::Borrowed(variant), None),
                [variant, weight] => distribution(std::borrow::Cow::Borrowed(variant), Some(weight)),
                _ => None,
            };
            match checked {
                Some((variant, weight)) => parsed.push((variant.into_owned(), weight)),
                None => return Value::Null,
            }
        }
        let total: u64 = parsed.iter().map(|(_, weight)| weight).sum();
        if total == 0 || total > MAX_FRACTIONAL_WEIGHT {
            return Value::Null;
        }
        let hash = murmur3_x86_32(&[bucket_by.as_bytes()]);
        let bucket = (u64::from(hash) * total) >> 32;
        let mut cumulative = 0;
        for (variant, weight) in parsed {
            cumulative += weight;
            if cumulative > bucket {
                return variant;
            }
        }
        Value::Null
    }

    fn default_bucket(&self) -> Option<String> {
        match self.root.get("targetingKey") {
            Some(Value::String(key)) if !key.is_empty() => Some(format!("{}{key}", self.flag_key)),
            _ => None,
        }
    }
}
