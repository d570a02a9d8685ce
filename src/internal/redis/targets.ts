/**
 * Redis targets: how a row becomes Redis commands, whether re-sending them is safe, how a batch of
 * them fuses into fewer commands, and how rows of the same key coalesce. All pure. The typed
 * helpers (set, hset, …) are in helpers.ts.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import * as Coalesce from "../../Coalesce.js"
import * as Target from "../../Target.js"
import type { Arg } from "./client.js"

/** @internal */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/Redis/Target") as never

/** @internal */
export type TypeId = typeof TypeId

/**
 * One Redis command: its name and its arguments (the key first, for keyed commands).
 *
 * @since 0.1.0
 * @category models
 */
export interface Command {
  readonly name: string
  readonly args: ReadonlyArray<Arg>
}

/**
 * How a batch of one target's rows may be written with fewer commands and the same final state.
 * - `none`: one command (or more) per row.
 * - `multi`: one command for all rows, each row appending its arguments (`MSET`, `DEL`, `UNLINK`).
 * - `sameKey`: one command per key, each row appending its arguments (`ZADD key … score member …`).
 *
 * `append` pushes a row's arguments onto the command's one argument array (no array per row).
 *
 * @since 0.1.0
 * @category models
 */
export type Fusion<A> =
  | { readonly kind: "none" }
  | {
      readonly kind: "multi"
      readonly name: string
      readonly append: (row: A, args: Array<Arg>) => void
    }
  | {
      readonly kind: "sameKey"
      readonly name: string
      readonly head: (row: A) => ReadonlyArray<Arg>
      readonly append: (row: A, args: Array<Arg>) => void
    }

/**
 * A Redis target: a `Target` whose rows become Redis commands.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisTarget<A> extends Target.Target<A> {
  readonly [TypeId]: TypeId
  /** The Redis key a row writes (prefix included). Same-key rows keep their order. */
  readonly redisKey: (row: A) => string
  /** The commands a row becomes, in order (usually one; none when there is nothing to write). */
  readonly toCommands: (row: A) => ReadonlyArray<Command>
  /** `toCommands` with the row's `redisKey` already computed. */
  readonly commandsFor: (row: A, key: string) => ReadonlyArray<Command>
  /**
   * Whether sending a row's commands again after they may have been applied leaves the same state.
   * A non-idempotent command whose answer was lost is reported, never re-sent.
   */
  readonly idempotent: (row: A) => boolean
  readonly fusion: Fusion<A>
  /** In-batch coalescing by key, if any. */
  readonly coalesce: Coalesce.Coalescer<A> | undefined
  /** Overrides the executor's `transaction` setting for this target. */
  readonly transaction: boolean | undefined
}

/** @internal */
export const isRedisTarget = (u: unknown): u is RedisTarget<unknown> =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Options shared by every Redis target.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommonOptions<A> {
  /** Prepended to every key, e.g. `"session:"`. */
  readonly prefix?: string | undefined
  /** In-batch coalescing by key: a strategy name (keyed by the target's key) or a `Coalescer`. */
  readonly coalesce?: "keepFirst" | "keepLast" | "mergePresent" | Coalesce.Coalescer<A> | undefined
  /** Keep same-key rows in submission order with `concurrency > 1`. Default true. */
  readonly ordered?: boolean | undefined
  /** Send this target's batches as MULTI/EXEC (overrides the executor's `transaction`). */
  readonly transaction?: boolean | undefined
}

interface Spec<A, I> extends CommonOptions<A> {
  readonly schema: Schema.Schema<A, I>
  readonly keyField: keyof A & string
  readonly toCommands: (row: A, key: string) => ReadonlyArray<Command>
  readonly idempotent: (row: A) => boolean
  readonly fusion?: Fusion<A> | undefined
}

/** @internal */
export const make = <A, I>(name: string, spec: Spec<A, I>): RedisTarget<A> => {
  const base = Target.make(name, {
    schema: spec.schema,
    key: [spec.keyField],
    ordered: spec.ordered ?? true
  })
  const prefix = spec.prefix ?? ""
  const field = spec.keyField
  const redisKey = (row: A): string => prefix + String(row[field])
  const coalesce =
    spec.coalesce === undefined
      ? undefined
      : typeof spec.coalesce === "string"
        ? Coalesce.fromStrategy<A>(spec.coalesce, [field])
        : spec.coalesce
  return {
    ...base,
    [TypeId]: TypeId,
    redisKey,
    toCommands: (row) => spec.toCommands(row, redisKey(row)),
    commandsFor: spec.toCommands,
    idempotent: spec.idempotent,
    fusion: spec.fusion ?? { kind: "none" },
    coalesce,
    transaction: spec.transaction
  }
}

/** @internal */
export const always = (): boolean => true

/** @internal */
export const never = (): boolean => false

/** @internal */
export const ttlMillis = (ttl: Duration.DurationInput): number => {
  const ms = Math.round(Duration.toMillis(Duration.decode(ttl)))
  if (!(ms > 0) || !Number.isFinite(ms))
    throw new Error(`a Redis TTL must be finite and > 0 (got ${String(ttl)})`)
  return ms
}

// ---------------------------------------------------------------- generic command

/**
 * Commands known to be idempotent (sending them twice leaves the state of sending them once). Any
 * other command is treated as not idempotent unless the target says otherwise.
 */
// biome-ignore format: a table
const idempotentCommands = new Set([
  "SET", "SETNX", "SETEX", "PSETEX", "MSET", "MSETNX", "SETRANGE", "SETBIT", "GETSET",
  "HSET", "HMSET", "HSETNX", "HDEL",
  "DEL", "UNLINK", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST",
  "SADD", "SREM", "ZADD", "ZREM", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX",
  "GEOADD", "PFADD", "LSET", "LREM", "LTRIM", "XDEL", "XTRIM", "COPY", "JSON.SET", "JSON.DEL"
])

/**
 * Whether a command is idempotent by the built-in table. `ZADD … INCR` is not.
 *
 * @internal
 */
export const isIdempotentCommand = (name: string, args: ReadonlyArray<Arg> = []): boolean => {
  const upper = name.toUpperCase()
  if (!idempotentCommands.has(upper)) return false
  if (upper === "ZADD") return !args.some((a) => typeof a === "string" && a.toUpperCase() === "INCR")
  return true
}

/**
 * A row of a generic command target: `cmd key args…`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommandRow {
  readonly cmd: string
  readonly key: string
  readonly args?: ReadonlyArray<string | number> | undefined
}

const CommandRow: Schema.Schema<CommandRow> = Schema.Struct({
  cmd: Schema.String,
  key: Schema.String,
  args: Schema.optional(Schema.Array(Schema.Union(Schema.String, Schema.Number)))
})

/** @internal */
export const command = (
  name: string,
  options: CommonOptions<CommandRow> & {
    readonly idempotent?: boolean | ((row: CommandRow) => boolean) | undefined
  } = {}
): RedisTarget<CommandRow> => {
  const idempotent =
    typeof options.idempotent === "function"
      ? options.idempotent
      : options.idempotent === undefined
        ? (row: CommandRow) => isIdempotentCommand(row.cmd, row.args)
        : options.idempotent
          ? always
          : never
  return make(name, {
    ...options,
    schema: CommandRow,
    keyField: "key",
    toCommands: (row, key) => [{ name: row.cmd, args: row.args === undefined ? [key] : [key, ...row.args] }],
    idempotent
  })
}
