/**
 * Executors write a group of rows for one target. A flow is given its executors
 * (`BatchFlow.layer({ executors: [...] })`); each says which targets it writes, so one flow can write
 * `Table`s to PostgreSQL (`Postgres.executor()`), Redis targets (`Redis.executor()`) and targets of
 * your own (`forTarget`), each group going to its own executor. An executor gets batching, retry,
 * timeouts, concurrency limits and ordering from the engine.
 *
 * `forTarget` is typed end to end: the function receives `ReadonlyArray<A>` for a `Target<A>`, fails
 * with its own error type `E` (classified by rules typed on `E`), and may require services `R`,
 * which the flow's layer then requires.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import type { BatchFlowConfig } from "./BatchFlowConfig.js"
import type * as Retry from "./Retry.js"
import type * as Target from "./Target.js"

/**
 * One row of a call that was not written, by its index in the call's `rows`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RowError<E = unknown> {
  readonly index: number
  readonly error: E
}

/**
 * What an executor returns when some rows of a call were written and others were not (e.g. a Redis
 * pipeline where some commands failed). The engine commits the other rows and reports the failed
 * ones (classified like any error, one `BatchFailure` per reason). Partial failures are final for the
 * engine: an executor that can retry single rows safely does so itself before returning.
 *
 * @since 0.1.0
 * @category models
 */
export interface Partial<E = unknown> {
  readonly _tag: "Partial"
  readonly failed: ReadonlyArray<RowError<E>>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const partial = <E>(failed: ReadonlyArray<RowError<E>>): Partial<E> => ({ _tag: "Partial", failed })

/**
 * @since 0.1.0
 * @category refinements
 */
export const isPartial = (u: unknown): u is Partial =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Partial"

/**
 * What the engine tells an executor about the attempt it runs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt {
  /** 1 for the first attempt of a call, 2 for its first retry, … */
  readonly number: number
  /**
   * The flow's per-attempt `timeout` in milliseconds (`Infinity` for none). An executor that can
   * give the sink the same deadline should: the SQL executors set PostgreSQL's `statement_timeout`
   * and MariaDB's `max_statement_time`, so a slow statement is rolled back by the server (a known
   * outcome) instead of being abandoned by the engine (an unknown one).
   */
  readonly timeoutMillis: number
}

/**
 * An executor as the engine runs it: untyped, for any target it is given. Made by an `Executor`
 * when the flow starts (see `forTarget`); the backends' `makeExecutor` return one for calling
 * `execute` directly.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchExecutor {
  /**
   * Writes `rows` (one flush's rows of one target, in submission order, never empty). Succeeds with
   * `void` when all are committed, or with a `Partial` naming the rows that were not. A failure fails
   * the whole call; the engine classifies the error and retries or reports the rows. A retry passes
   * the same `rows` array again, so an executor may keep per-call state keyed on it (e.g. to resume
   * rather than resend after a timeout). The array is the flow's: once the call's rows are
   * committed the flow empties it (to let the rows go), so copy it to keep it beyond the call.
   * `attempt` is what the engine knows of this attempt (absent when an executor is called directly).
   */
  readonly execute: (
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    attempt?: Attempt | undefined
  ) => Effect.Effect<void | Partial, unknown>
  /** Classification rules for this executor's own errors (e.g. SQLSTATEs), tried after the user's. */
  readonly rules: ReadonlyArray<Retry.Rule>
}

/**
 * The executor a flow made without `executors` uses for every target.
 *
 * @deprecated Give the flow its executors instead: `BatchFlow.layer({ executors: [forAll(executor)] })`
 * (or a backend's `executor()`, or `forTarget`). A flow built from this tag writes every target with
 * one untyped function. See the migration note in `docs/api/reference.md`.
 * @since 0.1.0
 * @category tags
 */
export const BatchExecutor: Context.Tag<BatchExecutor, BatchExecutor> = Context.GenericTag<BatchExecutor>(
  "effect-batchflow/BatchExecutor"
)

