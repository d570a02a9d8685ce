/**
 * Writing to Redis in batches: sessions with a TTL, user profiles as hashes, page-view counters.
 * The connection comes from BATCHFLOW_REDIS_URL (default redis://127.0.0.1:6379).
 *
 *   npx tsx examples/redis-writes.ts
 */
import { Effect, Layer, Schema, Stream } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"

// SET session:<key> <value> PX 1800000 — plain SETs without options would be fused into one MSET.
const Sessions = Redis.set("sessions", { prefix: "example:session:", ttl: "30 minutes" })

// HSET user:<id> name … email … — partial rows of one user in a batch are merged into one HSET.
const Profiles = Redis.hset("profiles", {
  schema: Schema.Struct({
    id: Schema.Number,
    name: Schema.optional(Schema.String),
    email: Schema.optional(Schema.String)
  }),
  key: "id",
  prefix: "example:user:",
  coalesce: "mergePresent"
})

// INCRBY views:<page> n — not idempotent: never re-sent after its answer was lost, reported instead.
// "sum" adds up the increments of one page within a batch.
const Views = Redis.incrBy("views", { prefix: "example:views:", coalesce: "sum" })

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  // Rows that could not be written, with the reason (wrongtype, unknown_outcome, …).
  yield* Effect.forkScoped(
    Stream.runForEach(flow.failures, (failure) =>
      Effect.logWarning(`${failure.rows.length} row(s) of ${failure.target} not written: ${failure.reason}`)
    )
  )
  yield* flow.submit(Sessions, { key: "abc", value: "user-1" })
  yield* flow.submit(Profiles, { id: 1, name: "alice" })
  yield* flow.submit(Profiles, { id: 1, email: "alice@example.com" })
  for (const page of ["/", "/docs", "/"]) yield* flow.submit(Views, { key: page, by: 1 })
  yield* flow.write(Sessions, { key: "def", value: "user-2" }) // resolves when written
  const executor = yield* Redis.RedisExecutor
  yield* flow.flush
  const stats = yield* executor.stats
  yield* Effect.log(`${stats.rowsIn} rows → ${stats.sent} Redis commands`)
})

const FlowLive = Redis.layer({ flushSize: 500, flushInterval: "20 millis", concurrency: 4 }).pipe(
  Layer.provide(Redis.layerClientConfig())
)

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(FlowLive))) // scope closes → final flush
