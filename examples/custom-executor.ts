/**
 * A custom executor: the engine calls it with one target's rows of one flush and gives it batching,
 * retry, timeouts, the concurrency limit and same-key ordering. `BatchExecutor.forTarget` types the
 * rows as the target's.
 */
import { Effect, Schema } from "effect"
import { BatchExecutor, BatchFlow, Target } from "effect-batchflow"

// A target: a name, a row schema (checked at submit) and a key (same-key rows keep their order).
const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  key: ["id"]
})

// The sink of `Events`: called with its rows of one flush, in submission order, typed as its rows.
const EventsSink = BatchExecutor.forTarget(Events, (rows) =>
  Effect.log(`writing ${rows.length} events, amount ${rows.reduce((sum, row) => sum + row.amount, 0)}`)
)

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  yield* flow.submit(Events, { id: 1, kind: "click", amount: 1 }) // enqueue only
  yield* flow.write(Events, { id: 2, kind: "view", amount: 0 }) // resolves when committed
})

const FlowLive = BatchFlow.layer({
  executors: [EventsSink],
  flushSize: 500,
  flushInterval: "100 millis",
  concurrency: 4
})

Effect.runPromise(program.pipe(Effect.provide(FlowLive))) // scope closes → final flush → done
