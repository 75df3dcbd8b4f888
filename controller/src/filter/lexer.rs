//! Splits filter text into tokens, each with the column it starts at.
//!
//! This module owns the token grammar: names, keywords, quoted strings,
//! numbers, operators and punctuation. It does not know the expression
//! grammar or which property names exist, and it never panics: anything it
//! cannot read becomes a [`FilterError`].

use super::ast::CmpOp;
use super::error::{FilterError, FilterErrorKind};

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// A property name: an ASCII letter or `_`, then ASCII letters, digits
    /// and `_`.
    Ident(String),
    /// A quoted string, quotes removed and doubled quotes undone.
    Str(String),
    Int(i64),
    Float(f64),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    In,
    Like,
    True,
    False,
    Eof,
}

/// One token and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// 1-based character column of the token's first character.
    pub position: usize,
    /// The token's text exactly as written (empty at the end of input).
    pub text: String,
}

impl Token {
    /// How the token reads in an error message: `end of input`, a string as
    /// written (`'A100'`), or anything else in single quotes (`'AND'`).
    pub fn describe(&self) -> String {
        match self.kind {
            TokenKind::Eof => "end of input".to_owned(),
            TokenKind::Str(_) => shorten(&self.text),
            _ => format!("'{}'", shorten(&self.text)),
        }
    }
}

/// Cuts `text` to a length fit for an error message.
pub(crate) fn shorten(text: &str) -> String {
    const KEEP: usize = 40;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Reads tokens one at a time from the filter text.
#[derive(Debug)]
pub(crate) struct Lexer {
    chars: Vec<char>,
    /// Index into `chars` of the next unread character.
    at: usize,
}

impl Lexer {
    pub fn new(source: &str) -> Lexer {
        Lexer { chars: source.chars().collect(), at: 0 }
    }

    /// The next token; [`TokenKind::Eof`] once the input is used up, as
    /// often as it is asked.
    pub fn next_token(&mut self) -> Result<Token, FilterError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
        let start = self.at;
        let Some(c) = self.peek() else {
            return Ok(self.token(TokenKind::Eof, start));
        };
        let kind = match c {
            '(' => self.single(TokenKind::LParen),
            ')' => self.single(TokenKind::RParen),
            ',' => self.single(TokenKind::Comma),
            '\'' | '"' => self.string(c)?,
            '=' | '!' | '<' | '>' => self.operator()?,
            '0'..='9' => self.number()?,
            '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            c if c.is_alphabetic() || c == '_' => self.word()?,
            found => {
                return Err(error(start + 1, FilterErrorKind::UnexpectedCharacter { found }));
            }
        };
        Ok(self.token(kind, start))
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token {
        Token { kind, position: start + 1, text: self.text(start) }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    /// The source text from `start` up to the next unread character.
    fn text(&self, start: usize) -> String {
        self.chars[start..self.at].iter().collect()
    }

    fn eat_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.at += 1;
        kind
    }

    /// A string quoted with `quote`; a doubled quote inside stands for one.
    fn string(&mut self, quote: char) -> Result<TokenKind, FilterError> {
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(error(start + 1, FilterErrorKind::UnterminatedString)),
                Some(c) if c == quote => {
                    self.at += 1;
                    if self.peek() == Some(quote) {
                        self.at += 1;
                        value.push(quote);
                    } else {
                        return Ok(TokenKind::Str(value));
                    }
                }
                Some(c) => {
                    self.at += 1;
                    value.push(c);
                }
            }
        }
    }

    /// The longest run of operator characters, which must be exactly one
    /// operator: `==` or `=>` is an error rather than two tokens.
    fn operator(&mut self) -> Result<TokenKind, FilterError> {
        let start = self.at;
        self.eat_while(|c| matches!(c, '=' | '!' | '<' | '>'));
        let text = self.text(start);
        match CmpOp::from_symbol(&text) {
            Some(op) => Ok(TokenKind::Op(op)),
            None => Err(error(start + 1, FilterErrorKind::UnknownOperator { text: shorten(&text) })),
        }
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?`, not followed by a letter,
    /// digit, `_` or `.`. Integers must fit in `i64`, decimals must be
    /// finite.
    fn number(&mut self) -> Result<TokenKind, FilterError> {
        let start = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
        }
        let digits = |c: char| c.is_ascii_digit();
        self.eat_while(digits);
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(digits) {
            is_float = true;
            self.at += 1;
            self.eat_while(digits);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(digits) {
                is_float = true;
                self.at += 1 + sign;
                self.eat_while(digits);
            }
        }
        // Glued-on junk (`2abc`, `1.`, `1.2.3`) makes the whole run invalid.
        let mut malformed = false;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            malformed = true;
            self.at += 1;
        }
        let text = self.text(start);
        let kind = if malformed {
            None
        } else if is_float {
            text.parse::<f64>().ok().filter(|x| x.is_finite()).map(TokenKind::Float)
        } else {
            text.parse::<i64>().ok().map(TokenKind::Int)
        };
        kind.ok_or_else(|| error(start + 1, FilterErrorKind::InvalidNumber { text: shorten(&text) }))
    }

    /// A keyword (any case) or a property name. The whole run of letters,
    /// digits and `_` is read first, so that `clüster` is reported at its
    /// `ü` rather than as the unknown property `cl`.
    fn word(&mut self) -> Result<TokenKind, FilterError> {
        let start = self.at;
        self.eat_while(|c| c.is_alphanumeric() || c == '_');
        if let Some(offset) = self.chars[start..self.at].iter().position(|c| !c.is_ascii()) {
            let found = self.chars[start + offset];
            return Err(error(start + offset + 1, FilterErrorKind::UnexpectedCharacter { found }));
        }
        let text = self.text(start);
        Ok(match text.to_ascii_uppercase().as_str() {
            "AND" => TokenKind::And,
            "OR" => TokenKind::Or,
            "NOT" => TokenKind::Not,
            "IN" => TokenKind::In,
            "LIKE" => TokenKind::Like,
            "TRUE" => TokenKind::True,
            "FALSE" => TokenKind::False,
            _ => TokenKind::Ident(text),
        })
    }
}

fn error(position: usize, kind: FilterErrorKind) -> FilterError {
    FilterError { position, kind }
}
