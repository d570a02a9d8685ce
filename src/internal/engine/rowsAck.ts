/**
 * The one ack of every row of a `writeAll` call. Settlement completes an ack once per row; this one
 * counts the rows down and completes `all` once every row of the call is settled. A failure is
 * reported for a whole batch, and a batch may hold other callers' rows too (the flow merges what
 * was submitted), so each failure is kept with the rows of this call only: `reported` gives each
 * failure narrowed to them (the same failure when the batch held no other rows).
 */
import * as Exit from "effect/Exit"
import { BatchFailure } from "../../BatchFlowError.js"
import { Completion } from "./completion.js"

/** @internal */
export class RowsAck extends Completion<void, BatchFailure> {
  /** Completed once every row is settled. */
  readonly all = new Completion<void>()
  private readonly failures = new Map<BatchFailure, Array<unknown>>()
  constructor(private remaining: number) {
    super()
  }

  /** A row committed. */
  override unsafeDone(_exit: Exit.Exit<void, BatchFailure>): void {
    this.settled()
  }

  /** A row reported in `failure`. */
  failed(row: unknown, failure: BatchFailure): void {
    const rows = this.failures.get(failure)
    if (rows === undefined) this.failures.set(failure, [row])
    else rows.push(row)
    this.settled()
  }

  private settled(): void {
    if (--this.remaining === 0) this.all.unsafeDone(Exit.void)
  }

  /** The failures of this call's rows, each holding only those rows. */
  get reported(): ReadonlyArray<BatchFailure> {
    return Array.from(this.failures, ([failure, rows]) =>
      rows.length === failure.rows.length
        ? failure
        : new BatchFailure({
            target: failure.target,
            rows,
            attempts: failure.attempts,
            reason: failure.reason,
            retryable: failure.retryable,
            cause: failure.cause,
            detail: failure.detail,
            outcome: failure.outcome
          })
    )
  }
}
