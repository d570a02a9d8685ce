import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, Schema, TestClock } from "effect"
import { type BatchFlow, Target } from "effect-batchflow"
import { advanceUntil, recorder, settle, startFlow } from "./helpers-engine.js"

const Struct = Schema.Struct({ id: Schema.Number })
const A = Target.make("a", { schema: Struct })
const B = Target.make("b", { schema: Struct })
const C = Target.make("c", { schema: Struct })

type Row = { readonly id: number }
const rows = (n: number, from = 0): Array<Row> => Array.from({ length: n }, (_, i) => ({ id: from + i }))
const ids = (rs: ReadonlyArray<unknown>) => rs.map((r) => (r as Row).id)

describe("size trigger", () => {
  it.effect("flushSize rows are written at once, without the clock moving", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 5, concurrency: 1, flushInterval: "1 hour" },
        rec.executor
      )
      for (const r of rows(5)) yield* flow.submit(A, r)
      yield* settle()
      expect(rec.calls.map((c) => ids(c.rows))).toEqual([[0, 1, 2, 3, 4]])
      expect(rec.calls[0]?.startedAt).toBe(0)
      // Four more rows are a partial batch: they wait.
      for (const r of rows(4, 5)) yield* flow.submit(A, r)
      yield* settle()
      expect(rec.calls.length).toBe(1)
      expect((yield* flow.stats).buffered).toBe(4)
      yield* closeScope()
      expect(ids(rec.committedRows("a"))).toEqual(ids(rows(9)))
    })
  )
})

