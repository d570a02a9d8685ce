/**
 * W1 for the SQL backends (see ../shared/design/BENCH.md): N rows into `bench_events`, 4 producer
 * fibers taking ids from one shared counter (so rows arrive in id order, as the baseline writes them:
 * with a range of ids per producer, each batch inserts at 4 places of the primary key, which on
 * MariaDB doubled the server's CPU per row), with per-row `submit`, `Conflict.ignore`, buffer 10,000, flushSize 500, flushInterval 50 ms,
 * concurrency 4, retry 3 attempts (20 ms base, 500 ms max), timeout 5 s. The table is dropped and
 * recreated before every run, outside the clock; the clock runs from the first submit to the flow's
 * scope closed. Then COUNT(*) = N and a few rows are checked.
 *
 * The baseline in the same run is the raw driver writing the same rows in batches of 500 with 4 in
 * flight, in the best form with the same semantics: PG `unnest` arrays + ON CONFLICT DO NOTHING
 * (and, for reference, the `json_populate_recordset` form BatchFlow uses), mysql2 `query()` multi-row
 * INSERT IGNORE, better-sqlite3 multi-row INSERT OR IGNORE (one statement per batch). A diagnostic
 * variant feeds the same 500-row batches straight to the backend's executor (no engine), to separate
 * the executor's cost from the engine's. Variants are interleaved in each run. Work happens in PG schema `bench_w1`, MariaDB database `bench_w1` and a
 * temp SQLite file (WAL, synchronous=NORMAL for both the raw and the BatchFlow connection).
 *
 *   npx tsx bench/w1-sql.ts [--backend all|pg|mysql|sqlite] [--rows 200000] [--runs 3] [--json out.json]
 */

import { mkdtempSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Context, Effect, Exit, Layer, Redacted, Schema, Scope } from "effect"
import type * as BatchExecutor from "effect-batchflow/BatchExecutor"
import * as BatchFlow from "effect-batchflow/BatchFlow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Postgres from "effect-batchflow/Postgres"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"
import * as mysql2 from "mysql2/promise"
import pg from "pg"
import { type BenchRow, cpuMark, cpuPerRow, parseArgs, report, type Sample, w1Config } from "./util.js"

/** The little of better-sqlite3 the baseline uses (the package ships no types; @types is not a dependency). */
interface RawStatement {
  readonly run: (params: ReadonlyArray<unknown>) => unknown
  readonly get: () => unknown
}
interface RawDatabase {
  readonly pragma: (source: string) => unknown
  readonly exec: (source: string) => unknown
  readonly prepare: (source: string) => RawStatement
  readonly close: () => unknown
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (filename: string) => RawDatabase

const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const mysqlUrl = process.env.BATCHFLOW_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"
const PRODUCERS = 4
const BATCH = 500
const IN_FLIGHT = 4
/** 2024-01-01T00:00:00Z, in a form every backend's TIMESTAMP takes (MariaDB rejects the trailing Z). */
let createdAt = "2024-01-01T00:00:00Z"

const makeRow = (id: number): BenchRow => ({
  id,
  user_id: id % 1000,
  name: `user-${id}`,
  amount: id * 0.5,
  created_at: createdAt
})

const columns = Schema.Struct({
  id: Schema.Number,
  user_id: Schema.Number,
  name: Schema.String,
  amount: Schema.Number,
  created_at: Schema.String
})

type Backend = "pg" | "mysql" | "sqlite"

interface Setup {
  readonly table: string
  readonly ddl: string
  readonly client: Layer.Layer<SqlClient.SqlClient, unknown>
  readonly flow: Layer.Layer<BatchFlow.BatchFlow, unknown, SqlClient.SqlClient>
  readonly executor: Effect.Effect<BatchExecutor.BatchExecutor, unknown, SqlClient.SqlClient>
  readonly raw: Record<string, (rows: number) => Promise<number>>
  readonly prepare: Effect.Effect<void, unknown, SqlClient.SqlClient>
  readonly close: () => Promise<void>
}

const ddlFor = (table: string, double: string) =>
  `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, name VARCHAR(64) NOT NULL, amount ${double} NOT NULL, created_at TIMESTAMP NOT NULL)`

/** Runs `write` over batches of 500 built on the fly, with `IN_FLIGHT` batches at once. */
const rawBatches = async (rows: number, write: (batch: ReadonlyArray<BenchRow>) => Promise<unknown>) => {
  let next = 1
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next <= rows) {
        const first = next
        next += BATCH
        const batch: Array<BenchRow> = []
        for (let id = first; id < Math.min(first + BATCH, rows + 1); id++) batch.push(makeRow(id))
        await write(batch)
      }
    })
  )
  return rows
}

