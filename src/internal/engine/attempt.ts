/**
 * One executor call of a part, with everything around its attempts: each attempt under a
 * concurrency permit, the per-attempt timeout and in its own `BatchFlow.execute` span, every failure
 * classified (retryable or not, and why), retries per the schedule, and once the last attempt ends,
 * the per-call metrics and the slow-write warning. Per executor call, never per row.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import { isPartial, type Partial } from "../../BatchExecutor.js"
import type { BatchFlowConfig } from "../../BatchFlowConfig.js"
import { AttemptTimeout } from "../../BatchFlowError.js"
import * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import type { Classified, Part } from "./group.js"
import type { Observer } from "./observer.js"
import type { Routes } from "./routes.js"
import { isLiveClock, runAttempt } from "./timeout.js"

const defectReason: Retry.Classification = { retryable: false, reason: "defect" }

/** How long past its timeout an attempt may still answer: time for the server's own deadline to reach us. */
const graceMillis = (timeoutMillis: number): number => Math.min(1000, timeoutMillis)

/** @internal */
export class Attempts {
  private readonly retrySchedule: Schedule.Schedule<unknown, Classified>
  private readonly plainTimer: boolean

  constructor(
    private readonly config: BatchFlowConfig,
    /** Which executor writes each target, and how its errors are classified. */
    private readonly routes: Routes,
    /** `concurrency` permits, one per running attempt: none is held while backing off. */
    private readonly semaphore: Effect.Semaphore,
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    /** Executor calls taking at least this long (retries included) are logged as a warning. */
    private readonly slowBatchMillis: number,
    /** The runtime attempts start from, when no spans are made (see the engine's `runtime`). */
    private readonly runtime: Runtime.Runtime<never> | undefined,
    /** Whether each attempt gets its `BatchFlow.execute` span (see the engine's `tracing`). */
    private readonly tracing: boolean,
    /** The answer of an attempt the engine stopped waiting for (see timeout.ts). */
    private readonly late: (
      target: Target.Any,
      part: Part,
      exit: Exit.Exit<void | Partial, unknown>
    ) => Effect.Effect<void>
  ) {
    this.plainTimer = isLiveClock(clock)
    this.retrySchedule = Schedule.mapInput(Retry.schedule(config.retry), (c: Classified) => c.classification)
  }

  /**
   * Retries of one target take one of these permits before a concurrency permit: at most half of
   * `concurrency` (at least 1) per target, so that a target that keeps failing leaves permits to the
   * others' first attempts.
   */
  private readonly retrying = new Map<Target.Any, Effect.Semaphore>()

  private retryPermits(target: Target.Any): Effect.Semaphore {
    let semaphore = this.retrying.get(target)
    if (semaphore === undefined) {
      semaphore = Effect.unsafeMakeSemaphore(Math.max(1, this.config.concurrency >> 1))
      this.retrying.set(target, semaphore)
    }
    return semaphore
  }

  /**
   * How an attempt's error is treated for this part: an error that leaves the outcome unknown marks
   * the part as maybe written, and is final unless the target's writes are idempotent.
   */
  private classifyFor(target: Target.Any, part: Part, error: unknown): Retry.Classification {
    const classification = this.routes.of(target).classify(error)
    if (classification.unknownOutcome !== true) return classification
    part.maybeWritten = true
    return target.idempotentWrites ? classification : Retry.unknownOutcome
  }

