/** The W0 workload shared by bench/w0.ts and bench/w0-metrics.ts (../shared/design/BENCH.md). */
import { Effect, Schema } from "effect"
import { BatchFlow, Target } from "effect-batchflow"
import type { BenchRow } from "./util.js"

export const Events = Target.make("bench_events", {
  schema: Schema.Struct({
    id: Schema.Number,
    user_id: Schema.Number,
    name: Schema.String,
    amount: Schema.Number,
    created_at: Schema.String
  }),
  key: ["id"]
})

export const makeRow = (id: number): BenchRow => ({
  id,
  user_id: id % 1000,
  name: `user-${id}`,
  amount: id * 0.5,
  created_at: "2024-01-01T00:00:00Z"
})

export const PRODUCERS = 4

export const config = {
  bufferSize: 10_000,
  flushSize: 500,
  flushInterval: "50 millis",
  concurrency: 4,
  retry: { maxAttempts: 3, backoffBase: "20 millis", maxBackoff: "500 millis" }
} as const

/**
 * The W0 producers: `PRODUCERS` fibers, each submitting its share of `rows` one `submit` at a time
 * or in `submitAll` arrays of 500. Returns how many rows they submitted.
 */
export const produce = (
  rows: number,
  mode: "submit" | "submitAll"
): Effect.Effect<number, never, BatchFlow.BatchFlow> => {
  const per = Math.floor(rows / PRODUCERS)
  const producer = (p: number) =>
    Effect.gen(function* () {
      const flow = yield* BatchFlow.BatchFlow
      const first = p * per
      if (mode === "submit") {
        for (let i = first; i < first + per; i++) yield* flow.submit(Events, makeRow(i + 1))
      } else {
        for (let i = first; i < first + per; i += 500) {
          const chunk: Array<BenchRow> = []
          for (let j = i; j < Math.min(i + 500, first + per); j++) chunk.push(makeRow(j + 1))
          yield* flow.submitAll(Events, chunk)
        }
      }
    }).pipe(Effect.orDie)
  return Effect.as(
    Effect.forEach(
      Array.from({ length: PRODUCERS }, (_, p) => p),
      producer,
      {
        concurrency: "unbounded",
        discard: true
      }
    ),
    per * PRODUCERS
  )
}
