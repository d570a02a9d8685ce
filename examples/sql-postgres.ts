/**
 * PostgreSQL: upsert users through a BatchFlow. The client layer is yours (@effect/sql-pg); the flow
 * batches the rows, merges same-id rows of a batch and writes each batch with one
 * `INSERT … ON CONFLICT ("id") DO UPDATE` statement.
 *
 *   npx tsx examples/sql-postgres.ts   (PostgreSQL at BATCHFLOW_PG_URL, default the local test db)
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Redacted, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Table from "effect-batchflow/Table"

const Users = Table.make("example_users", {
  columns: Schema.Struct({ id: Schema.Number, name: Schema.String, email: Schema.String }),
  conflict: Conflict.update({ target: ["id"], set: ["name", "email"] })
})

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  for (let id = 1; id <= 1000; id++) {
    yield* flow.submit(Users, { id, name: `user ${id}`, email: `user${id}@example.com` }) // enqueue only
  }
  yield* flow.write(Users, { id: 1, name: "alice", email: "alice@example.com" }) // waits for the commit
})

const ClientLive = PgClient.layerConfig({
  url: Config.redacted("BATCHFLOW_PG_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/test"))
  )
})

const createTable = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE TABLE IF NOT EXISTS example_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)`
)

const FlowLive = Postgres.layer({ flushSize: 500, flushInterval: "100 millis", concurrency: 4 })

// The flow's scope closes when `program` ends: the last rows are flushed before it returns.
const main = createTable.pipe(Effect.zipRight(Effect.provide(program, FlowLive)), Effect.provide(ClientLive))

Effect.runPromise(main).then(() => console.log("written"), console.error)
