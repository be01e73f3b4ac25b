//! `COPY … TO STDOUT` end to end: a query's or a table's rows in PostgreSQL's text, CSV
//! and binary COPY formats, read with tokio-postgres's `copy_out` and psql's `\copy`,
//! compared with the text this test builds from the rows it wrote (PostgreSQL's escaping
//! rules; float and timestamp texts as PostgreSQL 15 prints them) and, for binary,
//! decoded field by field.

mod common;

use common::{Server, sqlstate};
use futures::StreamExt;

/// 2026-03-01 00:00:00 UTC.
const T0: u64 = 1_772_323_200;
/// Microseconds from 1970 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

struct Reading {
    pid: &'static str,
    minute: u64,
    ua: Option<f64>,
    /// PostgreSQL's text for `ua`.
    ua_text: &'static str,
    note: Option<&'static str>,
}

const READINGS: &[Reading] = &[
    Reading {
        pid: "m1",
        minute: 0,
        ua: Some(229.0),
        ua_text: "229",
        note: Some("plain"),
    },
    Reading {
        pid: "m1",
        minute: 1,
        ua: Some(230.5),
        ua_text: "230.5",
        note: Some("tab\there, \"quoted\", a,b"),
    },
    Reading {
        pid: "m1",
        minute: 2,
        ua: None,
        ua_text: "",
        note: Some("line\nbreak and back\\slash"),
    },
    Reading {
        pid: "m2",
        minute: 0,
        ua: Some(1e-5),
        ua_text: "1e-05",
        note: None,
    },
    Reading {
        pid: "m2",
        minute: 5,
        ua: Some(-0.1),
        ua_text: "-0.1",
        note: Some(""),
    },
];

fn ts_text(minute: u64) -> String {
    format!("2026-03-01 00:{minute:02}:00+00")
}

