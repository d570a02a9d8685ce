/**
 * What the database stores is what `submit` validated, on every backend: a producer that reuses one
 * row object, or changes a row after `submit`, `submitAll` or `write`, changes nothing that is written.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import * as Table from "effect-batchflow/Table"
import { allBackends, num, recreate, runFlow, selectAll } from "./sql-helpers.js"

for (const backend of allBackends) {
  describe(`${backend.name}: rows are frozen at submit`, () => {
    it.live(
      "a reused row object and rows changed after submit, submitAll and write are stored as validated",
      () => {
        const name = `sql_snapshot_${backend.name.replace(" ", "_")}`
        const T = Table.make(name, {
          columns: Schema.Struct({ id: Schema.Number, note: Schema.String }),
          key: ["id"]
        })
        return Effect.gen(function* () {
          yield* recreate(name, `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, note VARCHAR(100) NOT NULL)`)
          const run = yield* runFlow(backend.flow({ flushSize: 100, flushInterval: "1 hour" }), (flow) =>
            Effect.gen(function* () {
              const row = { id: 0, note: "" }
              for (let i = 1; i <= 3; i++) {
                row.id = i
                row.note = `submitted ${i}`
                yield* flow.submit(T, row)
              }
              const batch = [{ id: 10, note: "submitAll" }]
              yield* flow.submitAll(T, batch)
              const written = { id: 20, note: "write" }
              const writer = yield* Effect.fork(flow.write(T, written))
              yield* Effect.sleep("20 millis")
              // Not valid any more, and another key: neither may reach the table.
              row.id = Number.NaN
              batch[0]!.id = 3
              written.note = { evil: true } as unknown as string
              yield* flow.flush
              yield* Fiber.join(writer)
            })
          )
          expect(run.failures).toEqual([])
          const rows = yield* selectAll<{ id: unknown; note: string }>(name, "id")
          expect(rows.map((r) => [num(r.id), r.note])).toEqual([
            [1, "submitted 1"],
            [2, "submitted 2"],
            [3, "submitted 3"],
            [10, "submitAll"],
            [20, "write"]
          ])
        }).pipe(Effect.provide(backend.client()))
      }
    )
  })
}
