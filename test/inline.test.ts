/**
 * The submit fast path (src/internal/engine/inline.ts): `yield* flow.submit(...)` does its work when the
 * generator asks for the effect's iterator, so a submit that finds room costs the caller's fiber no
 * run-loop operation. Counted with Effect's op supervision: if a change in Effect made `yield*` go
 * through the run loop again, the count below jumps from ~0 to ≥ 1 per row and this test fails. The
 * other ways to run the effect (combinators, `runPromise`, a second run) still do the same work.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, RuntimeFlags, RuntimeFlagsPatch, Schema, Supervisor } from "effect"
import { BatchExecutor, BatchFlowError, Target } from "effect-batchflow"
import { startFlow } from "./helpers-engine.js"

const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, name: Schema.String }),
  key: ["id"]
})

class OpCounter extends Supervisor.AbstractSupervisor<void> {
  count = 0
  readonly value = Effect.void
  override onEffect(): void {
    this.count++
  }
}

/**
 * The run-loop operations of a fiber running `body` (forked, so that the supervisor and op
 * supervision apply to it; the engine's own fibers are not counted).
 */
const opsOf = <E, R>(body: Effect.Effect<void, E, R>) =>
  Effect.gen(function* () {
    const counter = new OpCounter()
    yield* Effect.flatMap(Effect.fork(body), Fiber.join).pipe(
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
    return counter.count
  })

describe("submit fast path", () => {
  it.scoped("a submit that finds room takes no run-loop operation in the caller's fiber", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow } = yield* startFlow(
        { flushSize: 5_000, bufferSize: 10_000, flushInterval: "1 hour" },
        memory
      )
      const empty = yield* opsOf(Effect.gen(function* () {}))
      const rows = 1_000
      const submitting = yield* opsOf(
        Effect.gen(function* () {
          for (let i = 0; i < rows; i++) yield* flow.submit(Events, { id: i, name: `n${i}` })
        })
      )
      const batchOf = yield* opsOf(
        Effect.gen(function* () {
          const chunk = Array.from({ length: 100 }, (_, i) => ({ id: rows + i, name: "b" }))
          for (let i = 0; i < 10; i++) yield* flow.submitAll(Events, chunk)
        })
      )
      expect((yield* flow.stats).buffered).toBe(rows + 1_000)
      // A handful of operations for the generator itself, none per row.
      expect(submitting - empty).toBeLessThan(10)
      expect(batchOf - empty).toBeLessThan(10)
      yield* flow.flush
      expect(memory.rowCount()).toBe(rows + 1_000)
    })
  )

  it.scoped("run any other way, the same effect validates and enqueues each time it runs", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow } = yield* startFlow({ flushSize: 10, flushInterval: "1 hour" }, memory)
      const once = flow.submit(Events, { id: 1, name: "a" })
      yield* once
      yield* Effect.asVoid(once.pipe(Effect.timeout("1 second")))
      yield* Effect.zipRight(Effect.void, once)
      const bad = flow.submit(Events, { id: "x", name: "a" } as never)
      const viaGen = yield* Effect.exit(
        Effect.gen(function* () {
          yield* bad
        })
      )
      const viaPipe = yield* Effect.exit(bad.pipe(Effect.asVoid))
      for (const exit of [viaGen, viaPipe]) {
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("InvalidRow")
      }
      yield* flow.flush
      expect(memory.rowCount()).toBe(3)
    })
  )
})

describe("unsafeOffer", () => {
  it.scoped("accepts while there is room, returns false when full or closed, throws on an invalid row", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow } = yield* startFlow({ flushSize: 10, bufferSize: 20, flushInterval: "1 hour" }, memory)
      let accepted = 0
      for (let i = 0; i < 25; i++) if (flow.unsafeOffer(Events, { id: i, name: "o" })) accepted++
      expect(accepted).toBe(20)
      expect((yield* flow.stats).buffered).toBe(20)
      expect(() => flow.unsafeOffer(Events, { id: 1, name: 2 } as never)).toThrow(BatchFlowError.InvalidRow)
      yield* flow.flush
      expect(memory.rowCount()).toBe(20)
      yield* flow.close
      expect(flow.unsafeOffer(Events, { id: 99, name: "late" })).toBe(false)
      const stats = yield* flow.stats
      expect(stats.accepted).toBe(20)
      expect(stats.committed).toBe(20)
    })
  )
})
