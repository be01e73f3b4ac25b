//! Where the records of text and CSV COPY data end: a line break, except inside a
//! quoted CSV value. The parsers of blocks and the cutting into blocks agree on it.

use super::super::copy::{CopyFormat, CopyOptions};

/// Where the first complete record of `data` ends (its `\n`), if it is complete: in
/// CSV, a line break inside quotes belongs to the value.
pub(super) fn record_end(o: &CopyOptions, data: &[u8]) -> Option<usize> {
    if o.format != CopyFormat::Csv {
        return data.iter().position(|b| *b == b'\n');
    }
    let (quote, escape) = (o.quote as u8, o.escape as u8);
    // Usually the line holds no quote at all: its end is the first line break.
    let newline = data.iter().position(|b| *b == b'\n');
    let upto = newline.unwrap_or(data.len());
    if !data[..upto].contains(&quote) {
        return newline;
    }
    let mut in_quotes = false;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if in_quotes && b == escape && escape != quote && data.get(i + 1) == Some(&quote) {
            i += 2;
            continue;
        }
        if b == quote {
            in_quotes = !in_quotes;
        } else if b == b'\n' && !in_quotes {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Where a block of about `want` bytes starting at a record's start should end
/// (after a record's `\n`), and how many records it holds; `None` while its first
/// record is incomplete.
pub(super) fn block_end(o: &CopyOptions, data: &[u8], want: usize) -> Option<(usize, u64)> {
    let want = want.min(data.len());
    let newline = data[..want].iter().rposition(|b| *b == b'\n').or_else(|| {
        data[want..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| want + i)
    })?;
    let quoted = o.format == CopyFormat::Csv && data[..newline].contains(&(o.quote as u8));
    if !quoted {
        let records = data[..=newline].iter().filter(|b| **b == b'\n').count();
        return Some((newline + 1, records as u64));
    }
    // Line breaks may be inside quoted values: walk the records.
    let (mut end, mut records) = (0, 0);
    while end < want {
        let Some(len) = record_end(o, &data[end..]) else {
            break;
        };
        end += len + 1;
        records += 1;
    }
    (records > 0).then_some((end, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::copy_in::test_options as opts;
    use proptest::prelude::*;

    /// A CSV record of values that may hold quotes, delimiters and line breaks.
    fn csv_record(values: &[String]) -> String {
        values
            .iter()
            .map(|v| {
                if v.contains([',', '"', '\n']) || v.is_empty() {
                    format!("\"{}\"", v.replace('"', "\"\""))
                } else {
                    v.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The records of `data` one after another, as a parser reads them.
    fn records(o: &CopyOptions, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(end) = record_end(o, data) {
            out.push(data[..end].to_vec());
            data = &data[end + 1..];
        }
        out
    }

    proptest! {
        /// Cut into blocks of any size, the data yields the same records as read whole,
        /// each block ends right after a record, and its count of records is right.
        #[test]
        fn blocks_end_at_records(
            rows in prop::collection::vec(
                prop::collection::vec("[a-c,\"\n ]{0,6}", 1..4), 1..40),
            want in 1usize..64,
            csv in any::<bool>(),
        ) {
            let o = opts(if csv { CopyFormat::Csv } else { CopyFormat::Text });
            let lines: Vec<String> = if csv {
                rows.iter().map(|r| csv_record(r)).collect()
            } else {
                rows.iter().map(|r| r.join("\t").replace('\n', "\\n")).collect()
            };
            let data = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let whole = records(&o, data.as_bytes());
            prop_assert_eq!(whole.len(), lines.len());
            let mut rest = data.as_bytes();
            let mut cut = Vec::new();
            while let Some((end, count)) = block_end(&o, rest, want) {
                let block = records(&o, &rest[..end]);
                prop_assert_eq!(block.len() as u64, count);
                prop_assert_eq!(records(&o, &rest[end..]).len(), whole.len() - cut.len() - block.len());
                cut.extend(block);
                rest = &rest[end..];
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(cut, whole);
        }
    }

    #[test]
    fn an_incomplete_first_record_is_no_block() {
        let o = opts(CopyFormat::Csv);
        assert_eq!(block_end(&o, b"a,\"b\nc", 2), None);
        assert_eq!(block_end(&o, b"a,\"b\nc\"\nd", 2), Some((8, 1)));
        assert_eq!(block_end(&o, b"ab\ncd\nef", 4), Some((3, 1)));
        assert_eq!(block_end(&o, b"ab\ncd\nef", 6), Some((6, 2)));
    }
}
