//! The node filter language: OAR / Grid'5000 `-p` property syntax, a small
//! SQL-`WHERE`-like language such as
//! `gpu_count >= 2 AND gpu_model LIKE 'A%' AND NOT exotic`.
//!
//! This module owns parsing filter text into a [`Filter`], checking its
//! property names, printing it canonically, and evaluating it against one
//! node's [`Properties`]. It never builds SQL or regular expressions from the
//! text, never panics on any input, and knows nothing about where properties
//! come from or how nodes are stored.
//!
//! # Syntax
//!
//! - Conditions: `name op value` with `op` one of `=`, `!=`, `<>`, `<`, `<=`,
//!   `>`, `>=`; `name [NOT] IN (v1, v2, ...)` (at least one value);
//!   `name [NOT] LIKE 'pattern'`; or a bare `name`, meaning "is truthy".
//! - Combine with `NOT`, `AND`, `OR` (tightest first) and parentheses.
//!   Keywords (`AND OR NOT IN LIKE TRUE FALSE`) are case-insensitive.
//! - Values: integers (`2`, `-1`), decimals (`2.5`, `1e9`), strings in single
//!   or double quotes (a doubled quote inside stands for one: `'it''s'`),
//!   `TRUE`, `FALSE`.
//! - Property names are ASCII letters, digits and `_`, not starting with a
//!   digit, and must be known to the caller's `is_known`.
//! - At most [`MAX_LEN`] characters and [`MAX_DEPTH`] nested levels of
//!   parentheses and `NOT`.
//!
//! # Semantics
//!
//! - Numbers compare numerically (`Int` with `Int` exactly, otherwise as
//!   `f64`); strings compare by `=`/`!=` and lexicographically for ordering.
//! - A number and a string compare numerically when the string reads as a
//!   number (`gpu_count = '2'`), in either direction.
//! - Booleans only support `=` and `!=`. A boolean equals `TRUE`/`FALSE`,
//!   the numbers `1`/`0`, and the strings `'YES'`/`'true'`/`'1'` and
//!   `'NO'`/`'false'`/`'0'` (any case), so `exotic = 'YES'` works on a
//!   boolean `exotic` as Grid'5000 writes it.
//! - Any other pairing (a boolean with `'maybe'`, a string with `TRUE`, an
//!   ordering on booleans) is simply false, whatever the operator: `!=`
//!   included. It is not an error.
//! - A bare name is truthy for `true`, a non-zero number, or a non-empty
//!   string other than a false spelling (`'NO'`, `'false'`, `'0'`).
//! - `LIKE` is SQL `LIKE` on string values only: `%` matches any run of
//!   characters, `_` one character, case-sensitively, with no escape
//!   character. On a non-string value `LIKE` and `NOT LIKE` are both false.
//! - `x IN (a, b)` means `x = a OR x = b`; `x NOT IN (a, b)` means
//!   `x != a AND x != b`.
//! - **Missing properties.** A custom property may be absent from a node
//!   (standard properties never are). Every condition on an absent property
//!   is false, including `!=`, `NOT IN`, `NOT LIKE` and the bare name. The
//!   `NOT` operator still negates its operand: logic is two-valued, not SQL's
//!   three-valued `NULL` logic. So on a node without `rack`,
//!   `rack != 'r1'` is false but `NOT rack = 'r1'` is true.

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

pub use ast::{CmpOp, Expr, Literal};
pub use error::{FilterError, FilterErrorKind};

use crate::model::properties::Properties;

/// The longest filter accepted, in characters.
pub const MAX_LEN: usize = 4096;

/// How deeply parentheses and `NOT` may nest.
pub const MAX_DEPTH: usize = 64;

/// A parsed, checked filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    expr: Expr,
    source: String,
}

impl Filter {
    /// Parses `source`. `is_known(name)` says whether a property name
    /// exists; an unknown name is an error naming it and its position.
    pub fn parse(source: &str, is_known: &dyn Fn(&str) -> bool) -> Result<Filter, FilterError> {
        if source.chars().nth(MAX_LEN).is_some() {
            return Err(FilterError { position: MAX_LEN + 1, kind: FilterErrorKind::TooLong });
        }
        if source.trim().is_empty() {
            return Err(FilterError { position: 1, kind: FilterErrorKind::Empty });
        }
        let expr = parser::parse(source, is_known)?;
        Ok(Filter { expr, source: source.to_owned() })
    }

    /// Whether a node with `props` passes the filter.
    pub fn matches(&self, props: &Properties) -> bool {
        eval::eval(&self.expr, props)
    }

    /// The text the filter was parsed from, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Names of the properties the filter reads (sorted, deduplicated).
    pub fn properties(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        self.expr.for_each_property(&mut |name| {
            names.insert(name);
        });
        names.into_iter().map(str::to_owned).collect()
    }
}

/// The canonical text form: re-parsing it gives an equal expression.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
