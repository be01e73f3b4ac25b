//! A parsed query with its words cut into tokens by the column's analyzer, and the
//! evaluation of it against one value — what a scan of buffered rows does, and the
//! definition an index lookup must agree with.

use std::fmt;

use tantivy::tokenizer::TextAnalyzer;

use super::analyzer::{Analyzer, tokens};
use super::query_syntax::{QueryTree, parse};

/// A query, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Compiled {
    /// Tokens at positions relative to the first (one token: a term).
    Phrase(Vec<(usize, String)>),
    /// A token starting with this.
    Prefix(String),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    Not(Box<Compiled>),
}

/// Why a query cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub query: String,
    pub reason: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "full-text query \"{}\": {}", self.query, self.reason)
    }
}

impl std::error::Error for QueryError {}

/// A full-text query for one analyzer.
#[derive(Debug, Clone)]
pub struct FullTextQuery {
    pub text: String,
    pub analyzer: Analyzer,
    pub root: Compiled,
}

impl FullTextQuery {
    pub fn new(query: &str, analyzer: Analyzer) -> Result<FullTextQuery, QueryError> {
        let err = |reason: String| QueryError {
            query: query.to_string(),
            reason,
        };
        let tree = parse(query).map_err(|e| err(e.reason))?;
        let mut words = analyzer.for_queries();
        let root = compile(&tree, analyzer, &mut words).map_err(err)?;
        Ok(FullTextQuery {
            text: query.to_string(),
            analyzer,
            root,
        })
    }

    /// An evaluator of this query over values (holds the value analyzer).
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            query: self,
            values: self.analyzer.for_values(),
        }
    }
}

fn compile(
    tree: &QueryTree,
    analyzer: Analyzer,
    words: &mut TextAnalyzer,
) -> Result<Compiled, String> {
    let cut = |words: &mut TextAnalyzer, text: &str| -> Result<Vec<(usize, String)>, String> {
        let mut t = tokens(words, text);
        let Some(first) = t.iter().map(|(p, _)| *p).min() else {
            return Err(format!(
                "\"{text}\" has nothing the {analyzer} analyzer can search for (only \
                 punctuation or spaces?)"
            ));
        };
        for (p, _) in &mut t {
            *p -= first;
        }
        Ok(t)
    };
    Ok(match tree {
        QueryTree::Word(w) | QueryTree::Phrase(w) => Compiled::Phrase(cut(words, w)?),
        QueryTree::Prefix(p) => {
            let mut t = cut(words, p)?;
            if t.len() != 1 {
                return Err(format!(
                    "the prefix \"{p}*\" is more than one word for the {analyzer} analyzer"
                ));
            }
            Compiled::Prefix(t.remove(0).1)
        }
        QueryTree::And(parts) => Compiled::And(
            parts
                .iter()
                .map(|p| compile(p, analyzer, words))
                .collect::<Result<_, _>>()?,
        ),
        QueryTree::Or(parts) => Compiled::Or(
            parts
                .iter()
                .map(|p| compile(p, analyzer, words))
                .collect::<Result<_, _>>()?,
        ),
        QueryTree::Not(inner) => Compiled::Not(Box::new(compile(inner, analyzer, words)?)),
    })
}

/// Evaluates one query against values.
pub struct Matcher<'q> {
    query: &'q FullTextQuery,
    values: TextAnalyzer,
}

impl Matcher<'_> {
    /// Does `value` match?
    pub fn matches(&mut self, value: &str) -> bool {
        let t = tokens(&mut self.values, value);
        eval(&self.query.root, &t)
    }

    /// Relevance of `value` (0 when it does not match; see [`super::relevance`]).
    pub fn score(&mut self, value: &str, stats: &super::relevance::CorpusStats) -> f64 {
        let t = tokens(&mut self.values, value);
        if eval(&self.query.root, &t) {
            super::relevance::score(&self.query.root, &t, stats)
        } else {
            0.0
        }
    }
}