/**
 * Makes an executor from an untyped function, for every target.
 *
 * @deprecated Use `forTarget(target, (rows) => ...)`: its rows, errors and services are typed. For one
 * function over every target, give `forAll({ execute, rules })` to the flow.
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  execute: (
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    attempt?: Attempt | undefined
  ) => Effect.Effect<void | Partial, unknown>,
  options?: { readonly rules?: ReadonlyArray<Retry.Rule> | undefined }
): BatchExecutor => ({ execute, rules: options?.rules ?? [] })

/**
 * A layer providing an executor made from a function.
 *
 * @deprecated Give the executor to the flow: `BatchFlow.layer({ executors: [forTarget(...)] })`.
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  execute: (
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    attempt?: Attempt | undefined
  ) => Effect.Effect<void | Partial, unknown>,
  options?: { readonly rules?: ReadonlyArray<Retry.Rule> | undefined }
): Layer.Layer<BatchExecutor> => Layer.succeed(BatchExecutor, make(execute, options))

/**
 * An in-memory executor: records every call. Used by tests and the W0 benchmark.
 *
 * @since 0.1.0
 * @category models
 */
export interface Memory extends BatchExecutor {
  /** Every call in completion order, with its rows (unless made with `keepRows: false`). */
  readonly batches: ReadonlyArray<{ readonly target: string; readonly rows: ReadonlyArray<unknown> }>
  /** Rows written so far, all targets. */
  readonly rowCount: () => number
  /** The rows written for one target, in commit order. */
  readonly rowsOf: (target: string) => ReadonlyArray<unknown>
}

/**
 * Makes an in-memory executor.
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (options?: { readonly keepRows?: boolean | undefined }): Memory => {
  const keepRows = options?.keepRows ?? true
  const batches: Array<{ readonly target: string; readonly rows: ReadonlyArray<unknown> }> = []
  let count = 0
  return {
    rules: [],
    batches,
    rowCount: () => count,
    rowsOf: (target) => batches.filter((b) => b.target === target).flatMap((b) => b.rows),
    execute: (target, rows) =>
      Effect.sync(() => {
        count += rows.length
        // A copy: the flow empties a committed batch's array (see `BatchExecutor`).
        if (keepRows) batches.push({ target: target.name, rows: rows.slice() })
      })
  }
}

/**
 * A layer with an in-memory executor, as the `BatchExecutor` service.
 *
 * @deprecated Give it to the flow: `BatchFlow.layer({ executors: [forAll(memory)] })`.
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (executor: Memory): Layer.Layer<BatchExecutor> =>
  Layer.succeed(BatchExecutor, executor)

// ---------------------------------------------------------------- executors of a flow

/**
 * @since 0.1.0
 * @category type ids
 */
export const ExecutorTypeId: unique symbol = Symbol.for("effect-batchflow/BatchExecutor/Executor")

/**
 * @since 0.1.0
 * @category type ids
 */
export type ExecutorTypeId = typeof ExecutorTypeId

/**
 * An executor of a flow: which targets it writes, and how it is made when the flow starts. Its
 * services `R` and the errors `E` of making it are the flow layer's requirements and errors.
 *
 * @since 0.1.0
 * @category models
 */
