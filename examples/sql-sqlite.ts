/**
 * SQLite, and what a batch becomes: `Sql.preview` shows the statement, its arguments, the in-batch
 * dedupe and the fingerprint without a database; the flow then writes the same rows to a file.
 *
 *   npx tsx examples/sql-sqlite.ts
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sql from "effect-batchflow/Sql"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"

const Scores = Table.make("example_scores", {
  columns: Schema.Struct({ player: Schema.String, level: Schema.Number, score: Schema.Number }),
  conflict: Conflict.update({ target: ["player", "level"], set: ["score"] })
})

const rows = [
  { player: "ada", level: 1, score: 10 },
  { player: "bob", level: 1, score: 7 },
  { player: "ada", level: 1, score: 12 } // same key: merged, the later score wins
]

const preview = Sql.preview("sqlite", Scores, rows)
console.log(preview.sql)
// INSERT INTO "example_scores" ("player", "level", "score") VALUES (?, ?, ?), (?, ?, ?)
//   ON CONFLICT ("player", "level") DO UPDATE SET "score" = excluded."score"
console.log(preview.statements[0]?.args, preview.dedupe, preview.fingerprint)

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS example_scores (player TEXT, level INTEGER, score INTEGER, PRIMARY KEY (player, level))`
  yield* Effect.scoped(
    Effect.gen(function* () {
      const flow = yield* BatchFlow.BatchFlow
      yield* flow.submitAll(Scores, rows)
    }).pipe(Effect.provide(Sqlite.layer({ flushSize: 500 })))
  )
  console.log(yield* sql`SELECT * FROM example_scores ORDER BY player`)
})

Effect.runPromise(program.pipe(Effect.provide(SqliteClient.layer({ filename: "example.sqlite" })))).catch(
  console.error
)
