import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Option, Schema, Scope, Stream, TestClock } from "effect"
import { BatchExecutor, BatchFlowError, Target } from "effect-batchflow"
import { recorder, settle, startFlow } from "./helpers-engine.js"

const Events = Target.make("events", {
  schema: Schema.Struct({ id: Schema.Number, name: Schema.String }),
  key: ["id"]
})

const Audit = Target.make("audit", {
  schema: Schema.Struct({ id: Schema.Number, name: Schema.String })
})

type Row = { readonly id: number; readonly name: string }

const row = (id: number, name = `n${id}`): Row => ({ id, name })
const rows = (n: number, from = 0): Array<Row> => Array.from({ length: n }, (_, i) => row(from + i))

const rejected = (reason: string) =>
  new BatchFlowError.ExecutorError({ message: `rejected (${reason})`, retryable: false, reason })

/** Fails the test unless the fiber is still running. */
const expectRunning = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.map(Fiber.poll(fiber), (exit) => expect(Option.isNone(exit)).toBe(true))

describe("close", () => {
  it.effect("closing the scope commits every accepted row before it returns", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 50, bufferSize: 2_000, flushInterval: "1 hour" },
        memory
      )
      const input = rows(1_003)
      for (const r of input) yield* flow.submit(Events, r)
      yield* closeScope()
      const stats = yield* flow.stats
      expect(stats.accepted).toBe(1_003)
      expect(stats.committed).toBe(1_003)
      expect(stats.failed).toBe(0)
      expect(stats.buffered).toBe(0)
      expect(stats.inFlight).toBe(0)
      const written = memory.rowsOf("events") as ReadonlyArray<Row>
      expect(written.length).toBe(1_003)
      expect([...written].sort((a, b) => a.id - b.id)).toEqual(input)
    })
  )

  it.effect("closing the scope waits for the in-flight writes of a slow executor", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("5 seconds"))
      const { flow, scope } = yield* startFlow(
        { flushSize: 3, concurrency: 2, flushInterval: "1 hour", closeTimeout: "1 minute" },
        rec.executor
      )
      for (const r of rows(10)) yield* flow.submit(Audit, r)
      yield* settle()
      // Two full batches are being written; the other four rows wait in the buffer.
      expect(rec.calls.length).toBe(2)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("4 seconds")
      yield* expectRunning(closing)
      expect(rec.committedCount()).toBe(0)
      yield* TestClock.adjust("6 seconds")
      yield* Fiber.join(closing)
      // Right after the scope closed: everything accepted is committed.
      expect(rec.committedCount()).toBe(10)
      const stats = yield* flow.stats
      expect(stats.committed).toBe(stats.accepted)
      expect(stats.accepted).toBe(10)
      expect(stats.inFlight).toBe(0)
      expect(
        rec
          .committedRows("audit")
          .map((r) => (r as Row).id)
          .sort((a, b) => a - b)
      ).toEqual(rows(10).map((r) => r.id))
    })
  )

  it.effect(
    "closing right after a submit writes the row, even with a flushInterval longer than closeTimeout",
    () =>
      Effect.gen(function* () {
        const rec = recorder()
        const { flow, scope } = yield* startFlow(
          { flushSize: 10, flushInterval: "1 hour", closeTimeout: "1 second" },
          rec.executor
        )
        yield* flow.submit(Events, row(1))
        // No yield between the submit and the close: the row is buffered, the executor is instant,
        // so it must be written within closeTimeout rather than reported as close_timeout.
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)
        expect(rec.committedRows("events")).toEqual([row(1)])
        const stats = yield* flow.stats
        expect(stats.committed).toBe(1)
        expect(stats.failed).toBe(0)
      })
  )

  it.effect("submit, submitAll and write after close fail with a typed BatchFlowClosed", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow, closeScope } = yield* startFlow({ flushSize: 10 }, memory)
      yield* flow.submit(Events, row(1))
      yield* closeScope()
      // Effect.flip only succeeds on a typed failure: a defect or an interruption would fail the test.
      const e1 = yield* Effect.flip(flow.submit(Events, row(2)))
      const e2 = yield* Effect.flip(flow.submitAll(Events, [row(3), row(4)]))
      const e3 = yield* Effect.flip(flow.write(Events, row(5)))
      for (const e of [e1, e2, e3]) {
        expect(e).toBeInstanceOf(BatchFlowError.BatchFlowClosed)
        expect(e._tag).toBe("BatchFlowClosed")
      }
      expect((e1 as BatchFlowError.BatchFlowClosed).target).toBe("events")
      const stats = yield* flow.stats
      expect(stats.accepted).toBe(1)
      expect(memory.rowCount()).toBe(1)
    })
  )

  it.effect("close is idempotent: called twice, concurrently and with the scope", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("1 second"))
      const { flow, scope } = yield* startFlow({ flushSize: 2, flushInterval: "1 hour" }, rec.executor)
      for (const r of rows(5)) yield* flow.submit(Events, r)
      const closers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(flow.close))
      yield* settle()
      for (const closer of closers) yield* expectRunning(closer)
      yield* TestClock.adjust("1 minute")
      for (const closer of closers) yield* Fiber.join(closer)
      // Once more, and through the scope: both return at once.
      yield* flow.close
      const closingScope = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle()
      yield* Fiber.join(closingScope)
      expect(rec.committedCount()).toBe(5)
      const stats = yield* flow.stats
      expect(stats.committed).toBe(5)
      expect(stats.accepted).toBe(5)
      expect(yield* flow.isDone).toBe(true)
    })
  )

  it.effect("awaitDone waits until the flow is closed and drained; isDone turns true then", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("2 seconds"))
      const { flow } = yield* startFlow({ flushSize: 1 }, rec.executor)
      yield* flow.submit(Events, row(1))
      const waiter = yield* Effect.fork(flow.awaitDone)
      yield* settle()
      yield* expectRunning(waiter)
      expect(yield* flow.isDone).toBe(false)
      const closing = yield* Effect.fork(flow.close)
      yield* TestClock.adjust("1 second")
      // Closing started but the write is still running: not done yet.
      yield* expectRunning(waiter)
      expect(yield* flow.isDone).toBe(false)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      yield* Fiber.join(waiter)
      expect(yield* flow.isDone).toBe(true)
      expect(rec.committedCount()).toBe(1)
      // awaitDone after the fact returns at once.
      yield* flow.awaitDone
    })
  )
})

