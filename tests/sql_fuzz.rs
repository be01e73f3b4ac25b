//! Random but well-formed SQL against the real binary: expressions of every type over
//! real tables (arithmetic, comparisons, `CASE`, casts, string and time functions,
//! subqueries), joins, aggregates, window functions, CTEs and unions, statements deep
//! and wide enough to meet the statement limits, and wattdb's own functions with bad
//! arguments. Every statement must answer or fail with a specific SQLSTATE — never
//! `XX000` (internal error), never a dropped connection, never a hang past its
//! deadline — and the server must not panic.
//!
//! The statements that once failed so are kept in `tests/fuzz/sql_regressions.sql` and
//! run first. `WATTDB_FUZZ_SEED` and `WATTDB_FUZZ_STATEMENTS` run other or more cases
//! (CI runs a fixed seed and count, so a failure is reproducible from its message).

mod common;

use std::time::Duration;

use common::Server;
use common::rng::Rng;

const SETUP: &[&str] = &[
    "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
     n BIGINT, ok BOOLEAN, msg TEXT, PRIMARY KEY (pid, ts))",
    "CREATE TABLE r (ts TIMESTAMPTZ NOT NULL, site TEXT NOT NULL, kw DOUBLE PRECISION, \
     PRIMARY KEY (site, ts))",
];

/// Rows of `m` and `r` over two months, with NULLs, zeros, negatives and unicode.
fn data() -> Vec<String> {
    let mut m = Vec::new();
    let mut r = Vec::new();
    for i in 0..240i64 {
        let (day, minute) = (1 + (i % 50) / 2, (i * 15) % 1440);
        let month = if i % 3 == 0 { 2 } else { 3 };
        let ts = format!(
            "'2026-{month:02}-{day:02}T{:02}:{:02}:00Z'",
            minute / 60,
            minute % 60
        );
        let v = match i % 9 {
            0 => "NULL".to_string(),
            1 => "0".to_string(),
            2 => format!("-{}.25", i),
            _ => format!("{}.5", i * 3),
        };
        let n = if i % 11 == 0 {
            "NULL".to_string()
        } else {
            (i * 7 - 300).to_string()
        };
        let ok = ["true", "false", "NULL"][(i % 3) as usize];
        let msg = match i % 5 {
            0 => "NULL".to_string(),
            1 => "'meter offline'".to_string(),
            2 => "'设备离线 %_'".to_string(),
            3 => "''".to_string(),
            _ => format!("'reading {i}'"),
        };
        m.push(format!("({ts}, 'p{}', {v}, {n}, {ok}, {msg})", i % 6));
        if i % 2 == 0 {
            r.push(format!("({ts}, 'p{}', {})", i % 4, i as f64 / 4.0));
        }
    }
    vec![
        format!("INSERT INTO m VALUES {}", m.join(", ")),
        format!("INSERT INTO r VALUES {}", r.join(", ")),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Num,
    Text,
    Bool,
    Time,
}

/// The generator: `depth` bounds the nesting of ordinary expressions.
struct Gen {
    rng: Rng,
    /// Columns in scope, by type: `(qualifier, column)`.
    scope: Vec<(&'static str, &'static str, Ty)>,
}

const M_COLUMNS: &[(&str, Ty)] = &[
    ("v", Ty::Num),
    ("n", Ty::Num),
    ("pid", Ty::Text),
    ("msg", Ty::Text),
    ("ok", Ty::Bool),
    ("ts", Ty::Time),
];

const NUM_LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2.5",
    "1e308",
    "-1e-308",
    "9223372036854775807",
    "-9223372036854775808",
    "NULL",
    "'NaN'::double precision",
    "'Infinity'::double precision",
    "3",
];

const TEXT_LITERALS: &[&str] = &[
    "'p1'",
    "''",
    "'meter offline'",
    "'设备'",
    "'%'",
    "'a''b'",
    "NULL",
    "'2026-03-01'",
    "'12.5'",
    "'true'",
];

const UNITS: &[&str] = &["minute", "hour", "day", "week", "month", "year", "quarter"];

