//! The condition language of `success_condition` and `failure_condition`.
//!
//! A condition is evaluated against `result`, the values of one reading (a Prometheus vector,
//! pushed values, or a smoke check's latency). It is close to the subset of
//! [expr](https://expr-lang.org) that Argo Rollouts users write, and is type-checked when it is
//! parsed, so a mistake is reported when the metric is saved, not at the first measurement.
//!
//! ```text
//! condition  := or                                      (must be true/false)
//! or         := and { ("||" | "or") and }
//! and        := comparison { ("&&" | "and") comparison }
//! comparison := sum [ ("<" | "<=" | ">" | ">=" | "==" | "!=") sum ]   (no chains: a < b < c)
//! sum        := product { ("+" | "-") product }
//! product    := unary { ("*" | "/") unary }
//! unary      := ("-" | "!" | "not") unary | postfix
//! postfix    := "result" [ "[" or "]" ] | primary
//! primary    := NUMBER | "true" | "false" | "#" | call | "(" or ")"
//! call       := ("len" | "avg" | "min" | "max" | "sum") "(" result ")"
//!             | ("all" | "any") "(" result "," or ")"   (inside, `#` is each value; not nested)
//!             | ("isNaN" | "isInf") "(" or ")"
//! NUMBER     := DIGIT+ [ "." DIGIT+ ] [ ("e" | "E") ["+" | "-"] DIGIT+ ]      (finite; no NaN)
//! ```
//!
//! **Types.** Numbers, booleans and the series `result`. Where a number is expected, `result`
//! stands for its only value when it has exactly one; with none or several the evaluation is an
//! error that says to use `result[i]`, `all(...)`, `any(...)` or an aggregate. `==` and `!=`
//! also compare two booleans. The whole condition must be a boolean.
//!
//! **Evaluation.** `&&` and `||` short-circuit, so `len(result) > 0 && result[0] < 1` never
//! indexes an empty result. Comparisons follow IEEE 754: any comparison with NaN is false (so a
//! NaN reading matches neither condition and is inconclusive unless a condition tests
//! `isNaN`). `min`, `max`, `avg` and `sum` return NaN when any value is NaN. Division by zero,
//! an index out of range or not a whole number, and `avg`/`min`/`max`/`all`/`any` of an empty
//! result are errors ([`EvalError`]), never a silent value.
//!
//! **Limits.** At most [`MAX_SOURCE_LEN`] bytes and [`MAX_DEPTH`] levels of nesting, so hostile
//! input cannot exhaust the stack, and `all`/`any` do not nest, so evaluation takes time
//! proportional to the condition's length times the number of values. No input makes [`parse`]
//! or [`eval`] panic.

use std::fmt;

/// The longest condition accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;
/// The deepest nesting accepted, both of the syntax (parentheses, prefixes) and of the tree.
pub const MAX_DEPTH: usize = 64;

/// A parsed, type-checked condition. [`fmt::Display`] writes it back in the language.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Bool(bool),
    /// `result`: the reading's values.
    Result,
    /// `#`: the value under test inside `all` / `any`.
    Element,
    /// `result[i]`.
    Index(Box<Expr>),
    /// `len(result)`, `avg(result)`, ...
    Aggregate(Aggregate),
    /// `all(result, predicate)` / `any(result, predicate)`.
    Quantifier(Quantifier, Box<Expr>),
    /// `isNaN(x)` / `isInf(x)`.
    Test(Test, Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Len,
    Avg,
    Min,
    Max,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    All,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    IsNaN,
    IsInf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Add,
    Sub,
    Mul,
    Div,
}

impl Aggregate {
    fn name(self) -> &'static str {
        match self {
            Aggregate::Len => "len",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
        }
    }
}

impl Quantifier {
    fn name(self) -> &'static str {
        match self {
            Quantifier::All => "all",
            Quantifier::Any => "any",
        }
    }
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::IsNaN => "isNaN",
            Test::IsInf => "isInf",
        }
    }
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div => 5,
        }
    }

    fn is_comparison(self) -> bool {
        self.precedence() == 3
    }
}

/// A condition that cannot be parsed: where (a byte offset into the source) and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

/// A condition that cannot be evaluated against this reading, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

fn eval_error(message: impl Into<String>) -> EvalError {
    EvalError { message: message.into() }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(f64),
    Ident(String),
    Hash,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    OrOr,
    Bang,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Number(n) => format!("the number {n}"),
        Tok::Ident(name) => format!("`{name}`"),
        Tok::End => "the end of the condition".into(),
        other => format!("`{}`", symbol(other)),
    }
}

fn symbol(tok: &Tok) -> &'static str {
    match tok {
        Tok::Hash => "#",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::EqEq => "==",
        Tok::Ne => "!=",
        Tok::AndAnd => "&&",
        Tok::OrOr => "||",
        Tok::Bang => "!",
        Tok::Number(_) | Tok::Ident(_) | Tok::End => "",
    }
}

