/**
 * Typed executors and several backends in one flow (issue 14), on the real PostgreSQL, Redis,
 * MariaDB and SQLite: each target goes to the first executor that accepts it (`forAll` last), a
 * `forTarget` executor gets its rows typed and its services from the flow's layer, its rules are
 * typed on its own error and never see the engine's `AttemptTimeout`, and rows of a target no
 * executor accepts are reported with reason `no_executor`.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Data, Effect, Exit, Layer, Predicate, Schema } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowError, Table, Target } from "effect-batchflow"
import * as Mysql from "effect-batchflow/Mysql"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import * as Sql from "effect-batchflow/Sql"
import * as Sqlite from "effect-batchflow/Sqlite"
import { recreateTable, rowCount, runLayer } from "./executor-helpers.js"
import { clientLayer, countKeys, deleteKeys, direct } from "./redis-helpers.js"
import { mysqlClient, pgClient, sqliteClient, tempSqliteFile } from "./sql-helpers.js"

/** Redis database and key prefix of this file (other files use other databases and prefixes). */
const DB = 15
const P = "exec14:e:"

const Orders = Table.make("exec14_e_orders", {
  columns: Schema.Struct({ id: Schema.Number, item: Schema.String, qty: Schema.Number }),
  key: ["id"]
})
type Order = Target.Row<typeof Orders>

const Items = Table.make("exec14_e_items", {
  columns: Schema.Struct({ id: Schema.Number, label: Schema.String }),
  key: ["id"]
})

const Sessions = Redis.set("exec14_e_sessions", { prefix: `${P}s:` })

const Audit = Target.make("exec14_e_audit", {
  schema: Schema.Struct({ id: Schema.Number, action: Schema.String })
})
type AuditRow = Target.Row<typeof Audit>

const order = (i: number): Order => ({ id: i, item: `item-${i}`, qty: i % 7 })
const auditRow = (i: number): AuditRow => ({ id: i, action: i % 2 === 0 ? "login" : "logout" })

const ordersDdl = "id BIGINT PRIMARY KEY, item TEXT NOT NULL, qty INT NOT NULL"

const selectOrders = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ id: unknown; item: string; qty: unknown }>(
        `SELECT id, item, qty FROM ${table} ORDER BY id`
      ),
      (rows) => rows.map((r) => ({ id: Number(r.id), item: r.item, qty: Number(r.qty) }))
    )
  )

const byId = <A extends { readonly id: number }>(rows: ReadonlyArray<A>): Array<A> =>
  [...rows].sort((a, b) => a.id - b.id)

/** A `forTarget` executor for `Audit` that keeps a copy of every row it is given, and its call sizes. */
const auditRecorder = () => {
  const rows: Array<AuditRow> = []
  const calls: Array<number> = []
  const executor = BatchExecutor.forTarget(Audit, (batch) =>
    Effect.sync(() => {
      // Typed rows: `action` is a string field of the target's row type.
      const actions: ReadonlyArray<string> = batch.map((row) => row.action)
      // @ts-expect-error `qty` is a field of Orders, not of Audit's rows
      void batch[0]?.qty
      calls.push(actions.length)
      // The flow empties a committed batch's array: keep copies.
      rows.push(...batch.map((row) => ({ ...row })))
    })
  )
  return { executor, rows, calls }
}

// ---------------------------------------------------------------- three backends in one flow

