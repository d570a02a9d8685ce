import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { describe, expect, it } from "@effect/vitest"
import { SpanStatusCode } from "@opentelemetry/api"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Exit, Fiber, Logger, Schema, Scope } from "effect"
import { BatchExecutor, BatchFlowError, Target } from "effect-batchflow"
import { startObservedFlow } from "./metrics-helpers.js"

const Row = Schema.Struct({ id: Schema.Number, name: Schema.String })
type Row = typeof Row.Type
const Events = Target.make("t_events", { schema: Row, key: ["id"] })
const row = (id: number): Row => ({ id, name: `n${id}` })

/** Runs `body` with an OpenTelemetry tracer exporting to memory; `body` reads the spans before it ends. */
const traced = <A, E>(body: (exporter: InMemorySpanExporter) => Effect.Effect<A, E>) => {
  const exporter = new InMemorySpanExporter()
  const sdk = NodeSdk.layer(() => ({
    resource: { serviceName: "batchflow-tracing-test" },
    spanProcessor: new SimpleSpanProcessor(exporter)
  }))
  return Effect.provide(body(exporter), sdk)
}

const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((s) => s.name === name)
const idOf = (span: ReadableSpan) => span.spanContext().spanId
const waitAccepted = (stats: Effect.Effect<{ readonly accepted: number }>, n: number) =>
  Effect.gen(function* () {
    while ((yield* stats).accepted < n) yield* Effect.sleep("2 millis")
  })

describe("tracing", () => {
  it.live(
    "one flush span per flush, linked to the submitters' spans; one execute span per attempt under it",
    () =>
      traced((exporter) =>
        Effect.gen(function* () {
          const executor = BatchExecutor.make(() => Effect.withSpan(Effect.void, "db.insert"))
          const { flow, scope } = yield* startObservedFlow(
            { flushSize: 10, flushInterval: "1 hour" },
            executor,
            undefined
          )
          const a = yield* Effect.fork(Effect.withSpan(flow.write(Events, row(1)), "request-a"))
          const b = yield* Effect.fork(Effect.withSpan(flow.write(Events, row(2)), "request-b"))
          yield* waitAccepted(flow.stats, 2)
          yield* flow.flush
          yield* Fiber.join(a)
          yield* Fiber.join(b)
          // `submit` and `submitAll` callers are linked too; rows submitted outside a span add no link.
          yield* Effect.withSpan(flow.submit(Events, row(3)), "request-c")
          yield* Effect.withSpan(flow.submitAll(Events, [row(4), row(5)]), "request-d")
          yield* Effect.withSpan(flow.submit(Events, row(6)), "request-c-again").pipe(Effect.asVoid)
          yield* flow.submit(Events, row(7))
          yield* flow.flush
          yield* Scope.close(scope, Exit.void)

          const spans = exporter.getFinishedSpans()
          const requests = new Map(
            ["request-a", "request-b", "request-c", "request-d", "request-c-again"].map((n) => [
              n,
              idOf(named(spans, n)[0]!)
            ])
          )
          const flushes = named(spans, "BatchFlow.flush")
          expect(flushes).toHaveLength(2)
          const [first, second] = flushes as [ReadableSpan, ReadableSpan]
          expect(first.attributes).toMatchObject({
            "batchflow.trigger": "manual",
            "batchflow.rows": 2,
            "batchflow.groups": 1,
            "batchflow.outcome": "success"
          })
          expect(first.links.map((l) => l.context.spanId).sort()).toEqual(
            [requests.get("request-a"), requests.get("request-b")].sort()
          )
          expect(second.attributes).toMatchObject({ "batchflow.rows": 5 })
          // One link per distinct span: request-d submitted two rows.
          expect(second.links.map((l) => l.context.spanId).sort()).toEqual(
            [requests.get("request-c"), requests.get("request-d"), requests.get("request-c-again")].sort()
          )
          // Flushes run in the engine's fibers: they start their own traces.
          expect(first.parentSpanContext).toBeUndefined()

          const executes = named(spans, "BatchFlow.execute")
          expect(executes).toHaveLength(2)
          const execute = executes.find((s) => s.parentSpanContext?.spanId === idOf(first))!
          expect(execute.attributes).toEqual({
            "batchflow.target": "t_events",
            "batchflow.rows": 2,
            "batchflow.attempt": 1,
            "batchflow.outcome": "success"
          })
          expect(execute.status.code).toBe(SpanStatusCode.OK)
          // The executor's own spans are children of the execute span.
          const inserts = named(spans, "db.insert")
          expect(inserts.map((s) => s.parentSpanContext?.spanId).sort()).toEqual(executes.map(idOf).sort())
        })
      )
  )

  it.live(
    "a retried batch has one execute span per attempt; the failed one has error status and its reason",
    () =>
      traced((exporter) =>
        Effect.gen(function* () {
          let calls = 0
          const executor = BatchExecutor.make(() =>
            calls++ === 0
              ? Effect.fail(
                  new BatchFlowError.ExecutorError({ message: "busy", retryable: true, reason: "deadlock" })
                )
              : Effect.void
          )
          const { flow, scope } = yield* startObservedFlow(
            { flushSize: 1, retry: { maxAttempts: 3, backoffBase: "1 millis", maxBackoff: "2 millis" } },
            executor,
            undefined
          )
          yield* Effect.withSpan(flow.write(Events, row(1)), "request")
          yield* Scope.close(scope, Exit.void)

          const spans = exporter.getFinishedSpans()
          const [flush] = named(spans, "BatchFlow.flush")
          expect(flush!.attributes["batchflow.trigger"]).toBe("size")
          expect(flush!.links.map((l) => l.context.spanId)).toEqual([idOf(named(spans, "request")[0]!)])
          const attempts = named(spans, "BatchFlow.execute").sort(
            (x, y) => Number(x.attributes["batchflow.attempt"]) - Number(y.attributes["batchflow.attempt"])
          )
          expect(attempts.map((s) => s.attributes)).toEqual([
            {
              "batchflow.target": "t_events",
              "batchflow.rows": 1,
              "batchflow.attempt": 1,
              "batchflow.outcome": "failure",
              "batchflow.reason": "deadlock"
            },
            {
              "batchflow.target": "t_events",
              "batchflow.rows": 1,
              "batchflow.attempt": 2,
              "batchflow.outcome": "success"
            }
          ])
          expect(attempts.map((s) => s.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.OK])
          expect(attempts.every((s) => s.parentSpanContext?.spanId === idOf(flush!))).toBe(true)
        })
      )
  )

  it.live(
    "a flush with a failed group is marked outcome failure; the write caller gets the original error",
    () =>
      traced((exporter) =>
        Effect.gen(function* () {
          const error = new BatchFlowError.ExecutorError({
            message: "no",
            retryable: false,
            reason: "constraint"
          })
          const executor = BatchExecutor.make(() => Effect.fail(error))
          const { flow, scope } = yield* startObservedFlow({ flushSize: 1 }, executor, undefined)
          const failure = yield* Effect.flip(Effect.withSpan(flow.write(Events, row(1)), "request"))
          // Errors raised inside the execute span are reported unwrapped.
          expect(failure.cause).toBe(error)
          yield* Scope.close(scope, Exit.void)
          const [flush] = named(exporter.getFinishedSpans(), "BatchFlow.flush")
          expect(flush!.attributes["batchflow.outcome"]).toBe("failure")
        })
      ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  )
})
