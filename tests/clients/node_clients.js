// node-postgres (`pg` from npm) against a running wattdb: writes known rows with
// parameterised and prepared statements, reads them back in text (node-postgres' default)
// and checks every value against the rows written; plus a pool, array row mode, NULLs,
// type OIDs of the result fields and an error's SQLSTATE. Prints "ok node-postgres: …"
// per check; exits non-zero on the first failure.
//
//   node tests/clients/node_clients.js --port 5433   (NODE_PATH must find `pg`)

'use strict';

const assert = require('node:assert/strict');
const { Client, Pool } = require('pg');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
const config = { host: '127.0.0.1', port, user: 'wattdb', database: 'wattdb' };

// 2026-03-01 00:00:00 UTC and one reading per minute for three meters.
const T0 = Date.UTC(2026, 2, 1);
const READINGS = [];
for (let m = 0; m < 3; m++) {
  for (let i = 0; i < 20; i++) {
    READINGS.push({
      ts: new Date(T0 + i * 60000),
      pid: `node-${m}`,
      p: i % 7 === 3 ? null : 100 * m + i * 0.5,
      kwh: 1000 * m + i,
      on: i % 2 === 0,
      note: i % 5 === 0 ? `reset ${i} — 设备离线` : null,
    });
  }
}

function ok(what) {
  console.log(`ok node-postgres: ${what}`);
}

async function main() {
  const c = new Client(config);
  await c.connect();

  await c.query('DROP TABLE IF EXISTS node_t');
  await c.query(
    'CREATE TABLE node_t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, ' +
      'kwh BIGINT, "on" BOOLEAN, note TEXT, PRIMARY KEY (pid, ts))'
  );
  ok('connect and DDL');

  // Parameterised INSERTs: unnamed statements, then one named (prepared once, reused).
  const insert = 'INSERT INTO node_t (ts, pid, p, kwh, "on", note) VALUES ($1, $2, $3, $4, $5, $6)';
  for (const r of READINGS.slice(0, 20)) {
    const res = await c.query(insert, [r.ts, r.pid, r.p, r.kwh, r.on, r.note]);
    assert.equal(res.rowCount, 1);
    assert.equal(res.command, 'INSERT');
  }
  for (const r of READINGS.slice(20)) {
    await c.query({ name: 'ins', text: insert, values: [r.ts, r.pid, r.p, r.kwh, r.on, r.note] });
  }
  ok('parameterised and named prepared INSERT');

  // Every row back, compared value by value.
  const res = await c.query('SELECT ts, pid, p, kwh, "on", note FROM node_t ORDER BY pid, ts');
  assert.equal(res.rows.length, READINGS.length);
  const want = [...READINGS].sort((a, b) => (a.pid === b.pid ? a.ts - b.ts : a.pid < b.pid ? -1 : 1));
  res.rows.forEach((row, i) => {
    const r = want[i];
    assert.equal(row.ts.getTime(), r.ts.getTime(), `ts of row ${i}`);
    assert.equal(row.pid, r.pid);
    assert.equal(row.p, r.p);
    // int8 arrives as a string in node-postgres unless a parser is set.
    assert.equal(row.kwh, String(r.kwh));
    assert.equal(row.on, r.on);
    assert.equal(row.note, r.note);
  });
  const oids = Object.fromEntries(res.fields.map((f) => [f.name, f.dataTypeID]));
  assert.deepEqual(oids, { ts: 1184, pid: 25, p: 701, kwh: 20, on: 16, note: 25 });
  ok('rows, NULLs, unicode and field types read back');

  // Aggregates with parameters, checked against the same computation here.
  const agg = await c.query(
    'SELECT pid, count(p) AS n, sum(p) AS s, max(kwh) AS k FROM node_t WHERE ts >= $1 AND ts < $2 GROUP BY pid ORDER BY pid',
    [new Date(T0 + 5 * 60000), new Date(T0 + 15 * 60000)]
  );
  const expect = {};
  for (const r of READINGS) {
    const t = r.ts.getTime();
    if (t < T0 + 5 * 60000 || t >= T0 + 15 * 60000) continue;
    const e = (expect[r.pid] ??= { n: 0, s: 0, k: -Infinity });
    if (r.p !== null) {
      e.n += 1;
      e.s += r.p;
    }
    e.k = Math.max(e.k, r.kwh);
  }
  assert.equal(agg.rows.length, Object.keys(expect).length);
  for (const row of agg.rows) {
    const e = expect[row.pid];
    assert.equal(Number(row.n), e.n, `count for ${row.pid}`);
    assert.ok(Math.abs(row.s - e.s) < 1e-9, `sum for ${row.pid}: ${row.s} vs ${e.s}`);
    assert.equal(Number(row.k), e.k);
  }
  ok('aggregates over a parameterised time range');

  // Array row mode and a typed parameter.
  const arr = await c.query({
    text: 'SELECT pid, kwh FROM node_t WHERE pid = $1::text ORDER BY ts LIMIT 2',
    values: ['node-1'],
    rowMode: 'array',
  });
  assert.deepEqual(arr.rows, [
    ['node-1', '1000'],
    ['node-1', '1001'],
  ]);
  ok('array row mode');

  // Errors carry PostgreSQL's SQLSTATE and leave the connection usable.
  await assert.rejects(c.query('SELECT * FROM no_such_table'), (e) => e.code === '42P01');
  await assert.rejects(c.query('SELEC 1'), (e) => e.code === '42601');
  // Integer literals are bigint in wattdb (int4 in PostgreSQL): node-postgres gives a string.
  const one = await c.query('SELECT 1 AS one');
  assert.equal(Number(one.rows[0].one), 1);
  ok('errors with SQLSTATE, connection still usable');

  // wattdb's functions with bound parameters answer as with literals.
  const lit = await c.query("SELECT set_retention('node_t', '4 months')");
  const bound = await c.query('SELECT set_retention($1, $2)', ['node_t', '4 months']);
  assert.deepEqual(bound.rows, lit.rows);
  const named = await c.query({ name: 'ret', text: 'SELECT set_retention($1, $2)', values: ['node_t', 'none'] });
  const again = await c.query({ name: 'ret', text: 'SELECT set_retention($1, $2)', values: ['node_t', 'none'] });
  assert.deepEqual(named.rows, again.rows);
  assert.deepEqual(again.rows, (await c.query("SELECT set_retention('node_t', 'none')")).rows);
  ok('admin functions with bound parameters');

  await c.end();

  // A pool of 4 writing concurrently, then a count.
  const pool = new Pool({ ...config, max: 4 });
  await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      pool.query('INSERT INTO node_t (ts, pid, p) VALUES ($1, $2, $3)', [
        new Date(T0 + i * 1000),
        'node-pool',
        i,
      ])
    )
  );
  const cnt = await pool.query("SELECT count(*) AS n, sum(p) AS s FROM node_t WHERE pid = 'node-pool'");
  assert.equal(Number(cnt.rows[0].n), 40);
  assert.equal(Number(cnt.rows[0].s), (39 * 40) / 2);
  await pool.end();
  ok('pool of 4 concurrent writers');
}