fn error(position: usize, message: impl Into<String>) -> ParseError {
    ParseError { position, message: message.into() }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            i = lex_number(bytes, i)?;
            // The lexeme is ASCII digits, '.', 'e', '+', '-': always a valid &str slice.
            let text = &src[start..i];
            let value: f64 = text.parse().map_err(|_| error(start, format!("`{text}` is not a number")))?;
            if !value.is_finite() {
                return Err(error(start, format!("the number `{text}` is too large")));
            }
            tokens.push((Tok::Number(value), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push((Tok::Ident(src[start..i].to_string()), start));
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'!', Some(b'=')) => (Tok::Ne, 2),
            (b'&', Some(b'&')) => (Tok::AndAnd, 2),
            (b'|', Some(b'|')) => (Tok::OrOr, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'#', _) => (Tok::Hash, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'=', _) => return Err(error(start, "expected `==` to compare; `=` alone is not an operator")),
            (b'&', _) => return Err(error(start, "expected `&&`; `&` alone is not an operator")),
            (b'|', _) => return Err(error(start, "expected `||`; `|` alone is not an operator")),
            _ => {
                let ch = src[start..].chars().next().unwrap_or('?');
                return Err(error(start, format!("unexpected character `{}`", ch.escape_debug())));
            }
        };
        tokens.push((tok, start));
        i += len;
    }
    tokens.push((Tok::End, bytes.len()));
    Ok(tokens)
}

/// Returns the end of the number starting at `i` (a digit).
fn lex_number(bytes: &[u8], mut i: usize) -> Result<usize, ParseError> {
    let digits = |bytes: &[u8], mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits(bytes, i);
    if bytes.get(i) == Some(&b'.') {
        let after = digits(bytes, i + 1);
        if after == i + 1 {
            return Err(error(i + 1, "expected a digit after the decimal point"));
        }
        i = after;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let after = digits(bytes, j);
        if after == j {
            return Err(error(j, "expected the digits of an exponent, as in `1e-3`"));
        }
        i = after;
    }
    if bytes.get(i).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
        return Err(error(i, "expected an operator or a space after a number"));
    }
    Ok(i)
}

// ---------------------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Number,
    Bool,
    /// `result`: usable as a number when it has exactly one value.
    Series,
}

impl Type {
    fn numeric(self) -> bool {
        matches!(self, Type::Number | Type::Series)
    }

    fn describe(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Bool => "true/false",
            Type::Series => "`result` (numbers)",
        }
    }
}

struct Typed {
    expr: Expr,
    ty: Type,
    /// Height of the tree, bounded by [`MAX_DEPTH`].
    height: usize,
    position: usize,
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    index: usize,
    depth: usize,
    /// How many `all`/`any` predicates enclose the current position (`#` is valid inside).
    quantifiers: usize,
}

const KNOWN_NAMES: &[&str] =
    &["result", "true", "false", "and", "or", "not", "len", "avg", "min", "max", "sum", "all", "any", "isNaN", "isInf"];

/// Parses and type-checks a condition.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_SOURCE_LEN {
        return Err(error(MAX_SOURCE_LEN, format!("the condition is longer than {MAX_SOURCE_LEN} bytes")));
    }
    let tokens = lex(src)?;
    let mut parser = Parser { tokens, index: 0, depth: 0, quantifiers: 0 };
    if parser.peek() == &Tok::End {
        return Err(error(0, "expected a condition such as `result < 0.01`, found an empty text"));
    }
    let node = parser.or()?;
    if parser.peek() != &Tok::End {
        return Err(error(
            parser.position(),
            format!("expected an operator (such as `<`, `&&`, `+`) or the end of the condition, found {}", describe(parser.peek())),
        ));
    }
    if node.ty != Type::Bool {
        return Err(error(
            node.position,
            format!("a condition must be true or false, but this is {}; compare it, e.g. `{} < 0.01`", node.ty.describe(), node.expr),
        ));
    }
    Ok(node.expr)
}

impl Parser {
    fn peek(&self) -> &Tok {
        // The token list always ends with `End` and the parser never advances past it.
        &self.tokens[self.index.min(self.tokens.len() - 1)].0
    }

    fn position(&self) -> usize {
        self.tokens[self.index.min(self.tokens.len() - 1)].1
    }