describe("one flow, three executors", () => {
  it.scopedLive(
    "Tables go to PostgreSQL, Redis targets to Redis, the custom target to its typed function",
    () =>
      Effect.gen(function* () {
        const redis = yield* direct(DB)
        yield* deleteKeys(redis, `${P}*`)
        yield* recreateTable("exec14_e_orders", ordersDdl)
        const audit = auditRecorder()
        const layer = BatchFlow.layer({
          executors: [Postgres.executor(), Redis.executor(), audit.executor],
          flushSize: 300,
          concurrency: 4
        }).pipe(Layer.provide(clientLayer(DB)))

        const N = 2000
        const run = yield* runLayer(layer, (flow) =>
          Effect.gen(function* () {
            // Interleaved: every flush holds rows of the three kinds, split to their executors.
            for (let i = 0; i < N; i++) {
              yield* flow.submit(Orders, order(i))
              yield* flow.submit(Sessions, { key: `u${i}`, value: `session-${i}` })
              yield* flow.submit(Audit, auditRow(i))
            }
          })
        )

        expect(run.failures).toEqual([])
        expect(run.stats).toMatchObject({ accepted: 3 * N, committed: 3 * N, failed: 0, unknownOutcome: 0 })

        // PostgreSQL has exactly the Orders rows.
        expect(yield* rowCount("exec14_e_orders")).toBe(N)
        expect(yield* selectOrders("exec14_e_orders")).toEqual(Array.from({ length: N }, (_, i) => order(i)))

        // Redis has exactly the Sessions rows.
        expect(yield* countKeys(redis, `${P}*`)).toBe(N)
        const values = yield* Effect.promise(() =>
          redis.mget(...Array.from({ length: N }, (_, i) => `${P}s:u${i}`))
        )
        expect(values).toEqual(Array.from({ length: N }, (_, i) => `session-${i}`))

        // The custom function got exactly the Audit rows, several batches of them.
        expect(byId(audit.rows)).toEqual(Array.from({ length: N }, (_, i) => auditRow(i)))
        expect(audit.rows.every((row) => Object.keys(row).sort().join(",") === "action,id")).toBe(true)
        expect(audit.calls.reduce((a, b) => a + b, 0)).toBe(N)
        expect(audit.calls.length).toBeGreaterThan(1)
      }).pipe(Effect.provide(pgClient()))
  )

  it.live("the first executor that accepts a target writes it; forAll is tried last wherever it is", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_e_orders", ordersDdl)
      yield* recreateTable("exec14_e_items", "id BIGINT PRIMARY KEY, label TEXT NOT NULL")
      const memory = BatchExecutor.memory()
      const ordersSeen: Array<Order> = []
      // Orders is a Table, so Postgres.executor() accepts it too: the forTarget before it wins.
      const OrdersWriter = BatchExecutor.forTarget(Orders, (rows) =>
        Effect.sync(() => {
          ordersSeen.push(...rows.map((row) => ({ ...row })))
        })
      )
      const layer = BatchFlow.layer({
        executors: [BatchExecutor.forAll(memory), OrdersWriter, Postgres.executor()],
        flushSize: 50
      })
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          for (let i = 0; i < 120; i++) {
            yield* flow.submit(Orders, order(i))
            yield* flow.submit(Items, { id: i, label: `label-${i}` })
            yield* flow.submit(Audit, auditRow(i))
          }
        })
      )
      expect(run.failures).toEqual([])
      expect(run.stats).toMatchObject({ accepted: 360, committed: 360 })
      // Orders: to the forTarget executor, not to PostgreSQL.
      expect(byId(ordersSeen)).toEqual(Array.from({ length: 120 }, (_, i) => order(i)))
      expect(yield* rowCount("exec14_e_orders")).toBe(0)
      // Items: to PostgreSQL (forAll, listed first, comes after it).
      expect(yield* rowCount("exec14_e_items")).toBe(120)
      // Audit: no one else accepts it, so the memory executor.
      expect(memory.rowsOf("exec14_e_audit")).toHaveLength(120)
      expect(new Set(memory.batches.map((b) => b.target))).toEqual(new Set(["exec14_e_audit"]))
    }).pipe(Effect.provide(pgClient()))
  )

  const sqlBackends = [
    {
      name: "MariaDB (Mysql.executor)",
      executor: () => Mysql.executor(),
      client: () => mysqlClient(),
      ddl: "id BIGINT PRIMARY KEY, item LONGTEXT NOT NULL, qty INT NOT NULL"
    },
    {
      name: "SQLite (Sqlite.executor)",
      executor: () => Sqlite.executor(),
      client: () => sqliteClient(tempSqliteFile("exec14")),
      ddl: ordersDdl
    }
  ] as const

  for (const backend of sqlBackends) {
    it.live(`${backend.name} writes every Table beside a forTarget executor`, () =>
      Effect.gen(function* () {
        yield* recreateTable("exec14_e_orders", backend.ddl)
        const audit = auditRecorder()
        const layer = BatchFlow.layer({ executors: [backend.executor(), audit.executor], flushSize: 100 })
        const N = 600
        const run = yield* runLayer(layer, (flow) =>
          Effect.gen(function* () {
            for (let i = 0; i < N; i++) {
              yield* flow.submit(Audit, auditRow(i))
              yield* flow.submit(Orders, order(i))
            }
          })
        )
        expect(run.failures).toEqual([])
        expect(run.stats).toMatchObject({ accepted: 2 * N, committed: 2 * N, failed: 0 })
        expect(yield* selectOrders("exec14_e_orders")).toEqual(Array.from({ length: N }, (_, i) => order(i)))
        expect(byId(audit.rows)).toEqual(Array.from({ length: N }, (_, i) => auditRow(i)))
      }).pipe(Effect.provide(backend.client()))
    )
  }

  it.live("Postgres.executor() on a client of another dialect fails the layer with UnsupportedDialect", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.scoped(Layer.build(BatchFlow.layer({ executors: [Postgres.executor()] })))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      expect(error?._tag).toBe("Some")
      if (error?._tag === "Some") expect(error.value).toBeInstanceOf(Sql.UnsupportedDialect)
    }).pipe(Effect.provide(sqliteClient(tempSqliteFile("exec14-dialect"))))
  )
})