describe("backpressure", () => {
  /** A flow whose executor blocks until `release`; 2 rows being written and 2 buffered fill it. */
  const fullFlow = Effect.gen(function* () {
    const latch = yield* Effect.makeLatch(false)
    const rec = recorder(() => latch.await)
    const test = yield* startFlow(
      { bufferSize: 2, flushSize: 2, concurrency: 1, flushInterval: "1 hour" },
      rec.executor
    )
    yield* test.flow.submit(Events, row(0))
    yield* test.flow.submit(Events, row(1))
    yield* settle()
    expect(rec.calls.length).toBe(1)
    yield* test.flow.submit(Events, row(2))
    yield* test.flow.submit(Events, row(3))
    const stats = yield* test.flow.stats
    expect(stats.buffered).toBe(2)
    expect(stats.accepted).toBe(4)
    return { ...test, rec, release: latch.open }
  })

  it.effect("an interrupted submit suspended on a full buffer enqueues nothing", () =>
    Effect.gen(function* () {
      const { flow, rec, release, closeScope } = yield* fullFlow
      const blocked = yield* Effect.fork(flow.submit(Events, row(4)))
      yield* settle()
      yield* expectRunning(blocked)
      yield* Fiber.interrupt(blocked)
      expect((yield* flow.stats).accepted).toBe(4)
      yield* release
      yield* settle()
      yield* flow.submit(Events, row(5))
      yield* settle()
      yield* closeScope()
      expect(rec.committedRows("events")).toEqual([row(0), row(1), row(2), row(3), row(5)])
      const stats = yield* flow.stats
      expect(stats.accepted).toBe(5)
      expect(stats.committed).toBe(5)
    })
  )

  it.effect("a submit that times out on a full buffer fails with TimeoutException and enqueues nothing", () =>
    Effect.gen(function* () {
      const { flow, rec, release, closeScope } = yield* fullFlow
      const blocked = yield* Effect.fork(flow.submit(Events, row(4)).pipe(Effect.timeout("1 second")))
      yield* settle()
      yield* expectRunning(blocked)
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(blocked))
      expect(error._tag).toBe("TimeoutException")
      expect((yield* flow.stats).accepted).toBe(4)
      yield* release
      yield* settle()
      yield* flow.submit(Events, row(5))
      yield* settle()
      yield* closeScope()
      expect(rec.committedRows("events")).toEqual([row(0), row(1), row(2), row(3), row(5)])
      expect((yield* flow.stats).committed).toBe(5)
    })
  )

  it.effect(
    "close fails submitters suspended on a full buffer with BatchFlowClosed and loses no accepted row",
    () =>
      Effect.gen(function* () {
        const { flow, rec, release } = yield* fullFlow
        const submitter = yield* Effect.fork(flow.submit(Events, row(4)))
        const writer = yield* Effect.fork(flow.write(Events, row(5)))
        const bulk = yield* Effect.fork(flow.submitAll(Events, [row(6), row(7)]))
        yield* settle()
        for (const f of [submitter, writer, bulk]) yield* expectRunning(f)
        const closing = yield* Effect.fork(flow.close)
        yield* settle()
        const errors = [
          yield* Effect.flip(Fiber.join(submitter)),
          yield* Effect.flip(Fiber.join(writer)),
          yield* Effect.flip(Fiber.join(bulk))
        ]
        for (const e of errors) expect(e._tag).toBe("BatchFlowClosed")
        // The executor is still blocked: closing waits for it.
        yield* expectRunning(closing)
        yield* release
        yield* Fiber.join(closing)
        expect(rec.committedRows("events")).toEqual([row(0), row(1), row(2), row(3)])
        const stats = yield* flow.stats
        expect(stats.accepted).toBe(4)
        expect(stats.committed).toBe(4)
        expect(stats.failed).toBe(0)
      })
  )
})

