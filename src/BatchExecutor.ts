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
 * @since 0.1.0
 * @category models
 */
export interface BatchExecutor {
  /**
   * Writes `rows` (one flush's rows of one target, in submission order, never empty) and succeeds
   * only when all of them are committed. A failure fails the whole call; the engine classifies the
   * error and retries or reports the rows.
   */
  readonly execute: (target: Target.Any, rows: ReadonlyArray<unknown>) => Effect.Effect<void, unknown>
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
  execute: (target: Target.Any, rows: ReadonlyArray<unknown>) => Effect.Effect<void, unknown>,
  options?: { readonly rules?: ReadonlyArray<Retry.Rule> | undefined }
): BatchExecutor => ({ execute, rules: options?.rules ?? [] })

/**
 * A layer providing an executor made from a function.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  execute: (target: Target.Any, rows: ReadonlyArray<unknown>) => Effect.Effect<void, unknown>,
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
        if (keepRows) batches.push({ target: target.name, rows })
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
