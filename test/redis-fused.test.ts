/**
 * Batches written as one command (a fused MSET, or a batch of one row), which the executor sends on
 * its own rather than as a pipeline: the same outcomes as a pipeline under lost answers, lost
 * requests, refusals and retryable errors, and every input row mapped back, against real Redis
 * (db 5, prefix "fu:"), with a TCP proxy to cut connections.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Redis from "effect-batchflow/Redis"
import { countKeys, deleteKeys, direct, eventually, executorOn, failedRows, proxy } from "./redis-helpers.js"

const DB = 5
const P = "fu:"

const fresh = Effect.gen(function* () {
  const redis = yield* direct(DB)
  yield* deleteKeys(redis, `${P}*`)
  return redis
})

/** Waits until a write through `executor` succeeds (the client reconnected after a cut). */
const ready = (executor: Redis.RedisExecutor) =>
  eventually(
    // A new rows array every time: the same array would continue the earlier (failed) call.
    Effect.suspend(() =>
      Effect.orDie(executor.execute(Redis.set("ready", { prefix: `${P}ready:` }), [{ key: "x", value: "1" }]))
    ),
    (result) => result === undefined
  ).pipe(
    Effect.flatMap((result) => (result === undefined ? Effect.void : Effect.die("Redis did not come back")))
  )

const values = (n: number, tag = "v") =>
  Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: `${tag}${i}` }))

