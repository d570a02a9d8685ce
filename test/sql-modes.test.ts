/**
 * What each mode leaves in a real table, per dialect: new rows, duplicates inside a batch and across
 * batches, rows colliding with existing ones, NULL keys, composite keys, an update of some columns.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"
import { allBackends, num, recreate, runFlow, selectAll } from "./sql-helpers.js"

interface Person {
  readonly id: number
  readonly name: string
  readonly score: number
  readonly note?: string | null | undefined
}

const People = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  score: Schema.Number,
  note: Schema.optional(Schema.NullOr(Schema.String))
})

const batchA: ReadonlyArray<Person> = [
  { id: 2, name: "b1", score: 20 },
  { id: 2, name: "b2", score: 21 },
  { id: 1, name: "new1", score: 11 },
  { id: 3, name: "c", score: 30 }
]
const batchB: ReadonlyArray<Person> = [
  { id: 3, name: "c2", score: 31 },
  { id: 4, name: "d", score: 40 }
]

type Row = readonly [id: number, name: string, score: number, note: string | null]

const modes: ReadonlyArray<{
  readonly name: string
  readonly conflict: Conflict.Conflict
  readonly key?: ReadonlyArray<"id">
  readonly expected: ReadonlyArray<Row>
  /** Rows reported as failed (none mode: the collisions). */
  readonly failed?: ReadonlyArray<number>
}> = [
  {
    name: "none",
    conflict: Conflict.none,
    key: ["id"],
    expected: [
      [1, "old", 10, "keep"],
      [2, "b1", 20, null],
      [3, "c", 30, null],
      [4, "d", 40, null]
    ],
    failed: [1, 2, 3]
  },
  {
    name: "ignore",
    conflict: Conflict.ignore,
    key: ["id"],
    expected: [
      [1, "old", 10, "keep"],
      [2, "b1", 20, null],
      [3, "c", 30, null],
      [4, "d", 40, null]
    ]
  },
  {
    name: "replace",
    conflict: Conflict.replace,
    key: ["id"],
    expected: [
      [1, "new1", 11, null],
      [2, "b2", 21, null],
      [3, "c2", 31, null],
      [4, "d", 40, null]
    ]
  },
  {
    name: "update_subset",
    conflict: Conflict.update({ target: ["id"], set: ["score"] }),
    expected: [
      [1, "old", 11, "keep"],
      [2, "b1", 21, null],
      [3, "c", 31, null],
      [4, "d", 40, null]
    ]
  },
  {
    name: "update_all",
    conflict: Conflict.update({ target: ["id"] }),
    expected: [
      [1, "new1", 11, null],
      [2, "b2", 21, null],
      [3, "c2", 31, null],
      [4, "d", 40, null]
    ]
  }
]

