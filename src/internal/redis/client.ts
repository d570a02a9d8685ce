/**
 * The ioredis connection behind `RedisClient`, set up so that a batch writer can tell what happened
 * to every command it sent:
 *
 * - `autoResendUnfulfilledCommands: false`: ioredis would otherwise re-send, after a reconnect, the
 *   commands that were sent but not answered, which applies a non-idempotent command twice.
 * - `enableOfflineQueue: false`: a command issued while disconnected fails at once ("not sent")
 *   instead of waiting in a queue where it may or may not be sent later.
 *
 * With resending off, ioredis drops (never settles) a pipeline that got no answer at all before the
 * connection closed. So every pipeline is tracked, and when the connection closes, the ones still
 * unsettled are settled here with `ConnectionLost`: sent, outcome unknown.
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import { ConnectionLost, RedisConnectionError } from "./errors.js"

/** @internal */
export type Arg = string | number | Buffer

/**
 * A command as sent. `wire` is the name in lower case: ioredis looks every command name up in its
 * tables (flags, argument transformers) in lower case and lower-cases any other name first, a string
 * allocation per command.
 *
 * @internal
 */
export interface WireCommand {
  readonly wire: string
  readonly args: ReadonlyArray<Arg>
}

/** `[error, value]`, as ioredis reports each command of a pipeline. @internal */
export type Reply = readonly [error: unknown, value: unknown]

/** @internal */
export type TxReply =
  | { readonly _tag: "exec"; readonly replies: ReadonlyArray<Reply> }
  | { readonly _tag: "error"; readonly error: unknown }

