/**
 * One measured run: a BatchFlow run (reset, fresh flow, producers, close; the clock runs from the
 * first submit to the flow's scope closed) or a baseline run (reset, the raw driver writing the same
 * rows), then the integrity check. Setup and checks are outside the clock.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BatchFlow from "../BatchFlow.js"
import type { Harness, Integrity, Tamper } from "./harness.js"
import * as Progress from "./progress.js"
import type { Baseline, Counter } from "./raw.js"
import * as Turns from "./turns.js"
import type { BenchSpec } from "./workload.js"

/**
 * What one run measured.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunResult {
  /** `BatchFlow` or the baseline's name. */
  readonly variant: string
  readonly kind: "flow" | "baseline"
  /** 1-based; 0 for the warm-up. */
  readonly run: number
  readonly rows: number
  readonly millis: number
  readonly rowsPerSecond: number
  /** Peak RSS sampled during the run (MiB). */
  readonly peakRssMiB: number
  /**
   * Node CPU time (user + system, `process.cpuUsage`) over the run's clock, in µs: the whole
   * process, so GC and libuv threads count; a database server's own CPU does not.
   */
  readonly cpuMicros: number
  /** `cpuMicros ÷ rows`. */
  readonly cpuMicrosPerRow: number
  /** BatchFlow only: attempts beyond the first. */
  readonly retries: number
  /** BatchFlow only: rows reported in a `BatchFailure`. */
  readonly failedRows: number
  /** BatchFlow only: failures dropped from the `failures` stream. */
  readonly droppedFailures: number
  /** BatchFlow only: failed rows by reason. */
  readonly failureReasons: Readonly<Record<string, number>>
  /** BatchFlow only: submit→commit latency of the rows written with `write` (ms). */
  readonly latencies: ReadonlyArray<number>
  /** BatchFlow only: sampled `write`s that failed. */
  readonly writeFailures: number
  readonly integrity: Integrity
}

/**
 * Where progress goes.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunContext {
  readonly spec: BenchSpec
  readonly harness: Harness
  readonly progress: Progress.ProgressOptions
  readonly tamper: Tamper | undefined
}

/**
 * A run failed for a reason other than integrity (the flow did not start, the driver threw…).
 *
 * @since 0.1.0
 * @category errors
 */
export class RunError {
  readonly _tag = "RunError"
  constructor(
    readonly variant: string,
    readonly cause: unknown
  ) {}
}

/** Node CPU time (user + system) since `before`, in µs. */
const cpuSince = (before: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(before)
  return used.user + used.system
}

/**
 * Runs BatchFlow once on `rows` rows.
 *
 * @since 0.1.0
 * @category runners
 */
