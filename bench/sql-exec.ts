/**
 * The SQL executors alone, against the raw drivers: Node CPU µs per row (`process.cpuUsage`, user +
 * system, ÷ rows) writing pre-built batches of 500 W1 rows (`Conflict.ignore` on `id`), 4 batches in
 * flight on PostgreSQL and MariaDB, one at a time on SQLite. No engine: each executor is called
 * directly (`executor.execute(table, batch)`), as `Effect.runPromise` per batch. Variants are
 * interleaved, the order reversed on odd rounds; the table is recreated before each variant's run,
 * outside the measurement. On PostgreSQL the server's CPU for the same work is read from
 * `/proc/<pid>/stat` of the bench's own connections (`application_name`).
 *
 * `--before <dir>` loads a second build of the library (a `src` directory, e.g. an older commit
 * unpacked with `git archive <commit> src | tar -x -C /tmp/x`; its packages resolve from this repository)
 * into the same process, so old and new run interleaved on the same `effect` instance (a build older
 * than the `unnest` form and the `direct` options cannot be loaded this way).
 *
 * Each build is compiled with esbuild (as users run it, without tsx's `keepNames`) and loaded from
 * node_modules/.cache. SQLite and MySQL also run the executor's `direct` path.
 *
 *   npx tsx bench/sql-exec.ts [--backend all|pg|mysql|sqlite] [--rounds 6] [--batches 100] [--before /tmp/x/src] [--only <name part>]
 */

import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as SqlClient from "@effect/sql/SqlClient"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Exit, Layer, Redacted, Schema, Scope } from "effect"
import * as mysql2 from "mysql2/promise"
import pg from "pg"
import { type BenchRow, compile, unnestLiterals } from "./util.js"

interface RawStatement {
  readonly run: (params: ReadonlyArray<unknown>) => unknown
}
interface RawDatabase {
  readonly pragma: (source: string) => unknown
  readonly exec: (source: string) => unknown
  readonly prepare: (source: string) => RawStatement
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (filename: string) => RawDatabase

/** The repository root (this file is bench/sql-exec.ts, or its compiled copy in node_modules/.cache). */
const root = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, "package.json")) || !existsSync(join(dir, "src"))) dir = dirname(dir)
  return dir
})()

const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const mysqlUrl = process.env.BATCHFLOW_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"
const APP = "bf_sql_exec"
const BATCH = 500

const args = (() => {
  const out: Record<string, string> = { backend: "all", rounds: "6", batches: "100" }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) out[argv[i]!.replace(/^--/, "")] = argv[i + 1]!
  return out
})()

type Row = BenchRow
const columns = Schema.Struct({
  id: Schema.Number,
  user_id: Schema.Number,
  name: Schema.String,
  amount: Schema.Number,
  created_at: Schema.String
})

const batchesOf = (count: number, createdAt: string): ReadonlyArray<ReadonlyArray<Row>> =>
  Array.from({ length: count }, (_, b) =>
    Array.from({ length: BATCH }, (_, i) => {
      const id = b * BATCH + i + 1
      return { id, user_id: id % 1000, name: `user-${id}`, amount: id * 0.5, created_at: createdAt }
    })
  )

/** Runs `write` over the batches with `inFlight` at once. */
const feed = async (
  batches: ReadonlyArray<ReadonlyArray<Row>>,
  inFlight: number,
  write: (batch: ReadonlyArray<Row>) => Promise<unknown>
) => {
  let next = 0
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < batches.length) await write(batches[next++]!)
    })
  )
}

interface Build {
  readonly label: string
  readonly Table: typeof import("../src/Table.js")
  readonly Conflict: typeof import("../src/Conflict.js")
  readonly Postgres: typeof import("../src/Postgres.js")
  readonly Mysql: typeof import("../src/Mysql.js")
  readonly Sqlite: typeof import("../src/Sqlite.js")
}

/**
 * Compiles a build's modules with esbuild into one file (packages external, so every build shares
 * this process' `effect`) and loads it: measured as users run it, not through tsx (whose `keepNames`
 * slows closures ~20 %), and the same whether this bench runs through tsx or compiled.
 */
const loadBuild = async (label: string, src: string): Promise<Build> => {
  const names = ["Table", "Conflict", "Postgres", "Mysql", "Sqlite"]
  const outfile = await compile(`sql-exec-${label}`, {
    stdin: {
      contents: names
        .map((name) => `export * as ${name} from ${JSON.stringify(`${src}/${name}.ts`)}`)
        .join("\n"),
      resolveDir: root,
      loader: "ts"
    }
  })
  return { label, ...(await import(pathToFileURL(outfile).href)) }
}

interface Variant {
  readonly name: string
  /** Runs the writes; the CPU around it is what is measured. */
  readonly run: () => Promise<void>
}

