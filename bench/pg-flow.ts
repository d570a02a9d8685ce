/**
 * The same PostgreSQL flow with three executors, to tell the engine's cost from the executor's: W1
 * rows, 4 producers with per-row `submit`, the bench's flow config (buffer 10,000, flushSize 500,
 * concurrency 4, timeout 5 s), a new flow per run as the CLI does. Every executor sends the same
 * statement, one simple query `SET LOCAL statement_timeout = 5000; INSERT … SELECT * FROM
 * unnest('<literals>'::bigint[], …) ON CONFLICT DO NOTHING`:
 *
 * - `pool`: built by hand and sent with `pool.query` of a plain node-postgres pool;
 * - `client`: built by hand and sent on a connection from the app's `PgClient` (`sql.reserve`, then
 *   `executeUnprepared`), the way the library's executor sends it;
 * - `postgres`: the library's executor (`Postgres.layer`).
 *
 * Variants are interleaved, the order reversed every other round; the first round is a warm-up.
 * Prints rows/s and Node CPU µs/row (user + system) as median (min–max), and checks every run's
 * row count. `--checkpoint 1` runs `CHECKPOINT` after each reset, as the bench CLI does; `--buffer`
 * sets `bufferSize`.
 *
 *   npx tsx bench/pg-flow.ts [--rounds 6] [--rows 200000] [--only pool,client,postgres]
 *     [--checkpoint 0|1] [--buffer 10000]
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { BatchExecutor, BatchFlow, Conflict, Table } from "effect-batchflow"
import * as Postgres from "effect-batchflow/Postgres"
import pg from "pg"
import { type BenchRow, parseArgs, unnestLiterals, w1Config } from "./util.js"
import { makeRow } from "./w0-workload.js"

const args = parseArgs(process.argv.slice(2), {
  rounds: 6,
  rows: 200_000,
  only: "pool,client,postgres",
  checkpoint: 0,
  buffer: 10_000
})
const url = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const table = "batchflow_pg_flow_bench"
const Row = Schema.Struct({
  id: Schema.Number,
  user_id: Schema.Number,
  name: Schema.String,
  amount: Schema.Number,
  created_at: Schema.String
})
const Events = Table.make(table, { columns: Row, conflict: Conflict.ignore, key: ["id"] })
const config = { ...w1Config, bufferSize: args.buffer }

/** The statement every executor sends. */
const statementOf = (rows: ReadonlyArray<BenchRow>): string => {
  const [ids, users, names, amounts, created] = unnestLiterals(rows)
  return (
    `SET LOCAL statement_timeout = 5000; INSERT INTO ${table} (id, user_id, name, amount, created_at) ` +
    `SELECT * FROM unnest('${ids}'::bigint[], '${users}'::bigint[], '${names}'::varchar[], ` +
    `'${amounts}'::float8[], '${created}'::timestamp[]) ON CONFLICT (id) DO NOTHING`
  )
}

const pool = new pg.Pool({ connectionString: url, max: config.concurrency })

const byPool = BatchExecutor.forTarget(Events, (rows) =>
  Effect.async<void, Error>((resume) => {
    pool.query(statementOf(rows), (error: Error | undefined) =>
      resume(error ? Effect.fail(error) : Effect.void)
    )
  })
)

const byClient = BatchExecutor.forTarget(Events, (rows) =>
  Effect.flatMap(PgClient.PgClient, (sql) =>
    Effect.scoped(
      Effect.flatMap(sql.reserve, (conn) =>
        Effect.asVoid(Effect.suspend(() => conn.executeUnprepared(statementOf(rows), [], undefined)))
      )
    )
  )
)

const layers = {
  pool: BatchFlow.layer({ ...config, executors: [byPool] }),
  client: BatchFlow.layer({ ...config, executors: [byClient] }),
  postgres: Postgres.layer(config)
}
type Variant = keyof typeof layers
const variants = args.only.split(",").filter((v): v is Variant => v in layers)

const main = Effect.gen(function* () {
  const sql = yield* PgClient.PgClient
  const client = yield* Effect.context<PgClient.PgClient>()
  const results = new Map<Variant, Array<{ rate: number; cpu: number }>>(variants.map((v) => [v, []]))
  for (let round = 0; round < args.rounds; round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      yield* sql.unsafe(`DROP TABLE IF EXISTS ${table}`)
      yield* sql.unsafe(
        `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, name VARCHAR(64) NOT NULL, amount DOUBLE PRECISION NOT NULL, created_at TIMESTAMP NOT NULL)`
      )
      if (args.checkpoint === 1) yield* sql.unsafe("CHECKPOINT")
      const flowLayer = layers[variant].pipe(Layer.provide(Layer.succeedContext(client)))
      const cpu = process.cpuUsage()
      const began = performance.now()
      yield* Effect.scoped(
        Effect.flatMap(Layer.build(flowLayer), (context) => {
          const flow = Context.get(context, BatchFlow.BatchFlow)
          let next = 1
          const producer = Effect.gen(function* () {
            while (next <= args.rows) yield* flow.submit(Events, makeRow(next++))
          })
          return Effect.all([producer, producer, producer, producer], {
            concurrency: "unbounded",
            discard: true
          })
        })
      )
      const millis = performance.now() - began
      const used = process.cpuUsage(cpu)
      const [{ n }] = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)
      if (n !== args.rows)
        return yield* Effect.die(new Error(`${variant}: ${n} rows written of ${args.rows}`))
      if (round > 0)
        results.get(variant)!.push({ rate: args.rows / millis, cpu: (used.user + used.system) / args.rows })
    }
  }
  yield* sql.unsafe(`DROP TABLE IF EXISTS ${table}`)
  const median = (xs: ReadonlyArray<number>) => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
  }
  const range = (xs: ReadonlyArray<number>, digits: number) =>
    `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`
  console.log(`PostgreSQL flow, ${args.rows} rows per run, ${args.rounds - 1} measured rounds`)
  for (const [variant, runs] of results) {
    console.log(
      `  ${variant.padEnd(9)} ${range(
        runs.map((r) => r.rate),
        0
      )} k rows/s   Node CPU ${range(
        runs.map((r) => r.cpu),
        2
      )} µs/row`
    )
  }
})

await Effect.runPromise(
  main.pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: config.concurrency })),
    Effect.ensuring(Effect.promise(() => pool.end()))
  )
)
