/**
 * No silent rounding: a fractional number written into an integer column, or one with more
 * fractional digits than a DECIMAL's scale, is never stored rounded while counted as committed.
 * MariaDB would round both (1.5 → 2 in a BIGINT, also from the text '1.5'); PostgreSQL rejects the
 * first itself and rounds the second; SQLite stores both exactly. The bad rows fail alone as
 * `bad_value`, naming the field, and the other rows of their batch commit.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"
import { checkNumeric, mysqlNumericColumn, pgNumericColumn } from "../src/internal/sql/values.js"
import { allBackends, backends, count, num, recreate, runFlow, selectAll } from "./sql-helpers.js"

const Measures = Schema.Struct({ id: Schema.Number, n: Schema.Number, price: Schema.Number })

const rowsWithBadOnes = Array.from({ length: 500 }, (_, i) => ({
  id: i,
  n: i === 100 ? 1.5 : i,
  price: i === 300 ? 1.555 : i === 301 ? 2.5 : i + 0.25
}))

for (const backend of allBackends) {
  describe(`${backend.name}: fractional numbers into integer and DECIMAL columns`, () => {
    it.live(
      "a batch with 1.5 in a BIGINT column and 1.555 in a DECIMAL(7,2): nothing is stored rounded",
      () => {
        const t = `sql_numbers_round_${backend.name.replace(" ", "_")}`
        const T = Table.make(t, { columns: Measures, conflict: Conflict.none })
        return Effect.gen(function* () {
          const decimal = backend.dialect === "pg" ? "NUMERIC(7,2)" : "DECIMAL(7,2)"
          yield* recreate(
            t,
            `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, price ${decimal} NOT NULL)`
          )
          const run = yield* runFlow(backend.flow({ flushSize: 500, bufferSize: 500 }), (flow) =>
            flow.submitAll(T, rowsWithBadOnes)
          )
          const stored = yield* selectAll<Record<string, unknown>>(t, "id")
          if (backend.dialect === "sqlite") {
            // INTEGER and NUMERIC affinity keep 1.5 and 1.555 as REAL values, exactly.
            expect(run.failures).toEqual([])
            expect(stored).toHaveLength(500)
            expect(stored[100]!.n).toBe(1.5)
            expect(stored[300]!.price).toBe(1.555)
            const sql = yield* SqlClient.SqlClient
            const types = yield* sql.unsafe<{ readonly tn: string; readonly tp: string }>(
              `SELECT typeof(n) AS tn, typeof(price) AS tp FROM ${t} WHERE id = 100 OR id = 300 ORDER BY id`
            )
            expect(types).toEqual([
              { tn: "real", tp: "real" },
              { tn: "integer", tp: "real" }
            ])
            return
          }
          expect(yield* count(t)).toBe(498)
          expect(run.stats.committed).toBe(498)
          const failures = [...run.failures].sort(
            (a, b) => (a.rows[0] as { id: number }).id - (b.rows[0] as { id: number }).id
          )
          expect(failures.map((f) => [f.reason, f.outcome, f.rows])).toEqual([
            ["bad_value", "failed", [rowsWithBadOnes[100]]],
            ["bad_value", "failed", [rowsWithBadOnes[300]]]
          ])
          // MariaDB's rounding is caught before the write, naming the field; PostgreSQL rejects 1.5
          // for a bigint itself (22P02), and the engine isolates the row by splitting the batch.
          const [intFailure, decimalFailure] = failures
          if (backend.dialect === "mysql") {
            expect(intFailure!.cause).toBeInstanceOf(Sql.ColumnValueError)
            expect((intFailure!.cause as Sql.ColumnValueError).column).toBe("n")
            expect(intFailure!.message).toContain('Field "n"')
            expect(intFailure!.message).toContain("not an integer")
            expect(intFailure!.message).toContain("Schema.Int")
          } else {
            expect(intFailure!.cause).toBeInstanceOf(Sql.SqlWriteError)
            expect((intFailure!.cause as Sql.SqlWriteError).code).toBe("22P02")
          }
          expect(decimalFailure!.cause).toBeInstanceOf(Sql.ColumnValueError)
          expect((decimalFailure!.cause as Sql.ColumnValueError).column).toBe("price")
          expect(decimalFailure!.message).toContain('Field "price"')
          expect(decimalFailure!.message).toContain("round it to the column's scale yourself")
          // Nothing rounded: the bad rows are absent, the good ones exact.
          const ids = stored.map((r) => num(r.id))
          expect(ids).not.toContain(100)
          expect(ids).not.toContain(300)
          for (const row of stored) {
            const input = rowsWithBadOnes[num(row.id)!]!
            expect(num(row.n)).toBe(input.n)
            expect(num(row.price)).toBe(input.price)
          }
        }).pipe(Effect.provide(backend.client()))
      }
    )
  })
}

const mysql = backends.find((b) => b.dialect === "mysql")!
const pg = backends.find((b) => b.dialect === "pg")!

describe("mysql: every type MariaDB would round or clamp into", () => {
  const t = "sql_numbers_types_mysql"
  const WideColumns = Schema.Struct({
    id: Schema.Number,
    tiny: Schema.NullOr(Schema.Number),
    unsig: Schema.NullOr(Schema.Number),
    text_int: Schema.NullOr(Schema.String),
    big: Schema.NullOr(Schema.BigIntFromSelf),
    flags: Schema.NullOr(Schema.Number),
    yr: Schema.NullOr(Schema.Number),
    money: Schema.NullOr(Schema.Number),
    text_money: Schema.NullOr(Schema.String),
    ratio: Schema.NullOr(Schema.Number),
    plain: Schema.NullOr(Schema.Number)
  })
  const Wide = Table.make(t, { columns: WideColumns, conflict: Conflict.none })
  type Row = Schema.Schema.Type<typeof WideColumns>
  const blank: Omit<Row, "id"> = {
    tiny: null,
    unsig: null,
    text_int: null,
    big: null,
    flags: null,
    yr: null,
    money: null,
    text_money: null,
    ratio: null,
    plain: null
  }
  const good: ReadonlyArray<Partial<Row>> = [
    { tiny: 127, unsig: 0, text_int: "42", big: 2n ** 63n - 1n, flags: 255, yr: 2024, money: 2.5 },
    { tiny: -128, text_int: "1e3", big: -(2n ** 63n), money: -99999.99, text_money: "12.30" },
    { money: 1e-2, ratio: 1.5, plain: 1.23456789 }
  ]
  const bad: ReadonlyArray<readonly [Partial<Row>, string]> = [
    [{ tiny: 127.4 }, "tiny"],
    [{ tiny: 128 }, "tiny"],
    [{ unsig: -0.4 }, "unsig"],
    [{ unsig: -1 }, "unsig"],
    [{ text_int: "2.5" }, "text_int"],
    [{ text_int: " 3.5" }, "text_int"],
    [{ big: 2n ** 63n }, "big"],
    [{ flags: 1.5 }, "flags"],
    [{ flags: 256 }, "flags"],
    [{ yr: 2024.5 }, "yr"],
    [{ money: 1.555 }, "money"],
    [{ money: 1e-7 }, "money"],
    [{ money: 100000 }, "money"],
    [{ text_money: "0.125" }, "text_money"],
    [{ ratio: 1.23456 }, "ratio"]
  ]
  const rows: ReadonlyArray<Row> = [
    ...good.map((r, i) => ({ ...blank, ...r, id: i })),
    ...bad.map(([r], i) => ({ ...blank, ...r, id: 100 + i }))
  ]

  it.live("good edge values are stored exactly, each bad one fails alone naming its field", () =>
    Effect.gen(function* () {
      yield* recreate(
        t,
        `CREATE TABLE ${t} (id INT PRIMARY KEY, tiny TINYINT, unsig INT UNSIGNED, text_int BIGINT, big BIGINT,
         flags BIT(8), yr YEAR, money DECIMAL(7,2), text_money DECIMAL(5,2), ratio DOUBLE(6,2), plain DOUBLE)`
      )
      const run = yield* runFlow(mysql.flow({ flushSize: 100 }), (flow) => flow.submitAll(Wide, rows))
      const sql = yield* SqlClient.SqlClient
      const stored = yield* sql.unsafe<Record<string, unknown>>(
        `SELECT id, tiny, unsig, text_int, CAST(big AS CHAR) AS big, flags + 0 AS flags, yr, CAST(money AS CHAR) AS money,
         CAST(text_money AS CHAR) AS text_money, ratio, plain FROM ${t} ORDER BY id`
      )
      expect(stored.map((r) => r.id)).toEqual([0, 1, 2])
      expect(stored[0]).toMatchObject({
        tiny: 127,
        unsig: 0,
        text_int: 42,
        big: String(2n ** 63n - 1n),
        flags: 255
      })
      expect(stored[0]!.yr).toBe(2024)
      expect(stored[0]!.money).toBe("2.50")
      expect(stored[1]).toMatchObject({
        tiny: -128,
        text_int: 1000,
        big: String(-(2n ** 63n)),
        money: "-99999.99"
      })
      expect(stored[1]!.text_money).toBe("12.30")
      expect(stored[2]).toMatchObject({ money: "0.01", ratio: 1.5, plain: 1.23456789 })
      const reported = run.failures
        .flatMap((f) =>
          f.rows.map((r) => [(r as Row).id, f.reason, (f.cause as Sql.ColumnValueError).column])
        )
        .sort((a, b) => (a[0] as number) - (b[0] as number))
      expect(reported).toEqual(bad.map(([, field], i) => [100 + i, "bad_value", field]))
      for (const failure of run.failures) expect(failure.cause).toBeInstanceOf(Sql.ColumnValueError)
    }).pipe(Effect.provide(mysql.client()))
  )
})

describe("mysql: the column types are read per table, and again when the table was missing", () => {
  it.live("a table created after a failed write is checked on the next batch", () => {
    const t = "sql_numbers_late_mysql"
    const T = Table.make(t, { columns: Measures, conflict: Conflict.none })
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`DROP TABLE IF EXISTS ${t}`)
      const run = yield* runFlow(mysql.flow({ flushSize: 10 }), (flow) =>
        Effect.gen(function* () {
          const missing = yield* Effect.either(flow.write(T, { id: 1, n: 1, price: 1 }))
          expect(missing._tag).toBe("Left")
          if (missing._tag === "Left")
            expect(missing.left._tag === "BatchFailure" && missing.left.reason).toBe("schema")
          yield* sql.unsafe(
            `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, price DECIMAL(7,2) NOT NULL)`
          )
          const written = yield* Effect.all(
            [
              Effect.either(flow.write(T, { id: 2, n: 2, price: 2 })),
              Effect.either(flow.write(T, { id: 3, n: 3.5, price: 3 }))
            ],
            { concurrency: "unbounded" }
          )
          return written.map((e) =>
            e._tag === "Left" ? e.left._tag === "BatchFailure" && e.left.reason : "ok"
          )
        })
      )
      expect(run.result).toEqual(["ok", "bad_value"])
      const stored = yield* selectAll<Record<string, unknown>>(t, "id")
      expect(stored.map((r) => [num(r.id), num(r.n)])).toEqual([[2, 2]])
    }).pipe(Effect.provide(mysql.client()))
  })

  it.live("a table in another schema (database) is looked up there", () => {
    const T = Table.make("batchflow_numbers_db.sql_numbers_other", {
      columns: Schema.Struct({ id: Schema.Number, n: Schema.Number }),
      conflict: Conflict.none
    })
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe("CREATE DATABASE IF NOT EXISTS batchflow_numbers_db")
      yield* sql.unsafe("DROP TABLE IF EXISTS batchflow_numbers_db.sql_numbers_other")
      yield* sql.unsafe(
        "CREATE TABLE batchflow_numbers_db.sql_numbers_other (id INT PRIMARY KEY, n INT NOT NULL)"
      )
      const run = yield* runFlow(mysql.flow({ flushSize: 10 }), (flow) =>
        flow.submitAll(T, [
          { id: 1, n: 1 },
          { id: 2, n: 2.5 }
        ])
      )
      expect(run.failures.map((f) => [f.reason, f.rows])).toEqual([["bad_value", [{ id: 2, n: 2.5 }]]])
      const stored = yield* sql.unsafe<{ id: number; n: number }>(
        "SELECT id, n FROM batchflow_numbers_db.sql_numbers_other ORDER BY id"
      )
      expect(stored).toEqual([{ id: 1, n: 1 }])
      yield* sql.unsafe("DROP DATABASE batchflow_numbers_db")
    }).pipe(Effect.provide(mysql.client()))
  })
})

describe("pg: numeric(p, s) is checked, integer types are rejected by the server", () => {
  it.live("1.5 into integer, smallint and bigint fails alone (22P02); 0.125 into numeric(5,2) too", () => {
    const t = "sql_numbers_pg_types"
    const T = Table.make(t, {
      columns: Schema.Struct({
        id: Schema.Number,
        i: Schema.NullOr(Schema.Number),
        s: Schema.NullOr(Schema.Number),
        m: Schema.NullOr(Schema.Union(Schema.Number, Schema.String)),
        free: Schema.NullOr(Schema.Number)
      }),
      conflict: Conflict.none
    })
    const rows = [
      { id: 1, i: 1, s: 1, m: 1.25, free: 0.1 },
      { id: 2, i: 2.5, s: null, m: null, free: null },
      { id: 3, i: null, s: 3.5, m: null, free: null },
      { id: 4, i: null, s: null, m: 0.125, free: null },
      { id: 5, i: null, s: null, m: "7.001", free: null },
      { id: 6, i: null, s: null, m: "123.40", free: 1e-20 }
    ]
    return Effect.gen(function* () {
      yield* recreate(
        t,
        `CREATE TABLE ${t} (id INT PRIMARY KEY, i INTEGER, s SMALLINT, m NUMERIC(5,2), free NUMERIC)`
      )
      for (const pgForm of ["json", "values"] as const) {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`TRUNCATE ${t}`)
        const run = yield* runFlow(pg.flow({ flushSize: 10, pgForm }), (flow) => flow.submitAll(T, rows))
        const reported = run.failures
          .map((f) => [(f.rows[0] as { id: number }).id, f.reason, f.rows.length] as const)
          .sort((a, b) => a[0] - b[0])
        expect(reported).toEqual([
          [2, "bad_value", 1],
          [3, "bad_value", 1],
          [4, "bad_value", 1],
          [5, "bad_value", 1]
        ])
        const stored = yield* sql.unsafe<Record<string, unknown>>(
          `SELECT id, m::text AS m, free::text AS free FROM ${t} ORDER BY id`
        )
        expect(stored).toEqual([
          { id: 1, m: "1.25", free: "0.1" },
          { id: 6, m: "123.40", free: "0.00000000000000000001" }
        ])
      }
    }).pipe(Effect.provide(pg.client()))
  })
})

describe("the numeric rules", () => {
  const bigint = mysqlNumericColumn("n", "bigint", "bigint(20)", 19, 0)!
  const ubig = mysqlNumericColumn("n", "bigint", "bigint(20) unsigned", 20, 0)!
  const dec = mysqlNumericColumn("n", "decimal", "decimal(5,2)", 5, 2)!
  it("integer columns take integers in range, as numbers, bigints or numeric text", () => {
    for (const ok of [
      0,
      -0,
      1,
      -1,
      2 ** 53 - 1,
      1e18,
      "12",
      " 7 ",
      "1e3",
      "1.000",
      2n ** 63n - 1n,
      "abc",
      true
    ]) {
      expect(checkNumeric(bigint, ok)).toBeUndefined()
    }
    for (const no of [1.5, -0.5, 1e-7, "2.5", "1.5e0", "9223372036854775808", 2n ** 63n, 1e19]) {
      expect(checkNumeric(bigint, no)).toBeDefined()
    }
    expect(checkNumeric(ubig, -1)?.problem).toBe("range")
    expect(checkNumeric(ubig, 2n ** 64n - 1n)).toBeUndefined()
    expect(checkNumeric(ubig, 1.5)?.problem).toBe("fraction")
  })
  it("DECIMAL(5,2) takes at most 2 fractional and 3 integer digits", () => {
    for (const ok of [999.99, -999.99, 0.5, 1.1, "1.10", 1e-2, 12n, "0.120"])
      expect(checkNumeric(dec, ok)).toBeUndefined()
    for (const no of [1.555, 0.001, 1e-7, 1000, "1000", 1000n, "0.125"])
      expect(checkNumeric(dec, no)).toBeDefined()
  })
  it("types that round nothing have no rule", () => {
    expect(mysqlNumericColumn("x", "double", "double", 22, null)).toBeUndefined()
    expect(mysqlNumericColumn("x", "varchar", "varchar(10)", null, null)).toBeUndefined()
    expect(mysqlNumericColumn("x", "float", "float", 12, null)).toBeUndefined()
    expect(pgNumericColumn("x", "numeric")).toBeUndefined()
    expect(pgNumericColumn("x", "bigint")).toBeUndefined()
    expect(pgNumericColumn("x", "numeric(5,2)")).toMatchObject({ scale: 2, integerDigits: 3 })
  })
  it("a failed catalog read is classified by its cause, never as an unknown outcome", () => {
    const lost = Object.assign(new Error("Connection lost: The server closed the connection."), {
      code: "PROTOCOL_CONNECTION_LOST",
      fatal: true
    })
    const cause = new SqlError({ cause: lost, message: "Failed to execute statement" })
    expect(Sql.classify(cause)).toMatchObject({ retryable: true, reason: "connection", unknownOutcome: true })
    expect(Sql.classify(new Sql.ColumnLookupError({ table: "t", cause }))).toEqual({
      retryable: true,
      reason: "connection"
    })
    expect(
      Sql.classify(
        new Sql.ColumnValueError({
          table: "t",
          column: "n",
          columnType: "bigint",
          problem: "fraction",
          detail: "x"
        })
      )
    ).toEqual({ retryable: false, reason: "bad_value", rowLevel: true })
  })
})
