//! Filter errors: what went wrong and where, worded for the person who typed
//! the filter.
//!
//! This module owns the error type and its messages. It does not decide when
//! an error happens (the lexer and parser do) and never panics.

use std::fmt;

use super::{MAX_DEPTH, MAX_LEN};

/// A filter that could not be parsed. Displays as
/// `at position 12: unknown property 'gpu_cont'`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("at position {position}: {kind}")]
pub struct FilterError {
    /// 1-based character column where the problem starts; one past the last
    /// character when the problem is the end of the input.
    pub position: usize,
    /// What is wrong.
    pub kind: FilterErrorKind,
}

/// What is wrong with a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterErrorKind {
    /// The filter is empty or only whitespace.
    Empty,
    /// The filter is longer than [`MAX_LEN`] characters.
    TooLong,
    /// Parentheses and `NOT` are nested more than [`MAX_DEPTH`] levels deep.
    TooDeep,
    /// A property name that no node has.
    UnknownProperty { name: String },
    /// The parser wanted one thing and found another. Both are already
    /// worded for the message: `expected` like "a value after '>='", `found`
    /// like "end of input" or "'foo'".
    UnexpectedToken { expected: String, found: String },
    /// A character that starts no token, such as `&` or `#`.
    UnexpectedCharacter { found: char },
    /// A run of `=`, `!`, `<`, `>` that is not a comparison operator, such as
    /// `==` or `=>`.
    UnknownOperator { text: String },
    /// A `)` with no `(` before it.
    UnmatchedParen,
    /// A quoted string with no closing quote.
    UnterminatedString,
    /// A number that is malformed (`1.`, `2abc`) or out of range.
    InvalidNumber { text: String },
}

impl fmt::Display for FilterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterErrorKind::Empty => f.write_str("the filter is empty"),
            FilterErrorKind::TooLong => {
                write!(f, "the filter is too long (at most {MAX_LEN} characters)")
            }
            FilterErrorKind::TooDeep => write!(f, "the filter nests parentheses and NOT more than {MAX_DEPTH} levels deep"),
            FilterErrorKind::UnknownProperty { name } => {
                write!(f, "unknown property '{name}'")
            }
            FilterErrorKind::UnexpectedToken { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            FilterErrorKind::UnexpectedCharacter { found } => {
                write!(f, "unexpected character '{}'", found.escape_debug())?;
                match found {
                    '&' => f.write_str(" (write AND)"),
                    '|' => f.write_str(" (write OR)"),
                    '`' => f.write_str(" (quote strings with ' or \")"),
                    _ => Ok(()),
                }
            }
            FilterErrorKind::UnknownOperator { text } => {
                write!(f, "unknown operator '{text}' (compare with =, !=, <>, <, <=, >, >=; negate with NOT)")
            }
            FilterErrorKind::UnmatchedParen => f.write_str("')' has no matching '('"),
            FilterErrorKind::UnterminatedString => f.write_str("unterminated string (add the closing quote)"),
            FilterErrorKind::InvalidNumber { text } => {
                write!(f, "invalid number '{text}' (write integers like 42 or -1, decimals like 2.5)")
            }
        }
    }
}
