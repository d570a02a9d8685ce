/**
 * Real errors induced on the real servers, classified by the SQL rule: deadlocks, lock timeouts,
 * SQLITE_BUSY, constraint violations, syntax. Poison rows: the bad rows of a batch are isolated and
 * reported, the good ones committed.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Either, Exit, Fiber, Layer, Option, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sql from "effect-batchflow/Sql"
import * as Sqlite from "effect-batchflow/Sqlite"
import * as Table from "effect-batchflow/Table"
import {
  allBackends,
  type Backend,
  count,
  recreate,
  runFlow,
  sqliteClient,
  tempSqliteFile
} from "./sql-helpers.js"

/** Runs a statement that must fail and returns the classification of its real error. */
const classifyFailure = (statement: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const error = yield* Effect.flip(sql.unsafe(statement))
    return Sql.classify(error)
  })

/** Two transactions lock two rows in opposite order; returns the classification of the loser's error. */
const deadlock = (table: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* recreate(table, `CREATE TABLE ${table} (id INT PRIMARY KEY, v INT NOT NULL)`)
    yield* sql.unsafe(`INSERT INTO ${table} (id, v) VALUES (1, 0), (2, 0)`)
    const aLocked = yield* Deferred.make<void>()
    const bLocked = yield* Deferred.make<void>()
    const tx = (
      first: number,
      second: number,
      mine: Deferred.Deferred<void>,
      theirs: Deferred.Deferred<void>
    ) =>
      sql.withTransaction(
        Effect.gen(function* () {
          yield* sql.unsafe(`UPDATE ${table} SET v = v + 1 WHERE id = ${first}`)
          yield* Deferred.succeed(mine, undefined)
          yield* Deferred.await(theirs)
          yield* sql.unsafe(`UPDATE ${table} SET v = v + 1 WHERE id = ${second}`)
        })
      )
    const exits = yield* Effect.all(
      [Effect.exit(tx(1, 2, aLocked, bLocked)), Effect.exit(tx(2, 1, bLocked, aLocked))],
      {
        concurrency: 2
      }
    )
    const failures = exits.filter(Exit.isFailure)
    expect(failures).toHaveLength(1)
    return Sql.classify(Option.getOrUndefined(Cause.failureOption(failures[0]!.cause)))
  })

/** One transaction holds a row lock; another waits on it with a short lock timeout. */
const lockTimeout = (table: string, setTimeout: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* recreate(table, `CREATE TABLE ${table} (id INT PRIMARY KEY, v INT NOT NULL)`)
    yield* sql.unsafe(`INSERT INTO ${table} (id, v) VALUES (1, 0)`)
    const locked = yield* Deferred.make<void>()
    const done = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(
      sql.withTransaction(
        Effect.gen(function* () {
          yield* sql.unsafe(`UPDATE ${table} SET v = 1 WHERE id = 1`)
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(done)
        })
      )
    )
    yield* Deferred.await(locked)
    const error = yield* Effect.flip(
      sql.withTransaction(
        Effect.zipRight(sql.unsafe(setTimeout), sql.unsafe(`UPDATE ${table} SET v = 2 WHERE id = 1`))
      )
    )
    yield* Deferred.succeed(done, undefined)
    yield* Fiber.join(holder)
    return Sql.classify(error)
  })

const constraintTable = (backend: Backend, table: string) =>
  recreate(
    table,
    `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, name VARCHAR(10) NOT NULL${
      backend.dialect === "sqlite" ? " CHECK (length(name) <= 10)" : ""
    }, score INT NOT NULL CHECK (score >= 0))`
  )