// ---------------------------------------------------------------- services of a forTarget executor

/** A service of the application that a `forTarget` executor uses: here it stores rows in PostgreSQL. */
class AuditStore extends Context.Tag("exec14/AuditStore")<
  AuditStore,
  { readonly record: (rows: ReadonlyArray<AuditRow>) => Effect.Effect<void, SqlError> }
>() {}

/** The store: each call one INSERT into `exec14_e_audit_store`, tagged with the store's name. */
const auditStoreLive = (name: string, calls: Array<number>) =>
  Layer.effect(
    AuditStore,
    Effect.map(SqlClient.SqlClient, (sql) => ({
      record: (rows: ReadonlyArray<AuditRow>) =>
        Effect.suspend(() => {
          calls.push(rows.length)
          const values = rows.map((row) => ({ id: row.id, action: row.action, via: name }))
          return sql`INSERT INTO exec14_e_audit_store ${sql.insert(values)}`
        }).pipe(Effect.asVoid)
    }))
  )

const StoreWriter = BatchExecutor.forTarget(Audit, (rows) =>
  Effect.flatMap(AuditStore, (store) => store.record(rows))
)

describe("a forTarget executor's services", () => {
  it.live("are provided to the flow's layer and used by the executor", () =>
    Effect.gen(function* () {
      yield* recreateTable(
        "exec14_e_audit_store",
        "id BIGINT PRIMARY KEY, action TEXT NOT NULL, via TEXT NOT NULL"
      )
      const calls: Array<number> = []
      const layer = BatchFlow.layer({ executors: [StoreWriter], flushSize: 100 }).pipe(
        Layer.provide(auditStoreLive("store-A", calls))
      )
      const N = 450
      const run = yield* runLayer(layer, (flow) =>
        flow.submitAll(
          Audit,
          Array.from({ length: N }, (_, i) => auditRow(i))
        )
      )
      expect(run.failures).toEqual([])
      expect(run.stats).toMatchObject({ accepted: N, committed: N })
      expect(calls.reduce((a, b) => a + b, 0)).toBe(N)
      expect(calls.length).toBeGreaterThanOrEqual(5)
      const stored = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe<{ id: unknown; action: string; via: string }>(
          "SELECT id, action, via FROM exec14_e_audit_store ORDER BY id"
        )
      )
      expect(stored.map((r) => ({ id: Number(r.id), action: r.action }))).toEqual(
        Array.from({ length: N }, (_, i) => auditRow(i))
      )
      expect(new Set(stored.map((r) => r.via))).toEqual(new Set(["store-A"]))
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("are in the layer's type: running it without them does not type-check", () =>
    Effect.gen(function* () {
      const layerWithoutService = BatchFlow.layer({ executors: [StoreWriter] })
      const program = Effect.flatMap(BatchFlow.BatchFlow, (flow) => flow.flush)

      // The requirement is exactly the executor's service.
      const requires: Layer.Layer<BatchFlow.BatchFlow, unknown, AuditStore> = layerWithoutService
      // @ts-expect-error AuditStore is required: the layer is not a layer without requirements
      const requiresNothing: Layer.Layer<BatchFlow.BatchFlow, unknown, never> = layerWithoutService
      // @ts-expect-error running the flow's layer without providing AuditStore is a type error
      const runWithout = () => Effect.runPromise(Effect.provide(program, layerWithoutService))
      // Provided, it runs (given the store's own requirement, the SqlClient).
      const provided = Effect.provide(program, Layer.provide(layerWithoutService, auditStoreLive("x", [])))
      const typed: Effect.Effect<void, unknown, SqlClient.SqlClient> = provided
      expect([requires, requiresNothing, runWithout, typed].every((x) => x !== undefined)).toBe(true)

      // Forced past the type checker, the flow starts, and each write of the target dies on the
      // missing service: the type error is what catches it before any row is lost.
      const untyped = layerWithoutService as unknown as Layer.Layer<BatchFlow.BatchFlow>
      const failure = yield* Effect.provide(
        Effect.flatMap(BatchFlow.BatchFlow, (flow) => Effect.flip(flow.write(Audit, auditRow(1)))),
        untyped
      )
      expect(failure).toMatchObject({ _tag: "BatchFailure", reason: "defect", outcome: "failed" })
      expect(String(failure._tag === "BatchFailure" ? failure.cause : failure)).toContain("exec14/AuditStore")
    })
  )
})

// ---------------------------------------------------------------- typed rules

class Throttled extends Data.TaggedError("Throttled")<{ readonly attempt: number }> {}
class Rejected extends Data.TaggedError("Rejected")<{ readonly why: string }> {}
type WriteError = Throttled | Rejected

const AuditLog = Target.make("exec14_e_audit_log", {
  schema: Schema.Struct({ id: Schema.Number, action: Schema.String }),
  idempotentWrites: true
})

const fastRetry = { backoffBase: "1 millis", maxBackoff: "5 millis", jitter: 0 } as const

/**
 * The body of a typed rule that records every error it is given: `Throttled` is retryable, the
 * others are not answered. Called from inline rules `(error) => throttled(seen, error)`, so that
 * `error` is typed by the executor's `E` (passing an `unknown` here would not type-check).
 */
const throttled = (seen: Array<unknown>, error: WriteError | SqlError) => {
  seen.push(error)
  if (error._tag === "Throttled") {
    // Narrowed by its tag: a typed field, no cast.
    const attempt: number = error.attempt
    return { retryable: true, reason: attempt > 0 ? "throttled" : "never" }
  }
  return undefined
}

describe("rules typed on the executor's error", () => {
  it.live("a retryable Throttled is retried and the rows are written to PostgreSQL", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_e_audit_log", "id BIGINT PRIMARY KEY, action TEXT NOT NULL")
      const seen: Array<unknown> = []
      const attempts: Array<number> = []
      const Writer = BatchExecutor.forTarget(
        AuditLog,
        (rows, attempt): Effect.Effect<void, WriteError | SqlError, SqlClient.SqlClient> =>
          Effect.gen(function* () {
            attempts.push(attempt.number)
            if (attempt.number <= 2) return yield* new Throttled({ attempt: attempt.number })
            const sql = yield* SqlClient.SqlClient
            yield* sql`INSERT INTO exec14_e_audit_log ${sql.insert(rows.map((row) => ({ ...row })))}`
          }),
        {
          rules: [
            (error) => {
              // @ts-expect-error the rule is typed on the executor's errors: `attempt` is only on Throttled
              void error.attempt
              return throttled(seen, error)
            }
          ]
        }
      )
      const layer = BatchFlow.layer({ executors: [Writer], flushSize: 40, retry: fastRetry })
      const run = yield* runLayer(layer, (flow) =>
        flow.submitAll(
          AuditLog,
          Array.from({ length: 40 }, (_, i) => auditRow(i))
        )
      )
      expect(run.failures).toEqual([])
      expect(run.stats.committed).toBe(40)
      expect(run.stats.retries).toBeGreaterThanOrEqual(2)
      expect(attempts.slice(0, 3)).toEqual([1, 2, 3])
      expect(yield* rowCount("exec14_e_audit_log")).toBe(40)
      expect(seen.length).toBeGreaterThanOrEqual(2)
      expect(seen.every((e) => e instanceof Throttled)).toBe(true)
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("an error no rule answers is final: BatchFailure non_retryable, written nowhere", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_e_audit_log", "id BIGINT PRIMARY KEY, action TEXT NOT NULL")
      const seen: Array<unknown> = []
      let calls = 0
      const Writer = BatchExecutor.forTarget(
        AuditLog,
        (rows): Effect.Effect<void, WriteError | SqlError, SqlClient.SqlClient> =>
          Effect.gen(function* () {
            calls++
            if (rows.some((row) => row.action === "forbidden"))
              return yield* new Rejected({ why: "forbidden action" })
            const sql = yield* SqlClient.SqlClient
            yield* sql`INSERT INTO exec14_e_audit_log ${sql.insert(rows.map((row) => ({ ...row })))}`
          }),
        { rules: [(error) => throttled(seen, error)] }
      )
      const layer = BatchFlow.layer({ executors: [Writer], flushSize: 1, retry: fastRetry })
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.write(AuditLog, { id: 1, action: "login" })
          return yield* Effect.flip(flow.write(AuditLog, { id: 2, action: "forbidden" }))
        })
      )
      const failure = run.result
      expect(failure._tag).toBe("BatchFailure")
      if (failure._tag !== "BatchFailure") return
      expect(failure).toMatchObject({
        target: "exec14_e_audit_log",
        reason: "non_retryable",
        retryable: false,
        outcome: "failed",
        attempts: 1
      })
      expect(failure.rows).toEqual([{ id: 2, action: "forbidden" }])
      expect(failure.cause).toBeInstanceOf(Rejected)
      // The rule was asked about the Rejected error and did not answer; it was not retried.
      expect(seen.some((e) => e instanceof Rejected)).toBe(true)
      expect(calls).toBe(2)
      expect(run.stats).toMatchObject({ committed: 1, failed: 1, retries: 0 })
      expect(run.failures.map((f) => f.reason)).toEqual(["non_retryable"])
      // PostgreSQL has the one row that was written.
      expect(yield* rowCount("exec14_e_audit_log")).toBe(1)
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("the typed rule is never given the engine's AttemptTimeout (the flow's rules are)", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const flowRuleSaw: Array<string> = []
      const attempts: Array<number> = []
      const written: Array<AuditRow> = []
      let firstDone = false
      const Writer = BatchExecutor.forTarget(
        AuditLog,
        (rows, attempt): Effect.Effect<void, WriteError> =>
          Effect.gen(function* () {
            attempts.push(attempt.number)
            if (attempt.number === 1) {
              // Far past timeout + grace: the engine abandons the attempt with an AttemptTimeout.
              yield* Effect.sleep("800 millis")
              firstDone = true
              return yield* new Throttled({ attempt: 1 })
            }
            if (attempt.number === 2) return yield* new Throttled({ attempt: 2 })
            written.push(...rows.map((row) => ({ ...row })))
          }),
        { rules: [(error) => throttled(seen, error)] }
      )
      const layer = BatchFlow.layer({
        executors: [Writer],
        flushSize: 10,
        timeout: "100 millis",
        retry: fastRetry,
        // The flow's own rules see every error, the engine's too; this one answers none.
        rules: [
          (error) => {
            flowRuleSaw.push(Predicate.isTagged(error, "AttemptTimeout") ? "AttemptTimeout" : String(error))
            return undefined
          }
        ]
      })
      const run = yield* runLayer(layer, (flow) =>
        flow.submitAll(
          AuditLog,
          Array.from({ length: 10 }, (_, i) => auditRow(i))
        )
      )
      // Let the abandoned first attempt answer late (its error is classified too).
      const deadline = Date.now() + 5_000
      while (!firstDone && Date.now() < deadline) yield* Effect.sleep("20 millis")
      yield* Effect.sleep("50 millis")

      expect(firstDone).toBe(true)
      expect(attempts.slice(0, 3)).toEqual([1, 2, 3])
      expect(run.failures).toEqual([])
      expect(run.stats.committed).toBe(10)
      expect(run.stats.retries).toBeGreaterThanOrEqual(2)
      expect(byId(written)).toEqual(Array.from({ length: 10 }, (_, i) => auditRow(i)))
      // The engine's timeout happened and reached classification…
      expect(flowRuleSaw).toContain("AttemptTimeout")
      // …but the typed rule only ever saw its executor's own errors.
      expect(seen.length).toBeGreaterThanOrEqual(1)
      expect(seen.every((e) => e instanceof Throttled)).toBe(true)
      expect(seen.some((e) => Predicate.isTagged(e, "AttemptTimeout"))).toBe(false)
    })
  )
})

