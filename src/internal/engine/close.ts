/**
 * Closing within `closeTimeout`: the workers get that long to drain the buffer; past it every
 * accepted row not settled by then is reported rather than lost: rows never sent with reason
 * `close_timeout` (or `engine_failure` when a worker itself failed), rows of an attempt still
 * running as `unknown_outcome`.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Retry from "../../Retry.js"

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
 * Waits for the workers to drain everything. Past `closeTimeout`, reports every unsettled row at once
 * through `reportUnfinished`, then tells the workers to stop without waiting for them: a driver call
 * that does not return (a server that accepts connections and never answers) cannot hold close past
 * its deadline. The workers' attempts still running answer later, as late outcomes.
 *
 * @internal
 */
export const drainWorkers = (
  workers: ReadonlyArray<Fiber.RuntimeFiber<void>>,
  /** The groups still writing once the workers are done (handed off to back off: see engine.ts). */
  groupsDone: Effect.Effect<void>,
  closeTimeout: Duration.Duration,
  reportUnfinished: (classification: Retry.Classification, error: unknown) => Effect.Effect<void>,
  /** Stops what still writes, without waiting: the groups' fibers. */
  stopGroups: Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const drained = yield* Fiber.await(Fiber.all(workers)).pipe(
      Effect.tap((exit) => (Exit.isSuccess(exit) ? groupsDone : Effect.void)),
      Effect.timeoutOption(closeTimeout)
    )
    if (Option.isSome(drained) && Exit.isSuccess(drained.value)) return
    const reports = Option.isNone(drained)
      ? reportUnfinished(closeTimeoutReason, closeTimeoutMessage(closeTimeout, "rows"))
      : reportUnfinished(
          engineFailureReason,
          Cause.squash((drained.value as Exit.Failure<void, never>).cause)
        )
    for (const worker of workers) worker.unsafeInterruptAsFork(worker.id())
    yield* stopGroups
    yield* reports
  })
