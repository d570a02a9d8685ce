/** Same-key order with concurrency > 1 (db 12, prefix "or:"). */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import { clientLayer, deleteKeys, direct } from "./redis-helpers.js"

const DB = 12
const P = "or:"

const flow = Redis.layer({ flushSize: 7, flushInterval: "1 millis", concurrency: 4 }).pipe(
  Layer.provide(clientLayer(DB))
)

describe("Redis ordering", () => {
  it.scopedLive("same-key commands are applied in submission order with concurrency 4", () =>
    Effect.gen(function* () {
      const redis = yield* direct(DB)
      yield* deleteKeys(redis, `${P}*`)
      const Push = Redis.command("push", { prefix: `${P}list:` })
      const Last = Redis.set("last", { prefix: `${P}last:` })
      const keys = 5
      const per = 60
      const stats = yield* Effect.gen(function* () {
        const f = yield* BatchFlow.BatchFlow
        // 4 producers interleave; each key's rows come from one producer, in order.
        yield* Effect.forEach(
          [0, 1, 2, 3],
          (p) =>
            Effect.gen(function* () {
              for (let i = 0; i < per; i++) {
                for (let k = p; k < keys; k += 4) {
                  yield* f.submit(Push, { cmd: "RPUSH", key: `k${k}`, args: [i] })
                  yield* f.submit(Last, { key: `k${k}`, value: i })
                }
                if (i % 10 === 0) yield* Effect.yieldNow()
              }
            }),
          { concurrency: "unbounded", discard: true }
        )
        yield* f.flush
        return yield* f.stats
      }).pipe(Effect.provide(flow))
      expect(stats.committed).toBe(keys * per * 2)
      const expected = Array.from({ length: per }, (_, i) => String(i))
      for (let k = 0; k < keys; k++) {
        expect(yield* Effect.promise(() => redis.lrange(`${P}list:k${k}`, 0, -1))).toEqual(expected)
        expect(yield* Effect.promise(() => redis.get(`${P}last:k${k}`))).toBe(String(per - 1))
      }
    })
  )
})
