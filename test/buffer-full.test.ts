/**
 * The buffer-full policies: `submit` waits (the default), `trySubmit` answers `false` at once, and
 * with `submitTimeout` a waiting `submit` / `submitAll` / `write` fails with a typed `BufferFull`
 * after that long, having enqueued nothing of what it did not accept.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Queue, Schema, TestClock } from "effect"
import { BatchFlowError, Target } from "effect-batchflow"
import { recorder, settle, startFlow } from "./helpers-engine.js"

const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, name: Schema.String }),
  key: ["id"]
})

const row = (id: number) => ({ id, name: `n${id}` })

/** An executor that holds every call until `open` is completed. */
const gated = Effect.gen(function* () {
  const open = yield* Deferred.make<void>()
  const rec = recorder(() => Deferred.await(open))
  return { open, rec }
})

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

describe("buffer full", () => {
  it.scoped("trySubmit accepts while there is room and answers false, accepting nothing, when full", () =>
    Effect.gen(function* () {
      const { open, rec } = yield* gated
      const { flow } = yield* startFlow(
        { flushSize: 5, bufferSize: 10, concurrency: 1, flushInterval: "1 hour" },
        rec.executor
      )
      // One batch of 5 is taken by the only worker and held; 10 more fill the buffer.
      const answers: Array<boolean> = []
      for (let i = 0; i < 20; i++) {
        answers.push(yield* flow.trySubmit(Events, row(i)))
        yield* settle(5)
      }
      expect(answers.filter((a) => a).length).toBe(15)
      expect(answers.slice(15).every((a) => !a)).toBe(true)
      const invalid = yield* Effect.exit(flow.trySubmit(Events, { id: "x" } as never))
      expect(failureOf(invalid)).toBeInstanceOf(BatchFlowError.InvalidRow)
      yield* Deferred.succeed(open, undefined)
      yield* flow.flush
      expect(rec.committedCount()).toBe(15)
      expect((yield* flow.stats).accepted).toBe(15)
      yield* flow.close
      const closed = yield* Effect.exit(flow.trySubmit(Events, row(99)))
      expect(failureOf(closed)).toBeInstanceOf(BatchFlowError.BatchFlowClosed)
    })
  )

  it.scoped("without submitTimeout, submit waits for room as long as it takes", () =>
    Effect.gen(function* () {
      const { open, rec } = yield* gated
      const { flow } = yield* startFlow(
        { flushSize: 5, bufferSize: 10, concurrency: 1, flushInterval: "1 hour" },
        rec.executor
      )
      for (let i = 0; i < 15; i++) {
        yield* flow.submit(Events, row(i))
        yield* settle(5)
      }
      const waiting = yield* Effect.fork(flow.submit(Events, row(15)))
      // (Less than the attempt timeout, 30 s, after which the held attempt would be abandoned.)
      yield* TestClock.adjust("20 seconds")
      expect(waiting.unsafePoll()).toBeNull()
      yield* Deferred.succeed(open, undefined)
      yield* Fiber.join(waiting)
      yield* flow.flush
      expect(rec.committedCount()).toBe(16)
    })
  )

  it.scoped(
    "with submitTimeout, submit, write and submitAll fail with BufferFull and enqueue nothing more",
    () =>
      Effect.gen(function* () {
        const { open, rec } = yield* gated
        const { flow } = yield* startFlow(
          {
            flushSize: 5,
            bufferSize: 10,
            concurrency: 1,
            flushInterval: "1 hour",
            submitTimeout: "50 millis"
          },
          rec.executor
        )
        for (let i = 0; i < 15; i++) {
          yield* flow.submit(Events, row(i))
          yield* settle(5)
        }
        const submit = yield* Effect.fork(Effect.exit(flow.submit(Events, row(100))))
        const write = yield* Effect.fork(Effect.exit(flow.write(Events, row(101))))
        const all = yield* Effect.fork(Effect.exit(flow.submitAll(Events, [row(102), row(103)])))
        yield* settle(20)
        yield* TestClock.adjust("49 millis")
        expect(submit.unsafePoll()).toBeNull()
        yield* TestClock.adjust("2 millis")
        for (const fiber of [submit, write, all]) {
          const error = failureOf(yield* Fiber.join(fiber))
          expect(error).toBeInstanceOf(BatchFlowError.BufferFull)
          const full = error as BatchFlowError.BufferFull
          expect(full.target).toBe("events")
          expect(full.bufferSize).toBe(10)
          expect(full.accepted).toBe(0)
          expect(full.waitedMillis).toBeGreaterThanOrEqual(50)
          expect(full.message).toContain("bufferSize 10")
        }
        expect((yield* flow.stats).accepted).toBe(15)
        yield* Deferred.succeed(open, undefined)
        yield* flow.flush
        expect(rec.committedCount()).toBe(15)
        // With room again, the same calls go through.
        yield* flow.submit(Events, row(100))
        yield* flow.flush
        expect(rec.committedCount()).toBe(16)
      })
  )

  it.scoped("submitters woken for room that they do not use leave it to the others still waiting", () =>
    Effect.gen(function* () {
      // Each executor call waits for a permit of its own.
      const permits = yield* Queue.unbounded<void>()
      const rec = recorder(() => Queue.take(permits))
      const { flow } = yield* startFlow(
        { flushSize: 10, bufferSize: 20, concurrency: 1, flushInterval: "1 hour" },
        rec.executor
      )
      // Call 1 holds 10 rows; 20 more fill the buffer.
      for (let i = 0; i < 30; i++) {
        yield* flow.submit(Events, row(i))
        yield* settle(5)
      }
      const waiting = yield* Effect.forEach([100, 101, 102], (id) =>
        Effect.fork(flow.submit(Events, row(id)))
      )
      yield* settle(20)
      expect(waiting.every((fiber) => fiber.unsafePoll() === null)).toBe(true)
      // Call 1 ends, call 2 takes 10 rows and is held: room for 10. Only the first waiter is woken
      // (one per flushSize of room), and it submits one row; the room it leaves wakes the other two
      // on the next turns of the event loop, while call 2 is still held.
      yield* Queue.offer(permits, undefined)
      for (let turn = 0; turn < 10 && waiting.some((fiber) => fiber.unsafePoll() === null); turn++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        yield* settle(5)
      }
      expect(waiting.every((fiber) => fiber.unsafePoll() !== null)).toBe(true)
      expect(rec.active()).toBe(1)
      expect((yield* flow.stats).buffered).toBe(13)
      yield* Queue.offerAll(
        permits,
        Array.from({ length: 10 }, () => undefined)
      )
      yield* flow.flush
      expect(rec.committedCount()).toBe(33)
    })
  )

  it.scoped("a submitAll larger than the buffer that times out says how many rows it had accepted", () =>
    Effect.gen(function* () {
      const { open, rec } = yield* gated
      const { flow } = yield* startFlow(
        { flushSize: 5, bufferSize: 10, concurrency: 1, flushInterval: "1 hour", submitTimeout: "50 millis" },
        rec.executor
      )
      const fiber = yield* Effect.fork(
        Effect.exit(
          flow.submitAll(
            Events,
            Array.from({ length: 30 }, (_, i) => row(i))
          )
        )
      )
      yield* settle(50)
      yield* TestClock.adjust("60 millis")
      const error = failureOf(yield* Fiber.join(fiber)) as BatchFlowError.BufferFull
      expect(error).toBeInstanceOf(BatchFlowError.BufferFull)
      const accepted = (yield* flow.stats).accepted
      expect(error.accepted).toBe(accepted)
      expect(accepted).toBeGreaterThan(0)
      expect(accepted).toBeLessThan(30)
      yield* Deferred.succeed(open, undefined)
      yield* flow.flush
      expect(rec.committedCount()).toBe(accepted)
    })
  )
})
