/**
 * SQLite's direct path (`direct: true`): the better-sqlite3 `Database` is found behind the client
 * (and the capture fails loudly here if a new @effect/sql-sqlite-node stops preparing on it), each
 * statement text is prepared once, split batches are one transaction, and the app's own
 * transactions on the same client are neither joined nor interleaved. The rest of the behaviour
 * (modes, values, errors, BUSY, faults) runs in the shared SQL suites with a "sqlite direct" backend.
 */
import { createRequire } from "node:module"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Logger, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"
import * as SqliteDirect from "../src/internal/sql/sqliteDirect.js"
import { count, num, recreate, runFlow, selectAll, sqliteClient, tempSqliteFile } from "./sql-helpers.js"

const Database = createRequire(createRequire(import.meta.url).resolve("@effect/sql-sqlite-node"))(
  "better-sqlite3"
) as { readonly prototype: { prepare: (source: string) => unknown } }

const Row = Schema.Struct({ id: Schema.Number, name: Schema.NullOr(Schema.String) })
const tableOf = (name: string) => Table.make(name, { columns: Row, conflict: Conflict.none })
const ddl = (name: string) => `CREATE TABLE ${name} (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`
const rowsOf = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${from + i}` }))

/** Counts `Database.prototype.prepare` calls by statement text while `effect` runs. */
const countingPrepares = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const original = Database.prototype.prepare
      const texts: Array<string> = []
      Database.prototype.prepare = function (this: unknown, source: string) {
        texts.push(source)
        return original.call(this, source)
      }
      return { original, texts }
    }),
    ({ texts }) => Effect.map(effect, (a) => [a, texts] as const),
    ({ original }) =>
      Effect.sync(() => {
        Database.prototype.prepare = original
      })
  )

describe("sqlite direct: the Database behind the client", () => {
  it.live("is found on an @effect/sql-sqlite-node client, and prepare is put back", () => {
    const file = tempSqliteFile("direct_found")
    const before = Database.prototype.prepare
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const found = yield* SqliteDirect.databaseOf(sql)
      expect(found._tag).toBe("Found")
      if (found._tag !== "Found") return
      expect(found.db.name).toBe(file)
      expect(found.db.open).toBe(true)
      expect(Database.prototype.prepare).toBe(before)
      // The same connection: a table the client creates is seen by the Database found.
      yield* sql.unsafe("CREATE TABLE direct_found (id INTEGER PRIMARY KEY)")
      yield* sql.unsafe("INSERT INTO direct_found (id) VALUES (7)")
      expect(
        (found.db.prepare("SELECT id FROM direct_found") as unknown as { get: () => unknown }).get()
      ).toEqual({
        id: 7
      })
    }).pipe(Effect.provide(sqliteClient(file)))
  })

  it.live("the executor uses it without a warning", () => {
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) => {
      logs.push(String(message))
    })
    return Effect.gen(function* () {
      yield* Sqlite.makeExecutor({ direct: true })
      expect(logs.filter((line) => line.includes("direct path"))).toEqual([])
    }).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Effect.provide(sqliteClient(tempSqliteFile("direct_nowarn")))
    )
  })
})

describe("sqlite direct: statements", () => {
  it.live("each statement text is prepared once, whatever the number of batches", () => {
    const name = "direct_prepared"
    const T = tableOf(name)
    return Effect.gen(function* () {
      yield* recreate(name, ddl(name))
      const executor = yield* Sqlite.makeExecutor({ direct: true })
      const [, texts] = yield* countingPrepares(
        Effect.forEach([0, 10, 20, 30], (from) => executor.execute(T, rowsOf(from, 10)), { discard: true })
      )
      // Four batches of ten rows: one text, prepared once.
      expect(texts.length).toBe(1)
      expect(texts[0]).toBe(
        `INSERT INTO "${name}" ("id", "name") VALUES ${Array.from({ length: 10 }, () => "(?, ?)").join(", ")}`
      )
      expect(yield* count(name)).toBe(40)
    }).pipe(Effect.provide(sqliteClient(tempSqliteFile(name))))
  })

  it.live("a batch split into several statements is one transaction: a failing one rolls all back", () => {
    const name = "direct_split"
    const T = tableOf(name)
    return Effect.gen(function* () {
      yield* recreate(name, ddl(name))
      // Two parameters per row, ten per statement: 20 rows are four statements.
      const executor = yield* Sqlite.makeExecutor({ direct: true, maxParams: 10 })
      const rows = [...rowsOf(0, 19), { id: 19, name: null }]
      const error = yield* Effect.flip(executor.execute(T, rows))
      expect(error).toMatchObject({ _tag: "SqlWriteError", code: "SQLITE_CONSTRAINT_NOTNULL" })
      expect(yield* count(name)).toBe(0)
      const sql = yield* SqlClient.SqlClient
      // No transaction left open on the connection.
      yield* sql.unsafe(`INSERT INTO ${name} (id, name) VALUES (100, 'x')`)
      yield* executor.execute(T, rowsOf(0, 20))
      expect(yield* count(name)).toBe(21)
    }).pipe(Effect.provide(sqliteClient(tempSqliteFile(name))))
  })

  it.live("through the flow: the bad row of a split batch is isolated, the others commit", () => {
    const name = "direct_split_flow"
    const T = tableOf(name)
    return Effect.gen(function* () {
      yield* recreate(name, ddl(name))
      const rows = rowsOf(0, 50).map((row) => (row.id === 33 ? { id: 33, name: null } : row))
      const run = yield* runFlow(Sqlite.layer({ direct: true, maxParams: 10, flushSize: 50 }), (flow) =>
        flow.submitAll(T, rows)
      )
      expect(run.failures.map((f) => [f.reason, f.outcome, f.rows])).toEqual([
        ["not_null", "failed", [{ id: 33, name: null }]]
      ])
      expect(yield* count(name)).toBe(49)
    }).pipe(Effect.provide(sqliteClient(tempSqliteFile(name))))
  })
})

describe("sqlite direct: the app's transactions on the same client", () => {
  it.live(
    "a batch submitted while the app's transaction is open waits for it and is not rolled back with it",
    () => {
      const name = "direct_app_tx"
      const T = tableOf(name)
      return Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* recreate(name, ddl(name))
        const opened = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        // The app: one row in a transaction that stays open across awaits, then fails (rolled back).
        const app = yield* Effect.fork(
          sql
            .withTransaction(
              Effect.gen(function* () {
                yield* sql.unsafe(`INSERT INTO ${name} (id, name) VALUES (1000, 'app')`)
                yield* Deferred.succeed(opened, undefined)
                yield* Deferred.await(release)
                return yield* Effect.fail("rolled back by the app" as const)
              })
            )
            .pipe(Effect.flip)
        )
        const run = yield* runFlow(Sqlite.layer({ direct: true, flushSize: 10 }), (flow) =>
          Effect.gen(function* () {
            yield* Deferred.await(opened)
            const written = yield* Effect.fork(flow.write(T, { id: 1, name: "flow" }))
            yield* flow.flush.pipe(Effect.timeout("200 millis"), Effect.ignore)
            // Still waiting for the app's transaction: not written into it.
            expect(written.unsafePoll()).toBeNull()
            yield* Deferred.succeed(release, undefined)
            yield* Fiber.join(written)
            return yield* Fiber.join(app)
          })
        )
        expect(run.result).toBe("rolled back by the app")
        expect(run.failures).toEqual([])
        const rows = yield* selectAll<{ id: unknown; name: string }>(name, "id")
        expect(rows.map((row) => [num(row.id), row.name])).toEqual([[1, "flow"]])
      }).pipe(Effect.provide(sqliteClient(tempSqliteFile(name))))
    }
  )

  it.live("a batch between the app's transactions commits at once", () => {
    const name = "direct_app_between"
    const T = tableOf(name)
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* recreate(name, ddl(name))
      yield* sql.withTransaction(sql.unsafe(`INSERT INTO ${name} (id, name) VALUES (1000, 'app')`))
      const run = yield* runFlow(Sqlite.layer({ direct: true, flushSize: 10 }), (flow) =>
        flow.write(T, { id: 1, name: "flow" })
      )
      expect(run.failures).toEqual([])
      yield* sql.withTransaction(sql.unsafe(`INSERT INTO ${name} (id, name) VALUES (1001, 'app')`))
      expect(yield* count(name)).toBe(3)
    }).pipe(Effect.provide(sqliteClient(tempSqliteFile(name))))
  })
})