const ADMIN_FUNCTIONS: &[&str] = &[
    "set_retention",
    "set_rollup_intervals",
    "set_counters",
    "rebuild_rollups",
    "set_fulltext",
    "create_channel",
    "create_alarm",
    "create_gap_alarm",
    "silence_alarm",
    "enable_alarm",
    "drop_alarm",
    "create_appliance",
    "set_appliance_detection",
    "drop_channel",
    "compact",
    "restore_partition",
    "run_retention",
    "flush",
];

const BAD_ARGUMENTS: &[&str] = &[
    "'m'",
    "'r'",
    "'no_such'",
    "''",
    "NULL",
    "1",
    "-5",
    "'{'",
    "'{\"url\": 5}'",
    "'{\"channels\": [\"nope\"]}'",
    "'[]'",
    "'4 months'",
    "'-1 days'",
    "'15m,1d'",
    "'9999-99'",
    "'v >'",
    "'v > 1'",
    "'webhook'",
    "'pid = ''p1'''",
    "'x'",
];

impl Gen {
    fn of_type(&self, ty: Ty) -> Vec<String> {
        self.scope
            .iter()
            .filter(|(_, _, t)| *t == ty)
            .map(|(q, c, _)| {
                if q.is_empty() {
                    c.to_string()
                } else {
                    format!("{q}.{c}")
                }
            })
            .collect()
    }

    fn column(&mut self, ty: Ty) -> Option<String> {
        let columns = self.of_type(ty);
        (!columns.is_empty()).then(|| self.rng.pick(&columns).clone())
    }

