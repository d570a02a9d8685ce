/**
 * The executor contract: the one function that writes a group of rows for one target. Backends
 * (SQL, Redis) are executors; `make` turns any function into one, and it gets batching, retry,
 * timeouts, concurrency limits and ordering from the engine for free.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Retry from "./Retry.js"
import type * as Target from "./Target.js"

/**
 * One row of a call that was not written, by its index in the call's `rows`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RowError {
  readonly index: number
  readonly error: unknown
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
export interface Partial {
  readonly _tag: "Partial"
  readonly failed: ReadonlyArray<RowError>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const partial = (failed: ReadonlyArray<RowError>): Partial => ({ _tag: "Partial", failed })

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
 * @since 0.1.0
 * @category tags
 */
export const BatchExecutor: Context.Tag<BatchExecutor, BatchExecutor> = Context.GenericTag<BatchExecutor>(
  "effect-batchflow/BatchExecutor"
)

/**
 * Makes an executor from a function.
 *
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
 * A layer with a fresh in-memory executor.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (executor: Memory): Layer.Layer<BatchExecutor> =>
  Layer.succeed(BatchExecutor, executor)