describe("close timeout", () => {
  it.effect(
    "past closeTimeout, rows never sent are reported close_timeout and rows being written unknown_outcome",
    () =>
      Effect.gen(function* () {
        const rec = recorder(() => Effect.sleep("10 seconds"))
        const { flow, scope } = yield* startFlow(
          { flushSize: 2, bufferSize: 10, concurrency: 1, flushInterval: "1 hour", closeTimeout: "1 second" },
          rec.executor
        )
        const writers: Array<Fiber.RuntimeFiber<void, unknown>> = []
        for (const r of rows(5)) {
          writers.push(yield* Effect.fork(flow.write(Events, r)))
          yield* settle(5)
        }
        // Rows 0-1 are being written (the executor sleeps 10 s); rows 2-4 wait in the buffer.
        expect(rec.calls.map((c) => c.rows)).toEqual([[row(0), row(1)]])
        const before = yield* flow.stats
        expect(before.inFlight).toBe(1)
        expect(before.buffered).toBe(3)

        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)

        const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(flow.failures))
        expect(failures.length).toBe(2)
        const inFlight = failures.find((f) => f.rows.length === 2)
        const buffered = failures.find((f) => f.rows.length === 3)
        expect(inFlight?.rows).toEqual([row(0), row(1)])
        expect(inFlight?.reason).toBe("unknown_outcome")
        expect(inFlight?.outcome).toBe("unknown_outcome")
        expect(buffered?.rows).toEqual([row(2), row(3), row(4)])
        expect(buffered?.reason).toBe("close_timeout")
        expect(buffered?.outcome).toBe("failed")

        for (const [i, writer] of writers.entries()) {
          const error = yield* Effect.flip(Fiber.join(writer))
          expect(error).toBeInstanceOf(BatchFlowError.BatchFailure)
          const failure = error as BatchFlowError.BatchFailure
          expect(failure.reason).toBe(i < 2 ? "unknown_outcome" : "close_timeout")
          expect(failure.rows).toContainEqual(row(i))
        }

        expect(rec.committedCount()).toBe(0)
        const stats = yield* flow.stats
        expect(stats.accepted).toBe(5)
        expect(stats.committed).toBe(0)
        expect(stats.failed).toBe(3)
        expect(stats.unknownOutcome).toBe(2)
        expect(stats.accepted).toBe(stats.committed + stats.failed + stats.unknownOutcome)
        expect(stats.buffered).toBe(0)
        expect(yield* flow.isDone).toBe(true)

        // The abandoned attempt was not interrupted: when it ends, its real outcome is recorded.
        yield* TestClock.adjust("10 seconds")
        yield* settle(10)
        expect(rec.committedCount()).toBe(2)
        const after = yield* flow.stats
        expect(after.lateCommitted).toBe(2)
        expect(after.lateFailed).toBe(0)
        expect(after.committed).toBe(0)
        expect(after.inFlight).toBe(0)
      })
  )

  it.effect(
    "a failing target's retries hold no worker; past bufferSize rows in retry only its own submits wait, and close rejects them",
    () =>
      Effect.gen(function* () {
        const Failing = Target.make("failing", { schema: Events.schema })
        const rec = recorder((target) =>
          target.name === "failing"
            ? Effect.fail(
                new BatchFlowError.ExecutorError({ message: "down", retryable: true, reason: "connection" })
              )
            : Effect.void
        )
        const { flow, scope } = yield* startFlow(
          {
            flushSize: 5,
            bufferSize: 10,
            concurrency: 1,
            flushInterval: "1 millis",
            closeTimeout: "1 second",
            retry: {
              maxAttempts: 1_000,
              maxElapsed: "1 hour",
              backoffBase: "1 second",
              maxBackoff: "1 second"
            }
          },
          rec.executor
        )
        // Ten failing rows: two groups, both retrying (handed off), so the failing target's backlog is full.
        yield* flow.submitAll(Failing, rows(10))
        yield* TestClock.adjust("10 millis")
        yield* settle()
        const waiting = yield* Effect.fork(flow.submit(Failing, row(100)))
        yield* settle()
        expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
        // The healthy target is written meanwhile, by the one worker.
        const written = yield* Effect.fork(flow.write(Events, row(200)))
        yield* TestClock.adjust("10 millis")
        yield* Fiber.join(written)
        expect(rec.committedRows("events")).toEqual([row(200)])
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle()
        const rejected = yield* Effect.flip(Fiber.join(waiting))
        expect(rejected._tag).toBe("BatchFlowClosed")
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)
        const stats = yield* flow.stats
        expect(stats.accepted).toBe(11)
        expect(stats.accepted).toBe(stats.committed + stats.failed + stats.unknownOutcome)
      })
  )

  it.live("producers that keep submitting after close cannot stretch its deadline", () =>
    Effect.gen(function* () {
      const executor = BatchExecutor.make(() => Effect.sleep("10 seconds"))
      const { flow, scope } = yield* startFlow(
        { flushSize: 10, flushInterval: "1 hour", closeTimeout: "1 second", timeout: Infinity },
        executor
      )
      yield* flow.submitAll(Events, rows(10))
      const started = Date.now()
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // Eight producers in a tight loop, every call rejected with BatchFlowClosed.
      let rejected = 0
      let stop = false
      const producers = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, p) => p),
        (p) =>
          Effect.fork(
            Effect.gen(function* () {
              while (!stop) {
                const exit = yield* Effect.exit(flow.submit(Events, row(1_000 + p)))
                if (Exit.isFailure(exit)) rejected++
              }
            })
          )
      )
      yield* Fiber.join(closing)
      const closeMillis = Date.now() - started
      stop = true
      yield* Fiber.joinAll(producers)
      expect(closeMillis).toBeLessThan(2_000)
      // The producers ran all along: their rejections did not starve the close deadline's timer.
      expect(rejected).toBeGreaterThan(1_000)
      expect((yield* flow.stats).unknownOutcome).toBe(10)
    })
  )

  it.effect("close timeout also reports rows waiting behind an unfinished group with the same key", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("10 seconds"))
      const { flow, scope } = yield* startFlow(
        { flushSize: 1, concurrency: 2, flushInterval: "1 hour", closeTimeout: "1 second" },
        rec.executor
      )
      const first = yield* Effect.fork(flow.write(Events, row(1, "first")))
      yield* settle()
      const second = yield* Effect.fork(flow.write(Events, row(1, "second")))
      yield* settle()
      // The second row has the first's key: its group waits for the first group to finish.
      expect(rec.calls.length).toBe(1)
      expect((yield* flow.stats).inFlight).toBe(2)

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      yield* settle()

      const stats = yield* flow.stats
      expect(stats.accepted).toBe(2)
      expect(stats.accepted).toBe(stats.committed + stats.failed + stats.unknownOutcome)
      const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(flow.failures))
      expect(failures.flatMap((f) => f.rows)).toEqual(
        expect.arrayContaining([row(1, "first"), row(1, "second")])
      )
      // The first was being written (maybe written); the second never reached the executor.
      for (const [writer, reason] of [
        [first, "unknown_outcome"],
        [second, "close_timeout"]
      ] as const) {
        const exit = yield* Fiber.poll(writer)
        expect(Option.isSome(exit)).toBe(true)
        const error = yield* Effect.flip(Fiber.join(writer))
        expect((error as BatchFlowError.BatchFailure).reason).toBe(reason)
      }
    })
  )
})

