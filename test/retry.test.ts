import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Schedule,
  Schema,
  Scope,
  Stream,
  TestClock
} from "effect"
import {
  BatchExecutor,
  BatchFlow,
  type BatchFlowConfig,
  BatchFlowError,
  Retry,
  Target
} from "effect-batchflow"

const Items = Target.make("items", { schema: Schema.Struct({ id: Schema.Number, bad: Schema.Boolean }) })
type Item = Target.Row<typeof Items>

const item = (id: number, bad = false): Item => ({ id, bad })

const retryable = (reason = "busy") =>
  new BatchFlowError.ExecutorError({ message: "try again", retryable: true, reason })

/**
 * Starts a flow in its own scope over `executor` (and optional user rules). The failures stream is
 * read from the start; `close` closes the scope while moving the TestClock and returns every failure.
 */
const startFlow = (
  options: BatchFlowConfig.Options,
  executor: BatchExecutor.BatchExecutor,
  rules?: Layer.Layer<Retry.ErrorClassifier>
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const base = BatchFlow.layer(options).pipe(
      Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))
    )
    const ctx = yield* Layer.buildWithScope(
      rules === undefined ? base : base.pipe(Layer.provide(rules)),
      scope
    )
    const flow = Context.get(ctx, BatchFlow.BatchFlow)
    const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
    const close = Effect.gen(function* () {
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("10 minutes")
      yield* Fiber.join(closing)
      return Chunk.toArray(yield* Fiber.join(failures))
    })
    return { flow, close }
  })

/** An executor that records the TestClock time of every attempt, per row id, then runs `outcome`. */
const recording = (outcome: (attempt: number, rows: ReadonlyArray<Item>) => Effect.Effect<void, unknown>) => {
  const times = new Map<number, Array<number>>()
  const committed: Array<Item> = []
  const executor = BatchExecutor.make((_target, rows) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const items = rows as ReadonlyArray<Item>
      const first = items[0]!.id
      const attempts = times.get(first) ?? []
      attempts.push(now)
      times.set(first, attempts)
      yield* outcome(attempts.length, items)
      committed.push(...items)
    })
  )
  return { executor, times, committed }
}

const gaps = (times: ReadonlyArray<number>): Array<number> => times.slice(1).map((t, i) => t - times[i]!)

