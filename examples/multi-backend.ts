/**
 * Several backends in one flow: events go to a PostgreSQL table, sessions to Redis, audit entries to
 * a sink of your own. Each target goes to the first executor that accepts it: `Postgres.executor()`
 * takes every `Table`, `Redis.executor()` every Redis target, the `forTarget` executor its one
 * target. The audit executor needs a service (`AuditLog`); the flow's layer then requires it, and a
 * layer provides it. Creates its table if needed, then prints what each backend holds.
 *
 *   npx tsx examples/multi-backend.ts   (PostgreSQL at BATCHFLOW_PG_URL, default the local test db;
 *                                        Redis at BATCHFLOW_REDIS_URL, default redis://127.0.0.1:6379)
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Context, Data, Effect, Layer, Redacted, Schema } from "effect"
import { BatchExecutor, BatchFlow, Target } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import * as Table from "effect-batchflow/Table"

// → PostgreSQL (a Table)
const Events = Table.make("example_multi_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, user_id: Schema.String }),
  conflict: Conflict.ignore, // ON CONFLICT ("id") DO NOTHING: running the example again adds nothing
  key: ["id"]
})

// → Redis (SET example:multi:session:<key> <value> PX 1800000)
const Sessions = Redis.set("sessions", { prefix: "example:multi:session:", ttl: "30 minutes" })

// → your own sink
const Audit = Target.make("audit", {
  schema: Schema.Struct({ actor: Schema.String, action: Schema.String })
})

// The audit sink is a service of its own (a file, an HTTP API, a queue…): here, lines in memory.
// Its first call fails, to show the typed rule below making its error retryable.
class AuditUnavailable extends Data.TaggedError("AuditUnavailable")<{ readonly message: string }> {}

class AuditLog extends Context.Tag("example/AuditLog")<
  AuditLog,
  {
    readonly append: (lines: ReadonlyArray<string>) => Effect.Effect<void, AuditUnavailable>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
  }
>() {
  static readonly layer = Layer.sync(AuditLog, () => {
    const lines: Array<string> = []
    let calls = 0
    return {
      append: (batch) =>
        Effect.suspend(() =>
          ++calls === 1
            ? Effect.fail(new AuditUnavailable({ message: "audit log not ready" }))
            : Effect.sync(() => {
                lines.push(...batch)
              })
        ),
      lines: Effect.sync(() => lines.slice())
    }
  })
}

// `rows` is ReadonlyArray<{ actor, action }>; the error type is AuditUnavailable; the service it
// uses (AuditLog) becomes a requirement of the flow's layer.
const AuditWriter = BatchExecutor.forTarget(
  Audit,
  (rows, attempt) =>
    Effect.flatMap(AuditLog, (log) =>
      log.append(rows.map((row) => `${row.actor} ${row.action} (attempt ${attempt.number})`))
    ),
  {
    rules: [
      (error) =>
        error._tag === "AuditUnavailable" ? { retryable: true, reason: "audit_unavailable" } : undefined
    ]
  }
)

const PgLive = PgClient.layerConfig({
  url: Config.redacted("BATCHFLOW_PG_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/test"))
  )
})

// One flow, three executors: a Layer<BatchFlow, …, SqlClient | RedisClient | AuditLog>, provided here.
const FlowLive = BatchFlow.layer({
  executors: [Postgres.executor(), Redis.executor(), AuditWriter],
  flushSize: 500,
  flushInterval: "50 millis"
}).pipe(Layer.provideMerge(Layer.mergeAll(PgLive, Redis.layerClientConfig(), AuditLog.layer)))

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS example_multi_events (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL)`

  const flow = yield* BatchFlow.BatchFlow
  for (let id = 1; id <= 1000; id++)
    yield* flow.submit(Events, { id, kind: "click", user_id: `user-${id % 10}` })
  yield* flow.submit(Sessions, { key: "abc", value: "user-1" })
  yield* flow.submit(Audit, { actor: "user-1", action: "login" })
  yield* flow.write(Audit, { actor: "user-1", action: "export" }) // resolves when committed
  yield* flow.flush // everything submitted before it is written (or reported) when it returns

  const [events] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM example_multi_events`
  const { redis } = yield* Redis.RedisClient
  const session = yield* Effect.promise(() => redis.get("example:multi:session:abc"))
  const ttl = yield* Effect.promise(() => redis.pttl("example:multi:session:abc"))
  const audit = yield* Effect.flatMap(AuditLog, (log) => log.lines)
  const stats = yield* flow.stats
  console.log(`PostgreSQL example_multi_events: ${events?.n} rows`)
  console.log(`Redis example:multi:session:abc = ${session} (expires in ${Math.round(ttl / 1000)} s)`)
  console.log(`audit log:\n  ${audit.join("\n  ")}`)
  console.log(`committed ${stats.committed} of ${stats.accepted} rows, retries: ${stats.retries}`)
})

Effect.runPromise(program.pipe(Effect.provide(FlowLive))).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
