//! The filter syntax tree and its canonical text form.
//!
//! This module owns the shape of a parsed filter and how it prints. It does
//! not parse, evaluate, or know which property names exist.

use std::fmt;

/// A parsed filter expression.
///
/// `AND` and `OR` are binary and left-associative, exactly as the parser
/// builds them: `a AND b AND c` is `And(And(a, b), c)`. Parentheses leave no
/// node of their own; [`fmt::Display`] puts back those needed to rebuild the
/// same tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `left OR right`.
    Or(Box<Expr>, Box<Expr>),
    /// `left AND right`.
    And(Box<Expr>, Box<Expr>),
    /// `NOT inner`.
    Not(Box<Expr>),
    /// `property op value`, e.g. `gpu_count >= 2`.
    Compare { property: String, op: CmpOp, value: Literal },
    /// `property IN (v1, v2, ...)`, or `NOT IN` when `negated`. `values` is
    /// never empty when built by the parser.
    In { property: String, negated: bool, values: Vec<Literal> },
    /// `property LIKE 'pattern'`, or `NOT LIKE` when `negated`.
    Like { property: String, negated: bool, pattern: String },
    /// A bare property name used as a condition (`exotic`): true when the
    /// property holds a truthy value.
    Truthy(String),
}

/// A comparison operator. `<>` and `!=` both parse to [`CmpOp::Ne`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Parses one of `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`.
    pub(crate) fn from_symbol(text: &str) -> Option<CmpOp> {
        Some(match text {
            "=" => CmpOp::Eq,
            "!=" | "<>" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A literal value written in a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `TRUE` / `FALSE` (any case).
    Bool(bool),
    /// An integer such as `2` or `-1`.
    Int(i64),
    /// A decimal such as `2.5`, `-0.5` or `1e9`; always finite.
    Float(f64),
    /// A quoted string: `'A100'` or `"A100"`.
    Str(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Int(i) => write!(f, "{i}"),
            // `Debug` prints the shortest text that reads back to the same
            // value and always marks it as a float (`1.0`, `1e20`), so the
            // lexer never mistakes it for an integer.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Str(s) => write_quoted(f, s),
        }
    }
}

/// Writes `s` single-quoted, doubling any quote inside.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for (i, part) in s.split('\'').enumerate() {
        if i > 0 {
            f.write_str("''")?;
        }
        f.write_str(part)?;
    }
    f.write_str("'")
}

impl Expr {
    /// Calls `visit` with the name of every property the expression reads,
    /// in source order, repeats included.
    pub(crate) fn for_each_property<'a>(&'a self, visit: &mut dyn FnMut(&'a str)) {
        match self {
            Expr::Or(left, right) | Expr::And(left, right) => {
                left.for_each_property(visit);
                right.for_each_property(visit);
            }
            Expr::Not(inner) => inner.for_each_property(visit),
            Expr::Compare { property, .. } | Expr::In { property, .. } | Expr::Like { property, .. } | Expr::Truthy(property) => {
                visit(property)
            }
        }
    }

    fn is_binary(&self) -> bool {
        matches!(self, Expr::Or(..) | Expr::And(..))
    }
}

/// Writes `expr`, in parentheses when `wrap`.
fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, wrap: bool) -> fmt::Result {
    if wrap { write!(f, "({expr})") } else { write!(f, "{expr}") }
}

/// The canonical text: keywords in upper case, single-quoted strings, one
/// space around operators, and only the parentheses the tree needs.
/// Parsing it gives back an equal tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(left, right) => {
                write_operand(f, left, false)?;
                f.write_str(" OR ")?;
                write_operand(f, right, matches!(**right, Expr::Or(..)))
            }
            Expr::And(left, right) => {
                write_operand(f, left, matches!(**left, Expr::Or(..)))?;
                f.write_str(" AND ")?;
                write_operand(f, right, right.is_binary())
            }
            Expr::Not(inner) => {
                f.write_str("NOT ")?;
                write_operand(f, inner, inner.is_binary())
            }
            Expr::Compare { property, op, value } => write!(f, "{property} {op} {value}"),
            Expr::In { property, negated, values } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{property} {not}IN (")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str(")")
            }
            Expr::Like { property, negated, pattern } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{property} {not}LIKE ")?;
                write_quoted(f, pattern)
            }
            Expr::Truthy(property) => f.write_str(property),
        }
    }
}