describe("retry delays and attempt counts", () => {
  it.effect("an always-retryable batch is attempted at 0, 100, 300, 700, 1500 ms and then reported", () =>
    Effect.gen(function* () {
      const { executor, times } = recording(() => Effect.fail(retryable()))
      const { flow, close } = yield* startFlow(
        {
          flushSize: 1,
          retry: { maxAttempts: 5, backoffBase: "100 millis", maxBackoff: "1 second", jitter: 0 }
        },
        executor
      )
      const writer = yield* Effect.fork(Effect.flip(flow.write(Items, item(1))))
      yield* TestClock.adjust("10 seconds")
      expect(times.get(1)).toEqual([0, 100, 300, 700, 1500])
      const error = yield* Fiber.join(writer)
      expect(error).toBeInstanceOf(BatchFlowError.BatchFailure)
      expect(error).toMatchObject({ _tag: "BatchFailure", attempts: 5, retryable: true, reason: "busy" })
      const failures = yield* close
      expect(failures).toHaveLength(1)
      expect(failures[0]).toMatchObject({ target: "items", rows: [item(1)], attempts: 5, retryable: true })
      expect(failures[0]!.cause).toBeInstanceOf(BatchFlowError.ExecutorError)
      const stats = yield* flow.stats
      expect(stats).toMatchObject({ accepted: 1, committed: 0, failed: 1, retries: 4 })
    })
  )

  it.effect("maxAttempts 1 disables retry", () =>
    Effect.gen(function* () {
      const { executor, times } = recording(() => Effect.fail(retryable()))
      const { flow, close } = yield* startFlow({ flushSize: 1, retry: { maxAttempts: 1 } }, executor)
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(times.get(1)).toEqual([0])
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([[1, true, "busy"]])
    })
  )

  it.effect(
    "with jitter the gaps stay within ±jitter of the exponential delay and never exceed maxBackoff",
    () =>
      Effect.gen(function* () {
        const base = 100
        const max = 1000
        const maxAttempts = 8
        const { executor, times } = recording(() => Effect.fail(retryable()))
        const { flow, close } = yield* startFlow(
          {
            flushSize: 1,
            concurrency: 6,
            retry: { maxAttempts, backoffBase: base, maxBackoff: max, jitter: 0.5 }
          },
          executor
        )
        for (let id = 0; id < 6; id++) yield* flow.submit(Items, item(id))
        yield* TestClock.adjust("1 minute")
        const failures = yield* close
        expect(failures).toHaveLength(6)
        let jittered = 0
        for (let id = 0; id < 6; id++) {
          const attempts = times.get(id)!
          expect(attempts).toHaveLength(maxAttempts)
          gaps(attempts).forEach((gap, i) => {
            const exact = base * 2 ** i
            // (times are fractional milliseconds: allow for float rounding in the subtraction)
            expect(gap).toBeLessThanOrEqual(max + 1e-6)
            expect(gap).toBeGreaterThanOrEqual(Math.min(exact * 0.5, max) - 1e-6)
            expect(gap).toBeLessThanOrEqual(Math.min(exact * 1.5, max) + 1e-6)
            if (exact < max && Math.abs(gap - exact) > 1e-6) jittered++
          })
        }
        // The jitter is really applied: the uncapped gaps are not all the exact exponential delays.
        expect(jittered).toBeGreaterThan(0)
      })
  )

  it.effect("the schedule's delays are capped after the jitter, over many draws", () =>
    Effect.gen(function* () {
      const options: BatchFlowConfig.RetryOptions = {
        maxAttempts: 10,
        maxElapsed: Duration.infinity,
        backoffBase: Duration.millis(100),
        maxBackoff: Duration.seconds(1),
        jitter: 0.5
      }
      const inputs = Array.from({ length: 20 }, () => ({ retryable: true, reason: "busy" }))
      const seen = new Set<number>()
      for (let draw = 0; draw < 200; draw++) {
        const delays = Chunk.toArray(
          yield* Schedule.run(Schedule.delays(Retry.schedule(options)), 0, inputs)
        ).map(Duration.toMillis)
        // maxAttempts 10 = 9 retries; the schedule stops after that.
        const retries = delays.slice(0, options.maxAttempts - 1)
        retries.forEach((delay, i) => {
          const exact = 100 * 2 ** i
          expect(delay).toBeLessThanOrEqual(1000)
          expect(delay).toBeGreaterThanOrEqual(Math.min(exact * 0.5, 1000) - 1e-6)
          expect(delay).toBeLessThanOrEqual(Math.min(exact * 1.5, 1000) + 1e-6)
          if (i === 0) seen.add(Math.round(delay))
        })
      }
      // Different draws give different first delays.
      expect(seen.size).toBeGreaterThan(10)
    })
  )

  it.effect(
    "retries stop once maxElapsed has passed since the first failure, whatever maxAttempts allows",
    () =>
      Effect.gen(function* () {
        const started: Array<number> = []
        const executor = BatchExecutor.make(() =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            started.push(now)
            return Effect.fail(
              new BatchFlowError.ExecutorError({ message: "down", retryable: true, reason: "connection" })
            )
          })
        )
        const { flow, close } = yield* startFlow(
          {
            flushSize: 1,
            retry: {
              maxAttempts: 1_000,
              maxElapsed: "1 second",
              backoffBase: "100 millis",
              maxBackoff: "100 millis",
              jitter: 0
            }
          },
          executor
        )
        const writer = yield* Effect.fork(Effect.flip(flow.write(Items, item(1))))
        yield* TestClock.adjust("1 minute")
        const error = yield* Fiber.join(writer)
        // A retry every 100 ms, none starting after 1 s from the first failure.
        expect(started.length).toBeGreaterThanOrEqual(10)
        expect(started.length).toBeLessThanOrEqual(12)
        expect(Math.max(...started)).toBeLessThanOrEqual(1_100)
        expect(error).toMatchObject({ _tag: "BatchFailure", reason: "connection", outcome: "failed" })
        yield* close
      })
  )

  it.effect(
    "retry.schedule: a user's own Schedule decides the waits and the end; non-retryable errors stay final",
    () =>
      Effect.gen(function* () {
        const started: Array<number> = []
        let calls = 0
        const executor = BatchExecutor.make((target) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            started.push(now)
            calls++
            return Effect.fail(
              new BatchFlowError.ExecutorError({
                message: "no",
                retryable: target.name === "items",
                reason: target.name === "items" ? "busy" : "fatal"
              })
            )
          })
        )
        const Final = Target.make("final", { schema: Items.schema })
        const { flow, close } = yield* startFlow(
          {
            flushSize: 1,
            retry: { schedule: Schedule.spaced("300 millis").pipe(Schedule.intersect(Schedule.recurs(2))) }
          },
          executor
        )
        const writer = yield* Effect.fork(Effect.flip(flow.write(Items, item(1))))
        yield* TestClock.adjust("1 minute")
        expect(yield* Fiber.join(writer)).toMatchObject({ attempts: 3, reason: "busy" })
        expect(started).toEqual([0, 300, 600])
        calls = 0
        const final = yield* Effect.fork(Effect.flip(flow.write(Final, item(2))))
        yield* TestClock.adjust("1 minute")
        expect(yield* Fiber.join(final)).toMatchObject({ attempts: 1, reason: "fatal" })
        expect(calls).toBe(1)
        yield* close
      })
  )

  it.effect("the schedule stops at once on a non-retryable error and after maxAttempts", () =>
    Effect.gen(function* () {
      const schedule = Retry.schedule({
        maxAttempts: 5,
        maxElapsed: Duration.infinity,
        backoffBase: Duration.millis(10),
        maxBackoff: Duration.millis(100),
        jitter: 0
      })
      const attemptsWith = (classifications: ReadonlyArray<Retry.Classification>) =>
        Effect.gen(function* () {
          let attempts = 0
          const fiber = yield* Effect.fork(
            Effect.retry(
              Effect.suspend(() => Effect.fail(classifications[attempts++ % classifications.length]!)),
              schedule
            ).pipe(Effect.flip)
          )
          yield* TestClock.adjust("1 minute")
          const last = yield* Fiber.join(fiber)
          return { attempts, last: last.reason }
        })
      const busy = { retryable: true, reason: "busy" }
      const fatal = { retryable: false, reason: "fatal" }
      expect(yield* attemptsWith([busy, fatal, busy])).toEqual({ attempts: 2, last: "fatal" })
      expect(yield* attemptsWith([fatal])).toEqual({ attempts: 1, last: "fatal" })
      expect(yield* attemptsWith([busy])).toEqual({ attempts: 5, last: "busy" })
    })
  )
})

