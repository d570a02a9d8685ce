/**
 * The BatchFlow service: submit rows cheaply; a background engine groups them by size or time,
 * splits each flush by target and writes each group through the `BatchExecutor` with retry, a
 * concurrency limit, per-attempt timeouts and same-key ordering. Closing the layer's scope stops
 * intake, flushes every buffered row and waits for every in-flight write.
 *
 * @since 0.1.0
 */

import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as BatchExecutor from "./BatchExecutor.js"
import * as BatchFlowConfig from "./BatchFlowConfig.js"
import type {
  BatchFailure,
  BatchFailureOf,
  BatchFlowClosed,
  BatchFlowConfigError,
  BufferFull,
  InvalidRow
} from "./BatchFlowError.js"
import { makeMetricsObserver } from "./BatchFlowMetrics.js"
import * as internal from "./internal/engine/engine.js"
import { EngineObserver } from "./internal/engine/observer.js"
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
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull | BatchFailureOf<A>>
  /**
   * Like `submitAll`, then waits until every one of its rows is committed or reported, and succeeds
   * with the distinct `BatchFailure`s of its rows (empty: all committed). Each holds only this call's
   * rows, also when their batch held other callers' rows too, so the failures' rows together are
   * exactly this call's rows not committed. For a
   * caller that must know each row's fate before it goes on (e.g. acknowledging a message it read).
   * Interrupting the wait withdraws nothing.
   */
  readonly writeAll: <A>(
    target: Target.Target<A>,
    rows: Iterable<A>
  ) => Effect.Effect<ReadonlyArray<BatchFailureOf<A>>, InvalidRow | BatchFlowClosed | BufferFull>
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
 * A flow's options: the configuration (`BatchFlowConfig.Options`) and its executors.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<X extends ReadonlyArray<BatchExecutor.Executor.Any>>
  extends BatchFlowConfig.Options {
  /**
   * What writes the rows: each target goes to the first executor that accepts it (a backend's
   * `executor()` accepts its kind of target, `BatchExecutor.forTarget` one target, `forAll` every
   * target no other accepts). Their services are the layer's requirements. Rows of a target no
   * executor accepts are reported with reason `no_executor`.
   */
  readonly executors: X
}

type MakeError<X> = BatchFlowConfigError | BatchExecutor.Executor.Error<X>
type MakeContext<X> = BatchExecutor.Executor.Context<X>

/**
 * Starts a flow: its executors made (or, without `executors`, the deprecated `BatchExecutor`
 * service), the user rules (the option's, then a deprecated `Retry.layer`'s), and the metrics
 * observer when the `metrics` option asks for one.
 */
const start = (
  options: BatchFlowConfig.Options & { readonly executors?: ReadonlyArray<BatchExecutor.Executor.Any> }
) =>
  Effect.gen(function* () {
    const config = yield* BatchFlowConfig.make(options)
    const executors = options.executors
    const ordered =
      executors === undefined
        ? undefined
        : [...executors.filter((e) => !e.fallback), ...executors.filter((e) => e.fallback)]
    const made =
      ordered === undefined
        ? [{ name: "BatchExecutor", accepts: () => true, executor: yield* BatchExecutor.BatchExecutor }]
        : yield* Effect.forEach(ordered, (e) =>
            Effect.map(e.make(config), (executor) => ({ name: e.name, accepts: e.accepts, executor }))
          )
    const classifier = yield* Effect.serviceOption(ErrorClassifier)
    const rules = classifier._tag === "Some" ? [...config.rules, ...classifier.value.rules] : config.rules
    const engine = internal.make(config, made, rules)
    const metrics = config.metrics
    const running = yield* metrics === undefined
      ? engine
      : Effect.provideService(engine, EngineObserver, makeMetricsObserver(metrics))
    const flow: BatchFlow = {
      [TypeId]: TypeId,
      submit: (target, row) => running.submit(target, row),
      trySubmit: (target, row) => running.trySubmit(target, row),
      submitAll: (target, rows) => running.submitAll(target, rows),
      unsafeOffer: (target, row) => running.unsafeOffer(target, row),
      write: (target, row) => running.write(target, row) as never,
      writeAll: (target, rows) => running.writeAll(target, rows) as never,
      flush: running.flush,
      close: running.close,
      awaitDone: running.awaitDone,
      isDone: running.isDone,
      failures: running.failures,
      stats: running.stats,
      ...internal.offerNowEntry(running)
    }
    return flow
  })

/**
 * Starts a flow in the current scope. Closing the scope closes the flow (see `close`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  /** A flow writing through its `executors`, whose services it requires. */
  <const X extends ReadonlyArray<BatchExecutor.Executor.Any>>(
    options: Options<X>
  ): Effect.Effect<BatchFlow, MakeError<X[number]>, MakeContext<X[number]> | Scope.Scope>
  /**
   * @deprecated Without `executors`, the flow writes every target with the `BatchExecutor` service:
   * give it `executors` instead (see the migration note in `docs/api/reference.md`).
   */
  (
    options?: BatchFlowConfig.Options
  ): Effect.Effect<BatchFlow, BatchFlowConfigError, BatchExecutor.BatchExecutor | Scope.Scope>
} = (options: BatchFlowConfig.Options = {}) => start(options) as never

