/**
 * Metrics against the real local PostgreSQL: a flow over `Postgres.makeExecutor()` with
 * `BatchFlowMetrics.layer` and `Prometheus.make` on port 0, scraped over HTTP. Good rows commit in
 * batches of 10, 10 and 5; two rows violate NOT NULL and a CHECK constraint (real SQLSTATEs 23502 and
 * 23514, row-level, final); a submit after close is rejected. Fails (never skips) when PG is down.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Layer, Logger, Schema, Scope, Stream } from "effect"
import * as Postgres from "effect-batchflow/Postgres"
import * as Prometheus from "effect-batchflow/Prometheus"
import * as Table from "effect-batchflow/Table"
import { labelsFor, parsePrometheus, sampleValue, startObservedFlow } from "./metrics-helpers.js"
import { count, pgClient } from "./sql-helpers.js"

const table = "metrics_pg_items"

const Items = Table.make(table, {
  columns: Schema.Struct({ id: Schema.Number, name: Schema.NullOr(Schema.String), qty: Schema.Number })
})

const scrape = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, text: await response.text() }
  })

describe("metrics on real PostgreSQL", () => {
  it.live(
    "batch sizes, flushes, induced constraint errors, rejection after close and in-flight on /metrics",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql.unsafe(`DROP TABLE IF EXISTS ${table}`)
          yield* sql.unsafe(
            `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0))`
          )
          const server = yield* Prometheus.make({ port: 0, host: "127.0.0.1" })
          const { instanceId, tags } = labelsFor("metrics-pg")
          const executor = yield* Postgres.makeExecutor()
          const { flow, scope } = yield* startObservedFlow(
            { flushSize: 10, flushInterval: "1 hour", concurrency: 1 },
            executor,
            { database: "memory", instanceId }
          )
          const failuresFiber = yield* Effect.fork(Stream.runCollect(flow.failures))

          // 25 good rows: two size flushes of 10, then a manual flush of 5.
          const good = Array.from({ length: 25 }, (_, i) => ({ id: i + 1, name: `n${i}`, qty: i }))
          yield* flow.submitAll(Items, good)
          yield* flow.flush
          // Induced real errors, each alone in its batch: NOT NULL (23502) and CHECK (23514).
          yield* flow.submit(Items, { id: 100, name: null, qty: 1 })
          yield* flow.flush
          yield* flow.submit(Items, { id: 101, name: "bad", qty: -1 })
          yield* flow.flush
          yield* flow.close
          const rejected = yield* Effect.flip(flow.submit(Items, { id: 200, name: "late", qty: 1 }))
          expect(rejected._tag).toBe("BatchFlowClosed")
          yield* Scope.close(scope, Exit.void)
          const failures = Chunk.toReadonlyArray(yield* Fiber.join(failuresFiber))

          // The database holds exactly the good rows; the bad ones are reported by reason.
          expect(yield* count(table)).toBe(25)
          expect(failures.map((f) => [f.reason, f.rows.length]).sort()).toEqual([
            ["check_violation", 1],
            ["not_null", 1]
          ])

          const response = yield* scrape(server.url)
          expect(response.status).toBe(200)
          const samples = parsePrometheus(response.text)
          const v = (name: string, labels: Record<string, string> = {}) =>
            sampleValue(samples, name, { ...tags, ...labels })

          // Executor calls: 10, 10, 5, 1, 1.
          expect(v("batchflow_batch_size_count")).toBe(5)
          expect(v("batchflow_batch_size_sum")).toBe(27)
          // Flushes: 2 by size, 3 manual; one group (one table) per flush.
          expect(v("batchflow_flushes_total", { trigger: "size" })).toBe(2)
          expect(v("batchflow_flushes_total", { trigger: "manual" })).toBe(3)
          expect(v("batchflow_pipeline_flush_size_count")).toBe(5)
          expect(v("batchflow_pipeline_flush_size_sum")).toBe(27)
          expect(v("batchflow_schema_groups_per_flush_count")).toBe(5)
          expect(v("batchflow_schema_groups_per_flush_sum")).toBe(5)
          // The induced errors: final (not retried), under the SQLSTATE's reason.
          expect(v("batchflow_errors_total", { error_type: "final:not_null" })).toBe(1)
          expect(v("batchflow_errors_total", { error_type: "final:check_violation" })).toBe(1)
          expect(response.text).not.toContain(`error_type="retry:not_null"`)
          expect(v("batchflow_target_failures_total", { target: table, reason: "not_null" })).toBe(1)
          expect(v("batchflow_target_failures_total", { target: table, reason: "check_violation" })).toBe(1)
          expect(v("batchflow_target_rows_total", { target: table, outcome: "committed" })).toBe(25)
          expect(v("batchflow_target_rows_total", { target: table, outcome: "failed" })).toBe(2)
          // After close.
          expect(v("batchflow_submit_rejected_total", { reason: "closed" })).toBe(1)
          expect(v("batchflow_inflight_batches")).toBe(0)
          expect(v("batchflow_pipeline_queue_length")).toBe(0)
        })
      ).pipe(
        Effect.provide(Layer.orDie(pgClient())),
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))
      )
  )
})
