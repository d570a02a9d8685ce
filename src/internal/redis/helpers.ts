/**
 * The typed Redis targets: set, hset, incrBy, zadd, xadd, expire, del. Each says which command a row
 * becomes, whether it is idempotent and how a batch of it fuses.
 */
import type * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import * as Coalesce from "../../Coalesce.js"
import type { Arg } from "./client.js"
import {
  always,
  type Command,
  type CommonOptions,
  make,
  never,
  type RedisTarget,
  ttlMillis
} from "./targets.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface SetRow {
  readonly key: string
  readonly value: string | number
}

const SetRow: Schema.Schema<SetRow> = Schema.Struct({
  key: Schema.String,
  value: Schema.Union(Schema.String, Schema.Number)
})

/** @internal */
export const set = (
  name: string,
  options: CommonOptions<SetRow> & {
    readonly ttl?: Duration.DurationInput | undefined
    readonly condition?: "NX" | "XX" | undefined
    readonly keepTtl?: boolean | undefined
  } = {}
): RedisTarget<SetRow> => {
  const extra: Array<Arg> = []
  if (options.ttl !== undefined) extra.push("PX", ttlMillis(options.ttl))
  if (options.condition !== undefined) extra.push(options.condition)
  if (options.keepTtl === true) extra.push("KEEPTTL")
  const plain = extra.length === 0
  const prefix = options.prefix ?? ""
  return make(name, {
    ...options,
    schema: SetRow,
    keyField: "key",
    toCommands: plain
      ? (row, key) => [{ name: "SET", args: [key, row.value] }]
      : (row, key) => [{ name: "SET", args: [key, row.value, ...extra] }],
    idempotent: always,
    // Plain SETs of a batch equal one MSET: same final values (a later SET of a key wins in both),
    // same errors (SET and MSET overwrite a key of any type), and the TTL is cleared in both.
    fusion: plain
      ? {
          kind: "multi",
          name: "MSET",
          append: (row, args) => {
            args.push(prefix + row.key, row.value)
          }
        }
      : undefined
  })
}

/**
 * A hash field value: strings and numbers as they are, booleans as `"true"` / `"false"`; `null` and
 * `undefined` fields are not written.
 *
 * @since 0.1.0
 * @category models
 */
export type HashValue = string | number | bigint | boolean | null | undefined

/** @internal */
export const hset = <A extends { readonly [field: string]: HashValue }, I>(
  name: string,
  options: CommonOptions<A> & {
    readonly schema: Schema.Schema<A, I>
    readonly key: keyof A & string
    readonly ttl?: Duration.DurationInput | undefined
  }
): RedisTarget<A> => {
  const keyField = options.key
  const ttl = options.ttl === undefined ? undefined : ttlMillis(options.ttl)
  return make(name, {
    ...options,
    // HSET skips null fields, so a later null must not erase an earlier value when rows merge.
    coalesce:
      options.coalesce === "mergePresent"
        ? Coalesce.mergePresent<A>([keyField], undefined, { nullIsAbsent: true })
        : options.coalesce,
    keyField,
    toCommands: (row, key) => {
      const args: Array<Arg> = [key]
      for (const field in row) {
        if (field === keyField) continue
        const value = row[field]
        if (value === undefined || value === null) continue
        args.push(field, typeof value === "boolean" || typeof value === "bigint" ? String(value) : value)
      }
      if (args.length === 1) return []
      const hsetCommand: Command = { name: "HSET", args }
      return ttl === undefined ? [hsetCommand] : [hsetCommand, { name: "PEXPIRE", args: [key, ttl] }]
    },
    idempotent: always
  })
}

/**
 * @since 0.1.0
 * @category models
 */
export interface IncrByRow {
  readonly key: string
  readonly by: number
}

const IncrByRow: Schema.Schema<IncrByRow> = Schema.Struct({ key: Schema.String, by: Schema.Int })

/** @internal */
export const incrBy = (
  name: string,
  options: Omit<CommonOptions<IncrByRow>, "coalesce"> & {
    readonly coalesce?: "sum" | Coalesce.Coalescer<IncrByRow> | undefined
  } = {}
): RedisTarget<IncrByRow> =>
  make(name, {
    ...options,
    coalesce:
      options.coalesce === "sum"
        ? Coalesce.combine<IncrByRow>(["key"], (a, b) => ({ key: a.key, by: a.by + b.by }))
        : options.coalesce,
    schema: IncrByRow,
    keyField: "key",
    toCommands: (row, key) => [{ name: "INCRBY", args: [key, row.by] }],
    idempotent: never
  })

