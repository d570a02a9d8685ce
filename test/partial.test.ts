import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Schema, Scope, Stream, TestClock } from "effect"
import { BatchExecutor, BatchFlow, Target } from "effect-batchflow"

const Items = Target.make("partial_items", {
  schema: Schema.Struct({ id: Schema.Number, ok: Schema.Boolean }),
  key: ["id"]
})

class Rejected extends Error {}
class Unavailable extends Error {}

describe("partial results from an executor", () => {
  it.effect("rows an executor reports as failed are reported by reason; the others are committed once", () =>
    Effect.gen(function* () {
      const committed: Array<number> = []
      let calls = 0
      const executor = BatchExecutor.make(
        (_target, rows) =>
          Effect.sync(() => {
            calls++
            const failed: Array<BatchExecutor.RowError> = []
            rows.forEach((row, index) => {
              const r = row as { id: number; ok: boolean }
              if (r.ok) committed.push(r.id)
              else
                failed.push({ index, error: r.id % 2 === 0 ? new Rejected("bad") : new Unavailable("later") })
            })
            return BatchExecutor.partial(failed)
          }),
        {
          rules: [
            (e) => (e instanceof Rejected ? { retryable: false, reason: "rejected" } : undefined),
            (e) => (e instanceof Unavailable ? { retryable: true, reason: "unavailable" } : undefined)
          ]
        }
      )
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        BatchFlow.layer({ flushSize: 10, bufferSize: 10 }).pipe(
          Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))
        ),
        scope
      )
      const flow = Context.get(ctx, BatchFlow.BatchFlow)
      const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
      const writes = yield* Effect.forEach(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        (id) => Effect.fork(Effect.exit(flow.write(Items, { id, ok: id <= 7 }))),
        { concurrency: "unbounded" }
      )
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      const exits = yield* Effect.forEach(writes, Fiber.join)
      const reported = Chunk.toArray(yield* Fiber.join(failures))

      expect(calls).toBe(1)
      expect(committed).toEqual([1, 2, 3, 4, 5, 6, 7])
      expect(reported.map((f) => [f.reason, f.rows.map((r) => (r as { id: number }).id)])).toEqual([
        ["rejected", [8, 10]],
        ["unavailable", [9]]
      ])
      expect(exits.map((e) => e._tag)).toEqual([...Array(7).fill("Success"), "Failure", "Failure", "Failure"])
      const eight = exits[7]!
      expect(Exit.isFailure(eight) && eight.cause._tag === "Fail" && eight.cause.error._tag).toBe(
        "BatchFailure"
      )
      if (Exit.isFailure(eight) && eight.cause._tag === "Fail" && eight.cause.error._tag === "BatchFailure") {
        expect(eight.cause.error.reason).toBe("rejected")
      }
      expect(yield* flow.stats).toMatchObject({ accepted: 10, committed: 7, failed: 3 })
    })
  )

  it.effect("a partial result after a retry counts that retry once, whatever the number of reasons", () =>
    Effect.gen(function* () {
      let calls = 0
      const executor = BatchExecutor.make(
        (_target, rows) =>
          Effect.suspend(() => {
            calls++
            if (calls === 1) return Effect.fail(new Unavailable("first attempt"))
            return Effect.succeed(
              BatchExecutor.partial(
                rows.flatMap((row, index) => {
                  const id = (row as { id: number }).id
                  return id === 2
                    ? [{ index, error: new Rejected("bad") }]
                    : id === 3
                      ? [{ index, error: new Unavailable("later") }]
                      : []
                })
              )
            )
          }),
        {
          rules: [
            (e) => (e instanceof Rejected ? { retryable: false, reason: "rejected" } : undefined),
            (e) => (e instanceof Unavailable ? { retryable: true, reason: "unavailable" } : undefined)
          ]
        }
      )
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        BatchFlow.layer({ flushSize: 4, bufferSize: 4, retry: { maxAttempts: 3 } }).pipe(
          Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))
        ),
        scope
      )
      const flow = Context.get(ctx, BatchFlow.BatchFlow)
      yield* flow.submitAll(
        Items,
        [1, 2, 3, 4].map((id) => ({ id, ok: true }))
      )
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(closing)
      expect(calls).toBe(2)
      expect(yield* flow.stats).toMatchObject({ accepted: 4, committed: 2, failed: 2, retries: 1 })
    })
  )
})