    fn expr(&mut self, ty: Ty, depth: usize) -> String {
        if depth == 0 || self.rng.one_in(4) {
            return self.leaf(ty);
        }
        let d = depth - 1;
        match ty {
            Ty::Num => match self.rng.below(14) {
                0 => format!(
                    "({} {} {})",
                    self.expr(Ty::Num, d),
                    self.rng.pick(&["+", "-", "*", "/", "%"]),
                    self.expr(Ty::Num, d)
                ),
                1 => format!("abs({})", self.expr(Ty::Num, d)),
                2 => format!("round({}, {})", self.expr(Ty::Num, d), self.rng.below(4)),
                3 => format!(
                    "coalesce({}, {})",
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                4 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, d),
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                5 => format!("CAST({} AS DOUBLE PRECISION)", self.expr(Ty::Text, d)),
                6 => format!("length({})", self.expr(Ty::Text, d)),
                7 => format!("extract(epoch FROM {})", self.expr(Ty::Time, d)),
                8 => format!("-({})", self.expr(Ty::Num, d)),
                9 => format!(
                    "{}({})",
                    self.rng
                        .pick(&["sqrt", "ln", "exp", "floor", "ceil", "sign"]),
                    self.expr(Ty::Num, d)
                ),
                10 => format!(
                    "power({}, {})",
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                11 => format!(
                    "nullif({}, {})",
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                12 => format!(
                    "(SELECT {}(kw) FROM r WHERE r.site = {})",
                    self.rng.pick(&["max", "sum", "count", "avg"]),
                    self.expr(Ty::Text, d)
                ),
                _ => format!("CAST({} AS BIGINT)", self.expr(Ty::Num, d)),
            },
            Ty::Text => match self.rng.below(9) {
                0 => format!("upper({})", self.expr(Ty::Text, d)),
                1 => format!(
                    "concat({}, {})",
                    self.expr(Ty::Text, d),
                    self.expr(Ty::Num, d)
                ),
                2 => format!("({} || {})", self.expr(Ty::Text, d), self.expr(Ty::Text, d)),
                3 => format!(
                    "substr({}, {}, {})",
                    self.expr(Ty::Text, d),
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                4 => format!("CAST({} AS TEXT)", self.expr(Ty::Num, d)),
                5 => format!(
                    "replace({}, {}, {})",
                    self.expr(Ty::Text, d),
                    self.leaf(Ty::Text),
                    self.leaf(Ty::Text)
                ),
                6 => format!(
                    "CASE WHEN {} THEN {} END",
                    self.expr(Ty::Bool, d),
                    self.expr(Ty::Text, d)
                ),
                7 => format!("CAST({} AS TEXT)", self.expr(Ty::Time, d)),
                _ => format!(
                    "coalesce({}, {})",
                    self.expr(Ty::Text, d),
                    self.expr(Ty::Text, d)
                ),
            },
            Ty::Bool => match self.rng.below(11) {
                0 | 1 => format!(
                    "({} {} {})",
                    self.expr(Ty::Num, d),
                    self.rng.pick(&["=", "<>", "<", "<=", ">", ">="]),
                    self.expr(Ty::Num, d)
                ),
                2 => format!(
                    "({} {} {})",
                    self.expr(Ty::Text, d),
                    self.rng.pick(&["=", "<>", "LIKE", "ILIKE", "NOT LIKE"]),
                    self.expr(Ty::Text, d)
                ),
                3 => format!("(NOT {})", self.expr(Ty::Bool, d)),
                4 => format!(
                    "({} {} {})",
                    self.expr(Ty::Bool, d),
                    self.rng.pick(&["AND", "OR"]),
                    self.expr(Ty::Bool, d)
                ),
                5 => {
                    let ty = *self.rng.pick(&[Ty::Num, Ty::Text, Ty::Time]);
                    format!(
                        "({} IS {}NULL)",
                        self.expr(ty, d),
                        self.rng.pick(&["", "NOT "])
                    )
                }
                6 => format!(
                    "({} BETWEEN {} AND {})",
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d),
                    self.expr(Ty::Num, d)
                ),
                7 => format!(
                    "({} IN ({}, {}, {}))",
                    self.expr(Ty::Num, d),
                    self.leaf(Ty::Num),
                    self.leaf(Ty::Num),
                    self.leaf(Ty::Num)
                ),
                8 => format!(
                    "({} IN (SELECT site FROM r WHERE kw > {}))",
                    self.expr(Ty::Text, d),
                    self.expr(Ty::Num, d)
                ),
                9 => format!(
                    "EXISTS (SELECT 1 FROM r WHERE r.site = {})",
                    self.expr(Ty::Text, d)
                ),
                _ => format!(
                    "({} {} {})",
                    self.expr(Ty::Time, d),
                    self.rng.pick(&["<", ">=", "="]),
                    self.expr(Ty::Time, d)
                ),
            },
            Ty::Time => match self.rng.below(5) {
                0 => format!(
                    "date_trunc('{}', {})",
                    self.rng.pick(UNITS),
                    self.expr(Ty::Time, d)
                ),
                1 => format!(
                    "({} + INTERVAL '{} {}')",
                    self.expr(Ty::Time, d),
                    self.rng.below(100),
                    self.rng.pick(UNITS)
                ),
                2 => format!(
                    "time_bucket(INTERVAL '{} minutes', {})",
                    [0, 1, 15, 60, 1440][self.rng.below(5)],
                    self.expr(Ty::Time, d)
                ),
                3 => format!("CAST({} AS TIMESTAMPTZ)", self.expr(Ty::Text, d)),
                _ => format!(
                    "({} - INTERVAL '{} seconds')",
                    self.expr(Ty::Time, d),
                    self.rng.below(100_000)
                ),
            },
        }
    }

    fn leaf(&mut self, ty: Ty) -> String {
        if !self.rng.one_in(3)
            && let Some(c) = self.column(ty)
        {
            return c;
        }
        match ty {
            Ty::Num => self.rng.pick(NUM_LITERALS).to_string(),
            Ty::Text => self.rng.pick(TEXT_LITERALS).to_string(),
            Ty::Bool => self.rng.pick(&["true", "false", "NULL"]).to_string(),
            Ty::Time => self
                .rng
                .pick(&[
                    "TIMESTAMPTZ '2026-03-01 00:00:00+00'",
                    "now()",
                    "TIMESTAMPTZ '1970-01-01 00:00:00+00'",
                    "NULL",
                ])
                .to_string(),
        }
    }

    fn any_type(&mut self) -> Ty {
        *self.rng.pick(&[Ty::Num, Ty::Text, Ty::Bool, Ty::Time])
    }

    fn scope_m(&mut self, qualifier: &'static str) {
        self.scope = M_COLUMNS.iter().map(|(c, t)| (qualifier, *c, *t)).collect();
    }

    fn select_list(&mut self, n: usize, depth: usize) -> String {
        (0..n)
            .map(|i| {
                let ty = self.any_type();
                format!("{} AS c{i}", self.expr(ty, depth))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn statement(&mut self) -> String {
        let depth = 1 + self.rng.below(5);
        match self.rng.below(12) {
            0..=2 => {
                self.scope_m("");
                let cols = 1 + self.rng.below(3);
                let list = self.select_list(cols, depth);
                let filter = if self.rng.one_in(2) {
                    format!(" WHERE {}", self.expr(Ty::Bool, depth))
                } else {
                    String::new()
                };
                format!(
                    "SELECT {list} FROM m{filter} ORDER BY 1 LIMIT {}",
                    self.rng.below(50)
                )
            }
            3 => {
                self.scope_m("");
                let agg = self.rng.pick(&[
                    "sum", "avg", "min", "max", "count", "stddev", "var_pop", "first", "last",
                ]);
                let arg = if matches!(*agg, "first" | "last") {
                    format!("{}, ts", self.expr(Ty::Num, depth))
                } else {
                    self.expr(Ty::Num, depth)
                };
                let having = if self.rng.one_in(2) {
                    format!(" HAVING count(*) > {}", self.rng.below(60))
                } else {
                    String::new()
                };
                format!(
                    "SELECT pid, {agg}({arg}) FROM m WHERE {} GROUP BY pid{having} ORDER BY pid",
                    self.expr(Ty::Bool, depth)
                )
            }
            4 => {
                self.scope = M_COLUMNS.iter().map(|(c, t)| ("a", *c, *t)).collect();
                self.scope.push(("b", "kw", Ty::Num));
                self.scope.push(("b", "site", Ty::Text));
                let join = self
                    .rng
                    .pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
                let list = self.select_list(2, depth);
                format!(
                    "SELECT {list} FROM m a {join} r b ON a.pid = b.site AND {} ORDER BY 1, 2 LIMIT 30",
                    self.expr(Ty::Bool, depth)
                )
            }
            5 => {
                self.scope_m("");
                let frame = self.rng.pick(&[
                    "",
                    " ROWS BETWEEN 2 PRECEDING AND CURRENT ROW",
                    " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING",
                    " RANGE BETWEEN INTERVAL '1 hour' PRECEDING AND CURRENT ROW",
                ]);
                let f = match self.rng.below(5) {
                    0 => "row_number()".to_string(),
                    1 => format!("lag({}, {})", self.expr(Ty::Num, depth), self.rng.below(3)),
                    2 => format!("sum({})", self.expr(Ty::Num, depth)),
                    3 => "rank()".to_string(),
                    _ => format!("first_value({})", self.expr(Ty::Text, depth)),
                };
                format!(
                    "SELECT pid, ts, {f} OVER (PARTITION BY pid ORDER BY ts{frame}) FROM m ORDER BY pid, ts LIMIT 40"
                )
            }
            6 => {
                self.scope_m("");
                let inner = self.select_list(2, depth);
                self.scope = vec![("x", "c0", Ty::Num), ("x", "c1", Ty::Num)];
                format!(
                    "WITH x AS (SELECT {inner} FROM m) SELECT count(*) FROM x WHERE x.c0 IS NOT NULL OR x.c1 IS NULL"
                )
            }
            7 => {
                self.scope_m("");
                let ty = self.any_type();
                let a = self.expr(ty, depth);
                let b = self.expr(ty, depth);
                format!("SELECT {a} FROM m UNION ALL SELECT {b} FROM m ORDER BY 1 LIMIT 20")
            }
            8 => {
                // wattdb's functions with arguments of every kind.
                let f = self.rng.pick(ADMIN_FUNCTIONS);
                let n = self.rng.below(5);
                let args: Vec<&str> = (0..n).map(|_| *self.rng.pick(BAD_ARGUMENTS)).collect();
                format!("SELECT {f}({})", args.join(", "))
            }
            9 => {
                self.scope = vec![("", "pid", Ty::Text), ("", "v", Ty::Num)];
                let arg = self.rng.pick(BAD_ARGUMENTS);
                format!(
                    "SELECT * FROM last_values({arg}) WHERE {} LIMIT 5",
                    self.expr(Ty::Bool, depth)
                )
            }
            10 => self.deep(),
            _ => {
                self.scope_m("");
                let e = self.expr(Ty::Num, depth);
                format!(
                    "SELECT time_bucket(INTERVAL '15 minutes', ts) AS b, sum({e}) FROM m GROUP BY 1 ORDER BY 1 LIMIT 10"
                )
            }
        }
    }

    /// A statement deep or wide enough to meet the limits (refused with 54001) or just
    /// under them.
    fn deep(&mut self) -> String {
        self.scope_m("");
        let n = [50, 200, 450, 600, 2000, 20_000][self.rng.below(6)];
        let body = match self.rng.below(6) {
            0 => vec!["v"; n].join(" + "),
            1 => format!("{}v{}", "(".repeat(n), ")".repeat(n)),
            2 => {
                let mut e = "v".to_string();
                for _ in 0..n {
                    e = format!("coalesce({e}, 1)");
                }
                e
            }
            3 => {
                let mut e = "0".to_string();
                for i in 0..n {
                    e = format!("CASE WHEN v > {i} THEN {i} ELSE {e} END");
                }
                e
            }
            4 => format!(
                "CASE WHEN {} THEN 1 ELSE 0 END",
                (0..n)
                    .map(|i| format!("v = {i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            _ => {
                let mut e = "v".to_string();
                for i in 0..n {
                    e = format!("{i} - ({e})");
                }
                e
            }
        };
        format!("SELECT {body} FROM m LIMIT 1")
    }
}

/// What is wrong with how `sql` answered, if anything.
async fn run_one(client: &tokio_postgres::Client, sql: &str) -> Result<(), String> {
    let answered = tokio::time::timeout(Duration::from_secs(60), client.simple_query(sql)).await;
    match answered {
        Err(_) => Err("no answer within 60 s (statement_timeout is 10 s)".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match e.as_db_error() {
            None => Err(format!("not a database error: {e}")),
            Some(db) if db.code().code() == "XX000" => Err(format!("XX000: {}", db.message())),
            Some(_) => Ok(()),
        },
    }
}

fn regressions() -> Vec<String> {
    let path = format!(
        "{}/tests/fuzz/sql_regressions.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_answers_or_fails_with_a_specific_sqlstate() {
    let seed: u64 = std::env::var("WATTDB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_1208);
    let count: usize = std::env::var("WATTDB_FUZZ_STATEMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let server = Server::new().start();
    let client = server.client().await;
    for sql in SETUP.iter().map(|s| s.to_string()).chain(data()) {
        client.batch_execute(&sql).await.unwrap();
    }
    client
        .batch_execute("SET statement_timeout = '10s'")
        .await
        .unwrap();
    let mut failures = Vec::new();
    for sql in regressions() {
        if let Err(why) = run_one(&client, &sql).await {
            failures.push(format!("regression case: {why}\n  {sql}"));
        }
    }
    let mut generator = Gen {
        rng: Rng(seed),
        scope: Vec::new(),
    };
    for i in 0..count {
        let sql = generator.statement();
        if let Err(why) = run_one(&client, &sql).await {
            let shown: String = sql.chars().take(2000).collect();
            failures.push(format!("statement {i} (seed {seed}): {why}\n  {shown}"));
            if client.is_closed() {
                break;
            }
        }
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        failures.is_empty(),
        "{} of {count} statements failed (keep each in tests/fuzz/sql_regressions.sql \
         once fixed):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
