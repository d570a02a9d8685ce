/** The scoped RedisClient: config, connection errors, redacted passwords, closing (db 8, prefix "cl:"). */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Redis from "effect-batchflow/Redis"
import { direct, redisUrl } from "./redis-helpers.js"

const DB = 8

describe("RedisClient", () => {
  it.scopedLive("reads BATCHFLOW_REDIS_URL from Config, database included", () =>
    Effect.gen(function* () {
      const check = yield* direct(DB)
      yield* Effect.promise(() => check.del("cl:config"))
      const url = new URL(redisUrl)
      url.pathname = `/${DB}`
      yield* Effect.gen(function* () {
        const { redis } = yield* Redis.RedisClient
        yield* Effect.promise(() => redis.set("cl:config", "yes", "EX", 60))
      }).pipe(
        Effect.provide(
          Redis.layerClientConfig().pipe(
            Layer.provide(
              Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["BATCHFLOW_REDIS_URL", url.href]])))
            )
          )
        )
      )
      expect(yield* Effect.promise(() => check.get("cl:config"))).toBe("yes")
    })
  )

  it.scopedLive("closing the scope closes the connection", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const client = yield* Redis.makeClient({ url: redisUrl, db: DB }).pipe(Scope.extend(scope))
      expect(client.redis.status).toBe("ready")
      expect(client.address).toBe(`${new URL(redisUrl).hostname}:${new URL(redisUrl).port || 6379}`)
      yield* Scope.close(scope, Exit.void)
      expect(client.redis.status).toBe("end")
    })
  )

  it.scopedLive("an unreachable server fails with RedisConnectionError", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Redis.makeClient({ url: "redis://127.0.0.1:1" }))
      expect(error).toBeInstanceOf(Redis.RedisConnectionError)
      expect(error.address).toBe("127.0.0.1:1")
      expect(error.message).toContain("Could not connect to Redis at 127.0.0.1:1")
      const invalid = yield* Effect.flip(Redis.makeClient({ url: "http://nope" }))
      expect(invalid.address).toBe("(invalid url)")
    })
  )

  it.scopedLive("a password is Redacted and never appears in errors", () =>
    Effect.gen(function* () {
      const secret = "very-secret-password"
      // A user that does not exist: the server refuses the AUTH.
      const refused = yield* Effect.flip(
        Redis.makeClient({ url: redisUrl, username: "batchflow-nobody", password: Redacted.make(secret) })
      )
      expect(refused).toBeInstanceOf(Redis.RedisConnectionError)
      expect(refused.message).toContain("WRONGPASS")
      expect(refused.message).not.toContain(secret)
      expect(JSON.stringify(refused)).not.toContain(secret)
      const fromUrl = yield* Effect.flip(
        Redis.makeClient({ url: Redacted.make(`redis://batchflow-nobody:${secret}@127.0.0.1:1`) })
      )
      expect(fromUrl.message).not.toContain(secret)
      expect(String(Redis.clientConfig)).not.toContain(secret)
    })
  )
})