/**
 * @since 0.1.0
 * @category models
 */
export interface ZAddRow {
  readonly key: string
  readonly member: string
  readonly score: number
}

const ZAddRow: Schema.Schema<ZAddRow> = Schema.Struct({
  key: Schema.String,
  member: Schema.String,
  score: Schema.Number
})

/** @internal */
export const zadd = (
  name: string,
  options: CommonOptions<ZAddRow> & { readonly condition?: "NX" | "XX" | "GT" | "LT" | undefined } = {}
): RedisTarget<ZAddRow> => {
  const flags: ReadonlyArray<Arg> = options.condition === undefined ? [] : [options.condition]
  const prefix = options.prefix ?? ""
  return make(name, {
    ...options,
    schema: ZAddRow,
    keyField: "key",
    toCommands: (row, key) => [{ name: "ZADD", args: [key, ...flags, row.score, row.member] }],
    idempotent: always,
    // ZADD applies its score/member pairs in order, as separate ZADDs of the same key would.
    fusion: {
      kind: "sameKey",
      name: "ZADD",
      head: (row) => [prefix + row.key, ...flags],
      append: (row, args) => {
        args.push(row.score, row.member)
      }
    }
  })
}

/**
 * A stream entry. Without `id` Redis assigns one (`*`): such an entry is not idempotent, so it is
 * never re-sent after it may have been applied. With an explicit `id`, re-sending is safe.
 *
 * @since 0.1.0
 * @category models
 */
export interface XAddRow {
  readonly key: string
  readonly fields: { readonly [field: string]: string | number }
  readonly id?: string | undefined
}

const XAddRow: Schema.Schema<XAddRow> = Schema.Struct({
  key: Schema.String,
  fields: Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number) }),
  id: Schema.optional(Schema.String)
})

/** @internal */
export const xadd = (
  name: string,
  options: CommonOptions<XAddRow> & {
    /** Trim the stream to about this many entries (`MAXLEN ~ n`). */
    readonly maxLen?: number | undefined
  } = {}
): RedisTarget<XAddRow> => {
  const trim: ReadonlyArray<Arg> = options.maxLen === undefined ? [] : ["MAXLEN", "~", options.maxLen]
  return make(name, {
    ...options,
    schema: XAddRow,
    keyField: "key",
    toCommands: (row, key) => {
      const args: Array<Arg> = [key, ...trim, row.id ?? "*"]
      for (const field in row.fields) args.push(field, row.fields[field]!)
      return [{ name: "XADD", args }]
    },
    idempotent: (row) => row.id !== undefined
  })
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ExpireRow {
  readonly key: string
  readonly ttlMillis: number
}

const ExpireRow: Schema.Schema<ExpireRow> = Schema.Struct({
  key: Schema.String,
  ttlMillis: Schema.Int.pipe(Schema.positive())
})

/** @internal */
export const expire = (
  name: string,
  options: CommonOptions<ExpireRow> & { readonly condition?: "NX" | "XX" | "GT" | "LT" | undefined } = {}
): RedisTarget<ExpireRow> => {
  const flags: ReadonlyArray<Arg> = options.condition === undefined ? [] : [options.condition]
  return make(name, {
    ...options,
    schema: ExpireRow,
    keyField: "key",
    toCommands: (row, key) => [{ name: "PEXPIRE", args: [key, row.ttlMillis, ...flags] }],
    idempotent: always
  })
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DelRow {
  readonly key: string
}

const DelRow: Schema.Schema<DelRow> = Schema.Struct({ key: Schema.String })

/** @internal */
export const del = (
  name: string,
  options: CommonOptions<DelRow> & { readonly unlink?: boolean | undefined } = {}
): RedisTarget<DelRow> => {
  const verb = options.unlink === true ? "UNLINK" : "DEL"
  const prefix = options.prefix ?? ""
  return make(name, {
    ...options,
    schema: DelRow,
    keyField: "key",
    toCommands: (_, key) => [{ name: verb, args: [key] }],
    idempotent: always,
    fusion: {
      kind: "multi",
      name: verb,
      append: (row, args) => {
        args.push(prefix + row.key)
      }
    }
  })
}