/** A flow from options read from `Config` over the options given in code (see `layerConfig`). */
const makeFromConfig = (
  options: BatchFlowConfig.Options,
  config: Config.Config<BatchFlowConfig.Options>
): Effect.Effect<BatchFlow, unknown, unknown> =>
  Effect.flatMap(config, (read) => start(BatchFlowConfig.merge(options, read)))

/**
 * A scoped layer: building it makes the executors and starts the engine, releasing it closes the
 * flow. Requires the services of its executors.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { Layer, Redacted } from "effect"
 * import { BatchFlow } from "effect-batchflow"
 * import * as Postgres from "effect-batchflow/Postgres"
 * import * as Redis from "effect-batchflow/Redis"
 *
 * // Tables go to PostgreSQL, Redis targets to Redis, in one flow.
 * const FlowLive = BatchFlow.layer({ executors: [Postgres.executor(), Redis.executor()], flushSize: 500 }).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test") })),
 *   Layer.provide(Redis.layerClientConfig())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: {
  <const X extends ReadonlyArray<BatchExecutor.Executor.Any>>(
    options: Options<X>
  ): Layer.Layer<BatchFlow, MakeError<X[number]>, MakeContext<X[number]>>
  /** @deprecated Give the flow `executors` (see `make`). */
  (
    options?: BatchFlowConfig.Options
  ): Layer.Layer<BatchFlow, BatchFlowConfigError, BatchExecutor.BatchExecutor>
} = (options?: BatchFlowConfig.Options) => Layer.scoped(BatchFlow, make(options)) as never

/**
 * Like `layer`, with the configuration read from Effect `Config` (by default
 * `BatchFlowConfig.config`, i.e. the `BATCHFLOW_*` environment variables) and merged over the
 * options given here.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: {
  <const X extends ReadonlyArray<BatchExecutor.Executor.Any>>(
    options: Options<X>,
    config?: Config.Config<BatchFlowConfig.Options>
  ): Layer.Layer<BatchFlow, MakeError<X[number]> | ConfigError.ConfigError, MakeContext<X[number]>>
  /** @deprecated Give the flow `executors`: `layerConfig({ executors }, config)`. */
  (
    config?: Config.Config<BatchFlowConfig.Options>
  ): Layer.Layer<BatchFlow, BatchFlowConfigError | ConfigError.ConfigError, BatchExecutor.BatchExecutor>
} = (
  first?: Config.Config<BatchFlowConfig.Options> | Options<ReadonlyArray<BatchExecutor.Executor.Any>>,
  second?: Config.Config<BatchFlowConfig.Options>
) => {
  const [options, config] = Config.isConfig(first)
    ? [{}, first]
    : [first ?? {}, second ?? BatchFlowConfig.config]
  return Layer.scoped(BatchFlow, makeFromConfig(options, config) as never) as never
}

/**
 * The class of a flow declared as its own service (`Tag`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TagClass<Self, Id extends string> extends Context.TagClass<Self, Id, BatchFlow> {
  /** A scoped layer of this flow (see `layer`). */
  readonly layer: <const X extends ReadonlyArray<BatchExecutor.Executor.Any>>(
    options: Options<X>
  ) => Layer.Layer<Self, MakeError<X[number]>, MakeContext<X[number]>>
  /** Like `layer`, with the configuration read from `Config` (see `layerConfig`). */
  readonly layerConfig: <const X extends ReadonlyArray<BatchExecutor.Executor.Any>>(
    options: Options<X>,
    config?: Config.Config<BatchFlowConfig.Options>
  ) => Layer.Layer<Self, MakeError<X[number]> | ConfigError.ConfigError, MakeContext<X[number]>>
}

/**
 * Declares a flow as a service of its own, as `@effect/sql` declares clients: for several
 * independent flows in one program (different flush sizes, concurrency, executors), each with its
 * own buffer, workers and close.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { BatchExecutor, BatchFlow } from "effect-batchflow"
 *
 * class Events extends BatchFlow.Tag("app/Events")<Events>() {}
 * class Audit extends BatchFlow.Tag("app/Audit")<Audit>() {}
 *
 * const EventsLive = Events.layer({ executors: [BatchExecutor.forAll(BatchExecutor.memory())], flushSize: 5000 })
 * const AuditLive = Audit.layer({ executors: [BatchExecutor.forAll(BatchExecutor.memory())], concurrency: 1 })
 *
 * const program = Effect.gen(function* () {
 *   const events = yield* Events
 *   const audit = yield* Audit
 *   yield* events.flush
 *   yield* audit.flush
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const Tag =
  <const Id extends string>(id: Id) =>
  <Self>(): TagClass<Self, Id> => {
    const tag = Context.Tag(id)<Self, BatchFlow>()
    return Object.assign(tag, {
      layer: (options: Options<ReadonlyArray<BatchExecutor.Executor.Any>>) =>
        Layer.scoped(tag, make(options) as never),
      layerConfig: (
        options: Options<ReadonlyArray<BatchExecutor.Executor.Any>>,
        config: Config.Config<BatchFlowConfig.Options> = BatchFlowConfig.config
      ) => Layer.scoped(tag, makeFromConfig(options, config) as never)
    }) as never
  }

/**
 * Whether a failure is of this target, narrowing its rows to the target's row type (e.g. in a
 * `failures` reader or an `onFailure` handler).
 *
 * @since 0.1.0
 * @category refinements
 */
export const isFailureOf =
  <A>(target: Target.Target<A>) =>
  (failure: BatchFailure): failure is BatchFailureOf<A> =>
    failure.target === target.name
