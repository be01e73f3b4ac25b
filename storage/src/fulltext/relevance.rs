//! Relevance of a matching value to a query, for `score(column, 'query')`: Okapi BM25
//! (k1 = 1.2, b = 0.75, tantivy's and Lucene's defaults) with the corpus statistics —
//! how many values there are, their average length in tokens, how many contain each
//! term — taken from the table's full-text indexes ([`CorpusStats`], summed over every
//! indexed file of the column, like Elasticsearch's `dfs_query_then_fetch`).
//!
//! The score of a value is the sum over the query's words and phrases it contains,
//! outside any `NOT`: a word or phrase found `tf` times weighs
//! `idf · tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))`, where a phrase's `idf` is the
//! sum of its words' (as in tantivy); a prefix found weighs 1. A value that does not
//! match the whole query scores 0. Rows that are not in an indexed file yet (buffered,
//! or in a file still waiting for its index) are scored with the same statistics.

use std::collections::HashMap;

use super::compiled::{Compiled, eval, phrase_occurrences};

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation.
const B: f64 = 0.75;

/// Counts over a column's indexed values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusStats {
    /// Values (non-NULL rows) indexed.
    pub docs: u64,
    /// Tokens in them.
    pub tokens: u64,
    /// Values containing each term (terms never looked up are absent).
    pub doc_freq: HashMap<String, u64>,
}

impl CorpusStats {
    /// Add another file's counts.
    pub fn add(&mut self, other: &CorpusStats) {
        self.docs += other.docs;
        self.tokens += other.tokens;
        for (t, n) in &other.doc_freq {
            *self.doc_freq.entry(t.clone()).or_default() += n;
        }
    }

    /// Inverse document frequency of `term` (BM25's, never negative).
    pub fn idf(&self, term: &str) -> f64 {
        let n = self.docs as f64;
        let df = (self.doc_freq.get(term).copied().unwrap_or(0) as f64).min(n);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

/// The terms whose document frequencies a score needs: those of the words and phrases
/// outside any `NOT`.
pub fn scored_terms(q: &Compiled) -> Vec<String> {
    let mut out = Vec::new();
    collect_terms(q, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_terms(q: &Compiled, out: &mut Vec<String>) {
    match q {
        Compiled::Phrase(terms) => out.extend(terms.iter().map(|(_, t)| t.clone())),
        Compiled::Prefix(_) | Compiled::Not(_) => {}
        Compiled::And(parts) | Compiled::Or(parts) => {
            parts.iter().for_each(|p| collect_terms(p, out))
        }
    }
}

/// BM25 of a value (its tokens, as the analyzer cut it) that matches `q`.
pub(super) fn score(q: &Compiled, value: &[(usize, String)], stats: &CorpusStats) -> f64 {
    let len = value.len() as f64;
    let avg = if stats.docs > 0 {
        stats.tokens as f64 / stats.docs as f64
    } else {
        len
    };
    let norm = if avg > 0.0 {
        1.0 - B + B * len / avg
    } else {
        1.0
    };
    leaf_sum(q, value, stats, norm)
}

fn leaf_sum(q: &Compiled, value: &[(usize, String)], stats: &CorpusStats, norm: f64) -> f64 {
    match q {
        Compiled::Phrase(terms) => {
            let tf = phrase_occurrences(terms, value).count() as f64;
            if tf == 0.0 {
                return 0.0;
            }
            let idf: f64 = terms.iter().map(|(_, t)| stats.idf(t)).sum();
            idf * tf * (K1 + 1.0) / (tf + K1 * norm)
        }
        Compiled::Prefix(_) => {
            if eval(q, value) {
                1.0
            } else {
                0.0
            }
        }
        Compiled::And(parts) | Compiled::Or(parts) => {
            parts.iter().map(|p| leaf_sum(p, value, stats, norm)).sum()
        }
        Compiled::Not(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fulltext::{Analyzer, FullTextQuery};

    fn stats(docs: u64, tokens: u64, df: &[(&str, u64)]) -> CorpusStats {
        CorpusStats {
            docs,
            tokens,
            doc_freq: df.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn bm25_by_hand() {
        // 10 values of 4 tokens on average; "breaker" in 2 of them, "tripped" in 5.
        let s = stats(10, 40, &[("breaker", 2), ("tripped", 5)]);
        let q = FullTextQuery::new("breaker OR tripped", Analyzer::Standard).unwrap();
        let mut m = q.matcher();
        // "breaker tripped breaker": 3 tokens, breaker twice, tripped once.
        let norm = 1.0 - 0.75 + 0.75 * 3.0 / 4.0;
        let idf_b = (1.0f64 + (10.0 - 2.0 + 0.5) / (2.0 + 0.5)).ln();
        let idf_t = (1.0f64 + (10.0 - 5.0 + 0.5) / (5.0 + 0.5)).ln();
        let want = idf_b * 2.0 * 2.2 / (2.0 + 1.2 * norm) + idf_t * 1.0 * 2.2 / (1.0 + 1.2 * norm);
        let got = m.score("breaker tripped breaker", &s);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert_eq!(m.score("feeder reset", &s), 0.0, "no match, no score");
        // The rarer word weighs more, the shorter value more for the same count.
        assert!(m.score("breaker x", &s) > m.score("tripped x", &s));
        assert!(m.score("breaker", &s) > m.score("breaker x y z", &s));
    }

    #[test]
    fn not_and_prefix_and_phrases() {
        let s = stats(4, 12, &[("breaker", 1), ("tripped", 2), ("reset", 1)]);
        let q = FullTextQuery::new("breaker AND NOT reset", Analyzer::Standard).unwrap();
        assert_eq!(scored_terms(&q.root), ["breaker"]);
        let mut m = q.matcher();
        assert_eq!(m.score("breaker reset", &s), 0.0);
        let only = m.score("breaker tripped", &s);
        let q2 = FullTextQuery::new("breaker", Analyzer::Standard).unwrap();
        assert_eq!(only, q2.matcher().score("breaker tripped", &s));
        let p = FullTextQuery::new("bre*", Analyzer::Standard).unwrap();
        assert_eq!(p.matcher().score("breaker breaker", &s), 1.0);
        let ph = FullTextQuery::new("\"breaker tripped\"", Analyzer::Standard).unwrap();
        let mut m = ph.matcher();
        assert_eq!(m.score("tripped breaker", &s), 0.0);
        let once = m.score("breaker tripped x y", &s);
        let twice = m.score("breaker tripped breaker tripped", &s);
        assert!(once > 0.0 && twice > once, "{once} {twice}");
    }

    #[test]
    fn an_empty_corpus_still_ranks_by_frequency() {
        let s = CorpusStats::default();
        let q = FullTextQuery::new("超时", Analyzer::Chinese).unwrap();
        let mut m = q.matcher();
        let one = m.score("通讯超时", &s);
        let two = m.score("通讯超时 超时", &s);
        assert!(one > 0.0 && two > one, "{one} {two}");
    }
}
