/**
 * Prometheus: a flow with metrics (its `metrics` option), served on http://127.0.0.1:9464/metrics, with an
 * executor that sometimes fails so that errors and retries show too. Runs for `RUN_SECONDS` (default
 * 30), then closes the flow and the server.
 *
 *   npx tsx examples/prometheus.ts
 *   curl -s http://127.0.0.1:9464/metrics | grep '^batchflow_'
 *
 * Point a Prometheus at it and import examples/grafana-dashboard.json into Grafana.
 */
import { Effect, Layer, Random, Schedule, Schema } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowError, Target } from "effect-batchflow"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"
import * as Prometheus from "effect-batchflow/Prometheus"

const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, kind: Schema.String }),
  key: ["id"]
})

// A sink that takes 5–25 ms per batch and fails one call in ten with a retryable error.
const Sink = BatchExecutor.forTarget(Events, (rows) =>
  Effect.gen(function* () {
    yield* Effect.sleep(`${yield* Random.nextIntBetween(5, 25)} millis`)
    if ((yield* Random.nextIntBetween(0, 10)) === 0) {
      return yield* new BatchFlowError.ExecutorError({ message: "busy", retryable: true, reason: "busy" })
    }
    yield* BatchFlowMetrics.reportOperation({
      target: "events",
      backend: "custom",
      operation: "append",
      inputRows: rows.length,
      outputRows: rows.length,
      args: rows.length * 2
    })
  })
)

const port = Number(process.env.PORT ?? 9464)
const seconds = Number(process.env.RUN_SECONDS ?? 30)

// `metrics` makes the flow update the batchflow_* metrics; Prometheus.layer serves them.
const FlowLive = BatchFlow.layer({
  executors: [Sink],
  flushSize: 200,
  flushInterval: "100 millis",
  concurrency: 2,
  metrics: { database: "example", instanceId: "example-1" }
}).pipe(Layer.provideMerge(Prometheus.layer({ port, host: "127.0.0.1" })))

const program = Effect.gen(function* () {
  const server = yield* Prometheus.PrometheusServer
  const flow = yield* BatchFlow.BatchFlow
  yield* Effect.log(`metrics on ${server.url} for ${seconds} s`)
  let id = 0
  // About 5,000 rows per second, in bursts.
  const produce = Effect.gen(function* () {
    const burst = yield* Random.nextIntBetween(1, 1000)
    for (let i = 0; i < burst; i++) yield* flow.submit(Events, { id: id++ % 10_000, kind: "click" })
  }).pipe(Effect.repeat(Schedule.spaced("100 millis")))
  yield* Effect.raceFirst(produce, Effect.sleep(`${seconds} seconds`))
  const stats = yield* flow.stats
  yield* Effect.log(`accepted ${stats.accepted}, committed ${stats.committed}, retries ${stats.retries}`)
})

Effect.runPromise(program.pipe(Effect.provide(FlowLive)))