    fn advance(&mut self) -> (Tok, usize) {
        let token = self.tokens[self.index.min(self.tokens.len() - 1)].clone();
        if token.0 != Tok::End {
            self.index += 1;
        }
        token
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Tok::Ident(name) if name == keyword)
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(self.position(), format!("the condition is nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn node(&self, expr: Expr, ty: Type, height: usize, position: usize) -> Result<Typed, ParseError> {
        if height > MAX_DEPTH {
            return Err(error(position, format!("the condition has more than {MAX_DEPTH} levels of operations; split or simplify it")));
        }
        Ok(Typed { expr, ty, height, position })
    }

    fn expect(&mut self, tok: Tok, context: &str) -> Result<usize, ParseError> {
        if self.peek() == &tok {
            return Ok(self.advance().1);
        }
        Err(error(self.position(), format!("expected `{}` {context}, found {}", symbol(&tok), describe(self.peek()))))
    }

    fn or(&mut self) -> Result<Typed, ParseError> {
        self.enter()?;
        let result = self.logical(BinOp::Or);
        self.leave();
        result
    }

    /// `or` and `and`: left-associative chains of boolean operands.
    fn logical(&mut self, op: BinOp) -> Result<Typed, ParseError> {
        let (token, keyword) = if op == BinOp::Or { (Tok::OrOr, "or") } else { (Tok::AndAnd, "and") };
        let operand = |p: &mut Self| if op == BinOp::Or { p.logical(BinOp::And) } else { p.comparison() };
        let mut left = operand(self)?;
        while self.peek() == &token || self.peek_keyword(keyword) {
            let (_, at) = self.advance();
            let right = operand(self)?;
            for side in [&left, &right] {
                if side.ty != Type::Bool {
                    return Err(error(
                        side.position,
                        format!("`{}` joins conditions (true/false), but this is {}", op.symbol(), side.ty.describe()),
                    ));
                }
            }
            let height = 1 + left.height.max(right.height);
            left = self.node(Expr::Binary(op, Box::new(left.expr), Box::new(right.expr)), Type::Bool, height, at.min(left.position))?;
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Typed, ParseError> {
        let left = self.arithmetic(false)?;
        let Some(op) = comparison_op(self.peek()) else { return Ok(left) };
        let (_, at) = self.advance();
        let right = self.arithmetic(false)?;
        let both_bool = left.ty == Type::Bool && right.ty == Type::Bool && matches!(op, BinOp::Eq | BinOp::Ne);
        if !both_bool {
            for side in [&left, &right] {
                if !side.ty.numeric() {
                    return Err(error(side.position, format!("`{}` compares numbers, but this is {}", op.symbol(), side.ty.describe())));
                }
            }
        }
        if comparison_op(self.peek()).is_some() {
            return Err(error(self.position(), "comparisons cannot be chained; join them with `&&`, as in `0 < result && result < 1`"));
        }
        let height = 1 + left.height.max(right.height);
        let position = left.position;
        self.node(Expr::Binary(op, Box::new(left.expr), Box::new(right.expr)), Type::Bool, height, position.min(at))
    }

    /// `sum` (`product == false`) and `product` levels.
    fn arithmetic(&mut self, product: bool) -> Result<Typed, ParseError> {
        let operand = |p: &mut Self| if product { p.unary() } else { p.arithmetic(true) };
        let mut left = operand(self)?;
        loop {
            let op = match (self.peek(), product) {
                (Tok::Plus, false) => BinOp::Add,
                (Tok::Minus, false) => BinOp::Sub,
                (Tok::Star, true) => BinOp::Mul,
                (Tok::Slash, true) => BinOp::Div,
                _ => return Ok(left),
            };
            self.advance();
            let right = operand(self)?;
            for side in [&left, &right] {
                if !side.ty.numeric() {
                    return Err(error(side.position, format!("`{}` works on numbers, but this is {}", op.symbol(), side.ty.describe())));
                }
            }
            let height = 1 + left.height.max(right.height);
            let position = left.position;
            left = self.node(Expr::Binary(op, Box::new(left.expr), Box::new(right.expr)), Type::Number, height, position)?;
        }
    }

    fn unary(&mut self) -> Result<Typed, ParseError> {
        let position = self.position();
        let negate = match self.peek() {
            Tok::Minus => true,
            Tok::Bang => false,
            Tok::Ident(name) if name == "not" => false,
            _ => return self.postfix(),
        };
        self.advance();
        self.enter()?;
        let operand = self.unary();
        self.leave();
        let operand = operand?;
        if negate {
            if !operand.ty.numeric() {
                return Err(error(operand.position, format!("`-` negates a number, but this is {}", operand.ty.describe())));
            }
            self.node(Expr::Neg(Box::new(operand.expr)), Type::Number, operand.height + 1, position)
        } else {
            if operand.ty != Type::Bool {
                return Err(error(
                    operand.position,
                    format!(
                        "`!` negates a condition, but this is {}; `!` applies to what follows it, so write `!(a < b)`",
                        operand.ty.describe()
                    ),
                ));
            }
            self.node(Expr::Not(Box::new(operand.expr)), Type::Bool, operand.height + 1, position)
        }
    }

    fn postfix(&mut self) -> Result<Typed, ParseError> {
        let node = self.primary()?;
        if self.peek() != &Tok::LBracket {
            return Ok(node);
        }
        if node.ty != Type::Series {
            return Err(error(self.position(), format!("only `result` can be indexed, but this is {}", node.ty.describe())));
        }
        let open = self.advance().1;
        let index = self.or()?;
        if !index.ty.numeric() {
            return Err(error(index.position, format!("an index must be a number, but this is {}", index.ty.describe())));
        }
        self.expect(Tok::RBracket, &format!("to close the `[` at position {open}"))?;
        if self.peek() == &Tok::LBracket {
            return Err(error(self.position(), "`result[i]` is a number and cannot be indexed again"));
        }
        self.node(Expr::Index(Box::new(index.expr)), Type::Number, index.height + 1, node.position)
    }

    fn primary(&mut self) -> Result<Typed, ParseError> {
        let (tok, position) = self.advance();
        match tok {
            Tok::Number(n) => self.node(Expr::Number(n), Type::Number, 1, position),
            Tok::Hash => {
                if self.quantifiers == 0 {
                    return Err(error(
                        position,
                        "`#` stands for each value inside `all(result, ...)` or `any(result, ...)` and means nothing elsewhere",
                    ));
                }
                self.node(Expr::Element, Type::Number, 1, position)
            }
            Tok::LParen => {
                let inner = self.or()?;
                self.expect(Tok::RParen, &format!("to close the `(` at position {position}"))?;
                Ok(Typed { position, ..inner })
            }
            Tok::Ident(name) => self.name(&name, position),
            other => Err(error(
                position,
                format!("expected a number, `result`, `#`, a function such as `avg(result)`, `!` or `(`, found {}", describe(&other)),
            )),
        }
    }

    fn name(&mut self, name: &str, position: usize) -> Result<Typed, ParseError> {
        match name {
            "result" => self.node(Expr::Result, Type::Series, 1, position),
            "true" => self.node(Expr::Bool(true), Type::Bool, 1, position),
            "false" => self.node(Expr::Bool(false), Type::Bool, 1, position),
            "len" | "avg" | "min" | "max" | "sum" => {
                let aggregate = match name {
                    "len" => Aggregate::Len,
                    "avg" => Aggregate::Avg,
                    "min" => Aggregate::Min,
                    "max" => Aggregate::Max,
                    _ => Aggregate::Sum,
                };
                let args = self.arguments(name, 1, "(result)")?;
                self.series_argument(name, &args[0])?;
                self.node(Expr::Aggregate(aggregate), Type::Number, 1, position)
            }
            "all" | "any" => {
                if self.quantifiers > 0 {
                    // `#` would name only the inner value, and nesting multiplies the work.
                    return Err(error(position, format!("`{name}` cannot be used inside another `all` or `any`")));
                }
                let quantifier = if name == "all" { Quantifier::All } else { Quantifier::Any };
                self.expect(Tok::LParen, &format!("after `{name}`"))?;
                let series = self.or()?;
                self.series_argument(name, &series)?;
                self.expect(
                    Tok::Comma,
                    &format!("after `{name}(result` and before the test of each value `#`, as in `{name}(result, # < 0.01)`"),
                )?;
                self.quantifiers += 1;
                let predicate = self.or();
                self.quantifiers -= 1;
                let predicate = predicate?;
                if predicate.ty != Type::Bool {
                    return Err(error(
                        predicate.position,
                        format!(
                            "the second argument of `{name}` tests each value `#` and must be true/false, as in `# < 0.01`; this is {}",
                            predicate.ty.describe()
                        ),
                    ));
                }
                self.expect(Tok::RParen, &format!("to close `{name}(` at position {position}"))?;
                self.node(Expr::Quantifier(quantifier, Box::new(predicate.expr)), Type::Bool, predicate.height + 1, position)
            }
            "isNaN" | "isInf" => {
                let test = if name == "isNaN" { Test::IsNaN } else { Test::IsInf };
                let mut args = self.arguments(name, 1, "(x), e.g. `isNaN(result[0])`")?;
                let arg = args.remove(0);
                if !arg.ty.numeric() {
                    return Err(error(arg.position, format!("`{name}` tests a number, but this is {}", arg.ty.describe())));
                }
                self.node(Expr::Test(test, Box::new(arg.expr)), Type::Bool, arg.height + 1, position)
            }
            "and" | "or" => Err(error(position, format!("expected a condition before `{name}`"))),
            _ => {
                let hint = KNOWN_NAMES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(name))
                    .map(|known| format!("; did you mean `{known}`?"))
                    .unwrap_or_default();
                Err(error(
                    position,
                    format!(
                        "unknown name `{name}`{hint} (known: `result`, `true`, `false`, and the functions len, avg, min, max, sum, all, any, isNaN, isInf)"
                    ),
                ))
            }
        }
    }

    fn arguments(&mut self, name: &str, count: usize, usage: &str) -> Result<Vec<Typed>, ParseError> {
        let open = self.expect(Tok::LParen, &format!("after `{name}`"))?;
        let mut args = Vec::new();
        if self.peek() != &Tok::RParen {
            loop {
                args.push(self.or()?);
                if self.peek() != &Tok::Comma {
                    break;
                }
                self.advance();
            }
        }
        self.expect(Tok::RParen, &format!("to close `{name}(` at position {open}"))?;
        if args.len() != count {
            return Err(error(open, format!("`{name}` takes {count} argument: `{name}{usage}`; found {}", args.len())));
        }
        Ok(args)
    }

    fn series_argument(&self, name: &str, arg: &Typed) -> Result<(), ParseError> {
        if arg.ty != Type::Series {
            return Err(error(arg.position, format!("`{name}` works on `result`, but this is {}", arg.ty.describe())));
        }
        Ok(())
    }
}

fn comparison_op(tok: &Tok) -> Option<BinOp> {
    Some(match tok {
        Tok::Lt => BinOp::Lt,
        Tok::Le => BinOp::Le,
        Tok::Gt => BinOp::Gt,
        Tok::Ge => BinOp::Ge,
        Tok::EqEq => BinOp::Eq,
        Tok::Ne => BinOp::Ne,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

enum Value {
    Number(f64),
    Bool(bool),
    Series,
}

/// The deepest tree [`eval`] walks; parsed conditions are far below it, hand-built ones are
/// refused instead of overflowing the stack.
const MAX_EVAL_DEPTH: usize = 4 * MAX_DEPTH;

/// Evaluates a condition against the values of one reading.
pub fn eval(expr: &Expr, result: &[f64]) -> Result<bool, EvalError> {
    let evaluator = Evaluator { result };
    match evaluator.value(expr, None, 0)? {
        Value::Bool(b) => Ok(b),
        _ => Err(eval_error(format!("`{expr}` is not a condition (true/false)"))),
    }
}

struct Evaluator<'a> {
    result: &'a [f64],
}

impl Evaluator<'_> {
    fn value(&self, expr: &Expr, element: Option<f64>, depth: usize) -> Result<Value, EvalError> {
        if depth > MAX_EVAL_DEPTH {
            return Err(eval_error(format!("the condition is nested more than {MAX_EVAL_DEPTH} levels deep")));
        }
        let depth = depth + 1;
        Ok(match expr {
            Expr::Number(n) => Value::Number(*n),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Result => Value::Series,
            Expr::Element => match element {
                Some(x) => Value::Number(x),
                None => return Err(eval_error("`#` is only defined inside all(result, ...) or any(result, ...)")),
            },
            Expr::Index(index) => {
                let i = self.number(index, element, depth)?;
                let n = self.result.len();
                if !(i.is_finite() && i >= 0.0 && i.fract() == 0.0) {
                    return Err(eval_error(format!("the index `{index}` is {i}, not a whole number from 0 to {}", n.saturating_sub(1))));
                }
                if i >= n as f64 {
                    return Err(eval_error(format!(
                        "result[{i}] is out of range: result has {}; guard with `len(result) > {i} && ...`",
                        values_count(n)
                    )));
                }
                Value::Number(self.result[i as usize])
            }
            Expr::Aggregate(aggregate) => Value::Number(self.aggregate(*aggregate)?),
            Expr::Quantifier(quantifier, predicate) => {
                if self.result.is_empty() {
                    return Err(eval_error(format!("{}(result, ...) has no values to test: result is empty", quantifier.name())));
                }
                let want = *quantifier == Quantifier::Any;
                for &x in self.result {
                    if self.boolean(predicate, Some(x), depth)? == want {
                        return Ok(Value::Bool(want));
                    }
                }
                Value::Bool(!want)
            }
            Expr::Test(test, arg) => {
                let x = self.number(arg, element, depth)?;
                Value::Bool(match test {
                    Test::IsNaN => x.is_nan(),
                    Test::IsInf => x.is_infinite(),
                })
            }
            Expr::Neg(arg) => Value::Number(-self.number(arg, element, depth)?),
            Expr::Not(arg) => Value::Bool(!self.boolean(arg, element, depth)?),
            Expr::Binary(op, left, right) => self.binary(*op, left, right, element, depth)?,
        })
    }

    fn binary(&self, op: BinOp, left: &Expr, right: &Expr, element: Option<f64>, depth: usize) -> Result<Value, EvalError> {
        Ok(match op {
            BinOp::And => Value::Bool(self.boolean(left, element, depth)? && self.boolean(right, element, depth)?),
            BinOp::Or => Value::Bool(self.boolean(left, element, depth)? || self.boolean(right, element, depth)?),
            BinOp::Eq | BinOp::Ne => {
                let equal = match (self.value(left, element, depth)?, self.value(right, element, depth)?) {
                    (Value::Bool(a), Value::Bool(b)) => a == b,
                    (a, b) => self.as_number(a, left)? == self.as_number(b, right)?,
                };
                Value::Bool(equal == (op == BinOp::Eq))
            }
            _ => {
                let a = self.number(left, element, depth)?;
                let b = self.number(right, element, depth)?;
                match op {
                    BinOp::Lt => Value::Bool(a < b),
                    BinOp::Le => Value::Bool(a <= b),
                    BinOp::Gt => Value::Bool(a > b),
                    BinOp::Ge => Value::Bool(a >= b),
                    BinOp::Add => Value::Number(a + b),
                    BinOp::Sub => Value::Number(a - b),
                    BinOp::Mul => Value::Number(a * b),
                    _ => {
                        if b == 0.0 {
                            return Err(eval_error(format!("division by zero: `{right}` is 0")));
                        }
                        Value::Number(a / b)
                    }
                }
            }
        })
    }

    fn aggregate(&self, aggregate: Aggregate) -> Result<f64, EvalError> {
        let values = self.result;
        if values.is_empty() && !matches!(aggregate, Aggregate::Len | Aggregate::Sum) {
            return Err(eval_error(format!("{}(result) is undefined: result is empty", aggregate.name())));
        }
        let has_nan = values.iter().any(|x| x.is_nan());
        Ok(match aggregate {
            Aggregate::Len => values.len() as f64,
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Min if has_nan => f64::NAN,
            Aggregate::Max if has_nan => f64::NAN,
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    fn number(&self, expr: &Expr, element: Option<f64>, depth: usize) -> Result<f64, EvalError> {
        let value = self.value(expr, element, depth)?;
        self.as_number(value, expr)
    }

    fn as_number(&self, value: Value, expr: &Expr) -> Result<f64, EvalError> {
        match value {
            Value::Number(n) => Ok(n),
            Value::Series => match self.result {
                [x] => Ok(*x),
                [] => Err(eval_error("result is empty, so it has no value to compare; guard with `len(result) > 0 && ...`")),
                values => Err(eval_error(format!(
                    "result has {} ({}), so it cannot be compared as one number; use result[i] for one of them, \
                     all(result, # < x) or any(result, # < x) for each, or avg/min/max/sum(result)",
                    values_count(values.len()),
                    list_values(values)
                ))),
            },
            Value::Bool(_) => Err(eval_error(format!("`{expr}` is true/false where a number is needed"))),
        }
    }

    fn boolean(&self, expr: &Expr, element: Option<f64>, depth: usize) -> Result<bool, EvalError> {
        match self.value(expr, element, depth)? {
            Value::Bool(b) => Ok(b),
            _ => Err(eval_error(format!("`{expr}` is a number where true/false is needed"))),
        }
    }
}

fn values_count(n: usize) -> String {
    if n == 1 {
        "1 value".into()
    } else {
        format!("{n} values")
    }
}

/// `[0.1, 0.2, …]`, with at most eight values shown.
/// A value as people read it: at most 6 significant digits (`0.04999999999999998` → `0.05`),
/// integers and non-finite values as they are.
pub(crate) fn readable(v: f64) -> String {
    if !v.is_finite() || v == v.trunc() && v.abs() < 1e15 {
        return format!("{v}");
    }
    if v.abs() < 1e-4 || v.abs() >= 1e15 {
        return format!("{v:e}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (5 - magnitude).clamp(0, 17) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

pub(crate) fn list_values(values: &[f64]) -> String {
    const SHOWN: usize = 8;
    let mut out: Vec<String> = values.iter().take(SHOWN).map(|v| readable(*v)).collect();
    if values.len() > SHOWN {
        out.push(format!("… {} more", values.len() - SHOWN));
    }
    format!("[{}]", out.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Display: the canonical text, which parses back to the same tree.

const UNARY: u8 = 6;
const ATOM: u8 = 7;

fn precedence(expr: &Expr) -> u8 {
    match expr {
        Expr::Binary(op, ..) => op.precedence(),
        Expr::Neg(_) | Expr::Not(_) => UNARY,
        _ => ATOM,
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, parenthesise: bool) -> fmt::Result {
    if parenthesise {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

fn write_number(f: &mut fmt::Formatter<'_>, n: f64) -> fmt::Result {
    let magnitude = n.abs();
    if magnitude != 0.0 && !(1e-5..1e15).contains(&magnitude) {
        write!(f, "{n:e}")
    } else {
        write!(f, "{n}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write_number(f, *n),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Result => f.write_str("result"),
            Expr::Element => f.write_str("#"),
            Expr::Index(index) => write!(f, "result[{index}]"),
            Expr::Aggregate(aggregate) => write!(f, "{}(result)", aggregate.name()),
            Expr::Quantifier(quantifier, predicate) => write!(f, "{}(result, {predicate})", quantifier.name()),
            Expr::Test(test, arg) => write!(f, "{}({arg})", test.name()),
            Expr::Neg(arg) => {
                f.write_str("-")?;
                write_operand(f, arg, precedence(arg) < UNARY)
            }
            Expr::Not(arg) => {
                f.write_str("!")?;
                write_operand(f, arg, precedence(arg) < UNARY)
            }
            Expr::Binary(op, left, right) => {
                let p = op.precedence();
                // Left-associative; comparisons do not chain, so an equal-precedence operand on
                // either side needs parentheses.
                let left_parens = precedence(left) < p || (op.is_comparison() && precedence(left) == p);
                write_operand(f, left, left_parens)?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, right, precedence(right) <= p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(src: &str, result: &[f64]) -> Result<bool, String> {
        let expr = parse(src).map_err(|e| format!("parse: {e}"))?;
        eval(&expr, result).map_err(|e| format!("eval: {e}"))
    }

    #[test]
    fn evaluates_the_documented_forms() {
        let r = [0.005, 0.02, 0.001];
        let cases: &[(&str, &[f64], bool)] = &[
            ("result < 0.01", &[0.005], true),
            ("result < 0.01", &[0.05], false),
            ("result >= 1e-3", &[0.001], true),
            ("result[0] < 0.01", &r, true),
            ("result[1] < 0.01", &r, false),
            ("result[1 + 1] == 0.001", &r, true),
            ("len(result) == 3", &r, true),
            ("len(result) == 0", &[], true),
            ("all(result, # < 0.01)", &r, false),
            ("all(result, # < 0.03)", &r, true),
            ("any(result, # > 0.01)", &r, true),
            ("any(result, # > 0.03)", &r, false),
            ("avg(result) < 0.01", &r, true),
            ("min(result) == 0.001", &r, true),
            ("max(result) == 0.02", &r, true),
            ("sum(result) == 0", &[], true),
            ("isNaN(result)", &[f64::NAN], true),
            ("isNaN(result[0])", &[1.0], false),
            ("isInf(result)", &[f64::INFINITY], true),
            ("!isNaN(result) && result < 1", &[0.5], true),
            ("not isNaN(result) and result < 1 or false", &[0.5], true),
            ("result < 0.01 || result > 100", &[500.0], true),
            ("!(result < 0.01)", &[0.5], true),
            ("(result + 1) * 2 / 4 - 1 == 0", &[1.0], true),
            ("-result < 0", &[1.0], true),
            ("2 - 1 - 1 == 0", &[], true),
            ("8 / 4 / 2 == 1", &[], true),
            ("1 + 2 * 3 == 7", &[], true),
            ("true == (result > 0)", &[1.0], true),
            ("result != 1", &[1.0], false),
            ("result <= 1 && result >= 1", &[1.0], true),
            // NaN compares false both ways: neither condition matches.
            ("result < 0.01", &[f64::NAN], false),
            ("result >= 0.01", &[f64::NAN], false),
            ("max(result) > 0", &[1.0, f64::NAN], false),
            // Short-circuit protects the index.
            ("len(result) > 0 && result[0] < 1", &[], false),
            ("len(result) == 0 || result[5] < 1", &[], true),
        ];
        for (src, values, want) in cases {
            assert_eq!(check(src, values), Ok(*want), "{src} with {values:?}");
        }
    }

    #[test]
    fn evaluation_errors_are_sentences() {
        let cases: &[(&str, &[f64], &str)] = &[
            ("result < 0.01", &[0.1, 0.2], "result has 2 values ([0.1, 0.2]), so it cannot be compared as one number; use result[i]"),
            ("result < 0.01", &[], "result is empty"),
            ("result[2] < 1", &[1.0], "result[2] is out of range: result has 1 value"),
            ("result[0.5] < 1", &[1.0], "the index `0.5` is 0.5, not a whole number"),
            ("result[-1] < 1", &[1.0], "not a whole number from 0 to 0"),
            ("avg(result) < 1", &[], "avg(result) is undefined: result is empty"),
            ("all(result, # < 1)", &[], "all(result, ...) has no values to test"),
            ("1 / (result - 1) > 0", &[1.0], "division by zero: `result - 1` is 0"),
        ];
        for (src, values, want) in cases {
            let got = check(src, values).unwrap_err();
            assert!(got.contains(want), "{src}: {got}");
        }
    }

    #[test]
    fn parse_errors_name_the_position_and_what_was_expected() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "expected a condition"),
            ("result >", 8, "expected a number, `result`"),
            ("result < 0.01 )", 14, "expected an operator"),
            ("(result < 1", 11, "expected `)` to close the `(` at position 0"),
            ("result = 1", 7, "expected `==`"),
            ("result & 1", 7, "expected `&&`"),
            ("result < 1.", 11, "digit after the decimal point"),
            ("result < 1e", 11, "exponent"),
            ("result < 1e999", 9, "too large"),
            ("result < 2x", 10, "expected an operator or a space"),
            ("result < NaN", 9, "unknown name `NaN`"),
            ("isnan(result)", 0, "did you mean `isNaN`?"),
            ("result + 1", 0, "a condition must be true or false"),
            ("result", 0, "a condition must be true or false"),
            ("0 < result < 1", 11, "cannot be chained"),
            ("# < 1", 0, "`#` stands for each value"),
            ("all(result, # + 1)", 12, "must be true/false"),
            ("all(result # < 1)", 11, "expected `,`"),
            ("avg(1) < 2", 4, "`avg` works on `result`"),
            ("avg(result, result) < 2", 3, "takes 1 argument"),
            ("!result", 1, "`!` negates a condition"),
            ("-(1 < 2)", 1, "`-` negates a number"),
            ("(1 < 2) + 1 < 3", 0, "`+` works on numbers"),
            ("1 && true", 0, "`&&` joins conditions"),
            ("result[0][0] < 1", 9, "cannot be indexed again"),
            ("len(result)[0] < 1", 11, "only `result` can be indexed"),
            ("result[true] < 1", 7, "an index must be a number"),
            ("result < 1 @", 11, "unexpected character `@`"),
            ("résultat", 1, "unexpected character `é`"),
            ("(1 < 2) < 3", 0, "`<` compares numbers"),
            ("all(result, any(result, # > 0))", 12, "`any` cannot be used inside another `all` or `any`"),
        ];
        for (src, position, want) in cases {
            let err = parse(src).unwrap_err();
            assert!(err.message.contains(want), "{src}: {err}");
            assert_eq!(err.position, *position, "{src}: {err}");
        }
    }

    #[test]
    fn hostile_input_is_refused_not_overflowed() {
        let deep = format!("{}result < 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("longer than 4096 bytes"));
        let deep = format!("{}result < 1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nested more than 64"));
        let bangs = format!("{}true", "!".repeat(200));
        assert!(parse(&bangs).unwrap_err().message.contains("nested more than 64"));
        let chain = format!("1{} < 2", " + 1".repeat(200));
        assert!(parse(&chain).unwrap_err().message.contains("more than 64 levels"));
        let fine = format!("{}result < 1{}", "(".repeat(60), ")".repeat(60));
        assert!(parse(&fine).is_ok());
        // A hand-built tree too deep for eval is refused rather than overflowing.
        let mut tall = Expr::Bool(true);
        for _ in 0..1000 {
            tall = Expr::Not(Box::new(tall));
        }
        assert!(eval(&tall, &[]).unwrap_err().message.contains("nested more than"));
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("result<0.01", "result < 0.01"),
            ("(result) < 1e-3", "result < 0.001"),
            ("result < 1e-7", "result < 1e-7"),
            ("result < 2.5E+20", "result < 2.5e20"),
            ("1 - (2 - 3) == 0", "1 - (2 - 3) == 0"),
            ("(1 - 2) - 3 == 0", "1 - 2 - 3 == 0"),
            ("not (true and false) or all(result, #<1)", "!(true && false) || all(result, # < 1)"),
            ("true && (false || true)", "true && (false || true)"),
            ("(true == false) == true", "(true == false) == true"),
            ("--result < 1", "--result < 1"),
            ("result[len(result) - 1] > 0", "result[len(result) - 1] > 0"),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap().to_string(), want, "{src}");
        }
    }

    /// Well-typed trees for the round-trip property.
    #[test]
    fn values_are_shown_with_six_significant_digits() {
        assert_eq!(list_values(&[0.04999999999999998, 140.0, 0.027522935779816515, 1e-9, f64::NAN]), "[0.05, 140, 0.0275229, 1e-9, NaN]");
        assert_eq!(readable(-1234.56789), "-1234.57");
        assert_eq!(readable(0.1 + 0.2), "0.3");
    }

    fn number_expr(quantified: bool) -> BoxedStrategy<Expr> {
        let mut leaves = vec![
            (0.0..1e20f64).prop_map(Expr::Number).boxed(),
            Just(Expr::Result).boxed(),
            prop_oneof![Just(Aggregate::Len), Just(Aggregate::Avg), Just(Aggregate::Min), Just(Aggregate::Max), Just(Aggregate::Sum)]
                .prop_map(Expr::Aggregate)
                .boxed(),
        ];
        if quantified {
            leaves.push(Just(Expr::Element).boxed());
        }
        proptest::strategy::Union::new(leaves)
            .prop_recursive(3, 16, 2, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|e| Expr::Neg(Box::new(e))),
                    inner.clone().prop_map(|e| Expr::Index(Box::new(e))),
                    (prop_oneof![Just(BinOp::Add), Just(BinOp::Sub), Just(BinOp::Mul), Just(BinOp::Div)], inner.clone(), inner)
                        .prop_map(|(op, l, r)| Expr::Binary(op, Box::new(l), Box::new(r))),
                ]
            })
            .boxed()
    }

    fn bool_expr(quantified: bool) -> BoxedStrategy<Expr> {
        let comparison = (
            prop_oneof![Just(BinOp::Lt), Just(BinOp::Le), Just(BinOp::Gt), Just(BinOp::Ge), Just(BinOp::Eq), Just(BinOp::Ne)],
            number_expr(quantified),
            number_expr(quantified),
        )
            .prop_map(|(op, l, r)| Expr::Binary(op, Box::new(l), Box::new(r)));
        let tests =
            (prop_oneof![Just(Test::IsNaN), Just(Test::IsInf)], number_expr(quantified)).prop_map(|(t, e)| Expr::Test(t, Box::new(e)));
        let leaf = prop_oneof![any::<bool>().prop_map(Expr::Bool), comparison, tests];
        leaf.prop_recursive(3, 16, 2, move |inner| {
            let quantifier = (prop_oneof![Just(Quantifier::All), Just(Quantifier::Any)], bool_expr_flat(true))
                .prop_map(|(q, p)| Expr::Quantifier(q, Box::new(p)));
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                (prop_oneof![Just(BinOp::And), Just(BinOp::Or), Just(BinOp::Eq), Just(BinOp::Ne)], inner.clone(), inner)
                    .prop_map(|(op, l, r)| Expr::Binary(op, Box::new(l), Box::new(r))),
                quantifier,
            ]
        })
        .boxed()
    }

    /// A predicate for `all`/`any`, without further recursion into quantifiers.
    fn bool_expr_flat(quantified: bool) -> BoxedStrategy<Expr> {
        (prop_oneof![Just(BinOp::Lt), Just(BinOp::Ge)], number_expr(quantified), number_expr(quantified))
            .prop_map(|(op, l, r)| Expr::Binary(op, Box::new(l), Box::new(r)))
            .boxed()
    }

    proptest! {
        #[test]
        fn parse_never_panics(src in ".{0,200}") {
            if let Err(e) = parse(&src) {
                prop_assert!(e.position <= src.len());
            }
        }

        #[test]
        fn parse_never_panics_on_condition_like_text(src in "[-+*/<>=!&|()\\[\\],#. 0-9a-zA-Z_]{0,120}") {
            match parse(&src) {
                Err(e) => prop_assert!(e.position <= src.len() && !e.message.is_empty()),
                Ok(expr) => {
                    let _ = eval(&expr, &[]);
                    let _ = eval(&expr, &[1.0]);
                    let _ = eval(&expr, &[f64::NAN, 0.0, -1.0]);
                    // The canonical text adds spaces, so it may exceed the length limit.
                    let text = expr.to_string();
                    if text.len() <= MAX_SOURCE_LEN {
                        prop_assert_eq!(parse(&text), Ok(expr), "{}", text);
                    }
                }
            }
        }

        #[test]
        fn eval_never_panics(expr in bool_expr(false), values in proptest::collection::vec(proptest::num::f64::ANY, 0..5)) {
            let _ = eval(&expr, &values);
        }

        #[test]
        fn display_round_trips(expr in bool_expr(false)) {
            let text = expr.to_string();
            prop_assert_eq!(parse(&text), Ok(expr), "{}", text);
        }
    }
}