// ---------------------------------------------------------------- no executor

describe("a target no executor accepts", () => {
  it.scopedLive("is reported as no_executor and never reaches Redis; the Table rows still commit", () =>
    Effect.gen(function* () {
      const redis = yield* direct(DB)
      yield* deleteKeys(redis, `${P}*`)
      yield* recreateTable("exec14_e_orders", ordersDdl)
      // Only PostgreSQL: the Redis target has no executor (and the layer needs no RedisClient).
      const layer: Layer.Layer<BatchFlow.BatchFlow, unknown, SqlClient.SqlClient> = BatchFlow.layer({
        executors: [Postgres.executor()],
        flushSize: 50
      })
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          for (let i = 0; i < 100; i++) {
            yield* flow.submit(Orders, order(i))
            if (i % 10 === 0) yield* flow.submit(Sessions, { key: `lost${i}`, value: "x" })
          }
          return yield* Effect.flip(flow.write(Sessions, { key: "lost-write", value: "y" }))
        })
      )
      const failure = run.result
      expect(failure._tag).toBe("BatchFailure")
      if (failure._tag !== "BatchFailure") return
      expect(failure).toMatchObject({
        target: "exec14_e_sessions",
        reason: "no_executor",
        outcome: "failed",
        retryable: false
      })
      // Typed rows (BatchFailureOf<SetRow>): `key` without a cast.
      expect(failure.rows.map((row) => row.key)).toContain("lost-write")
      expect(failure.cause).toBeInstanceOf(BatchFlowError.NoExecutor)
      expect(failure.cause).toMatchObject({ target: "exec14_e_sessions", executors: ["postgres"] })
      expect(failure.message).toContain("exec14_e_sessions")

      // Every Sessions row is reported, none retried; the Orders rows are committed.
      const lost = run.failures.filter((f) => f.target === "exec14_e_sessions")
      expect(lost.every((f) => f.reason === "no_executor" && f.outcome === "failed")).toBe(true)
      expect(lost.flatMap((f) => f.rows)).toHaveLength(11)
      expect(run.failures.filter((f) => f.target !== "exec14_e_sessions")).toEqual([])
      expect(run.stats).toMatchObject({ accepted: 111, committed: 100, failed: 11, retries: 0 })
      expect(yield* rowCount("exec14_e_orders")).toBe(100)
      expect(yield* selectOrders("exec14_e_orders")).toEqual(Array.from({ length: 100 }, (_, i) => order(i)))
      // Nothing was written to Redis.
      expect(yield* countKeys(redis, `${P}*`)).toBe(0)
    }).pipe(Effect.provide(pgClient()))
  )
})

