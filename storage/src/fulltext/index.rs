//! A tantivy index over one text column of one Parquet file: each non-NULL value is a
//! document carrying its row number in the file (a fast field), so a query gives the
//! rows to read. Built in a local folder, shipped as one packed object (see
//! [`pack`]) next to the file, unpacked into a local cache to be searched.
//!
//! A query is translated from [`Compiled`] — the same tree the row-by-row evaluation
//! walks — so the index and a scan agree on what matches (property-tested below).

use std::path::{Path, PathBuf};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{AllQuery, PhraseQuery, Query, RegexQuery, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{
    DocId, Index, IndexWriter, Score, SegmentOrdinal, SegmentReader, TantivyDocument, Term,
};

use super::analyzer::Analyzer;
use super::compiled::Compiled;

const TEXT: &str = "text";
const ROW: &str = "row";
/// The indexer's memory budget (tantivy's minimum is 15 MB per thread).
const WRITER_BYTES: usize = 64 << 20;

/// Why an index could not be built, read or searched.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("full-text index {path}: {source}")]
    Tantivy {
        path: String,
        source: tantivy::TantivyError,
    },
    #[error("full-text index {path}: {reason}")]
    Damaged { path: String, reason: String },
    #[error("full-text index {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn schema(analyzer: Analyzer) -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let text = b.add_text_field(
        TEXT,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer.index_tokenizer_name())
                .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                // Length norms serve tantivy's own scoring, which is not used (score()
                // cuts the value itself): a byte per value saved.
                .set_fieldnorms(false),
        ),
    );
    let row = b.add_u64_field(ROW, FAST);
    (b.build(), text, row)
}

fn register(index: &Index, analyzer: Analyzer) {
    index
        .tokenizers()
        .register(analyzer.index_tokenizer_name(), analyzer.for_values());
}

fn tantivy_err(dir: &Path) -> impl Fn(tantivy::TantivyError) -> IndexError + '_ {
    move |source| IndexError::Tantivy {
        path: dir.display().to_string(),
        source,
    }
}

/// Index `values` (row number, text) into the empty folder `dir`.
pub fn build<'a>(
    dir: &Path,
    analyzer: Analyzer,
    values: impl Iterator<Item = (u64, Option<&'a str>)>,
) -> Result<(), IndexError> {
    let mut builder = IndexBuilder::create(dir, analyzer)?;
    for (r, v) in values {
        if let Some(v) = v {
            builder.add(r, v)?;
        }
    }
    builder.finish()
}

/// An index being built in a local folder, one value at a time (tantivy tokenizes on its
/// own thread and flushes segments within its memory budget, so a file of any size can
/// be indexed as it streams by).
pub struct IndexBuilder {
    writer: IndexWriter<TantivyDocument>,
    text: Field,
    row: Field,
    dir: PathBuf,
}

impl IndexBuilder {
    /// Start an index in the empty folder `dir`.
    pub fn create(dir: &Path, analyzer: Analyzer) -> Result<IndexBuilder, IndexError> {
        let (schema, text, row) = schema(analyzer);
        // Nothing is stored, but tantivy's doc store keeps a 4-byte offset per document;
        // zstd packs those sequential offsets far tighter than lz4 (indexes built with
        // lz4 before still open).
        let settings = tantivy::IndexSettings {
            docstore_compression: tantivy::store::Compressor::Zstd(
                tantivy::store::ZstdCompressor::default(),
            ),
            ..Default::default()
        };
        let index = Index::builder()
            .schema(schema)
            .settings(settings)
            .create_in_dir(dir)
            .map_err(tantivy_err(dir))?;
        register(&index, analyzer);
        let writer = index
            .writer_with_num_threads(1, WRITER_BYTES)
            .map_err(tantivy_err(dir))?;
        Ok(IndexBuilder {
            writer,
            text,
            row,
            dir: dir.to_path_buf(),
        })
    }

    /// Index `value` as row `row` of the file.
    pub fn add(&mut self, row: u64, value: &str) -> Result<(), IndexError> {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.text, value);
        doc.add_u64(self.row, row);
        self.writer
            .add_document(doc)
            .map_err(tantivy_err(&self.dir))?;
        Ok(())
    }

    /// Commit what was added and wait for tantivy's merges: the folder then holds the
    /// whole index (see [`pack`]).
    pub fn finish(mut self) -> Result<(), IndexError> {
        let dir = self.dir.clone();
        self.writer.commit().map_err(tantivy_err(&dir))?;
        self.writer
            .wait_merging_threads()
            .map_err(tantivy_err(&dir))?;
        Ok(())
    }
}

