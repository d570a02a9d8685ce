/**
 * Redis through ioredis 6: a scoped `RedisClient`, Redis targets (a generic command target and
 * typed helpers), and an executor that writes each batch as one pipeline (or one MULTI/EXEC), reads
 * every command's own reply, retries only the failed commands, and never re-sends a non-idempotent
 * command that may have been applied. See docs/guides/redis.md.
 *
 * @since 0.1.0
 */

import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Redis as IORedis } from "ioredis"
import * as BatchExecutor from "./BatchExecutor.js"
import * as BatchFlow from "./BatchFlow.js"
import * as BatchFlowConfig from "./BatchFlowConfig.js"
import type { BatchFlowConfigError } from "./BatchFlowError.js"
import * as client from "./internal/redis/client.js"
import * as errors from "./internal/redis/errors.js"
import * as internal from "./internal/redis/executor.js"
import * as helpers from "./internal/redis/helpers.js"
import * as targets from "./internal/redis/targets.js"
import type * as Retry from "./Retry.js"

export type { ClientOptions } from "./internal/redis/client.js"
export type { Stats } from "./internal/redis/executor.js"
export type {
  DelRow,
  ExpireRow,
  HashValue,
  IncrByRow,
  SetRow,
  XAddRow,
  ZAddRow
} from "./internal/redis/helpers.js"
export type { Command, CommandRow, CommonOptions, Fusion, RedisTarget } from "./internal/redis/targets.js"

// ---------------------------------------------------------------- errors and classification

/**
 * @since 0.1.0
 * @category errors
 */
export const RedisCommandError: typeof errors.RedisCommandError = errors.RedisCommandError

/**
 * @since 0.1.0
 * @category errors
 */
export type RedisCommandError = errors.RedisCommandError

/**
 * @since 0.1.0
 * @category errors
 */
export const RedisConnectionError: typeof errors.RedisConnectionError = errors.RedisConnectionError

/**
 * @since 0.1.0
 * @category errors
 */
export type RedisConnectionError = errors.RedisConnectionError

/**
 * Classifies a Redis error: LOADING, BUSY, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, READONLY and connection
 * errors are retryable; WRONGTYPE, syntax and argument errors (and any other reply) are not. Reasons
 * are lower-case codes (`loading`, `wrongtype`, `syntax`, `argument`, `connection`, `timeout`, …).
 * Answers `undefined` for errors that do not come from Redis or its client.
 *
 * @since 0.1.0
 * @category classification
 */
export const classify: Retry.Rule = errors.classifyError

// ---------------------------------------------------------------- client

/**
 * The client service: an ioredis connection owned by a scope.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisClientService {
  /**
   * The connection. It never re-sends unanswered commands after a reconnect and does not queue
   * commands while disconnected (they fail at once), so a write's outcome is always known or known
   * to be unknown.
   */
  readonly redis: IORedis
  /** `host:port`, for messages. */
  readonly address: string
  /** @internal */
  readonly connection: client.Connection
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RedisClient extends Context.Tag("effect-batchflow/Redis/RedisClient")<
  RedisClient,
  RedisClientService
>() {}

/**
 * Connects (failing with `RedisConnectionError` when Redis cannot be reached) and closes the
 * connection when the scope closes (QUIT, then disconnect).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeClient: (
  options?: client.ClientOptions
) => Effect.Effect<RedisClientService, RedisConnectionError, Scope.Scope> = client.make

/**
 * A `RedisClient` layer from options (default `redis://127.0.0.1:6379`, db 0).
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import * as Redis from "effect-batchflow/Redis"
 *
 * const ClientLive = Redis.layerClient({ url: "redis://127.0.0.1:6379", db: 2, password: Redacted.make("s3cret") })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (options?: client.ClientOptions): Layer.Layer<RedisClient, RedisConnectionError> =>
  Layer.scoped(RedisClient, client.make(options))

/**
 * Client options from Effect `Config`: `BATCHFLOW_REDIS_URL` (redacted, default
 * `redis://127.0.0.1:6379`), `BATCHFLOW_REDIS_PASSWORD` (redacted) and `BATCHFLOW_REDIS_DB`.
 *
 * @since 0.1.0
 * @category config
 */
export const clientConfig = client.config

