/**
 * A target is where rows go: a name, a row schema and a key. The engine groups each flush by
 * target, validates rows against the target's schema at submit, and uses the key to keep rows with
 * the same key in submission order. SQL tables and Redis command families are targets too.
 *
 * @since 0.1.0
 */
import type * as Schema from "effect/Schema"
import type { InvalidRow } from "./BatchFlowError.js"
import { makeCopier } from "./internal/rows/snapshot.js"
import { makeValidator } from "./internal/rows/validate.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/Target")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface Target<A> {
  readonly [TypeId]: TypeId
  /** Used in errors, failures and (later) metric labels. */
  readonly name: string
  /** The row schema; rows are checked against its type side at submit. */
  // biome-ignore lint/suspicious/noExplicitAny: only the type side matters; the encoded side is free
  readonly schema: Schema.Schema<A, any>
  /** The fields that identify a row (for ordering, and for dedupe in backends). May be empty. */
  readonly key: ReadonlyArray<string>
  /**
   * Whether rows with the same key must be committed in submission order when `concurrency > 1`.
   * True by default when the target has a key.
   */
  readonly ordered: boolean
  /**
   * Whether writing the same rows twice leaves the sink as writing them once. An attempt whose
   * outcome is unknown (connection lost mid-write, no answer by the deadline) is retried only for
   * idempotent targets; for the others its rows are reported with reason `unknown_outcome`.
   */
  readonly idempotentWrites: boolean
  /** The row's key as one comparable value, or `undefined` when any key field is null/undefined. */
  readonly keyOf: (row: A) => unknown
  /** `undefined` for a valid row, otherwise the typed error naming the field. */
  readonly validate: (row: unknown) => InvalidRow | undefined
  /**
   * A copy of a valid row as it is now: the flow keeps this copy from `submit` on, so that what it
   * writes is what was validated, whatever the producer does to its object afterwards.
   */
  readonly copy: (row: A) => A
}

/**
 * Any target, whatever its row type.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any {
  readonly [TypeId]: TypeId
  readonly name: string
  readonly key: ReadonlyArray<string>
  readonly ordered: boolean
  readonly idempotentWrites: boolean
  readonly keyOf: (row: never) => unknown
  readonly validate: (row: unknown) => InvalidRow | undefined
  readonly copy: (row: never) => unknown
}

/**
 * The row type of a target.
 *
 * @since 0.1.0
 * @category models
 */
export type Row<T> = T extends Target<infer A> ? A : never

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, I> {
  readonly schema: Schema.Schema<A, I>
  readonly key?: ReadonlyArray<keyof A & string> | undefined
  readonly ordered?: boolean | undefined
  /**
   * Whether the sink's writes are idempotent (e.g. upserts by `key`): then an attempt whose outcome
   * is unknown is retried. Default false: such rows are reported as `unknown_outcome` instead.
   */
  readonly idempotentWrites?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTarget = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * Makes a target. Rows are grouped by target identity, so define each target once and reuse it.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Target } from "effect-batchflow"
 *
 * const Events = Target.make("events", {
 *   schema: Schema.Struct({ id: Schema.Number, name: Schema.String }),
 *   key: ["id"]
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, I>(name: string, options: Options<A, I>): Target<A> => {
  const key: ReadonlyArray<string> = options.key ?? []
  return {
    [TypeId]: TypeId,
    name,
    schema: options.schema,
    key,
    ordered: options.ordered ?? key.length > 0,
    idempotentWrites: options.idempotentWrites ?? false,
    keyOf: keyFunction<A>(key),
    validate: makeValidator(name, options.schema as never),
    copy: makeCopier(options.schema)
  }
}

/**
 * Builds the key extractor of a target: one field is used as is; several fields are combined into
 * a string that keeps types apart (`1` and `"1"` are different keys).
 *
 * @since 0.1.0
 * @category utils
 */
export const keyFunction = <A>(fields: ReadonlyArray<string>): ((row: A) => unknown) => {
  if (fields.length === 0) return () => undefined
  if (fields.length === 1) {
    const field = fields[0]!
    return (row) => {
      const value = (row as Record<string, unknown>)[field]
      return value === null ? undefined : value
    }
  }
  return (row) => {
    let out = ""
    for (const field of fields) {
      const value = (row as Record<string, unknown>)[field]
      if (value === null || value === undefined) return undefined
      out += typeof value === "string" ? `s${value.length}:${value}` : `${typeof value}:${String(value)};`
    }
    return out
  }
}