describe("interval trigger", () => {
  it.effect("a partial batch is written after flushInterval and not before", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 10, flushInterval: "100 millis" },
        rec.executor
      )
      for (const r of rows(3)) yield* flow.submit(A, r)
      yield* settle()
      yield* TestClock.adjust("99 millis")
      yield* settle()
      expect(rec.calls.length).toBe(0)
      yield* TestClock.adjust("1 millis")
      yield* settle()
      expect(rec.calls.map((c) => ids(c.rows))).toEqual([[0, 1, 2]])
      expect(rec.calls[0]?.startedAt).toBe(100)
      yield* closeScope()
    })
  )

  it.effect("while one worker writes a slow partial batch, another keeps the interval for the next", () =>
    Effect.gen(function* () {
      const rec = recorder((_target, _rows, call) =>
        call.index === 0 ? Effect.sleep("10 seconds") : Effect.void
      )
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 10, flushInterval: "100 millis", concurrency: 3 },
        rec.executor
      )
      yield* flow.submit(A, { id: 0 })
      yield* settle()
      yield* TestClock.adjust("100 millis")
      yield* settle()
      expect(rec.calls.length).toBe(1)
      // The first worker is held for 10 s; the next partial batch still goes after its interval.
      yield* flow.submit(A, { id: 1 })
      yield* settle()
      yield* TestClock.adjust("99 millis")
      yield* settle()
      expect(rec.calls.length).toBe(1)
      yield* TestClock.adjust("1 millis")
      yield* settle()
      expect(rec.calls.map((c) => ids(c.rows))).toEqual([[0], [1]])
      expect(rec.calls[1]?.startedAt).toBe(200)
      yield* closeScope("20 seconds")
    })
  )

  it.effect("the interval counts from the first row of a partial batch, not the latest", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 10, flushInterval: "100 millis" },
        rec.executor
      )
      yield* flow.submit(A, { id: 0 })
      yield* settle()
      yield* TestClock.adjust("40 millis")
      yield* flow.submit(A, { id: 1 })
      yield* settle()
      yield* TestClock.adjust("40 millis")
      yield* flow.submit(A, { id: 2 })
      yield* settle()
      yield* TestClock.adjust("19 millis")
      yield* settle()
      expect(rec.calls.length).toBe(0)
      yield* TestClock.adjust("1 millis")
      yield* settle()
      expect(rec.calls.map((c) => ids(c.rows))).toEqual([[0, 1, 2]])
      expect(rec.calls[0]?.startedAt).toBe(100)
      yield* closeScope()
    })
  )

  it.effect(
    "nothing is written while idle; rows after an idle period go one interval after they arrive",
    () =>
      Effect.gen(function* () {
        const rec = recorder()
        const { flow, closeScope } = yield* startFlow(
          { flushSize: 10, flushInterval: "100 millis" },
          rec.executor
        )
        yield* flow.submit(A, { id: 0 })
        yield* settle()
        yield* TestClock.adjust("100 millis")
        yield* settle()
        expect(rec.calls.length).toBe(1)
        // Idle for a long time: no more calls (in particular no empty ones).
        for (let i = 0; i < 10; i++) yield* TestClock.adjust("100 millis")
        yield* settle()
        expect(rec.calls.length).toBe(1)
        // t = 1100: the next rows go at 1200, not at the next tick of some fixed cadence.
        yield* TestClock.adjust("5 millis")
        yield* flow.submit(A, { id: 1 })
        yield* flow.submit(A, { id: 2 })
        yield* settle()
        yield* TestClock.adjust("99 millis")
        yield* settle()
        expect(rec.calls.length).toBe(1)
        yield* TestClock.adjust("1 millis")
        yield* settle()
        expect(rec.calls.map((c) => ids(c.rows))).toEqual([[0], [1, 2]])
        expect(rec.calls[1]?.startedAt).toBe(1205)
        yield* closeScope()
      })
  )

  it.effect("after a size flush the interval restarts with the next row", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 3, concurrency: 1, flushInterval: "100 millis" },
        rec.executor
      )
      yield* flow.submit(A, { id: 0 })
      yield* settle()
      yield* TestClock.adjust("50 millis")
      yield* flow.submit(A, { id: 1 })
      yield* flow.submit(A, { id: 2 })
      yield* settle()
      expect(rec.calls.map((c) => [ids(c.rows), c.startedAt])).toEqual([[[0, 1, 2], 50]])
      yield* TestClock.adjust("10 millis")
      yield* flow.submit(A, { id: 3 })
      yield* settle()
      // 100 ms after the first row (t = 100) is too early: the interval started at t = 60.
      yield* TestClock.adjust("99 millis")
      yield* settle()
      expect(rec.calls.length).toBe(1)
      yield* TestClock.adjust("1 millis")
      yield* settle()
      expect(rec.calls.map((c) => [ids(c.rows), c.startedAt])).toEqual([
        [[0, 1, 2], 50],
        [[3], 160]
      ])
      yield* closeScope()
    })
  )
})

describe("flush trigger", () => {
  it.effect("flush right after submits writes them without waiting for flushInterval", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow({ flushSize: 100, flushInterval: "1 hour" }, rec.executor)
      for (const r of rows(3)) yield* flow.submit(A, r)
      // No yield between the submits and the flush: the executor is instant, so the flush must
      // complete without the clock moving.
      const flushing = yield* Effect.fork(flow.flush)
      yield* settle(50)
      const done = yield* Fiber.poll(flushing)
      expect(Option.isSome(done)).toBe(true)
      expect(ids(rec.committedRows("a"))).toEqual([0, 1, 2])
      yield* closeScope()
    })
  )
})