/**
 * A `RedisClient` layer with options read from `Config` (by default `clientConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClientConfig = (
  config = clientConfig
): Layer.Layer<RedisClient, RedisConnectionError | ConfigError.ConfigError> =>
  Layer.scoped(RedisClient, Effect.flatMap(config, client.make))

// ---------------------------------------------------------------- targets

/**
 * A generic command target: each row `{ cmd, key, args }` is sent as `cmd key ...args` (the key
 * prefixed). Idempotency comes from `idempotent` or, by default, from a table of known idempotent
 * commands (SET, HSET, DEL, EXPIRE, ZADD, SADD, …); any other command is treated as not idempotent.
 * Use one generic target for mixed commands on the same keys: order is kept per target.
 *
 * @since 0.1.0
 * @category targets
 */
export const command = targets.command

/**
 * `SET key value`, with an optional TTL (`PX`), `NX` / `XX` condition or `KEEPTTL`. Idempotent.
 * Plain SETs (no option) of one batch are fused into one `MSET`.
 *
 * @example
 * ```ts
 * import * as Redis from "effect-batchflow/Redis"
 *
 * const Sessions = Redis.set("sessions", { prefix: "session:", ttl: "30 minutes" })
 * // flow.submit(Sessions, { key: "abc", value: "user-1" }) → SET session:abc user-1 PX 1800000
 * ```
 *
 * @since 0.1.0
 * @category targets
 */
export const set = helpers.set

/**
 * A row becomes a hash: `HSET key field value …` with every field of the row except the key field
 * (`null` / `undefined` fields are skipped), then `PEXPIRE` when `ttl` is set. Idempotent. Coalesce
 * with `"mergePresent"` to merge partial rows of one key.
 *
 * @since 0.1.0
 * @category targets
 */
export const hset = helpers.hset

/**
 * `INCRBY key by`. Not idempotent: never re-sent after it may have been applied. `coalesce: "sum"`
 * adds up the increments of one key in a batch.
 *
 * @since 0.1.0
 * @category targets
 */
export const incrBy = helpers.incrBy

/**
 * `ZADD key [NX|XX|GT|LT] score member`. Idempotent. Rows of one key in a batch are fused into one ZADD.
 *
 * @since 0.1.0
 * @category targets
 */
export const zadd = helpers.zadd

/**
 * `XADD key [MAXLEN ~ n] id|* field value …`. Idempotent only with an explicit `id`.
 *
 * @since 0.1.0
 * @category targets
 */
export const xadd = helpers.xadd

/**
 * `PEXPIRE key ttlMillis [NX|XX|GT|LT]`. Idempotent (a re-send restarts the TTL).
 *
 * @since 0.1.0
 * @category targets
 */
export const expire = helpers.expire

/**
 * `DEL key` (or `UNLINK` with `unlink: true`). Idempotent. A batch is fused into one multi-key command.
 *
 * @since 0.1.0
 * @category targets
 */
export const del = helpers.del

/**
 * @since 0.1.0
 * @category refinements
 */
export const isRedisTarget = targets.isRedisTarget

// ---------------------------------------------------------------- executor and flow

/**
 * @since 0.1.0
 * @category models
 */
export interface ExecutorOptions {
  /** Send every batch as MULTI/EXEC (targets may override). Default false. */
  readonly transaction?: boolean | undefined
  /** Fuse commands where the final state is the same (SET → MSET, DEL, ZADD of one key). Default true. */
  readonly fusion?: boolean | undefined
  /** Prefix of the marker keys written inside transactions. Default `"batchflow:tx:"`. */
  readonly markerPrefix?: string | undefined
  /** Lifetime of a transaction marker key. Default 600 s. */
  readonly markerTtlSeconds?: number | undefined
}

