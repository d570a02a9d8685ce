/**
 * The BatchFlow service: submit rows cheaply; a background engine groups them by size or time,
 * splits each flush by target and writes each group through the `BatchExecutor` with retry, a
 * concurrency limit, per-attempt timeouts and same-key ordering. Closing the layer's scope stops
 * intake, flushes every buffered row and waits for every in-flight write.
 *
 * @since 0.1.0
 */

import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { BatchExecutor } from "./BatchExecutor.js"
import * as BatchFlowConfig from "./BatchFlowConfig.js"
import type {
  BatchFailure,
  BatchFlowClosed,
  BatchFlowConfigError,
  BufferFull,
  InvalidRow
} from "./BatchFlowError.js"
import * as internal from "./internal/engine/engine.js"
import { ErrorClassifier } from "./Retry.js"
import type * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/BatchFlow")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * Counters of one flow since it started: buffered, in flight, accepted, committed, failed,
 * unknown outcome (and their late answers), retries and the dropped counts. accepted = buffered +
 * in flight + committed + failed + unknownOutcome.
 *
 * @since 0.1.0
 * @category models
 */
export type Stats = internal.Stats

/**
 * @since 0.1.0
 * @category models
 */
export interface BatchFlow {
  readonly [TypeId]: TypeId
  /**
   * Validates the row against the target's schema and enqueues it. Suspends while the buffer is
   * full; if the caller is interrupted (or times out) while suspended, nothing is enqueued. Fails
   * with `InvalidRow` (naming the field), `BatchFlowClosed`, or `BufferFull` when it waited
   * `submitTimeout` for room (never, by default).
   */
  readonly submit: <A>(
    target: Target.Target<A>,
    row: A
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull>
  /**
   * Like `submit`, but never waits: accepts the row and succeeds with `true` if the buffer has room
   * now, or succeeds with `false` (accepting nothing) when the buffer or the target's retry backlog
   * is full; counted as a `full` rejection. For a caller that sheds load instead of waiting.
   */
  readonly trySubmit: <A>(
    target: Target.Target<A>,
    row: A
  ) => Effect.Effect<boolean, InvalidRow | BatchFlowClosed>
  /**
   * For callers outside Effect (the `Queue.unsafeOffer` convention): validates the row and, if the
   * buffer has room, accepts it at once, as `submit` would. Returns `false` and accepts nothing when
   * the buffer or the target's retry backlog is full or the flow is closed (counted in
   * `batchflow_submit_rejected_total` as `full` or `closed`); never waits. Throws the `InvalidRow`
   * of a row that fails validation. The rows it accepts reach the workers when the caller yields
   * to the event loop.
   */
  readonly unsafeOffer: <A>(target: Target.Target<A>, row: A) => boolean
  /**
   * Validates every row first (an invalid row rejects the whole call, with its `index`), then
   * enqueues them in order. Rows that fit in the buffer are accepted together; a call with more rows
   * than `bufferSize` is accepted in pieces, so an interruption can leave a prefix accepted.
   */
  readonly submitAll: <A>(
    target: Target.Target<A>,
    rows: Iterable<A>
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull>
  /**
   * Like `submit`, then waits until the row's batch is committed; fails with that batch's
   * `BatchFailure` if it is not. Interrupting the wait does not withdraw the row.
   */
  readonly write: <A>(
    target: Target.Target<A>,
    row: A
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull | BatchFailure>
  /**
   * Writes everything submitted before the call and returns when those writes have finished
   * (committed, or reported as failures: see `failures` and `write`).
   */
  readonly flush: Effect.Effect<void>
  /**
   * Stops intake (later submits fail with `BatchFlowClosed`, suspended ones too), writes every
   * buffered row and waits for all in-flight writes, at most `closeTimeout`. Past it, returns at once
   * whatever the driver does: rows never sent are reported with reason `close_timeout`, rows of
   * attempts still running as `unknown_outcome` (their late answers are counted in `stats`).
   * Idempotent; closing the layer's scope does the same.
   */
  readonly close: Effect.Effect<void>
  /** Waits until the flow is closed and everything is written or reported. */
  readonly awaitDone: Effect.Effect<void>
  readonly isDone: Effect.Effect<boolean>
  /**
   * Every batch that could not be written, with its rows, attempts, reason and cause. Bounded by
   * `failureBufferSize` while unread (further failures are dropped, counted in `stats` and still
   * logged); ends when the flow is done. Meant for one reader.
   */
  readonly failures: Stream.Stream<BatchFailure>
  readonly stats: Effect.Effect<Stats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const BatchFlow: Context.Tag<BatchFlow, BatchFlow> = Context.GenericTag<BatchFlow>(
  "effect-batchflow/BatchFlow"
)

/**
 * Starts a flow in the current scope. Closing the scope closes the flow (see `close`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: BatchFlowConfig.Options = {}
): Effect.Effect<BatchFlow, BatchFlowConfigError, BatchExecutor | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* BatchFlowConfig.make(options)
    const classifier = yield* Effect.serviceOption(ErrorClassifier)
    const engine = yield* internal.make(config, classifier._tag === "Some" ? classifier.value.rules : [])
    return {
      [TypeId]: TypeId,
      submit: (target, row) => engine.submit(target, row),
      trySubmit: (target, row) => engine.trySubmit(target, row),
      submitAll: (target, rows) => engine.submitAll(target, rows),
      unsafeOffer: (target, row) => engine.unsafeOffer(target, row),
      write: (target, row) => engine.write(target, row),
      flush: engine.flush,
      close: engine.close,
      awaitDone: engine.awaitDone,
      isDone: engine.isDone,
      failures: engine.failures,
      stats: engine.stats,
      ...internal.offerNowEntry(engine)
    }
  })

/**
 * A scoped layer: building it starts the engine, releasing it closes the flow. Needs a
 * `BatchExecutor` (and uses an `ErrorClassifier` if one is provided).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: BatchFlowConfig.Options = {}
): Layer.Layer<BatchFlow, BatchFlowConfigError, BatchExecutor> => Layer.scoped(BatchFlow, make(options))

/**
 * Like `layer`, with options read from Effect `Config` (by default `BatchFlowConfig.config`, i.e. the
 * `BATCHFLOW_*` environment variables).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<BatchFlowConfig.Options> = BatchFlowConfig.config
): Layer.Layer<BatchFlow, BatchFlowConfigError | ConfigError.ConfigError, BatchExecutor> =>
  Layer.scoped(BatchFlow, Effect.flatMap(config, make))
