/**
 * The counters of one flow (`BatchFlow.Stats`), kept apart so that the engine that fills them and
 * the public module that names them do not import each other.
 */

/**
 * Counters of one flow since it started.
 *
 * @internal
 */
export interface Stats {
  /** Rows in the buffer, not yet taken by a flush. */
  readonly buffered: number
  /** Groups taken by a flush and not finished (waiting for a permit, executing or backing off). */
  readonly inFlight: number
  /** Rows accepted by submit, submitAll and write. */
  readonly accepted: number
  /** Rows the executor committed. */
  readonly committed: number
  /** Rows reported in a `BatchFailure` with outcome `failed`: known not written. */
  readonly failed: number
  /**
   * Rows reported in a `BatchFailure` with outcome `unknown_outcome`: maybe written.
   * accepted = buffered + in flight + committed + failed + unknownOutcome.
   */
  readonly unknownOutcome: number
  /** Of the `unknownOutcome` rows, those a late answer showed committed (the report stands). */
  readonly lateCommitted: number
  /** Of the `unknownOutcome` rows, those a late answer showed not written. */
  readonly lateFailed: number
  /** Attempts beyond the first, over all groups. */
  readonly retries: number
  /** Failures dropped because the `failures` buffer was full (they were still logged). */
  readonly droppedFailures: number
  /**
   * Rows handed to the dead-letter target (`deadLetter` option): counted in `accepted` and then
   * committed or reported like any other rows.
   */
  readonly deadLettered: number
  /** Dead-letter rows not written: the backlog was full, `toRow` threw or made an invalid row, or past the close deadline. */
  readonly droppedDeadLetters: number
  /** Failures the `onFailure` handler never saw: its queue (`failureBufferSize`) was full. */
  readonly droppedOnFailure: number
}
