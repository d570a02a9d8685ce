/**
 * Settlement: every accepted row ends here exactly once, committed or reported, and a report says
 * what is known: `failed` (not written) or `unknown_outcome` (maybe written). Committing completes
 * the rows' acks; reporting builds one `BatchFailure` (message and detail redacted), fails the acks
 * with it, offers it to the failures stream and logs it. A part is settled once: an answer that
 * arrives after its rows were reported (an attempt abandoned at a deadline) is a *late* outcome,
 * counted and logged but never settled twice. Keeps the outcome counters that `stats` shows. Per
 * part, never per row on the submit path.
 */

import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Mailbox from "effect/Mailbox"
import { isPartial, type Partial } from "../../BatchExecutor.js"
import { BatchFailure } from "../../BatchFlowError.js"
import type * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import * as Redact from "../rows/redact.js"
import type { Grouped } from "./buffer.js"
import { type Ack, type Classified, type Outcome, type Part, pickPart } from "./group.js"
import type { Observer } from "./observer.js"
import { RowsAck } from "./rowsAck.js"

/** With `logRowValues`, a final failure's log line shows at most this many of its rows. */
const loggedRows = 3

/** @internal */
export class Settlement {
  // Outcome counters for `stats`; only settlement changes them.
  committed = 0
  failed = 0
  unknownOutcome = 0
  lateCommitted = 0
  lateFailed = 0
  retries = 0
  droppedFailures = 0
  /** Parts reported `unknown_outcome` whose late answer was counted already. */
  private readonly answered = new WeakSet<Part>()

  constructor(
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    /** How an error of the target's executor is classified. */
    private readonly classify: (target: Target.Any, error: unknown) => Retry.Classification,
    private readonly failureBox: Mailbox.Mailbox<BatchFailure>,
    /** Whether row values may be shown, and which columns never are. */
    private readonly redaction: Redact.Redaction,
    /** Every failure reported, once settled (the `onFailure` handler and the dead-letter target). */
    private readonly onReport: (target: Target.Any, failure: BatchFailure) => Effect.Effect<void>
  ) {}

  success(target: Target.Any, part: Part): Effect.Effect<void> {
    if (part.settled !== undefined) return this.late(target, part, Exit.void)
    this.retries += part.attempts - 1
    this.commit(target, part)
    return Effect.void
  }

  private commit(target: Target.Any, part: Part): void {
    part.settled = "committed"
    this.committed += part.rows.length
    this.observer.groupFinished({
      target: target.name,
      rows: part.rows.length,
      attempts: part.attempts,
      durationMillis: this.clock.unsafeCurrentTimeMillis() - part.startedAt,
      outcome: "success",
      reason: ""
    })
    if (part.acks !== undefined) {
      for (const ack of part.acks) if (ack !== undefined) ack.unsafeDone(Exit.void)
      ;(part.acks as Array<unknown>).length = 0
    }
    // Committed rows are not needed any more: let go of them now. A batch's array lives as long as
    // its write, so V8 often promotes it to the old generation; kept full, a dead array there keeps
    // its rows alive through every young collection until the next full one, so nearly every row
    // was promoted too (80–100 B/row, most of the engine's GC time and of the peak RSS growth).
    ;(part.rows as Array<unknown>).length = 0
  }

  /** Some rows were written, some not: commit the others, report the failed ones by reason. */
  partial(target: Target.Any, part: Part, result: Partial): Effect.Effect<void> {
    if (part.settled !== undefined) return this.late(target, part, Exit.succeed(result))
    part.settled = "committed"
    const failedAt = new Map<number, unknown>()
    for (const { index, error } of result.failed) {
      if (index >= 0 && index < part.rows.length) failedAt.set(index, error)
    }
    const written: Array<number> = []
    const byReason = new Map<string, { indices: Array<number>; first: Classified }>()
    for (let i = 0; i < part.rows.length; i++) {
      if (!failedAt.has(i)) {
        written.push(i)
        continue
      }
      const error = failedAt.get(i)
      const classification = this.classify(target, error)
      const entry = byReason.get(classification.reason)
      if (entry === undefined)
        byReason.set(classification.reason, { indices: [i], first: { error, classification } })
      else entry.indices.push(i)
    }
    // One executor call: its retries are counted once, whatever its rows' fates.
    this.retries += part.attempts - 1
    if (written.length > 0) this.commit(target, pickPart(part, written))
    // Settled now, logged after.
    const logs = Array.from(byReason.values(), ({ indices, first }) => {
      // The call partly failed: once per reason, like a failed attempt that will not be retried.
      this.observer.attemptFailed(target.name, first.classification.reason, true)
      return this.fail(target, pickPart(part, indices), first)
    })
    return Effect.all(logs, { discard: true })
  }

  failure(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    if (part.settled !== undefined) return this.late(target, part, Exit.fail(classified.error))
    this.retries += Math.max(part.attempts - 1, 0)
    return this.fail(target, part, classified)
  }