describe("classification", () => {
  const options: BatchFlowConfig.Options = {
    flushSize: 1,
    retry: { maxAttempts: 3, backoffBase: "10 millis", jitter: 0 }
  }

  it.effect("a non-retryable ExecutorError is not retried and keeps its reason", () =>
    Effect.gen(function* () {
      const error = new BatchFlowError.ExecutorError({ message: "dup", retryable: false, reason: "unique" })
      const { executor, times } = recording(() => Effect.fail(error))
      const { flow, close } = yield* startFlow(options, executor)
      const writer = yield* Effect.fork(Effect.flip(flow.write(Items, item(1))))
      const failures = yield* close
      expect(times.get(1)).toEqual([0])
      expect(failures).toHaveLength(1)
      expect(failures[0]).toMatchObject({ attempts: 1, retryable: false, reason: "unique", rows: [item(1)] })
      expect(failures[0]!.cause).toBe(error)
      expect(yield* Fiber.join(writer)).toBe(failures[0])
    })
  )

  it.effect("a retryable ExecutorError is retried up to maxAttempts with its own reason", () =>
    Effect.gen(function* () {
      const { executor, times } = recording(() => Effect.fail(retryable("deadlock")))
      const { flow, close } = yield* startFlow(options, executor)
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(times.get(1)).toEqual([0, 10, 30])
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([[3, true, "deadlock"]])
    })
  )

  it.effect("an unknown error is final with reason non_retryable", () =>
    Effect.gen(function* () {
      const { executor, times } = recording(() => Effect.fail(new Error("connection reset?")))
      const { flow, close } = yield* startFlow(options, executor)
      yield* flow.submit(Items, item(1))
      yield* flow.submit(Items, item(2))
      const failures = yield* close
      expect(times.get(1)).toEqual([0])
      expect(times.get(2)).toEqual([0])
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([
        [1, false, "non_retryable"],
        [1, false, "non_retryable"]
      ])
      expect(Retry.classifyWith([])("anything")).toEqual(Retry.unknownError)
    })
  )

  it.effect("a defect is final with reason defect", () =>
    Effect.gen(function* () {
      const { executor, times } = recording(() => Effect.die(new Error("bug in executor")))
      const { flow, close } = yield* startFlow(options, executor)
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(times.get(1)).toEqual([0])
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([[1, false, "defect"]])
      expect((failures[0]!.cause as Error).message).toBe("bug in executor")
    })
  )

  const Tagged = (reason: string) => ({ _tag: "DriverError", code: reason })
  const executorRule: Retry.Rule = (e) =>
    (e as { _tag?: string })._tag === "DriverError" ? { retryable: true, reason: "executor_rule" } : undefined
  const userRule: Retry.Rule = (e) =>
    (e as { _tag?: string })._tag === "DriverError" ? { retryable: false, reason: "user_rule" } : undefined
  const silentRule: Retry.Rule = () => undefined

  it.effect("the executor's rules are used for errors they know", () =>
    Effect.gen(function* () {
      const { executor: base, times } = recording(() => Effect.fail(Tagged("40001")))
      const executor = BatchExecutor.make(base.execute, { rules: [executorRule] })
      const { flow, close } = yield* startFlow(options, executor)
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(times.get(1)).toHaveLength(3)
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([[3, true, "executor_rule"]])
    })
  )

  it.effect("a user rule runs once per failed attempt", () =>
    Effect.gen(function* () {
      const { executor } = recording(() => Effect.fail(Tagged("40001")))
      let calls = 0
      const counting: Retry.Rule = () => {
        calls++
        return { retryable: true, reason: "counted" }
      }
      const { flow, close } = yield* startFlow(options, executor, Retry.layer(counting))
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(failures.map((f) => [f.attempts, f.reason])).toEqual([[3, "counted"]])
      expect(calls).toBe(3)
    })
  )

  it.effect("a user rule from Retry.layer wins over the executor's rules", () =>
    Effect.gen(function* () {
      const { executor: base, times } = recording(() => Effect.fail(Tagged("40001")))
      const executor = BatchExecutor.make(base.execute, { rules: [executorRule] })
      const { flow, close } = yield* startFlow(options, executor, Retry.layer(silentRule, userRule))
      yield* flow.submit(Items, item(1))
      const failures = yield* close
      expect(times.get(1)).toEqual([0])
      expect(failures.map((f) => [f.attempts, f.retryable, f.reason])).toEqual([[1, false, "user_rule"]])
    })
  )

  it.effect("user and executor rules win over the engine's rule for ExecutorError", () =>
    Effect.gen(function* () {
      const error = retryable("engine_rule")
      const overrides: Retry.Rule = (e) =>
        e instanceof BatchFlowError.ExecutorError ? { retryable: false, reason: "executor_rule" } : undefined
      const userOverrides: Retry.Rule = (e) =>
        e instanceof BatchFlowError.ExecutorError ? { retryable: false, reason: "user_rule" } : undefined

      const run = (rules: ReadonlyArray<Retry.Rule>, user: ReadonlyArray<Retry.Rule> | undefined) =>
        Effect.gen(function* () {
          const { executor: base, times } = recording(() => Effect.fail(error))
          const executor = BatchExecutor.make(base.execute, { rules })
          const { flow, close } = yield* startFlow(
            options,
            executor,
            user === undefined ? undefined : Retry.layer(...user)
          )
          yield* flow.submit(Items, item(1))
          const failures = yield* close
          return { attempts: times.get(1)!.length, failures: failures.map((f) => [f.retryable, f.reason]) }
        })

      expect(yield* run([], undefined)).toEqual({ attempts: 3, failures: [[true, "engine_rule"]] })
      expect(yield* run([overrides], undefined)).toEqual({
        attempts: 1,
        failures: [[false, "executor_rule"]]
      })
      expect(yield* run([overrides], [userOverrides])).toEqual({
        attempts: 1,
        failures: [[false, "user_rule"]]
      })
      expect(yield* run([overrides], [silentRule])).toEqual({
        attempts: 1,
        failures: [[false, "executor_rule"]]
      })
    })
  )
})

