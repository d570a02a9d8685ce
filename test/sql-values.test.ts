/**
 * Values are bound, never spliced: hostile strings and bytes come back exactly. Batches over a
 * dialect's bind-parameter limit are written completely, in one transaction.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"
import {
  allBackends,
  backends,
  count,
  mysqlClient,
  num,
  recreate,
  runFlow,
  selectAll
} from "./sql-helpers.js"

const hostile: ReadonlyArray<string> = [
  "'; DROP TABLE sql_values_hostile; --",
  "Robert'); DROP TABLE students;--",
  `"double" 'single' \`back\``,
  "back\\slash \\' \\\\ \\0 \\n",
  "%s %d $1 $2 ? ?? :name @x {0}",
  "héllo wörld 日本語 😀 🇫🇷 \u202eRTL\u202c e\u0301 \u00a0",
  "line\nbreak\r\ttab",
  "",
  " leading and trailing ",
  "x".repeat(200_000),
  "🙂".repeat(10_000)
]

const bytes: ReadonlyArray<Uint8Array> = [
  Uint8Array.from({ length: 256 }, (_, i) => i),
  new Uint8Array(0),
  new TextEncoder().encode("'; DROP TABLE x; --\\"),
  Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256)
]

const Hostile = Schema.Struct({ id: Schema.Number, s: Schema.String, b: Schema.Uint8ArrayFromSelf })

for (const backend of allBackends) {
  describe(`${backend.name}: values`, () => {
    it.live("hostile strings and bytes are stored exactly", () => {
      const name = `sql_values_hostile_${backend.name.replace(" ", "_")}`
      const T = Table.make(name, { columns: Hostile, conflict: Conflict.none })
      // PostgreSQL text cannot hold NUL; MySQL and SQLite can.
      const strings = backend.dialect === "pg" ? hostile : [...hostile, "nul\u0000inside"]
      const input = strings.map((s, i) => ({ id: i, s, b: bytes[i % bytes.length]! }))
      return Effect.gen(function* () {
        const charset = backend.dialect === "mysql" ? " DEFAULT CHARSET=utf8mb4" : ""
        yield* recreate(
          name,
          `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, s ${backend.ddl.text} NOT NULL, b ${backend.ddl.bytes} NOT NULL)${charset}`
        )
        const run = yield* runFlow(backend.flow({ flushSize: 100 }), (flow) => flow.submitAll(T, input))
        expect(run.failures).toEqual([])
        const rows = yield* selectAll<Record<string, unknown>>(name, "id")
        expect(rows.map((r) => num(r.id))).toEqual(input.map((r) => r.id))
        for (const [i, row] of rows.entries()) {
          expect(row.s).toBe(input[i]!.s)
          expect(Buffer.from(row.b as Uint8Array).equals(Buffer.from(input[i]!.b))).toBe(true)
        }
      }).pipe(Effect.provide(backend.client()))
    })

    it.live("a batch over the bind-parameter limit is written completely", () => {
      const name = `sql_values_limit_${backend.name.replace(" ", "_")}`
      const Wide = Table.make(name, {
        columns: Schema.Struct({
          a: Schema.Number,
          b: Schema.Number,
          c: Schema.String,
          d: Schema.Number,
          e: Schema.Number
        }),
        conflict: Conflict.ignore,
        key: ["a"]
      })
      const rows = Array.from({ length: 14_000 }, (_, i) => ({
        a: i,
        b: i * 2,
        c: `row-${i}`,
        d: i % 7,
        e: -i
      }))
      const pgForm = "values" as const
      return Effect.gen(function* () {
        const planned = Sql.preview(backend.dialect, Wide, rows, { pgForm })
        expect(planned.statements.length).toBeGreaterThan(1)
        expect(planned.argCount).toBeGreaterThan(Sql.limits[backend.dialect].maxParams)
        yield* recreate(
          name,
          `CREATE TABLE ${name} (a BIGINT PRIMARY KEY, b BIGINT NOT NULL, c VARCHAR(20) NOT NULL, d INT NOT NULL, e BIGINT NOT NULL)`
        )
        const run = yield* runFlow(
          backend.flow({ flushSize: 14_000, bufferSize: 14_000, pgForm, flushInterval: "1 second" }),
          (flow) => flow.submitAll(Wide, rows)
        )
        expect(run.failures).toEqual([])
        expect(run.stats.committed).toBe(14_000)
        expect(yield* count(name)).toBe(14_000)
        const last = yield* selectAll<Record<string, unknown>>(`${name} WHERE a = 13999`, "a")
        expect([num(last[0]!.b), last[0]!.c, num(last[0]!.e)]).toEqual([27_998, "row-13999", -13_999])
      }).pipe(Effect.provide(backend.client()))
    })

    it.live("the statements of a split batch run in one transaction", () => {
      const name = `sql_values_atomic_${backend.name.replace(" ", "_")}`
      const Wide = Table.make(name, {
        columns: Schema.Struct({
          a: Schema.Number,
          b: Schema.Number,
          c: Schema.Number,
          d: Schema.Number,
          e: Schema.Number
        }),
        conflict: Conflict.none
      })
      // The last row breaks the CHECK constraint: it is in the last statement, after the first ones ran.
      const rows = Array.from({ length: 14_000 }, (_, i) => ({
        a: i,
        b: i,
        c: i,
        d: i,
        e: i === 13_999 ? -1 : i
      }))
      return Effect.gen(function* () {
        yield* recreate(
          name,
          `CREATE TABLE ${name} (a BIGINT PRIMARY KEY, b BIGINT, c BIGINT, d BIGINT, e BIGINT CHECK (e >= 0))`
        )
        const executor = yield* backend.executor({ pgForm: "values" })
        const exit = yield* Effect.exit(executor.execute(Wide, rows))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* count(name)).toBe(0)
        yield* executor.execute(Wide, rows.slice(0, 13_999))
        expect(yield* count(name)).toBe(13_999)
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`DELETE FROM ${name}`)
      }).pipe(Effect.provide(backend.client()))
    })
  })
}

describe("mysql: NO_BACKSLASH_ESCAPES", () => {
  it.live("the executor detects the mode and binds server-side, so backslashes and quotes stay exact", () => {
    const name = "sql_values_nobackslash"
    const T = Table.make(name, {
      columns: Schema.Struct({ id: Schema.Number, s: Schema.String }),
      conflict: Conflict.none
    })
    const tricky = ["\\", "\\'", "'\\", "a\\'; DROP TABLE sql_values_nobackslash; -- ", "\\\\'\\"]
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // One pooled connection, so the session mode below is the one every statement sees.
      yield* sql.unsafe("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')")
      yield* recreate(name, `CREATE TABLE ${name} (id INT PRIMARY KEY, s VARCHAR(100) NOT NULL)`)
      const run = yield* runFlow(Mysql.layer({ flushSize: 100 }), (flow) =>
        flow.submitAll(
          T,
          tricky.map((s, id) => ({ id, s }))
        )
      )
      expect(run.failures).toEqual([])
      const rows = yield* selectAll<Record<string, unknown>>(name, "id")
      expect(rows.map((r) => r.s)).toEqual(tricky)
    }).pipe(Effect.provide(mysqlClient(1)))
  })
})

describe("Schema.Date columns and PostgreSQL array columns", () => {
  const at = new Date("2024-02-29T13:14:15.678Z")
  for (const backend of allBackends) {
    it.live(
      `${backend.name}: a Schema.Date column (written as an ISO string) is stored as the same instant`,
      () => {
        const name = `sql_values_date_${backend.name.replace(" ", "_")}`
        const T = Table.make(name, {
          columns: Schema.Struct({ id: Schema.Number, at: Schema.Date }),
          conflict: Conflict.none
        })
        const column =
          backend.dialect === "pg" ? "TIMESTAMPTZ(3)" : backend.dialect === "mysql" ? "DATETIME(3)" : "TEXT"
        return Effect.gen(function* () {
          yield* recreate(name, `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, at ${column} NOT NULL)`)
          const run = yield* runFlow(backend.flow({ flushSize: 10 }), (flow) =>
            flow.submitAll(T, [{ id: 1, at }])
          )
          expect(run.failures).toEqual([])
          const [row] = yield* selectAll<{ at: unknown }>(name, "id")
          // mysql2 writes and reads DATETIME in the client's time zone: the instant round-trips.
          const stored = row!.at instanceof Date ? row!.at : new Date(String(row!.at))
          expect(stored.getTime()).toBe(at.getTime())
        }).pipe(Effect.provide(backend.client()))
      }
    )
  }

  const pg = backends.find((b) => b.dialect === "pg")!
  for (const pgForm of ["json", "values"] as const) {
    it.live(`pg (${pgForm} form): an array column takes Schema.Array values`, () => {
      const name = `sql_values_array_${pgForm}`
      const T = Table.make(name, {
        columns: Schema.Struct({ id: Schema.Number, tags: Schema.Array(Schema.String) }),
        conflict: Conflict.none
      })
      const input = [
        { id: 1, tags: ["a", "b,c", 'quote"d', ""] },
        { id: 2, tags: [] }
      ]
      return Effect.gen(function* () {
        yield* recreate(name, `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, tags TEXT[] NOT NULL)`)
        const run = yield* runFlow(pg.flow({ flushSize: 10, pgForm }), (flow) => flow.submitAll(T, input))
        expect(run.failures).toEqual([])
        const rows = yield* selectAll<{ tags: unknown }>(name, "id")
        expect(rows.map((r) => r.tags)).toEqual(input.map((r) => r.tags))
      }).pipe(Effect.provide(pg.client()))
    })
  }
})