for (const backend of allBackends) {
  describe(`${backend.name}: final table contents per mode`, () => {
    for (const mode of modes) {
      it.live(mode.name, () => {
        const name = `sql_modes_${mode.name}_${backend.name.replace(" ", "_")}`
        const T = Table.make(name, { columns: People, conflict: mode.conflict, key: mode.key })
        return Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* recreate(
            name,
            `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, score INT NOT NULL, note VARCHAR(100) NULL)`
          )
          yield* sql.unsafe(`INSERT INTO ${name} (id, name, score, note) VALUES (1, 'old', 10, 'keep')`)
          const run = yield* runFlow(backend.flow({ flushSize: 100, concurrency: 4 }), (flow) =>
            Effect.gen(function* () {
              yield* flow.submitAll(T, batchA)
              yield* flow.flush
              yield* flow.submitAll(T, batchB)
            })
          )
          const rows = yield* selectAll<Record<string, unknown>>(name, "id")
          expect(rows.map((r) => [num(r.id), r.name, num(r.score), r.note ?? null])).toEqual(mode.expected)
          const failed = run.failures.flatMap((f) => f.rows as ReadonlyArray<Person>).map((r) => r.id)
          expect(failed.sort()).toEqual(mode.failed ?? [])
          for (const failure of run.failures) expect(failure.reason).toBe("duplicate_key")
          expect(run.stats.committed + run.stats.failed).toBe(6)
          if (mode.failed === undefined) {
            // The dedupe is observable: batch A's two rows with id 2 became one.
            const rowsIn = yield* Metric.value(Metric.tagged(Sql.dedupeRowsIn, "target", name))
            const rowsOut = yield* Metric.value(Metric.tagged(Sql.dedupeRowsOut, "target", name))
            expect([rowsIn.count, rowsOut.count]).toEqual([6, 5])
          }
        }).pipe(Effect.provide(backend.client()))
      })
    }

    it.live("NULL keys are never merged, in any mode", () =>
      Effect.gen(function* () {
        const Codes = Schema.Struct({ code: Schema.NullOr(Schema.String), v: Schema.Number })
        const cases = [
          ["ignore", Conflict.ignore, [["a", 3]]],
          ["replace", Conflict.replace, [["a", 5]]],
          ["update", Conflict.update({ target: ["code"], set: ["v"] }), [["a", 5]]]
        ] as const
        for (const [label, conflict, keyed] of cases) {
          const name = `sql_modes_nulls_${label}_${backend.name.replace(" ", "_")}`
          const T = Table.make(name, {
            columns: Codes,
            conflict,
            key: conflict._tag === "Update" ? undefined : ["code"]
          })
          yield* recreate(name, `CREATE TABLE ${name} (code VARCHAR(20) NULL UNIQUE, v INT NOT NULL)`)
          const run = yield* runFlow(backend.flow({ flushSize: 100 }), (flow) =>
            Effect.gen(function* () {
              yield* flow.submitAll(T, [
                { code: null, v: 1 },
                { code: null, v: 2 },
                { code: "a", v: 3 },
                { code: "a", v: 4 }
              ])
              yield* flow.flush
              yield* flow.submitAll(T, [
                { code: "a", v: 5 },
                { code: null, v: 6 }
              ])
            })
          )
          expect(run.failures).toEqual([])
          const rows = (yield* selectAll<Record<string, unknown>>(name, "v")).map((r) => [r.code, num(r.v)])
          expect(rows.filter((r) => r[0] === null).map((r) => r[1])).toEqual([1, 2, 6])
          expect(rows.filter((r) => r[0] !== null)).toEqual(keyed)
        }
      }).pipe(Effect.provide(backend.client()))
    )

    it.live("composite keys: update merges by every key column, ignore keeps the first", () =>
      Effect.gen(function* () {
        const Pairs = Schema.Struct({ tenant: Schema.Number, uid: Schema.Number, v: Schema.Number })
        const cases = [
          ["update", Conflict.update({ target: ["tenant", "uid"], set: ["v"] }), 9],
          ["ignore", Conflict.ignore, 1]
        ] as const
        for (const [label, conflict, first] of cases) {
          const name = `sql_modes_pairs_${label}_${backend.name.replace(" ", "_")}`
          const T = Table.make(name, {
            columns: Pairs,
            conflict,
            key: conflict._tag === "Update" ? undefined : ["tenant", "uid"]
          })
          yield* recreate(
            name,
            `CREATE TABLE ${name} (tenant INT, uid INT, v INT NOT NULL, PRIMARY KEY (tenant, uid))`
          )
          const run = yield* runFlow(backend.flow({ flushSize: 100 }), (flow) =>
            Effect.gen(function* () {
              yield* flow.submitAll(T, [
                { tenant: 1, uid: 1, v: 1 },
                { tenant: 1, uid: 2, v: 1 },
                { tenant: 1, uid: 1, v: 2 },
                { tenant: 2, uid: 1, v: 3 }
              ])
              yield* flow.flush
              yield* flow.submitAll(T, [{ tenant: 1, uid: 1, v: 9 }])
            })
          )
          expect(run.failures).toEqual([])
          const rows = yield* selectAll<Record<string, unknown>>(name, "tenant, uid")
          expect(rows.map((r) => [num(r.tenant), num(r.uid), num(r.v)])).toEqual([
            [1, 1, first],
            [1, 2, 1],
            [2, 1, 3]
          ])
        }
      }).pipe(Effect.provide(backend.client()))
    )
  })
}
