//! `set_fulltext('<table>', '<column>' [, '<options>'])`: make a text field of an existing
//! table searchable with `matches()`, or change its analyzer — options are JSON,
//! `{"analyzer": "chinese" | "standard" | "raw"}` (default chinese) — or stop it with
//! `'none'`.

use wattdb_storage::Storage;
use wattdb_storage::fulltext::Analyzer;

use crate::admin::AdminError;
use crate::pg::sqlstate::{INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION};

const USAGE: &str =
    "set_fulltext('<table>', '<column>' [, '{\"analyzer\": \"chinese\"}' | 'none'])";

/// The analyzer an options argument asks for; `None` turns full-text search off.
fn analyzer_option(options: Option<&str>) -> Result<Option<Analyzer>, AdminError> {
    let Some(text) = options.map(str::trim) else {
        return Ok(Some(Analyzer::default()));
    };
    if text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    let bad = |why: String| AdminError::new(INVALID_PARAMETER_VALUE, format!("{why}; {USAGE}"));
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("options are not JSON ({e})")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(bad("options must be a JSON object".into()));
    };
    let mut analyzer = Analyzer::default();
    for (k, v) in map {
        match (k.as_str(), v) {
            ("analyzer", serde_json::Value::String(name)) => {
                analyzer = Analyzer::named(&name).map_err(bad)?;
            }
            ("analyzer", other) => {
                return Err(bad(format!("analyzer must be a string, not {other}")));
            }
            (other, _) => return Err(bad(format!("unknown option \"{other}\""))),
        }
    }
    Ok(Some(analyzer))
}

pub async fn set_fulltext(storage: &Storage, args: &[String]) -> Result<String, AdminError> {
    if !(2..=3).contains(&args.len()) {
        return Err(AdminError::new(
            UNDEFINED_FUNCTION,
            format!("usage: {USAGE}"),
        ));
    }
    let (table, column) = (&args[0], &args[1]);
    let analyzer = analyzer_option(args.get(2).map(String::as_str))?;
    storage.set_fulltext(table, column, analyzer).await?;
    Ok(match analyzer {
        Some(a) => format!("full-text search on {table}.{column}: analyzer {a}"),
        None => format!("full-text search on {table}.{column}: off"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(analyzer_option(None).unwrap(), Some(Analyzer::Chinese));
        assert_eq!(
            analyzer_option(Some(r#"{"analyzer": "raw"}"#)).unwrap(),
            Some(Analyzer::Raw)
        );
        assert_eq!(analyzer_option(Some("none")).unwrap(), None);
        for bad in [
            r#"{"analyzer": "klingon"}"#,
            r#"{"stemming": true}"#,
            "[1]",
            "{",
        ] {
            let e = analyzer_option(Some(bad)).unwrap_err();
            assert_eq!(e.code, INVALID_PARAMETER_VALUE, "{bad}");
            assert!(e.message.contains("set_fulltext("), "{}", e.message);
        }
    }
}