/// An index opened for searching.
pub struct FileIndex {
    reader: tantivy::IndexReader,
    text: Field,
    dir: PathBuf,
}

impl FileIndex {
    /// Open the index in `dir` (built with `analyzer`).
    pub fn open(dir: &Path, analyzer: Analyzer) -> Result<FileIndex, IndexError> {
        let index = Index::open_in_dir(dir).map_err(tantivy_err(dir))?;
        register(&index, analyzer);
        let text = index.schema().get_field(TEXT).map_err(tantivy_err(dir))?;
        // The folder never changes once built: no reloading.
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_err(dir))?;
        Ok(FileIndex {
            reader,
            text,
            dir: dir.to_path_buf(),
        })
    }

    /// Row numbers (ascending) of the documents matching `query`. Each word, phrase
    /// and prefix is looked up in tantivy; AND, OR and NOT are done here on the sorted
    /// row lists (tantivy 0.27's exclusion of a phrase that has run out of documents
    /// trips its own debug assertion, found by the property test below).
    pub fn search(&self, query: &Compiled) -> Result<Vec<u64>, IndexError> {
        let searcher = self.reader.searcher();
        let mut all = None;
        self.rows(&searcher, query, &mut all)
            .map_err(tantivy_err(&self.dir))
    }

    /// This index's counts for BM25: values, tokens, and values containing each of
    /// `terms`.
    pub fn stats(&self, terms: &[String]) -> Result<super::CorpusStats, IndexError> {
        let searcher = self.reader.searcher();
        let err = tantivy_err(&self.dir);
        let mut stats = super::CorpusStats {
            docs: searcher.num_docs(),
            ..Default::default()
        };
        for segment in searcher.segment_readers() {
            stats.tokens += segment
                .inverted_index(self.text)
                .map_err(&err)?
                .total_num_tokens();
        }
        for t in terms {
            let df = searcher
                .doc_freq(&Term::from_field_text(self.text, t))
                .map_err(&err)?;
            stats.doc_freq.insert(t.clone(), df);
        }
        Ok(stats)
    }

    fn rows(
        &self,
        searcher: &tantivy::Searcher,
        q: &Compiled,
        all: &mut Option<Vec<u64>>,
    ) -> tantivy::Result<Vec<u64>> {
        let lookup = |query: &dyn Query| -> tantivy::Result<Vec<u64>> {
            let mut rows = searcher.search(query, &Rows)?;
            rows.sort_unstable();
            Ok(rows)
        };
        Ok(match q {
            Compiled::Phrase(terms) if terms.len() == 1 => lookup(&TermQuery::new(
                Term::from_field_text(self.text, &terms[0].1),
                IndexRecordOption::Basic,
            ))?,
            Compiled::Phrase(terms) => lookup(&PhraseQuery::new_with_offset(
                terms
                    .iter()
                    .map(|(off, t)| (*off, Term::from_field_text(self.text, t)))
                    .collect(),
            ))?,
            Compiled::Prefix(p) => lookup(&RegexQuery::from_pattern(
                &format!("{}.*", regex_escape(p)),
                self.text,
            )?)?,
            Compiled::And(parts) => {
                let mut acc: Option<Vec<u64>> = None;
                for p in parts {
                    let r = self.rows(searcher, p, all)?;
                    acc = Some(match acc {
                        None => r,
                        Some(a) => intersect(&a, &r),
                    });
                    if acc.as_ref().is_some_and(Vec::is_empty) {
                        break;
                    }
                }
                acc.unwrap_or_default()
            }
            Compiled::Or(parts) => {
                let mut acc = Vec::new();
                for p in parts {
                    acc = union(&acc, &self.rows(searcher, p, all)?);
                }
                acc
            }
            Compiled::Not(inner) => {
                let excluded = self.rows(searcher, inner, all)?;
                if all.is_none() {
                    *all = Some(lookup(&AllQuery)?);
                }
                minus(all.as_deref().unwrap_or_default(), &excluded)
            }
        })
    }
}

/// The rows in both ascending lists.
pub fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x < y => {
                i += 1;
                *x
            }
            (Some(x), Some(y)) if x > y => {
                j += 1;
                *y
            }
            (Some(x), Some(_)) => {
                i += 1;
                j += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

fn minus(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            !(j < b.len() && b[j] == *x)
        })
        .collect()
}

/// `s` with the characters tantivy's regex syntax gives a meaning escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"<>@".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Collects the row numbers of matching documents.
struct Rows;

struct SegmentRows {
    column: Column<u64>,
    rows: Vec<u64>,
}