describe("flush", () => {
  it.effect("flush on an empty flow returns at once", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow, closeScope } = yield* startFlow({ flushInterval: "1 hour" }, memory)
      const flushing = yield* Effect.fork(flow.flush)
      yield* settle()
      const exit = yield* Fiber.poll(flushing)
      expect(Option.isSome(exit) && Exit.isSuccess(exit.value)).toBe(true)
      expect(memory.batches.length).toBe(0)
      yield* closeScope()
    })
  )

  it.effect("flush returns once every row submitted before it is committed", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("50 millis"))
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 100, concurrency: 2, flushInterval: "1 hour" },
        rec.executor
      )
      for (const r of rows(5)) yield* flow.submit(Events, r)
      yield* settle()
      expect(rec.calls.length).toBe(0)
      const flushing = yield* Effect.fork(flow.flush)
      yield* settle()
      yield* expectRunning(flushing)
      expect(rec.calls.length).toBe(1)
      expect(rec.committedCount()).toBe(0)
      yield* TestClock.adjust("50 millis")
      yield* Fiber.join(flushing)
      expect(rec.committedRows("events")).toEqual(rows(5))
      expect((yield* flow.stats).committed).toBe(5)
      yield* closeScope()
    })
  )

  it.effect("flush with an empty buffer waits for the batches already being written", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("50 millis"))
      const { flow, closeScope } = yield* startFlow({ flushSize: 2, flushInterval: "1 hour" }, rec.executor)
      yield* flow.submit(Events, row(0))
      yield* flow.submit(Events, row(1))
      yield* settle()
      expect((yield* flow.stats).buffered).toBe(0)
      expect(rec.calls.length).toBe(1)
      const flushing = yield* Effect.fork(flow.flush)
      yield* settle()
      yield* expectRunning(flushing)
      yield* TestClock.adjust("50 millis")
      yield* Fiber.join(flushing)
      expect(rec.committedRows("events")).toEqual([row(0), row(1)])
      yield* closeScope()
    })
  )

  it.effect("a failing target does not drop the other targets of the same flush", () =>
    Effect.gen(function* () {
      // The failing target fails at once while the other one is still writing.
      const rec = recorder((target) =>
        target.name === "events" ? Effect.fail(rejected("rejected")) : Effect.sleep("10 millis")
      )
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 100, flushInterval: "1 hour", retry: { maxAttempts: 1 } },
        rec.executor
      )
      yield* flow.submit(Events, row(1))
      yield* flow.submit(Audit, row(2))
      yield* flow.submit(Events, row(3))
      yield* flow.submit(Audit, row(4))
      yield* settle()
      const flushing = yield* Effect.fork(flow.flush)
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(flushing)
      // One flush, one call per target.
      expect(rec.calls.map((c) => c.target).sort()).toEqual(["audit", "events"])
      expect(rec.committedRows("audit")).toEqual([row(2), row(4)])
      expect(rec.committedRows("events")).toEqual([])
      const [failure] = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(flow.failures, 1)))
      expect(failure?.target).toBe("events")
      expect(failure?.rows).toEqual([row(1), row(3)])
      expect(failure?.reason).toBe("rejected")
      const stats = yield* flow.stats
      expect(stats.committed).toBe(2)
      expect(stats.failed).toBe(2)
      yield* closeScope()
    })
  )
})

