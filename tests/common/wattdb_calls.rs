//! `tests/clients/wattdb_calls.tsv`: every admin function of wattdb with arguments, as
//! the drivers' scripts and `tests/bound_parameters.rs` call them.

pub struct WattdbCalls {
    /// Statements that set a server up for the calls.
    pub setup: Vec<String>,
    /// Function name and arguments, in order.
    pub calls: Vec<(String, Vec<String>)>,
}

pub fn path() -> String {
    format!(
        "{}/tests/clients/wattdb_calls.tsv",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub fn load() -> WattdbCalls {
    let text = std::fs::read_to_string(path()).expect("read wattdb_calls.tsv");
    let mut out = WattdbCalls {
        setup: Vec::new(),
        calls: Vec::new(),
    };
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut fields = line.split('\t').map(str::to_string);
        let first = fields.next().unwrap_or_default();
        if first == "@setup" {
            out.setup.extend(fields);
        } else {
            out.calls.push((first, fields.collect()));
        }
    }
    // Every function the server registers is called.
    let registered = wattdb_query::admin::BUILT_IN_FUNCTIONS
        .iter()
        .chain(wattdb_compaction::ADMIN_FUNCTIONS)
        .chain(wattdb_ingest::rules::admin::FUNCTIONS);
    for name in registered {
        assert!(
            out.calls.iter().any(|(f, _)| f == name),
            "{name} is not called in {}",
            path()
        );
    }
    out
}