describe("bursts and backpressure", () => {
  it.effect(
    "a burst larger than the buffer is written completely, in order, in batches of at most flushSize",
    () =>
      Effect.gen(function* () {
        let flowRef: BatchFlow.BatchFlow | undefined
        let maxBuffered = 0
        const rec = recorder(() =>
          flowRef === undefined
            ? Effect.void
            : Effect.map(flowRef.stats, (s) => {
                maxBuffered = Math.max(maxBuffered, s.buffered)
              })
        )
        const { flow, closeScope } = yield* startFlow(
          { bufferSize: 8, flushSize: 4, concurrency: 1, flushInterval: "100 millis" },
          rec.executor
        )
        flowRef = flow
        const input = rows(50)
        const submitter = yield* Effect.fork(
          Effect.forEach(input, (r) => flow.submit(A, r), { discard: true })
        )
        expect(yield* advanceUntil(() => rec.committedCount() === 50, "10 millis", 1_000)).toBe(true)
        yield* Fiber.join(submitter)
        expect(ids(rec.committedRows("a"))).toEqual(ids(input))
        for (const call of rec.calls) expect(call.rows.length).toBeLessThanOrEqual(4)
        expect(rec.calls.length).toBeGreaterThanOrEqual(13)
        expect(maxBuffered).toBeLessThanOrEqual(8)
        const stats = yield* flow.stats
        expect(stats.accepted).toBe(50)
        expect(stats.committed).toBe(50)
        yield* closeScope()
      })
  )
})

describe("grouping by target", () => {
  it.effect(
    "flushSize counts all targets together; a flush makes one call per target, in arrival order",
    () =>
      Effect.gen(function* () {
        const rec = recorder()
        const { flow, closeScope } = yield* startFlow(
          { flushSize: 6, concurrency: 1, flushInterval: "1 hour" },
          rec.executor
        )
        yield* flow.submit(A, { id: 1 })
        yield* flow.submit(B, { id: 2 })
        yield* flow.submit(A, { id: 3 })
        yield* flow.submit(C, { id: 4 })
        yield* flow.submit(B, { id: 5 })
        yield* settle()
        expect(rec.calls.length).toBe(0)
        // The sixth row, whatever its target, completes the batch.
        yield* flow.submit(A, { id: 6 })
        yield* settle()
        const firstFlush = rec.calls.map((c) => [c.target, ids(c.rows)] as const)
        expect([...firstFlush].sort()).toEqual([
          ["a", [1, 3, 6]],
          ["b", [2, 5]],
          ["c", [4]]
        ])
        // A second flush gets its own calls.
        for (let i = 0; i < 6; i++) yield* flow.submit(i % 2 === 0 ? C : B, { id: 10 + i })
        yield* settle()
        const secondFlush = rec.calls.slice(3).map((c) => [c.target, ids(c.rows)] as const)
        expect([...secondFlush].sort()).toEqual([
          ["b", [11, 13, 15]],
          ["c", [10, 12, 14]]
        ])
        yield* closeScope()
      })
  )
})

describe("concurrency", () => {
  it.effect("at most `concurrency` executor calls run at once", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("100 millis"))
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 1, concurrency: 3, flushInterval: "1 hour" },
        rec.executor
      )
      for (const r of rows(12)) yield* flow.submit(A, r)
      yield* settle()
      expect(rec.active()).toBe(3)
      yield* TestClock.adjust("399 millis")
      yield* settle()
      expect(rec.committedCount()).toBe(9)
      yield* TestClock.adjust("1 millis")
      yield* settle()
      expect(rec.committedCount()).toBe(12)
      expect(rec.maxActive()).toBe(3)
      yield* closeScope()
    })
  )

  it.effect("the groups of one flush share the concurrency limit", () =>
    Effect.gen(function* () {
      const targets = Array.from({ length: 6 }, (_, i) => Target.make(`t${i}`, { schema: Struct }))
      const rec = recorder(() => Effect.sleep("100 millis"))
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 6, concurrency: 2, flushInterval: "1 hour" },
        rec.executor
      )
      for (const [i, target] of targets.entries()) yield* flow.submit(target, { id: i })
      yield* settle()
      expect(rec.active()).toBe(2)
      expect(yield* advanceUntil(() => rec.committedCount() === 6, "10 millis", 100)).toBe(true)
      expect(rec.maxActive()).toBe(2)
      expect(rec.calls.length).toBe(6)
      expect(yield* TestClock.currentTimeMillis).toBe(300)
      yield* closeScope()
    })
  )
})
