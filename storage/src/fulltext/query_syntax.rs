//! The query language of `matches(column, 'query')`, a subset of tantivy's:
//!
//! - `word` — the word (its tokens, as the column's analyzer cuts a query; several
//!   tokens must appear as a phrase);
//! - `"several words"` — a phrase: the tokens in this order at these distances;
//! - `prefix*` — a token starting with `prefix` (one token);
//! - `a AND b`, `a OR b`, `NOT a`, `-a` (a `-` that starts a word; `E-17` is a word),
//!   parentheses; words next to each other mean AND
//!   (`通讯超时 网关7` = `通讯超时 AND 网关7`); AND binds tighter than OR. The operators
//!   are upper case: `and`, `or` and `not` are words.
//!
//! This module only parses; [`super::compiled`] turns the tree into tokens.

use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryTree {
    Word(String),
    Phrase(String),
    Prefix(String),
    And(Vec<QueryTree>),
    Or(Vec<QueryTree>),
    Not(Box<QueryTree>),
}

/// Why a query does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub reason: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lexeme {
    Word(String),
    Prefix(String),
    Phrase(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn lex(q: &str) -> Result<Vec<Lexeme>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = q.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Lexeme::Open);
            }
            ')' => {
                chars.next();
                out.push(Lexeme::Close);
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    text.push(c);
                }
                if !closed {
                    return Err(SyntaxError {
                        reason: format!(
                            "the phrase starting at character {} has no closing quote",
                            q[..i].chars().count() + 1
                        ),
                    });
                }
                out.push(Lexeme::Phrase(text));
            }
            '-' => {
                chars.next();
                out.push(Lexeme::Not);
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(match word.as_str() {
                    "AND" | "&&" => Lexeme::And,
                    "OR" | "||" => Lexeme::Or,
                    "NOT" => Lexeme::Not,
                    _ => match word.strip_suffix('*') {
                        Some(p) if !p.is_empty() && !p.ends_with('*') => {
                            Lexeme::Prefix(p.to_string())
                        }
                        Some(_) => {
                            return Err(SyntaxError {
                                reason: format!("\"{word}\": a prefix needs at least one character before a single *"),
                            });
                        }
                        None => Lexeme::Word(word),
                    },
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    lexemes: Vec<Lexeme>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexeme> {
        self.lexemes.get(self.at)
    }

    fn next(&mut self) -> Option<Lexeme> {
        let l = self.lexemes.get(self.at).cloned();
        self.at += 1;
        l
    }

    fn or(&mut self) -> Result<QueryTree, SyntaxError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Lexeme::Or) {
            self.next();
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            QueryTree::Or(parts)
        })
    }

    fn and(&mut self) -> Result<QueryTree, SyntaxError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Lexeme::And) => {
                    self.next();
                    parts.push(self.unary()?);
                }
                Some(Lexeme::Or | Lexeme::Close) | None => break,
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            QueryTree::And(parts)
        })
    }

    fn unary(&mut self) -> Result<QueryTree, SyntaxError> {
        match self.next() {
            Some(Lexeme::Not) => Ok(QueryTree::Not(Box::new(self.unary()?))),
            Some(Lexeme::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Lexeme::Close) => Ok(inner),
                    _ => Err(SyntaxError {
                        reason: "a \"(\" is not closed".into(),
                    }),
                }
            }
            Some(Lexeme::Word(w)) => Ok(QueryTree::Word(w)),
            Some(Lexeme::Phrase(p)) => Ok(QueryTree::Phrase(p)),
            Some(Lexeme::Prefix(p)) => Ok(QueryTree::Prefix(p)),
            Some(Lexeme::Close) => Err(SyntaxError {
                reason: "a \")\" without its \"(\"".into(),
            }),
            Some(op @ (Lexeme::And | Lexeme::Or)) => Err(SyntaxError {
                reason: format!(
                    "{} needs something to search for on both sides",
                    if op == Lexeme::And { "AND" } else { "OR" }
                ),
            }),
            None => Err(SyntaxError {
                reason: "the query ends where a word, phrase or \"(\" should follow".into(),
            }),
        }
    }
}

/// Parse a query.
pub fn parse(q: &str) -> Result<QueryTree, SyntaxError> {
    let lexemes = lex(q)?;
    if lexemes.is_empty() {
        return Err(SyntaxError {
            reason: "the query is empty".into(),
        });
    }
    let mut p = Parser { lexemes, at: 0 };
    let tree = p.or()?;
    match p.peek() {
        None => Ok(tree),
        Some(Lexeme::Close) => Err(SyntaxError {
            reason: "a \")\" without its \"(\"".into(),
        }),
        Some(_) => Err(SyntaxError {
            reason: "unexpected text after the query".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::QueryTree::*;
    use super::*;

    fn w(s: &str) -> QueryTree {
        Word(s.into())
    }

    #[test]
    fn words_next_to_each_other_are_and_and_and_binds_tighter_than_or() {
        assert_eq!(
            parse("通讯超时 AND 网关7").unwrap(),
            And(vec![w("通讯超时"), w("网关7")])
        );
        assert_eq!(
            parse("通讯超时 网关7").unwrap(),
            And(vec![w("通讯超时"), w("网关7")])
        );
        assert_eq!(
            parse("a b OR c").unwrap(),
            Or(vec![And(vec![w("a"), w("b")]), w("c")])
        );
        assert_eq!(
            parse("a (b OR c)").unwrap(),
            And(vec![w("a"), Or(vec![w("b"), w("c")])])
        );
    }

    #[test]
    fn phrases_prefixes_and_negation() {
        assert_eq!(
            parse("\"breaker tripped\" -E-17 NOT 离线 网关*").unwrap(),
            And(vec![
                Phrase("breaker tripped".into()),
                Not(Box::new(w("E-17"))),
                Not(Box::new(w("离线"))),
                Prefix("网关".into()),
            ])
        );
        assert_eq!(parse("E-17").unwrap(), w("E-17"));
        assert_eq!(
            parse("and or not").unwrap(),
            And(vec![w("and"), w("or"), w("not")])
        );
    }

    #[test]
    fn malformed_queries_say_what_is_wrong() {
        for (q, want) in [
            ("", "empty"),
            ("   ", "empty"),
            ("\"open", "closing quote"),
            ("(a OR b", "not closed"),
            ("a)", "without its"),
            ("a AND", "ends where"),
            ("OR a", "both sides"),
            ("*", "prefix"),
            ("a**", "prefix"),
            ("NOT", "ends where"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.reason.contains(want), "{q:?}: {e}");
        }
    }
}
