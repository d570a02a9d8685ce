/**
 * PostgreSQL's `unnest` form: one text array literal per column, built by the executor. Hostile
 * values (quotes, backslashes, braces, commas, the string "NULL", empty strings, unicode, newlines)
 * come back exactly, every type is read as the JSON form reads it, and the one-trip path
 * (`SET LOCAL statement_timeout; INSERT` as one simple query, one implicit transaction) carries the
 * literals too, and leaves the session clean after a failed statement.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"
import { num, pgClient, recreate, runFlow } from "./sql-helpers.js"

const hostile: ReadonlyArray<string> = [
  "NULL",
  "null",
  "",
  " ",
  '"',
  '""',
  "\\",
  "\\\\",
  '\\"',
  "{",
  "}",
  "{}",
  "{a,b}",
  "a,b",
  "'",
  "''; DROP TABLE sql_unnest_values; --",
  "$1::json",
  "E'\\x'",
  "line\nbreak\r\ttab",
  "héllo 日本語 😀 🇫🇷 \u202eRTL\u202c e\u0301",
  " leading and trailing ",
  "x".repeat(100_000)
]

const Columns = Schema.Struct({
  id: Schema.Number,
  s: Schema.NullOr(Schema.String),
  v: Schema.NullOr(Schema.String),
  big: Schema.NullOr(Schema.BigIntFromSelf),
  f: Schema.NullOr(Schema.Number),
  ok: Schema.NullOr(Schema.Boolean),
  at: Schema.NullOr(Schema.DateFromSelf),
  raw: Schema.NullOr(Schema.Uint8ArrayFromSelf),
  doc: Schema.NullOr(Schema.Unknown),
  docb: Schema.NullOr(Schema.Unknown)
})
type Row = typeof Columns.Type

const ddl = (t: string) =>
  `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, s TEXT, v VARCHAR(100000), big BIGINT, f DOUBLE PRECISION,
   ok BOOLEAN, at TIMESTAMPTZ, raw BYTEA, doc JSON, docb JSONB)`

const rows: ReadonlyArray<Row> = [
  ...hostile.map((s, i) => ({
    id: i,
    s,
    v: s,
    big: i % 2 === 0 ? 2n ** 62n + BigInt(i) : -(2n ** 63n),
    f: i === 0 ? 1e-300 : i === 1 ? -0.1 : i * 1.5,
    ok: i % 3 === 0 ? null : i % 3 === 1,
    at: new Date(Date.UTC(2024, 1, 29, 13, 14, 15, i)),
    raw: new TextEncoder().encode(s.slice(0, 50)),
    doc: { s, n: i, nested: [s, null, { q: '"' }] },
    docb: i % 2 === 0 ? s : [i, s]
  })),
  { id: 1000, s: null, v: null, big: null, f: null, ok: null, at: null, raw: null, doc: null, docb: null }
]

const readBack = (t: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<Record<string, unknown>>(
      `SELECT id, s, v, big::text AS big, f, ok, at, encode(raw, 'hex') AS raw, doc::text AS doc, docb FROM ${t} ORDER BY id`
    )
  )

const hex = (bytes: Uint8Array | null) => (bytes === null ? null : Buffer.from(bytes).toString("hex"))

describe("pg unnest form", () => {
  it.live("hostile values and every type come back exactly, as the JSON form writes them", () =>
    Effect.gen(function* () {
      const T = Table.make("sql_unnest_values", { columns: Columns, conflict: Conflict.ignore, key: ["id"] })
      const J = Table.make("sql_unnest_values_json", {
        columns: Columns,
        conflict: Conflict.ignore,
        key: ["id"]
      })
      yield* recreate("sql_unnest_values", ddl("sql_unnest_values"))
      yield* recreate("sql_unnest_values_json", ddl("sql_unnest_values_json"))
      const unnest = yield* runFlow(Postgres.layer({ flushSize: 10, pgForm: "unnest" }), (flow) =>
        flow.submitAll(T, rows)
      )
      const json = yield* runFlow(Postgres.layer({ flushSize: 10, pgForm: "json" }), (flow) =>
        flow.submitAll(J, rows)
      )
      expect(unnest.failures).toEqual([])
      expect(json.failures).toEqual([])
      const stored = yield* readBack("sql_unnest_values")
      expect(stored).toHaveLength(rows.length)
      for (const [i, row] of stored.entries()) {
        const input = rows[i]!
        expect(num(row.id)).toBe(input.id)
        expect(row.s).toBe(input.s)
        expect(row.v).toBe(input.v)
        expect(row.big).toBe(input.big === null ? null : input.big.toString())
        expect(row.f).toBe(input.f)
        expect(row.ok).toBe(input.ok)
        expect(row.at === null ? null : (row.at as Date).getTime()).toBe(input.at?.getTime() ?? null)
        expect(row.raw).toBe(hex(input.raw))
        expect(row.doc === null ? null : JSON.parse(row.doc as string)).toEqual(input.doc)
        expect(row.docb).toEqual(input.docb)
      }
      // The same rows through the JSON form read back identically.
      expect(yield* readBack("sql_unnest_values_json")).toEqual(stored)
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("the statement is unnest with the columns' base types; an array column falls back to JSON", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const t = "sql_unnest_shape"
      yield* recreate(t, `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, name VARCHAR(5) NOT NULL, tags TEXT[])`)
      const Named = Table.make(t, {
        columns: Schema.Struct({ id: Schema.Number, name: Schema.String }),
        conflict: Conflict.none
      })
      const Tagged = Table.make(t, {
        columns: Schema.Struct({ id: Schema.Number, name: Schema.String, tags: Schema.Array(Schema.String) }),
        conflict: Conflict.none
      })
      const executor = yield* Postgres.makeExecutor({ pgForm: "unnest" })
      yield* executor.execute(Named, [
        { id: 1, name: "a" },
        { id: 2, name: "b" }
      ])
      // varchar(5) is cast as varchar (no length): an over-long value is an error, never truncated.
      const tooLong = yield* Effect.flip(executor.execute(Named, [{ id: 3, name: "abcdefgh" }]))
      expect(Sql.classify(tooLong)).toEqual({ retryable: false, reason: "value_too_long", rowLevel: true })
      yield* executor.execute(Tagged, [{ id: 4, name: "c", tags: ['a"', "{b}", "NULL"] }])
      const stored = yield* sql.unsafe<{ id: string; name: string; tags: ReadonlyArray<string> | null }>(
        `SELECT id::text AS id, name, tags FROM ${t} ORDER BY id`
      )
      expect(stored).toEqual([
        { id: "1", name: "a", tags: null },
        { id: "2", name: "b", tags: null },
        { id: "4", name: "c", tags: ['a"', "{b}", "NULL"] }
      ])
      // Sql.preview has no catalog: it shows the JSON form.
      expect(Sql.preview("pg", Named, [{ id: 1, name: "a" }], { pgForm: "unnest" }).sql).toContain(
        "json_populate_recordset"
      )
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("one trip with a deadline: the literals are inlined, and a bad row is still isolated", () =>
    Effect.gen(function* () {
      const t = "sql_unnest_trip"
      yield* recreate(t, `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, s TEXT NOT NULL, n INTEGER)`)
      const T = Table.make(t, {
        columns: Schema.Struct({ id: Schema.Number, s: Schema.String, n: Schema.NullOr(Schema.Number) }),
        conflict: Conflict.none
      })
      const input = hostile.map((s, i) => ({ id: i, s, n: i === 7 ? 1.5 : i }))
      const run = yield* runFlow(
        Postgres.layer({ flushSize: 100, pgForm: "unnest", timeout: "5 seconds" }),
        (flow) => flow.submitAll(T, input)
      )
      expect(run.failures.map((f) => [f.reason, f.rows])).toEqual([["bad_value", [input[7]]]])
      const sql = yield* SqlClient.SqlClient
      const stored = yield* sql.unsafe<{ s: string }>(`SELECT s FROM ${t} ORDER BY id`)
      expect(stored.map((r) => r.s)).toEqual(hostile.filter((_, i) => i !== 7))
    }).pipe(Effect.provide(pgClient()))
  )

  it.live(
    "one trip on one connection: a failed statement is rolled back whole and leaves the session clean",
    () =>
      Effect.gen(function* () {
        const t = "sql_unnest_trip_session"
        yield* recreate(t, `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))`)
        const T = Table.make(t, {
          columns: Schema.Struct({ id: Schema.Number, n: Schema.Number }),
          conflict: Conflict.none
        })
        // The pool has one connection: every statement below, the flow's and the checks', runs on it.
        const input = Array.from({ length: 40 }, (_, i) => ({ id: i, n: i === 25 ? -1 : i }))
        const run = yield* runFlow(
          Postgres.layer({ flushSize: 20, concurrency: 1, pgForm: "unnest", timeout: "5 seconds" }),
          (flow) => flow.submitAll(T, input)
        )
        // The second batch failed on its CHECK and was split until the bad row was alone: each failed
        // statement was rolled back whole (its good rows are written once, by the halves), and the
        // session was usable at once, with no deadline left over from it.
        expect(run.failures.map((f) => f.rows)).toEqual([[input[25]]])
        const sql = yield* SqlClient.SqlClient
        const stored = yield* sql.unsafe<{ id: string }>(`SELECT id FROM ${t} ORDER BY id`)
        expect(stored.map((r) => Number(r.id))).toEqual(input.filter((r) => r.n >= 0).map((r) => r.id))
        const [session] = yield* sql.unsafe<{ timeout: string; tx: string }>(
          "SELECT current_setting('statement_timeout') AS timeout, pg_current_xact_id_if_assigned()::text AS tx"
        )
        expect(session).toEqual({ timeout: "0", tx: null })
      }).pipe(Effect.provide(pgClient(1)))
  )

  it.live("one trip, one row per statement: every hostile value alone in its column comes back exactly", () =>
    Effect.gen(function* () {
      const t = "sql_unnest_trip_alone"
      yield* recreate(t, `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, s TEXT NOT NULL, c TEXT NOT NULL)`)
      const T = Table.make(t, {
        columns: Schema.Struct({ id: Schema.Number, s: Schema.String, c: Schema.String }),
        conflict: Conflict.none
      })
      // Each statement has one hostile value in `s` (alone, so its literal is escaped for it only)
      // and a clean one in `c`.
      const input = hostile.map((s, i) => ({ id: i, s, c: `clean ${i}` }))
      const run = yield* runFlow(
        Postgres.layer({ flushSize: 1, pgForm: "unnest", timeout: "5 seconds" }),
        (flow) => flow.submitAll(T, input)
      )
      expect(run.failures).toEqual([])
      const sql = yield* SqlClient.SqlClient
      const stored = yield* sql.unsafe<{ s: string; c: string }>(`SELECT s, c FROM ${t} ORDER BY id`)
      expect(stored).toEqual(input.map(({ s, c }) => ({ s, c })))
    }).pipe(Effect.provide(pgClient()))
  )
})