describe("per-attempt timeout", () => {
  /** An executor whose every call sleeps 10 s, recording when calls start, end or are interrupted. */
  const slow = () => {
    const started: Array<number> = []
    const interrupted: Array<number> = []
    const completed: Array<number> = []
    const executor = BatchExecutor.make(() =>
      Effect.gen(function* () {
        started.push(yield* Clock.currentTimeMillis)
        yield* Effect.sleep("10 seconds")
        completed.push(yield* Clock.currentTimeMillis)
      }).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => interrupted.push(t)))
        )
      )
    )
    return { executor, started, interrupted, completed }
  }
  const retry = { maxAttempts: 3, backoffBase: "100 millis", maxBackoff: "1 second", jitter: 0 } as const

  it.effect(
    "an attempt with no answer by timeout + grace is abandoned, reported unknown_outcome, and its late answer recorded",
    () =>
      Effect.gen(function* () {
        const { executor, started, interrupted, completed } = slow()
        const { flow, close } = yield* startFlow({ flushSize: 1, timeout: "1 second", retry }, executor)
        const writer = yield* Effect.fork(Effect.flip(flow.write(Items, item(1))))
        yield* TestClock.adjust("5 seconds")
        const error = yield* Fiber.join(writer)
        // Not idempotent: an attempt that may have been applied is never sent again.
        expect(started).toEqual([0])
        expect(error).toMatchObject({
          _tag: "BatchFailure",
          attempts: 1,
          reason: "unknown_outcome",
          outcome: "unknown_outcome"
        })
        expect((error as BatchFlowError.BatchFailure).cause).toBeInstanceOf(BatchFlowError.AttemptTimeout)
        expect((error as BatchFlowError.BatchFailure).cause).toMatchObject({
          timeoutMillis: 1000,
          graceMillis: 1000
        })
        expect(yield* flow.stats).toMatchObject({
          committed: 0,
          failed: 0,
          unknownOutcome: 1,
          lateCommitted: 0
        })
        // The attempt was left running, not interrupted: its answer at 10 s is the real outcome.
        yield* TestClock.adjust("10 seconds")
        expect(interrupted).toEqual([])
        expect(completed).toEqual([10_000])
        expect(yield* flow.stats).toMatchObject({
          unknownOutcome: 1,
          lateCommitted: 1,
          lateFailed: 0,
          retries: 0
        })
        const failures = yield* close
        expect(failures).toHaveLength(1)
      })
  )

  it.effect(
    "an abandoned attempt of an idempotent target is retried; the part ends unknown_outcome if none answers",
    () =>
      Effect.gen(function* () {
        const Upserts = Target.make("upserts", { schema: Items.schema, key: ["id"], idempotentWrites: true })
        const { executor, started, interrupted } = slow()
        const { flow, close } = yield* startFlow({ flushSize: 1, timeout: "1 second", retry }, executor)
        const writer = yield* Effect.fork(Effect.flip(flow.write(Upserts, item(1))))
        yield* TestClock.adjust("1 minute")
        const error = yield* Fiber.join(writer)
        // Abandoned at 2 s (timeout + 1 s of grace), retried after 100 ms, then after 200 ms.
        expect(started).toEqual([0, 2100, 4300])
        expect(interrupted).toEqual([])
        expect(error).toMatchObject({ _tag: "BatchFailure", attempts: 3, reason: "unknown_outcome" })
        // Late answers for a part reported unknown: counted once.
        expect(yield* flow.stats).toMatchObject({ unknownOutcome: 1, lateCommitted: 1, retries: 2 })
        yield* close
      })
  )

  it.effect("an abandoned attempt followed by a fast one commits the rows (idempotent target)", () =>
    Effect.gen(function* () {
      const Upserts = Target.make("upserts", { schema: Items.schema, key: ["id"], idempotentWrites: true })
      let calls = 0
      const memory = BatchExecutor.memory()
      const executor = BatchExecutor.make((target, rows) => {
        calls++
        return calls === 1
          ? Effect.zipRight(Effect.sleep("1 hour"), memory.execute(target, rows))
          : memory.execute(target, rows)
      })
      const { flow, close } = yield* startFlow(
        { flushSize: 2, timeout: "500 millis", retry: { backoffBase: "10 millis", jitter: 0 } },
        executor
      )
      const writers = yield* Effect.fork(
        Effect.all([flow.write(Upserts, item(1)), flow.write(Upserts, item(2))], { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(writers)
      const failures = yield* close
      expect(failures).toEqual([])
      expect(calls).toBe(2)
      expect(memory.rowsOf("upserts")).toEqual([item(1), item(2)])
      expect(yield* flow.stats).toMatchObject({ committed: 2, failed: 0, unknownOutcome: 0, retries: 1 })
      // The abandoned first attempt answers at last: the rows were committed already, nothing changes.
      yield* TestClock.adjust("1 hour")
      expect(yield* flow.stats).toMatchObject({ committed: 2, lateCommitted: 0 })
    })
  )

  it.effect("an attempt that answers within the grace after timeout keeps its real result", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const executor = BatchExecutor.make((target, rows) =>
        Effect.zipRight(Effect.sleep("1200 millis"), memory.execute(target, rows))
      )
      const { flow, close } = yield* startFlow({ flushSize: 1, timeout: "1 second" }, executor)
      const writer = yield* Effect.fork(flow.write(Items, item(1)))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(writer)
      expect(yield* close).toEqual([])
      expect(yield* flow.stats).toMatchObject({ committed: 1, unknownOutcome: 0, retries: 0 })
    })
  )
})

