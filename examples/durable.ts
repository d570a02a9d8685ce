/**
 * Durable mode: a producer appends rows to a Redis Stream, two workers (here in one program, in
 * production each in its own process) read it as one consumer group and write the rows into
 * PostgreSQL. A row the producer acknowledged survives a crash of the producer, of a worker (the
 * other claims its entries after `minIdle`), and of Redis when AOF is on. Creates its table, prints
 * what each worker wrote, and drops nothing: run it twice and the keyed table still has each row once.
 *
 *   npx tsx examples/durable.ts   (PostgreSQL at BATCHFLOW_PG_URL, default the local test db;
 *                                  Redis at BATCHFLOW_REDIS_URL, default redis://127.0.0.1:6379)
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer, Redacted, Schema } from "effect"
import { BatchFlow, Conflict, Table } from "effect-batchflow"
import * as Durable from "effect-batchflow/Durable"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"

// Keyed, with Conflict.ignore: delivery is at least once, and a row written twice is then harmless.
const Events = Table.make("example_durable_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  key: ["id"],
  conflict: Conflict.ignore
})

const prefix = "example:durable"

const PgLive = PgClient.layerConfig({
  url: Config.redacted("BATCHFLOW_PG_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/test"))
  )
})
const RedisLive = Redis.layerClientConfig()

// The producer's flow: `submit` batches rows as usual; each flushed batch becomes one stream entry.
const ProducerLive = Durable.producer({ prefix, flushSize: 500, maxLength: 10_000 })

// The workers' flow writes to PostgreSQL. Declared as its own service so that it does not clash
// with the producer's `BatchFlow` in this one program.
class Sink extends BatchFlow.Tag("example/DurableSink")<Sink>() {}
const SinkLive = Sink.layer({ executors: [Postgres.executor()], flushSize: 2000 })

const worker = (consumer: string) =>
  Durable.makeWorker({ targets: [Events], prefix, consumer, flow: Sink, minIdle: "5 seconds" })

const count = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM example_durable_events`
).pipe(Effect.map((rows) => rows[0]?.n ?? 0))

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS example_durable_events (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, amount INT NOT NULL)`
  const producer = yield* BatchFlow.BatchFlow
  const rows = Array.from({ length: 10_000 }, (_, i) => ({
    id: i,
    kind: i % 3 === 0 ? "buy" : "view",
    amount: i % 10
  }))
  yield* producer.submitAll(Events, rows)
  yield* producer.flush // every row appended: Redis has acknowledged it, the database may not have it yet
  yield* Effect.log(
    `appended ${(yield* producer.stats).committed} rows to ${Durable.streamKey(Events, prefix)}`
  )

  // Two workers in one group: each takes entries the other has not. Closing their scope finishes
  // and acknowledges what they hold; then the sink flow closes.
  yield* Effect.scoped(
    Effect.gen(function* () {
      const one = yield* worker("worker-1")
      const two = yield* worker("worker-2")
      // Acknowledged entries are deleted: an empty stream means every row is in the table.
      const { redis } = yield* Redis.RedisClient
      while ((yield* Effect.promise(() => redis.xlen(Durable.streamKey(Events, prefix)))) > 0) {
        yield* Effect.sleep("50 millis")
      }
      for (const w of [one, two]) {
        const stats = yield* w.stats
        yield* Effect.log(`${w.consumer}: ${stats.acked} entries, ${stats.rowsCommitted} rows written`)
      }
    })
  ).pipe(Effect.provide(SinkLive))
  yield* Effect.log(`${yield* count} rows in example_durable_events, each once`)
})

Effect.runPromise(program.pipe(Effect.provide(ProducerLive), Effect.provide(Layer.merge(PgLive, RedisLive))))
