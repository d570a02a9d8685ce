/**
 * Settlement: every accepted row ends here exactly once, committed or reported. Committing completes
 * the rows' acks; reporting builds one `BatchFailure` (message and detail redacted), fails the acks
 * with it, offers it to the failures stream and logs it. Keeps the outcome counters that `stats`
 * shows. Per part, never per row on the submit path.
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Mailbox from "effect/Mailbox"
import type { Partial } from "../BatchExecutor.js"
import { BatchFailure } from "../BatchFlowError.js"
import type * as Retry from "../Retry.js"
import type * as Target from "../Target.js"
import type { Grouped } from "./buffer.js"
import { type Ack, type Classified, type Part, pickPart } from "./group.js"
import type { Observer } from "./observer.js"
import * as Redact from "./redact.js"

/** With `logRowValues`, a final failure's log line shows at most this many of its rows. */
const loggedRows = 3

/** @internal */
export class Settlement {
  // Outcome counters for `stats`; only settlement changes them.
  committed = 0
  failed = 0
  retries = 0
  droppedFailures = 0

  constructor(
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    private readonly classify: (error: unknown) => Retry.Classification,
    private readonly failureBox: Mailbox.Mailbox<BatchFailure>,
    /** Whether row values may be shown, and which columns never are. */
    private readonly redaction: Redact.Redaction
  ) {}

  success(target: Target.Any, part: Part): void {
    this.retries += part.attempts - 1
    this.commit(target, part)
  }

  private commit(target: Target.Any, part: Part): void {
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
    }
  }

  /** Some rows were written, some not: commit the others, report the failed ones by reason. */
  partial(target: Target.Any, part: Part, result: Partial): Effect.Effect<void> {
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
      const classification = this.classify(error)
      const entry = byReason.get(classification.reason)
      if (entry === undefined)
        byReason.set(classification.reason, { indices: [i], first: { error, classification } })
      else entry.indices.push(i)
    }
    // One executor call: its retries are counted once, whatever its rows' fates.
    this.retries += part.attempts - 1
    if (written.length > 0) this.commit(target, pickPart(part, written))
    return Effect.forEach(
      byReason.values(),
      ({ indices, first }) => {
        // The call partly failed: once per reason, like a failed attempt that will not be retried.
        this.observer.attemptFailed(target.name, first.classification.reason, true)
        return this.fail(target, pickPart(part, indices), first)
      },
      { discard: true }
    )
  }

  failure(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    this.retries += Math.max(part.attempts - 1, 0)
    return this.fail(target, part, classified)
  }

  private fail(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    this.observer.groupFinished({
      target: target.name,
      rows: part.rows.length,
      attempts: part.attempts,
      durationMillis: part.attempts === 0 ? 0 : this.clock.unsafeCurrentTimeMillis() - part.startedAt,
      outcome: "failure",
      reason: classified.classification.reason
    })
    return this.report(target, part.rows, part.acks, part.attempts, classified)
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
    return Effect.forEach(
      grouped,
      (g) => {
        this.observer.groupFinished({
          target: g.target.name,
          rows: g.rows.length,
          attempts: 0,
          durationMillis: 0,
          outcome: "failure",
          reason: classification.reason
        })
        return this.report(g.target, g.rows, g.acks, 0, { error, classification })
      },
      { discard: true }
    )
  }

  private report(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    acks: ReadonlyArray<Ack | undefined> | undefined,
    attempts: number,
    classified: Classified
  ): Effect.Effect<void> {
    const failure = new BatchFailure({
      target: target.name,
      rows,
      attempts,
      reason: classified.classification.reason,
      retryable: classified.classification.retryable,
      cause: classified.error,
      detail: Redact.failureDetail(this.redaction, classified.error, rows)
    })
    this.failed += rows.length
    if (acks !== undefined) {
      const exit = Exit.fail(failure)
      for (const ack of acks) if (ack !== undefined) ack.unsafeDone(exit)
    }
    if (!this.failureBox.unsafeOffer(failure)) {
      this.droppedFailures++
      this.observer.failureDropped()
    }
    // Rows are shown only when asked for, a few of them, sensitive columns redacted.
    const message = this.redaction.logRowValues
      ? `${failure.message}\n${Redact.formatRows(rows, this.redaction.isSensitive, loggedRows)}`
      : failure.message
    return Effect.logError(message).pipe(
      Effect.annotateLogs({ target: target.name, reason: failure.reason, rows: rows.length, attempts })
    )
  }
}
