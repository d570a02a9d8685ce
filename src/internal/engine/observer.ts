/**
 * The engine's observation points, called synchronously and per batch (never per row, except for
 * submits that had to wait or were rejected). Metrics (BatchFlowMetrics) and anything else that
 * watches the engine implement this; the default does nothing.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/** What made a worker take a batch. */
export type FlushTrigger = "size" | "interval" | "manual" | "close" | "backpressure"

/** @internal */
export interface BatchTaken {
  readonly trigger: FlushTrigger
  /** Rows taken (all targets). */
  readonly rows: number
  /** Groups (targets) in the batch. */
  readonly groups: number
  /** Rows left in the buffer. */
  readonly buffered: number
  /** How long the batch's first row waited in the buffer, approximately (ms). */
  readonly waitedMillis: number
  /** Time spent taking the rows off the buffer and grouping them by target (ms, fractional). */
  readonly assembleMillis: number
}

/** @internal */
export interface BatchFinished {
  readonly trigger: FlushTrigger
  readonly rows: number
  readonly groups: number
  /** From taking the batch to the end of its last group, retries and backoff included (ms). */
  readonly durationMillis: number
  /** Whether any rows of the batch were reported as failed. */
  readonly failed: boolean
}

/**
 * One executor call ended (all its attempts): once per group, or per part when rows are isolated.
 *
 * @internal
 */
export interface Executed {
  readonly target: string
  /** Rows given to the executor. */
  readonly rows: number
  readonly attempts: number
  /** From the first attempt to the end of the last, backoff included (ms). */
  readonly durationMillis: number
  /** `partial`: the executor returned a `Partial` (some rows not written). */
  readonly status: "success" | "partial" | "fail"
}

/** @internal */
export interface Started {
  readonly concurrency: number
  readonly flushSize: number
  readonly bufferSize: number
}

/**
 * What a backend generated for one attempt of one executor call (the seed's operation preview):
 * rows in, rows out after dedupe/coalescing, bind arguments or command arguments, and optionally
 * the number of commands.
 *
 * @internal
 */
export interface OperationReport {
  readonly target: string
  /** e.g. `sql`, `redis`, or a custom executor's name. */
  readonly backend: string
  /** e.g. `insert`, `upsert`, `hset`. */
  readonly operation: string
  readonly inputRows: number
  readonly outputRows: number
  readonly args: number
  /** Commands or statements generated (a fused `MSET` of 500 rows is 1), for backends that count them. */
  readonly commands?: number | undefined
  /** For backends that dedupe: the strategy (`ignore`, `replace`, `update`, `keepLast`…) and the counts. */
  readonly dedupe?:
    | {
        readonly strategy: string
        /** Rows dropped as duplicates of another row of the batch. */
        readonly deduplicated: number
        /** Rows merged into another row of the batch. */
        readonly merged: number
      }
    | undefined
}

/** @internal */
export interface GroupFinished {
  readonly target: string
  readonly rows: number
  readonly attempts: number
  /** From the first attempt to the end of the last, backoff included (ms). */
  readonly durationMillis: number
  /** `failure`: reported, not written; `unknown_outcome`: reported, maybe written. */
  readonly outcome: "success" | "failure" | "unknown_outcome"
  /** The failure reason, or "" on success. */
  readonly reason: string
}

/** @internal */
export interface Observer {
  /** A submit that found the buffer full: how long it waited (ms) before it was accepted. */
  readonly submitWaited: (target: string, millis: number) => void
  /** A submit rejected: "closed" or "invalid_row". */
  readonly submitRejected: (target: string, reason: "closed" | "invalid_row" | "full") => void
  readonly batchTaken: (batch: BatchTaken) => void
  /** A failed attempt; `final` when it is not retried. */
  readonly attemptFailed: (target: string, reason: string, final: boolean) => void
  readonly groupFinished: (group: GroupFinished) => void
  /** Rows reported as `unknown_outcome` got their real outcome from a late answer. */
  readonly lateOutcome: (target: string, committed: number, failed: number) => void
  /** An executor call ended, after its last attempt (not called for groups that never ran). */
  readonly executed: (call: Executed) => void
  /** A failure dropped because the failures buffer was full. */
  /**
   * A failure (or a dead-letter row) that had no room: `failure_buffer_full` (the failures stream),
   * `on_failure_full` (the onFailure queue), `dead_letter_full` (the dead-letter backlog).
   */
  readonly failureDropped: (reason: "failure_buffer_full" | "on_failure_full" | "dead_letter_full") => void
  /** Buffer depth and groups in flight after a change of either (called per batch). */
  readonly depth: (buffered: number, inFlight: number) => void
  /** Once, when the engine starts. */
  readonly started: (info: Started) => void
  /** A batch taken by `batchTaken` is finished: every group committed or reported. */
  readonly batchFinished: (batch: BatchFinished) => void
  /** A backend's report of what it generated for one attempt (see `reportOperation`). */
  readonly operation: (report: OperationReport) => void
}

/** @internal */
export const noop: Observer = {
  submitWaited: () => {},
  submitRejected: () => {},
  batchTaken: () => {},
  attemptFailed: () => {},
  groupFinished: () => {},
  lateOutcome: () => {},
  executed: () => {},
  failureDropped: () => {},
  depth: () => {},
  started: () => {},
  batchFinished: () => {},
  operation: () => {}
}

/** @internal */
export class EngineObserver extends Context.Tag("effect-batchflow/internal/EngineObserver")<
  EngineObserver,
  Observer
>() {}

/**
 * A backend reports what it generated for one attempt. Per executor call, never per row; does
 * nothing unless an observer (e.g. `BatchFlowMetrics.layer`) was provided to the flow.
 *
 * @internal
 */
export const reportOperation = (report: OperationReport): Effect.Effect<void> =>
  Effect.map(Effect.serviceOption(EngineObserver), (observer) => {
    if (observer._tag === "Some") observer.value.operation(report)
  })