// --calls wattdb_calls.tsv --literal-port N: every wattdb function, with its arguments
// written as literals on the server at N and bound as parameters ($1, …) on the other,
// set up the same way; the answers (or SQLSTATEs) must be the same.
function loadCalls(path) {
  const setup = [];
  const calls = [];
  for (const line of require('node:fs').readFileSync(path, 'utf8').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [first, ...rest] = line.split('\t');
    if (first === '@setup') setup.push(...rest);
    else calls.push([first, rest]);
  }
  return { setup, calls };
}

async function outcome(run) {
  try {
    const res = await run();
    const value = Object.values(res.rows[0] ?? {})[0];
    return value == null ? '<null>' : String(value).split(' until ')[0];
  } catch (e) {
    return `ERROR ${e.code ?? e.message}`;
  }
}

async function calls(path, literalPort) {
  const { setup, calls } = loadCalls(path);
  const lit = new Client({ ...config, port: literalPort });
  const bound = new Client(config);
  await lit.connect();
  await bound.connect();
  for (const statement of setup) {
    await lit.query(statement);
    await bound.query(statement);
  }
  for (const [fn, args] of calls) {
    const literal = args.map((a) => `'${a.replaceAll("'", "''")}'`).join(', ');
    const want = await outcome(() => lit.query(`SELECT ${fn}(${literal})`));
    const params = args.map((_, i) => `$${i + 1}`).join(', ');
    const got = await outcome(() => bound.query(`SELECT ${fn}(${params})`, args));
    assert.equal(got, want, `${fn}(${args.join(', ')}) bound vs literal`);
    ok(`${fn}(${args.join(', ')}) bound: ${got}`);
  }
  await lit.end();
  await bound.end();
}

const callsAt = process.argv.indexOf('--calls');
(callsAt > 0
  ? calls(process.argv[callsAt + 1], Number(process.argv[process.argv.indexOf('--literal-port') + 1]))
  : main()
).catch((e) => {
  console.error(e);
  process.exit(1);
});