/** PostgreSQL backend CPU (µs) of this bench's connections. */
const pgServerCpu = async (pool: pg.Pool): Promise<number> => {
  const { rows } = await pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
    [APP]
  )
  let ticks = 0
  for (const { pid } of rows) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // a backend that ended meanwhile
    }
  }
  return ticks * 10_000
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const runBackend = async (backend: "pg" | "mysql" | "sqlite", builds: ReadonlyArray<Build>) => {
  const rounds = Number(args.rounds)
  const batches = batchesOf(
    Number(args.batches),
    backend === "mysql" ? "2024-01-01 00:00:00" : "2024-01-01T00:00:00Z"
  )
  const rows = batches.length * BATCH
  const table = backend === "sqlite" ? "bench_exec" : "bench_exec.bench_events"
  const double = backend === "pg" ? "DOUBLE PRECISION" : backend === "mysql" ? "DOUBLE" : "REAL"
  const ddl = `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, name VARCHAR(64) NOT NULL, amount ${double} NOT NULL, created_at TIMESTAMP NOT NULL)`
  const file = join(mkdtempSync(join(tmpdir(), "batchflow-exec-")), "exec.sqlite")
  const client: Layer.Layer<SqlClient.SqlClient, unknown> =
    backend === "pg"
      ? PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 4, applicationName: APP })
      : backend === "mysql"
        ? MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: 4 })
        : SqliteClient.layer({ filename: file })
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(client, scope))
  const withClient = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) =>
    Effect.runPromise(Effect.provide(effect, context))
  const sqlRun = (text: string) => withClient(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(text)))
  if (backend === "pg") await sqlRun("CREATE SCHEMA IF NOT EXISTS bench_exec")
  if (backend === "mysql") await sqlRun("CREATE DATABASE IF NOT EXISTS bench_exec")
  if (backend === "sqlite") await sqlRun("PRAGMA synchronous = NORMAL")
  const recreate = async () => {
    await sqlRun(`DROP TABLE IF EXISTS ${table}`)
    await sqlRun(ddl)
  }
  const inFlight = backend === "sqlite" ? 1 : 4
  const variants: Array<Variant> = []
  let close = async () => {}
  let pgPool: pg.Pool | undefined
  // Raw drivers.
  if (backend === "pg") {
    const pool = new pg.Pool({ connectionString: pgUrl, max: 4, application_name: APP, idleTimeoutMillis: 0 })
    pgPool = pool
    close = () => pool.end()
    const cols = `"id", "user_id", "name", "amount", "created_at"`
    const unnest = `INSERT INTO "bench_exec"."bench_events" (${cols}) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::varchar[], $4::float8[], $5::timestamp[]) ON CONFLICT ("id") DO NOTHING`
    const json = `INSERT INTO "bench_exec"."bench_events" (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::"bench_exec"."bench_events", $1::json) ON CONFLICT ("id") DO NOTHING`
    variants.push(
      {
        name: "raw pg unnest (node-postgres arrays)",
        run: () =>
          feed(batches, inFlight, (batch) =>
            pool.query(unnest, [
              batch.map((r) => r.id),
              batch.map((r) => r.user_id),
              batch.map((r) => r.name),
              batch.map((r) => r.amount),
              batch.map((r) => r.created_at)
            ])
          )
      },
      {
        name: "raw pg unnest (text literals)",
        run: () => feed(batches, inFlight, (batch) => pool.query(unnest, [...unnestLiterals(batch)]))
      },
      {
        // What the executor sends with a deadline: the literals inlined, one simple query.
        name: "raw pg one trip (SET LOCAL; unnest literals)",
        run: () =>
          feed(batches, inFlight, (batch) => {
            const literals = unnestLiterals(batch)
            const insert = unnest.replace(/\$(\d)::/g, (_, n: string) => `'${literals[Number(n) - 1]}'::`)
            return pool.query(`SET LOCAL statement_timeout = 30000; ${insert}`)
          })
      },
      {
        name: "raw pg json",
        run: () => feed(batches, inFlight, (batch) => pool.query(json, [JSON.stringify(batch)]))
      }
    )
  } else if (backend === "mysql") {
    const pool = mysql2.createPool({ uri: mysqlUrl, connectionLimit: 4 })
    close = () => pool.end()
    const text = `INSERT IGNORE INTO \`bench_exec\`.\`bench_events\` (\`id\`, \`user_id\`, \`name\`, \`amount\`, \`created_at\`) VALUES ${Array.from({ length: BATCH }, () => "(?, ?, ?, ?, ?)").join(", ")}`
    variants.push({
      name: "raw mysql2 query()",
      run: () =>
        feed(batches, inFlight, (batch) => {
          const params: Array<unknown> = []
          for (const r of batch) params.push(r.id, r.user_id, r.name, r.amount, r.created_at)
          return pool.query(text, params)
        })
    })
  } else {
    const db = new Database(file)
    db.pragma("synchronous = NORMAL")
    const text = `INSERT OR IGNORE INTO "bench_exec" ("id", "user_id", "name", "amount", "created_at") VALUES ${Array.from({ length: BATCH }, () => "(?, ?, ?, ?, ?)").join(", ")}`
    let statement: RawStatement | undefined
    variants.push({
      name: "raw better-sqlite3 (prepared once, array)",
      run: async () => {
        statement ??= db.prepare(text)
        for (const batch of batches) {
          const params: Array<unknown> = []
          for (const r of batch) params.push(r.id, r.user_id, r.name, r.amount, r.created_at)
          statement.run(params)
        }
      }
    })
  }
  // The executors of each build, per form.
  for (const build of builds) {
    const Events = build.Table.make<Row, Row>(table, {
      columns,
      conflict: build.Conflict.ignore,
      key: ["id"]
    })
    const forms: ReadonlyArray<
      readonly [string, Effect.Effect<{ readonly execute: Function }, unknown, SqlClient.SqlClient>]
    > =
      backend === "pg"
        ? [
            ["json", build.Postgres.makeExecutor({ pgForm: "json" })],
            ["unnest", build.Postgres.makeExecutor({ pgForm: "unnest" })]
          ]
        : backend === "mysql"
          ? [
              ["", build.Mysql.makeExecutor()],
              ["direct", build.Mysql.makeExecutor({ direct: true })]
            ]
          : [
              ["", build.Sqlite.makeExecutor()],
              ["direct", build.Sqlite.makeExecutor({ direct: true })]
            ]
    for (const [form, make] of forms) {
      const executor = (await withClient(make)) as {
        readonly execute: (
          t: unknown,
          rows: ReadonlyArray<unknown>,
          a?: unknown
        ) => Effect.Effect<unknown, unknown>
      }
      for (const timeout of backend === "pg" ? [false, true] : [false]) {
        // With a deadline (the engine's default timeout), PostgreSQL sends BEGIN; SET LOCAL …; INSERT; COMMIT.
        const attempt = timeout ? { number: 1, timeoutMillis: 30_000 } : undefined
        variants.push({
          name: `executor ${build.label}${form === "" ? "" : ` ${form}`}${timeout ? " +deadline" : ""}`,
          run: () =>
            feed(batches, inFlight, (batch) => Effect.runPromise(executor.execute(Events, batch, attempt)))
        })
      }
    }
  }
  // `--only <text>`: just the variants whose name contains it (e.g. to profile one with --cpu-prof).
  if (args.only !== undefined)
    variants.splice(0, variants.length, ...variants.filter((v) => v.name.includes(args.only!)))
  // Warm-up, then interleaved rounds.
  const node = new Map<string, Array<number>>()
  const server = new Map<string, Array<number>>()
  for (const variant of variants) {
    await recreate()
    await variant.run()
  }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const variant of order) {
      await recreate()
      globalThis.gc?.()
      const serverBefore = pgPool === undefined ? 0 : await pgServerCpu(pgPool)
      const before = process.cpuUsage()
      await variant.run()
      const used = process.cpuUsage(before)
      const serverAfter = pgPool === undefined ? 0 : await pgServerCpu(pgPool)
      const n = await withClient(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`)
        )
      )
      if (Number(n[0]!.n) !== rows) throw new Error(`${variant.name}: ${n[0]!.n} rows, expected ${rows}`)
      node.set(variant.name, [...(node.get(variant.name) ?? []), (used.user + used.system) / rows])
      server.set(variant.name, [...(server.get(variant.name) ?? []), (serverAfter - serverBefore) / rows])
    }
  }
  console.log(
    `\n${backend}: ${rows} rows per run, ${rounds} rounds, Node CPU µs/row median (min–max)${pgPool ? "; PG backend CPU µs/row" : ""}`
  )
  for (const variant of variants) {
    const xs = node.get(variant.name)!
    const ss = server.get(variant.name)!
    const f = (x: number) => x.toFixed(2)
    const serverText =
      pgPool === undefined ? "" : `   server ${f(median(ss))} (${f(Math.min(...ss))}–${f(Math.max(...ss))})`
    console.log(
      `  ${variant.name.padEnd(44)} ${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})${serverText}`
    )
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await close()
}

const main = async () => {
  const builds = [await loadBuild("after", join(root, "src"))]
  if (args.before !== undefined) builds.unshift(await loadBuild("before", args.before))
  const backends =
    args.backend === "all"
      ? (["sqlite", "pg", "mysql"] as const)
      : [args.backend as "pg" | "mysql" | "sqlite"]
  for (const backend of backends) await runBackend(backend, builds)
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
