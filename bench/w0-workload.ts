/** The W0 workload shared by bench/w0.ts and bench/w0-metrics.ts (../shared/design/BENCH.md). */
import { Schema } from "effect"
import { Target } from "effect-batchflow"
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