describe("rules and a Partial's row errors", () => {
  it.live("row errors are typed as the executor's errors and classified by its typed rules", () =>
    Effect.gen(function* () {
      const Writer = BatchExecutor.forTarget(
        Audit,
        (rows) =>
          Effect.succeed(
            BatchExecutor.partial(
              rows.flatMap((row, index) =>
                row.id % 10 === 3 ? [{ index, error: new Throttled({ attempt: 1 }) }] : []
              )
            )
          ),
        {
          rules: [
            (error) => (error.attempt === 1 ? { retryable: false, reason: "throttled_row" } : undefined)
          ]
        }
      )
      const run = yield* runLayer(BatchFlow.layer({ executors: [Writer], flushSize: 20 }), (flow) =>
        flow.submitAll(
          Audit,
          Array.from({ length: 20 }, (_, i) => auditRow(i))
        )
      )
      expect(run.stats).toMatchObject({ accepted: 20, committed: 18, failed: 2 })
      expect(run.failures.map((f) => f.reason)).toEqual(["throttled_row"])
      expect(run.failures.flatMap((f) => f.rows)).toEqual([auditRow(3), auditRow(13)])
    })
  )

  it.live(
    "a rule that throws leaves no row unsettled: reported as classifier_failed, the others committed",
    () =>
      Effect.gen(function* () {
        const Writer = BatchExecutor.forTarget(Audit, (rows) =>
          Effect.succeed(
            BatchExecutor.partial(
              rows.flatMap((row, index) => (row.id === 1 ? [{ index, error: null }] : []))
            )
          )
        )
        const throwing = (error: unknown) => {
          if (error === null) throw new Error("a bug in a rule")
          return undefined
        }
        const run = yield* runLayer(
          BatchFlow.layer({ executors: [Writer], rules: [throwing], flushSize: 3 }),
          (flow) =>
            Effect.gen(function* () {
              const written = yield* Effect.exit(flow.write(Audit, auditRow(0)))
              const failed = yield* Effect.flip(flow.write(Audit, auditRow(1)))
              return { written, failed }
            })
        )
        expect(Exit.isSuccess(run.result.written)).toBe(true)
        expect(run.result.failed).toMatchObject({ _tag: "BatchFailure", reason: "classifier_failed" })
        expect(run.stats).toMatchObject({ accepted: 2, committed: 1, failed: 1 })
      })
  )
})