/**
 * The Redis executor: a `BatchExecutor` with counters.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisExecutor extends BatchExecutor.BatchExecutor {
  readonly stats: Effect.Effect<internal.Stats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const RedisExecutor: Context.Tag<RedisExecutor, RedisExecutor> = Context.GenericTag<RedisExecutor>(
  "effect-batchflow/Redis/RedisExecutor"
)

/**
 * Makes the Redis executor. Its per-command retries use `retry` (the flow's retry settings when made
 * by `layer`). When some commands fail, a call succeeds with a `BatchExecutor.Partial` naming the
 * rows not written, each with its `RedisCommandError`; the other rows were written exactly once.
 * Calling it again with the same rows array continues the earlier call instead of writing again:
 * that keeps an engine retry after a per-attempt timeout from re-applying commands.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExecutor = (
  options: ExecutorOptions & { readonly retry?: BatchFlowConfig.Options["retry"] } = {}
): Effect.Effect<RedisExecutor, BatchFlowConfigError, RedisClient> =>
  Effect.gen(function* () {
    const { connection } = yield* RedisClient
    const config = yield* BatchFlowConfig.make({ retry: options.retry })
    return executorWith(connection, options, config.retry)
  })

const executorWith = (
  connection: client.Connection,
  options: ExecutorOptions,
  retry: BatchFlowConfig.RetryOptions
): RedisExecutor =>
  internal.make(connection, {
    transaction: options.transaction ?? false,
    fusion: options.fusion ?? true,
    retry,
    markerPrefix: options.markerPrefix ?? "batchflow:tx:",
    markerTtlSeconds: options.markerTtlSeconds ?? 600
  })

/** The flow's executor for every Redis target, made by `make`. */
const forRedisTargets = <E, R>(
  make: (config: BatchFlowConfig.BatchFlowConfig) => Effect.Effect<RedisExecutor, E, R>
): BatchExecutor.Executor<E, R> => BatchExecutor.makeExecutor({ name: "redis", accepts: isRedisTarget, make })

/**
 * The executor of a flow that writes every Redis target (`set`, `hset`, `command`, …) through the
 * `RedisClient`: give it to `BatchFlow.layer({ executors: [...] })`, beside executors of other
 * backends. Its per-command retries use the flow's retry settings.
 *
 * @since 0.1.0
 * @category executors
 */
export const executor = (options: ExecutorOptions = {}): BatchExecutor.Executor<never, RedisClient> =>
  forRedisTargets((config) =>
    Effect.map(RedisClient, ({ connection }) => executorWith(connection, options, config.retry))
  )

/**
 * Flow and executor options together.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends BatchFlowConfig.Options, ExecutorOptions {}

/**
 * A BatchFlow writing to Redis, and its `RedisExecutor` (for counters). Needs a `RedisClient`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { BatchFlow } from "effect-batchflow"
 * import * as Redis from "effect-batchflow/Redis"
 *
 * const Users = Redis.set("users", { prefix: "user:" })
 * const FlowLive = Redis.layer({ flushSize: 500, flushInterval: "20 millis" }).pipe(
 *   Layer.provide(Redis.layerClientConfig())
 * )
 * const program = Effect.gen(function* () {
 *   const flow = yield* BatchFlow.BatchFlow
 *   yield* flow.submit(Users, { key: "1", value: "alice" })
 * })
 * Effect.runPromise(program.pipe(Effect.provide(FlowLive)))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BatchFlow.BatchFlow | RedisExecutor, BatchFlowConfigError, RedisClient> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const redisExecutor = yield* makeExecutor(options)
      const flow = yield* BatchFlow.make({
        ...options,
        executors: [forRedisTargets(() => Effect.succeed(redisExecutor))]
      })
      return Context.make(BatchFlow.BatchFlow, flow).pipe(Context.add(RedisExecutor, redisExecutor))
    })
  )

/**
 * Like `layer`, with the flow's options read from `Config` (by default `BatchFlowConfig.config`, the
 * `BATCHFLOW_*` environment variables).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: ExecutorOptions = {},
  config: Config.Config<BatchFlowConfig.Options> = BatchFlowConfig.config
): Layer.Layer<
  BatchFlow.BatchFlow | RedisExecutor,
  BatchFlowConfigError | ConfigError.ConfigError,
  RedisClient
> => Layer.unwrapEffect(Effect.map(config, (flowOptions) => layer({ ...flowOptions, ...options })))

/**
 * The executor alone, as the `BatchExecutor` service (and `RedisExecutor`).
 *
 * @deprecated Give the flow `executors: [executor(options)]` instead.
 * @since 0.1.0
 * @category layers
 */
export const layerExecutor = (
  options: ExecutorOptions & { readonly retry?: BatchFlowConfig.Options["retry"] } = {}
): Layer.Layer<BatchExecutor.BatchExecutor | RedisExecutor, BatchFlowConfigError, RedisClient> =>
  Layer.effectContext(
    Effect.map(makeExecutor(options), (e) =>
      Context.make(BatchExecutor.BatchExecutor, e as BatchExecutor.BatchExecutor).pipe(
        Context.add(RedisExecutor, e)
      )
    )
  )