export const runFlow = (
  ctx: RunContext,
  run: number,
  rows: number,
  label: string
): Effect.Effect<RunResult, RunError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { harness, spec } = ctx
      yield* harness.reset
      const flowScope = yield* Scope.make()
      // Closed within the clock below; this closes it when the run is interrupted (Ctrl-C).
      yield* Effect.addFinalizer(() => Scope.close(flowScope, Exit.void))
      const context = yield* Layer.buildWithScope(harness.flowLayer, flowScope).pipe(
        Effect.tapError(() => Scope.close(flowScope, Exit.void))
      )
      const flow = Context.get(context, BatchFlow.BatchFlow)
      const ops = harness.ops(flow)
      const failureReasons: Record<string, number> = {}
      const failures = yield* Stream.runForEach(flow.failures, (failure) =>
        Effect.sync(() => {
          failureReasons[failure.reason] = (failureReasons[failure.reason] ?? 0) + failure.rows.length
        })
      ).pipe(Effect.forkScoped)
      const writes = yield* FiberSet.make<void, never>()
      const latencies: Array<number> = []
      let writeFailures = 0
      const timedWrite = (id: number) =>
        Effect.suspend(() => {
          const began = performance.now()
          return ops.write(id).pipe(
            Effect.matchEffect({
              onFailure: () =>
                Effect.sync(() => {
                  writeFailures++
                }),
              onSuccess: () =>
                Effect.sync(() => {
                  latencies.push(performance.now() - began)
                })
            })
          )
        })
      const sampleEvery = spec.sampleEvery
      const turns = yield* Effect.acquireRelease(
        Effect.sync(() => Turns.start()),
        (turns) => Effect.sync(() => turns.stop())
      )
      const giveTurn = Effect.promise(() => turns.turn())
      // The producers draw ids from one shared counter, so rows reach the flow in id order, as the raw
      // baseline writes them. (With a range of ids per producer, every batch would insert at several
      // places of the primary key: on MariaDB that alone doubled the server's CPU per row.)
      let nextId = 1
      const producer = Effect.gen(function* () {
        if (spec.submitAll) {
          while (nextId <= rows) {
            const first = nextId
            const last = Math.min(first + spec.flushSize - 1, rows)
            nextId = last + 1
            let from = first
            for (let id = first; id <= last; id++) {
              if (sampleEvery > 0 && id % sampleEvery === 0) {
                if (from < id) yield* ops.submitAll(from, id - 1)
                yield* FiberSet.run(writes, timedWrite(id))
                from = id + 1
              }
            }
            if (from <= last) yield* ops.submitAll(from, last)
            if (turns.starved()) yield* giveTurn
          }
        } else {
          while (nextId <= rows) {
            const id = nextId++
            if (sampleEvery > 0 && id % sampleEvery === 0) yield* FiberSet.run(writes, timedWrite(id))
            else yield* ops.submit(id)
            if ((id & 255) === 0 && turns.starved()) yield* giveTurn
          }
        }
      })
      const progress = yield* Effect.acquireRelease(
        Effect.sync(() =>
          Progress.start(
            label,
            rows,
            () => {
              const stats = Effect.runSync(flow.stats)
              return { committed: stats.committed, buffered: stats.buffered, inFlight: stats.inFlight }
            },
            ctx.progress
          )
        ),
        (progress) => Effect.sync(() => progress.stop())
      )
      const producers = Array.from({ length: spec.producers }, () => producer)
      const began = performance.now()
      const cpuBefore = process.cpuUsage()
      const produced = yield* Effect.exit(Effect.all(producers, { concurrency: "unbounded", discard: true }))
      // The sampled writes run in their own fibers: wait until each has been accepted (they may be
      // waiting for room) before closing, so that none is refused by the close.
      while (
        Exit.isSuccess(produced) &&
        (yield* flow.stats).accepted < rows &&
        (yield* FiberSet.size(writes)) > 0
      ) {
        yield* Effect.sleep("1 millis")
      }
      yield* flow.close
      yield* Scope.close(flowScope, Exit.void)
      const millis = performance.now() - began
      const cpuMicros = cpuSince(cpuBefore)
      const peakRssMiB = progress.stop()
      yield* FiberSet.awaitEmpty(writes)
      yield* Fiber.join(failures).pipe(Effect.timeout("5 seconds"), Effect.ignore)
      if (Exit.isFailure(produced)) return yield* Effect.failCause(produced.cause)
      const stats = yield* flow.stats
      if (ctx.tamper !== undefined && run > 0) yield* harness.tamper(ctx.tamper, rows)
      const integrity = yield* harness.verify(rows)
      return {
        variant: "BatchFlow",
        kind: "flow",
        run,
        rows,
        millis,
        rowsPerSecond: rows / (millis / 1000),
        peakRssMiB,
        cpuMicros,
        cpuMicrosPerRow: cpuMicros / rows,
        retries: stats.retries,
        failedRows: stats.failed,
        droppedFailures: stats.droppedFailures,
        failureReasons,
        latencies,
        writeFailures,
        integrity
      } satisfies RunResult
    })
  ).pipe(Effect.mapError((cause) => new RunError("BatchFlow", cause)))

/**
 * Runs a baseline once on `rows` rows.
 *
 * @since 0.1.0
 * @category runners
 */
export const runBaseline = (
  ctx: RunContext,
  baseline: Baseline,
  run: number,
  rows: number,
  label: string
): Effect.Effect<RunResult, RunError> =>
  Effect.gen(function* () {
    yield* ctx.harness.reset
    const counter: Counter = { committed: 0, stopped: false }
    const progress = Progress.start(label, rows, () => ({ committed: counter.committed }), ctx.progress)
    const began = performance.now()
    const cpuBefore = process.cpuUsage()
    let running: Promise<void> = Promise.resolve()
    const done = yield* Effect.exit(
      Effect.tryPromise(() => {
        running = baseline.run(rows, counter)
        return running
      }).pipe(
        // Interrupted (Ctrl-C): start no new batch and wait for the batches in flight, so that
        // nothing writes to the table any more when the bench drops it.
        Effect.onInterrupt(() =>
          Effect.promise(() => {
            counter.stopped = true
            return running.then(
              () => undefined,
              () => undefined
            )
          })
        ),
        Effect.ensuring(Effect.sync(() => progress.stop()))
      )
    )
    const millis = performance.now() - began
    const cpuMicros = cpuSince(cpuBefore)
    const peakRssMiB = progress.stop()
    if (Exit.isFailure(done)) return yield* Effect.failCause(done.cause)
    const integrity = yield* ctx.harness.verify(rows)
    return {
      variant: baseline.name,
      kind: "baseline",
      run,
      rows,
      millis,
      rowsPerSecond: rows / (millis / 1000),
      peakRssMiB,
      cpuMicros,
      cpuMicrosPerRow: cpuMicros / rows,
      retries: 0,
      failedRows: 0,
      droppedFailures: 0,
      failureReasons: {},
      latencies: [],
      writeFailures: 0,
      integrity
    } satisfies RunResult
  }).pipe(Effect.mapError((cause) => new RunError(baseline.name, cause)))
