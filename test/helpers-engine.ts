/**
 * Helpers for the engine tests (lifecycle, flush, ordering): a recording executor whose behaviour
 * per call is scripted by the test, a flow built in a test-controlled scope, and clock helpers.
 */
import type { Duration } from "effect"
import { Clock, Context, Effect, Exit, Fiber, HashMap, Layer, Logger, Scope, TestClock } from "effect"
import { BatchExecutor, BatchFlow, type BatchFlowConfig, type Target } from "effect-batchflow"

/** One executor call as seen by the recorder. */
export interface Call {
  readonly index: number
  readonly target: string
  readonly rows: ReadonlyArray<unknown>
  readonly startedAt: number
}

export interface Recorder {
  readonly executor: BatchExecutor.BatchExecutor
  /** Every call, in the order the calls started (failed ones included). */
  readonly calls: Array<Call>
  /** Calls that succeeded, in completion order. */
  readonly commits: Array<{ readonly target: string; readonly rows: ReadonlyArray<unknown> }>
  /** Rows committed for one target, in commit order. */
  readonly committedRows: (target: string) => ReadonlyArray<unknown>
  /** Rows committed, all targets. */
  readonly committedCount: () => number
  /** Executor calls running right now. */
  readonly active: () => number
  /** The most executor calls that ran at once. */
  readonly maxActive: () => number
}

/**
 * An executor that records every call and runs `behaviour` for it (sleep, fail, die…) before
 * counting the rows as committed. `behaviour` defaults to succeeding at once.
 */
export const recorder = (
  behaviour: (
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    call: Call
  ) => Effect.Effect<void, unknown> = () => Effect.void
): Recorder => {
  const calls: Array<Call> = []
  const commits: Array<{ readonly target: string; readonly rows: ReadonlyArray<unknown> }> = []
  let active = 0
  let maxActive = 0
  const executor = BatchExecutor.make((target, rows) =>
    Effect.gen(function* () {
      const startedAt = yield* Clock.currentTimeMillis
      const call: Call = { index: calls.length, target: target.name, rows: [...rows], startedAt }
      calls.push(call)
      active++
      if (active > maxActive) maxActive = active
      yield* behaviour(target, rows, call).pipe(Effect.ensuring(Effect.sync(() => active--)))
      commits.push({ target: target.name, rows: [...rows] })
    })
  )
  return {
    executor,
    calls,
    commits,
    committedRows: (target) => commits.filter((c) => c.target === target).flatMap((c) => c.rows),
    committedCount: () => commits.reduce((n, c) => n + c.rows.length, 0),
    active: () => active,
    maxActive: () => maxActive
  }
}

export interface TestFlow {
  readonly flow: BatchFlow.BatchFlow
  readonly scope: Scope.CloseableScope
  /** Closes the flow's scope from a forked fiber, advancing the TestClock by `advance` meanwhile. */
  readonly closeScope: (advance?: Duration.DurationInput) => Effect.Effect<void>
}

/** Builds a flow in a scope the test closes itself (closing it may need the TestClock to move). */
export const startFlow = (
  options: BatchFlowConfig.Options,
  executor: BatchExecutor.BatchExecutor
): Effect.Effect<TestFlow, never> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(
      BatchFlow.layer(options).pipe(Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))),
      scope
    ).pipe(Effect.orDie)
    const flow = Context.get(ctx, BatchFlow.BatchFlow)
    const closeScope = (advance: Duration.DurationInput = "1 minute") =>
      Effect.gen(function* () {
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust(advance)
        yield* Fiber.join(closing)
      })
    return { flow, scope, closeScope }
  })

/** Lets forked fibers run without moving the clock (semaphore hand-offs take a few yields each). */
export const settle = (times = 100): Effect.Effect<void> =>
  Effect.forEach(Array.from({ length: times }), () => Effect.yieldNow(), { discard: true })

/**
 * Moves the TestClock in `step`s until `done` holds (at most `maxSteps` steps); returns whether it
 * held.
 */
export const advanceUntil = (
  done: () => boolean,
  step: Duration.DurationInput = "1 millis",
  maxSteps = 100_000
): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    for (let i = 0; i < maxSteps; i++) {
      yield* settle(3)
      if (done()) return true
      yield* TestClock.adjust(step)
    }
    yield* settle(3)
    return done()
  })

/** One log line as the capturing logger saw it. */
export interface Captured {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Runs `body` with a logger that records every log line (the engine's fibers inherit it). */
export const capturing = <A, E, R>(body: (logs: Array<Captured>) => Effect.Effect<A, E, R>) => {
  const logs: Array<Captured> = []
  const logger = Logger.make(({ logLevel, message, annotations }) => {
    logs.push({
      level: logLevel.label,
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  return body(logs).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
}
