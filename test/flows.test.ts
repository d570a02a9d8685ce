/**
 * Flow options and flows of their own (issue 14), on the real PostgreSQL: the `rules` and `metrics`
 * options, two flows side by side declared with `BatchFlow.Tag`, typed failures (`isFailureOf`,
 * `write`'s `BatchFailureOf<A>`), `layerConfig` merging Config-read options over the code's, and the
 * deprecated service-based paths that still work.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Data, Effect, Layer, Schema } from "effect"
import {
  BatchExecutor,
  BatchFlow,
  BatchFlowConfig,
  type BatchFlowError,
  BatchFlowMetrics,
  Retry,
  Table,
  Target
} from "effect-batchflow"
import * as Postgres from "effect-batchflow/Postgres"
import { batchSizes, recreateTable, rowCount, runLayer, txColumn } from "./executor-helpers.js"
import { batchflowSnapshot, counter, histogram } from "./metrics-helpers.js"
import { pgClient } from "./sql-helpers.js"

const unique = (name: string) => `${name}-${Math.random().toString(36).slice(2, 10)}`

/** The environment as the default provider reads it: `BATCHFLOW_*` keys, segments joined by `_`. */
const env = (entries: Record<string, string>) =>
  Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries)), { pathDelim: "_" }))

/** Polls `read` until `check` holds, at most `millis`; returns the last value read. */
const eventually = <A, E, R>(read: Effect.Effect<A, E, R>, check: (a: A) => boolean, millis = 5_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + millis
    while (true) {
      const value = yield* read
      if (check(value) || Date.now() > deadline) return value
      yield* Effect.sleep("10 millis")
    }
  })

