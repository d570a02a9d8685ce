/**
 * One executor call of a part, with everything around its attempts: each attempt under the
 * per-attempt timeout and in its own `BatchFlow.execute` span, every failure classified (retryable or
 * not, and why), retries per the schedule, and once the last attempt ends, the per-call metrics and
 * the slow-write warning. Per executor call, never per row.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { type BatchExecutor, isPartial, type Partial } from "../BatchExecutor.js"
import type { BatchFlowConfig } from "../BatchFlowConfig.js"
import { AttemptTimeout } from "../BatchFlowError.js"
import * as Retry from "../Retry.js"
import type * as Target from "../Target.js"
import type { Classified, Part } from "./group.js"
import type { Observer } from "./observer.js"
import { timeoutFail } from "./timeout.js"

const defectReason: Retry.Classification = { retryable: false, reason: "defect" }

/** @internal */
export class Attempts {
  private readonly retrySchedule: Schedule.Schedule<unknown, Classified>

  constructor(
    private readonly config: BatchFlowConfig,
    private readonly executor: BatchExecutor,
    private readonly classify: (error: unknown) => Retry.Classification,
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    /** Executor calls taking at least this long (retries included) are logged as a warning. */
    private readonly slowBatchMillis: number
  ) {
    this.retrySchedule = Schedule.mapInput(Retry.schedule(config.retry), (c: Classified) => c.classification)
  }

  /** All attempts of one part: retry per the schedule, each attempt under the timeout. */
  run(target: Target.Any, part: Part): Effect.Effect<void | Partial, Classified> {
    const timeoutMillis = Duration.toMillis(this.config.timeout)
    let once: Effect.Effect<void | Partial, unknown> = Effect.suspend(() => {
      if (part.attempts++ === 0) part.startedAt = this.clock.unsafeCurrentTimeMillis()
      return this.executor.execute(target, part.rows)
    })
    if (Duration.isFinite(this.config.timeout)) {
      once = timeoutFail(
        once,
        this.config.timeout,
        () => new AttemptTimeout({ target: target.name, timeoutMillis })
      )
    }
    const attemptOnce = once
    // The last failed attempt's error and classification: the span annotation classifies it first,
    // and the retry reuses that, so the rules run once per failed attempt.
    let last: Classified | undefined
    // One span per attempt, a child of the flush span.
    const traced = Effect.suspend(() =>
      Effect.withSpan(
        Effect.onExit(attemptOnce, (exit) =>
          Effect.annotateCurrentSpan(
            this.attemptOutcome(exit, (classified) => {
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
    const classified = Effect.catchAllCause(traced, (cause) => {
      // Errors raised inside a span come wrapped (Effect attaches the span): report the original.
      const failure = Option.map(Cause.failureOption(cause), Cause.originalError)
      if (Option.isSome(failure)) {
        const classification =
          last !== undefined && last.error === failure.value
            ? last.classification
            : this.classify(failure.value)
        this.observer.attemptFailed(
          target.name,
          classification.reason,
          !classification.retryable || part.attempts >= this.config.retry.maxAttempts
        )
        return Effect.fail<Classified>({ error: failure.value, classification })
      }
      const defect = Option.map(Cause.dieOption(cause), Cause.originalError)
      if (Option.isSome(defect)) {
        this.observer.attemptFailed(target.name, defectReason.reason, true)
        return Effect.fail<Classified>({ error: defect.value, classification: defectReason })
      }
      return Effect.interrupt
    })
    return Effect.onExit(Effect.retry(classified, this.retrySchedule), (exit) =>
      this.executed(target, part, exit)
    )
  }

  private attemptOutcome(
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
      const classification = this.classify(error)
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
