/**
 * The README's Redis quickstart: two sessions with a TTL. The connection comes from
 * BATCHFLOW_REDIS_URL (default redis://127.0.0.1:6379). Run by scripts/consumer-check.sh.
 */
import { Effect, Layer } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"

const Sessions = Redis.set("sessions", { prefix: "quickstart:session:", ttl: "30 minutes" })

const FlowLive = Redis.layer({ flushSize: 500, flushInterval: "20 millis" }).pipe(
  Layer.provide(Redis.layerClientConfig()) // BATCHFLOW_REDIS_URL, default redis://127.0.0.1:6379
)

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  yield* flow.submit(Sessions, { key: "abc", value: "user-1" }) // SET quickstart:session:abc user-1 PX 1800000
  yield* flow.write(Sessions, { key: "def", value: "user-2" }) // resolves when written
})

Effect.runPromise(program.pipe(Effect.provide(FlowLive))).then(() => console.log("written"))