describe("executor defects", () => {
  it.effect(
    "an executor that throws inside its effect gives a defect failure and later rows are written",
    () =>
      Effect.gen(function* () {
        const rec = recorder((_, __, call) =>
          call.index === 0
            ? Effect.sync(() => {
                throw new Error("boom")
              })
            : Effect.void
        )
        const { flow, closeScope } = yield* startFlow({ flushSize: 1, concurrency: 1 }, rec.executor)
        yield* flow.submit(Events, row(1))
        yield* flow.flush
        yield* flow.submit(Events, row(2))
        yield* flow.flush
        const [failure] = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(flow.failures, 1)))
        expect(failure?.reason).toBe("defect")
        expect(failure?.rows).toEqual([row(1)])
        expect(failure?.attempts).toBe(1)
        expect((failure?.cause as Error | undefined)?.message).toBe("boom")
        expect(rec.committedRows("events")).toEqual([row(2)])
        yield* closeScope()
        const stats = yield* flow.stats
        expect(stats.committed).toBe(1)
        expect(stats.failed).toBe(1)
      })
  )

  it.effect("an executor that throws when called gives a defect failure and later rows are written", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      let calls = 0
      const executor = BatchExecutor.make((target, rows) => {
        calls++
        if (calls === 1) throw new Error("thrown synchronously")
        return memory.execute(target, rows)
      })
      const { flow, closeScope } = yield* startFlow({ flushSize: 1, concurrency: 1 }, executor)
      const failed = yield* Effect.flip(flow.write(Events, row(1)))
      expect(failed._tag).toBe("BatchFailure")
      expect((failed as BatchFlowError.BatchFailure).reason).toBe("defect")
      expect((failed as BatchFlowError.BatchFailure).rows).toEqual([row(1)])
      yield* flow.write(Events, row(2))
      expect(memory.rowsOf("events")).toEqual([row(2)])
      yield* closeScope()
      const stats = yield* flow.stats
      expect(stats.committed).toBe(1)
      expect(stats.failed).toBe(1)
    })
  )
})

