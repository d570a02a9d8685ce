/**
 * Closing within `closeTimeout`: the workers get that long to drain the buffer; past it they are
 * stopped, and every accepted row not written by then is reported rather than lost, with reason
 * `close_timeout` (or `engine_failure` when a worker itself failed).
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Retry from "../Retry.js"

/** @internal */
export const closeTimeoutReason: Retry.Classification = { retryable: false, reason: "close_timeout" }

/** @internal */
export const engineFailureReason: Retry.Classification = { retryable: false, reason: "engine_failure" }

/**
 * The error of rows reported because the flow closed before they were written: a batch whose write
 * was interrupted, or rows still in the buffer.
 *
 * @internal
 */
export const closeTimeoutMessage = (closeTimeout: Duration.Duration, what: "batch" | "rows"): string => {
  const subject = what === "batch" ? "this batch was" : "these rows were"
  return `the flow closed before ${subject} written (closeTimeout ${Duration.format(closeTimeout)})`
}

/**
 * Waits for the workers to drain everything; past `closeTimeout`, stops them and reports what is left
 * in the buffer through `reportBuffered`.
 *
 * @internal
 */
export const drainWorkers = (
  workers: ReadonlyArray<Fiber.RuntimeFiber<void>>,
  closeTimeout: Duration.Duration,
  reportBuffered: (classification: Retry.Classification, error: unknown) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const drained = yield* Fiber.await(Fiber.all(workers)).pipe(Effect.timeoutOption(closeTimeout))
    if (Option.isNone(drained) || Exit.isFailure(drained.value)) {
      yield* Fiber.interruptAll(workers)
      yield* Option.isNone(drained)
        ? reportBuffered(closeTimeoutReason, closeTimeoutMessage(closeTimeout, "rows"))
        : reportBuffered(
            engineFailureReason,
            Cause.squash((drained.value as Exit.Failure<void, never>).cause)
          )
    }
  })