for (const backend of allBackends) {
  describe(`${backend.name}: real errors are classified`, () => {
    it.live("unique, not-null, too long, check and syntax errors", () => {
      const t = `sql_errors_constraints_${backend.name.replace(" ", "_")}`
      return Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* constraintTable(backend, t)
        yield* sql.unsafe(`INSERT INTO ${t} (id, name, score) VALUES (1, 'a', 1)`)
        expect(yield* classifyFailure(`INSERT INTO ${t} (id, name, score) VALUES (1, 'b', 1)`)).toEqual({
          retryable: false,
          reason: "duplicate_key",
          rowLevel: true
        })
        expect(yield* classifyFailure(`INSERT INTO ${t} (id, name, score) VALUES (2, NULL, 1)`)).toEqual({
          retryable: false,
          reason: "not_null",
          rowLevel: true
        })
        expect(
          yield* classifyFailure(`INSERT INTO ${t} (id, name, score) VALUES (3, 'abcdefghijklmnop', 1)`)
        ).toEqual({
          retryable: false,
          // SQLite does not enforce VARCHAR lengths; the table's CHECK does it.
          reason: backend.dialect === "sqlite" ? "check_violation" : "value_too_long",
          rowLevel: true
        })
        expect(yield* classifyFailure(`INSERT INTO ${t} (id, name, score) VALUES (4, 'd', -1)`)).toEqual({
          retryable: false,
          reason: "check_violation",
          rowLevel: true
        })
        expect(yield* classifyFailure(`INSRT INTO ${t} VALUES (5)`)).toEqual({
          retryable: false,
          reason: "syntax"
        })
        expect(yield* classifyFailure("SELECT * FROM sql_errors_no_such_table")).toEqual({
          retryable: false,
          reason: "schema"
        })
      }).pipe(Effect.provide(backend.client()))
    })

    if (backend.dialect !== "sqlite") {
      it.live("a deadlock between two transactions locking in opposite order is retryable", () =>
        deadlock(`sql_errors_deadlock_${backend.name.replace(" ", "_")}`).pipe(
          Effect.map((c) => expect(c).toEqual({ retryable: true, reason: "deadlock" })),
          Effect.provide(backend.client())
        )
      )

      it.live("a lock wait that times out is retryable", () =>
        lockTimeout(
          `sql_errors_lock_${backend.name.replace(" ", "_")}`,
          backend.dialect === "pg"
            ? "SET LOCAL lock_timeout = '200ms'"
            : "SET SESSION innodb_lock_wait_timeout = 1"
        ).pipe(
          Effect.map((c) => expect(c).toEqual({ retryable: true, reason: "lock_timeout" })),
          Effect.provide(backend.client())
        )
      )
    }

    it.live("poison rows: 1,000 rows with 3 bad ones commit 997 and report the 3 with their reasons", () => {
      const t = `sql_errors_poison_${backend.name.replace(" ", "_")}`
      const Scores = Table.make(t, {
        columns: Schema.Struct({
          id: Schema.Number,
          name: Schema.NullOr(Schema.String),
          score: Schema.Number
        }),
        conflict: Conflict.none
      })
      const rows = Array.from({ length: 1000 }, (_, i) => ({
        id: i,
        name: i === 100 ? "far-too-long-name" : i === 500 ? null : `n${i}`,
        score: i === 900 ? -1 : i
      }))
      const expectedReasons = {
        100: backend.dialect === "sqlite" ? "check_violation" : "value_too_long",
        500: "not_null",
        900: "check_violation"
      }
      return Effect.gen(function* () {
        yield* constraintTable(backend, t)
        const run = yield* runFlow(backend.flow({ flushSize: 1000, bufferSize: 1000 }), (flow) =>
          Effect.forEach(rows, (row) => Effect.either(flow.write(Scores, row)), { concurrency: "unbounded" })
        )
        expect(yield* count(t)).toBe(997)
        expect(run.stats.committed).toBe(997)
        const failedWrites = run.result.flatMap((r, i) => (Either.isLeft(r) ? [[i, r.left] as const] : []))
        expect(failedWrites.map(([i]) => i)).toEqual([100, 500, 900])
        for (const [i, error] of failedWrites) {
          expect(error._tag).toBe("BatchFailure")
          if (error._tag !== "BatchFailure") continue
          expect(error.reason).toBe(expectedReasons[i as 100 | 500 | 900])
          expect(error.rows).toEqual([rows[i]])
          expect(error.cause).toBeInstanceOf(Sql.SqlWriteError)
          expect(error.message).toContain(`table "${t}" failed:`)
        }
        expect(run.failures.map((f) => f.reason).sort()).toEqual(Object.values(expectedReasons).sort())
      }).pipe(Effect.provide(backend.client()))
    })
  })
}

