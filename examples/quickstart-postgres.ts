/**
 * The README's PostgreSQL quickstart: the SQLite quickstart's program with the PostgreSQL client, flow
 * layer and DDL. Run by scripts/consumer-check.sh against the local test database.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Table from "effect-batchflow/Table"

const Events = Table.make("quickstart_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore, // ON CONFLICT ("id") DO NOTHING
  key: ["id"]
})

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  for (let id = 1; id <= 10_000; id++) yield* flow.submit(Events, { id, kind: "click", amount: id % 7 }) // enqueue only
  yield* flow.write(Events, { id: 10_001, kind: "view", amount: 0 }) // resolves when committed
})

const createTable = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE TABLE IF NOT EXISTS quickstart_events (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL)`
)

const main = createTable.pipe(
  Effect.zipRight(
    Effect.provide(program, Postgres.layer({ flushSize: 500, flushInterval: "100 millis", concurrency: 4 }))
  ),
  Effect.provide(
    PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test"), maxConnections: 4 })
  )
)

Effect.runPromise(main).then(() => console.log("written"))
