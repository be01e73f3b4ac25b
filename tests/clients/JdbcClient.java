// pgjdbc (Debian's libpostgresql-jdbc-java) against a running wattdb: DatabaseMetaData as
// DBeaver and other JDBC tools use it (getTables, getColumns, getPrimaryKeys, getIndexInfo,
// getTypeInfo, getSchemas), prepared statements with batches, and ResultSet getters,
// every value checked against the rows this program wrote. Prints "ok jdbc: …" per
// check; exits non-zero on the first failure.
//
//   java -cp /usr/share/java/postgresql.jar tests/clients/JdbcClient.java --port 5433 \
//     [--sslrootcert ca.pem]

import java.sql.*;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.*;

public class JdbcClient {
    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void ok(String what) {
        System.out.println("ok jdbc: " + what);
    }

    // 2026-03-01 00:00:00 UTC.
    static final long T0 = 1_772_323_200_000L;

    record Reading(long tsMillis, String pid, Double p, long kwh, boolean on, String note) {}

    static List<Reading> readings() {
        List<Reading> out = new ArrayList<>();
        for (int m = 0; m < 3; m++)
            for (int i = 0; i < 30; i++)
                out.add(new Reading(T0 + i * 60_000L, "jdbc-" + m,
                        i % 7 == 3 ? null : 100.0 * m + i * 0.25, 1000L * m + i, i % 2 == 0,
                        i % 5 == 0 ? "reset " + i + " 设备离线" : null));
        return out;
    }

    // A call's one text answer (up to a time it names: "… until <time>"), or its SQLSTATE.
    interface Call {
        ResultSet run() throws SQLException;
    }

    static String outcome(Call call) {
        try (ResultSet r = call.run()) {
            if (!r.next()) return "<no row>";
            String v = r.getString(1);
            if (v == null) return "<null>";
            int until = v.indexOf(" until ");
            return until < 0 ? v : v.substring(0, until);
        } catch (SQLException e) {
            return "ERROR " + e.getSQLState();
        }
    }

