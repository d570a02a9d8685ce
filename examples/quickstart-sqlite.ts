/**
 * The README's SQLite quickstart: 10,001 rows into a file, no server. Run by scripts/consumer-check.sh
 * in a project that installed the packed package.
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"

// A table is a target: its columns are checked at submit, its key orders and dedupes rows.
const Events = Table.make("quickstart_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore, // INSERT OR IGNORE: re-sent rows are skipped
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
    sql`CREATE TABLE IF NOT EXISTS quickstart_events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, amount REAL NOT NULL)`
)

const main = createTable.pipe(
  Effect.zipRight(Effect.provide(program, Sqlite.layer({ flushSize: 500, concurrency: 1 }))), // closing it flushes
  Effect.provide(SqliteClient.layer({ filename: "quickstart.sqlite" }))
)

Effect.runPromise(main).then(() => console.log("written"))
