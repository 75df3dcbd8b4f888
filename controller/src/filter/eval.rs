//! Evaluates a parsed filter against one node's properties.
//!
//! This module owns the comparison semantics (which value kinds compare with
//! which, truthiness, SQL `LIKE` matching). It does not parse and never fails:
//! a comparison that makes no sense for the values at hand is simply false.
//! It never turns a pattern into a regular expression.

use std::cmp::Ordering;

use super::ast::{CmpOp, Expr, Literal};
use crate::model::properties::{PropValue, Properties};

/// Whether `props` satisfies `expr`.
pub(crate) fn eval(expr: &Expr, props: &Properties) -> bool {
    match expr {
        Expr::Or(left, right) => eval(left, props) || eval(right, props),
        Expr::And(left, right) => eval(left, props) && eval(right, props),
        Expr::Not(inner) => !eval(inner, props),
        Expr::Compare { property, op, value } => props.get(property).is_some_and(|have| compare(have, *op, value)),
        // `p IN (a, b)` is `p = a OR p = b`; `p NOT IN (a, b)` is
        // `p != a AND p != b`, so a value that compares with none of them
        // (wrong kind) is in neither.
        Expr::In { property, negated, values } => props.get(property).is_some_and(|have| {
            if *negated { values.iter().all(|v| compare(have, CmpOp::Ne, v)) } else { values.iter().any(|v| compare(have, CmpOp::Eq, v)) }
        }),
        Expr::Like { property, negated, pattern } => match props.get(property) {
            Some(PropValue::Str(text)) => like(text, pattern) != *negated,
            _ => false,
        },
        Expr::Truthy(property) => props.get(property).is_some_and(truthy),
    }
}

/// A value reduced to what comparisons look at.
#[derive(Clone, Copy, Debug)]
enum Operand<'a> {
    Bool(bool),
    Num(Num),
    Str(&'a str),
}

#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i64),
    Float(f64),
}

impl<'a> From<&'a PropValue> for Operand<'a> {
    fn from(value: &'a PropValue) -> Self {
        match value {
            PropValue::Bool(b) => Operand::Bool(*b),
            PropValue::Int(i) => Operand::Num(Num::Int(*i)),
            PropValue::Float(x) => Operand::Num(Num::Float(*x)),
            PropValue::Str(s) => Operand::Str(s),
        }
    }
}

impl<'a> From<&'a Literal> for Operand<'a> {
    fn from(value: &'a Literal) -> Self {
        match value {
            Literal::Bool(b) => Operand::Bool(*b),
            Literal::Int(i) => Operand::Num(Num::Int(*i)),
            Literal::Float(x) => Operand::Num(Num::Float(*x)),
            Literal::Str(s) => Operand::Str(s),
        }
    }
}

/// `have op want`, with the coercions described in the module docs of
/// [`crate::filter`].
fn compare(have: &PropValue, op: CmpOp, want: &Literal) -> bool {
    let ordering = match (Operand::from(have), Operand::from(want)) {
        (Operand::Num(a), Operand::Num(b)) => num_cmp(a, b),
        (Operand::Str(a), Operand::Str(b)) => Some(a.cmp(b)),
        (Operand::Num(a), Operand::Str(b)) => parse_number(b).and_then(|b| num_cmp(a, b)),
        (Operand::Str(a), Operand::Num(b)) => parse_number(a).and_then(|a| num_cmp(a, b)),
        (Operand::Bool(a), other) | (other, Operand::Bool(a)) => {
            // Booleans are equal or not; they have no order.
            return match (op, as_bool(other)) {
                (CmpOp::Eq, Some(b)) => a == b,
                (CmpOp::Ne, Some(b)) => a != b,
                _ => false,
            };
        }
    };
    ordering.is_some_and(|ordering| holds(op, ordering))
}

/// Whether `ordering` (of left against right) satisfies `op`.
fn holds(op: CmpOp, ordering: Ordering) -> bool {
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    }
}

/// Integers compare exactly with integers; anything involving a float
/// compares as `f64` (`None` when a NaN is involved).
fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
        (a, b) => as_f64(a).partial_cmp(&as_f64(b)),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        // Precision loss above 2^53 is accepted: such values are not
        // compared with decimals in practice.
        Num::Int(i) => i as f64,
        Num::Float(x) => x,
    }
}

/// A string that reads as an integer or a finite decimal.
fn parse_number(s: &str) -> Option<Num> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::Int(i));
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite()).map(Num::Float)
}

/// What a value means as a boolean, if anything.
fn as_bool(operand: Operand<'_>) -> Option<bool> {
    match operand {
        Operand::Bool(b) => Some(b),
        Operand::Num(Num::Int(1)) => Some(true),
        Operand::Num(Num::Int(0)) => Some(false),
        Operand::Num(Num::Float(1.0)) => Some(true),
        Operand::Num(Num::Float(0.0)) => Some(false),
        Operand::Num(_) => None,
        Operand::Str(s) => parse_bool(s),
    }
}

/// Grid'5000 writes booleans as `'YES'`/`'NO'`; accept those and the usual
/// spellings, in any case.
fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 3] = ["yes", "true", "1"];
    const FALSE: [&str; 3] = ["no", "false", "0"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Whether a bare property name holds: `true`, a non-zero number, or a
/// non-empty string that does not spell false (`'NO'`, `'false'`, `'0'`).
fn truthy(value: &PropValue) -> bool {
    match value {
        PropValue::Bool(b) => *b,
        PropValue::Int(i) => *i != 0,
        PropValue::Float(x) => *x != 0.0 && !x.is_nan(),
        PropValue::Str(s) => !s.is_empty() && parse_bool(s) != Some(false),
    }
}

/// SQL `LIKE`: `%` matches any run of characters (even none), `_` exactly
/// one character, anything else itself, case-sensitively. There is no
/// escape character.
///
/// Greedy matching that, on a mismatch, moves only the most recent `%` one
/// character further. Earlier `%`s never need revisiting (the later one can
/// absorb whatever they would), so this takes at most
/// `O(text.len() * pattern.len())` steps, whatever the pattern.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    // After the last `%` seen: where the pattern resumes, and the text
    // position that `%` currently stretches to.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                p += 1;
                backtrack = Some((p, t));
            }
            Some(&c) if c == '_' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((resume, absorbed)) => {
                    p = resume;
                    t = absorbed + 1;
                    backtrack = Some((resume, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}