  /**
   * All attempts of one part: retry per the schedule, each attempt under the timeout. `onBackoff` is
   * called when an attempt failed and another will follow, before the backoff sleep.
   */
  run(target: Target.Any, part: Part, onBackoff: () => void): Effect.Effect<void | Partial, Classified> {
    const timeoutMillis = Duration.toMillis(this.config.timeout)
    const deadline = {
      timeout: this.config.timeout,
      grace: Duration.millis(Duration.isFinite(this.config.timeout) ? graceMillis(timeoutMillis) : 0),
      onTimeout: () =>
        new AttemptTimeout({ target: target.name, timeoutMillis, graceMillis: graceMillis(timeoutMillis) }),
      plainTimer: this.plainTimer
    }
    const onLate = (exit: Exit.Exit<void | Partial, unknown>) => this.late(target, part, exit)
    const executor = this.routes.of(target).executor
    const attemptOnce = Effect.suspend(() => {
      if (part.attempts++ === 0) part.startedAt = this.clock.unsafeCurrentTimeMillis()
      return runAttempt(
        executor.execute(target, part.rows, { number: part.attempts, timeoutMillis }),
        deadline,
        onLate,
        (running) => {
          part.executing = running
        },
        this.runtime
      )
    })
    // The last failed attempt's error and classification: the span annotation classifies it first,
    // and the retry reuses that, so the rules run once per failed attempt.
    let last: Classified | undefined
    // One span per attempt, a child of the flush span; a permit per attempt, so that a part
    // backing off between attempts leaves its permit to other targets' groups.
    const first = this.semaphore.withPermits(1)(attemptOnce)
    const retry = Effect.suspend(() => this.retryPermits(target).withPermits(1)(first))
    const permit = Effect.suspend(() => (part.attempts === 0 ? first : retry))
    const traced = this.tracing
      ? Effect.suspend(() =>
          Effect.withSpan(
            Effect.onExit(permit, (exit) =>
              Effect.annotateCurrentSpan(
                this.attemptOutcome(target, part, exit, (classified) => {
                  last = classified
                })
              )
            ),
            "BatchFlow.execute",
            {
              attributes: {
                "batchflow.target": target.name,
                "batchflow.rows": part.rows.length,
                "batchflow.attempt": part.attempts + 1
              },
              captureStackTrace: false
            }
          )
        )
      : permit
    const classified = Effect.catchAllCause(traced, (cause) => {
      // Errors raised inside a span come wrapped (Effect attaches the span): report the original.
      const failure = Option.map(Cause.failureOption(cause), Cause.originalError)
      if (Option.isSome(failure)) {
        let classification =
          last !== undefined && last.error === failure.value
            ? last.classification
            : this.classifyFor(target, part, failure.value)
        const final = this.isFinal(part, classification)
        // A part an earlier attempt may have written ends as unknown_outcome, whatever ended it last
        // (unless it is a row-level error, which isolates the bad rows first).
        if (final && part.maybeWritten && classification.rowLevel !== true)
          classification = Retry.unknownOutcome
        this.observer.attemptFailed(target.name, classification.reason, final)
        if (!final) onBackoff()
        return Effect.fail<Classified>({ error: failure.value, classification })
      }
      const defect = Option.map(Cause.dieOption(cause), Cause.originalError)
      if (Option.isSome(defect)) {
        this.observer.attemptFailed(target.name, defectReason.reason, true)
        return Effect.fail<Classified>({ error: defect.value, classification: defectReason })
      }
      return Effect.interrupt
    })
    // Most calls succeed at once: the schedule's driver is only built after a first failure, which
    // it is then given as its first input (so the backoff and the limits count it), without a rerun.
    const withRetry = Effect.catchAll(classified, (first) => {
      if (this.isFinal(part, first.classification)) return Effect.fail(first)
      let pending: Classified | undefined = first
      const again = Effect.suspend(() => {
        if (pending === undefined) return classified
        const error = pending
        pending = undefined
        return Effect.fail(error)
      })
      return Effect.retry(again, this.retrySchedule)
    })
    return Effect.matchCauseEffect(withRetry, {
      onSuccess: (result) => Effect.as(this.executed(target, part, Exit.succeed(result)), result),
      onFailure: (cause) =>
        Effect.zipRight(this.executed(target, part, Exit.failCause(cause)), Effect.failCause(cause))
    })
  }

  /** Whether a failed attempt is the part's last: not retryable, or no attempt left. */
  private isFinal(part: Part, classification: Retry.Classification): boolean {
    return !classification.retryable || part.attempts >= this.config.retry.maxAttempts
  }

  private attemptOutcome(
    target: Target.Any,
    part: Part,
    exit: Exit.Exit<unknown, unknown>,
    onFailure: (classified: Classified) => void
  ): Record<string, string> {
    if (Exit.isSuccess(exit)) {
      const partial = isPartial(exit.value) && exit.value.failed.length > 0
      return { "batchflow.outcome": partial ? "partial" : "success" }
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      const error = Cause.originalError(failure.value)
      const classification = this.classifyFor(target, part, error)
      onFailure({ error, classification })
      return { "batchflow.outcome": "failure", "batchflow.reason": classification.reason }
    }
    return Cause.isInterruptedOnly(exit.cause)
      ? { "batchflow.outcome": "interrupted" }
      : { "batchflow.outcome": "failure", "batchflow.reason": defectReason.reason }
  }

  /** After the last attempt of an executor call: per-call metrics, and a warning when it was slow. */
  private executed(
    target: Target.Any,
    part: Part,
    exit: Exit.Exit<unknown, Classified>
  ): Effect.Effect<void> {
    if (part.attempts === 0) return Effect.void
    const durationMillis = this.clock.unsafeCurrentTimeMillis() - part.startedAt
    const status = Exit.isFailure(exit)
      ? "fail"
      : isPartial(exit.value) && exit.value.failed.length > 0
        ? "partial"
        : "success"
    const rows = part.rows.length
    const attempts = part.attempts
    this.observer.executed({ target: target.name, rows, attempts, durationMillis, status })
    // Failures are logged as errors when reported; only slow writes that went through warn here.
    if (status === "fail" || durationMillis < this.slowBatchMillis) return Effect.void
    return Effect.logWarning(
      `Writing ${rows} row(s) for target "${target.name}" took ${durationMillis} ms over ${attempts} attempt(s), more than slowBatchThreshold (${this.slowBatchMillis} ms).`
    ).pipe(Effect.annotateLogs({ target: target.name, rows, attempts, durationMillis, status }))
  }
}
