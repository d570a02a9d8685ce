/**
 * Fairness between targets (issue 12): a healthy target's throughput alone, and beside a target whose
 * every write fails with a retryable error. Producers submit for `--seconds`; reported: rows/s the
 * healthy target committed, alone and beside the failing one, and the ratio.
 *
 * - default: a custom executor; each call sleeps `--call-millis` (default 2 ms) and then succeeds
 *   (healthy) or fails with a retryable error (failing);
 * - `--backend pg`: two tables on PostgreSQL (BATCHFLOW_PG_URL, default the local server); the
 *   failing one has a trigger that raises SQLSTATE 40001 (serialization failure, retryable) on
 *   every insert.
 *
 *   npx tsx bench/fairness.ts [--backend pg] [--seconds 3] [--runs 3]
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema, Stream } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowError, Table, Target } from "../src/index.js"
import * as Postgres from "../src/Postgres.js"

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const seconds = arg("seconds", 3)
const runs = arg("runs", 3)
const callMillis = arg("call-millis", 2)

const pg = process.argv.includes("pg")
const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const Row = Schema.Struct({ id: Schema.Number })
const Healthy = pg
  ? Table.make("fairness_healthy", { columns: Row })
  : Target.make("healthy", { schema: Row })
const Failing = pg
  ? Table.make("fairness_failing", { columns: Row })
  : Target.make("failing", { schema: Row })

const setupPg = async (): Promise<void> => {
  const { default: Pg } = await import("pg")
  const client = new Pg.Client({ connectionString: pgUrl })
  await client.connect()
  await client.query(`
    DROP TABLE IF EXISTS fairness_healthy; DROP TABLE IF EXISTS fairness_failing;
    CREATE UNLOGGED TABLE fairness_healthy (id BIGINT NOT NULL);
    CREATE UNLOGGED TABLE fairness_failing (id BIGINT NOT NULL);
    CREATE OR REPLACE FUNCTION fairness_refuse() RETURNS trigger AS $$
      BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '40001'; END $$ LANGUAGE plpgsql;
    CREATE TRIGGER fairness_refuse BEFORE INSERT ON fairness_failing
      FOR EACH STATEMENT EXECUTE FUNCTION fairness_refuse();`)
  await client.end()
}

const down = new BatchFlowError.ExecutorError({ message: "down", retryable: true, reason: "connection" })
const executors = [
  BatchExecutor.forTarget(Healthy, () => Effect.sleep(callMillis)),
  BatchExecutor.forTarget(Failing, () => Effect.zipRight(Effect.sleep(callMillis), Effect.fail(down)))
]

const flowOptions = {
  flushSize: 200,
  concurrency: 4,
  flushInterval: "20 millis",
  closeTimeout: "1 second"
} as const

const measure = (withFailing: boolean) =>
  Effect.gen(function* () {
    const flow = yield* BatchFlow.BatchFlow
    yield* Effect.forkScoped(Stream.runDrain(flow.failures))
    const deadline = Date.now() + seconds * 1000
    const producer = (target: Target.Target<{ readonly id: number }>) =>
      Effect.gen(function* () {
        let id = 0
        while (Date.now() < deadline) {
          yield* flow.submit(target, { id: id++ })
          if (id % 100 === 0) yield* Effect.yieldNow()
        }
      })
    const producers = [producer(Healthy), producer(Healthy)]
    if (withFailing) producers.push(producer(Failing), producer(Failing))
    const before = (yield* flow.stats).committed
    yield* Effect.all(producers, { concurrency: "unbounded", discard: true })
    return ((yield* flow.stats).committed - before) / seconds
  }).pipe(
    Effect.scoped,
    Effect.provide(
      pg
        ? Postgres.layer(flowOptions).pipe(
            Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 4 }))
          )
        : BatchFlow.layer({ ...flowOptions, executors })
    ),
    Effect.provide(Layer.empty)
  )

const main = Effect.gen(function* () {
  if (pg) yield* Effect.promise(setupPg)
  const alone: Array<number> = []
  const beside: Array<number> = []
  for (let i = 0; i < runs; i++) {
    alone.push(yield* measure(false))
    beside.push(yield* measure(true))
  }
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const ratios = alone.map((a, i) => beside[i]! / a)
  console.log(
    `${pg ? "PostgreSQL" : "custom executor"}: healthy target alone: ${Math.round(median(alone))} rows/s (${alone.map(Math.round).join(", ")}); beside a failing target: ${Math.round(median(beside))} rows/s (${beside.map(Math.round).join(", ")}); ratio ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`
  )
})

Effect.runPromise(main.pipe(Effect.provide(Layer.empty))).catch((e) => {
  console.error(e)
  process.exit(1)
})