const pgSetup = (): Setup => {
  const table = "bench_w1.bench_events"
  const pool = new pg.Pool({ connectionString: pgUrl, max: IN_FLIGHT })
  const cols = `"id", "user_id", "name", "amount", "created_at"`
  const unnest = `INSERT INTO "bench_w1"."bench_events" (${cols}) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::varchar[], $4::float8[], $5::timestamp[]) ON CONFLICT ("id") DO NOTHING`
  const json = `INSERT INTO "bench_w1"."bench_events" (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::"bench_w1"."bench_events", $1::json) ON CONFLICT ("id") DO NOTHING`
  return {
    table,
    ddl: ddlFor(table, "DOUBLE PRECISION"),
    client: PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: w1Config.concurrency }),
    flow: Postgres.layer(w1Config),
    executor: Postgres.makeExecutor(),
    prepare: Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("CREATE SCHEMA IF NOT EXISTS bench_w1")),
    raw: {
      "raw pg unnest": (rows) =>
        rawBatches(rows, (batch) => {
          const arrays: [Array<number>, Array<number>, Array<string>, Array<number>, Array<string>] = [
            [],
            [],
            [],
            [],
            []
          ]
          for (const r of batch) {
            arrays[0].push(r.id)
            arrays[1].push(r.user_id)
            arrays[2].push(r.name)
            arrays[3].push(r.amount)
            arrays[4].push(r.created_at)
          }
          return pool.query(unnest, arrays)
        }),
      "raw pg json": (rows) => rawBatches(rows, (batch) => pool.query(json, [JSON.stringify(batch)]))
    },
    close: () => pool.end()
  }
}

const mysqlSetup = (): Setup => {
  const table = "bench_w1.bench_events"
  const pool = mysql2.createPool({ uri: mysqlUrl, connectionLimit: IN_FLIGHT })
  const tuple = "(?, ?, ?, ?, ?)"
  const texts = new Map<number, string>()
  const text = (n: number) => {
    let sql = texts.get(n)
    if (sql === undefined) {
      sql = `INSERT IGNORE INTO \`bench_w1\`.\`bench_events\` (\`id\`, \`user_id\`, \`name\`, \`amount\`, \`created_at\`) VALUES ${Array.from({ length: n }, () => tuple).join(", ")}`
      texts.set(n, sql)
    }
    return sql
  }
  return {
    table,
    ddl: ddlFor(table, "DOUBLE"),
    client: MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: w1Config.concurrency }),
    flow: Mysql.layer(w1Config),
    executor: Mysql.makeExecutor(),
    prepare: Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql.unsafe("CREATE DATABASE IF NOT EXISTS bench_w1")
    ),
    raw: {
      "raw mysql2 query()": (rows) =>
        rawBatches(rows, (batch) => {
          const params: Array<unknown> = []
          for (const r of batch) params.push(r.id, r.user_id, r.name, r.amount, r.created_at)
          return pool.query(text(batch.length), params)
        })
    },
    close: () => pool.end()
  }
}

const sqliteSetup = (): Setup => {
  const dir = mkdtempSync(join(tmpdir(), "batchflow-w1-"))
  const flowFile = join(dir, "flow.sqlite")
  const rawFile = join(dir, "raw.sqlite")
  const table = "bench_events"
  const ddl = ddlFor(table, "REAL")
  const db = new Database(rawFile)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  const statements = new Map<number, RawStatement>()
  const statement = (n: number) => {
    let st = statements.get(n)
    if (st === undefined) {
      st = db.prepare(
        `INSERT OR IGNORE INTO "bench_events" ("id", "user_id", "name", "amount", "created_at") VALUES ${Array.from({ length: n }, () => "(?, ?, ?, ?, ?)").join(", ")}`
      )
      statements.set(n, st)
    }
    return st
  }
  return {
    table,
    ddl,
    client: SqliteClient.layer({ filename: flowFile }),
    flow: Sqlite.layer(w1Config),
    executor: Sqlite.makeExecutor(),
    prepare: Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("PRAGMA synchronous = NORMAL")),
    raw: {
      "raw better-sqlite3 multi-row": async (rows) => {
        db.exec(`DROP TABLE IF EXISTS ${table}`)
        db.exec(ddl)
        statements.clear()
        const start = performance.now()
        await rawBatches(rows, async (batch) => {
          const params: Array<unknown> = []
          for (const r of batch) params.push(r.id, r.user_id, r.name, r.amount, r.created_at)
          statement(batch.length).run(params)
        })
        const millis = performance.now() - start
        const counted = (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n
        if (counted !== rows) throw new Error(`raw sqlite integrity: ${counted} rows`)
        return millis
      }
    },
    close: async () => {
      db.close()
    }
  }
}