    // --calls wattdb_calls.tsv --literal-port N: every wattdb function, its arguments
    // written as literals on the server at N and bound by a PreparedStatement (setString)
    // on the other, set up the same way; the answers (or SQLSTATEs) must be the same.
    static void calls(String path, int literalPort, int boundPort) throws Exception {
        List<String> setup = new ArrayList<>();
        List<List<String>> calls = new ArrayList<>();
        for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of(path))) {
            if (line.isEmpty() || line.startsWith("#")) continue;
            List<String> fields = Arrays.asList(line.split("\t", -1));
            if (fields.get(0).equals("@setup")) setup.addAll(fields.subList(1, fields.size()));
            else calls.add(fields);
        }
        Properties props = new Properties();
        props.setProperty("user", "wattdb");
        try (Connection lit = DriverManager.getConnection(
                     "jdbc:postgresql://127.0.0.1:" + literalPort + "/wattdb", props);
             Connection bound = DriverManager.getConnection(
                     "jdbc:postgresql://127.0.0.1:" + boundPort + "/wattdb", props);
             Statement litSt = lit.createStatement();
             Statement boundSt = bound.createStatement()) {
            for (String sql : setup) {
                litSt.execute(sql);
                boundSt.execute(sql);
            }
            for (List<String> call : calls) {
                String fn = call.get(0);
                List<String> a = call.subList(1, call.size());
                StringJoiner literal = new StringJoiner(", ");
                StringJoiner marks = new StringJoiner(", ");
                for (String arg : a) {
                    literal.add("'" + arg.replace("'", "''") + "'");
                    marks.add("?");
                }
                String want = outcome(() -> litSt.executeQuery("SELECT " + fn + "(" + literal + ")"));
                PreparedStatement ps = bound.prepareStatement("SELECT " + fn + "(" + marks + ")");
                for (int i = 0; i < a.size(); i++) ps.setString(i + 1, a.get(i));
                String got = outcome(ps::executeQuery);
                ps.close();
                check(got.equals(want), fn + a + " bound: " + got + " vs literal: " + want);
                ok(fn + a + " bound: " + got);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        List<String> argv = Arrays.asList(args);
        int port = Integer.parseInt(args[argv.indexOf("--port") + 1]);
        if (argv.contains("--calls")) {
            calls(args[argv.indexOf("--calls") + 1],
                    Integer.parseInt(args[argv.indexOf("--literal-port") + 1]), port);
            return;
        }
        String url = "jdbc:postgresql://127.0.0.1:" + port + "/wattdb";
        Properties props = new Properties();
        props.setProperty("user", "wattdb");
        // --sslrootcert <ca.pem>: connect over TLS, checking the server's certificate
        // and host name (the certificate is for localhost).
        boolean tls = argv.contains("--sslrootcert");
        if (tls) {
            url = "jdbc:postgresql://localhost:" + port + "/wattdb";
            props.setProperty("sslmode", "verify-full");
            props.setProperty("sslrootcert", args[argv.indexOf("--sslrootcert") + 1]);
        }
        try (Connection c = DriverManager.getConnection(url, props)) {
            if (tls) ok("TLS connection, sslmode=verify-full");
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
            check(md.getDatabaseMajorVersion() == 15, "major version " + md.getDatabaseMajorVersion());
            ok("connect, product " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());

            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS jdbc_t");
                s.execute("CREATE TABLE jdbc_t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, "
                        + "p DOUBLE PRECISION, kwh BIGINT, on_off BOOLEAN, note TEXT, PRIMARY KEY (pid, ts))");
            }
            ok("DDL");

            List<Reading> rs = readings();
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO jdbc_t (ts, pid, p, kwh, on_off, note) VALUES (?, ?, ?, ?, ?, ?)")) {
                for (Reading r : rs) {
                    ps.setObject(1, OffsetDateTime.ofInstant(Instant.ofEpochMilli(r.tsMillis()), ZoneOffset.UTC));
                    ps.setString(2, r.pid());
                    if (r.p() == null) ps.setNull(3, Types.DOUBLE); else ps.setDouble(3, r.p());
                    ps.setLong(4, r.kwh());
                    ps.setBoolean(5, r.on());
                    if (r.note() == null) ps.setNull(6, Types.VARCHAR); else ps.setString(6, r.note());
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check(counts.length == rs.size(), "batch counts " + counts.length);
                check(Arrays.stream(counts).allMatch(n -> n == 1), "batch counts " + Arrays.toString(counts));
            }
            ok("prepared INSERT batch of " + rs.size());

            // Every row back through ResultSet getters.
            rs.sort(Comparator.comparing(Reading::pid).thenComparingLong(Reading::tsMillis));
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT ts, pid, p, kwh, on_off, note FROM jdbc_t WHERE pid LIKE ? ORDER BY pid, ts")) {
                ps.setString(1, "jdbc-%");
                try (ResultSet r = ps.executeQuery()) {
                    ResultSetMetaData rmd = r.getMetaData();
                    check(rmd.getColumnCount() == 6, "columns");
                    check(rmd.getColumnType(1) == Types.TIMESTAMP, "ts type " + rmd.getColumnTypeName(1));
                    check(rmd.getColumnType(3) == Types.DOUBLE, "p type " + rmd.getColumnTypeName(3));
                    check(rmd.getColumnType(4) == Types.BIGINT, "kwh type " + rmd.getColumnTypeName(4));
                    check(rmd.getColumnType(5) == Types.BIT || rmd.getColumnType(5) == Types.BOOLEAN,
                            "on_off type " + rmd.getColumnTypeName(5));
                    int i = 0;
                    while (r.next()) {
                        Reading w = rs.get(i);
                        OffsetDateTime ts = r.getObject(1, OffsetDateTime.class);
                        check(ts.toInstant().toEpochMilli() == w.tsMillis(), "ts of row " + i + ": " + ts);
                        check(r.getTimestamp(1).getTime() == w.tsMillis(), "getTimestamp of row " + i);
                        check(r.getString(2).equals(w.pid()), "pid of row " + i);
                        double p = r.getDouble(3);
                        if (w.p() == null) check(r.wasNull(), "p null in row " + i);
                        else check(p == w.p(), "p of row " + i + ": " + p + " vs " + w.p());
                        check(r.getLong(4) == w.kwh(), "kwh of row " + i);
                        check(r.getBoolean(5) == w.on(), "on_off of row " + i);
                        check(Objects.equals(r.getString(6), w.note()), "note of row " + i);
                        i++;
                    }
                    check(i == rs.size(), "rows read " + i);
                }
            }
            ok("ResultSet getters over every row");

            // wattdb's functions as PreparedStatements: the same answer as with literals.
            String literal;
            try (Statement st = c.createStatement();
                 ResultSet r = st.executeQuery("SELECT set_retention('jdbc_t', '4 months')")) {
                check(r.next(), "literal call answers");
                literal = r.getString(1);
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT set_retention(?, ?)")) {
                for (int round = 0; round < 6; round++) { // pgjdbc prepares server-side from the 5th
                    ps.setString(1, "jdbc_t");
                    ps.setString(2, "4 months");
                    try (ResultSet r = ps.executeQuery()) {
                        check(r.next(), "bound call answers");
                        check(r.getString(1).equals(literal), "bound call: " + r.getString(1) + " vs " + literal);
                        check(r.getMetaData().getColumnName(1).equals("set_retention"),
                                "column " + r.getMetaData().getColumnName(1));
                    }
                }
            }
            ok("admin functions as PreparedStatements");

            // An aggregate with a timestamp parameter, checked against the same sum here.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT sum(p), count(*) FROM jdbc_t WHERE pid = ? AND ts >= ?")) {
                ps.setString(1, "jdbc-2");
                ps.setTimestamp(2, new Timestamp(T0 + 10 * 60_000L));
                try (ResultSet r = ps.executeQuery()) {
                    check(r.next(), "one row");
                    double want = 0;
                    long n = 0;
                    for (Reading w : rs)
                        if (w.pid().equals("jdbc-2") && w.tsMillis() >= T0 + 10 * 60_000L) {
                            n++;
                            if (w.p() != null) want += w.p();
                        }
                    check(Math.abs(r.getDouble(1) - want) < 1e-9, "sum " + r.getDouble(1) + " vs " + want);
                    check(r.getLong(2) == n, "count " + r.getLong(2) + " vs " + n);
                }
            }
            ok("aggregate with a timestamp parameter");

            // DatabaseMetaData as JDBC tools browse it.
            Set<String> tables = new HashSet<>();
            try (ResultSet r = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) tables.add(r.getString("TABLE_NAME"));
            }
            check(tables.contains("jdbc_t"), "getTables: " + tables);
            ok("getTables lists " + tables.size() + " tables");

            List<String> cols = new ArrayList<>();
            Map<String, Integer> types = new HashMap<>();
            try (ResultSet r = md.getColumns(null, "public", "jdbc_t", "%")) {
                while (r.next()) {
                    cols.add(r.getString("COLUMN_NAME"));
                    types.put(r.getString("COLUMN_NAME"), r.getInt("DATA_TYPE"));
                }
            }
            check(cols.equals(List.of("ts", "pid", "p", "kwh", "on_off", "note")), "getColumns: " + cols);
            check(types.get("p") == Types.DOUBLE && types.get("kwh") == Types.BIGINT
                    && types.get("ts") == Types.TIMESTAMP, "column types " + types);
            ok("getColumns");

            // The key (tags, then ts) as the primary key and its unique index.
            List<String> pk = new ArrayList<>();
            String pkName = null;
            try (ResultSet r = md.getPrimaryKeys(null, "public", "jdbc_t")) {
                while (r.next()) {
                    pk.add(r.getInt("KEY_SEQ") + ":" + r.getString("COLUMN_NAME"));
                    pkName = r.getString("PK_NAME");
                }
            }
            check(pk.equals(List.of("1:pid", "2:ts")), "getPrimaryKeys: " + pk);
            check("jdbc_t_pkey".equals(pkName), "primary key name " + pkName);
            ok("getPrimaryKeys");
            List<String> index = new ArrayList<>();
            try (ResultSet r = md.getIndexInfo(null, "public", "jdbc_t", true, false)) {
                while (r.next()) {
                    check(!r.getBoolean("NON_UNIQUE"), "the key index is unique");
                    index.add(r.getString("INDEX_NAME") + " " + r.getShort("ORDINAL_POSITION")
                            + ":" + r.getString("COLUMN_NAME"));
                }
            }
            check(index.equals(List.of("jdbc_t_pkey 1:pid", "jdbc_t_pkey 2:ts")), "getIndexInfo: " + index);
            ok("getIndexInfo");

            int schemas = 0;
            try (ResultSet r = md.getSchemas()) {
                while (r.next()) schemas++;
            }
            check(schemas > 0, "getSchemas");
            int typeInfo = 0;
            try (ResultSet r = md.getTypeInfo()) {
                while (r.next()) typeInfo++;
            }
            check(typeInfo > 0, "getTypeInfo");
            ok("getSchemas, getTypeInfo");

            // Errors carry the SQLSTATE; the connection stays usable.
            try (Statement s = c.createStatement()) {
                try {
                    s.executeQuery("SELECT * FROM no_such_table");
                    check(false, "no error");
                } catch (SQLException e) {
                    check("42P01".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState());
                }
                try (ResultSet r = s.executeQuery("SELECT count(*) FROM jdbc_t")) {
                    check(r.next() && r.getLong(1) == rs.size(), "count after error");
                }
            }
            ok("errors with SQLSTATE, connection still usable");
        }
    }
}
