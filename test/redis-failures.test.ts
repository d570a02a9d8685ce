/**
 * Partial failures, retries of failed commands only, connection cuts and transactions, against real
 * Redis (db 10, prefix "fl:"), with a TCP proxy to cut connections.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Schema, Stream } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import {
  clientLayer,
  deleteKeys,
  direct,
  eventually,
  executorOn,
  failedRows,
  proxy
} from "./redis-helpers.js"

const DB = 10
const P = "fl:"

const fresh = Effect.gen(function* () {
  const redis = yield* direct(DB)
  yield* deleteKeys(redis, `${P}*`)
  return redis
})

const UserSchema = Schema.Struct({ id: Schema.String, name: Schema.String })

const counters = (n: number, key: (i: number) => string = () => "c") =>
  Array.from({ length: n }, (_, i) => ({ key: key(i), by: 1 }))

/** Fails the first send of rows whose third argument is "fail" with LOADING; counts every send. */
const flaky = `local n = redis.call('INCR', KEYS[1] .. ':sends')
if ARGV[1] == 'always' or (ARGV[1] == 'fail' and n == 1) then
  return redis.error_reply('LOADING Redis is loading the dataset in memory')
end
return redis.call('INCR', KEYS[1])`

describe("Redis failures", () => {
  it.scopedLive(
    "a pipeline with WRONGTYPE commands: the others are applied once, the failed ones reported",
    () =>
      Effect.gen(function* () {
        const redis = yield* fresh
        for (const i of [3, 7, 11]) yield* Effect.promise(() => redis.hset(`${P}k${i}`, "f", "v"))
        const Counters = Redis.incrBy("counters", { prefix: P })
        const executor = yield* executorOn(DB)
        const rows = counters(20, (i) => `k${i}`)
        const failed = failedRows(yield* executor.execute(Counters, rows))
        expect(failed.map((f) => f.index)).toEqual([3, 7, 11])
        for (const { error } of failed) {
          expect(error).toMatchObject({
            command: "INCRBY",
            reason: "wrongtype",
            outcome: "not_applied",
            sends: 1
          })
        }
        expect(failed[0]!.error.message).toBe(
          'Redis INCRBY for target "counters" was not applied (reason: wrongtype, sent once): WRONGTYPE Operation against a key holding the wrong kind of value'
        )
        const values = yield* Effect.promise(() => redis.mget(...rows.map((r) => `${P}${r.key}`)))
        expect(values.filter((v) => v === "1")).toHaveLength(17)
        expect([values[3], values[7], values[11]]).toEqual([null, null, null])
        const stats = yield* executor.stats
        expect(stats.sent).toBe(20)
        expect(stats.resent).toBe(0)
        expect(stats.failedRows).toBe(3)
      })
  )

  it.scopedLive("through the flow, the failed rows are reported and the others committed", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      yield* Effect.promise(() => redis.hset(`${P}bad`, "f", "v"))
      const Counters = Redis.incrBy("counters", { prefix: P })
      const [failures, stats] = yield* Effect.gen(function* () {
        const flow = yield* BatchFlow.BatchFlow
        const collected = yield* Effect.fork(Stream.runCollect(flow.failures))
        yield* flow.submitAll(Counters, [
          { key: "good1", by: 1 },
          { key: "bad", by: 1 },
          { key: "good2", by: 1 }
        ])
        yield* flow.close
        return [Chunk.toReadonlyArray(yield* Fiber.join(collected)), yield* flow.stats] as const
      }).pipe(Effect.provide(Redis.layer({ flushSize: 10 }).pipe(Layer.provide(clientLayer(DB)))))
      expect(failures).toHaveLength(1)
      expect(failures[0]!.reason).toBe("wrongtype")
      expect(failures[0]!.rows).toEqual([{ key: "bad", by: 1 }])
      expect(failures[0]!.cause).toBeInstanceOf(Redis.RedisCommandError)
      expect(stats).toMatchObject({ committed: 2, failed: 1 })
      expect(yield* Effect.promise(() => redis.mget(`${P}good1`, `${P}good2`))).toEqual(["1", "1"])
    })
  )

  it.scopedLive("retryable errors: only the failed commands are sent again, even non-idempotent ones", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      // The generic target's key is the first argument: here the script (made unique per row with a
      // comment, as same-key rows are ordered), so the real key follows.
      const Eval = Redis.command("eval")
      const executor = yield* executorOn(DB, undefined, { retry: { backoffBase: "1 millis" } })
      const rows = Array.from({ length: 10 }, (_, i) => ({
        cmd: "EVAL",
        key: `${flaky}\n-- ${i}`,
        args: [1, `${P}r${i}`, i % 2 === 0 ? "fail" : "ok"]
      }))
      yield* executor.execute(Eval, rows)
      for (let i = 0; i < 10; i++) {
        expect(yield* Effect.promise(() => redis.get(`${P}r${i}`))).toBe("1")
        expect(yield* Effect.promise(() => redis.get(`${P}r${i}:sends`))).toBe(i % 2 === 0 ? "2" : "1")
      }
      const stats = yield* executor.stats
      expect(stats.sent).toBe(15)
      expect(stats.resent).toBe(5)
    })
  )

  it.scopedLive("a retryable error that persists is reported after the attempts run out", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB, undefined, {
        retry: { maxAttempts: 3, backoffBase: "1 millis" }
      })
      const failed = failedRows(
        yield* executor.execute(Redis.command("eval"), [
          { cmd: "EVAL", key: `${flaky}\n-- x`, args: [1, `${P}x`, "always"] },
          { cmd: "EVAL", key: `${flaky}\n-- y`, args: [1, `${P}y`, "ok"] }
        ])
      )
      expect(failed).toMatchObject([
        { index: 0, error: { reason: "loading", retryable: true, outcome: "not_applied", sends: 3 } }
      ])
      expect(yield* Effect.promise(() => redis.get(`${P}x:sends`))).toBe("3")
      expect(yield* Effect.promise(() => redis.get(`${P}y`))).toBe("1")
    })
  )

  it.scopedLive("a failed command is never retried past a later command of the same key", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const executor = yield* executorOn(DB, undefined, { retry: { backoffBase: "1 millis" } })
      // Both rows have the same key (the script): the first fails once, the second is applied.
      const rows = [
        { cmd: "EVAL", key: flaky, args: [1, `${P}a`, "fail"] },
        { cmd: "EVAL", key: flaky, args: [1, `${P}b`, "ok"] }
      ]
      // Not idempotent: re-sending the first would reorder it after the second, so it is reported.
      const failed = failedRows(yield* executor.execute(Redis.command("eval"), rows))
      expect(failed).toMatchObject([{ index: 0, error: { reason: "loading", sends: 1 } }])
      expect(yield* Effect.promise(() => redis.mget(`${P}a:sends`, `${P}b:sends`))).toEqual(["1", "1"])
      // Declared idempotent: the second is sent again after the first, keeping their order.
      yield* deleteKeys(redis, `${P}*`)
      const again = failedRows(
        yield* executor.execute(Redis.command("eval", { idempotent: true }), [...rows])
      )
      expect(again).toEqual([])
      expect(yield* Effect.promise(() => redis.mget(`${P}a:sends`, `${P}b:sends`))).toEqual(["2", "2"])
    })
  )

  it.scopedLive("incrBy under a connection cut: never double-counted, the unanswered rows reported", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Counters = Redis.incrBy("counters", { prefix: P })
      const executor = yield* executorOn(DB, tcp.port)
      tcp.mode = { _tag: "swallow" }
      const running = yield* Effect.fork(executor.execute(Counters, counters(50)))
      yield* eventually(
        Effect.promise(() => redis.get(`${P}c`)),
        (v) => v === "50"
      )
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      const failed = failedRows(yield* Fiber.join(running))
      expect(failed).toHaveLength(50)
      for (const { error } of failed) {
        expect(error).toMatchObject({
          reason: "unknown_outcome",
          outcome: "unknown",
          retryable: false,
          sends: 1
        })
      }
      expect(failed[0]!.error.message).toContain("may have been applied")
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("50")
      // The client reconnects and later batches are written normally.
      yield* executor.execute(Counters, counters(10))
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("60")
    })
  )

  it.scopedLive("a cut after some answers: answered rows are committed, only the rest is unknown", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Counters = Redis.incrBy("counters", { prefix: P })
      const executor = yield* executorOn(DB, tcp.port)
      tcp.mode = { _tag: "limit", lines: 20 }
      const running = yield* Effect.fork(executor.execute(Counters, counters(50)))
      yield* eventually(
        Effect.promise(() => redis.get(`${P}c`)),
        (v) => v === "50"
      )
      yield* Effect.sleep("20 millis")
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      const failed = failedRows(yield* Fiber.join(running))
      expect(failed.map((f) => f.index)).toEqual(Array.from({ length: 30 }, (_, i) => i + 20))
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("50")
    })
  )

  it.scopedLive("idempotent commands under a connection cut are sent again and written", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Values = Redis.set("values", { prefix: P, ttl: "1 minute" })
      const executor = yield* executorOn(DB, tcp.port, { retry: { backoffBase: "5 millis" } })
      tcp.mode = { _tag: "drop" }
      const running = yield* Effect.fork(
        executor.execute(
          Values,
          Array.from({ length: 30 }, (_, i) => ({ key: `v${i}`, value: i }))
        )
      )
      yield* Effect.sleep("50 millis")
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      yield* Fiber.join(running)
      const values = yield* Effect.promise(() =>
        redis.mget(...Array.from({ length: 30 }, (_, i) => `${P}v${i}`))
      )
      expect(values).toEqual(Array.from({ length: 30 }, (_, i) => String(i)))
      expect((yield* executor.stats).resent).toBe(30)
    })
  )

  it.scopedLive("an engine retry after an attempt timeout does not send the commands again", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Counters = Redis.incrBy("counters", { prefix: P })
      const failures = yield* Effect.gen(function* () {
        const flow = yield* BatchFlow.BatchFlow
        const collected = yield* Effect.fork(Stream.runCollect(flow.failures))
        tcp.mode = { _tag: "swallow" }
        yield* flow.submitAll(Counters, counters(40))
        yield* eventually(
          Effect.promise(() => redis.get(`${P}c`)),
          (v) => v === "40"
        )
        // Several attempts time out meanwhile; each engine retry must not re-send.
        yield* Effect.sleep("300 millis")
        tcp.mode = { _tag: "pass" }
        tcp.cut()
        yield* flow.close
        return Chunk.toReadonlyArray(yield* Fiber.join(collected))
      }).pipe(
        Effect.provide(
          Redis.layer({ flushSize: 100, timeout: "60 millis", retry: { backoffBase: "5 millis" } }).pipe(
            Layer.provide(clientLayer(DB, tcp.port))
          )
        )
      )
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("40")
      expect(failures.flatMap((f) => f.rows)).toHaveLength(40)
    })
  )

  it.scopedLive("a transactional batch with a queue-time error applies nothing", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const Raw = Redis.command("raw", { prefix: P, transaction: true })
      const executor = yield* executorOn(DB)
      const failed = failedRows(
        yield* executor.execute(Raw, [
          { cmd: "SET", key: "a", args: ["1"] },
          { cmd: "SET", key: "b" },
          { cmd: "INCRBY", key: "n", args: [5] }
        ])
      )
      expect(failed.map((f) => [f.index, f.error.reason])).toEqual([
        [0, "argument"],
        [1, "argument"],
        [2, "argument"]
      ])
      expect(yield* Effect.promise(() => redis.exists(`${P}a`, `${P}b`, `${P}n`))).toBe(0)
    })
  )

  it.scopedLive("a transactional batch whose answer is lost is applied exactly once", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const tcp = yield* proxy
      const Counters = Redis.incrBy("counters", { prefix: P })
      const executor = yield* executorOn(DB, tcp.port, {
        transaction: true,
        markerPrefix: `${P}tx:`,
        retry: { maxAttempts: 5, backoffBase: "5 millis" }
      })
      // EXEC runs, the answer is lost: the marker shows it ran.
      tcp.mode = { _tag: "swallow" }
      const ran = yield* Effect.fork(executor.execute(Counters, counters(25)))
      yield* eventually(
        Effect.promise(() => redis.get(`${P}c`)),
        (v) => v === "25"
      )
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      yield* Fiber.join(ran)
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("25")
      // The requests never arrive: the marker is absent, so the whole block is sent again.
      tcp.mode = { _tag: "drop" }
      const lost = yield* Effect.fork(executor.execute(Counters, counters(25)))
      yield* Effect.sleep("50 millis")
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("25")
      tcp.mode = { _tag: "pass" }
      tcp.cut()
      yield* Fiber.join(lost)
      expect(yield* Effect.promise(() => redis.get(`${P}c`))).toBe("50")
      const stats = yield* executor.stats
      // Three blocks reached the proxy (one more if the second call found the connection still down).
      expect(stats.transactions).toBeGreaterThanOrEqual(3)
    })
  )

  it.scopedLive("a transactional batch is atomic for other clients and applied whole", () =>
    Effect.gen(function* () {
      const redis = yield* fresh
      const flowStats = yield* Effect.gen(function* () {
        const flow = yield* BatchFlow.BatchFlow
        const Users = Redis.hset("users", {
          schema: UserSchema,
          key: "id",
          prefix: `${P}user:`
        })
        yield* flow.submitAll(Users, [
          { id: "1", name: "a" },
          { id: "2", name: "b" }
        ])
        yield* flow.flush
        return yield* flow.stats
      }).pipe(
        Effect.provide(
          Redis.layer({ transaction: true, markerPrefix: `${P}tx:` }).pipe(Layer.provide(clientLayer(DB)))
        )
      )
      expect(flowStats.committed).toBe(2)
      expect(yield* Effect.promise(() => redis.hget(`${P}user:2`, "name"))).toBe("b")
      // One marker per block, expiring.
      const markers = yield* Effect.promise(() => redis.keys(`${P}tx:*`))
      expect(markers.length).toBeGreaterThan(0)
      expect(yield* Effect.promise(() => redis.ttl(markers[0]!))).toBeGreaterThan(500)
    })
  )

  it("classifies Redis errors with low-cardinality reasons", () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: "ReplyError" })
    const cases: Array<[string, boolean, string]> = [
      ["LOADING Redis is loading the dataset in memory", true, "loading"],
      ["BUSY Redis is busy running a script", true, "busy"],
      ["TRYAGAIN Multiple keys request during rehashing of slot", true, "tryagain"],
      ["CLUSTERDOWN The cluster is down", true, "clusterdown"],
      ["MASTERDOWN Link with MASTER is down", true, "masterdown"],
      ["READONLY You can't write against a read only replica.", true, "readonly"],
      ["WRONGTYPE Operation against a key holding the wrong kind of value", false, "wrongtype"],
      ["ERR syntax error", false, "syntax"],
      ["ERR wrong number of arguments for 'set' command", false, "argument"],
      ["ERR value is not an integer or out of range", false, "argument"],
      ["ERR unknown command 'NOPE'", false, "unknown_command"],
      ["OOM command not allowed when used memory > 'maxmemory'.", false, "oom"],
      ["ERR something new", false, "redis_error"]
    ]
    for (const [message, retryable, reason] of cases) {
      expect(Redis.classify(reply(message))).toEqual({ retryable, reason })
    }
    expect(
      Redis.classify(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))
    ).toEqual({
      retryable: true,
      reason: "connection"
    })
    expect(Redis.classify(new Error("Command timed out"))).toEqual({ retryable: true, reason: "timeout" })
    expect(Redis.classify(new Error("something else"))).toBeUndefined()
  })
})