export interface Executor<out E = never, out R = never> {
  readonly [ExecutorTypeId]: { readonly _E: (_: never) => E; readonly _R: (_: never) => R }
  /** Shown in errors and logs, e.g. `postgres`, `redis`, `target:audit`. */
  readonly name: string
  /**
   * Which targets it writes. The flow gives each target to the first executor, in the order given,
   * that accepts it; `forAll` executors come last whatever their place.
   */
  readonly accepts: (target: Target.Any) => boolean
  /** Whether it accepts every target (`forAll`): tried after all the others. */
  readonly fallback: boolean
  /** Makes it when the flow starts, with the flow's configuration (e.g. its retry settings). */
  readonly make: (config: BatchFlowConfig) => Effect.Effect<BatchExecutor, E, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Executor {
  /**
   * @since 0.1.0
   * @category models
   */
  // biome-ignore lint/suspicious/noExplicitAny: the widest executor type, for constraints
  export type Any = Executor<any, any>
  /**
   * The errors of making an executor.
   *
   * @since 0.1.0
   * @category models
   */
  export type Error<X> = X extends Executor<infer E, infer _R> ? E : never
  /**
   * The services an executor needs.
   *
   * @since 0.1.0
   * @category models
   */
  export type Context<X> = X extends Executor<infer _E, infer R> ? R : never
}

const variance = { _E: (_: never) => _, _R: (_: never) => _ }

/**
 * Makes an executor of a flow from its parts (what the backends' `executor()` do).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExecutor = <E, R>(options: {
  readonly name: string
  readonly accepts: (target: Target.Any) => boolean
  readonly make: (config: BatchFlowConfig) => Effect.Effect<BatchExecutor, E, R>
}): Executor<E, R> => ({
  [ExecutorTypeId]: variance,
  name: options.name,
  accepts: options.accepts,
  fallback: false,
  make: options.make
})

/**
 * @since 0.1.0
 * @category refinements
 */
export const isExecutor = (u: unknown): u is Executor.Any => Predicate.hasProperty(u, ExecutorTypeId)

/**
 * The executor of one target of yours: `execute` receives its rows (one flush's rows of the target,
 * in submission order, never empty) typed as the target's rows, fails with your error type `E` (the
 * row errors of a `Partial` it returns are `E`s too), and
 * may use services `R`, which the flow's layer requires. `rules` classify `E` (retryable or not,
 * row-level, unknown outcome) after the flow's `rules` and before the engine's; they are never given
 * the engine's own errors (an `AttemptTimeout`). An error no rule answers is final, `non_retryable`. The rows array belongs to the flow (see `BatchExecutor.execute`).
 *
 * @example
 * ```ts
 * import { Data, Effect, Schema } from "effect"
 * import { BatchExecutor, BatchFlow, Target } from "effect-batchflow"
 *
 * class RateLimited extends Data.TaggedError("RateLimited")<{}> {}
 * const Audit = Target.make("audit", { schema: Schema.Struct({ id: Schema.Number, action: Schema.String }) })
 *
 * const AuditWriter = BatchExecutor.forTarget(
 *   Audit,
 *   (rows) => (rows.length > 1000 ? Effect.fail(new RateLimited()) : Effect.log(`${rows[0]?.action}`)),
 *   { rules: [(error) => (error._tag === "RateLimited" ? { retryable: true, reason: "rate_limited" } : undefined)] }
 * )
 * const FlowLive = BatchFlow.layer({ executors: [AuditWriter] })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const forTarget = <A, E, R>(
  target: Target.Target<A>,
  execute: (rows: ReadonlyArray<A>, attempt: Attempt) => Effect.Effect<void | Partial<E>, E, R>,
  options?: { readonly rules?: ReadonlyArray<Retry.Rule<E>> | undefined }
): Executor<never, R> => {
  const rules = (options?.rules ?? []).map(
    (rule): Retry.Rule =>
      (error) =>
        Predicate.isTagged(error, "AttemptTimeout") ? undefined : rule(error as E)
  )
  return {
    [ExecutorTypeId]: variance,
    name: `target:${target.name}`,
    accepts: (t) => t === target,
    fallback: false,
    make: () =>
      Effect.map(Effect.context<R>(), (context) => ({
        rules,
        // The services as the flow's layer had them, over those of the attempt's fiber.
        execute: (_target, rows, attempt) =>
          Effect.provide(
            execute(
              rows as ReadonlyArray<A>,
              attempt ?? { number: 1, timeoutMillis: Number.POSITIVE_INFINITY }
            ),
            context
          )
      }))
  }
}

/**
 * An executor for every target that no other executor of the flow accepts: e.g. the in-memory
 * executor of tests, or an untyped function over every target (`make`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const forAll = (executor: BatchExecutor): Executor => ({
  [ExecutorTypeId]: variance,
  name: "all",
  accepts: () => true,
  fallback: true,
  make: () => Effect.succeed(executor)
})
