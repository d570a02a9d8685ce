import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { Completion } from "../src/internal/engine/completion.js"

describe("Completion", () => {
  it.effect("resumes every waiter with the exit, once", () =>
    Effect.gen(function* () {
      const c = new Completion<number, string>()
      const a = yield* Effect.fork(c.await)
      const b = yield* Effect.fork(c.await)
      yield* Effect.yieldNow()
      expect(c.isDone).toBe(false)
      c.unsafeDone(Exit.succeed(1))
      c.unsafeDone(Exit.succeed(2))
      expect(yield* Fiber.join(a)).toBe(1)
      expect(yield* Fiber.join(b)).toBe(1)
      expect(yield* c.await).toBe(1)
      expect(c.isDone).toBe(true)
    })
  )

  it.effect("fails waiters with the error", () =>
    Effect.gen(function* () {
      const c = new Completion<void, string>()
      const waiter = yield* Effect.fork(c.await)
      yield* Effect.yieldNow()
      c.unsafeDone(Exit.fail("boom"))
      expect(yield* Effect.flip(Fiber.join(waiter))).toBe("boom")
      expect(yield* Effect.flip(c.await)).toBe("boom")
    })
  )

  it.effect("an interrupted waiter is removed and the others still resume", () =>
    Effect.gen(function* () {
      const c = new Completion()
      const gone = yield* Effect.fork(c.await)
      const kept = yield* Effect.fork(c.await)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(gone)
      c.unsafeDone(Exit.void)
      expect(Exit.isInterrupted(yield* Fiber.await(gone))).toBe(true)
      expect(Exit.isSuccess(yield* Fiber.await(kept))).toBe(true)
    })
  )
})
