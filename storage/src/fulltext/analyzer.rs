//! The analyzers a full-text column can use, each a pair of tantivy text analyzers: one
//! that turns a stored value into indexed tokens, one that turns the words of a query
//! into the tokens looked up. A token has a position, and a phrase matches where its
//! tokens sit at the same distances in the value as in the query.
//!
//! - `chinese` (the default): jieba word segmentation. Values are cut in search mode —
//!   every word, and also the dictionary words inside a long word (`通讯超时` also gives
//!   `通讯` and `超时`) — queries in default mode, so a query word matches a longer word
//!   that contains it. Positions are character offsets (jieba's), which makes a phrase
//!   mean "these words at these distances" however the value was segmented around them.
//!   Latin words and numbers in mixed text are words of their own; lower-cased.
//! - `standard`: words are runs of letters and digits (a run of Chinese characters is
//!   one word), lower-cased; positions count words.
//! - `raw`: words are what whitespace separates, kept exactly (codes, serial numbers,
//!   `ERR-0x1F`); positions count words.
//!
//! Tokens without a letter or digit (punctuation, spaces) are dropped, and so are
//! tokens longer than [`MAX_TOKEN_BYTES`]; the same analyzer is used when a file is
//! indexed and when buffered rows are scanned, so both see the same tokens.

use std::fmt;

use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenFilter, TokenStream,
    Tokenizer, WhitespaceTokenizer,
};
use tantivy_jieba::JiebaTokenizer;

/// Longer tokens are not indexed (and cannot be searched for).
pub const MAX_TOKEN_BYTES: usize = 100;

/// How a full-text column's values and queries are cut into tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Analyzer {
    #[default]
    Chinese,
    Standard,
    Raw,
}

impl Analyzer {
    pub const ALL: [Analyzer; 3] = [Analyzer::Chinese, Analyzer::Standard, Analyzer::Raw];

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Chinese => "chinese",
            Analyzer::Standard => "standard",
            Analyzer::Raw => "raw",
        }
    }

    /// The analyzer called `name`, or `None`.
    pub fn parse(name: &str) -> Option<Analyzer> {
        Analyzer::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// [`Analyzer::parse`], with the message a user gets for an unknown name.
    pub fn named(name: &str) -> Result<Analyzer, String> {
        Analyzer::parse(name)
            .ok_or_else(|| format!("unknown analyzer \"{name}\" (chinese, standard or raw)"))
    }

    /// The tantivy analyzer for stored values.
    pub fn for_values(self) -> TextAnalyzer {
        match self {
            Analyzer::Chinese => words(JiebaTokenizer::with_search_mode(true), true),
            Analyzer::Standard => words(SimpleTokenizer::default(), true),
            Analyzer::Raw => words(WhitespaceTokenizer::default(), false),
        }
    }

    /// The tantivy analyzer for the words of a query.
    pub fn for_queries(self) -> TextAnalyzer {
        match self {
            Analyzer::Chinese => words(JiebaTokenizer::with_search_mode(false), true),
            other => other.for_values(),
        }
    }

    /// Name under which [`Analyzer::for_values`] is registered in an index.
    pub fn index_tokenizer_name(self) -> &'static str {
        match self {
            Analyzer::Chinese => "wattdb_chinese",
            Analyzer::Standard => "wattdb_standard",
            Analyzer::Raw => "wattdb_raw",
        }
    }
}

impl fmt::Display for Analyzer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn words<T: Tokenizer>(tokenizer: T, lower: bool) -> TextAnalyzer {
    let b = TextAnalyzer::builder(tokenizer)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES + 1))
        .filter(WordsOnly);
    if lower {
        b.filter(LowerCaser).build()
    } else {
        b.build()
    }
}

/// (position, text) of each token `analyzer` makes of `text`, in stream order.
pub fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = stream.token();
        out.push((t.position, t.text.clone()));
    }
    out
}

/// Drops tokens with no letter or digit in them (punctuation, whitespace).
#[derive(Clone)]
struct WordsOnly;

impl TokenFilter for WordsOnly {
    type Tokenizer<T: Tokenizer> = WordsOnlyWrapper<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> WordsOnlyWrapper<T> {
        WordsOnlyWrapper(tokenizer)
    }
}

#[derive(Clone)]
struct WordsOnlyWrapper<T>(T);

impl<T: Tokenizer> Tokenizer for WordsOnlyWrapper<T> {
    type TokenStream<'a> = WordsOnlyStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        WordsOnlyStream(self.0.token_stream(text))
    }
}

struct WordsOnlyStream<T>(T);

impl<T: TokenStream> TokenStream for WordsOnlyStream<T> {
    fn advance(&mut self) -> bool {
        while self.0.advance() {
            if self.0.token().text.chars().any(char::is_alphanumeric) {
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(a: &mut TextAnalyzer, s: &str) -> Vec<String> {
        tokens(a, s).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn chinese_values_give_the_words_inside_long_words_and_queries_do_not() {
        let mut values = Analyzer::Chinese.for_values();
        let mut queries = Analyzer::Chinese.for_queries();
        let v = texts(&mut values, "中华人民共和国");
        let q = texts(&mut queries, "中华人民共和国");
        assert_eq!(q, vec!["中华人民共和国"]);
        assert!(v.contains(&"中华人民共和国".to_string()));
        assert!(v.contains(&"中华".to_string()) && v.contains(&"共和国".to_string()));
        // Every word a query cut gives is among a value's tokens, at the same place.
        let s = "设备通讯超时，网关7离线 Breaker TRIPPED";
        let vt = tokens(&mut values, s);
        for t in tokens(&mut queries, s) {
            assert!(vt.contains(&t), "{t:?} not in {vt:?}");
        }
    }

    #[test]
    fn punctuation_and_spaces_are_not_tokens_and_latin_is_lower_cased() {
        let mut a = Analyzer::Chinese.for_values();
        let t = texts(&mut a, "网关7，Breaker 跳闸!");
        assert!(
            t.iter().all(|w| w.chars().any(char::is_alphanumeric)),
            "{t:?}"
        );
        assert!(t.contains(&"breaker".to_string()), "{t:?}");
        let mut s = Analyzer::Standard.for_values();
        assert_eq!(
            texts(&mut s, "E-17: Breaker tripped"),
            ["e", "17", "breaker", "tripped"]
        );
        let mut r = Analyzer::Raw.for_values();
        assert_eq!(
            texts(&mut r, "ERR-0x1F  SN12345 ,"),
            ["ERR-0x1F", "SN12345"]
        );
    }

    #[test]
    fn names_round_trip() {
        for a in Analyzer::ALL {
            assert_eq!(Analyzer::parse(a.name()), Some(a));
        }
        assert_eq!(Analyzer::parse(" Chinese "), Some(Analyzer::Chinese));
        assert_eq!(Analyzer::parse("english"), None);
    }
}