describe("write", () => {
  it.effect("write resolves only after its batch is committed", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.sleep("100 millis"))
      const { flow, closeScope } = yield* startFlow({ flushSize: 1 }, rec.executor)
      const writer = yield* Effect.fork(flow.write(Events, row(7)))
      yield* settle()
      expect(rec.calls.length).toBe(1)
      yield* TestClock.adjust("99 millis")
      yield* expectRunning(writer)
      expect(rec.committedCount()).toBe(0)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(writer)
      expect(rec.committedRows("events")).toEqual([row(7)])
      yield* closeScope()
    })
  )

  it.effect("write fails with the BatchFailure of its batch", () =>
    Effect.gen(function* () {
      const rec = recorder((_, rows) =>
        rows.some((r) => (r as Row).name === "bad") ? Effect.fail(rejected("check_violation")) : Effect.void
      )
      const { flow, closeScope } = yield* startFlow({ flushSize: 2, flushInterval: "1 hour" }, rec.executor)
      const good = yield* Effect.fork(flow.write(Events, row(1)))
      const bad = yield* Effect.fork(flow.write(Events, row(2, "bad")))
      yield* settle()
      const errors = [yield* Effect.flip(Fiber.join(good)), yield* Effect.flip(Fiber.join(bad))]
      for (const error of errors) {
        expect(error).toBeInstanceOf(BatchFlowError.BatchFailure)
        const failure = error as BatchFlowError.BatchFailure
        expect(failure.target).toBe("events")
        expect(failure.reason).toBe("check_violation")
        expect(failure.retryable).toBe(false)
        expect(failure.rows).toEqual([row(1), row(2, "bad")])
        expect(failure.cause).toBeInstanceOf(BatchFlowError.ExecutorError)
      }
      // A later batch without the bad row commits, and its writer succeeds.
      const later = yield* Effect.fork(flow.write(Events, row(3)))
      yield* settle()
      yield* flow.flush
      yield* Fiber.join(later)
      expect(rec.committedRows("events")).toEqual([row(3)])
      yield* closeScope()
    })
  )
})