/** @internal */
export interface Connection {
  /**
   * Sends one command (no pipeline: a batch fused into one command needs none). Never rejects:
   * resolves with `undefined` when Redis answered without an error, otherwise with the error, as
   * a pipeline would report it for that command.
   */
  readonly command: (command: WireCommand) => Promise<unknown>
  /** Sends the commands as one pipeline. Never rejects: every command gets its own reply. */
  readonly pipeline: (commands: ReadonlyArray<WireCommand>) => Promise<ReadonlyArray<Reply>>
  /** Sends MULTI, the commands, `SET marker 1 EX ttl`, EXEC. Never rejects. */
  readonly transaction: (
    commands: ReadonlyArray<WireCommand>,
    marker: string,
    markerTtlSeconds: number
  ) => Promise<TxReply>
  /** Waits until the connection is ready (at most `millis`); false if it did not come back. */
  readonly awaitReady: (millis: number) => Promise<boolean>
  /** How long a retry waits for a lost connection to come back. */
  readonly reconnectWaitMillis: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). Default `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Overrides the URL's host. */
  readonly host?: string | undefined
  /** Overrides the URL's port. */
  readonly port?: number | undefined
  /** Database number. Overrides the URL's. Default 0. */
  readonly db?: number | undefined
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  /** Limit for establishing the connection. Default 10 s. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * Limit for each command's answer. A command that times out may have been applied (its outcome is
   * unknown). Default none: the flow's per-attempt `timeout` bounds each write.
   */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** How long a retry waits for a lost connection to come back. Default 5 s. */
  readonly reconnectWait?: Duration.DurationInput | undefined
  /** RESP protocol: 3 (ioredis 6 default) or 2 (for servers older than Redis 6). */
  readonly protocol?: 2 | 3 | undefined
  /**
   * Further ioredis options (TLS, retryStrategy, keepAlive…). `lazyConnect`,
   * `autoResendUnfulfilledCommands` and `enableOfflineQueue` are always set by the client.
   */
  readonly ioredis?: RedisOptions | undefined
}

/** @internal */
export interface Service {
  readonly redis: Redis
  readonly address: string
  readonly connection: Connection
}

const defaultUrl = "redis://127.0.0.1:6379"

interface Endpoint {
  readonly host: string
  readonly port: number
  readonly db: number
  readonly tls: boolean
  readonly username: string | undefined
  readonly password: string | undefined
}

/** Resolves the URL and the explicit options (which win) into one endpoint. */
const endpointOf = (url: string, options: ClientOptions): Endpoint | undefined => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return undefined
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") return undefined
  const path = parsed.pathname.replace(/^\//, "")
  const db = options.db ?? (path === "" ? 0 : Number(path))
  if (!Number.isSafeInteger(db) || db < 0) return undefined
  return {
    host: options.host ?? (parsed.hostname === "" ? "127.0.0.1" : parsed.hostname.replace(/^\[|\]$/g, "")),
    port: options.port ?? (parsed.port === "" ? 6379 : Number(parsed.port)),
    db,
    tls: parsed.protocol === "rediss:",
    username: options.username ?? (parsed.username === "" ? undefined : decodeURIComponent(parsed.username)),
    password:
      options.password !== undefined
        ? Redacted.value(options.password)
        : parsed.password === ""
          ? undefined
          : decodeURIComponent(parsed.password)
  }
}

const millis = (input: Duration.DurationInput | undefined): number | undefined =>
  input === undefined ? undefined : Duration.toMillis(Duration.decode(input))

const unrefSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref())

/** @internal */
export const make = (
  options: ClientOptions = {}
): Effect.Effect<Service, RedisConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    const url =
      options.url === undefined
        ? defaultUrl
        : Redacted.isRedacted(options.url)
          ? Redacted.value(options.url)
          : options.url
    const endpoint = endpointOf(url, options)
    if (endpoint === undefined) {
      return yield* Effect.acquireRelease(
        Effect.fail(
          new RedisConnectionError({
            address: "(invalid url)",
            cause: new Error("the Redis URL must look like redis://[user:password@]host:port[/db]")
          })
        ),
        () => Effect.void
      )
    }
    const address = `${endpoint.host}:${endpoint.port}`
    const redisOptions: RedisOptions = {
      ...(endpoint.tls ? { tls: {} } : {}),
      ...options.ioredis,
      host: endpoint.host,
      port: endpoint.port,
      db: endpoint.db,
      ...(endpoint.username === undefined ? {} : { username: endpoint.username }),
      ...(endpoint.password === undefined ? {} : { password: endpoint.password }),
      ...(options.protocol === undefined ? {} : { protocol: options.protocol }),
      ...(options.connectTimeout === undefined ? {} : { connectTimeout: millis(options.connectTimeout)! }),
      ...(options.commandTimeout === undefined ? {} : { commandTimeout: millis(options.commandTimeout)! }),
      lazyConnect: true,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false
    }
    const runtime = yield* Effect.runtime<never>()
    // Reconnect only after a first successful connection, and never after release: a failed first
    // connection fails the layer at once, and a released client leaves no timer behind.
    const lifecycle = { connected: false, released: false }
    const userRetry = options.ioredis?.retryStrategy
    redisOptions.retryStrategy = (times) =>
      !lifecycle.connected || lifecycle.released
        ? null
        : typeof userRetry === "function"
          ? userRetry(times)
          : Math.min(50 * 2 ** (times - 1), 5000) + Math.floor(Math.random() * 200)
    return yield* Effect.acquireRelease(
      Effect.async<Service, RedisConnectionError>((resume) => {
        // ioredis' option types do not allow `undefined` under exactOptionalPropertyTypes.
        const redis = new Redis(redisOptions as RedisOptions & { replyMapping: "legacy" })
        let lastError: unknown
        redis.on("error", (error: Error) => {
          lastError = error
          if (lifecycle.connected && !lifecycle.released) {
            Runtime.runFork(runtime)(
              Effect.logWarning(`Redis connection error: ${error.message}`).pipe(
                Effect.annotateLogs({ address })
              )
            )
          }
        })
        redis.connect().then(
          () => {
            lifecycle.connected = true
            resume(Effect.succeed({ redis, address, connection: track(redis, options) }))
          },
          (error: unknown) => {
            lifecycle.released = true
            redis.disconnect()
            resume(Effect.fail(new RedisConnectionError({ address, cause: redact(lastError ?? error) })))
          }
        )
      }),
      ({ redis }) =>
        Effect.promise(async () => {
          lifecycle.released = true
          if (redis.status !== "end") {
            const ended = new Promise<void>((resolve) => redis.once("end", () => resolve()))
            if (redis.status === "ready") {
              await Promise.race([redis.quit().catch(() => undefined), unrefSleep(2000)])
            }
            redis.disconnect()
            await Promise.race([ended, unrefSleep(2000)])
          }
          redis.removeAllListeners()
        })
    )
  })

/**
 * Keeps only the message and code of a connection error: ioredis attaches the failed command to
 * reply errors, and for the handshake that is `HELLO 3 AUTH user password`.
 */
const redact = (error: unknown): Error => {
  if (!(error instanceof Error)) return new Error(String(error))
  const out = new Error(error.message)
  out.name = error.name
  const code = (error as { code?: unknown }).code
  if (code !== undefined) Object.assign(out, { code })
  return out
}

interface Pending {
  readonly epoch: number
  readonly lose: () => void
}

const track = (redis: Redis, options: ClientOptions): Connection => {
  const pending = new Set<Pending>()
  let epoch = 0
  redis.on("close", () => {
    const closed = epoch++
    // ioredis settles partly answered pipelines (AbortError) in promise callbacks; let them run
    // first, then settle the pipelines that got no answer at all.
    setImmediate(() => {
      for (const p of pending) if (p.epoch === closed) p.lose()
    })
  })
  const settleOnce = <A>(onLost: () => A, run: (settle: (value: A) => void) => void): Promise<A> =>
    new Promise<A>((resolve) => {
      let done = false
      const entry: Pending = { epoch, lose: () => settle(onLost()) }
      const settle = (value: A) => {
        if (done) return
        done = true
        pending.delete(entry)
        resolve(value)
      }
      pending.add(entry)
      run(settle)
    })

  const answered = (): undefined => undefined

  const command = (c: WireCommand): Promise<unknown> =>
    settleOnce<unknown>(
      () => new ConnectionLost(),
      (settle) => {
        redis
          .call(c.wire, c.args as Array<Arg>)
          .then(answered, (error: unknown) => error ?? new ConnectionLost())
          .then(settle)
      }
    )

  const pipeline = (commands: ReadonlyArray<WireCommand>): Promise<ReadonlyArray<Reply>> =>
    settleOnce(
      () => commands.map((): Reply => [new ConnectionLost(), null]),
      (settle) => {
        const p = redis.pipeline()
        for (let i = 0; i < commands.length; i++) p.call(commands[i]!.wire, commands[i]!.args as Array<Arg>)
        p.exec().then(
          (replies) => settle(replies ?? commands.map((): Reply => [new ConnectionLost(), null])),
          (error: unknown) => settle(commands.map((): Reply => [error, null]))
        )
      }
    )

  const transaction = (
    commands: ReadonlyArray<WireCommand>,
    marker: string,
    markerTtlSeconds: number
  ): Promise<TxReply> =>
    settleOnce(
      (): TxReply => ({ _tag: "error", error: new ConnectionLost() }),
      (settle) => {
        const m = redis.multi()
        for (let i = 0; i < commands.length; i++) m.call(commands[i]!.wire, commands[i]!.args as Array<Arg>)
        m.call("set", [marker, "1", "EX", markerTtlSeconds])
        m.exec().then(
          (replies) =>
            settle(
              replies === null
                ? { _tag: "error", error: new ConnectionLost() }
                : { _tag: "exec", replies: replies.slice(0, commands.length) }
            ),
          (error: unknown) => settle({ _tag: "error", error })
        )
      }
    )

  const awaitReady = (ms: number): Promise<boolean> => {
    if (redis.status === "ready") return Promise.resolve(true)
    if (redis.status === "end") return Promise.resolve(false)
    return new Promise((resolve) => {
      const onReady = () => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        redis.off("ready", onReady)
        resolve(redis.status === "ready")
      }, ms)
      timer.unref()
      redis.once("ready", onReady)
    })
  }

  return {
    command,
    pipeline,
    transaction,
    awaitReady,
    reconnectWaitMillis: millis(options.reconnectWait) ?? 5000
  }
}

const optional = <A>(config: Config.Config<A>) =>
  Config.option(config).pipe(Config.map(Option.getOrUndefined))

/**
 * Reads client options from Effect `Config`: `BATCHFLOW_REDIS_URL` (redacted; default
 * `redis://127.0.0.1:6379`), `BATCHFLOW_REDIS_PASSWORD` (redacted, optional) and
 * `BATCHFLOW_REDIS_DB` (optional).
 *
 * @internal
 */
export const config: Config.Config<ClientOptions> = Config.all({
  url: Config.redacted("BATCHFLOW_REDIS_URL").pipe(
    Config.withDefault(Redacted.make(defaultUrl)),
    Config.withDescription("Redis URL, redis://[user:password@]host:port[/db]")
  ),
  password: optional(
    Config.redacted("BATCHFLOW_REDIS_PASSWORD").pipe(Config.withDescription("Redis password"))
  ),
  db: optional(Config.integer("BATCHFLOW_REDIS_DB").pipe(Config.withDescription("Redis database number")))
})