for (const sqlite of allBackends.filter((backend) => backend.dialect === "sqlite")) {
  describe(`${sqlite.name}: a value the driver cannot bind is a row-level failure`, () => {
    it.live("a bigint outside int64 among 500 rows: 499 commit, the bad one is reported bad_value", () => {
      const t = "sql_errors_bigint_sqlite"
      const Counters = Table.make(t, {
        columns: Schema.Struct({ id: Schema.Number, total: Schema.BigIntFromSelf }),
        conflict: Conflict.none
      })
      const rows = Array.from({ length: 500 }, (_, i) => ({
        id: i,
        total: i === 250 ? 2n ** 70n : BigInt(i)
      }))
      return Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`DROP TABLE IF EXISTS ${t}`)
        yield* sql.unsafe(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, total BIGINT NOT NULL)`)
        const run = yield* runFlow(sqlite.flow({ flushSize: 500, bufferSize: 500 }), (flow) =>
          flow.submitAll(Counters, rows)
        )
        expect(yield* count(t)).toBe(499)
        expect(run.failures.map((f) => [f.reason, f.outcome, f.rows])).toEqual([
          ["bad_value", "failed", [rows[250]]]
        ])
      }).pipe(Effect.provide(sqlite.client()))
    })
  })
}

for (const direct of [false, true]) {
  describe(`sqlite${direct ? " direct" : ""}: SQLITE_BUSY from a second connection holding the write lock`, () => {
    const file = tempSqliteFile(`sql_errors_busy${direct ? "_direct" : ""}`)
    const t = "sql_errors_busy"
    const Events = Table.make(t, {
      columns: Schema.Struct({ id: Schema.Number }),
      conflict: Conflict.ignore,
      key: ["id"]
    })

    /** Two clients on one file: `holder` takes the write lock, `writer` gets SQLITE_BUSY. */
    const twoClients = Effect.gen(function* () {
      const holder = Context.get(yield* Layer.build(sqliteClient(file)), SqlClient.SqlClient)
      const writer = Context.get(yield* Layer.build(sqliteClient(file)), SqlClient.SqlClient)
      yield* writer.unsafe("PRAGMA busy_timeout = 50")
      yield* holder.unsafe(`DROP TABLE IF EXISTS ${t}`)
      yield* holder.unsafe(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`)
      return { holder, writer }
    })

    it.scopedLive("is classified retryable (reason busy)", () =>
      Effect.gen(function* () {
        const { holder, writer } = yield* twoClients
        yield* holder.unsafe("BEGIN IMMEDIATE")
        const error = yield* Effect.flip(writer.unsafe(`INSERT INTO ${t} (id) VALUES (1)`))
        yield* holder.unsafe("COMMIT")
        expect(Sql.classify(error)).toEqual({ retryable: true, reason: "busy" })
      })
    )

    it.scopedLive("the flow retries and commits once the lock is released", () =>
      Effect.gen(function* () {
        const { holder, writer } = yield* twoClients
        yield* holder.unsafe("BEGIN IMMEDIATE")
        yield* Effect.fork(Effect.zipRight(Effect.sleep("150 millis"), holder.unsafe("COMMIT")))
        const run = yield* runFlow(
          Sqlite.layer({
            direct,
            flushSize: 10,
            retry: { maxAttempts: 10, backoffBase: "50 millis", maxBackoff: "200 millis" }
          }),
          (flow) => flow.submitAll(Events, [{ id: 1 }, { id: 2 }])
        ).pipe(Effect.provideService(SqlClient.SqlClient, writer))
        expect(run.failures).toEqual([])
        expect(run.stats.retries).toBeGreaterThan(0)
        expect(yield* count(t).pipe(Effect.provideService(SqlClient.SqlClient, writer))).toBe(2)
      })
    )
  })
}