describe("failures stream", () => {
  it.effect("unread failures beyond failureBufferSize are dropped and counted", () =>
    Effect.gen(function* () {
      const rec = recorder(() => Effect.fail(rejected("rejected")))
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 1, concurrency: 1, failureBufferSize: 2, retry: { maxAttempts: 1 } },
        rec.executor
      )
      for (const r of rows(5)) yield* flow.submit(Events, r)
      yield* flow.flush
      const stats = yield* flow.stats
      expect(stats.failed).toBe(5)
      expect(stats.droppedFailures).toBe(3)
      yield* closeScope()
      const kept = Chunk.toReadonlyArray(yield* Stream.runCollect(flow.failures))
      expect(kept.length).toBe(2)
      expect(kept.map((f) => f.rows)).toEqual([[row(0)], [row(1)]])
    })
  )

  it.effect("the failures stream delivers failures as they happen and ends when the flow closes", () =>
    Effect.gen(function* () {
      const rec = recorder((_, rows) =>
        (rows[0] as Row).id === 1 ? Effect.fail(rejected("rejected")) : Effect.void
      )
      const { flow, scope } = yield* startFlow({ flushSize: 1, retry: { maxAttempts: 1 } }, rec.executor)
      const seen: Array<BatchFlowError.BatchFailure> = []
      const reader = yield* Effect.fork(
        Stream.runForEach(flow.failures, (f) => Effect.sync(() => seen.push(f)))
      )
      yield* flow.submit(Events, row(1))
      yield* flow.submit(Events, row(2))
      yield* flow.flush
      yield* settle()
      expect(seen.map((f) => f.rows)).toEqual([[row(1)]])
      yield* expectRunning(reader)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      yield* settle()
      const exit = yield* Fiber.poll(reader)
      expect(Option.isSome(exit) && Exit.isSuccess(exit.value)).toBe(true)
      expect(seen.length).toBe(1)
    })
  )
})

describe("submitAll", () => {
  it.effect("submitAll accepts all rows in order, also more rows than the buffer holds", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 3, bufferSize: 10, concurrency: 1, flushInterval: "100 millis" },
        rec.executor
      )
      yield* flow.submitAll(Events, rows(7))
      expect((yield* flow.stats).accepted).toBe(7)
      // More rows than the buffer holds: accepted in pieces as the worker frees room. A piece that
      // fits but not next to the rows buffered waits for a flush, which may be the interval's.
      const big = rows(25, 100)
      const bulk = yield* Effect.fork(flow.submitAll(Events, big))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(bulk)
      expect((yield* flow.stats).accepted).toBe(32)
      yield* closeScope()
      expect(rec.committedRows("events")).toEqual([...rows(7), ...big])
      for (const call of rec.calls) expect(call.rows.length).toBeLessThanOrEqual(3)
      expect((yield* flow.stats).committed).toBe(32)
    })
  )

  it.effect("an invalid row rejects the whole submitAll with its index and enqueues nothing", () =>
    Effect.gen(function* () {
      const rec = recorder()
      const { flow, closeScope } = yield* startFlow({ flushSize: 2 }, rec.executor)
      const input = [row(0), row(1), { id: "2", name: "n2" } as unknown as Row, row(3)]
      const error = yield* Effect.flip(flow.submitAll(Events, input))
      expect(error).toBeInstanceOf(BatchFlowError.InvalidRow)
      const invalid = error as BatchFlowError.InvalidRow
      expect(invalid.index).toBe(2)
      expect(invalid.field).toBe("id")
      expect(invalid.problem).toBe("wrong_type")
      expect((yield* flow.stats).accepted).toBe(0)
      yield* closeScope()
      expect(rec.calls.length).toBe(0)
    })
  )
})
