/**
 * Helpers for the Redis tests: a direct ioredis connection for assertions, key cleanup by SCAN (never
 * FLUSHDB/FLUSHALL: the server is shared), and a TCP proxy that can swallow replies and cut
 * connections, to put the executor through connection failures deterministically.
 *
 * Every test file uses its own database number and key prefix. A Redis that is down fails the tests.
 */
import * as net from "node:net"
import { Effect, Layer } from "effect"
import { BatchExecutor } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import { Redis as IORedis } from "ioredis"

export const redisUrl = process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379"

/** A plain ioredis connection to `db`, closed with the scope; fails loudly if Redis is down. */
export const direct = (db: number) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const redis = new IORedis(redisUrl, { db, lazyConnect: true, retryStrategy: () => null })
        redis.on("error", () => undefined)
        await redis.connect()
        return redis
      },
      catch: (cause) =>
        new Error(`Redis is not reachable at ${redisUrl} (tests need it running): ${String(cause)}`)
    }),
    (redis) => Effect.promise(() => redis.quit().catch(() => redis.disconnect()))
  ).pipe(Effect.orDie)

/** Deletes every key matching `pattern` with SCAN + DEL. */
export const deleteKeys = (redis: IORedis, pattern: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    let cursor = "0"
    let deleted = 0
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) deleted += await redis.del(...keys)
    } while (cursor !== "0")
    return deleted
  })

/** Counts keys matching `pattern` with SCAN. */
export const countKeys = (redis: IORedis, pattern: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    let cursor = "0"
    let count = 0
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000)
      cursor = next
      count += keys.length
    } while (cursor !== "0")
    return count
  })

/** A `RedisClient` layer for `db` (optionally through a proxy port). */
export const clientLayer = (db: number, port?: number, extra: Redis.ClientOptions = {}) =>
  Redis.layerClient({ url: redisUrl, db, ...(port === undefined ? {} : { port }), ...extra })

export type ProxyMode =
  | { readonly _tag: "pass" }
  /** Requests reach Redis; replies are dropped. */
  | { readonly _tag: "swallow" }
  /** Requests are dropped (never reach Redis). */
  | { readonly _tag: "drop" }
  /** Requests reach Redis; only the first `lines` reply lines (CRLF-terminated) come back. */
  | { readonly _tag: "limit"; readonly lines: number }

export interface Proxy {
  readonly port: number
  mode: ProxyMode
  /** Bytes forwarded from clients to Redis since the start. */
  readonly forwarded: () => number
  /** Destroys every open connection (clients see the connection close). */
  readonly cut: () => void
}

/** A TCP proxy in front of Redis on 127.0.0.1, closed with the scope. */
export const proxy: Effect.Effect<Proxy, never, import("effect/Scope").Scope> = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ proxy: Proxy; server: net.Server }>((resolve) => {
        const sockets = new Set<net.Socket>()
        let forwarded = 0
        let passed = 0
        const state: { mode: ProxyMode } = { mode: { _tag: "pass" } }
        const server = net.createServer((client) => {
          const upstream = net.connect(6379, "127.0.0.1")
          sockets.add(client)
          sockets.add(upstream)
          const end = () => {
            client.destroy()
            upstream.destroy()
            sockets.delete(client)
            sockets.delete(upstream)
          }
          client.on("data", (data) => {
            if (state.mode._tag === "drop") return
            forwarded += data.length
            upstream.write(data)
          })
          upstream.on("data", (data: Buffer) => {
            const mode = state.mode
            if (mode._tag === "pass") return void client.write(data)
            if (mode._tag === "swallow" || mode._tag === "drop") return
            let cut = 0
            while (passed < mode.lines && cut < data.length) {
              const nl = data.indexOf(10, cut)
              if (nl === -1) {
                cut = data.length
                break
              }
              cut = nl + 1
              passed++
            }
            if (cut > 0) client.write(data.subarray(0, cut))
          })
          for (const s of [client, upstream]) {
            s.on("close", end)
            s.on("error", end)
          }
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as net.AddressInfo).port
          resolve({
            server,
            proxy: {
              port,
              get mode() {
                return state.mode
              },
              set mode(mode: ProxyMode) {
                passed = 0
                state.mode = mode
              },
              forwarded: () => forwarded,
              cut: () => {
                for (const s of sockets) s.destroy()
                sockets.clear()
              }
            }
          })
        })
      })
  ),
  ({ server, proxy }) =>
    Effect.promise(
      () =>
        new Promise<void>((resolve) => {
          proxy.cut()
          server.close(() => resolve())
        })
    )
).pipe(Effect.map(({ proxy }) => proxy))

/** Waits (polling) until `check` holds, at most `millis`. */
export const eventually = <A>(
  read: Effect.Effect<A>,
  check: (a: A) => boolean,
  millis = 3000
): Effect.Effect<A> =>
  Effect.gen(function* () {
    const deadline = Date.now() + millis
    while (true) {
      const value = yield* read
      if (check(value) || Date.now() > deadline) return value
      yield* Effect.sleep("10 millis")
    }
  })

/** A Redis executor on `db` (optionally through a proxy port), closed with the scope. */
export const executorOn = (
  db: number,
  port?: number,
  options: Parameters<typeof Redis.makeExecutor>[0] = {}
) =>
  Layer.build(clientLayer(db, port)).pipe(
    Effect.flatMap((context) => Effect.provide(Redis.makeExecutor(options), context)),
    Effect.orDie
  )

/** The rows an executor call reported as not written (none when it returned `void`). */
export const failedRows = (
  result: unknown
): ReadonlyArray<{ readonly index: number; readonly error: Redis.RedisCommandError }> => {
  if (!BatchExecutor.isPartial(result)) return []
  return result.failed.map(({ index, error }) => {
    if (!(error instanceof Redis.RedisCommandError))
      throw new Error(`not a RedisCommandError: ${String(error)}`)
    return { index, error }
  })
}