  /**
   * The flow stopped waiting for a part (the close deadline): its rows are reported now, as
   * `unknown_outcome` when an attempt is running or may have taken effect, otherwise with
   * `classified` (they were never written). An attempt still running records its real answer later.
   */
  abandon(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    if (part.settled !== undefined) return Effect.void
    if (part.executing) part.maybeWritten = true
    return this.failure(target, part, classified)
  }

  private fail(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    const unknown = part.maybeWritten || classified.classification.unknownOutcome === true
    const outcome: Outcome = unknown ? "unknown_outcome" : "failed"
    part.settled = outcome
    const reason = unknown ? "unknown_outcome" : classified.classification.reason
    this.observer.groupFinished({
      target: target.name,
      rows: part.rows.length,
      attempts: part.attempts,
      durationMillis: part.attempts === 0 ? 0 : this.clock.unsafeCurrentTimeMillis() - part.startedAt,
      outcome: unknown ? "unknown_outcome" : "failure",
      reason
    })
    return this.report(target, part.rows, part.acks, part.attempts, classified, outcome, reason)
  }

  /**
   * The answer of an attempt the flow had stopped waiting for, after its rows were settled. Rows
   * reported as `unknown_outcome` now have a known outcome: counted (`lateCommitted`,
   * `lateFailed`) and logged, so the user can reconcile; their `BatchFailure` stands. An answer
   * for rows settled otherwise (committed by a retry, say) changes nothing.
   */
  late(target: Target.Any, part: Part, exit: Exit.Exit<void | Partial, unknown>): Effect.Effect<void> {
    if (part.settled !== "unknown_outcome" || this.answered.has(part)) return Effect.void
    let committed = 0
    let failed = 0
    if (Exit.isSuccess(exit)) {
      const notWritten = isPartial(exit.value) ? exit.value.failed.length : 0
      committed = part.rows.length - notWritten
      failed = notWritten
    } else {
      const error = Cause.failureOption(exit.cause)
      // An interruption or another uncertain error leaves the outcome as unknown as it was.
      if (error._tag === "None" || this.classify(target, error.value).unknownOutcome === true)
        return Effect.void
      failed = part.rows.length
    }
    // Counted once per part, whatever later answers of other abandoned attempts say.
    this.answered.add(part)
    this.lateCommitted += committed
    this.lateFailed += failed
    this.observer.lateOutcome(target.name, committed, failed)
    return Effect.logWarning(
      `${part.rows.length} row(s) for target "${target.name}" reported as unknown_outcome have a late answer: ${committed} committed, ${failed} not written.`
    ).pipe(Effect.annotateLogs({ target: target.name, committed, failed }))
  }

  /**
   * A part that failed with a row-level error is about to be split in halves: its attempts so far
   * count as retries; its rows are settled with the halves.
   */
  splitting(part: Part): void {
    this.retries += part.attempts - 1
  }

  /** Reports rows that never reached the executor (left in the buffer at close), grouped by target. */
  unrun(
    grouped: ReadonlyArray<Grouped<Ack>>,
    classification: Retry.Classification,
    error: unknown
  ): Effect.Effect<void> {
    // Settled now, logged after: nothing else may report these rows in between.
    const logs = grouped.map((g) => {
      this.observer.groupFinished({
        target: g.target.name,
        rows: g.rows.length,
        attempts: 0,
        durationMillis: 0,
        outcome: "failure",
        reason: classification.reason
      })
      return this.report(
        g.target,
        g.rows,
        g.acks,
        0,
        { error, classification },
        "failed",
        classification.reason
      )
    })
    return Effect.all(logs, { discard: true })
  }

  private report(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    acks: ReadonlyArray<Ack | undefined> | undefined,
    attempts: number,
    classified: Classified,
    outcome: "failed" | "unknown_outcome",
    reason: string
  ): Effect.Effect<void> {
    const failure = new BatchFailure({
      target: target.name,
      rows,
      attempts,
      reason,
      retryable: classified.classification.retryable,
      cause: classified.error,
      detail: Redact.failureDetail(this.redaction, classified.error, rows),
      outcome
    })
    if (outcome === "failed") this.failed += rows.length
    else this.unknownOutcome += rows.length
    if (acks !== undefined) {
      const exit = Exit.fail(failure)
      for (let i = 0; i < acks.length; i++) {
        const ack = acks[i]
        // A writeAll ack keeps which of its rows the failure holds (see rowsAck.ts).
        if (ack instanceof RowsAck) ack.failed(rows[i], failure)
        else if (ack !== undefined) ack.unsafeDone(exit)
      }
    }
    if (!this.failureBox.unsafeOffer(failure)) {
      this.droppedFailures++
      this.observer.failureDropped("failure_buffer_full")
    }
    const reported = this.onReport(target, failure)
    // Rows are shown only when asked for, a few of them, sensitive columns redacted.
    const message = this.redaction.logRowValues
      ? `${failure.message}\n${Redact.formatRows(rows, this.redaction.isSensitive, loggedRows)}`
      : failure.message
    return Effect.zipRight(
      Effect.logError(message).pipe(
        Effect.annotateLogs({ target: target.name, reason: failure.reason, rows: rows.length, attempts })
      ),
      reported
    )
  }
}