/** Verifies COUNT(*) and spot-checks three rows. */
const verify = (table: string, rows: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const counted = Number(
      (yield* sql.unsafe<{ readonly n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n
    )
    if (counted !== rows)
      return yield* Effect.die(new Error(`integrity: ${counted} rows in ${table}, expected ${rows}`))
    for (const id of [1, Math.floor(rows / 2), rows]) {
      const found = (yield* sql.unsafe<Record<string, unknown>>(
        `SELECT user_id, name, amount FROM ${table} WHERE id = ${id}`
      ))[0]
      const expected = makeRow(id)
      if (
        found === undefined ||
        Number(found.user_id) !== expected.user_id ||
        found.name !== expected.name ||
        Number(found.amount) !== expected.amount
      ) {
        return yield* Effect.die(new Error(`spot check failed for id ${id}: ${JSON.stringify(found)}`))
      }
    }
  })

const runFlowOnce = async (
  setup: Setup,
  Events: Table.Table<BenchRow>,
  clientContext: Context.Context<SqlClient.SqlClient>,
  rows: number
): Promise<number> => {
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(
    Layer.buildWithScope(setup.flow, scope).pipe(Effect.provide(clientContext))
  )
  const flow = Context.get(context, BatchFlow.BatchFlow)
  // One counter shared by the producers: rows reach the flow in id order, as the baseline writes them.
  let next = 1
  const producer = Effect.gen(function* () {
    while (next <= rows) yield* flow.submit(Events, makeRow(next++))
  })
  const start = performance.now()
  await Effect.runPromise(
    Effect.all(
      Array.from({ length: PRODUCERS }, () => producer),
      { concurrency: "unbounded", discard: true }
    )
  )
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const millis = performance.now() - start
  const stats = await Effect.runPromise(flow.stats)
  if (stats.failed > 0) throw new Error(`${stats.failed} rows failed`)
  return millis
}

const runBackend = async (backend: Backend, rows: number, runs: number): Promise<ReadonlyArray<Sample>> => {
  createdAt = backend === "mysql" ? "2024-01-01 00:00:00" : "2024-01-01T00:00:00Z"
  const setup = backend === "pg" ? pgSetup() : backend === "mysql" ? mysqlSetup() : sqliteSetup()
  const Events = Table.make<BenchRow, BenchRow>(setup.table, {
    columns,
    conflict: Conflict.ignore,
    key: ["id"]
  })
  const clientScope = Effect.runSync(Scope.make())
  const clientContext = await Effect.runPromise(Layer.buildWithScope(setup.client, clientScope))
  const withClient = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) =>
    Effect.runPromise(Effect.provide(effect, clientContext))
  await withClient(setup.prepare)
  const executor = await withClient(setup.executor)
  const recreate = Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(sql.unsafe(`DROP TABLE IF EXISTS ${setup.table}`), sql.unsafe(setup.ddl))
  )
  const checkpoint =
    backend === "pg" ? Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("CHECKPOINT")) : Effect.void
  const variants: Record<string, (rows: number) => Promise<number>> = {
    ...Object.fromEntries(
      Object.entries(setup.raw).map(([name, run]) => [
        name,
        async (n: number) => {
          if (backend === "sqlite") return run(n)
          await withClient(Effect.zipRight(recreate, checkpoint))
          const start = performance.now()
          await run(n)
          const millis = performance.now() - start
          await withClient(verify(setup.table, n))
          return millis
        }
      ])
    ),
    // Diagnostic: the backend's executor alone, fed pre-batched rows like the raw baseline (no engine).
    "executor only (no engine)": async (n) => {
      await withClient(Effect.zipRight(recreate, checkpoint))
      const start = performance.now()
      await rawBatches(n, (batch) => Effect.runPromise(executor.execute(Events, batch)))
      const millis = performance.now() - start
      await withClient(verify(setup.table, n))
      return millis
    },
    [`BatchFlow ${backend} submit`]: async (n) => {
      await withClient(Effect.zipRight(recreate, checkpoint))
      const millis = await runFlowOnce(setup, Events, clientContext, n)
      await withClient(verify(setup.table, n))
      return millis
    }
  }
  // Warm-up: a small pass of each variant.
  for (const run of Object.values(variants)) await run(20_000)
  const samples: Array<Sample> = []
  const names = Object.keys(variants)
  for (let r = 0; r < runs; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse()
    for (const name of order) {
      globalThis.gc?.()
      // Each variant returns the milliseconds of its clock (setup and checks are outside it). CPU is
      // counted around the whole variant, so it includes the small recreate and verify steps.
      const mark = cpuMark()
      const millis = await variants[name]!(rows)
      samples.push({
        variant: name,
        run: r,
        rows,
        millis,
        rowsPerSecond: rows / (millis / 1000),
        peakRssMiB: process.resourceUsage().maxRSS / 1024,
        ...cpuPerRow(mark, rows)
      })
    }
  }
  await Effect.runPromise(Scope.close(clientScope, Exit.void))
  await setup.close()
  return samples
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2), { backend: "all", rows: 200_000, runs: 3 })
  const backends: ReadonlyArray<Backend> =
    args.backend === "all" ? ["pg", "mysql", "sqlite"] : [args.backend as Backend]
  for (const backend of backends) {
    const samples = await runBackend(backend, args.rows, args.runs)
    const baseline =
      backend === "pg"
        ? "raw pg unnest"
        : backend === "mysql"
          ? "raw mysql2 query()"
          : "raw better-sqlite3 multi-row"
    report(
      `W1 ${backend}`,
      samples,
      baseline,
      args.json === undefined ? undefined : args.json.replace(/(\.json)?$/, `-${backend}.json`)
    )
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
