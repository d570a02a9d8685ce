import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"
import { counter, histogram, labelsFor, startObservedFlow } from "./metrics-helpers.js"
import { sqliteClient, tempSqliteFile } from "./sql-helpers.js"

const Items = Table.make("sql_metrics_items", {
  columns: Schema.Struct({ id: Schema.Number, name: Schema.String }),
  conflict: Conflict.update({ target: ["id"], set: ["name"] })
})

describe("SQL executor metrics", () => {
  it.effect("a real SQLite upsert batch reports generated rows, bind parameters and merged duplicates", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE sql_metrics_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`
      const executor = yield* Sqlite.makeExecutor()
      const { database, instanceId, tags } = labelsFor("sql-metrics")
      const { flow, closeScope } = yield* startObservedFlow(
        { flushSize: 10, flushInterval: "1 hour", concurrency: 1 },
        executor,
        { database, instanceId }
      )
      // 10 rows, ids 1..8 plus two duplicates of id 1: update keeps the last, so 8 rows are written.
      const rows = [1, 2, 3, 4, 5, 6, 7, 8, 1, 1].map((id, i) => ({ id, name: `n${i}` }))
      yield* flow.submitAll(Items, rows)
      yield* flow.flush
      yield* closeScope()

      expect(histogram("batchflow_sql_generated_rows", { ...tags, kind: "input" }).sum).toBe(10)
      expect(histogram("batchflow_sql_generated_rows", { ...tags, kind: "output" }).sum).toBe(8)
      expect(histogram("batchflow_sql_generated_args", tags).sum).toBe(16)
      // One statement for the batch.
      expect(
        histogram("batchflow_operation_generated_items", {
          ...tags,
          backend: "sql",
          operation: "upsert",
          kind: "commands"
        })
      ).toMatchObject({ count: 1, sum: 1 })
      expect(
        counter("batchflow_sql_deduplicated_rows_total", { ...tags, strategy: "update", kind: "merged" })
      ).toBe(2)
      const stored = yield* sql<{
        id: number
        name: string
      }>`SELECT id, name FROM sql_metrics_items WHERE id = 1`
      expect(stored).toEqual([{ id: 1, name: "n9" }])
    }).pipe(Effect.provide(Layer.orDie(sqliteClient(tempSqliteFile("sql-metrics")))))
  )
})
