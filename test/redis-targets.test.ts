/** Each Redis target's effect on real keys (db 9, prefix "tg:"). */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import { clientLayer, deleteKeys, direct } from "./redis-helpers.js"

const DB = 9
const P = "tg:"

const flowLayer = (options: Redis.Options = {}) =>
  Redis.layer({ flushSize: 50, flushInterval: "5 millis", ...options }).pipe(Layer.provide(clientLayer(DB)))

/** Runs `body` against a fresh flow; the flow is closed (everything written) when this returns. */
const withFlow = <E>(
  body: (flow: BatchFlow.BatchFlow) => Effect.Effect<void, E>,
  options: Redis.Options = {}
) =>
  Effect.gen(function* () {
    const flow = yield* BatchFlow.BatchFlow
    yield* body(flow)
    const stats = yield* flow.stats
    return stats
  }).pipe(Effect.provide(flowLayer(options)))

const fresh = Effect.gen(function* () {
  const redis = yield* direct(DB)
  yield* deleteKeys(redis, `${P}*`)
  return redis
})

describe("Redis targets", () => {
  it.scopedLive("set writes values; plain SETs are fused into MSET", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Users = Redis.set("users", { prefix: `${P}user:` })
      yield* withFlow((flow) =>
        Effect.forEach([1, 2, 3], (i) => flow.submit(Users, { key: String(i), value: `user-${i}` }), {
          discard: true
        })
      )
      expect(yield* Effect.promise(() => redis.mget(`${P}user:1`, `${P}user:2`, `${P}user:3`))).toEqual([
        "user-1",
        "user-2",
        "user-3"
      ])
      expect(Redis.set("x").fusion.kind).toBe("multi")
      expect(Redis.set("x", { ttl: "1 second" }).fusion.kind).toBe("none")
    })
  )

  it.scopedLive("set with a TTL sets the TTL; NX keeps existing values; XX creates nothing", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      yield* Effect.promise(() => redis.set(`${P}nx:old`, "before"))
      const Ttl = Redis.set("ttl", { prefix: `${P}ttl:`, ttl: "60 seconds" })
      const Nx = Redis.set("nx", { prefix: `${P}nx:`, condition: "NX" })
      const Xx = Redis.set("xx", { prefix: `${P}xx:`, condition: "XX" })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Ttl, { key: "a", value: 1 }),
          flow.submit(Nx, { key: "old", value: "after" }),
          flow.submit(Nx, { key: "new", value: "created" }),
          flow.submit(Xx, { key: "absent", value: "x" })
        ])
      )
      const pttl = yield* Effect.promise(() => redis.pttl(`${P}ttl:a`))
      expect(pttl).toBeGreaterThan(55_000)
      expect(pttl).toBeLessThanOrEqual(60_000)
      expect(yield* Effect.promise(() => redis.get(`${P}ttl:a`))).toBe("1")
      expect(yield* Effect.promise(() => redis.get(`${P}nx:old`))).toBe("before")
      expect(yield* Effect.promise(() => redis.get(`${P}nx:new`))).toBe("created")
      expect(yield* Effect.promise(() => redis.exists(`${P}xx:absent`))).toBe(0)
    })
  )

  it.scopedLive("hset writes every field of the row as a complete hash, with its TTL", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Profiles = Redis.hset("profiles", {
        schema: Schema.Struct({
          id: Schema.Number,
          name: Schema.String,
          age: Schema.Number,
          admin: Schema.Boolean,
          nickname: Schema.optional(Schema.String)
        }),
        key: "id",
        prefix: `${P}profile:`,
        ttl: "1 hour"
      })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Profiles, { id: 1, name: "alice", age: 30, admin: true, nickname: "al" }),
          flow.submit(Profiles, { id: 2, name: "bob", age: 41, admin: false })
        ])
      )
      expect(yield* Effect.promise(() => redis.hgetall(`${P}profile:1`))).toEqual({
        name: "alice",
        age: "30",
        admin: "true",
        nickname: "al"
      })
      expect(yield* Effect.promise(() => redis.hgetall(`${P}profile:2`))).toEqual({
        name: "bob",
        age: "41",
        admin: "false"
      })
      expect(yield* Effect.promise(() => redis.pttl(`${P}profile:2`))).toBeGreaterThan(3_500_000)
    })
  )

  it.scopedLive("incrBy adds every increment once", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Counters = Redis.incrBy("counters", { prefix: `${P}count:` })
      yield* withFlow((flow) =>
        Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) => flow.submit(Counters, { key: i % 2 === 0 ? "even" : "odd", by: i })
        )
      )
      expect(yield* Effect.promise(() => redis.get(`${P}count:even`))).toBe(String(2450))
      expect(yield* Effect.promise(() => redis.get(`${P}count:odd`))).toBe(String(2500))
    })
  )

  it.scopedLive("zadd adds members with scores; the GT condition only raises scores", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Board = Redis.zadd("board", { prefix: `${P}board:` })
      const Best = Redis.zadd("best", { prefix: `${P}best:`, condition: "GT" })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Board, { key: "a", member: "x", score: 1 }),
          flow.submit(Board, { key: "a", member: "y", score: 2 }),
          flow.submit(Board, { key: "b", member: "x", score: 5 }),
          flow.submit(Best, { key: "a", member: "x", score: 10 }),
          flow.submit(Best, { key: "a", member: "x", score: 3 })
        ])
      )
      expect(yield* Effect.promise(() => redis.zrange(`${P}board:a`, "0", "-1"))).toEqual(["x", "y"])
      expect(yield* Effect.promise(() => redis.zscore(`${P}board:a`, "y"))).toBe("2")
      expect(yield* Effect.promise(() => redis.zscore(`${P}board:b`, "x"))).toBe("5")
      expect(yield* Effect.promise(() => redis.zscore(`${P}best:a`, "x"))).toBe("10")
    })
  )

  it.scopedLive("xadd appends entries, with generated or explicit ids", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Events = Redis.xadd("events", { prefix: `${P}stream:` })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Events, { key: "auto", fields: { kind: "click", n: 1 } }),
          flow.submit(Events, { key: "auto", fields: { kind: "view", n: 2 } }),
          flow.submit(Events, { key: "ids", id: "5-1", fields: { kind: "a" } }),
          flow.submit(Events, { key: "ids", id: "5-2", fields: { kind: "b" } })
        ])
      )
      const auto = yield* Effect.promise(() => redis.xrange(`${P}stream:auto`, "-", "+"))
      expect(auto.map(([, fields]) => fields)).toEqual([
        ["kind", "click", "n", "1"],
        ["kind", "view", "n", "2"]
      ])
      const ids = yield* Effect.promise(() => redis.xrange(`${P}stream:ids`, "-", "+"))
      expect(ids.map(([id]) => id)).toEqual(["5-1", "5-2"])
      expect(Events.idempotent({ key: "k", fields: {} })).toBe(false)
      expect(Events.idempotent({ key: "k", id: "1-1", fields: {} })).toBe(true)
    })
  )

  it.scopedLive("expire sets TTLs and del removes keys", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      yield* Effect.promise(() => redis.mset(`${P}e:1`, "a", `${P}d:1`, "a", `${P}d:2`, "b", `${P}d:3`, "c"))
      const Expire = Redis.expire("expire", { prefix: `${P}e:` })
      const Del = Redis.del("del", { prefix: `${P}d:` })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Expire, { key: "1", ttlMillis: 30_000 }),
          flow.submit(Del, { key: "1" }),
          flow.submit(Del, { key: "3" })
        ])
      )
      const pttl = yield* Effect.promise(() => redis.pttl(`${P}e:1`))
      expect(pttl).toBeGreaterThan(25_000)
      expect(pttl).toBeLessThanOrEqual(30_000)
      expect(yield* Effect.promise(() => redis.exists(`${P}d:1`, `${P}d:2`, `${P}d:3`))).toBe(1)
    })
  )

  it.scopedLive("the generic command target sends any command, with the key prefixed", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Raw = Redis.command("raw", { prefix: P })
      yield* withFlow((flow) =>
        Effect.all([
          flow.submit(Raw, { cmd: "RPUSH", key: "list", args: ["a", "b"] }),
          flow.submit(Raw, { cmd: "SADD", key: "set", args: ["x", "y", "x"] }),
          flow.submit(Raw, { cmd: "HSET", key: "hash", args: ["f", 1] }),
          flow.submit(Raw, { cmd: "INCR", key: "n" })
        ])
      )
      expect(yield* Effect.promise(() => redis.lrange(`${P}list`, 0, -1))).toEqual(["a", "b"])
      expect((yield* Effect.promise(() => redis.smembers(`${P}set`))).sort()).toEqual(["x", "y"])
      expect(yield* Effect.promise(() => redis.hgetall(`${P}hash`))).toEqual({ f: "1" })
      expect(yield* Effect.promise(() => redis.get(`${P}n`))).toBe("1")
      expect(Raw.idempotent({ cmd: "set", key: "k" })).toBe(true)
      expect(Raw.idempotent({ cmd: "RPUSH", key: "k" })).toBe(false)
      expect(Raw.idempotent({ cmd: "ZADD", key: "k", args: ["INCR", 1, "m"] })).toBe(false)
      expect(Redis.command("always", { idempotent: true }).idempotent({ cmd: "RPUSH", key: "k" })).toBe(true)
    })
  )

  it.scopedLive("rows are validated at submit", () =>
    Effect.gen(function* () {
      yield* fresh
      const Counters = Redis.incrBy("counters", { prefix: `${P}count:` })
      const invalid = yield* Effect.gen(function* () {
        const flow = yield* BatchFlow.BatchFlow
        return yield* Effect.flip(flow.submit(Counters, { key: "k", by: 1.5 }))
      }).pipe(Effect.provide(flowLayer()))
      expect(invalid).toMatchObject({ _tag: "InvalidRow", field: "by" })
    })
  )
})
