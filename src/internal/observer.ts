/**
 * The engine's observation points, called synchronously and per batch (never per row, except for
 * submits that had to wait or were rejected). Metrics (BatchFlowMetrics) and anything else that
 * watches the engine implement this; the default does nothing.
 */
import * as Context from "effect/Context"

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
}

/** @internal */
export interface GroupFinished {
  readonly target: string
  readonly rows: number
  readonly attempts: number
  /** From the first attempt to the end of the last, backoff included (ms). */
  readonly durationMillis: number
  readonly outcome: "success" | "failure"
  /** The failure reason, or "" on success. */
  readonly reason: string
}

/** @internal */
export interface Observer {
  /** A submit that found the buffer full: how long it waited (ms) before it was accepted. */
  readonly submitWaited: (target: string, millis: number) => void
  /** A submit rejected: "closed" or "invalid_row". */
  readonly submitRejected: (target: string, reason: "closed" | "invalid_row") => void
  readonly batchTaken: (batch: BatchTaken) => void
  /** A failed attempt; `final` when it is not retried. */
  readonly attemptFailed: (target: string, reason: string, final: boolean) => void
  readonly groupFinished: (group: GroupFinished) => void
  /** A failure dropped because the failures buffer was full. */
  readonly failureDropped: () => void
  /** Buffer depth and groups in flight after a change of either (called per batch). */
  readonly depth: (buffered: number, inFlight: number) => void
}

/** @internal */
export const noop: Observer = {
  submitWaited: () => {},
  submitRejected: () => {},
  batchTaken: () => {},
  attemptFailed: () => {},
  groupFinished: () => {},
  failureDropped: () => {},
  depth: () => {}
}

/** @internal */
export class EngineObserver extends Context.Tag("effect-batchflow/internal/EngineObserver")<
  EngineObserver,
  Observer
>() {}
