//! Recursive-descent parser from tokens to an [`Expr`].
//!
//! This module owns the expression grammar, precedence, the nesting limit and
//! the check that every property name is known. It does not evaluate, and it
//! never panics: every malformed input becomes a [`FilterError`].
//!
//! ```text
//! or_expr   := and_expr ( OR and_expr )*
//! and_expr  := not_expr ( AND not_expr )*
//! not_expr  := NOT not_expr | '(' or_expr ')' | predicate
//! predicate := NAME
//!            | NAME cmp_op literal
//!            | NAME [NOT] IN '(' literal ( ',' literal )* ')'
//!            | NAME [NOT] LIKE string
//! literal   := integer | decimal | string | TRUE | FALSE
//! ```

use super::MAX_DEPTH;
use super::ast::{Expr, Literal};
use super::error::{FilterError, FilterErrorKind};
use super::lexer::{Lexer, Token, TokenKind, shorten};

/// Parses a whole filter. The caller has already checked that it is neither
/// empty nor too long.
pub(crate) fn parse(source: &str, is_known: &dyn Fn(&str) -> bool) -> Result<Expr, FilterError> {
    let mut lexer = Lexer::new(source);
    let current = lexer.next_token()?;
    let mut parser = Parser { lexer, current, is_known, depth: 0 };
    let expr = parser.or_expr()?;
    match parser.current.kind {
        TokenKind::Eof => Ok(expr),
        TokenKind::RParen => Err(FilterError { position: parser.current.position, kind: FilterErrorKind::UnmatchedParen }),
        _ => Err(parser.unexpected("AND, OR or end of input")),
    }
}

struct Parser<'a> {
    lexer: Lexer,
    /// The next token, not yet consumed.
    current: Token,
    is_known: &'a dyn Fn(&str) -> bool,
    /// How many `(` and `NOT` enclose the current position.
    depth: usize,
}

impl Parser<'_> {
    /// Consumes the current token and returns it.
    fn advance(&mut self) -> Result<Token, FilterError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.current, next))
    }

    /// An error saying the current token is not `expected`.
    fn unexpected(&self, expected: &str) -> FilterError {
        FilterError {
            position: self.current.position,
            kind: FilterErrorKind::UnexpectedToken { expected: expected.to_owned(), found: self.current.describe() },
        }
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and_expr()?;
        while self.current.kind == TokenKind::Or {
            self.advance()?;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not_expr()?;
        while self.current.kind == TokenKind::And {
            self.advance()?;
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, FilterError> {
        match self.current.kind {
            TokenKind::Not => {
                self.enter()?;
                self.advance()?;
                let inner = self.not_expr()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            TokenKind::LParen => {
                self.enter()?;
                let open = self.advance()?;
                let inner = self.or_expr()?;
                if self.current.kind != TokenKind::RParen {
                    return Err(self.unexpected(&format!("AND, OR or ')' to close the '(' at position {}", open.position)));
                }
                self.advance()?;
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Ident(_) => self.predicate(),
            _ => Err(self.unexpected("a property name, NOT or '('")),
        }
    }

    /// Goes one level deeper, or fails with [`FilterErrorKind::TooDeep`] at
    /// the current token.
    fn enter(&mut self) -> Result<(), FilterError> {
        if self.depth >= MAX_DEPTH {
            return Err(FilterError { position: self.current.position, kind: FilterErrorKind::TooDeep });
        }
        self.depth += 1;
        Ok(())
    }

    /// A property name and whatever condition follows it. The current token
    /// is an identifier.
    fn predicate(&mut self) -> Result<Expr, FilterError> {
        let TokenKind::Ident(name) = &self.current.kind else {
            return Err(self.unexpected("a property name"));
        };
        // Checked before reading on, so that the first problem in the text
        // is the one reported.
        if !(self.is_known)(name) {
            return Err(FilterError { position: self.current.position, kind: FilterErrorKind::UnknownProperty { name: name.clone() } });
        }
        let property = name.clone();
        self.advance()?;
        match &self.current.kind {
            TokenKind::Op(op) => {
                let op = *op;
                let op_token = self.advance()?;
                let expected = format!("a value after '{}'", op_token.text);
                let value = self.literal(&expected)?;
                Ok(Expr::Compare { property, op, value })
            }
            TokenKind::In => self.in_list(property, false),
            TokenKind::Like => self.like(property, false),
            TokenKind::Not => {
                self.advance()?;
                match self.current.kind {
                    TokenKind::In => self.in_list(property, true),
                    TokenKind::Like => self.like(property, true),
                    _ => Err(self.unexpected(&format!("IN or LIKE after '{property} NOT'"))),
                }
            }
            // A name or value right after a name can never be valid: most
            // likely the operator is missing.
            TokenKind::Ident(_) | TokenKind::Str(_) | TokenKind::Int(_) | TokenKind::Float(_) | TokenKind::True | TokenKind::False => {
                Err(self.unexpected(&format!("a comparison operator (=, !=, <>, <, <=, >, >=), IN or LIKE after '{property}'")))
            }
            _ => Ok(Expr::Truthy(property)),
        }
    }

    /// `IN (v1, ...)`; the current token is `IN`.
    fn in_list(&mut self, property: String, negated: bool) -> Result<Expr, FilterError> {
        self.advance()?;
        if self.current.kind != TokenKind::LParen {
            return Err(self.unexpected("'(' after IN"));
        }
        self.advance()?;
        let mut values = vec![self.literal("a value in the IN list")?];
        loop {
            match self.current.kind {
                TokenKind::Comma => {
                    self.advance()?;
                    values.push(self.literal("a value after ',' in the IN list")?);
                }
                TokenKind::RParen => {
                    self.advance()?;
                    return Ok(Expr::In { property, negated, values });
                }
                _ => return Err(self.unexpected("',' or ')' in the IN list")),
            }
        }
    }

    /// `LIKE 'pattern'`; the current token is `LIKE`.
    fn like(&mut self, property: String, negated: bool) -> Result<Expr, FilterError> {
        self.advance()?;
        let TokenKind::Str(pattern) = &self.current.kind else {
            return Err(self.unexpected("a quoted pattern after LIKE"));
        };
        let pattern = pattern.clone();
        self.advance()?;
        Ok(Expr::Like { property, negated, pattern })
    }

    /// A literal value, or an error saying `expected` was wanted.
    fn literal(&mut self, expected: &str) -> Result<Literal, FilterError> {
        let value = match &self.current.kind {
            TokenKind::Int(i) => Literal::Int(*i),
            TokenKind::Float(x) => Literal::Float(*x),
            TokenKind::Str(s) => Literal::Str(s.clone()),
            TokenKind::True => Literal::Bool(true),
            TokenKind::False => Literal::Bool(false),
            TokenKind::Ident(name) => {
                let hint = format!("{expected} (strings go in quotes: '{}')", shorten(name));
                return Err(self.unexpected(&hint));
            }
            _ => return Err(self.unexpected(expected)),
        };
        self.advance()?;
        Ok(value)
    }
}
