/**
 * In-batch coalescing by key for non-SQL targets: when one batch holds several rows with the same
 * key, keep the first, keep the last, merge the fields present in the later rows, or combine them
 * with a function (e.g. sum increments). Output rows keep the position of each key's first
 * occurrence, and every output row knows which input rows it stands for, so a failure of the
 * coalesced write is reported for all of them. Counts in and out are returned with every result.
 *
 * Coalescing is only correct when applying the coalesced row gives the same final state as applying
 * the rows one after the other: keep-last for overwrites (`SET`), merge-present for hash fields
 * (`HSET`), keep-first for "only if absent" writes (`SET … NX`), a sum for increments.
 *
 * @since 0.1.0
 */
import { keyFunction } from "./Target.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/Coalesce")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * - `keepFirst`: later rows with the same key are dropped.
 * - `keepLast`: the last row wins; it takes the place of the first.
 * - `mergePresent`: each later row overwrites the fields it has (value not `undefined`).
 * - `combine`: a function folds each later row into the kept one.
 *
 * @since 0.1.0
 * @category models
 */
export type Strategy = "keepFirst" | "keepLast" | "mergePresent" | "combine"

/**
 * How rows are keyed: field names (combined type-sensitively, as target keys are) or a function.
 * Rows whose key is `null` or `undefined` are never coalesced.
 *
 * @since 0.1.0
 * @category models
 */
export type Key<A> = ReadonlyArray<keyof A & string> | ((row: A) => unknown)

/**
 * @since 0.1.0
 * @category models
 */
export interface Coalescer<A> {
  readonly [TypeId]: TypeId
  readonly strategy: Strategy
  readonly keyOf: (row: A) => unknown
  /** Folds a later row into the kept one (for `keepFirst` it returns the kept row unchanged). */
  readonly fold: (kept: A, later: A) => A
}

/**
 * The result of coalescing one batch.
 *
 * @since 0.1.0
 * @category models
 */
export interface Result<A> {
  /** The coalesced rows, in the order of each key's first occurrence. */
  readonly rows: ReadonlyArray<A>
  /**
   * For each output row, the input positions it stands for (ascending). `undefined` when nothing
   * was coalesced: then output row i is input row i.
   */
  readonly sources: ReadonlyArray<ReadonlyArray<number>> | undefined
  /** Rows in. */
  readonly in: number
  /** Rows out. */
  readonly out: number
  /** Rows dropped or replaced (`keepFirst`, `keepLast`). */
  readonly deduplicated: number
  /** Rows folded into an earlier one (`mergePresent`, `combine`). */
  readonly merged: number
}

const make = <A>(strategy: Strategy, key: Key<A>, fold: (kept: A, later: A) => A): Coalescer<A> => ({
  [TypeId]: TypeId,
  strategy,
  keyOf: typeof key === "function" ? key : keyFunction<A>(key as ReadonlyArray<string>),
  fold
})

/**
 * Keeps the first row of each key; later ones are dropped.
 *
 * @since 0.1.0
 * @category constructors
 */
export const keepFirst = <A>(key: Key<A>): Coalescer<A> => make("keepFirst", key, (kept) => kept)

/**
 * Keeps the last row of each key, at the position of the first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const keepLast = <A>(key: Key<A>): Coalescer<A> => make("keepLast", key, (_, later) => later)

/**
 * Merges rows of the same key: each later row overwrites the fields it has (a field is present when
 * its value is not `undefined`; `null` is a value, unless `nullIsAbsent`). With `fields`, only those
 * fields are merged. Use `nullIsAbsent` when the sink skips `null` fields, as `Redis.hset` does (its
 * `coalesce: "mergePresent"` sets it): a later `null` must then not erase an earlier value that the
 * uncoalesced writes would have kept.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mergePresent = <A>(
  key: Key<A>,
  fields?: ReadonlyArray<keyof A & string>,
  options?: { readonly nullIsAbsent?: boolean | undefined }
): Coalescer<A> => {
  const nullIsAbsent = options?.nullIsAbsent === true
  return make("mergePresent", key, (kept, later) => {
    const out: Record<string, unknown> = { ...(kept as Record<string, unknown>) }
    const source = later as Record<string, unknown>
    for (const field of fields ?? Object.keys(source)) {
      const value = source[field]
      if (value !== undefined && !(nullIsAbsent && value === null)) out[field] = value
    }
    return out as A
  })
}

/**
 * Folds rows of the same key with a function, e.g. summing increments:
 * `Coalesce.combine(["key"], (a, b) => ({ key: a.key, by: a.by + b.by }))`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const combine = <A>(key: Key<A>, f: (kept: A, later: A) => A): Coalescer<A> => make("combine", key, f)

/**
 * A coalescer for one of the named strategies (`combine` needs a function: use `combine`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStrategy = <A>(
  strategy: "keepFirst" | "keepLast" | "mergePresent",
  key: Key<A>
): Coalescer<A> =>
  strategy === "keepFirst" ? keepFirst(key) : strategy === "keepLast" ? keepLast(key) : mergePresent(key)

/**
 * @since 0.1.0
 * @category refinements
 */
export const isCoalescer = (u: unknown): u is Coalescer<unknown> =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Coalesces one batch. Returns the input array itself (and `sources: undefined`) when no two rows
 * share a key.
 *
 * @since 0.1.0
 * @category combinators
 */
export const apply = <A>(coalescer: Coalescer<A>, rows: ReadonlyArray<A>): Result<A> => {
  const count = rows.length
  const unchanged: Result<A> = { rows, sources: undefined, in: count, out: count, deduplicated: 0, merged: 0 }
  if (count < 2) return unchanged
  const positions = new Map<unknown, number>()
  let out: Array<A> | undefined
  let sources: Array<Array<number>> | undefined
  for (let i = 0; i < count; i++) {
    const row = rows[i]!
    const key = coalescer.keyOf(row)
    const seen = key === undefined || key === null ? undefined : positions.get(key)
    if (seen === undefined) {
      if (key !== undefined && key !== null) positions.set(key, out === undefined ? i : out.length)
      if (out !== undefined) {
        out.push(row)
        sources!.push([i])
      }
      continue
    }
    if (out === undefined) {
      // First duplicate: materialise the output so far (rows 0..i-1 are all distinct).
      out = rows.slice(0, i)
      sources = out.map((_, j) => [j])
    }
    out[seen] = coalescer.fold(out[seen]!, row)
    sources![seen]!.push(i)
  }
  if (out === undefined) return unchanged
  const folded = count - out.length
  const dedupe = coalescer.strategy === "keepFirst" || coalescer.strategy === "keepLast"
  return {
    rows: out,
    sources,
    in: count,
    out: out.length,
    deduplicated: dedupe ? folded : 0,
    merged: dedupe ? 0 : folded
  }
}
