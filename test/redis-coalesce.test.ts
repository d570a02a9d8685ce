/** Coalescing by key (pure and on real Redis) and command fusion (db 11, prefix "co:"). */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Coalesce from "effect-batchflow/Coalesce"
import * as Redis from "effect-batchflow/Redis"
import type { Redis as IORedis } from "ioredis"
import { deleteKeys, direct, executorOn, failedRows } from "./redis-helpers.js"

const DB = 11
const P = "co:"

interface Row {
  readonly key: string | null
  readonly a?: number
  readonly b?: number
}

const rows: ReadonlyArray<Row> = [
  { key: "x", a: 1 },
  { key: "y", a: 2 },
  { key: "x", b: 3 },
  { key: null, a: 4 },
  { key: "x", a: 5 },
  { key: null, a: 6 }
]

describe("Coalesce", () => {
  it("keepFirst keeps each key's first row, in first-occurrence order", () => {
    const result = Coalesce.apply(Coalesce.keepFirst<Row>(["key"]), rows)
    expect(result.rows).toEqual([
      { key: "x", a: 1 },
      { key: "y", a: 2 },
      { key: null, a: 4 },
      { key: null, a: 6 }
    ])
    expect(result.sources).toEqual([[0, 2, 4], [1], [3], [5]])
    expect(result).toMatchObject({ in: 6, out: 4, deduplicated: 2, merged: 0 })
  })

  it("keepLast puts the last row at the first row's position", () => {
    const result = Coalesce.apply(Coalesce.keepLast<Row>(["key"]), rows)
    expect(result.rows).toEqual([
      { key: "x", a: 5 },
      { key: "y", a: 2 },
      { key: null, a: 4 },
      { key: null, a: 6 }
    ])
    expect(result).toMatchObject({ in: 6, out: 4, deduplicated: 2, merged: 0 })
  })

  it("mergePresent with nullIsAbsent keeps an earlier value where a later row has null", () => {
    const merged = Coalesce.apply(
      Coalesce.mergePresent<{ k: string; a: string | null }>(["k"], undefined, { nullIsAbsent: true }),
      [
        { k: "x", a: "kept" },
        { k: "x", a: null }
      ]
    )
    expect(merged.rows).toEqual([{ k: "x", a: "kept" }])
  })
  it("mergePresent overwrites the fields later rows have", () => {
    const result = Coalesce.apply(Coalesce.mergePresent<Row>(["key"]), rows)
    expect(result.rows[0]).toEqual({ key: "x", a: 5, b: 3 })
    expect(result).toMatchObject({ in: 6, out: 4, deduplicated: 0, merged: 2 })
    const onlyB = Coalesce.apply(Coalesce.mergePresent<Row>(["key"], ["b"]), rows)
    expect(onlyB.rows[0]).toEqual({ key: "x", a: 1, b: 3 })
  })

  it("combine folds rows with a function; without duplicates the input is returned as is", () => {
    const sum = Coalesce.combine<Row>(
      (r) => r.key,
      (x, y) => ({ key: x.key, a: (x.a ?? 0) + (y.a ?? 0) })
    )
    expect(Coalesce.apply(sum, rows).rows[0]).toEqual({ key: "x", a: 6 })
    const distinct = rows.slice(0, 2)
    const result = Coalesce.apply(sum, distinct)
    expect(result.rows).toBe(distinct)
    expect(result.sources).toBeUndefined()
    expect(result).toMatchObject({ in: 2, out: 2 })
  })

  it("keys are type-sensitive: 1 and '1' are different keys", () => {
    const mixed = [{ key: 1 }, { key: "1" }, { key: 1 }]
    expect(Coalesce.apply(Coalesce.keepFirst<{ key: number | string }>(["key"]), mixed).out).toBe(2)
  })
})

const fresh = Effect.gen(function* () {
  const redis = yield* direct(DB)
  yield* deleteKeys(redis, `${P}*`)
  return redis
})

const read = (redis: IORedis, keys: ReadonlyArray<string>) => Effect.promise(() => redis.mget(...keys))

