import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schema, Scope, TestClock } from "effect"
import { BatchExecutor, BatchFlow, Target } from "effect-batchflow"

const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, name: Schema.String }),
  key: ["id"]
})

describe("smoke", () => {
  it.effect("close writes everything accepted", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        BatchFlow.layer({ flushSize: 3, bufferSize: 10 }).pipe(
          Layer.provide(BatchExecutor.layerMemory(memory))
        ),
        scope
      )
      const flow = ctx.unsafeMap.get(BatchFlow.BatchFlow.key) as BatchFlow.BatchFlow
      for (let i = 0; i < 7; i++) yield* flow.submit(Events, { id: i, name: `n${i}` })
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(memory.rowCount()).toBe(7)
      const s = yield* flow.stats
      expect(s.committed).toBe(7)
    })
  )
})