async fn server_with_readings() -> (Server, tokio_postgres::Client) {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE e (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, \
         note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    for r in READINGS {
        let ts = std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0 + 60 * r.minute);
        c.execute(
            "INSERT INTO e (ts, pid, ua, note) VALUES ($1, $2, $3, $4)",
            &[&ts, &r.pid, &r.ua, &r.note],
        )
        .await
        .unwrap();
    }
    (server, c)
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let stream = c
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// PostgreSQL's text-format escaping of one value.
fn text_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// PostgreSQL's CSV quoting of one non-null value.
fn csv_quote(v: &str) -> String {
    if v.is_empty() || v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_copied_out_as_text_and_csv() {
    let (_server, c) = server_with_readings().await;
    let text = copy_out(
        &c,
        "COPY (SELECT pid, ts, ua, note FROM e ORDER BY pid, ts) TO STDOUT",
    )
    .await;
    let want: String = READINGS
        .iter()
        .map(|r| {
            format!(
                "{}\t{}\t{}\t{}\n",
                r.pid,
                ts_text(r.minute),
                if r.ua.is_some() { r.ua_text } else { "\\N" },
                r.note.map_or("\\N".to_string(), text_escape)
            )
        })
        .collect();
    assert_eq!(String::from_utf8(text).unwrap(), want);

    let csv = copy_out(
        &c,
        "COPY (SELECT pid, ts, ua, note FROM e ORDER BY pid, ts) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    let mut want = "pid,ts,ua,note\n".to_string();
    for r in READINGS {
        want += &format!(
            "{},{},{},{}\n",
            r.pid,
            ts_text(r.minute),
            r.ua_text,
            r.note.map_or(String::new(), csv_quote)
        );
    }
    assert_eq!(String::from_utf8(csv).unwrap(), want);

    // A table with a column list, and the pre-9.0 option form psql's \copy sends.
    let some = copy_out(&c, "COPY e (pid, ua) TO STDOUT WITH CSV").await;
    let mut got: Vec<String> = String::from_utf8(some)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    let mut want: Vec<String> = READINGS
        .iter()
        .map(|r| format!("{},{}", r.pid, r.ua_text))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// Reads PostgreSQL's binary COPY format: header, tuples, trailer.
fn binary_tuples(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    assert_eq!(&data[..11], b"PGCOPY\n\xff\r\n\x00", "signature");
    let mut at = 11 + 4;
    let ext = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    at += 4 + ext;
    let mut tuples = Vec::new();
    loop {
        let n = i16::from_be_bytes(data[at..at + 2].try_into().unwrap());
        at += 2;
        if n == -1 {
            assert_eq!(at, data.len(), "nothing after the trailer");
            return tuples;
        }
        let mut fields = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                fields.push(None);
            } else {
                fields.push(Some(data[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        tuples.push(fields);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_copied_out_in_binary() {
    let (_server, c) = server_with_readings().await;
    let data = copy_out(
        &c,
        "COPY (SELECT ts, pid, ua, note FROM e ORDER BY pid, ts) TO STDOUT (FORMAT binary)",
    )
    .await;
    let tuples = binary_tuples(&data);
    assert_eq!(tuples.len(), READINGS.len());
    for (t, r) in tuples.iter().zip(READINGS) {
        let micros = i64::from_be_bytes(t[0].as_deref().unwrap().try_into().unwrap());
        assert_eq!(
            micros + PG_EPOCH_MICROS,
            ((T0 + 60 * r.minute) * 1_000_000) as i64
        );
        assert_eq!(t[1].as_deref(), Some(r.pid.as_bytes()));
        let ua = t[2]
            .as_deref()
            .map(|b| f64::from_be_bytes(b.try_into().unwrap()));
        assert_eq!(ua, r.ua);
        assert_eq!(t[3].as_deref(), r.note.map(str::as_bytes));
    }
    // No rows: still a valid stream (header and trailer).
    let empty = copy_out(
        &c,
        "COPY (SELECT * FROM e WHERE false) TO STDOUT (FORMAT binary)",
    )
    .await;
    assert!(binary_tuples(&empty).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copies_to_a_client_file_and_refused_forms_say_why() {
    let (server, c) = server_with_readings().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.csv");
    let out = server.psql(&format!(
        "\\copy (SELECT pid, ua FROM e WHERE pid = 'm1' ORDER BY ts) TO '{}' WITH CSV HEADER",
        file.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "COPY 3",
        "psql reports the rows copied"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "pid,ua\nm1,229\nm1,230.5\nm1,\n"
    );
    for (sql, code) in [
        ("COPY e TO '/tmp/wattdb-should-not-exist'", "0A000"),
        ("COPY e TO STDOUT (FORMAT xml)", "22023"),
        ("COPY e TO STDOUT (FORMAT text, HEADER)", "0A000"),
        ("COPY no_such_table TO STDOUT", "42P01"),
    ] {
        let e = c
            .copy_out(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql}"));
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
}

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = c.copy_in(sql).await?;
    let mut sink = std::pin::pin!(sink);
    for piece in data {
        sink.send(bytes::Bytes::copy_from_slice(piece.as_bytes()))
            .await?;
    }
    sink.as_mut().finish().await
}

async fn count(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM e", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_round_trips_text_and_csv() {
    let (_server, c) = server_with_readings().await;
    c.batch_execute(
        "CREATE TABLE f (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, \
         note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // What COPY TO wrote for `e`, read back into `f` — in pieces cut mid-line — gives
    // the same rows: text format.
    let sql = "COPY (SELECT ts, pid, ua, note FROM e ORDER BY pid, ts) TO STDOUT";
    let text = String::from_utf8(copy_out(&c, sql).await).unwrap();
    let (a, b) = text.split_at(text.len() / 2);
    let n = copy_in(&c, "COPY f (ts, pid, ua, note) FROM STDIN", &[a, b])
        .await
        .unwrap();
    assert_eq!(n, READINGS.len() as u64);
    let back = String::from_utf8(
        copy_out(
            &c,
            "COPY (SELECT ts, pid, ua, note FROM f ORDER BY pid, ts) TO STDOUT",
        )
        .await,
    )
    .unwrap();
    assert_eq!(back, text);
    // CSV with a header, quoted delimiters and line breaks, empty string vs NULL.
    c.batch_execute(
        "DROP TABLE f; CREATE TABLE f (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
                     ua DOUBLE PRECISION, note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    let sql =
        "COPY (SELECT ts, pid, ua, note FROM e ORDER BY pid, ts) TO STDOUT (FORMAT csv, HEADER)";
    let csv = String::from_utf8(copy_out(&c, sql).await).unwrap();
    copy_in(
        &c,
        "COPY f (ts, pid, ua, note) FROM STDIN WITH (FORMAT csv, HEADER true)",
        &[&csv],
    )
    .await
    .unwrap();
    let rows = c
        .query("SELECT pid, ua, note FROM f ORDER BY pid, ts", &[])
        .await
        .unwrap();
    let got: Vec<(String, Option<f64>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, Option<f64>, Option<String>)> = READINGS
        .iter()
        .map(|r| (r.pid.to_string(), r.ua, r.note.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
    // Last write wins, within one COPY too.
    copy_in(
        &c,
        "COPY f (pid, ts, ua) FROM STDIN (FORMAT csv)",
        &["m9,2026-03-01 00:00:00+00,1\nm9,2026-03-01 08:00:00+08,2\n"],
    )
    .await
    .unwrap();
    let ua: f64 = c
        .query_one("SELECT ua FROM f WHERE pid = 'm9'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ua, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_fails_the_whole_copy_and_names_it() {
    let (_server, c) = server_with_readings().await;
    let before = count(&c).await;
    let good = "m7\t2026-03-02 00:00:00+00\t1.5\n";
    for (sql, data, code, says) in [
        (
            "COPY e (pid, ts, ua) FROM STDIN",
            format!("{good}{good}m7\t2026-03-02 00:02:00+00\tabc\n"),
            "22P02",
            "line 3, column ua",
        ),
        (
            "COPY e (pid, ts, ua) FROM STDIN",
            format!("{good}m7\t2026-03-02 00:01:00+00\n"),
            "22P04",
            "line 2",
        ),
        (
            "COPY e (pid, ts, ua) FROM STDIN",
            format!("{good}m7\t2026-03-02 00:01:00+00\t1\t2\n"),
            "22P04",
            "extra data",
        ),
        (
            "COPY e (pid, ts, ua) FROM STDIN",
            "\\N\t2026-03-02 00:01:00+00\t1\n".to_string(),
            "23502",
            "column pid",
        ),
        (
            "COPY e (pid, ts, ua) FROM STDIN",
            "m7\tsoon\t1\n".to_string(),
            "22P02",
            "column ts",
        ),
    ] {
        let e = copy_in(&c, sql, &[&data]).await.expect_err(&data);
        assert_eq!(sqlstate(&e), code, "{data:?}: {e}");
        let text = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(text.contains(says), "{text}");
        assert_eq!(count(&c).await, before, "nothing kept from {data:?}");
    }
    // Refused at the start (over the extended protocol the error comes when the client
    // ends the COPY, as the protocol allows; psql and psycopg see it at once).
    for (sql, code) in [
        ("COPY e (pid, ua) FROM STDIN", "23502"),
        ("COPY e (pid, ts, nope) FROM STDIN", "42703"),
        ("COPY nope FROM STDIN", "42P01"),
    ] {
        let e = copy_in(&c, sql, &[good]).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    let e = c
        .batch_execute("COPY e FROM '/etc/passwd'")
        .await
        .expect_err("a server-side file");
    assert_eq!(sqlstate(&e), "0A000");
    // The connection is fine afterwards.
    assert_eq!(count(&c).await, before);
}

/// Cut `data` into pieces of `size` bytes (not at line ends), as a client may send it.
fn pieces(data: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let mut at = size.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (a, b) = rest.split_at(at);
        out.push(a);
        rest = b;
    }
    out
}

/// A COPY of several MiB is parsed in blocks, several at a time: the rows still land in
/// the order of the data (the later of two writes of a key wins across blocks), quoted
/// line breaks that straddle a block's cut stay in their value, an error deep in the data
/// names its line and keeps nothing, and `\.` ends the data wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_many_blocks_keeps_order_lines_and_all_or_nothing() {
    let (_server, c) = server_with_readings().await;
    c.batch_execute(
        "CREATE TABLE g (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, kwh DOUBLE PRECISION, \
         note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    const ROWS: u64 = 80_000;
    const KEYS: u64 = 40_000;
    let key = |i: u64| (format!("m{:03}", i % 200), (i % KEYS) / 200);
    let note = |i: u64| match i % 7 {
        0 => format!("line\nbreak, \"q\" {i}"),
        3 => String::new(),
        _ => format!("n{i}"),
    };
    // Data row `bad` (if any) has a value that is not a number.
    let csv_with = |bad: Option<u64>| {
        let mut csv = String::from("pid,ts,kwh,note\n");
        for i in 0..ROWS {
            let (pid, minute) = key(i);
            let ts = chrono_text(T0 + 60 * minute);
            let kwh = if bad == Some(i) {
                "x1".to_string()
            } else {
                (i as f64 * 0.25).to_string()
            };
            csv.push_str(&format!("{pid},{ts},{kwh},{}\n", csv_quote(&note(i))));
        }
        csv
    };
    let csv = csv_with(None);
    assert!(csv.len() > 3 << 20, "{} bytes: several blocks", csv.len());
    let sql = "COPY g (pid, ts, kwh, note) FROM STDIN (FORMAT csv, HEADER)";
    let n = copy_in(&c, sql, &pieces(&csv, 7_919)).await.unwrap();
    assert_eq!(n, ROWS);
    // Each key was written by rows i and i + KEYS: the later one is kept.
    let mut want: Vec<(String, u64, f64, String)> = (KEYS..ROWS)
        .map(|i| {
            let (pid, minute) = key(i);
            (pid, minute, i as f64 * 0.25, note(i))
        })
        .collect();
    want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let got: Vec<(String, u64, f64, String)> = c
        .query(
            "SELECT pid, CAST((extract(epoch FROM ts) - $1) / 60 AS BIGINT), kwh, note \
             FROM g ORDER BY pid, ts",
            &[&(T0 as f64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let minute: i64 = r.get(1);
            (r.get(0), minute as u64, r.get(2), r.get(3))
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "first difference: {:?}",
        got.iter().zip(&want).find(|(a, b)| a != b)
    );
    let before: i64 = c
        .query_one("SELECT count(*) FROM g", &[])
        .await
        .unwrap()
        .get(0);

    // A bad value on data row 70,000 (line 70,001 with the header), blocks after good
    // ones: an error naming the line, nothing kept.
    let bad = csv_with(Some(70_000));
    c.batch_execute("TRUNCATE g").await.unwrap();
    let e = copy_in(&c, sql, &pieces(&bad, 65_536))
        .await
        .expect_err("a bad value");
    assert_eq!(sqlstate(&e), "22P02", "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("line 70002, column kwh"), "{message}");
    let left: i64 = c
        .query_one("SELECT count(*) FROM g", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "nothing kept after TRUNCATE and a failed COPY");
    assert!(before > 0);

    // Text format, `\.` on line 50,001: the 50,000 rows before it, nothing after.
    let mut text = String::new();
    for i in 0..ROWS {
        if i == 50_000 {
            text.push_str("\\.\n");
        }
        let (pid, minute) = key(i);
        let ts = chrono_text(T0 + 60 * minute + 7);
        text.push_str(&format!("{pid}\t{ts}\t{i}\n"));
    }
    let n = copy_in(
        &c,
        "COPY g (pid, ts, kwh) FROM STDIN",
        &pieces(&text, 100_003),
    )
    .await
    .unwrap();
    assert_eq!(n, 50_000);
    let (rows, sum): (i64, f64) = {
        let r = c
            .query_one("SELECT count(*), sum(kwh) FROM g", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    // Keys of rows 0..40,000 once, 40,000..50,000 overwrite the first 10,000.
    assert_eq!(rows, KEYS as i64);
    let want_sum: f64 = (10_000..50_000u64).map(|i| i as f64).sum();
    assert_eq!(sum, want_sum);
}

/// `2026-03-01 00:00:00+00`-style text of a Unix time in seconds.
fn chrono_text(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days from 2026-03-01 (T0) within March–April 2026 only.
    let day = days - T0 / 86_400;
    let (month, dom) = if day < 31 {
        (3, day + 1)
    } else {
        (4, day - 30)
    };
    format!(
        "2026-{month:02}-{dom:02} {:02}:{:02}:{:02}+00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_from_round_trips_and_refuses_bad_values() {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};

    let (_server, c) = server_with_readings().await;
    let create = "CREATE TABLE f (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
                  ua DOUBLE PRECISION, note TEXT, n BIGINT, ok BOOLEAN, PRIMARY KEY (pid, ts))";
    c.batch_execute(create).await.unwrap();

    // What a binary COPY TO wrote, read back in pieces cut anywhere.
    let data = copy_out(
        &c,
        "COPY (SELECT ts, pid, ua, note FROM e ORDER BY pid, ts) TO STDOUT (FORMAT binary)",
    )
    .await;
    {
        use futures::SinkExt;
        let sink = c
            .copy_in("COPY f (ts, pid, ua, note) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        for chunk in data.chunks(7) {
            sink.send(bytes::Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        assert_eq!(sink.as_mut().finish().await.unwrap(), READINGS.len() as u64);
    }
    let rows = c
        .query("SELECT pid, ua, note, ts FROM f ORDER BY pid, ts", &[])
        .await
        .unwrap();
    let got: Vec<(String, Option<f64>, Option<String>, std::time::SystemTime)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let want: Vec<(String, Option<f64>, Option<String>, std::time::SystemTime)> = READINGS
        .iter()
        .map(|r| {
            (
                r.pid.to_string(),
                r.ua,
                r.note.map(str::to_string),
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0 + 60 * r.minute),
            )
        })
        .collect();
    assert_eq!(got, want);

    // tokio-postgres' binary writer, every column type; an int4 into the bigint column.
    c.batch_execute("DROP TABLE f").await.unwrap();
    c.batch_execute(create).await.unwrap();
    let sink = c
        .copy_in("COPY f (ts, pid, ua, note, n, ok) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let types = [
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::FLOAT8,
        Type::TEXT,
        Type::INT4,
        Type::BOOL,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let at = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0 + s);
    type Row<'a> = (
        std::time::SystemTime,
        &'a str,
        Option<f64>,
        Option<&'a str>,
        i32,
        bool,
    );
    let rows: Vec<Row> = vec![
        (at(0), "b1", Some(-1.25), Some("设备离线"), -7, true),
        (at(60), "b1", None, None, 2_000_000_000, false),
        (at(0), "b2", Some(1e300), Some(""), 0, true),
    ];
    for (ts, pid, ua, note, n, ok) in &rows {
        let values: [&(dyn ToSql + Sync); 6] = [ts, pid, ua, note, n, ok];
        writer.as_mut().write(&values).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 3);
    let back = c
        .query(
            "SELECT ts, pid, ua, note, n, ok FROM f ORDER BY pid, ts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(back.len(), 3);
    for (r, (ts, pid, ua, note, n, ok)) in back.iter().zip(&rows) {
        assert_eq!(r.get::<_, std::time::SystemTime>(0), *ts);
        assert_eq!(r.get::<_, String>(1), *pid);
        assert_eq!(r.get::<_, Option<f64>>(2), *ua);
        assert_eq!(r.get::<_, Option<String>>(3).as_deref(), *note);
        assert_eq!(r.get::<_, i64>(4), *n as i64);
        assert_eq!(r.get::<_, bool>(5), *ok);
    }

    // Bad data fails the whole COPY and keeps none of it.
    let header = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    let field = |v: &[u8]| [&(v.len() as u32).to_be_bytes()[..], v].concat();
    let tuple = |fields: &[Vec<u8>]| {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            t.extend_from_slice(f);
        }
        t
    };
    let ts = field(&(((T0 as i64) * 1_000_000 - 946_684_800_000_000) + 120_000_000).to_be_bytes());
    let good = tuple(&[ts.clone(), field(b"b3"), field(&1.5f64.to_be_bytes())]);
    let trailer = (-1i16).to_be_bytes().to_vec();
    let null = (-1i32).to_be_bytes().to_vec();
    for (what, data, code) in [
        ("no trailer", [&header[..], &good].concat(), "22P04"),
        (
            "a 3-byte float",
            [
                &header[..],
                &good,
                &tuple(&[ts.clone(), field(b"b4"), field(b"abc")]),
                &trailer,
            ]
            .concat(),
            "22P03",
        ),
        (
            "a NULL tag",
            [
                &header[..],
                &good,
                &tuple(&[ts.clone(), null.clone(), field(&2.0f64.to_be_bytes())]),
                &trailer,
            ]
            .concat(),
            "23502",
        ),
        (
            "too few fields",
            [&header[..], &tuple(&[ts.clone(), field(b"b5")]), &trailer].concat(),
            "22P04",
        ),
        ("not binary COPY data", b"hello\tworld\n".to_vec(), "22P04"),
    ] {
        use futures::SinkExt;
        let sink = c
            .copy_in("COPY f (ts, pid, ua) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        let e = sink.as_mut().finish().await.expect_err(what);
        assert_eq!(sqlstate(&e), code, "{what}: {e:?}");
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM f", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "nothing of the failed COPYs was kept");
}