pub(super) fn eval(q: &Compiled, value: &[(usize, String)]) -> bool {
    match q {
        Compiled::Phrase(terms) => phrase_occurrences(terms, value).next().is_some(),
        Compiled::Prefix(p) => value.iter().any(|(_, t)| t.starts_with(p.as_str())),
        Compiled::And(parts) => parts.iter().all(|p| eval(p, value)),
        Compiled::Or(parts) => parts.iter().any(|p| eval(p, value)),
        Compiled::Not(inner) => !eval(inner, value),
    }
}

/// The positions `p` of `value` with every `(offset, token)` of `terms` at `p + offset`:
/// where the phrase occurs.
pub(super) fn phrase_occurrences<'v>(
    terms: &'v [(usize, String)],
    value: &'v [(usize, String)],
) -> impl Iterator<Item = usize> + 'v {
    let first = terms.first();
    value.iter().filter_map(move |(pos, t)| {
        let (first_off, first) = first?;
        let found = t == first
            && pos >= first_off
            && terms.iter().all(|(off, term)| {
                let want = pos - first_off + off;
                value.iter().any(|(p, t)| *p == want && t == term)
            });
        found.then_some(*pos)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(q: &str, analyzer: Analyzer, values: &[&str]) -> Vec<usize> {
        let q = FullTextQuery::new(q, analyzer).unwrap();
        let mut m = q.matcher();
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| m.matches(v))
            .map(|(i, _)| i)
            .collect()
    }

    const LOG: &[&str] = &[
        "设备离线",                       // 0
        "通讯超时 网关7",                 // 1
        "网关7 通讯正常",                 // 2
        "Breaker tripped on feeder 3",    // 3
        "breaker reset, feeder 3 normal", // 4
        "电表 SN12345 通讯超时，重试3次", // 5
        "网关3 通讯超时 7号表",           // 6
    ];

    #[test]
    fn chinese_terms_phrases_and_boolean_operators() {
        let c = Analyzer::Chinese;
        assert_eq!(hits("通讯超时", c, LOG), [1, 5, 6]);
        assert_eq!(hits("通讯超时 AND 网关7", c, LOG), [1]);
        assert_eq!(
            hits("通讯超时 网关7", c, LOG),
            [1],
            "words next to each other: AND"
        );
        assert_eq!(
            hits("超时", c, LOG),
            [1, 5, 6],
            "a word inside a longer one"
        );
        assert_eq!(hits("设备离线 OR 网关7", c, LOG), [0, 1, 2]);
        assert_eq!(hits("通讯超时 -网关7", c, LOG), [5, 6]);
        assert_eq!(hits("NOT 通讯超时", c, LOG), [0, 2, 3, 4]);
        assert_eq!(hits("网关*", c, LOG), [1, 2, 6]);
        assert_eq!(
            hits("breaker", c, LOG),
            [3, 4],
            "Latin words in the chinese analyzer"
        );
        assert_eq!(hits("\"breaker tripped\"", c, LOG), [3]);
        assert_eq!(hits("\"tripped breaker\"", c, LOG), Vec::<usize>::new());
        assert_eq!(hits("sn12345", c, LOG), [5]);
    }

    #[test]
    fn standard_and_raw() {
        assert_eq!(hits("Breaker", Analyzer::Standard, LOG), [3, 4]);
        assert_eq!(hits("\"feeder 3\"", Analyzer::Standard, LOG), [3, 4]);
        assert_eq!(hits("Breaker", Analyzer::Raw, LOG), [3], "raw keeps case");
        assert_eq!(hits("SN12345", Analyzer::Raw, LOG), [5]);
        assert_eq!(hits("sn12345", Analyzer::Raw, LOG), Vec::<usize>::new());
    }

    #[test]
    fn queries_without_searchable_words_are_refused() {
        let e = FullTextQuery::new("网关 ，", Analyzer::Chinese).unwrap_err();
        assert!(e.reason.contains("nothing the chinese analyzer"), "{e}");
        let e = FullTextQuery::new("breaker-tr*", Analyzer::Standard).unwrap_err();
        assert!(e.reason.contains("more than one word"), "{e}");
        let e = FullTextQuery::new("(a", Analyzer::Standard).unwrap_err();
        assert!(e.to_string().contains("\"(a\""), "{e}");
    }
}