const Row = Schema.Struct({ id: Schema.Number, name: Schema.String })
type Row = typeof Row.Type
const rows = (n: number, from = 0): Array<Row> =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${from + i}` }))

const selectRows = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ id: unknown; name: string }>(`SELECT id, name FROM ${table} ORDER BY id`),
      (found) => found.map((r) => ({ id: Number(r.id), name: r.name }))
    )
  )

/** A custom error of the application, unknown to every executor and to the engine. */
class Flaky extends Data.TaggedError("Flaky")<{ readonly attempt: number }> {}

const fastRetry = { backoffBase: "1 millis", maxBackoff: "5 millis", jitter: 0 } as const

/**
 * A `forTarget` executor that fails with `Flaky` on its first `failures` attempts of each call,
 * then inserts the rows into `table`. It has no rules of its own: `Flaky` is classified by the flow.
 */
const flakyWriter = <A extends Row>(target: Target.Target<A>, table: string, failures: number) => {
  const attempts: Array<number> = []
  const executor = BatchExecutor.forTarget(
    target,
    (batch, attempt): Effect.Effect<void, Flaky | SqlError, SqlClient.SqlClient> =>
      Effect.gen(function* () {
        attempts.push(attempt.number)
        if (attempt.number <= failures) return yield* new Flaky({ attempt: attempt.number })
        const sql = yield* SqlClient.SqlClient
        const values = batch.map((row) => ({ id: row.id, name: row.name }))
        yield* sql`INSERT INTO ${sql(table)} ${sql.insert(values)}`
      })
  )
  return { executor, attempts }
}

/**
 * Every series of the metrics `BatchFlowMetrics` defines (the ones the `metrics` option turns on).
 * Not `Sql`'s per-table dedupe counters, which are always on (see docs/guides/sql.md).
 */
const flowMetrics = () => {
  const names = new Set(BatchFlowMetrics.metricNames)
  return new Map([...batchflowSnapshot()].filter(([key]) => names.has(key.slice(0, key.indexOf("{")))))
}

const flakyRule: Retry.Rule = (error) =>
  error instanceof Flaky ? { retryable: true, reason: "flaky" } : undefined

// ---------------------------------------------------------------- rules and metrics options

const MetricItems = Table.make("exec14_f_metric_items", { columns: Row, key: ["id"] })
const FlakyNotes = Target.make("exec14_f_flaky_notes", { schema: Row })

describe("the rules and metrics options", () => {
  it.live("rules make a custom error retryable; metrics move for the flow's own labels", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_metric_items", "id BIGINT PRIMARY KEY, name TEXT NOT NULL")
      yield* recreateTable("exec14_f_flaky_notes", "id BIGINT PRIMARY KEY, name TEXT NOT NULL")
      const instanceId = unique("exec14-metrics")
      const tags = { database: "x", instance_id: instanceId }
      const flaky = flakyWriter(FlakyNotes, "exec14_f_flaky_notes", 2)
      const layer = BatchFlow.layer({
        executors: [Postgres.executor(), flaky.executor],
        flushSize: 200,
        retry: fastRetry,
        rules: [flakyRule],
        metrics: { database: "x", instanceId }
      })
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.submitAll(MetricItems, rows(120))
          yield* flow.submitAll(FlakyNotes, rows(30))
        })
      )
      // Retried, then written.
      expect(run.failures).toEqual([])
      expect(run.stats).toMatchObject({ accepted: 150, committed: 150, failed: 0 })
      expect(run.stats.retries).toBeGreaterThanOrEqual(2)
      expect(flaky.attempts.slice(0, 3)).toEqual([1, 2, 3])
      expect(yield* selectRows("exec14_f_flaky_notes")).toEqual(rows(30))
      expect(yield* selectRows("exec14_f_metric_items")).toEqual(rows(120))

      // The metrics of this flow, under its labels.
      const rowsOf = (target: string) =>
        counter("batchflow_target_rows_total", { ...tags, target, outcome: "committed" })
      expect(rowsOf("exec14_f_metric_items")).toBe(120)
      expect(rowsOf("exec14_f_flaky_notes")).toBe(30)
      expect(
        counter("batchflow_target_retries_total", { ...tags, target: "exec14_f_flaky_notes" })
      ).toBeGreaterThanOrEqual(2)
      expect(
        counter("batchflow_errors_total", { ...tags, error_type: "retry:flaky" })
      ).toBeGreaterThanOrEqual(2)
      expect(histogram("batchflow_batch_size", tags).sum).toBe(150)
      // The SQL executor's own report reached the flow's metrics too.
      expect(histogram("batchflow_sql_generated_rows", { ...tags, kind: "input" }).sum).toBe(120)
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("without the options: the custom error is final, and no BatchFlowMetrics metric moves", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_metric_items", "id BIGINT PRIMARY KEY, name TEXT NOT NULL")
      yield* recreateTable("exec14_f_flaky_notes", "id BIGINT PRIMARY KEY, name TEXT NOT NULL")
      const flaky = flakyWriter(FlakyNotes, "exec14_f_flaky_notes", 2)
      const layer = BatchFlow.layer({
        executors: [Postgres.executor(), flaky.executor],
        flushSize: 200,
        retry: fastRetry
      })
      const before = flowMetrics()
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.submitAll(MetricItems, rows(50))
          return yield* Effect.flip(flow.write(FlakyNotes, { id: 1, name: "note" }))
        })
      )
      const after = flowMetrics()
      // No rule answers Flaky: not retried, reported non_retryable.
      expect(run.result).toMatchObject({
        _tag: "BatchFailure",
        reason: "non_retryable",
        retryable: false,
        attempts: 1
      })
      expect(flaky.attempts).toEqual([1])
      expect(run.stats).toMatchObject({ committed: 50, failed: 1, retries: 0 })
      expect(yield* rowCount("exec14_f_flaky_notes")).toBe(0)
      expect(yield* rowCount("exec14_f_metric_items")).toBe(50)
      // The flow wrote 50 rows, and not one series of BatchFlowMetrics changed, whatever its labels.
      expect(after).toEqual(before)
    }).pipe(Effect.provide(pgClient()))
  )
})

// ---------------------------------------------------------------- two flows side by side

class Events extends BatchFlow.Tag("exec14/Events")<Events>() {}
class AuditFlow extends BatchFlow.Tag("exec14/AuditFlow")<AuditFlow>() {}

const EventsTable = Table.make("exec14_f_events", { columns: Row, key: ["id"] })
const AuditTable = Table.make("exec14_f_audit", { columns: Row, key: ["id"] })

const EventsLive = Events.layer({ executors: [Postgres.executor()], flushSize: 10, flushInterval: "1 hour" })
const AuditLive = AuditFlow.layer({
  executors: [Postgres.executor()],
  flushSize: 1000,
  flushInterval: "1 hour"
})

const twoFlows = Effect.gen(function* () {
  const events: BatchFlow.BatchFlow = yield* Events
  const audit: BatchFlow.BatchFlow = yield* AuditFlow
  return { events, audit }
})

describe("two flows declared with BatchFlow.Tag", () => {
  it.live("have their own flush sizes, flushes and close, in one program", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_events", `id BIGINT PRIMARY KEY, name TEXT NOT NULL, ${txColumn}`)
      yield* recreateTable("exec14_f_audit", `id BIGINT PRIMARY KEY, name TEXT NOT NULL, ${txColumn}`)
      const program = Effect.gen(function* () {
        const { events, audit } = yield* twoFlows
        expect(events).not.toBe(audit)

        // Full batches only (the interval is an hour): 10 rows per batch here, 1000 there.
        yield* events.submitAll(EventsTable, rows(100))
        yield* audit.submitAll(AuditTable, rows(1000))
        yield* events.flush
        yield* audit.flush
        expect(yield* batchSizes("exec14_f_events")).toEqual(Array.from({ length: 10 }, () => 10))
        expect(yield* batchSizes("exec14_f_audit")).toEqual([1000])

        // Flushing one leaves the other's partial batch buffered.
        yield* audit.submitAll(AuditTable, rows(5, 1000))
        yield* events.submitAll(EventsTable, rows(5, 100))
        yield* events.flush
        expect(yield* rowCount("exec14_f_events")).toBe(105)
        expect(yield* rowCount("exec14_f_audit")).toBe(1000)
        expect((yield* audit.stats).buffered).toBe(5)

        // Closing one leaves the other open.
        yield* events.close
        expect(yield* events.isDone).toBe(true)
        const closed = yield* Effect.flip(events.submit(EventsTable, { id: 999, name: "late" }))
        expect(closed._tag).toBe("BatchFlowClosed")
        expect(yield* audit.isDone).toBe(false)
        yield* audit.submit(AuditTable, { id: 1005, name: "n1005" })
        yield* audit.flush
        expect(yield* rowCount("exec14_f_audit")).toBe(1006)
        expect(yield* batchSizes("exec14_f_audit")).toEqual([1000, 6])
        expect(yield* batchSizes("exec14_f_events")).toEqual([...Array.from({ length: 10 }, () => 10), 5])
        return { events: yield* events.stats, audit: yield* audit.stats }
      })
      const stats = yield* program.pipe(Effect.provide(Layer.merge(EventsLive, AuditLive)))
      expect(stats.events).toMatchObject({ accepted: 105, committed: 105 })
      expect(stats.audit).toMatchObject({ accepted: 1006, committed: 1006 })
      expect(yield* selectRows("exec14_f_audit")).toEqual(rows(1006))
    }).pipe(Effect.provide(pgClient()))
  )

  it("both flows are in the program's requirements: one layer missing is a type error", () => {
    const both = twoFlows.pipe(Effect.provide(Layer.merge(EventsLive, AuditLive)))
    const needsOnlySql: Effect.Effect<unknown, unknown, SqlClient.SqlClient> = both
    const onlyEvents = twoFlows.pipe(Effect.provide(EventsLive))
    // @ts-expect-error AuditFlow's layer is missing: the program still requires AuditFlow
    const missingAudit: Effect.Effect<unknown, unknown, SqlClient.SqlClient> = onlyEvents
    const onlyAudit = twoFlows.pipe(Effect.provide(AuditLive))
    // @ts-expect-error Events' layer is missing: the program still requires Events
    const missingEvents: Effect.Effect<unknown, unknown, SqlClient.SqlClient> = onlyAudit
    // A flow's tag is its own service: its layer does not provide the default BatchFlow tag.
    // @ts-expect-error Events.layer provides Events, not BatchFlow.BatchFlow
    const notDefault: Layer.Layer<BatchFlow.BatchFlow, unknown, SqlClient.SqlClient> = EventsLive
    expect([needsOnlySql, missingAudit, missingEvents, notDefault].every((x) => x !== undefined)).toBe(true)
    expect(Events.key).toBe("exec14/Events")
    expect(AuditFlow.key).toBe("exec14/AuditFlow")
  })
})

// ---------------------------------------------------------------- typed failures

const People = Table.make("exec14_f_people", {
  columns: Schema.Struct({ id: Schema.Number, age: Schema.Number }),
  key: ["id"]
})
type Person = Target.Row<typeof People>
/** A target no executor of the flow accepts: its rows fail with reason no_executor. */
const Badges = Target.make("exec14_f_badges", { schema: Schema.Struct({ code: Schema.String }) })

describe("typed failures", () => {
  it.live("isFailureOf narrows to the target's rows; write fails with BatchFailureOf<A>", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_people", "id BIGINT PRIMARY KEY, age INT NOT NULL CHECK (age >= 0)")
      const layer = BatchFlow.layer({ executors: [Postgres.executor()], flushSize: 100 })
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.submitAll(People, [
            { id: 1, age: 30 },
            { id: 2, age: -5 },
            { id: 3, age: 40 }
          ])
          yield* flow.flush
          // PostgreSQL refuses the row (CHECK): write fails with the typed failure.
          const ages = yield* flow.write(People, { id: 4, age: -7 }).pipe(
            Effect.as<ReadonlyArray<number>>([]),
            Effect.catchTag("BatchFailure", (failure) => Effect.succeed(failure.rows.map((row) => row.age)))
          )
          yield* flow.submit(Badges, { code: "gold" })
          return ages
        })
      )
      expect(run.result).toEqual([-7])

      const people = run.failures.filter(BatchFlow.isFailureOf(People))
      const badges = run.failures.filter(BatchFlow.isFailureOf(Badges))
      expect(people.length + badges.length).toBe(run.failures.length)
      // Typed rows: `age` is a number, `code` a string, no cast.
      const failedAges: Array<number> = people.flatMap((f) => f.rows.map((row) => row.age))
      const failedCodes: Array<string> = badges.flatMap((f) => f.rows.map((row) => row.code))
      expect(failedAges.sort((a, b) => a - b)).toEqual([-7, -5])
      expect(failedCodes).toEqual(["gold"])
      expect(people.every((f) => f.reason === "check_violation")).toBe(true)
      expect(badges.map((f) => f.reason)).toEqual(["no_executor"])

      // Runtime: true for its target, false for another.
      const personFailure = people[0]!
      const badgeFailure = badges[0]!
      expect(BatchFlow.isFailureOf(People)(personFailure)).toBe(true)
      expect(BatchFlow.isFailureOf(Badges)(personFailure)).toBe(false)
      expect(BatchFlow.isFailureOf(Badges)(badgeFailure)).toBe(true)
      expect(BatchFlow.isFailureOf(People)(badgeFailure)).toBe(false)

      // Before narrowing the rows are unknown; after, they are the target's.
      const untyped: BatchFlowError.BatchFailure = personFailure
      // @ts-expect-error a BatchFailure's rows are unknown until narrowed
      void untyped.rows[0]?.age
      if (BatchFlow.isFailureOf(People)(untyped)) {
        const first: Person = untyped.rows[0]!
        expect(first.age).toBeLessThan(0)
      } else {
        expect.fail("a failure of People")
      }

      // The database decided: only the valid rows are there.
      const stored = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.unsafe<{ id: unknown; age: number }>("SELECT id, age FROM exec14_f_people ORDER BY id")
      )
      expect(stored.map((r) => [Number(r.id), r.age])).toEqual([
        [1, 30],
        [3, 40]
      ])
      expect(run.stats).toMatchObject({ accepted: 5, committed: 2, failed: 3 })
    }).pipe(Effect.provide(pgClient()))
  )
})

// ---------------------------------------------------------------- layerConfig

const ConfigItems = Table.make("exec14_f_config_items", { columns: Row, key: ["id"] })
const Outbox = Target.make("exec14_f_outbox", { schema: Row })

describe("layerConfig merges the options read from Config over the code's", () => {
  it("merge: values read win, undefined ones leave the code's, retry field by field", () => {
    const merged = BatchFlowConfig.merge(
      { flushSize: 500, flushInterval: "1 hour", retry: { maxAttempts: 3, jitter: 0 } },
      {
        flushSize: 7,
        flushInterval: undefined,
        concurrency: undefined,
        retry: { maxAttempts: undefined, backoffBase: "200 millis" }
      }
    )
    expect(merged).toMatchObject({
      flushSize: 7,
      flushInterval: "1 hour",
      retry: { maxAttempts: 3, jitter: 0, backoffBase: "200 millis" }
    })
  })

  it.live("BATCHFLOW_FLUSH_SIZE from the environment and flushInterval and executors from code apply", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_config_items", `id BIGINT PRIMARY KEY, name TEXT NOT NULL, ${txColumn}`)
      const layer = BatchFlow.layerConfig({
        executors: [Postgres.executor()],
        flushSize: 500,
        flushInterval: "1 hour"
      }).pipe(Layer.provide(env({ BATCHFLOW_FLUSH_SIZE: "7" })))
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.submitAll(ConfigItems, rows(20))
          // Two full batches of 7 (the environment's size, not the code's 500) are written…
          yield* eventually(rowCount("exec14_f_config_items"), (n) => n >= 14)
          // …and the last 6 wait: the code's interval is an hour (the default would be 100 ms).
          yield* Effect.sleep("400 millis")
          const waiting = { stored: yield* rowCount("exec14_f_config_items"), stats: yield* flow.stats }
          yield* flow.flush
          return waiting
        })
      )
      expect(run.result.stored).toBe(14)
      expect(run.result.stats.buffered).toBe(6)
      expect(yield* batchSizes("exec14_f_config_items")).toEqual([7, 7, 6])
      expect(yield* selectRows("exec14_f_config_items")).toEqual(rows(20))
      expect(run.stats).toMatchObject({ accepted: 20, committed: 20 })
    }).pipe(Effect.provide(pgClient()))
  )

  it.live(
    "a retry field given in code survives when the environment sets another one (Tag.layerConfig)",
    () =>
      Effect.gen(function* () {
        class Outgoing extends BatchFlow.Tag("exec14/Outgoing")<Outgoing>() {}
        // Always Flaky: attempted until the retry settings end it.
        const times: Array<number> = []
        const Failing = BatchExecutor.forTarget(Outbox, (_batch, attempt) =>
          Effect.suspend(() => {
            times.push(Date.now())
            return Effect.fail(new Flaky({ attempt: attempt.number }))
          })
        )
        const layer = Outgoing.layerConfig({
          executors: [Failing],
          rules: [flakyRule],
          flushSize: 1,
          // maxAttempts and jitter from code; backoffBase from the environment.
          retry: { maxAttempts: 3, jitter: 0 }
        }).pipe(Layer.provide(env({ BATCHFLOW_RETRY_BACKOFF_BASE: "200 millis" })))
        const failure = yield* Effect.gen(function* () {
          const flow = yield* Outgoing
          return yield* Effect.flip(flow.write(Outbox, { id: 1, name: "n1" }))
        }).pipe(Effect.provide(layer))
        // The code's maxAttempts (3, not the default 20) ended the retries…
        expect(failure).toMatchObject({ _tag: "BatchFailure", reason: "flaky", retryable: true, attempts: 3 })
        expect(times).toHaveLength(3)
        // …after the environment's backoff (200 ms then 400 ms, not the default 20 ms then 40 ms).
        const gaps = times.slice(1).map((t, i) => t - times[i]!)
        expect(gaps[0]).toBeGreaterThanOrEqual(190)
        expect(gaps[1]).toBeGreaterThanOrEqual(390)
      })
  )
})

// ---------------------------------------------------------------- deprecated paths

const Legacy = Target.make("exec14_f_legacy", { schema: Row })
const LegacyItems = Table.make("exec14_f_legacy_items", { columns: Row, key: ["id"] })

describe("deprecated paths still work", () => {
  it.effect("BatchFlow.layer(options) with BatchExecutor.layerMemory writes every target", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const layer = BatchFlow.layer({ flushSize: 10 }).pipe(Layer.provide(BatchExecutor.layerMemory(memory)))
      const run = yield* runLayer(layer, (flow) =>
        Effect.gen(function* () {
          yield* flow.submitAll(Legacy, rows(25))
          yield* flow.submitAll(LegacyItems, rows(5))
        })
      )
      expect(run.failures).toEqual([])
      expect(run.stats).toMatchObject({ accepted: 30, committed: 30 })
      expect(memory.rowsOf("exec14_f_legacy")).toEqual(rows(25))
      expect(memory.rowsOf("exec14_f_legacy_items")).toEqual(rows(5))
    })
  )

  it.live("Retry.layer and BatchFlowMetrics.layer still apply to a flow given executors", () =>
    Effect.gen(function* () {
      yield* recreateTable("exec14_f_legacy_items", "id BIGINT PRIMARY KEY, name TEXT NOT NULL")
      const instanceId = unique("exec14-legacy")
      const flaky = flakyWriter(LegacyItems, "exec14_f_legacy_items", 1)
      const layer = BatchFlow.layer({ executors: [flaky.executor], retry: fastRetry }).pipe(
        Layer.provide(Retry.layer(flakyRule)),
        Layer.provide(BatchFlowMetrics.layer({ database: "legacy", instanceId }))
      )
      const run = yield* runLayer(layer, (flow) => flow.submitAll(LegacyItems, rows(12)))
      expect(run.failures).toEqual([])
      expect(run.stats).toMatchObject({ committed: 12 })
      expect(run.stats.retries).toBeGreaterThanOrEqual(1)
      expect(yield* selectRows("exec14_f_legacy_items")).toEqual(rows(12))
      expect(
        counter("batchflow_target_rows_total", {
          database: "legacy",
          instance_id: instanceId,
          target: "exec14_f_legacy_items",
          outcome: "committed"
        })
      ).toBe(12)
    }).pipe(Effect.provide(pgClient()))
  )
})
