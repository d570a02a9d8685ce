import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Logger, Schema, Scope } from "effect"
import { BatchExecutor, BatchFlowError, Target } from "effect-batchflow"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"
import * as Prometheus from "effect-batchflow/Prometheus"
import {
  labelsFor,
  parsePrometheus,
  type Sample,
  sampleValue,
  select,
  startObservedFlow
} from "./metrics-helpers.js"

const Row = Schema.Struct({ id: Schema.Number, name: Schema.String })
type Row = typeof Row.Type
const Users = Target.make("p_users", { schema: Row, key: ["id"] })
const Orders = Target.make("p_orders", { schema: Row, key: ["id"] })
const Bad = Target.make("p_bad", { schema: Row, key: ["id"] })
/** Its one write answers after the flow gave up on it: reported unknown_outcome, then a late commit. */
const Late = Target.make("p_late", { schema: Row, key: ["id"] })

const rows = (n: number, from = 0): Array<Row> =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${i}` }))

const scrape = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      text: await response.text()
    }
  })

/** Polls `check` every 5 ms (real time) until it holds. */
const eventually = (check: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 400; i++) {
      if (yield* check) return
      yield* Effect.sleep("5 millis")
    }
    throw new Error("condition not reached")
  })

/**
 * One flow over a scripted executor, driven through every observation point, then /metrics scraped
 * over HTTP. Returns the parsed samples and the flow's labels.
 */
const runAndScrape = Effect.gen(function* () {
  const server = yield* Prometheus.make({ port: 0, host: "127.0.0.1" })
  const { database, instanceId, tags } = labelsFor("prometheus")
  const gate = yield* Deferred.make<void>()
  let calls = 0
  const executor = BatchExecutor.make((target, batch) => {
    if (target === Late) return Effect.sleep("600 millis")
    if (target === Bad) {
      return Effect.fail(
        new BatchFlowError.ExecutorError({ message: "busy", retryable: true, reason: "deadlock" })
      )
    }
    const report = BatchFlowMetrics.reportOperation({
      target: target.name,
      backend: "sql",
      operation: "insert",
      inputRows: batch.length,
      outputRows: batch.length,
      args: batch.length * 2,
      dedupe: { strategy: "ignore", deduplicated: batch.length >= 10 ? 1 : 0, merged: 0 }
    })
    return calls++ === 0 ? Effect.zipRight(report, Deferred.await(gate)) : report
  })
  const { flow, scope } = yield* startObservedFlow(
    {
      flushSize: 10,
      bufferSize: 10,
      flushInterval: "1 hour",
      concurrency: 1,
      failureBufferSize: 1,
      timeout: "200 millis",
      retry: { maxAttempts: 2, backoffBase: "1 millis", maxBackoff: "2 millis" }
    },
    executor,
    { database, instanceId }
  )
  // A full flush of two targets (7 + 3 rows), held in the executor.
  yield* flow.submitAll(Users, rows(7))
  yield* flow.submitAll(Orders, rows(3, 100))
  // Two groups in flight: users in the executor, orders waiting for the permit.
  yield* eventually(Effect.map(flow.stats, (s) => s.inFlight === 2 && s.buffered === 0))
  // A full buffer, then a submit that waits for room for ~30 ms.
  yield* flow.submitAll(Users, rows(10, 200))
  const waiting = yield* Effect.fork(flow.submit(Users, rows(1, 300)[0]!))
  yield* Effect.sleep("30 millis")
  yield* Deferred.succeed(gate, undefined)
  yield* Fiber.join(waiting)
  yield* flow.flush
  // Two failing batches (one retry each); nobody reads `failures`, which holds one: one is dropped.
  yield* flow.submit(Bad, rows(1, 400)[0]!)
  yield* flow.flush
  yield* flow.submit(Bad, rows(1, 401)[0]!)
  yield* flow.flush
  yield* Effect.flip(flow.submit(Users, { id: 1 } as unknown as Row))
  // Abandoned at 400 ms (timeout + grace), answers at 600 ms.
  yield* flow.submit(Late, rows(1, 450)[0]!)
  yield* flow.flush
  yield* eventually(Effect.map(flow.stats, (s) => s.lateCommitted === 1))
  yield* flow.close
  yield* Effect.flip(flow.submit(Users, rows(1, 500)[0]!))
  yield* Scope.close(scope, Exit.void)

  const response = yield* scrape(server.url)
  expect(response.status).toBe(200)
  expect(response.type).toContain("text/plain")
  return { samples: parsePrometheus(response.text), text: response.text, tags, server }
}).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))

/** The metric names a Grafana dashboard's queries (and variable queries) use. */
const dashboardMetrics = (): Set<string> => {
  const dashboard = JSON.parse(
    readFileSync(new URL("../examples/grafana-dashboard.json", import.meta.url), "utf8")
  )
  const exprs: Array<string> = []
  const visit = (
    panels: ReadonlyArray<{ targets?: Array<{ expr?: string }>; panels?: ReadonlyArray<never> }>
  ) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr !== undefined) exprs.push(target.expr)
      visit(panel.panels ?? [])
    }
  }
  visit(dashboard.panels)
  for (const variable of dashboard.templating.list)
    if (typeof variable.definition === "string") exprs.push(variable.definition)
  const names = new Set<string>()
  for (const expr of exprs) for (const [name] of expr.matchAll(/\bbatchflow_[a-z_]+/g)) names.add(name)
  return names
}

/** A dashboard series name → the metric it belongs to (histograms add _bucket, _sum, _count). */
const metricOf = (series: string): string => {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = series.slice(0, -suffix.length)
    if (series.endsWith(suffix) && BatchFlowMetrics.metricNames.includes(base)) return base
  }
  return series
}

describe("Prometheus /metrics", () => {
  it.live("after a run, /metrics over HTTP shows the flow's values", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { samples, tags } = yield* runAndScrape
        const v = (name: string, labels: Record<string, string> = {}) =>
          sampleValue(samples, name, { ...tags, ...labels })

        // Flushes: 10 (size), 10 (size), then 1, 1, 1, 1 (manual).
        expect(v("batchflow_flushes_total", { trigger: "size" })).toBe(2)
        expect(v("batchflow_flushes_total", { trigger: "manual" })).toBe(4)
        expect(v("batchflow_pipeline_flush_size_count")).toBe(6)
        expect(v("batchflow_pipeline_flush_size_sum")).toBe(24)
        expect(v("batchflow_schema_groups_per_flush_sum")).toBe(7)
        // Executor calls: users 7, orders 3, users 10, users 1, bad 1, bad 1, late 1.
        expect(v("batchflow_batch_size_count")).toBe(7)
        expect(v("batchflow_batch_size_sum")).toBe(24)
        expect(v("batchflow_batch_size_bucket", { le: "4" })).toBe(5)
        expect(v("batchflow_batch_size_bucket", { le: "8" })).toBe(6)
        expect(v("batchflow_execute_duration_seconds_count", { status: "success" })).toBe(4)
        expect(v("batchflow_execute_duration_seconds_count", { status: "fail" })).toBe(3)
        expect(v("batchflow_pipeline_process_duration_seconds_count", { status: "success" })).toBe(3)
        expect(v("batchflow_pipeline_process_duration_seconds_count", { status: "fail" })).toBe(3)
        // Errors, retries, failures, drops, rejections.
        expect(v("batchflow_errors_total", { error_type: "retry:deadlock" })).toBe(2)
        expect(v("batchflow_errors_total", { error_type: "final:deadlock" })).toBe(2)
        expect(v("batchflow_target_retries_total", { target: "p_bad" })).toBe(2)
        expect(v("batchflow_target_failures_total", { target: "p_bad", reason: "deadlock" })).toBe(2)
        expect(v("batchflow_target_rows_total", { target: "p_bad", outcome: "failed" })).toBe(2)
        // The abandoned write: reported unknown_outcome, then its late answer.
        expect(v("batchflow_errors_total", { error_type: "final:unknown_outcome" })).toBe(1)
        expect(v("batchflow_target_failures_total", { target: "p_late", reason: "unknown_outcome" })).toBe(1)
        expect(v("batchflow_target_rows_total", { target: "p_late", outcome: "unknown_outcome" })).toBe(1)
        expect(v("batchflow_target_late_rows_total", { target: "p_late", outcome: "committed" })).toBe(1)
        expect(v("batchflow_target_rows_total", { target: "p_users", outcome: "committed" })).toBe(18)
        expect(v("batchflow_target_rows_total", { target: "p_orders", outcome: "committed" })).toBe(3)
        expect(v("batchflow_pipeline_dropped_total", { reason: "failure_buffer_full" })).toBe(2)
        expect(v("batchflow_submit_rejected_total", { reason: "invalid_row" })).toBe(1)
        expect(v("batchflow_submit_rejected_total", { reason: "closed" })).toBe(1)
        // The one submit that waited, ~30 ms.
        expect(v("batchflow_enqueue_latency_seconds_count")).toBe(1)
        expect(v("batchflow_enqueue_latency_seconds_sum")).toBeGreaterThanOrEqual(0.02)
        // Gauges after close.
        expect(v("batchflow_inflight_batches")).toBe(0)
        expect(v("batchflow_pipeline_queue_length")).toBe(0)
        expect(v("batchflow_executor_concurrency")).toBe(1)
        // Backend reports (4 successful calls; the failing target reports nothing).
        expect(v("batchflow_sql_generated_rows_sum", { kind: "input" })).toBe(21)
        expect(v("batchflow_sql_generated_args_sum")).toBe(42)
        expect(
          v("batchflow_operation_generated_items_count", {
            backend: "sql",
            operation: "insert",
            kind: "output"
          })
        ).toBe(4)
        expect(v("batchflow_sql_deduplicated_rows_total", { strategy: "ignore", kind: "deduplicated" })).toBe(
          1
        )
      })
    )
  )

  it.live(
    "every metric has a description, and every metric the Grafana dashboard queries is on /metrics",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { samples, text, tags } = yield* runAndScrape
          for (const name of BatchFlowMetrics.metricNames) {
            expect(text).toMatch(new RegExp(`# HELP ${name} \\S`))
            expect(text).not.toMatch(new RegExp(`# HELP ${name} description missing`))
          }
          const queried = dashboardMetrics()
          expect(queried.size).toBeGreaterThanOrEqual(BatchFlowMetrics.metricNames.length)
          const ours = (s: Sample) => s.labels.instance_id === tags.instance_id
          for (const series of queried) {
            expect(BatchFlowMetrics.metricNames, `${series} is not a BatchFlowMetrics metric`).toContain(
              metricOf(series)
            )
            expect(
              select(samples, series, {}).filter(ours).length,
              `${series} is not on /metrics`
            ).toBeGreaterThan(0)
          }
          // And the dashboard shows every metric.
          for (const name of BatchFlowMetrics.metricNames) {
            expect([...queried].map(metricOf), `${name} is not on the dashboard`).toContain(name)
          }
        })
      )
  )

  it.live("other paths answer 404; a port in use fails with PrometheusServerError", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* Prometheus.make({ port: 0, host: "127.0.0.1", path: "/custom" })
        expect(server.url).toBe(`http://127.0.0.1:${server.port}/custom`)
        expect((yield* scrape(server.url)).status).toBe(200)
        expect((yield* scrape(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(404)
        const taken = yield* Effect.flip(Prometheus.make({ port: server.port, host: "127.0.0.1" }))
        expect(taken._tag).toBe("PrometheusServerError")
        expect(taken.message).toContain(`127.0.0.1:${server.port}`)
      })
    )
  )

  it.live("the layer stops serving when its scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const server = yield* Prometheus.make({ port: 0, host: "127.0.0.1" }).pipe(Scope.extend(scope))
      expect((yield* scrape(server.url)).status).toBe(200)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.either(Effect.tryPromise(() => fetch(server.url)))
      expect(after._tag).toBe("Left")
    })
  )
})
