/**
 * MySQL / MariaDB: an append-only event log that ignores re-sent events (`INSERT IGNORE`), and what
 * happens to rows the database rejects: they are reported, the rest of their batch is committed.
 *
 *   npx tsx examples/sql-mysql.ts   (MySQL/MariaDB at BATCHFLOW_MYSQL_URL, default the local test db)
 */
import { SqlClient } from "@effect/sql"
import { MysqlClient } from "@effect/sql-mysql2"
import { Config, Effect, Redacted, Schema, Stream } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Table from "effect-batchflow/Table"

const Events = Table.make("example_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore,
  key: ["id"]
})

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  // Failures (rows not written, with a reason such as `deadlock` or `not_null`) arrive here.
  yield* Effect.forkScoped(
    Stream.runForEach(flow.failures, (failure) =>
      Effect.logWarning(`${failure.reason}: ${failure.rows.length} row(s)`)
    )
  )
  for (let id = 1; id <= 1000; id++) yield* flow.submit(Events, { id, kind: "click", amount: id % 7 })
  for (let id = 1; id <= 10; id++) yield* flow.submit(Events, { id, kind: "click", amount: 0 }) // ignored: same ids
})

const ClientLive = MysqlClient.layerConfig({
  url: Config.redacted("BATCHFLOW_MYSQL_URL").pipe(
    Config.withDefault(Redacted.make("mysql://root@127.0.0.1:3306/test"))
  )
})

const createTable = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE TABLE IF NOT EXISTS example_events (id BIGINT PRIMARY KEY, kind VARCHAR(20) NOT NULL, amount DOUBLE NOT NULL)`
)

const main = createTable.pipe(
  Effect.zipRight(Effect.scoped(Effect.provide(program, Mysql.layer({ flushSize: 500 })))),
  Effect.provide(ClientLive)
)

Effect.runPromise(main).then(() => console.log("written"), console.error)
