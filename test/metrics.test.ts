import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Logger, Schema, TestClock } from "effect"
import { BatchExecutor, BatchFlowError, Target } from "effect-batchflow"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"
import { settle } from "./helpers-engine.js"
import {
  batchflowSnapshot,
  counter,
  gauge,
  histogram,
  labelsFor,
  startObservedFlow,
  stateOf
} from "./metrics-helpers.js"

const Row = Schema.Struct({ id: Schema.Number, name: Schema.String })
type Row = typeof Row.Type
const Users = Target.make("m_users", { schema: Row, key: ["id"] })
const Orders = Target.make("m_orders", { schema: Row, key: ["id"] })
const Bad = Target.make("m_bad", { schema: Row, key: ["id"] })

const rows = (n: number, from = 0): Array<Row> =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${i}` }))

describe("per flush and per executor call", () => {
  it.effect("one flush of 10 rows over two targets: flush size 10, 2 groups, batch sizes 7 and 3", () =>
    Effect.gen(function* () {
      const { database, instanceId, tags } = labelsFor("flush")
      const { flow, closeScope } = yield* startObservedFlow(
        { flushSize: 10, flushInterval: "1 hour", concurrency: 1 },
        BatchExecutor.memory(),
        { database, instanceId }
      )
      const users = rows(7)
      const orders = rows(3, 100)
      // Interleaved: one flush holds both targets.
      for (let i = 0; i < 10; i++) {
        if (i % 3 === 2 && orders.length > 0) yield* flow.submit(Orders, orders.shift()!)
        else if (users.length > 0) yield* flow.submit(Users, users.shift()!)
        else yield* flow.submit(Orders, orders.shift()!)
      }
      yield* settle()
      expect(counter("batchflow_flushes_total", { ...tags, trigger: "size" })).toBe(1)
      const flushSize = histogram("batchflow_pipeline_flush_size", tags)
      expect([flushSize.count, flushSize.sum]).toEqual([1, 10])
      const groups = histogram("batchflow_schema_groups_per_flush", tags)
      expect([groups.count, groups.sum]).toEqual([1, 2])
      const batchSize = histogram("batchflow_batch_size", tags)
      expect([batchSize.count, batchSize.sum]).toEqual([2, 10])
      // The two samples are 3 and 7: one at or below 4, both at or below 8.
      expect([batchSize.le(2), batchSize.le(4), batchSize.le(8)]).toEqual([0, 1, 2])
      expect(histogram("batchflow_execute_duration_seconds", { ...tags, status: "success" }).count).toBe(2)
      expect(
        histogram("batchflow_pipeline_process_duration_seconds", { ...tags, status: "success" }).count
      ).toBe(1)
      expect(histogram("batchflow_batch_assemble_duration_seconds", tags).count).toBe(1)
      expect(
        counter("batchflow_target_rows_total", { ...tags, target: "m_users", outcome: "committed" })
      ).toBe(7)
      expect(
        counter("batchflow_target_rows_total", { ...tags, target: "m_orders", outcome: "committed" })
      ).toBe(3)
      yield* closeScope()
    })
  )

  it.effect(
    "each flush trigger is counted under its label: size, manual, interval, backpressure, close",
    () =>
      Effect.gen(function* () {
        const { database, instanceId, tags } = labelsFor("triggers")
        const { flow } = yield* startObservedFlow(
          { flushSize: 5, bufferSize: 5, flushInterval: "1 second", concurrency: 1 },
          BatchExecutor.memory(),
          { database, instanceId }
        )
        const flushes = (trigger: string) => counter("batchflow_flushes_total", { ...tags, trigger })

        yield* flow.submitAll(Users, rows(5))
        yield* settle()
        expect(flushes("size")).toBe(1)

        yield* flow.submitAll(Users, rows(2, 10))
        yield* flow.flush
        expect(flushes("manual")).toBe(1)

        yield* flow.submitAll(Users, rows(2, 20))
        yield* settle()
        yield* TestClock.adjust("1 second")
        yield* settle()
        expect(flushes("interval")).toBe(1)

        // 3 rows buffered, then a call with 4 rows that do not fit: the partial batch goes at once.
        yield* flow.submitAll(Users, rows(3, 30))
        yield* settle()
        const waiting = yield* Effect.fork(flow.submitAll(Users, rows(4, 40)))
        yield* settle()
        yield* Fiber.join(waiting)
        expect(flushes("backpressure")).toBe(1)

        yield* flow.close
        expect(flushes("close")).toBe(1)
        expect(flushes("size") + flushes("manual") + flushes("interval")).toBe(3)
        const flushSize = histogram("batchflow_pipeline_flush_size", tags)
        expect(flushSize.sum).toBe(16)
        expect(flushSize.count).toBe(5)
      })
  )
})

describe("gauges", () => {
  it.effect("queue length and in-flight batches follow the batches and end at 0; concurrency is set", () =>
    Effect.gen(function* () {
      const { database, instanceId, tags } = labelsFor("gauges")
      const gate = yield* Deferred.make<void>()
      const executor = BatchExecutor.make(() => Deferred.await(gate))
      const { flow, closeScope } = yield* startObservedFlow(
        { flushSize: 5, bufferSize: 20, flushInterval: "1 hour", concurrency: 1 },
        executor,
        { database, instanceId }
      )
      expect(gauge("batchflow_executor_concurrency", tags)).toBe(1)
      yield* flow.submitAll(Users, rows(8))
      yield* settle()
      // One batch of 5 taken and blocked in the executor, 3 rows left in the buffer.
      expect(gauge("batchflow_pipeline_queue_length", tags)).toBe(3)
      expect(gauge("batchflow_inflight_batches", tags)).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      yield* settle()
      expect(gauge("batchflow_inflight_batches", tags)).toBe(0)
      expect(gauge("batchflow_pipeline_queue_length", tags)).toBe(3)
      yield* flow.flush
      expect(gauge("batchflow_pipeline_queue_length", tags)).toBe(0)
      expect(gauge("batchflow_inflight_batches", tags)).toBe(0)
      yield* closeScope()
    })
  )

  it.effect("the oldest row's wait is sampled per flush: 100 ms for a batch flushed by the interval", () =>
    Effect.gen(function* () {
      const { database, instanceId, tags } = labelsFor("oldest")
      const { flow, closeScope } = yield* startObservedFlow(
        { flushSize: 50, flushInterval: "100 millis", concurrency: 1 },
        BatchExecutor.memory(),
        { database, instanceId }
      )
      yield* flow.submit(Users, rows(1)[0]!)
      yield* settle()
      yield* TestClock.adjust("40 millis")
      yield* flow.submit(Users, rows(1, 1)[0]!)
      yield* settle()
      yield* TestClock.adjust("60 millis")
      yield* settle()
      expect(counter("batchflow_flushes_total", { ...tags, trigger: "interval" })).toBe(1)
      expect(gauge("batchflow_oldest_row_wait_seconds", tags)).toBeCloseTo(0.1, 6)
      const dequeue = histogram("batchflow_pipeline_dequeue_latency_seconds", tags)
      expect(dequeue.count).toBe(1)
      expect(dequeue.sum).toBeCloseTo(0.1, 6)
      yield* closeScope()
    })
  )

  it.effect("enqueue latency samples only the submit that waited for room: 200 ms", () =>
    Effect.gen(function* () {
      const { database, instanceId, tags } = labelsFor("enqueue")
      const gate = yield* Deferred.make<void>()
      const executor = BatchExecutor.make(() => Deferred.await(gate))
      const { flow, closeScope } = yield* startObservedFlow(
        { flushSize: 5, bufferSize: 5, flushInterval: "1 hour", concurrency: 1 },
        executor,
        { database, instanceId }
      )
      for (const row of rows(10)) yield* flow.submit(Users, row)
      yield* settle()
      // 5 rows in the blocked executor, 5 in the full buffer: the next submit waits.
      const waiting = yield* Effect.fork(flow.submit(Users, rows(1, 10)[0]!))
      yield* settle()
      yield* TestClock.adjust("200 millis")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(waiting)
      const enqueue = histogram("batchflow_enqueue_latency_seconds", tags)
      expect(enqueue.count).toBe(1)
      expect(enqueue.sum).toBeCloseTo(0.2, 6)
      yield* closeScope()
    })
  )
})

describe("errors, retries and rejections", () => {
  it.effect(
    "errors_total counts retry:<reason> and final:<reason>; per-target retries, failures and rows",
    () =>
      Effect.gen(function* () {
        const { database, instanceId, tags } = labelsFor("errors")
        const executor = BatchExecutor.make((target) =>
          target === Bad
            ? Effect.fail(
                new BatchFlowError.ExecutorError({ message: "busy", retryable: true, reason: "deadlock" })
              )
            : Effect.void
        )
        const { flow, closeScope } = yield* startObservedFlow(
          {
            flushSize: 4,
            flushInterval: "1 hour",
            concurrency: 2,
            retry: { maxAttempts: 3, backoffBase: "10 millis", maxBackoff: "1 second" }
          },
          executor,
          { database, instanceId, includeTarget: true }
        )
        yield* flow.submitAll(Users, rows(2))
        yield* flow.submitAll(Bad, rows(2, 50))
        yield* closeScope()
        const bad = { ...tags, target: "m_bad" }
        expect(counter("batchflow_errors_total", { ...bad, error_type: "retry:deadlock" })).toBe(2)
        expect(counter("batchflow_errors_total", { ...bad, error_type: "final:deadlock" })).toBe(1)
        expect(counter("batchflow_target_retries_total", bad)).toBe(2)
        expect(counter("batchflow_target_failures_total", { ...bad, reason: "deadlock" })).toBe(1)
        expect(counter("batchflow_target_rows_total", { ...bad, outcome: "failed" })).toBe(2)
        expect(
          counter("batchflow_target_rows_total", { ...tags, target: "m_users", outcome: "committed" })
        ).toBe(2)
        // includeTarget puts the target on the per-execution histograms.
        expect(histogram("batchflow_execute_duration_seconds", { ...bad, status: "fail" }).count).toBe(1)
        expect(
          histogram("batchflow_execute_duration_seconds", { ...tags, target: "m_users", status: "success" })
            .count
        ).toBe(1)
        expect(histogram("batchflow_batch_size", bad).sum).toBe(2)
        // The flush holding a failed group has status fail.
        expect(
          histogram("batchflow_pipeline_process_duration_seconds", { ...tags, status: "fail" }).count
        ).toBe(1)
        expect(gauge("batchflow_inflight_batches", tags)).toBe(0)
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  )

  it.effect(
    "past closeTimeout, buffered rows count as failed (close_timeout), rows being written as unknown_outcome; gauges end at 0",
    () =>
      Effect.gen(function* () {
        const { database, instanceId, tags } = labelsFor("closeTimeout")
        const executor = BatchExecutor.make(() => Effect.sleep("10 seconds"))
        const { flow, closeScope } = yield* startObservedFlow(
          { flushSize: 2, bufferSize: 10, flushInterval: "1 hour", concurrency: 1, closeTimeout: "1 second" },
          executor,
          { database, instanceId }
        )
        yield* flow.submitAll(Users, rows(5))
        yield* settle()
        expect(gauge("batchflow_pipeline_queue_length", tags)).toBe(3)
        yield* closeScope()
        const users = { ...tags, target: "m_users" }
        // The group being written (2 rows, maybe written) and the rows still buffered (3, never sent).
        expect(counter("batchflow_target_rows_total", { ...users, outcome: "failed" })).toBe(3)
        expect(counter("batchflow_target_rows_total", { ...users, outcome: "unknown_outcome" })).toBe(2)
        expect(counter("batchflow_target_failures_total", { ...users, reason: "close_timeout" })).toBe(1)
        expect(counter("batchflow_target_failures_total", { ...users, reason: "unknown_outcome" })).toBe(1)
        expect(gauge("batchflow_pipeline_queue_length", tags)).toBe(0)
        expect(gauge("batchflow_inflight_batches", tags)).toBe(0)
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  )

  it.effect("rejected submits are counted by reason (invalid_row, closed); dropped failures too", () =>
    Effect.gen(function* () {
      const { database, instanceId, tags } = labelsFor("rejected")
      const executor = BatchExecutor.make(() =>
        Effect.fail(
          new BatchFlowError.ExecutorError({ message: "no", retryable: false, reason: "constraint" })
        )
      )
      const { flow } = yield* startObservedFlow(
        { flushSize: 10, flushInterval: "1 hour", failureBufferSize: 1 },
        executor,
        { database, instanceId }
      )
      const invalid = yield* Effect.flip(flow.submit(Users, { id: "x" } as unknown as Row))
      expect(invalid._tag).toBe("InvalidRow")
      yield* flow.submit(Users, rows(1)[0]!)
      yield* flow.flush
      yield* flow.submit(Users, rows(1, 1)[0]!)
      yield* flow.flush
      yield* flow.close
      const closed = yield* Effect.flip(flow.submit(Users, rows(1, 2)[0]!))
      expect(closed._tag).toBe("BatchFlowClosed")
      expect(counter("batchflow_submit_rejected_total", { ...tags, reason: "invalid_row" })).toBe(1)
      expect(counter("batchflow_submit_rejected_total", { ...tags, reason: "closed" })).toBe(1)
      // Nobody reads `failures` and it holds one: the second failure is dropped.
      expect(counter("batchflow_pipeline_dropped_total", { ...tags, reason: "failure_buffer_full" })).toBe(1)
      expect(counter("batchflow_errors_total", { ...tags, error_type: "final:constraint" })).toBe(2)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  )
})

describe("backend reports and opting out", () => {
  it.effect(
    "reportOperation feeds the operation and SQL histograms and the dedupe counter (only when > 0)",
    () =>
      Effect.gen(function* () {
        const { database, instanceId, tags } = labelsFor("operation")
        const executor = BatchExecutor.make((target, batch) =>
          BatchFlowMetrics.reportOperation({
            target: target.name,
            backend: "sql",
            operation: "upsert",
            inputRows: batch.length,
            outputRows: batch.length - 1,
            args: (batch.length - 1) * 2,
            dedupe: { strategy: "update", deduplicated: 1, merged: 0 }
          })
        )
        const { flow, closeScope } = yield* startObservedFlow(
          { flushSize: 10, flushInterval: "1 hour" },
          executor,
          { database, instanceId }
        )
        yield* flow.submitAll(Users, rows(10))
        yield* flow.flush
        const op = { ...tags, backend: "sql", operation: "upsert" }
        expect(histogram("batchflow_operation_generated_items", { ...op, kind: "input" }).sum).toBe(10)
        expect(histogram("batchflow_operation_generated_items", { ...op, kind: "output" }).sum).toBe(9)
        expect(histogram("batchflow_operation_generated_args", op).sum).toBe(18)
        expect(histogram("batchflow_sql_generated_rows", { ...tags, kind: "input" }).sum).toBe(10)
        expect(histogram("batchflow_sql_generated_rows", { ...tags, kind: "output" }).sum).toBe(9)
        expect(histogram("batchflow_sql_generated_args", tags).sum).toBe(18)
        expect(
          counter("batchflow_sql_deduplicated_rows_total", {
            ...tags,
            strategy: "update",
            kind: "deduplicated"
          })
        ).toBe(1)
        expect(
          stateOf("batchflow_sql_deduplicated_rows_total", { ...tags, strategy: "update", kind: "merged" })
        ).toBe(undefined)
        yield* closeScope()
      })
  )

  it.effect(
    "without BatchFlowMetrics.layer a flow updates no metric (and reportOperation does nothing)",
    () =>
      Effect.gen(function* () {
        const before = batchflowSnapshot()
        const executor = BatchExecutor.make((target, batch) =>
          BatchFlowMetrics.reportOperation({
            target: target.name,
            backend: "sql",
            operation: "insert",
            inputRows: batch.length,
            outputRows: batch.length,
            args: batch.length
          })
        )
        const { flow, closeScope } = yield* startObservedFlow({ flushSize: 10 }, executor, undefined)
        yield* flow.submitAll(Users, rows(25))
        yield* flow.flush
        yield* closeScope()
        expect(batchflowSnapshot()).toEqual(before)
      })
  )

  it("every metric is named batchflow_*, counters end in _total, and the names are unique", () => {
    const names = BatchFlowMetrics.metricNames
    expect(names.length).toBe(25)
    expect(new Set(names).size).toBe(names.length)
    for (const name of names) expect(name).toMatch(/^batchflow_[a-z_]+$/)
    const counters = [
      BatchFlowMetrics.submitRejected,
      BatchFlowMetrics.flushes,
      BatchFlowMetrics.dropped,
      BatchFlowMetrics.errors,
      BatchFlowMetrics.targetRows,
      BatchFlowMetrics.targetLateRows,
      BatchFlowMetrics.targetRetries,
      BatchFlowMetrics.targetFailures,
      BatchFlowMetrics.sqlDeduplicatedRows
    ]
    expect(counters.length).toBe(names.filter((n) => n.endsWith("_total")).length)
  })
})