describe("Redis batches of one command", () => {
  it.scopedLive("a fused MSET whose answer is lost is sent again (it is idempotent) and written", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Values = Redis.set("values", { prefix: P })
      const executor = yield* executorOn(DB, tcp.port, { retry: { backoffBase: "5 millis" } })
      tcp.mode = { _tag: "swallow" }
      const running = yield* Effect.fork(executor.execute(Values, values(300)))
      yield* eventually(countKeys(redis, `${P}*`), (n) => n === 300)
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      expect(yield* Fiber.join(running)).toBeUndefined()
      const stored = yield* Effect.promise(() => redis.mget(...values(300).map((r) => `${P}${r.key}`)))
      expect(stored).toEqual(values(300).map((r) => r.value))
      expect(yield* executor.stats).toMatchObject({ commands: 1, fusedRows: 300, sent: 2, resent: 1 })
    })
  )

  it.scopedLive(
    "fused MSETs whose requests are lost, attempts run out: every input row is reported, once, in order",
    () =>
      Effect.gen(function* () {
        const redis = yield* fresh
        const tcp = yield* proxy
        const Values = Redis.set("values", { prefix: P })
        const executor = yield* executorOn(DB, tcp.port, { retry: { maxAttempts: 1 } })
        tcp.mode = { _tag: "drop" }
        // 1,200 rows: two MSETs (1,000 and 200 rows), sent as a pipeline of two.
        const running = yield* Effect.fork(executor.execute(Values, values(1200)))
        yield* Effect.sleep("50 millis")
        tcp.mode = { _tag: "pass" }
        tcp.cut()
        const failed = failedRows(yield* Fiber.join(running))
        expect(failed.map((f) => f.index)).toEqual(Array.from({ length: 1200 }, (_, i) => i))
        for (const { error } of [failed[0]!, failed[999]!, failed[1000]!, failed[1199]!]) {
          expect(error).toMatchObject({ command: "MSET", reason: "connection", outcome: "unknown", sends: 1 })
        }
        expect(failed[999]!.error).not.toBe(failed[1000]!.error)
        expect(yield* countKeys(redis, `${P}*`)).toBe(0)
        expect(yield* executor.stats).toMatchObject({ commands: 2, failedRows: 1200, unknownRows: 1200 })
        // The same with one MSET (sent on its own, no pipeline).
        yield* ready(executor)
        tcp.mode = { _tag: "drop" }
        const one = yield* Effect.fork(executor.execute(Values, values(40)))
        yield* Effect.sleep("50 millis")
        tcp.mode = { _tag: "pass" }
        tcp.cut()
        const failedOne = failedRows(yield* Fiber.join(one))
        expect(failedOne.map((f) => f.index)).toEqual(Array.from({ length: 40 }, (_, i) => i))
        expect(failedOne[0]!.error).toMatchObject({ command: "MSET", outcome: "unknown", sends: 1 })
      })
  )

  it.scopedLive("a coalesced fused batch that fails reports every input row, duplicates included", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Last = Redis.set("last", { prefix: P, coalesce: "keepLast" })
      const executor = yield* executorOn(DB, tcp.port, { retry: { maxAttempts: 1 } })
      tcp.mode = { _tag: "drop" }
      const rows = [...values(5, "a"), ...values(5, "b"), { key: "solo", value: "s" }]
      const running = yield* Effect.fork(executor.execute(Last, rows))
      yield* Effect.sleep("50 millis")
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      const failed = failedRows(yield* Fiber.join(running))
      expect(failed.map((f) => f.index)).toEqual(Array.from({ length: 11 }, (_, i) => i))
      expect(yield* executor.stats).toMatchObject({ rowsIn: 11, rowsOut: 6, commands: 1, failedRows: 11 })
      // Written when the connection holds: the last value of each key.
      yield* ready(executor)
      expect(yield* executor.execute(Last, [...rows])).toBeUndefined()
      const stored = yield* Effect.promise(() => redis.mget(`${P}k0`, `${P}k4`, `${P}solo`))
      expect(stored).toEqual(["b0", "b4", "s"])
    })
  )

  it.scopedLive("one INCRBY whose answer is lost is reported unknown_outcome, never sent again", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Counters = Redis.incrBy("counters", { prefix: P })
      const executor = yield* executorOn(DB, tcp.port, { retry: { backoffBase: "5 millis" } })
      tcp.mode = { _tag: "swallow" }
      const running = yield* Effect.fork(executor.execute(Counters, [{ key: "n", by: 7 }]))
      yield* eventually(
        Effect.promise(() => redis.get(`${P}n`)),
        (v) => v === "7"
      )
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      const failed = failedRows(yield* Fiber.join(running))
      expect(failed).toHaveLength(1)
      expect(failed[0]).toMatchObject({
        index: 0,
        error: {
          command: "INCRBY",
          reason: "unknown_outcome",
          outcome: "unknown",
          retryable: false,
          sends: 1
        }
      })
      expect(yield* Effect.promise(() => redis.get(`${P}n`))).toBe("7")
      expect((yield* executor.stats).resent).toBe(0)
    })
  )

  it.scopedLive("one command refused by Redis: not applied, classified, with the same message", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      yield* Effect.promise(() => redis.hset(`${P}h`, "f", "v"))
      const Counters = Redis.incrBy("counters", { prefix: P })
      const executor = yield* executorOn(DB)
      const failed = failedRows(yield* executor.execute(Counters, [{ key: "h", by: 1 }]))
      expect(failed).toHaveLength(1)
      expect(failed[0]!.error).toMatchObject({
        command: "INCRBY",
        reason: "wrongtype",
        outcome: "not_applied",
        retryable: false,
        sends: 1
      })
      expect(failed[0]!.error.message).toBe(
        'Redis INCRBY for target "counters" was not applied (reason: wrongtype, sent once): WRONGTYPE Operation against a key holding the wrong kind of value'
      )
      expect(yield* Effect.promise(() => redis.hgetall(`${P}h`))).toEqual({ f: "v" })
    })
  )

  it.scopedLive(
    "one command refused with a retryable error is sent again, and reported when it persists",
    () =>
      Effect.gen(function* () {
        const redis = yield* fresh
        const script = `local n = redis.call('INCR', KEYS[1] .. ':sends')
if ARGV[1] == 'always' or n == 1 then
  return redis.error_reply('LOADING Redis is loading the dataset in memory')
end
return redis.call('INCR', KEYS[1])`
        const Eval = Redis.command("eval")
        const executor = yield* executorOn(DB, undefined, {
          retry: { maxAttempts: 3, backoffBase: "1 millis" }
        })
        const once = yield* executor.execute(Eval, [{ cmd: "EVAL", key: script, args: [1, `${P}r`, "once"] }])
        expect(once).toBeUndefined()
        expect(yield* Effect.promise(() => redis.mget(`${P}r`, `${P}r:sends`))).toEqual(["1", "2"])
        const failed = failedRows(
          yield* executor.execute(Eval, [{ cmd: "EVAL", key: script, args: [1, `${P}x`, "always"] }])
        )
        expect(failed).toHaveLength(1)
        expect(failed[0]!.error).toMatchObject({
          command: "EVAL",
          reason: "loading",
          retryable: true,
          outcome: "not_applied",
          sends: 3
        })
        expect(yield* Effect.promise(() => redis.get(`${P}x:sends`))).toBe("3")
        expect(yield* executor.stats).toMatchObject({ sent: 5, resent: 3 })
      })
  )
})