describe("retry that eventually succeeds", () => {
  it.effect("rows are committed once and stats.retries counts the extra attempts", () =>
    Effect.gen(function* () {
      const { executor, times, committed } = recording((attempt) =>
        attempt < 3 ? Effect.fail(retryable()) : Effect.void
      )
      const { flow, close } = yield* startFlow(
        { flushSize: 3, retry: { maxAttempts: 5, backoffBase: "100 millis", jitter: 0 } },
        executor
      )
      const writers = yield* Effect.fork(
        Effect.forEach([1, 2, 3], (id) => flow.write(Items, item(id)), { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(writers)
      expect(times.get(1)).toEqual([0, 100, 300])
      expect(committed).toEqual([item(1), item(2), item(3)])
      const failures = yield* close
      expect(failures).toEqual([])
      expect(yield* flow.stats).toMatchObject({ accepted: 3, committed: 3, failed: 0, retries: 2 })
    })
  )
})

describe("row-level isolation", () => {
  class NotNullViolation extends Schema.TaggedError<NotNullViolation>()("NotNullViolation", {}) {}

  const notNull: Retry.Rule = (e) =>
    e instanceof NotNullViolation ? { retryable: false, reason: "not_null", rowLevel: true } : undefined

  const poisoned = () => {
    const committed: Array<Item> = []
    let calls = 0
    const execute = (_target: Target.Any, rows: ReadonlyArray<unknown>) =>
      Effect.suspend(() => {
        calls++
        const items = rows as ReadonlyArray<Item>
        if (items.some((r) => r.bad)) return Effect.fail(new NotNullViolation())
        committed.push(...items)
        return Effect.void
      })
    return { execute, committed, calls: () => calls }
  }

  const badIds = [17, 500, 999]
  const rows = Array.from({ length: 1000 }, (_, id) => item(id, badIds.includes(id)))

  const check = (
    executor: BatchExecutor.BatchExecutor,
    committed: ReadonlyArray<Item>,
    rules?: Layer.Layer<Retry.ErrorClassifier>
  ) =>
    Effect.gen(function* () {
      const { flow, close } = yield* startFlow(
        { flushSize: 1000, bufferSize: 1000, concurrency: 2 },
        executor,
        rules
      )
      const exits = yield* Effect.fork(
        Effect.forEach(rows, (row) => Effect.exit(flow.write(Items, row)), { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("1 second")
      const results = yield* Fiber.join(exits)
      const failures = yield* close

      const committedIds = committed.map((r) => r.id).sort((a, b) => a - b)
      expect(committedIds).toEqual(rows.filter((r) => !r.bad).map((r) => r.id))
      expect(failures).toHaveLength(3)
      for (const failure of failures) {
        expect(failure).toMatchObject({ reason: "not_null", retryable: false, attempts: 1, target: "items" })
        expect(failure.rows).toHaveLength(1)
        expect(failure.cause).toBeInstanceOf(NotNullViolation)
      }
      expect(failures.map((f) => (f.rows[0] as Item).id).sort((a, b) => a - b)).toEqual(badIds)

      results.forEach((exit, id) => {
        if (badIds.includes(id)) {
          expect(Exit.isFailure(exit), `write of bad row ${id}`).toBe(true)
          const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
          expect(Option.getOrUndefined(error)).toMatchObject({ _tag: "BatchFailure", reason: "not_null" })
          expect((Option.getOrThrow(error) as BatchFlowError.BatchFailure).rows).toEqual([item(id, true)])
        } else {
          expect(Exit.isSuccess(exit), `write of good row ${id}`).toBe(true)
        }
      })
      expect(yield* flow.stats).toMatchObject({
        accepted: 1000,
        committed: 997,
        failed: 3,
        buffered: 0,
        inFlight: 0
      })
    })

  it.effect(
    "a row-level error from a user rule commits the 997 good rows and reports exactly the 3 bad ones",
    () =>
      Effect.gen(function* () {
        const p = poisoned()
        yield* check(BatchExecutor.make(p.execute), p.committed, Retry.layer(notNull))
        // Bisection: far fewer calls than one per row.
        expect(p.calls()).toBeLessThan(100)
      })
  )

  it.effect("a row-level error from the executor's own rules isolates the bad rows too", () =>
    Effect.gen(function* () {
      const p = poisoned()
      yield* check(BatchExecutor.make(p.execute, { rules: [notNull] }), p.committed)
    })
  )
})