describe("Redis coalescing", () => {
  it.scopedLive("keepLast on SET writes each key's last value; counted in and out", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB, undefined, { fusion: false })
      const Last = Redis.set("last", { prefix: `${P}last:`, coalesce: "keepLast" })
      const batch = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 3}`, value: i }))
      yield* executor.execute(Last, batch)
      expect(yield* read(redis, [`${P}last:k0`, `${P}last:k1`, `${P}last:k2`])).toEqual(["27", "28", "29"])
      expect(yield* executor.stats).toMatchObject({ rowsIn: 30, rowsOut: 3, commands: 3, sent: 3 })
    })
  )

  it.scopedLive("keepFirst on SET NX keeps the first value, as separate SET NX would", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB)
      const First = Redis.set("first", { prefix: `${P}first:`, condition: "NX", coalesce: "keepFirst" })
      yield* executor.execute(First, [
        { key: "a", value: "one" },
        { key: "a", value: "two" }
      ])
      expect(yield* read(redis, [`${P}first:a`])).toEqual(["one"])
      expect((yield* executor.stats).rowsOut).toBe(1)
    })
  )

  it.scopedLive("mergePresent on HSET merges partial rows into one complete hash", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB)
      const Profiles = Redis.hset("profiles", {
        schema: Schema.Struct({
          id: Schema.String,
          name: Schema.optional(Schema.String),
          email: Schema.optional(Schema.String)
        }),
        key: "id",
        prefix: `${P}p:`,
        coalesce: "mergePresent"
      })
      yield* executor.execute(Profiles, [
        { id: "1", name: "alice" },
        { id: "1", email: "a@example.com" },
        { id: "1", name: "alicia" }
      ])
      expect(yield* Effect.promise(() => redis.hgetall(`${P}p:1`))).toEqual({
        name: "alicia",
        email: "a@example.com"
      })
      expect(yield* executor.stats).toMatchObject({ rowsIn: 3, rowsOut: 1, sent: 1 })
    })
  )

  it.scopedLive(
    "mergePresent on HSET: a later null never erases a value (the hash is what the uncoalesced writes leave)",
    () =>
      Effect.gen(function* () {
        const redis = yield* fresh
        const executor = yield* executorOn(DB)
        const schema = Schema.Struct({
          id: Schema.String,
          name: Schema.NullOr(Schema.String),
          email: Schema.NullOr(Schema.String),
          city: Schema.NullOr(Schema.String)
        })
        const rows = [
          { id: "u1", name: "alice", email: null, city: "paris" },
          { id: "u1", name: null, email: "alice@x", city: null },
          { id: "u1", name: null, email: null, city: "lyon" }
        ]
        const plain = Redis.hset("profiles_plain", { schema, key: "id", prefix: `${P}plain:` })
        const merged = Redis.hset("profiles_merged", {
          schema,
          key: "id",
          prefix: `${P}merged:`,
          coalesce: "mergePresent"
        })
        yield* executor.execute(plain, rows)
        // A copy: the executor keeps per-call state keyed on the rows array (a retry resumes).
        yield* executor.execute(merged, [...rows])
        const expected = { name: "alice", email: "alice@x", city: "lyon" }
        expect(yield* Effect.promise(() => redis.hgetall(`${P}plain:u1`))).toEqual(expected)
        expect(yield* Effect.promise(() => redis.hgetall(`${P}merged:u1`))).toEqual(expected)
      })
  )

  it.scopedLive("incrBy with coalesce 'sum' sends one INCRBY per key with the total", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB)
      const Counters = Redis.incrBy("counters", { prefix: `${P}n:`, coalesce: "sum" })
      yield* executor.execute(
        Counters,
        Array.from({ length: 100 }, (_, i) => ({ key: `k${i % 4}`, by: i }))
      )
      expect(yield* read(redis, [`${P}n:k0`, `${P}n:k1`, `${P}n:k2`, `${P}n:k3`])).toEqual([
        "1200",
        "1225",
        "1250",
        "1275"
      ])
      expect(yield* executor.stats).toMatchObject({ rowsIn: 100, rowsOut: 4, sent: 4 })
    })
  )
})

/** Everything under `prefix`, as comparable data. */
const snapshot = (redis: IORedis, prefix: string) =>
  Effect.promise(async () => {
    const keys = (await redis.keys(`${prefix}*`)).sort()
    const out: Record<string, unknown> = {}
    for (const key of keys) {
      const type = await redis.type(key)
      const name = key.slice(prefix.length)
      out[name] = type === "zset" ? await redis.zrange(key, "0", "-1", "WITHSCORES") : await redis.get(key)
    }
    return out
  })

describe("Redis fusion", () => {
  it.scopedLive("fused and unfused writes leave the same final state", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const fused = yield* executorOn(DB)
      const unfused = yield* executorOn(DB, undefined, { fusion: false })
      const targets = (prefix: string) => ({
        set: Redis.set("set", { prefix }),
        del: Redis.del("del", { prefix }),
        zadd: Redis.zadd("zadd", { prefix: `${prefix}z:` })
      })
      const A = targets(`${P}a:`)
      const B = targets(`${P}b:`)
      // Duplicated keys, a delete between writes, more rows than one fused command holds.
      const sets = Array.from({ length: 2500 }, (_, i) => ({ key: `k${i % 1700}`, value: `v${i}` }))
      const dels = Array.from({ length: 50 }, (_, i) => ({ key: `k${i * 7}` }))
      const zadds = Array.from({ length: 1200 }, (_, i) => ({
        key: `s${i % 3}`,
        member: `m${i % 500}`,
        score: i
      }))
      for (const [executor, t] of [
        [fused, A],
        [unfused, B]
      ] as const) {
        yield* executor.execute(t.set, sets)
        yield* executor.execute(t.del, dels)
        yield* executor.execute(t.set, sets.slice(0, 10))
        yield* executor.execute(t.zadd, zadds)
      }
      const a = yield* snapshot(redis, `${P}a:`)
      const b = yield* snapshot(redis, `${P}b:`)
      expect(Object.keys(a).length).toBeGreaterThan(1600)
      expect(a).toEqual(b)
      const f = yield* fused.stats
      const u = yield* unfused.stats
      // 2500 SETs → 3 MSETs, 50 DELs → 1 DEL, 10 SETs → 1 MSET, 1200 ZADDs of 3 keys → 3 ZADDs.
      expect(f.sent).toBe(8)
      expect(f.fusedRows).toBe(2500 + 50 + 10 + 1200)
      expect(u.sent).toBe(2500 + 50 + 10 + 1200)
    })
  )

  it.scopedLive("a fused command that fails reports all of its rows and nothing else", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      yield* Effect.promise(() => redis.set(`${P}z:bad`, "a string"))
      const executor = yield* executorOn(DB)
      const Board = Redis.zadd("board", { prefix: `${P}z:` })
      const failed = failedRows(
        yield* executor.execute(Board, [
          { key: "good", member: "a", score: 1 },
          { key: "bad", member: "a", score: 1 },
          { key: "good", member: "b", score: 2 },
          { key: "bad", member: "b", score: 2 }
        ])
      )
      expect(failed.map((f) => [f.index, f.error.command, f.error.reason])).toEqual([
        [1, "ZADD", "wrongtype"],
        [3, "ZADD", "wrongtype"]
      ])
      expect(yield* Effect.promise(() => redis.zcard(`${P}z:good`))).toBe(2)
    })
  )
})