impl Collector for Rows {
    type Fruit = Vec<u64>;
    type Child = SegmentRows;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentRows> {
        Ok(SegmentRows {
            column: reader.fast_fields().u64(ROW)?,
            rows: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentRows {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(r) = self.column.first(doc) {
            self.rows.push(r);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.rows
    }
}

/// Magic and version of a packed index.
const PACK_MAGIC: &[u8; 8] = b"WATTFTS\0";
const PACK_VERSION: u32 = 1;

/// The files of the index folder `dir` as one object: magic, version, file count, then
/// per file its name length (u32), name, data length (u64) and data, and a CRC32 of all
/// that (little-endian).
pub fn pack(dir: &Path) -> Result<Vec<u8>, IndexError> {
    let io = |source| IndexError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        // tantivy's lock files say nothing about the index.
        if name.ends_with(".lock") {
            continue;
        }
        files.push((name, std::fs::read(entry.path()).map_err(io)?));
    }
    files.sort();
    let mut out = Vec::new();
    out.extend_from_slice(PACK_MAGIC);
    out.extend_from_slice(&PACK_VERSION.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (name, data) in &files {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Write the files of a packed index into the empty folder `dir`; a damaged or foreign
/// object is refused (and nothing is trusted from it).
pub fn unpack(packed: &[u8], dir: &Path, what: &str) -> Result<(), IndexError> {
    let damaged = |reason: &str| IndexError::Damaged {
        path: what.to_string(),
        reason: reason.to_string(),
    };
    if packed.len() < 20 || &packed[..8] != PACK_MAGIC {
        return Err(damaged("not a packed full-text index"));
    }
    let (body, crc) = packed.split_at(packed.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(damaged("checksum mismatch"));
    }
    let mut at = 8;
    let mut take = |n: usize| -> Result<&[u8], IndexError> {
        let s = body.get(at..at + n).ok_or_else(|| damaged("truncated"))?;
        at += n;
        Ok(s)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let version = u32_at(take(4)?);
    if version != PACK_VERSION {
        return Err(damaged(&format!(
            "format version {version} is not supported by this build (expects {PACK_VERSION})"
        )));
    }
    let count = u32_at(take(4)?);
    for _ in 0..count {
        let name_len = u32_at(take(4)?) as usize;
        let name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| damaged("a file name is not UTF-8"))?
            .to_string();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(damaged("a file name leaves the folder"));
        }
        let len_bytes = take(8)?;
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| damaged("truncated"))?);
        let data = take(usize::try_from(len).map_err(|_| damaged("truncated"))?)?;
        std::fs::write(dir.join(&name), data).map_err(|source| IndexError::Io {
            path: dir.join(&name).display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fulltext::FullTextQuery;

    fn scan(values: &[Option<String>], q: &FullTextQuery) -> Vec<u64> {
        let mut m = q.matcher();
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.as_deref().is_some_and(|v| m.matches(v)))
            .map(|(i, _)| i as u64)
            .collect()
    }

    fn built(values: &[Option<String>], analyzer: Analyzer) -> (tempfile::TempDir, FileIndex) {
        let tmp = tempfile::tempdir().unwrap();
        build(
            tmp.path(),
            analyzer,
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, v.as_deref())),
        )
        .unwrap();
        // Through a packed object and back, as the server does.
        let packed = pack(tmp.path()).unwrap();
        let tmp2 = tempfile::tempdir().unwrap();
        unpack(&packed, tmp2.path(), "test").unwrap();
        let idx = FileIndex::open(tmp2.path(), analyzer).unwrap();
        (tmp2, idx)
    }

    #[test]
    fn stats_count_what_the_analyzer_cuts() {
        use crate::fulltext::analyzer::tokens;
        for analyzer in [Analyzer::Chinese, Analyzer::Standard, Analyzer::Raw] {
            let values: Vec<Option<String>> = [
                Some("通讯超时 网关7，通讯超时"),
                None,
                Some("Breaker tripped on feeder 3"),
                Some("网关7 通讯正常 breaker"),
                Some("SN12345"),
            ]
            .iter()
            .map(|v| v.map(str::to_string))
            .collect();
            let (_dir, idx) = built(&values, analyzer);
            let mut cut = analyzer.for_values();
            let mut want = crate::fulltext::CorpusStats::default();
            let mut terms = std::collections::BTreeSet::new();
            for v in values.iter().flatten() {
                let t = tokens(&mut cut, v);
                want.docs += 1;
                want.tokens += t.len() as u64;
                let distinct: std::collections::BTreeSet<String> =
                    t.into_iter().map(|(_, t)| t).collect();
                for t in distinct {
                    *want.doc_freq.entry(t.clone()).or_default() += 1;
                    terms.insert(t);
                }
            }
            terms.insert("absent".into());
            want.doc_freq.insert("absent".into(), 0);
            let terms: Vec<String> = terms.into_iter().collect();
            assert_eq!(idx.stats(&terms).unwrap(), want, "{analyzer}");
        }
    }

    const WORDS: &[&str] = &[
        "设备",
        "离线",
        "通讯超时",
        "网关7",
        "网关3",
        "断路器",
        "跳闸",
        "恢复正常",
        "告警",
        "电压",
        "过高",
        "breaker",
        "tripped",
        "reset",
        "feeder",
        "Gateway",
        "E-17",
        "0x1F",
        "SN12345",
        "42",
        "7",
    ];
    const SEPARATORS: &[&str] = &["", " ", "，", ", ", "：", "-"];

    fn value() -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(
            0.9,
            prop::collection::vec((0..WORDS.len(), 0..SEPARATORS.len()), 1..8).prop_map(|parts| {
                parts
                    .into_iter()
                    .map(|(w, s)| format!("{}{}", WORDS[w], SEPARATORS[s]))
                    .collect::<String>()
            }),
        )
    }

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..WORDS.len()).prop_map(|w| WORDS[w].to_string()),
            (0..WORDS.len(), 0..WORDS.len())
                .prop_map(|(a, b)| format!("\"{} {}\"", WORDS[a], WORDS[b])),
            (0..WORDS.len(), 0..WORDS.len())
                .prop_map(|(a, b)| format!("\"{}{}\"", WORDS[a], WORDS[b])),
            prop::sample::select(vec!["网*", "设*", "bre*", "feed*", "0x*", "SN*", "通讯*"])
                .prop_map(str::to_string),
        ]
    }

    fn query() -> impl Strategy<Value = String> {
        leaf().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} {b})")),
                inner.clone().prop_map(|a| format!("NOT {a}")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("({a} -{b})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The index returns exactly the rows the row-by-row evaluation accepts.
        #[test]
        fn index_and_scan_agree(
            values in prop::collection::vec(value(), 1..120),
            queries in prop::collection::vec(query(), 1..12),
            analyzer in prop::sample::select(Analyzer::ALL.to_vec()),
        ) {
            let (_dir, idx) = built(&values, analyzer);
            for q in &queries {
                // Leaves without searchable words are refused; those queries are skipped.
                let Ok(compiled) = FullTextQuery::new(q, analyzer) else { continue };
                let want = scan(&values, &compiled);
                let got = idx.search(&compiled.root).unwrap();
                prop_assert_eq!(&got, &want, "{} with {}", q, analyzer);
            }
        }
    }

    /// The container's bytes are pinned (storage/FORMATS.md): changing them needs a new
    /// pack version.
    #[test]
    fn pack_encoding_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.idx"), b"xy").unwrap();
        std::fs::write(dir.path().join("a.json"), b"").unwrap();
        std::fs::write(dir.path().join(".tantivy-writer.lock"), b"ignored").unwrap();
        let packed = pack(dir.path()).unwrap();
        let mut want: Vec<u8> = b"WATTFTS\0".to_vec();
        want.extend([1, 0, 0, 0, 2, 0, 0, 0]); // version 1, two files (sorted by name)
        want.extend([6, 0, 0, 0]);
        want.extend(b"a.json");
        want.extend([0; 8]);
        want.extend([5, 0, 0, 0]);
        want.extend(b"b.idx");
        want.extend([2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend(b"xy");
        let crc = crc32fast::hash(&want);
        want.extend(crc.to_le_bytes());
        assert_eq!(packed, want);
        let out = tempfile::tempdir().unwrap();
        unpack(&packed, out.path(), "x").unwrap();
        assert_eq!(std::fs::read(out.path().join("b.idx")).unwrap(), b"xy");
    }

    #[test]
    fn a_damaged_or_foreign_pack_is_refused() {
        let values = [Some("通讯超时 网关7".to_string())];
        let tmp = tempfile::tempdir().unwrap();
        build(
            tmp.path(),
            Analyzer::Chinese,
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, v.as_deref())),
        )
        .unwrap();
        let mut packed = pack(tmp.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let n = packed.len();
        packed[n / 2] ^= 0x40;
        let e = unpack(&packed, out.path(), "x.fts").unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let e = unpack(b"PAR1 not an index at all", out.path(), "x.fts").unwrap_err();
        assert!(e.to_string().contains("not a packed"), "{e}");
    }
}
